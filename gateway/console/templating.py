"""The console's Jinja2 environment: autoescaping on, and the French formats support staff read.

Dates and times are shown in the gateway's time zone (`Settings.timezone`, Paris), as JJ/MM/AAAA and
HH:MM; numbers with a narrow no-break space between thousands, as French typography has them.
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
from gateway.console.session import base_path

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


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

    def number(value: int | None) -> str:
        return "" if value is None else f"{value:,}".replace(",", "\u202f")

    env.filters.update(when=when, day=day, number=number, path=lambda v: quote(str(v), safe=""),
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
    env.globals["AWAITING_RECEIPT"] = AWAITING_RECEIPT  # the envelope states DUDE has not acknowledged yet
    return templates


def render(request: Request, name: str, context: dict[str, Any], *, status: int = 200):
    """A page: the template with the console's base path and the signed-in user (if any) in its context."""
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, {"base": base_path(request), **context}, status_code=status)
