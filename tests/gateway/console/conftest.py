"""The console over the API tests' store: the same tokens for every role and scope, the same night of two
missions locales (69001 and 69002: per mission locale, -1 and -2 accepted, -3 rejected by DUDE with E01,
-4 invalid with E08; plus one line whose mission locale cannot be read), and a browser-like client that
signs in through the sign-in form."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from tests.gateway.api.conftest import (  # noqa: F401  (fixtures shared with the API tests)
    PEOPLE,
    SCOPES,
    Tokens,
    dev_keys,
    key_template,
    night,
    registry_file,
    tokens,
)

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LISTED = re.compile(r'href="/console/evenements/([^"?]+)"')


def listed(response) -> list[str]:
    """The keys a rejects list shows, in its order."""
    return [unquote(k) for k in LISTED.findall(response.text)]


def text(response) -> str:
    """A page's text as a person reads it (HTML entities such as ``&#39;`` decoded)."""
    return html.unescape(response.text)


def words(response) -> str:
    """A page's words only: tags dropped, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


@dataclass
class Browser:
    """A TestClient that keeps cookies like a browser and remembers the session's CSRF token."""

    http: TestClient
    csrf: str | None = None

    def get(self, path: str, **kwargs):
        return self.http.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kwargs):
        form = dict(data or {})
        if csrf and self.csrf is not None:
            form.setdefault("csrf", self.csrf)
        return self.http.post(path, data=form, **kwargs)

    def sign_in(self, token: str):
        page = self.http.get("/console/connexion")
        answer = self.http.post("/console/connexion", data={"jeton": token, "csrf": CSRF.search(page.text)[1]})
        if answer.status_code == 303:
            self.csrf = CSRF.search(self.http.get("/console/").text)[1]
        return answer


@pytest.fixture
def console_app(gw):
    return create_app(gw)


@pytest.fixture
def browser(console_app):
    with TestClient(console_app, follow_redirects=False) as http:
        yield Browser(http)


@pytest.fixture
def signed_in(console_app, tokens, night):  # noqa: F811  (the fixtures imported above)
    """``signed_in(name)``: a client signed in with the token of that name (``support_69001``…)."""
    clients = []

    def make(name: str) -> Browser:
        http = TestClient(console_app, follow_redirects=False)
        http.__enter__()
        clients.append(http)
        b = Browser(http)
        assert b.sign_in(tokens[name]).status_code == 303
        return b

    yield make
    for http in clients:
        http.__exit__(None, None, None)
