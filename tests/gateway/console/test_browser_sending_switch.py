"""Pausing and resuming sending to DUDE in a real headless Chromium (`gateway.console.routes.sending`), over the
console tests' small night rather than `test_browser`'s demo of 600 events: the switch needs no events. An admin
told of a maintenance window pauses from the dashboard with a reason (a blank one refused, a double click
pausing once), reads what was done and the banner, and resumes from the banner; a support user sees the
banner without its link, and is refused the confirmation page.

Skipped or failed without Chromium exactly as `test_browser` (its ``chromium`` and ``page`` fixtures).
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from gateway.api.serving import serve_in_thread
from gateway.pipeline.pause import current
from gateway.store.models import audit_t
from tests.gateway.console.test_browser import SCREENSHOTS, chromium, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

REASON = "Maintenance du DUDE annoncée de 20 h à 23 h"


@pytest.fixture
def served(console_app, night):
    """The console's URL, over the night of the console tests."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_in_thread(console_app) as url:
        yield url


def sign_in(page, url: str, token: str) -> None:  # noqa: F811  (``page`` is the fixture's value)
    page.goto(f"{url}/console/")
    page.get_by_label("Jeton d'accès").fill(token)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/console/")


def switches(gw) -> list[str]:
    with gw.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_t.c.action).where(
            audit_t.c.action.in_(("SENDING_PAUSE", "SENDING_RESUME"))).order_by(audit_t.c.id)).scalars())


def test_an_admin_pauses_for_a_maintenance_window_then_resumes(page, served, tokens, gw) -> None:  # noqa: F811
    sign_in(page, served, tokens.admin)
    page.get_by_role("link", name="Suspendre l'envoi au DUDE…").click()
    page.wait_for_url(f"{served}/console/envoi/suspendre")
    reason = page.get_by_label("Motif (obligatoire)")
    reason.fill("   ")  # passes the browser's "required", not the server
    page.get_by_role("button", name="Confirmer la suspension de l'envoi").click()
    page.wait_for_url(re.compile(r"erreur=motif"))
    assert "Le motif est obligatoire pour suspendre l'envoi" in page.locator("#erreur-motif").inner_text()
    assert not current(gw.engine).paused and switches(gw) == []

    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    reason.fill(REASON)
    page.get_by_role("button", name="Confirmer la suspension de l'envoi").dblclick()
    page.wait_for_url(re.compile(r"/console/\?action=\d+$"))
    assert len(posts) == 1 and switches(gw) == ["SENDING_PAUSE"]
    result = page.locator("#resultat-action").inner_text()
    assert result.startswith("Envoi au DUDE suspendu le") and f"par admin (console), motif : « {REASON} »" in result
    page.wait_for_function("document.activeElement && document.activeElement.id === 'resultat-action'")
    banner = page.locator("#envoi-suspendu").inner_text()
    assert "Envoi au DUDE suspendu depuis le" in banner and f"par admin (console) : « {REASON} »" in banner
    assert page.get_by_role("link", name="Suspendre l'envoi au DUDE…").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "envoi-suspendu-par-la-console.png"), full_page=True)

    support = page.context.browser.new_context(locale="fr-FR").new_page()
    sign_in(support, served, tokens.support_69001)
    assert REASON in support.locator("#envoi-suspendu").inner_text()
    assert support.get_by_role("link", name=re.compile("envoi au DUDE…")).count() == 0
    support.goto(f"{served}/console/envoi/reprendre")
    assert support.get_by_role("heading", name="Action réservée aux administrateurs").is_visible()
    support.context.close()

    page.get_by_role("link", name="Reprendre l'envoi au DUDE…").click()
    page.wait_for_url(f"{served}/console/envoi/reprendre")
    page.get_by_role("button", name="Confirmer la reprise de l'envoi").click()
    page.wait_for_url(re.compile(r"/console/\?action=\d+$"))
    assert page.locator("#resultat-action").inner_text().startswith("Envoi au DUDE repris le")
    assert page.locator("#envoi-suspendu").count() == 0
    assert page.get_by_role("link", name="Suspendre l'envoi au DUDE…").is_visible()
    assert not current(gw.engine).paused and current(gw.engine).changed_by == "console:admin"
    assert switches(gw) == ["SENDING_PAUSE", "SENDING_RESUME"]
