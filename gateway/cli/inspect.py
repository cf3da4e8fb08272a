"""``gateway rejects`` and ``gateway envelopes``: what support staff and integrators look at."""

from __future__ import annotations

import re
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gateway.cli.common import DataDirOpt, JsonOpt, console, fail, load_settings, open_store, print_json
from gateway.codes import AWAITING_RECEIPT, EnvelopeState, EventState, RejectCode, label_of
from gateway.errors import NotFound

# The store's modules (SQLAlchemy, SQLModel) are imported by each command: not by `gateway --help`.

_ML = re.compile(r"[0-9]{5}")
#: The shortest start of an IdLot `envelopes show` accepts: 8 hexadecimal digits, a UUID's first block, which
#: two given envelopes share about once in four billion.
MIN_PREFIX = 8
#: Candidates named when a start of IdLot is shared by several envelopes.
MAX_CANDIDATES = 10


class Document(str, Enum):
    """The documents of an envelope `envelopes show` prints: a choice, so that a wrong one is a usage error
    like any other (exit code 2, the choices named; ``--json`` callers get it as JSON)."""

    lot = "lot"
    accuse = "accuse"
    compte_rendu = "compte-rendu"


def _ml_code(value: str | None) -> str | None:
    """``--ml`` is a mission locale's 5-digit code: "3926" (its leading zero lost in a spreadsheet) used to
    answer "Rejets (0)" as if that mission locale had none; refused as the console refuses it."""
    if value is not None and not _ML.fullmatch(value):
        raise typer.BadParameter(f"mission locale « {value} » : cinq chiffres attendus (par exemple 03926).")
    return value


def _reject_code(value: str | None) -> str | None:
    """``--code``: a code of the catalogue, in any case; refused like ``--ml`` (typer's usage error, exit 2)."""
    if value is not None and value.upper() not in RejectCode.__members__:
        raise typer.BadParameter(f"code « {value} » inconnu : L01…L07 ou E01…E10.")
    return value


def rejects(
    code: Annotated[str | None, typer.Option(help="Only this reject code (E01…E10, L01…L07).",
                                             callback=_reject_code)] = None,
    ml: Annotated[str | None, typer.Option(help="Only this mission locale (5-digit code).",
                                           callback=_ml_code)] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many lines.")] = 200,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rejected (REJETE) and invalid (INVALIDE) events, with code, label, key, source file and line, and
    what to correct for each code."""
    from gateway.store.queries import REJECTED_STATES, EventFilter, list_events

    flt = EventFilter(states=REJECTED_STATES, reject_code=code.upper() if code else None, code_ml=ml)
    with open_store(load_settings(data_dir=data_dir), existing=True).connect() as conn:
        rows = list_events(conn, flt, limit=limit + 1)  # one more: whether there are more than shown
    more, rows = len(rows) > limit, rows[:limit]
    items = [{"key": r.key, "version": r.version, "state": r.state, "code": r.reject_code,
              "label": RejectCode(r.reject_code).label if r.reject_code else None,
              "hint": RejectCode(r.reject_code).hint if r.reject_code else None,
              "message": r.reject_message, "code_ml": r.code_ml, "type": r.event_type,
              "source_file": r.source_file, "source_line": r.source_line, "envelope_id": r.envelope_id}
             for r in rows]
    if json_out:
        print_json({"count": len(items), "more": more, "rejects": items})
        return
    table = Table(title=f"Rejets ({len(items)}{'+' if more else ''})")
    for col in ("Code", "Libellé", "Événement", "État", "Fichier:ligne", "Détail"):
        # the event's key is what support staff look up in Parcours 3: whole, on one line
        table.add_column(col, no_wrap=col == "Événement", overflow="fold")
    for it in items:
        where = f"{it['source_file']}:{it['source_line']}" if it["source_file"] else "API"
        # a file's name and a message quoting a bad value are text from the exports: never rich markup
        table.add_row(it["code"] or "", escape(it["label"] or ""), f"{it['key']} v{it['version']}",
                      label_of(EventState, it["state"]), escape(where), escape(it["message"] or ""))
    console.print(table)
    _print_hints(items)


def _print_hints(items: list[dict]) -> None:
    """What to correct, once per code under the table (in the order the codes first appear): the hint belongs
    to the code, not to the event, and 200 rejects of one code would repeat it 200 times in a column."""
    codes = list(dict.fromkeys(it["code"] for it in items if it["code"]))
    if not codes:
        return
    hints = Table.grid(padding=(0, 1))
    hints.add_column(no_wrap=True)
    hints.add_column()  # wraps under itself, not under the code
    for code in codes:
        reject = RejectCode(code)
        hints.add_row(f"[bold]{reject.value}[/]", f"[bold]{escape(reject.label)}[/] — {escape(reject.hint)}")
    console.print("À corriger, par code :", style="bold")
    console.print(hints, highlight=False)


envelopes_app = typer.Typer(help="Signed envelopes sent to DUDE.", no_args_is_help=True)


@envelopes_app.command("list")
def envelopes_list(
    limit: Annotated[int, typer.Option(min=1)] = 100,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Envelopes, newest first: state, events, attempts, report counts; times in the gateway's zone."""
    from zoneinfo import ZoneInfo

    from gateway.cli.report import when, zone_note
    from gateway.store.queries import list_envelopes

    settings = load_settings(data_dir=data_dir)
    with open_store(settings, existing=True).connect() as conn:
        rows = list_envelopes(conn, limit=limit)
    waiting = AWAITING_RECEIPT
    items = [{"id": r.id, "state": r.state, "events": r.event_count, "bytes": r.byte_size,
              "attempts": r.attempts, "created_at": r.created_at.isoformat(), "reject_code": r.reject_code,
              "accepted": r.accepted_count, "rejected": r.rejected_count,
              # still to send: when it goes next (its back-off, or DUDE's outage), and why the last post failed
              "next_attempt_at": r.next_attempt_at.isoformat() if r.state in waiting and r.next_attempt_at else None,
              "last_error": r.last_error if r.state in waiting else None} for r in rows]
    if json_out:
        print_json({"count": len(items), "envelopes": items})
        return
    tz = ZoneInfo(settings.timezone)  # checked when the settings were read
    # The IdLot is what people copy into `envelopes show` or a ticket: never cut (36 characters). To leave the
    # other columns room to wrap between words in 80 columns, the counts share one column and the attempts
    # go under the state when there were several (one is the usual case; several is what to notice).
    table = Table(title="Lots", caption=zone_note(tz))
    table.add_column("IdLot", no_wrap=True, min_width=36)
    for col in ("État", "Événements", "Créé le"):
        table.add_column(col, overflow="fold")
    for row in rows:
        state = label_of(EnvelopeState, row.state) + (f"\n{row.attempts} tentatives" if row.attempts > 1 else "")
        if row.state in waiting and row.next_attempt_at:  # held back (DUDE down, a back-off): until when
            state += f"\nprochain essai {when(row.next_attempt_at, tz)}"
        counts = [str(row.event_count)]
        if row.accepted_count is not None:
            counts.append(f"{row.accepted_count} acceptés")
        if row.rejected_count is not None:
            counts.append(f"{row.rejected_count} rejetés")
        table.add_row(row.id, escape(state), "\n".join(counts), when(row.created_at, tz))
    console.print(table)


@envelopes_app.command("show")
def envelopes_show(
    envelope_id: Annotated[str, typer.Argument(help="The envelope's IdLot, or its first 8 characters or more "
                                                    "(a trailing … is ignored).")],
    document: Annotated[Document, typer.Option(help="lot (as sent), accuse (receipt) or compte-rendu (report).")
                        ] = Document.lot,
    data_dir: DataDirOpt = None,
) -> None:
    """Print a signed document byte for byte: by default the envelope exactly as sent."""
    from gateway.store.models import DOC_LOT, DOC_RECEIPT, DOC_REPORT
    from gateway.store.queries import envelope_document

    kinds = {Document.lot: DOC_LOT, Document.accuse: DOC_RECEIPT, Document.compte_rendu: DOC_REPORT}
    with open_store(load_settings(data_dir=data_dir), existing=True).connect() as conn:
        found = _find_envelope(conn, envelope_id)
        body = envelope_document(conn, found, kinds[document])
    if body is None:  # a receipt or a report DUDE has not sent (yet)
        names = {Document.lot: "document signé", Document.accuse: "accusé de réception",
                 Document.compte_rendu: "compte rendu"}
        raise fail(NotFound(f"aucun {names[document]} pour le lot {found}"))
    sys.stdout.buffer.write(body)
    sys.stdout.flush()


def _find_envelope(conn, given: str) -> str:
    """The IdLot ``given`` designates: itself, or the only one it begins (at least `MIN_PREFIX` characters).

    Why a start: a table in a narrow terminal, a log line or a ticket shows ``5b593516…``, and that is what
    gets pasted; the ellipsis (or three dots) is dropped. A start shared by several envelopes is refused,
    naming them, rather than showing one of them at random. A miss ends with ``Erreur NOT_FOUND``, an
    ambiguous start with ``Erreur AMBIGUOUS``, both with exit code 2 like the command line's other errors, for
    a script to tell them from a document printed.

    Why lowercase: IdLots are lowercase UUIDs (`gateway.pipeline.dispatch`), and some tools print them in
    capitals; SQLite's LIKE ignores case but PostgreSQL's does not, so a start in capitals was found on one
    store and not on the other. What is typed is lowercased, and the queries stay as they were: ``lower(id)``
    in SQL would pass the primary key's index by."""
    import sqlalchemy as sa

    from gateway.store.models import envelopes_t
    from gateway.store.queries import envelope_ids_starting_with

    wanted = given.strip().removesuffix("…").removesuffix("...").strip().lower()
    if wanted and conn.execute(sa.select(envelopes_t.c.id).where(envelopes_t.c.id == wanted)).first():
        return wanted
    if len(wanted) < MIN_PREFIX:
        raise fail(NotFound(f"aucun lot {wanted} : un début d'IdLot compte au moins {MIN_PREFIX} caractères "
                            "(gateway envelopes list les donne en entier)"))
    candidates = envelope_ids_starting_with(conn, wanted, limit=MAX_CANDIDATES + 1)
    if not candidates:
        raise fail(NotFound(f"aucun lot {wanted if len(wanted) >= 36 else 'commençant par ' + wanted} "
                            "(gateway envelopes list)"))
    if len(candidates) > 1:
        shown = ", ".join(candidates[:MAX_CANDIDATES]) + (" …" if len(candidates) > MAX_CANDIDATES else "")
        raise fail(NotFound(f"plusieurs lots commencent par {wanted} : {shown} ; donner plus de caractères",
                            code="AMBIGUOUS"))
    return candidates[0]
