""""What needs attention first" on the dashboard (issue 4): the open rejects, ordered by who must act and
how many events wait on it.

1. Envelope rejects (``L01``…``L07``): a whole envelope refused, nothing wrong in Parcours 3; the
   integrator fixes the cause, then everything is resent at once. Few causes, many events each.
2. Events without a report (``SANS_REPONSE``): DUDE may or may not have applied them; ask the
   integrator to check with DUDE before resending.
3. The business codes with the most events (``E01``…``E10``, from DUDE or pre-flight): the counsellors'
   work, in the order that clears the most events per correction.
4. Envelopes the gateway could not hand to DUDE yet (its last post failed, or DUDE's outage holds them):
   nothing to do, they go again by themselves with the same ``IdLot``; said so that nobody resends them, and
   that a DUDE down for more than a night reaches the integrator. Before, they were counted among those
   "waiting for their report", which they are not: DUDE has not even received them.
5. Envelopes still waiting for their report: nothing to do yet, said so that nobody resends too early.

While sending is paused (`gateway.console.paused`), every envelope DUDE has not acknowledged is one the
gateway holds, not one DUDE is late with: 4. counts them all and says they go when sending resumes. Before,
one sealed during the pause "attendait le compte rendu du DUDE", and a held one had a next attempt whose time
the pause had already made wrong.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from gateway.codes import AWAITING_RECEIPT, EnvelopeState, EventState, Level, RejectCode
from gateway.console.labels import plural
from gateway.console.queries import CodeCount

TOP_BUSINESS = 3


@dataclass(frozen=True, slots=True)
class Priority:
    level: str  # "haute", "moyenne", "info": a CSS class and a word on the page
    title: str
    text: str
    count: int
    params: dict[str, str]  # the rejects list's filter that shows these events (empty: no link)


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Envelopes not yet handed to DUDE after a failed post, or held by its outage (`queries.envelopes_undelivered`)."""

    count: int
    next_attempt: datetime | None = None  # the soonest, in the console's zone; None: due now (or unknown)


def priorities(open_rejects: list[CodeCount], waiting: dict[str, int],
               undelivered: Undelivered | None = None, *, paused: bool = False, unsent: int = 0) -> list[Priority]:
    """What to handle first. ``unsent``: envelopes sealed and never posted, nothing having failed
    (`queries.envelopes_unsent`): they go with the run in progress or the next one, DUDE owes nothing on them."""
    out: list[Priority] = []
    by_code: Counter = Counter()
    for item in open_rejects:
        if item.code:
            by_code[item.code] += item.count
    for code, count in sorted(by_code.items()):
        known = RejectCode.__members__.get(code)
        if known is not None and known.level is Level.ENVELOPE:
            out.append(Priority("haute", f"{code} — {known.label}", known.hint,
                                count, {"code": code}))
    out.sort(key=lambda p: -p.count)
    no_report = sum(i.count for i in open_rejects if i.state == EventState.SANS_REPONSE.value)
    if no_report:  # the count follows the title, as for the codes ("… — 209 événements"): not in it twice
        out.append(Priority("haute", "Événements sans compte rendu du DUDE",
                            "Le DUDE n'a pas rendu compte de ces événements dans le délai. Demander à "
                            "l'intégrateur de vérifier auprès du DUDE qu'ils n'ont pas été traités, puis les renvoyer.",
                            no_report, {"etat": EventState.SANS_REPONSE.value}))
    business = sorted(((code, count) for code, count in by_code.items()
                       if (known := RejectCode.__members__.get(code)) is not None and known.level is Level.EVENT),
                      key=lambda item: (-item[1], item[0]))
    for code, count in business[:TOP_BUSINESS]:
        known = RejectCode(code)
        out.append(Priority("moyenne", f"{code} — {known.label}", known.hint, count, {"code": code}))
    pending = sum(waiting.get(s, 0) for s in (*AWAITING_RECEIPT, EnvelopeState.RECU.value))
    held = sum(waiting.get(s, 0) for s in AWAITING_RECEIPT)
    if paused and held:
        pending -= held
        out.append(Priority("info", f"{plural(held, 'lot pas encore remis', 'lots pas encore remis')} au DUDE",
                            "L'envoi au DUDE est suspendu : la passerelle les garde et les envoie, sous le même "
                            "IdLot, dès la reprise de l'envoi. Leurs événements ne sont pas perdus : ne pas les "
                            "renvoyer.", held, {}))
    elif undelivered is not None and undelivered.count:
        pending -= undelivered.count
        when = (f" ; prochain essai le {undelivered.next_attempt:%d/%m à %H:%M}" if undelivered.next_attempt
                else " ; prochain essai à la prochaine tournée de la passerelle")
        out.append(Priority("info", f"{plural(undelivered.count, 'lot pas encore remis', 'lots pas encore remis')} "
                            "au DUDE",
                            "La passerelle n'a pas pu les remettre au DUDE à la dernière tentative (DUDE injoignable, "
                            f"ou une erreur de son côté) : elle les renvoie d'elle-même, sous le même IdLot{when}. "
                            "Leurs événements ne sont pas perdus : ne pas les renvoyer. Si cela dure plus d'une "
                            "nuit, prévenir l'intégrateur.", undelivered.count, {}))
    if unsent and not paused:  # while paused, the held ones above count them
        pending -= unsent
        out.append(Priority("info", f"{plural(unsent, 'lot signé', 'lots signés')}, pas encore envoyé"
                            f"{'s' if unsent > 1 else ''} au DUDE",
                            "Ils partent avec l'exécution en cours, ou la prochaine (la nuit, ou la prochaine tournée "
                            "de la passerelle), sous leur IdLot. Leurs événements ne sont pas perdus : ne pas les "
                            "renvoyer.", unsent, {}))
    if pending > 0:
        out.append(Priority("info", f"{plural(pending, 'lot attend', 'lots attendent')} le compte rendu du DUDE",
                            "Rien à faire pour l'instant : leurs événements ne sont ni acceptés ni rejetés. "
                            "Ne pas les renvoyer avant le compte rendu.", pending, {}))
    return out
