"""Test data factories: one place that knows what a valid event looks like."""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.codes import EventType, Operation
from gateway.domain import Event, to_record

#: One valid set of typed fields per event type (brief §3).
TYPED = {
    EventType.ENT: {"modalite": "IND", "premier_entretien": True},
    EventType.PFO: {"formacode": "22435", "organisme": "AFPA Lyon"},
    EventType.EFO: {"formacode": "22435", "organisme": "AFPA Lyon", "date_debut": date(2026, 11, 2),
                    "date_fin": date(2027, 3, 31)},
    EventType.MER: {"num_offre": "123456A", "siret": "73282932000074", "code_rome": "G1602", "resultat": "ATT"},
    EventType.PPR: {"code_prestation": "ABC12"},
    EventType.EPR: {"code_prestation": "ABC12", "date_debut": date(2026, 11, 3)},
    EventType.PEM: {"type_contrat": "CDD", "siret": "73282932000074", "date_debut": date(2026, 10, 1),
                    "date_fin": date(2026, 12, 31)},
    EventType.SOR: {"motif": "EMP"},
    EventType.MAN: {"motif": "ABS"},
    EventType.CPA: {"parcours": "ACC"},
}


def make_event(type_: EventType = EventType.ENT, *, id_evenement: str = "1001", code_ml: str = "69001",
               operation: Operation = Operation.CREATE, **overrides: Any) -> Event:
    values: dict[str, Any] = dict(
        code_ml=code_ml, id_evenement=id_evenement, identifiant_pe="1234567A", nom="Lefèvre", prenom="Zoé",
        date_naissance=date(2004, 5, 6), conseiller="CONS01", type_evenement=type_,
        date_evenement=date(2026, 11, 20), operation=operation,
    )
    if operation is not Operation.CANCEL:
        values.update(TYPED[type_])
    values.update(overrides)
    return Event(**values)


def make_record(type_: EventType = EventType.ENT, **overrides: Any) -> dict:
    """A stored record (`to_record`), as the envelope builder takes it."""
    record = to_record(make_event(type_, **overrides))
    record.pop("operation", None)
    return record


P3_COLUMNS = ("id_evenement", "code_ml", "num_dossier", "identifiant_pe", "nom", "prenom", "date_naissance", "nir",
              "conseiller", "type_evenement", "operation", "date_evenement", "date_debut", "date_fin", "modalite",
              "premier_entretien", "formacode", "organisme", "code_prestation", "num_offre", "siret", "code_rome",
              "type_contrat", "resultat", "parcours", "motif", "commentaire", "saisi_le")


def p3_line(type_: EventType = EventType.ENT, **overrides: str) -> dict[str, str]:
    """One Parcours 3 export line (strings, P3 formats) for a valid event of ``type_``."""
    event = make_event(type_)
    line = {"id_evenement": event.id_evenement, "code_ml": event.code_ml, "num_dossier": "40001",
            "identifiant_pe": event.identifiant_pe, "nom": event.nom, "prenom": event.prenom,
            "date_naissance": event.date_naissance.strftime("%d/%m/%Y"), "nir": "204056912345678",
            "conseiller": event.conseiller, "type_evenement": type_.value, "operation": "C",
            "date_evenement": event.date_evenement.strftime("%d/%m/%Y"), "saisi_le": "20/11/2026 10:15:00"}
    for name, value in TYPED[type_].items():
        if isinstance(value, bool):
            line[name] = "O" if value else "N"
        elif isinstance(value, date):
            line[name] = value.strftime("%d/%m/%Y")
        else:
            line[name] = value
    line.update(overrides)
    return line


def write_export(path, lines: list[dict[str, str]], *, encoding: str = "cp1252"):
    """Write a Parcours 3 export (``;``, CRLF, header) the way Parcours 3 does."""
    import csv

    with open(path, "w", encoding=encoding, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=P3_COLUMNS, delimiter=";", lineterminator="\r\n",
                                extrasaction="raise")
        writer.writeheader()
        for line in lines:
            writer.writerow({k: line.get(k, "") for k in P3_COLUMNS})
    return path


REGISTRY_HEADER = "identifiant_pe;nom;prenom;date_naissance;code_ml;date_debut_cotraitance;date_fin_cotraitance"


def write_registry(path, people: list[tuple[str, str, str, str, str]], *, since: str = "01/01/2025"):
    """The emulator's jobseeker file: (identifiant_pe, nom, prenom, date_naissance JJ/MM/AAAA, code_ml)."""
    rows = [REGISTRY_HEADER] + [f"{pe};{nom};{prenom};{born};{ml};{since};" for pe, nom, prenom, born, ml in people]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def json_event(type_: EventType = EventType.ENT, **overrides: Any) -> dict[str, Any]:
    """One valid event as a partner sends it to the API (P3 column names, ISO dates); an override
    of ``None`` leaves the field out."""
    item: dict[str, Any] = to_record(make_event(type_))
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not None}
