"""``gateway rejects`` and ``gateway envelopes``: what support staff and integrators look at."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.common import DataDirOpt, JsonOpt, console, err_console, open_store, print_json
from gateway.codes import RejectCode

# The store's modules (SQLAlchemy, SQLModel) are imported by each command: not by `gateway --help`.


def rejects(
    code: Annotated[str | None, typer.Option(help="Only this reject code (E01…E10, L01…L07).")] = None,
    ml: Annotated[str | None, typer.Option(help="Only this mission locale (5-digit code).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many lines.")] = 200,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Rejected (REJETE) and invalid (INVALIDE) events, with code, label, key, source file and line."""
    if code is not None:
        try:
            RejectCode(code.upper())
        except ValueError:
            err_console.print(f"[red]Code inconnu[/] {code} : codes L01…L07, E01…E10")
            raise typer.Exit(code=2) from None
    from gateway.store.queries import REJECTED_STATES, EventFilter, list_events

    flt = EventFilter(states=REJECTED_STATES, reject_code=code.upper() if code else None, code_ml=ml)
    with open_store(data_dir, existing=True).connect() as conn:
        rows = list_events(conn, flt, limit=limit)
    items = [{"key": r.key, "version": r.version, "state": r.state, "code": r.reject_code,
              "label": RejectCode(r.reject_code).label if r.reject_code else None,
              "hint": RejectCode(r.reject_code).hint if r.reject_code else None,
              "message": r.reject_message, "code_ml": r.code_ml, "type": r.event_type,
              "source_file": r.source_file, "source_line": r.source_line, "envelope_id": r.envelope_id}
             for r in rows]
    if json_out:
        print_json({"count": len(items), "rejects": items})
        return
    table = Table(title=f"Rejets ({len(items)}{'+' if len(items) == limit else ''})")
    for col in ("Code", "Libellé", "Événement", "État", "Fichier:ligne", "Détail"):
        table.add_column(col, overflow="fold")
    for it in items:
        where = f"{it['source_file']}:{it['source_line']}" if it["source_file"] else "API"
        table.add_row(it["code"] or "", it["label"] or "", f"{it['key']} v{it['version']}", it["state"], where,
                      it["message"] or "")
    console.print(table)


envelopes_app = typer.Typer(help="Signed envelopes sent to DUDE.", no_args_is_help=True)


@envelopes_app.command("list")
def envelopes_list(
    limit: Annotated[int, typer.Option(min=1)] = 100,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Envelopes, newest first: state, events, attempts, report counts."""
    from gateway.store.queries import list_envelopes

    with open_store(data_dir, existing=True).connect() as conn:
        rows = list_envelopes(conn, limit=limit)
    items = [{"id": r.id, "state": r.state, "events": r.event_count, "bytes": r.byte_size,
              "attempts": r.attempts, "created_at": r.created_at.isoformat(), "reject_code": r.reject_code,
              "accepted": r.accepted_count, "rejected": r.rejected_count} for r in rows]
    if json_out:
        print_json({"count": len(items), "envelopes": items})
        return
    table = Table(title="Lots")
    for col in ("IdLot", "État", "Événements", "Tentatives", "Acceptés", "Rejetés", "Créé le"):
        table.add_column(col)
    for it in items:
        table.add_row(it["id"], it["state"], str(it["events"]), str(it["attempts"]), str(it["accepted"] or ""),
                      str(it["rejected"] or ""), it["created_at"][:19])
    console.print(table)


@envelopes_app.command("show")
def envelopes_show(
    envelope_id: Annotated[str, typer.Argument(help="The envelope's IdLot.")],
    document: Annotated[str, typer.Option(help="lot (as sent), accuse (receipt) or compte-rendu (report).")] = "lot",
    data_dir: DataDirOpt = None,
) -> None:
    """Print a signed document byte for byte: by default the envelope exactly as sent."""
    import sqlalchemy as sa

    from gateway.store.models import DOC_LOT, DOC_RECEIPT, DOC_REPORT, envelopes_t
    from gateway.store.queries import envelope_document

    kinds = {"lot": DOC_LOT, "accuse": DOC_RECEIPT, "compte-rendu": DOC_REPORT}
    if document not in kinds:
        err_console.print(f"[red]--document[/] : lot, accuse ou compte-rendu, pas {document}")
        raise typer.Exit(code=2)
    with open_store(data_dir, existing=True).connect() as conn:
        exists = conn.execute(sa.select(envelopes_t.c.id).where(envelopes_t.c.id == envelope_id)).first()
        body = envelope_document(conn, envelope_id, kinds[document]) if exists else None
    if body is None:
        err_console.print(f"[red]Introuvable[/] : {'aucun lot ' + envelope_id if not exists else 'pas de ' + document}")
        raise typer.Exit(code=1)
    sys.stdout.buffer.write(body)
    sys.stdout.flush()
