"""The console's Jinja2 environment: autoescaping on, and the French formats support staff read.

Dates and times are shown in the gateway's time zone (`Settings.timezone`, Paris by default), as JJ/MM/AAAA
and HH:MM, and every page's footer names that zone (``zone_note``): a mission locale overseas, or a gateway
set to its zone, was told "les heures sont celles de Paris" beside times that were not. Numbers have a narrow
no-break space between thousands, as French typography has them.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi.templating import Jinja2Templates
from starlette.requests import Request

from gateway.codes import AWAITING_RECEIPT, EnvelopeState, EventState, EventType, RejectCode, label_of
from gateway.console import labels
from gateway.console.paused import paused_state
from gateway.console.session import base_path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def zone_note(tz: ZoneInfo) -> str:
    """Whose times the pages show, for their footer: Paris's by name (the default), another zone by its IANA
    name, as the command line says it (`gateway.cli.report.zone_note`)."""
    return "celles de Paris" if tz.key == "Europe/Paris" else f"celles du fuseau {tz.key}"


def make_templates(tz: ZoneInfo) -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.autoescape = True
    env.trim_blocks = True
    env.lstrip_blocks = True

    def when(value: datetime | None, seconds: bool = False) -> str:
        if value is None:
            return ""
        return value.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S" if seconds else "%d/%m/%Y %H:%M")

    def day(value: date | None) -> str:
        return value.strftime("%d/%m/%Y") if value else ""

    env.filters.update(when=when, day=day, number=labels.number, path=lambda v: quote(str(v), safe=""),
                       state_label=lambda s: label_of(EventState, s),
                       envelope_label=lambda s: label_of(EnvelopeState, s),
                       type_label=lambda s: label_of(EventType, s), field_label=labels.field_label,
                       cause_label=labels.cause_label, actor_label=labels.actor_label,
                       reject_message=labels.reject_message,
                       reject_label=lambda c: label_of(RejectCode, c),
                       state_short=lambda s: labels.STATE_SHORT.get(s, s),
                       outcome_label=lambda s: labels.RUN_OUTCOMES.get(s, s),
                       trigger_label=lambda s: labels.RUN_TRIGGERS.get(s, s),
                       query=lambda params: "?" + urlencode(params) if params else "")
    env.globals["zone_note"] = zone_note(tz)
    env.globals["AWAITING_RECEIPT"] = AWAITING_RECEIPT  # the envelope states DUDE has not acknowledged yet
    return templates


def render(request: Request, name: str, context: dict[str, Any], *, status: int = 200):
    """A page: the template with the console's base path and the signed-in user (if any) in its context, and
    for a signed-in user the sending switch when it is paused (``paused``: `gateway.console.paused`), unless
    the route read it already."""
    templates: Jinja2Templates = request.app.state.templates
    extra: dict[str, Any] = {"base": base_path(request)}
    if context.get("user") is not None and "paused" not in context:
        extra["paused"] = paused_state(request.app.state.gateway.engine)
    return templates.TemplateResponse(request, name, {**extra, **context}, status_code=status)
