"""Business rejects E01–E10 end to end: envelope in, signed report out, ledger consulted (brief §4)."""

from __future__ import annotations

import uuid

PEM = {"type_evenement": "PEM", "modalite": None, "premier_entretien": None, "type_contrat": "CDD",
       "siret": "73282932000074", "date_debut": "2025-05-01", "date_fin": "2025-08-31"}
MARTIN = {"identifiant_pe": "1000003C", "nom": "Martin", "prenom": "Paul", "date_naissance": "2005-02-01"}
BERNARD = {"identifiant_pe": "1000004D", "nom": "Bernard", "prenom": "Léa", "date_naissance": "2004-10-10"}
PETIT = {"identifiant_pe": "1000005E", "nom": "Petit", "prenom": "Hugo", "date_naissance": "2010-03-20"}


def codes(report) -> dict[str, str | None]:
    return {r.key: (r.code.value if r.code else None) for r in report.results}


def test_each_business_code_from_a_crafted_event(send, make_event) -> None:
    crafted = {
        None: make_event(),
        "E01": make_event(identifiant_pe="9999999Z"),
        "E02": make_event(**MARTIN),                                  # delegated to ML 54321
        "E02-fin": make_event(**BERNARD),                             # delegation ended 31/12/2024
        "E03": make_event(nom="Durand"),
        "E04": make_event(date_evenement="2025-06-16"),               # tomorrow
        "E04-avant": make_event(date_evenement="2023-12-31"),         # before the delegation
        "E07": make_event(**PETIT, date_evenement="2025-03-19"),      # 14 years old
        "E08": make_event(**{**PEM, "siret": "73282932000075"}),
        "E09": make_event(**{**PEM, "date_fin": None}),               # a CDD without its end date
        "E10": make_event(**{**PEM, "date_fin": "2025-04-30"}),
    }
    report = send(list(crafted.values()))
    got = codes(report)
    for expected, event in crafted.items():
        key = f"12345-{event.record['id_evenement']}"
        assert got[key] == (expected.split("-")[0] if expected else None), expected
    assert (report.accepted_count, report.rejected_count) == (1, 10)
    for result in report.results:
        if not result.accepted:
            assert result.message and all(s not in result.message for s in ("Dupont", "Durand", "2004-05-06"))


def test_e05_same_key_and_version_with_other_content(send, make_event, emulator) -> None:
    first = make_event(modalite="IND")
    send([first])
    changed = make_event(id_evenement=first.record["id_evenement"], modalite="TEL")
    (result,) = send([changed]).results
    assert (result.accepted, result.code) == (False, "E05")
    key = f"12345-{first.record['id_evenement']}"
    (entry,) = emulator.ledger_events(key)
    assert (entry["status"], entry["times_received"], entry["times_applied"]) == ("ACCEPTE", 2, 1)


def test_a_duplicate_in_a_later_lot_is_accepted_and_not_applied_again(send, make_event, emulator) -> None:
    event = make_event()
    assert send([event]).accepted_count == 1
    (again,) = send([event]).results  # a resend under a new IdLot, same id, version and content
    assert again.accepted and again.code is None
    summary = emulator.ledger_summary()
    assert (summary["receptions"], summary["events"], summary["events_applied"]) == (2, 1, 1)
    assert summary["events_applied_more_than_once"] == []
    (entry,) = emulator.ledger_events(f"12345-{event.record['id_evenement']}")
    assert (entry["times_received"], entry["times_applied"], len(entry["lots"])) == (2, 1, 2)


def test_m_of_an_unknown_key_is_e06(send, make_event) -> None:
    (result,) = send([make_event(version=2, operation="M")]).results
    assert result.code == "E06"


def test_c_then_m_in_one_envelope_are_both_accepted(send, make_event, emulator) -> None:
    create = make_event(modalite="IND")
    modify = make_event(id_evenement=create.record["id_evenement"], modalite="TEL", version=2, operation="M")
    cancel = make_event(id_evenement=create.record["id_evenement"], version=3, operation="A",
                        modalite=None, premier_entretien=None)
    report = send([create, modify, cancel])
    assert [(r.version, r.accepted) for r in report.results] == [(1, True), (2, True), (3, True)]
    assert [e["status"] for e in emulator.ledger_events(f"12345-{create.record['id_evenement']}")] == ["ACCEPTE"] * 3


def test_m_after_a_rejected_c_is_e06_in_the_same_envelope(send, make_event) -> None:
    create = make_event(identifiant_pe="9999999Z")
    modify = make_event(id_evenement=create.record["id_evenement"], version=2, operation="M")
    assert [r.code for r in send([create, modify]).results] == ["E01", "E06"]


def test_a_rejected_version_is_judged_again_when_sent_again(send, make_event, emulator) -> None:
    """Never applied, so not a duplicate: the fixed content under the same (key, version) is accepted."""
    wrong = make_event(nom="Durand")
    assert send([wrong]).results[0].code == "E03"
    fixed = make_event(id_evenement=wrong.record["id_evenement"], nom="Dupont")
    assert send([fixed]).results[0].accepted
    (entry,) = emulator.ledger_events(f"12345-{wrong.record['id_evenement']}")
    assert (entry["status"], entry["code"], entry["times_received"], entry["times_applied"]) == ("ACCEPTE", None, 2, 1)


def test_names_compare_without_case_accents_or_separators(send, make_event) -> None:
    report = send([
        make_event(identifiant_pe="1000002B", nom="LEFEVRE D HOTE", prenom="jean eric", date_naissance="2003-03-15"),
        make_event(identifiant_pe="1000002B", nom="lefèvre-d’hôte", prenom="JEAN-ÉRIC", date_naissance="2003-03-15"),
        make_event(nom="DUPONT", prenom="ZOE"),
    ])
    assert report.rejected_count == 0, [(r.code, r.message) for r in report.results]


def test_the_report_lists_every_event_in_document_order(send, make_event) -> None:
    events = [make_event(identifiant_pe="9999999Z" if i % 3 == 0 else "1000001A") for i in range(9)]
    report = send(events)
    assert [r.key for r in report.results] == [f"12345-{e.record['id_evenement']}" for e in events]
    assert (report.accepted_count, report.rejected_count) == (6, 3)


def test_ledger_counts_by_code(send, make_event, emulator) -> None:
    send([make_event(), make_event(identifiant_pe="9999999Z"), make_event(nom="Durand")], id_lot=str(uuid.uuid4()))
    summary = emulator.ledger_summary()
    assert summary["events_by_status"] == {"ACCEPTE": 1, "REJETE": 2}
    assert summary["events_by_code"] == {"E01": 1, "E03": 1}
    assert summary["receptions_by_code"] == {"E01": 1, "E03": 1}
