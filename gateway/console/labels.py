"""French words for what the console shows: Parcours 3 columns, their coded values, run outcomes.

Support staff know the fields by their Parcours 3 names and screens, not by the gateway's (brief §3): each
column keeps its export name (what an integrator greps for) beside a French label (what a counsellor
reads). Reject codes and states have their labels in `gateway.codes`, the one catalogue.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.codes import (
    EventType,
    Modalite,
    MotifManquement,
    MotifSortie,
    Operation,
    Parcours,
    RejectCode,
    Resultat,
    TypeContrat,
)

#: Parcours 3 export columns in the export's order (brief §3), with their French labels.
FIELD_LABELS: dict[str, str] = {
    "id_evenement": "N° de l'événement",
    "code_ml": "Code de la mission locale",
    "num_dossier": "N° de dossier du jeune",
    "identifiant_pe": "Identifiant France Travail",
    "nom": "Nom",
    "prenom": "Prénom",
    "date_naissance": "Date de naissance",
    "conseiller": "Code du conseiller",
    "type_evenement": "Type d'événement",
    "operation": "Opération",
    "date_evenement": "Date de l'événement",
    "date_debut": "Date de début",
    "date_fin": "Date de fin",
    "modalite": "Modalité de l'entretien",
    "premier_entretien": "Premier entretien après l'orientation",
    "formacode": "Formacode (formation)",
    "organisme": "Organisme de formation ou de prestation",
    "code_prestation": "Code de la prestation",
    "num_offre": "N° de l'offre d'emploi",
    "siret": "SIRET de l'employeur",
    "code_rome": "Code ROME (métier)",
    "type_contrat": "Type de contrat",
    "resultat": "Résultat de la mise en relation",
    "parcours": "Parcours",
    "motif": "Motif",
    "commentaire": "Commentaire",
    "saisi_le": "Saisi le",
}

_CODED = {"modalite": Modalite, "type_contrat": TypeContrat, "resultat": Resultat, "parcours": Parcours,
          "operation": Operation, "type_evenement": EventType}
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_ISO_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")

#: States in a word, for tables (`EventState.label` says more, on the event's page).
STATE_SHORT = {"RECU": "Reçu", "INVALIDE": "Invalide", "EN_ATTENTE": "En attente", "ENVOYE": "Envoyé",
               "TRANSMIS": "Transmis", "ACCEPTE": "Accepté", "REJETE": "Rejeté", "SANS_REPONSE": "Sans réponse",
               "CORRIGE": "Corrigé", "CLOS": "Clos"}
RUN_OUTCOMES = {"EN_COURS": "En cours", "TERMINE": "Terminée", "TERMINE_AVEC_ERREURS": "Terminée avec erreurs",
                "TERMINE_SANS_ACCUSE": "Terminée, lots sans accusé du DUDE", "ECHEC": "Échec"}
RUN_TRIGGERS = {"schedule": "planification", "scheduler": "planification", "cli": "ligne de commande",
                "api": "API", "demo": "démonstration", "reprise": "reprise d'une nuit inachevée"}

#: How a report came back, as `gateway.pipeline.reconcile` records it (``via``, in the causes of the events'
#: and envelopes' histories): the gateway asked DUDE for it, or DUDE pushed it to the gateway's callback. The
#: store keeps the word the pipeline and its logs use; support staff read French.
REPORT_WAYS = {"polling": "demandé au DUDE", "callback": "transmis par le DUDE"}
_REPORT_CAUSE = re.compile(r"(compte rendu [^()]*)\((polling|callback)\)")

#: Words a reject message may use for a field, besides its column name (the DUDE writes French).
_FIELD_WORDS = {"prénom": "prenom", "date de naissance": "date_naissance", "date de fin": "date_fin",
                "date de début": "date_debut", "date de l'événement": "date_evenement", "siret": "siret",
                "nom": "nom", "identifiant demandeur d'emploi": "identifiant_pe"}
#: Codes whose message names exactly which of the code's usual fields is wrong (E03: "nom, prénom").
_NARROWING = frozenset({RejectCode.E03})


#: Who acted, by the prefix `gateway.support`'s callers give an actor (``console:`` a person in the console,
#: ``api:`` a client of the API; ``cli:`` the login that typed ``gateway sending pause``), said the way the
#: console names its users: the name first.
ACTOR_KINDS = {"console": "console", "api": "API", "cli": "ligne de commande"}


def actor_label(actor: str | None) -> str:
    """``console:sup62899`` as ``sup62899 (console)``; no actor is the gateway itself."""
    if not actor:
        return "la passerelle"
    kind, _, name = actor.partition(":")
    return f"{name} ({ACTOR_KINDS[kind]})" if name and kind in ACTOR_KINDS else actor


def cause_label(cause: str, actor: str | None = None) -> str:
    """A history row's cause in French: a report's ``(polling)`` or ``(callback)`` said in words, and the row's
    own actor, which `gateway.support` writes into its causes ("clos par console:sup62899 : …"), named as
    `actor_label` does. Only a cause the reconciliation wrote is touched for the report (it begins with
    "compte rendu"), and only the first mention of the actor, never a person's close comment after it."""
    if cause.startswith("compte rendu "):
        return _REPORT_CAUSE.sub(lambda m: f"{m[1]}({REPORT_WAYS[m[2]]})", cause, count=1)
    if actor and actor in cause:
        return cause.replace(actor, actor_label(actor), 1)
    return cause


#: What a failed send's error text (`gateway.pipeline.dispatch`, the envelope's ``last_error``, in English for the
#: integrator's logs) means, in the words of support staff; the first that matches.
_SEND_ERRORS = (
    (re.compile(r"HTTP (5\d\d)"), "le serveur du DUDE a répondu par une erreur (HTTP {0})"),
    (re.compile(r"no answer in time"), "le DUDE n'a pas répondu à temps"),
    (re.compile(r"ConnectError|ConnectTimeout|Connection refused|Name or service"),
     "la passerelle n'a pas pu joindre le DUDE (connexion impossible)"),
    (re.compile(r"^accusé de réception refusé"), "l'accusé de réception du DUDE n'a pas passé les contrôles de la "
                                                 "passerelle (signature, certificat ou format)"),
    (re.compile(r"^receipt for envelope"), "le DUDE a répondu par l'accusé de réception d'un autre lot"),
)


def send_error(text: str) -> str:
    """The last failed send of an envelope, said in French; the technical text is shown apart, to admins."""
    for pattern, words in _SEND_ERRORS:
        if m := pattern.search(text):
            return words.format(*m.groups())
    return "erreur technique pendant l'envoi"


#: An IdLot: a UUID as the gateway writes it (lowercase; `gateway.pipeline.dispatch`).
ID_LOT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def envelopes_named(cause: str, *, besides: str) -> list[str]:
    """The IdLots a history cause names, but ``besides``: where a quarantined envelope's events went
    (`gateway.pipeline.quarantine` writes them in its own history: "… répartis dans les lots A (n), B (n)"),
    which its history keeps after the purge has removed the documents."""
    return [i for i in dict.fromkeys(ID_LOT.findall(cause)) if i != besides]


#: A column name as pre-flight writes it in a message, or a value it quotes (« … », left as it was typed).
_COLUMN_IN_MESSAGE = re.compile(r"«[^»]*»|(?<![\w'])(" + "|".join(sorted(FIELD_LABELS, key=len, reverse=True))
                                + r")(?![\w'])")


def reject_message(message: str | None, state: str | None) -> str:
    """A reject message as support staff read it. Pre-flight's (state ``INVALIDE``) name the export's columns
    ("Champ obligatoire absent : date_evenement."), which the store keeps as written for integrators and the
    API; the console says their French labels ("… : date de l'événement."). DUDE's messages are its own words,
    already French: shown as they came."""
    if not message or state != "INVALIDE":
        return message or ""

    def label(m: re.Match) -> str:
        if m[1] is None:
            return m[0]
        text = FIELD_LABELS[m[1]]
        return text[0].lower() + text[1:] if m.start() > 0 and text[1:2].islower() else text

    return _COLUMN_IN_MESSAGE.sub(label, message)


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name, name)


def ordered_fields(fields: dict[str, Any]) -> list[str]:
    """The event's columns in the export's order, unknown ones last."""
    known = [name for name in FIELD_LABELS if name in fields]
    return known + sorted(name for name in fields if name not in FIELD_LABELS)


def value_label(name: str, value: Any, fields: dict[str, Any]) -> str:
    """A stored value as a counsellor reads it: dates JJ/MM/AAAA, codes with their label, Oui/Non."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or (name == "premier_entretien" and value in ("O", "N", "True", "False")):
        return "Oui" if value in (True, "O", "True") else "Non"
    text = str(value)
    if name.startswith("date") and (m := _ISO_DATE.fullmatch(text)):
        return f"{m[3]}/{m[2]}/{m[1]}"
    if name == "saisi_le" and (m := _ISO_TIMESTAMP.fullmatch(text)):
        return f"{m[3]}/{m[2]}/{m[1]} {m[4]}"
    enum = _CODED.get(name)
    if name == "motif":
        enum = MotifManquement if fields.get("type_evenement") == EventType.MAN.value else MotifSortie
    if enum is not None:
        try:
            return f"{text} — {enum(text).label}"
        except ValueError:
            return text
    return text


def fields_in_cause(code: str | None, message: str | None) -> list[str]:
    """The Parcours 3 columns a reject points at: the code's usual fields and those its message names.

    Pre-flight and the DUDE name the column at fault in their messages ("Champ obligatoire absent … :
    modalite", "Identité différente du dossier du DUDE : prénom"); the code's own list is the fallback.
    """
    known = _reject(code)
    usual = list(known.fields) if known else []
    named: list[str] = []
    if message:
        low = message.lower()
        for name in FIELD_LABELS:
            if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", low):
                named.append(name)
        for words, name in _FIELD_WORDS.items():
            if re.search(rf"(?<![\w']){re.escape(words)}(?![\w])", low) and name not in named:
                named.append(name)
    if known in _NARROWING and named:
        chosen = [n for n in usual if n in named] or named
    else:
        chosen = usual + [n for n in named if n not in usual]
    return [n for n in FIELD_LABELS if n in chosen] + [n for n in chosen if n not in FIELD_LABELS]


def _reject(code: str | None) -> RejectCode | None:
    try:
        return RejectCode(code) if code else None
    except ValueError:
        return None


def reject_info(code: str | None) -> RejectCode | None:
    """The catalogue entry of a stored code, or ``None`` (no code, or one the catalogue does not know)."""
    return _reject(code)


def number(value: int | None) -> str:
    """A count as French typography writes it: a narrow no-break space between thousands (``20 000``)."""
    return "" if value is None else f"{value:,}".replace(",", "\u202f")


def plural(count: int, one: str, many: str) -> str:
    """``count`` and its noun, agreed as French agrees it: 0 and 1 in the singular ("0 événement remis")."""
    return f"{number(count)} {one if count <= 1 else many}"
