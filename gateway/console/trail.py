"""Where a page was opened from, for its breadcrumb: back to the search results, the event or the dashboard
the person came from, rather than to a fixed page where their filters are lost.

Read from the browser's ``Referer`` (the console sends ``Referrer-Policy: same-origin``, so a browser gives it
for the console's own pages and never to another site) rather than carried in the address: nothing is added
to any URL, and an address the person had in their own browser is the only one offered back. Only a page
of the console is taken (`console_path`), with the one-off parameters of an action's result dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from starlette.requests import Request

from gateway.console.session import base_path

#: Parameters that belong to one showing of a page (an action's result, a form's error), not to the page.
_ONE_OFF = frozenset({"action", "erreur"})


@dataclass(frozen=True, slots=True)
class Crumb:
    url: str
    label: str


def console_path(request: Request, target: str | None) -> str | None:
    """``target`` if it is an address of the console's pages, else ``None``: never another site (no open
    redirect, no link out), nor the sign-in page."""
    base = base_path(request)
    if target and target.startswith(base + "/") and "//" not in target and "\\" not in target \
            and not target.startswith(base + "/connexion"):
        return target
    return None


def back_to(request: Request, default: Crumb) -> Crumb:
    """The console page this one was opened from, named; ``default`` if none (typed address, another site,
    the page itself after an action, a page that is not a place to go back to)."""
    referer = urlsplit(request.headers.get("referer", ""))
    path = console_path(request, referer.path) if referer.netloc == request.url.netloc else None
    if path is None or path == request.url.path:
        return default
    page = path[len(base_path(request)):]
    if page == "/":
        label = "Tableau de bord"
    elif page == "/rejets":
        label = "Rejets"
    elif page.startswith("/evenements/"):
        label = f"Événement {unquote(page.removeprefix('/evenements/'))}"
    elif page.startswith("/lots/"):
        label = f"Lot {unquote(page.removeprefix('/lots/'))}"
    else:
        return default
    query = urlencode([(k, v) for k, v in parse_qsl(referer.query, keep_blank_values=True) if k not in _ONE_OFF])
    return Crumb(path + (f"?{query}" if query else ""), label)
