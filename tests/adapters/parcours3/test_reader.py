"""Reading Parcours 3 exports (brief §3): encodings, columns by name, quoted fields, broken lines,
``nir`` dropped, and memory that does not grow with the file."""

from __future__ import annotations

import logging
import os
import tracemalloc
from pathlib import Path

import pytest

from adapters.parcours3.reader import REQUIRED_COLUMNS, read_export
from gateway.errors import ExportFileError

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "parcours3"
HEADER = ("id_evenement;code_ml;num_dossier;identifiant_pe;nom;prenom;date_naissance;conseiller;"
          "type_evenement;operation;date_evenement;parcours;organisme;commentaire")


def line(n: int, *, organisme: str = "", commentaire: str = "") -> str:
    return (f"{n};69001;4000{n};1234567A;Lefèvre;Élodie;14/03/2005;CLB01;CPA;C;20/11/2026;ACC;"
            f"{organisme};{commentaire}")


def write(tmp_path: Path, body: str, *, name: str = "export.csv", encoding: str = "cp1252",
          newline: str = "\r\n") -> Path:
    path = tmp_path / name
    path.write_bytes(body.replace("\n", newline).encode(encoding, "surrogateescape"))
    return path


def records(path: Path, **options):
    return list(read_export(path, **options))


# --- encodings ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "encoding"), [
    ("tous-types-valides.csv", "cp1252"),
    ("utf8-bom.csv", "utf-8-sig"),
    ("utf8-sans-bom.csv", "utf-8"),
])
def test_encoding_is_detected_and_accents_survive(name, encoding):
    reader = read_export(FIXTURES / name)
    assert reader.encoding == encoding
    got = records(FIXTURES / name)
    assert all(r.problem is None for r in got)
    assert got[0].fields["id_evenement"] in {"1001", "501"}  # the BOM is not glued to the first column
    names = {r.fields["prenom"] for r in got} | {r.fields["nom"] for r in got}
    assert names & {"Élodie", "Maëlle"}
    if name == "tous-types-valides.csv":
        assert "Lœuillet" in names  # œ exists in Windows-1252, not in Latin-1


def test_same_lines_in_utf8_with_and_without_bom_read_the_same():
    with_bom = [r.fields for r in records(FIXTURES / "utf8-bom.csv")]
    without = [r.fields for r in records(FIXTURES / "utf8-sans-bom.csv")]
    assert with_bom == without


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8", "utf-8-sig"])
def test_an_explicit_encoding_is_obeyed(tmp_path, encoding):
    path = write(tmp_path, f"{HEADER}\n{line(1, organisme='Crèche Noël')}\n",
                 encoding="utf-8" if encoding.startswith("utf") else "cp1252")
    reader = read_export(path, encoding=encoding)
    assert reader.encoding == encoding
    assert [r.fields["organisme"] for r in reader] == ["Crèche Noël"]


def test_an_unknown_encoding_is_refused(tmp_path):
    path = write(tmp_path, f"{HEADER}\n")
    with pytest.raises(ExportFileError) as info:
        read_export(path, encoding="latin-9")
    assert info.value.code == "P3_ENCODING"


def test_a_line_that_does_not_decode_is_a_problem_and_reading_goes_on(tmp_path):
    illegible = line(2, commentaire="caract\udc81re")  # written as the byte 0x81
    path = write(tmp_path, f"{HEADER}\n{line(1)}\n{illegible}\n{line(3)}\n")
    got = records(path)
    assert [(r.line, r.problem is None) for r in got] == [(2, True), (3, False), (4, True)]
    assert "cp1252" in got[1].problem
    assert got[1].fields["id_evenement"] == "2"  # the columns are still where they were


def test_utf8_appearing_after_the_sniffed_sample_gives_a_warning(tmp_path):
    filler = "\n".join(line(n).replace("Lefèvre", "Lefevre").replace("Élodie", "Elodie")
                       for n in range(1, 800))
    path = write(tmp_path, f"{HEADER}\n{filler}\n{line(900)}\n", encoding="utf-8")
    assert path.stat().st_size > 64 * 1024
    reader = read_export(path)
    assert reader.encoding == "cp1252"  # all the brief's rule can see is ASCII
    last = list(reader)[-1]
    assert last.fields["nom"] == "LefÃ¨vre"
    assert any("UTF-8" in warning for warning in reader.warnings)


# --- header and columns -------------------------------------------------------------------

def test_columns_are_found_by_name_whatever_their_order_and_case():
    reader = read_export(FIXTURES / "colonnes-desordre-et-inconnue.csv")
    got = list(reader)
    assert [r.fields["id_evenement"] for r in got] == ["4001", "4002", "4003"]
    assert got[0].fields["code_ml"] == "69001"
    assert got[0].fields["type_evenement"] == "ENT"
    assert got[0].fields["date_evenement"] == "20/11/2026"
    assert "libelle_ml" not in got[0].fields and "date_export" not in got[0].fields
    assert set(REQUIRED_COLUMNS) <= set(reader.columns)


def test_unknown_columns_are_warned_about_by_name_only(caplog):
    with caplog.at_level(logging.WARNING):
        reader = read_export(FIXTURES / "colonnes-desordre-et-inconnue.csv")
    assert reader.warnings == ["Colonne inconnue ignorée : « libelle_ml ».",
                               "Colonne inconnue ignorée : « date_export »."]
    logged = caplog.text
    assert "libelle_ml" in logged and "date_export" in logged
    assert "Mission locale de Lyon" not in logged  # the column's values are not logged


def test_a_file_without_its_header_line_is_refused_without_logging_its_first_record(tmp_path, caplog):
    """Its first record stands where the header should be: each value was logged as an "unknown column"
    (name, birth date, social security number) before the file was refused for its missing columns."""
    person = ("1001", "69001", "555", "1234567A", "DUPONT", "Jeanne", "12/03/2005", "1850775123456", "C1", "ENT",
              "C", "20/11/2026", "", "", "IND", "O")
    path = write(tmp_path, ";".join(person) + "\n" + line(2) + "\n")
    with caplog.at_level(logging.DEBUG), pytest.raises(ExportFileError) as info:
        read_export(path)
    assert info.value.code == "P3_COLUMN_MISSING"
    said = caplog.text + info.value.message
    assert not [value for value in ("DUPONT", "Jeanne", "12/03/2005", "1850775123456", "1234567A") if value in said]


def test_an_unknown_column_that_is_no_column_name_is_told_by_its_position(tmp_path, caplog):
    path = write(tmp_path, HEADER + ";Jeanne DUPONT 1850775123456" + "".join(f";extra_{n}" for n in range(12))
                 + "\n" + line(1) + "\n")
    with caplog.at_level(logging.WARNING):
        reader = read_export(path)
    assert reader.warnings[0] == "Colonne inconnue ignorée : en position 15."
    assert reader.warnings[1:10] == [f"Colonne inconnue ignorée : « extra_{n} »." for n in range(9)]
    assert reader.warnings[10:] == ["… et 3 autre(s) colonne(s) inconnue(s)."]
    assert "DUPONT" not in caplog.text and "1850775123456" not in caplog.text and "at position 15" in caplog.text


def test_a_missing_required_column_refuses_the_file():
    with pytest.raises(ExportFileError) as info:
        read_export(FIXTURES / "colonne-obligatoire-manquante.csv")
    assert info.value.code == "P3_COLUMN_MISSING"
    assert "date_naissance" in info.value.message
    assert info.value.path.endswith("colonne-obligatoire-manquante.csv")


def test_an_empty_file_is_refused():
    with pytest.raises(ExportFileError) as info:
        read_export(FIXTURES / "vide.csv")
    assert info.value.code == "P3_EMPTY"


def test_blank_lines_only_is_an_empty_file(tmp_path):
    with pytest.raises(ExportFileError) as info:
        read_export(write(tmp_path, "\n\n  \n"))
    assert info.value.code == "P3_EMPTY"


def test_a_header_alone_gives_no_record():
    reader = read_export(FIXTURES / "entete-seulement.csv")
    assert list(reader) == []
    assert reader.warnings == []


def test_a_column_given_twice_refuses_the_file(tmp_path):
    with pytest.raises(ExportFileError) as info:
        read_export(write(tmp_path, HEADER + ";NOM\n"))
    assert info.value.code == "P3_COLUMN_DUPLICATE"


def test_a_missing_file_is_an_export_error(tmp_path):
    with pytest.raises(ExportFileError) as info:
        read_export(tmp_path / "absent.csv")
    assert info.value.code == "P3_UNREADABLE"


@pytest.mark.parametrize("target", ["dans-le-dossier", "ailleurs", "nulle-part"])
def test_an_export_that_is_a_symbolic_link_is_refused_wherever_it_points(tmp_path, target):
    """A link in the drop folder to the gateway's key or to /etc/… was read as an export: its lines came back as
    rejects that support staff read. Whatever the link points to (another export of the folder, a file elsewhere,
    nothing), it is refused whole and never read."""
    elsewhere = tmp_path / "ailleurs"
    elsewhere.mkdir()
    targets = {"dans-le-dossier": write(tmp_path, HEADER + "\n" + line(1) + "\n", name="P3_69001_20261127.csv"),
               "ailleurs": write(elsewhere, HEADER + "\n" + line(1) + "\n", name="cle-privee.pem"),
               "nulle-part": tmp_path / "absent.csv"}
    link = tmp_path / "P3_69001_20261128.csv"
    link.symlink_to(targets[target])
    with pytest.raises(ExportFileError) as info:
        read_export(link)
    assert info.value.code == "P3_SYMLINK" and "lien symbolique" in info.value.detail
    assert "Lefèvre" not in str(info.value)


def test_a_pipe_named_like_an_export_is_refused_rather_than_waited_on(tmp_path):
    """Opened without O_NONBLOCK, a pipe put in an export's place held the run until something wrote to it."""
    pipe = tmp_path / "P3_69001_20261128.csv"
    os.mkfifo(pipe)
    with pytest.raises(ExportFileError) as info:
        read_export(pipe)
    assert info.value.code == "P3_UNREADABLE" and "pas un fichier ordinaire" in info.value.detail


def test_an_export_replaced_between_its_header_and_its_lines_is_refused_not_read_with_the_wrong_columns(tmp_path):
    """The header and the lines are read by two opens of the name. A corrected export renamed over the first
    one in between (its columns in another order) had its lines read with the first one's columns: names
    under ``id_evenement``, a mission locale's code under ``nom``."""
    path = write(tmp_path, HEADER + "\n" + line(1) + "\n", name="P3_69001_20261128.csv")
    reader = read_export(path)
    swapped = HEADER.replace("nom;prenom", "prenom;nom")
    write(tmp_path, swapped + "\n" + line(2) + "\n", name="nouveau.csv").replace(path)
    with pytest.raises(ExportFileError) as info:
        list(reader)
    assert info.value.code == "P3_UNREADABLE" and "remplacé ou modifié" in info.value.detail
    assert [r.fields["prenom"] for r in read_export(path)] == ["Lefèvre"]  # read again whole, it is right


# --- nir ------------------------------------------------------------------------------------

def test_the_nir_never_comes_out(caplog):
    nirs = ("205036912345678", "103116938212345")
    assert all(nir.encode() in (FIXTURES / "avec-nir.csv").read_bytes() for nir in nirs)
    with caplog.at_level(logging.DEBUG):
        reader = read_export(FIXTURES / "avec-nir.csv")
        got = list(reader)
    assert len(got) == 2
    assert "nir" not in reader.columns
    for record in got:
        assert "nir" not in record.fields
        assert not any(nir in repr(record) for nir in nirs)
    assert reader.warnings == []  # a known column to drop, not an unknown one
    assert not any(nir in caplog.text for nir in nirs)


# --- records: lines, quotes, broken lines -------------------------------------------------

def test_quoted_fields_keep_separators_and_line_breaks_and_lines_are_counted():
    got = records(FIXTURES / "champs-entre-guillemets.csv")
    assert [r.line for r in got] == [2, 3, 6, 7, 8]
    assert got[0].fields["organisme"] == "Greta; antenne de Vénissieux"
    assert got[1].fields["commentaire"] == "Points abordés :\r\n- logement ; budget\r\n- permis de conduire"
    assert got[2].fields["organisme"] == 'Atelier "CV" collectif'
    assert all(r.problem is None for r in got)


def test_broken_lines_are_problems_at_their_line_and_the_good_ones_go_on():
    got = records(FIXTURES / "lignes-cassees.csv")
    assert [(r.line, r.problem is not None) for r in got] == [
        (2, False), (3, True), (4, False), (5, True), (6, False), (7, True), (8, False)]
    assert "Nombre de champs" in got[1].problem
    assert got[1].fields == {} and got[3].fields == {}
    assert "illisibles" in got[5].problem
    assert [r.fields["id_evenement"] for r in got if r.problem is None] == ["9001", "9003", "9005", "9007"]


def test_an_unclosed_quote_is_cut_short_and_the_swallowed_lines_read_again(tmp_path):
    body = "\n".join([HEADER, line(1), line(2, organisme='"Greta Sud')] + [line(n) for n in range(3, 40)])
    got = records(write(tmp_path, body + "\n"), max_record_lines=10)
    assert got[1].line == 3 and "guillemet" in got[1].problem
    assert [r.line for r in got] == list(range(2, 41))
    assert sum(r.problem is not None for r in got) == 1


def test_a_quote_closed_by_another_stray_quote_lines_later_is_still_caught(tmp_path):
    """Two open quotes in the same column make a record with the right number of fields."""
    lines = [line(n) for n in range(1, 9)]
    lines[1] = line(2, organisme='"Greta Sud')
    lines[5] = line(6, organisme='"Greta Nord')
    got = records(write(tmp_path, "\n".join([HEADER, *lines]) + "\n"))
    assert [r.line for r in got if r.problem] == [3, 7]
    assert [r.line for r in got if not r.problem] == [2, 4, 5, 6, 8, 9]
    assert "Guillemet non refermé" in got[1].problem


def test_a_huge_field_is_a_problem_not_a_crash(tmp_path):
    huge = "x" * (300 * 1024)  # over csv.field_size_limit() and over one record's bound
    body = f"{HEADER}\n{line(1)}\n{line(2, commentaire=huge)}\n{line(3)}\n"
    got = records(write(tmp_path, body))
    assert [(r.line, r.problem is not None) for r in got] == [(2, False), (3, True), (4, False)]
    assert "trop longue" in got[1].problem


def test_a_huge_quoted_field_over_many_lines_is_a_problem(tmp_path):
    chunk = "y" * 1000
    comment = '"' + "\n".join([chunk] * 100) + '"'
    body = f"{HEADER}\n{line(1, commentaire=comment)}\n{line(2)}\n"
    got = records(write(tmp_path, body), max_record_lines=500, max_record_bytes=20_000)
    assert got[0].line == 2 and "trop long" in got[0].problem
    assert got[-1].fields.get("id_evenement") == "2" and got[-1].problem is None


def test_unix_line_ends_and_blank_lines_are_tolerated(tmp_path):
    body = f"{HEADER}\n{line(1)}\n\n{line(2)}\n"
    got = records(write(tmp_path, body, newline="\n"))
    assert [(r.line, r.fields["id_evenement"]) for r in got] == [(2, "1"), (4, "2")]


def test_a_reader_can_be_read_twice():
    reader = read_export(FIXTURES / "tous-types-valides.csv")
    assert [r.line for r in reader] == [r.line for r in reader] == list(range(2, 15))


def test_source_file_is_the_base_name():
    got = records(FIXTURES / "avec-nir.csv")
    assert {r.source_file for r in got} == {"avec-nir.csv"}


# --- memory ---------------------------------------------------------------------------------

def test_a_50_mb_export_is_read_in_bounded_memory(tmp_path):
    comment = "Entretien de suivi, démarches en cours ; " * 48  # ~2 KB a line, quoted
    block = "".join(f"{line(n, commentaire=chr(34) + comment + chr(34))}\r\n" for n in range(1000))
    path = tmp_path / "P3_69001_20261128.csv"
    data = block.encode("cp1252")
    with path.open("wb") as out:
        out.write((HEADER + "\r\n").encode("cp1252"))
        while out.tell() < 50 * 1024 * 1024:
            out.write(data)
    tracemalloc.start()
    try:
        count = sum(1 for record in read_export(path) if record.problem is None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count >= 24_000
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
