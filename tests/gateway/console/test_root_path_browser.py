"""The console in a real Chromium through a proxy serving the gateway under ``/passerelle`` and stripping it
(``gateway serve --root-path /passerelle``, `tests.gateway.api.test_root_path`): the browser, not a test
client, decides which cookies go where (their ``Path``), whether the page's style and script load under its
Content-Security-Policy, and where each link, form and redirect leads. Skipped without Chromium, like
`tests.gateway.console.test_browser`, unless ``GATEWAY_TEST_REQUIRE_BROWSER=1``."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.gateway.api.test_root_path import PREFIX, gateway_serve, stripping_proxy
from tests.gateway.console.test_browser import LAPTOP, chromium  # noqa: F401  (the browser fixture)

pytestmark = pytest.mark.browser


def test_a_counsellor_signs_in_and_closes_an_event_under_the_prefix(chromium, settings, dev_keys, night,  # noqa: F811
                                                                   tokens, tmp_path) -> None:
    with gateway_serve(settings.data_dir, tmp_path / "serve.log", "--root-path", PREFIX) as backend, \
            stripping_proxy(backend) as origin:
        context = chromium.new_context(locale="fr-FR", viewport=LAPTOP)
        page = context.new_page()
        page.set_default_timeout(15_000)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        try:
            page.goto(f"{origin}{PREFIX}/console/")
            assert urlsplit(page.url).path == f"{PREFIX}/console/connexion"
            page.get_by_label("Jeton d'accès").fill(tokens.support_69001)
            page.keyboard.press("Enter")
            page.wait_for_url(f"{origin}{PREFIX}/console/")
            assert page.get_by_role("heading", name="Tableau de bord").is_visible()
            # the style sheet loaded and allowed by the page's Content-Security-Policy
            assert page.evaluate("[...document.styleSheets].reduce((n, s) => n + s.cssRules.length, 0)") > 0
            cookies = {c["name"]: c["path"] for c in context.cookies()}
            assert cookies and set(cookies.values()) <= {f"{PREFIX}/console", f"{PREFIX}/console/connexion"}, cookies

            page.get_by_role("link", name="Rejets", exact=True).click()
            page.wait_for_url(re.compile(rf"{PREFIX}/console/rejets"))
            page.locator("#liste-rejets tbody tr th a").first.click()
            page.wait_for_url(re.compile(rf"{PREFIX}/console/evenements/"))
            page.get_by_label("Commentaire (obligatoire)").fill("Corrigé dans DUDE")
            page.get_by_role("button", name="Clore l'événement").click()
            page.wait_for_url(re.compile(r"action=\d+"))
            assert urlsplit(page.url).path.startswith(f"{PREFIX}/console/evenements/")
            assert "Événement clos" in page.locator("#resultat-action").inner_text()
        finally:
            context.close()
    ours = [url for url in asked if url.startswith(origin)]
    assert ours and all(urlsplit(url).path.startswith(f"{PREFIX}/") for url in ours), ours
    assert any(url.endswith(f"{PREFIX}/console/static/console.css") for url in ours)
    assert any(url.endswith(f"{PREFIX}/console/static/console.js") for url in ours)
