"""What a run's line on the dashboard says besides its counts, from the summary the run stored when it ended
(`gateway.pipeline.run.RunSummary.as_dict`, the ``counts`` column of ``runs``).

The line's figures are the current states of the events the run *read*. That says nothing of what some runs
did: a catch-up (``gateway run --now`` with no new export, after a night left reports owed or envelopes
unsent) reads no line, and its line was a row of zeros while it had reconciled last night's late reports or
sent its held envelopes; a night "Terminée avec erreurs" did not say which export was refused; one that ran
while sending was paused read "Terminée" and sent nothing. The command line says all of these in the run's
summary (`gateway.cli.report.render_summary`); here they are said in the same terms, under the line.

Scope: the summary counts every mission locale. Its report and resend counts are shown to admins only (as the
API shows the stored summary to admins only, `gateway.api.routes.runs`); a support user is told of a refused
export named for one of their missions locales (``P3_<code>_…``) and of the pause, which name nobody's events.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.console.labels import plural
from gateway.domain import export_code_ml

#: The code and file name `gateway.errors.GatewayError` puts before its message ("[P3_EMPTY] P3_….csv: …"):
#: the line already names both.
_PREFIX = re.compile(r"^\[[A-Z0-9_]+\]\s*")


def _summary(counts: str | None) -> dict[str, Any]:
    try:
        data = json.loads(counts or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _file_error(item: dict[str, Any]) -> str:
    """One refused export: its name, its code, and why, without the name again (the reader's message begins
    with the file's name, or its whole path on the gateway's disk, which says nothing to support staff)."""
    name, message = str(item.get("file", "")), _PREFIX.sub("", str(item.get("message", "")))
    at = message.find(f"{name}: ")
    if at == 0 or (at > 0 and message[at - 1] in "/\\"):
        message = message[at + len(name) + 2:]
    return f"Fichier refusé : {name} ({item.get('code', '?')}) — {message.rstrip('.')}. Rien de ce fichier n'a été lu."


def run_notes(counts: str | None, scope: frozenset[str] | None) -> tuple[str, ...]:
    """French sentences for the run whose stored summary is ``counts``, as ``scope`` may read them (none for a
    run still going on, whose summary is not written yet)."""
    summary = _summary(counts)
    if "ingest" not in summary:
        return ()
    notes: list[str] = []
    lines = (summary.get("ingest") or {}).get("lines", 0)
    sending = summary.get("sending") or {}
    if scope is None:
        reports = summary.get("reports") or {}
        lots, resent = reports.get("lots", 0), sending.get("reprises", 0)
        if not lines:
            notes.append("Aucune ligne d'export lue : exécution de rattrapage." if lots or resent
                         else "Aucune ligne d'export lue.")
        if lots and not lines:  # with lines, its own reports are already in its figures
            left = "laissé" if lots <= 1 else "laissés"
            whose = (f"{left} en attente par une exécution précédente" if not summary.get("envelopes")
                     else f"de cette exécution ou {left} en attente par une précédente")
            notes.append(f"Comptes rendus du DUDE rapprochés : {plural(lots, 'lot', 'lots')} {whose} — "
                         f"{plural(reports.get('ACCEPTE', 0), 'événement accepté', 'événements acceptés')}, "
                         f"{plural(reports.get('REJETE', 0), 'rejeté', 'rejetés')} ; ils comptent dans la ligne de "
                         "l'exécution qui les a lus.")
        if resent:
            # "repris", the command line's word (`gateway.cli.report`): posted again, not necessarily received.
            notes.append(plural(resent, "lot d'une exécution précédente repris", "lots d'exécutions précédentes repris")
                         + " (envoi au DUDE sous le même IdLot) ; leurs événements comptent dans la ligne de "
                         "l'exécution qui les a lus.")
    for item in summary.get("file_errors") or []:
        if scope is None or export_code_ml(str(item.get("file", ""))) in scope:
            notes.append(_file_error(item))
    if summary.get("sending_paused"):
        notes.append("L'envoi au DUDE était suspendu : cette exécution n'a rien envoyé ; ses lots partent à la "
                     "reprise de l'envoi, sous le même IdLot.")
    return tuple(notes)
