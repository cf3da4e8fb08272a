"""The emulator's jobseeker file (brief §4): format, tolerance, and name comparison."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest

from adapters.dude.emulator.registry import Registry, name_key
from gateway.errors import ConfigurationError

HEADER = "identifiant_pe;nom;prenom;date_naissance;code_ml;date_debut_cotraitance;date_fin_cotraitance\n"


def test_reads_the_brief_format_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "registre.csv"
    path.write_bytes(("\ufeff" + HEADER + "1234567A;Lefèvre;Zoé;06/05/2004;12345;01/01/2024;\n"
                      "7654321B;Martin;Paul;01/02/2005;54321;01/01/2024;31/12/2024\n").encode("utf-8"))
    registry = Registry.from_csv(path)
    assert len(registry) == 2 and registry.skipped == ()
    zoe = registry.get("1234567A")
    assert zoe is not None
    assert (zoe.code_ml, zoe.date_naissance, zoe.date_fin_cotraitance) == ("12345", date(2004, 5, 6), None)
    assert registry.get("7654321B").date_fin_cotraitance == date(2024, 12, 31)
    assert registry.get("0000000Z") is None


def test_columns_are_found_by_name_and_extra_columns_ignored() -> None:
    text = ("commentaire;date_fin_cotraitance;code_ml;identifiant_pe;nom;prenom;date_naissance;"
            "date_debut_cotraitance\nvu;;12345;1234567A;Lefèvre;Zoé;06/05/2004;01/01/2024\n")
    assert Registry.from_text(text).get("1234567A").code_ml == "12345"


def test_malformed_lines_are_skipped_with_their_line_number_never_their_content(
        caplog: pytest.LogCaptureFixture) -> None:
    text = HEADER + (
        "1234567A;Lefèvre;Zoé;06/05/2004;12345;01/01/2024;\n"      # line 2: good
        "1234567B;Secret;Nom;2004-05-06;12345;01/01/2024;\n"       # line 3: ISO birth date
        "1234567C;Martin;Paul;31/02/2005;12345;01/01/2024;\n"      # line 4: no such date
        "\n"                                                       # line 5: blank, ignored
        "123;Martin;Paul;01/02/2005;12345;01/01/2024;\n"           # line 6: bad identifier
        "1234567D;Martin;Paul;01/02/2005;1234;01/01/2024;\n"       # line 7: bad code_ml
        "1234567E;Martin;Paul;01/02/2005;12345;01/01/2024;01/01/2023\n"  # line 8: ends before it begins
        "1234567A;Lefèvre;Zoé;06/05/2004;12345;01/01/2024;\n"      # line 9: duplicate
        "1234567F;Petit;Hugo;01/02/2005;12345;01/01/2024;;extra\n"  # line 10: too many fields
        "1234567G;;Hugo;01/02/2005;12345;01/01/2024;\n"            # line 11: empty name
    )
    with caplog.at_level(logging.WARNING):
        registry = Registry.from_text(text)
    assert [p.identifiant_pe for p in registry] == ["1234567A"]
    assert [s.line for s in registry.skipped] == [3, 4, 6, 7, 8, 9, 10, 11]
    assert "line 3" in caplog.text and "Secret" not in caplog.text


def test_a_large_registry_keeps_the_first_line_of_each_jobseeker_wherever_the_second_one_is(tmp_path: Path) -> None:
    """Read in batches, kept on disk: a duplicate thousands of lines below the first one, or an
    undecodable byte near the end, is still reported with its own line number."""
    rows = [f"{n:08d}A;Nom{n};Prénom;06/05/2004;12345;01/01/2024;\n" for n in range(12_000)]
    rows.insert(11_000, "00000002A;Autre;Personne;01/01/2001;54321;01/01/2024;\n")  # line 11,002
    path = tmp_path / "registre.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    registry = Registry.from_csv(path)
    assert len(registry) == 12_000
    assert [(s.line, s.reason) for s in registry.skipped] == [(11_002, "identifiant 00000002A déjà présent plus haut")]
    assert registry.get("00000002A").nom == "Nom2" and registry.get("00000002A").code_ml == "12345"
    assert [p.identifiant_pe for p in registry][:3] == ["00000000A", "00000001A", "00000002A"]
    assert len(list(registry)) == 12_000
    found = registry.find(["00011999A", "00000005A", "0000000ZZ", "00000005A"])
    assert sorted(found) == ["00000005A", "00011999A"] and found["00011999A"].nom_key == "nom11999"
    assert "00011999A" in registry and "0000000ZZ" not in registry

    with path.open("ab") as out:
        out.write("00099999A;Lefèvre;Zoé;06/05/2004;12345;01/01/2024;\n".encode("latin-1"))  # line 12,003
    with pytest.raises(ConfigurationError, match=r"not UTF-8 \(line 12003\)"):
        Registry.from_csv(path)


def test_a_missing_column_or_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="date_fin_cotraitance"):
        Registry.from_text("identifiant_pe;nom;prenom;date_naissance;code_ml;date_debut_cotraitance\n")
    with pytest.raises(ConfigurationError, match="does not exist"):
        Registry.from_csv(tmp_path / "absent.csv")
    (tmp_path / "latin1.csv").write_bytes((HEADER + "1234567A;Lefèvre;Zoé;06/05/2004;12345;01/01/2024;\n")
                                          .encode("latin-1"))
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        Registry.from_csv(tmp_path / "latin1.csv")


def test_names_and_birth_dates_stay_out_of_repr() -> None:
    person = Registry.from_text(HEADER + "1234567A;Lefèvre;Zoé;06/05/2004;12345;01/01/2024;\n").get("1234567A")
    assert "Lef" not in repr(person) and "2004" not in repr(person) and "1234567A" in repr(person)


@pytest.mark.parametrize(("a", "b"), [
    ("Lefèvre", "LEFEVRE"),
    ("Jean-Éric", "jean eric"),
    ("Jean-Éric", "JEAN  ÉRIC"),
    ("D'Artagnan", "d’artagnan"),
    ("N’Diaye", "N DIAYE"),
    ("Cœur", "COEUR"),
    ("Strauß", "STRAUSS"),
    ("  Zoé ", "ZOE"),
], ids=lambda v: v)
def test_names_compare_without_case_accents_or_separator_style(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)


@pytest.mark.parametrize(("a", "b"), [("Martin", "Martine"), ("Jean-Éric", "Jeaneric"), ("Zoé", "Zoë Ann")])
def test_different_names_stay_different(a: str, b: str) -> None:
    assert name_key(a) != name_key(b)


def test_reads_the_sample_registry_kept_with_the_fixtures() -> None:
    """A registry written by someone else (the fixtures' sample) loads whole."""
    sample = Path(__file__).resolve().parents[4] / "fixtures" / "dude" / "registre-exemple.csv"
    if not sample.exists():
        pytest.skip("no sample registry in fixtures/dude")
    registry = Registry.from_csv(sample)
    assert len(registry) > 0 and registry.skipped == ()
