"""The dashboard: the last nights at a glance, rejects per night over 30 nights, and what to handle first
(issue 4). Every figure is within the user's scope: a support user of one mission locale sees its events
only, and the runs and envelopes that carried them.

It is also where an admin pauses and resumes sending (`gateway.console.routes.sending`), and where those
actions redirect (``?action=…``) to say what they did.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.codes import RejectCode
from gateway.console import queries
from gateway.console.attention import Undelivered, priorities
from gateway.console.chart import SERIES, rejects_chart
from gateway.console.deps import GatewayDep, UserDep
from gateway.console.paused import paused_state, switch_message
from gateway.console.templating import render

router = APIRouter()

#: Nights in the "last nights" table.
RECENT_RUNS = 7


@router.get("/", name="tableau_de_bord")
def dashboard(request: Request, user: UserDep, gw: GatewayDep, action: str | None = None) -> Response:
    tz = ZoneInfo(gw.settings.timezone)
    now = gw.clock().astimezone(tz)
    today = now.date()
    with gw.engine.connect() as conn:
        runs = queries.last_runs(conn, user.scope, limit=RECENT_RUNS)
        open_rejects = queries.open_rejects(conn, user.scope)
        waiting = queries.envelopes_waiting(conn, user.scope)
        held, soonest = queries.envelopes_undelivered(conn, user.scope)
        unsent = queries.envelopes_unsent(conn, user.scope)
        nights = queries.rejects_per_night(conn, user.scope, today=today, tz=tz)
        paused = paused_state(conn)
        done = switch_message(conn, action, user.actor, tz)
    by_code = _by_code(open_rejects)
    return render(request, "tableau.html", {
        "user": user, "runs": runs, "by_code": by_code, "paused": paused,
        "priorities": priorities(open_rejects, waiting, Undelivered(
            held, soonest.astimezone(tz) if soonest is not None and soonest > now else None), paused=bool(paused),
            unsent=unsent),
        "open_total": sum(i.count for i in open_rejects), "waiting": waiting, "chart": rejects_chart(nights),
        "nights": nights, "series": SERIES, "generated_at": now, "flash": done})


def _by_code(open_rejects: list[queries.CodeCount]) -> list[dict]:
    """One line per code (and one for events without report), with its count per state."""
    lines: dict[str | None, dict] = {}
    for item in open_rejects:
        line = lines.setdefault(item.code, {"code": item.code, "known": RejectCode.__members__.get(item.code or ""),
                                            "total": 0, "states": {}})
        line["total"] += item.count
        line["states"][item.state] = line["states"].get(item.state, 0) + item.count
    return sorted(lines.values(), key=lambda line: (-line["total"], line["code"] or "~"))
