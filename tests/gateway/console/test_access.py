"""Who may use the console, and with what: sign-in with a support or admin token only, a hardened session
cookie, sessions refused as soon as their token is revoked or their time is up, CSRF protection on every
action, and each mission locale's support seeing its own events only, everywhere (issue 4; brief §6)."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
import zlib
from datetime import timedelta
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.api.auth import revoke_client
from gateway.api.main import create_app
from gateway.store.models import api_clients_t, audit_t, events_t, history_t, utcnow
from tests.gateway.console.conftest import CSRF, SCOPES, Browser, text, words

ALL_KEYS = {f"{ml}-{i}" for ml in ("69001", "69002") for i in (1, 2, 3, 4)}
UNREADABLE = "?P3_00000_20261128.csv:10"
LISTED = re.compile(r'href="/console/evenements/([^"?]+)"')


def visible(name: str) -> set[str]:
    scope = SCOPES[name]
    return {k for k in ALL_KEYS if scope is None or k[:5] in scope} | ({UNREADABLE} if scope is None else set())


def snapshot(gw) -> tuple:
    """Everything an action could change: event states, history and audit rows."""
    with gw.engine.connect() as conn:
        return (conn.execute(sa.select(events_t.c.key, events_t.c.state).order_by(events_t.c.id)).all(),
                conn.execute(sa.select(sa.func.count()).select_from(history_t)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(audit_t)
                             .where(audit_t.c.action.not_like("CONSOLE_%"))).scalar_one())


def state_of(gw, key: str) -> str:
    with gw.engine.connect() as conn:
        return conn.execute(sa.select(events_t.c.state).where(events_t.c.key == key)).scalar_one()


def cookie_header(response, name: str) -> str:
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(name + "="))


# --- signing in and out -------------------------------------------------------------------------


def test_pages_need_a_session_and_send_back_to_the_page_asked_for(browser, tokens, night) -> None:
    answer = browser.get("/console/rejets?code=E01")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/connexion?suite=%2Fconsole%2Frejets%3Fcode%3DE01"
    page = browser.get(answer.headers["location"])
    assert page.status_code == 200 and '<html lang="fr">' in text(page)
    assert 'name="suite" value="/console/rejets?code=E01"' in text(page)
    signed = browser.http.post("/console/connexion", data={"jeton": tokens.support_69001,
                                                           "csrf": CSRF.search(page.text)[1],
                                                           "suite": "/console/rejets?code=E01"})
    assert signed.headers["location"] == "/console/rejets?code=E01"


@pytest.mark.parametrize("suite", ["https://ailleurs.example/", "//ailleurs.example/console/", "/api/v1/events",
                                   "/console//ailleurs.example"])
def test_sign_in_never_redirects_outside_the_console(browser, tokens, night, suite) -> None:
    page = browser.get("/console/connexion")
    answer = browser.http.post("/console/connexion", data={"jeton": tokens.admin, "csrf": CSRF.search(page.text)[1],
                                                           "suite": suite})
    assert answer.headers["location"] == "/console/"


def test_sign_in_opens_a_hardened_session_and_is_audited(browser, gw, tokens, night) -> None:
    page = browser.get("/console/connexion")
    signin_cookie = cookie_header(page, "p3g_console_connexion")
    assert "HttpOnly" in signin_cookie and "SameSite=strict" in signin_cookie and \
        "Path=/console/connexion" in signin_cookie
    answer = browser.post("/console/connexion", {"jeton": tokens.support_69001, "csrf": CSRF.search(page.text)[1]})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = cookie_header(answer, "p3g_console")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console;" in cookie
    # the cookie outlives the session (its signed time ends it), so that the console can say the session ended
    assert f"Max-Age={8 * 3600 + 7 * 24 * 3600}" in cookie and "Secure" not in cookie  # plain http: see https test
    assert tokens.support_69001 not in cookie
    dashboard = browser.get("/console/")
    assert dashboard.status_code == 200 and "support_69001" in text(dashboard) and \
        "mission locale 69001" in text(dashboard)
    with gw.engine.connect() as conn:
        actions = conn.execute(sa.select(audit_t.c.action, audit_t.c.actor)).all()
    assert ("CONSOLE_SIGN_IN", "console:support_69001") in actions


def test_the_session_cookie_is_secure_over_https(console_app, tokens, night) -> None:
    with TestClient(console_app, base_url="https://testserver", follow_redirects=False) as http:
        page = http.get("/console/connexion")
        answer = http.post("/console/connexion", data={"jeton": tokens.admin, "csrf": CSRF.search(page.text)[1]})
        assert "Secure" in cookie_header(answer, "p3g_console")
        assert http.get("/console/").status_code == 200


@pytest.mark.parametrize("token_name, status, words", [
    ("partner_69001", 403, "réservée aux jetons des rôles support et admin"),
    (None, 401, "Jeton inconnu ou révoqué"),
])
def test_partner_and_unknown_tokens_are_refused(browser, tokens, night, token_name, status, words) -> None:
    answer = browser.sign_in(tokens[token_name] if token_name else "p3g_" + "x" * 43)
    assert answer.status_code == status and words in text(answer)
    assert "p3g_console=" not in " ".join(answer.headers.get_list("set-cookie"))
    assert browser.get("/console/").status_code == 303


def test_the_sign_in_form_is_protected_against_csrf(browser, tokens, night) -> None:
    browser.get("/console/connexion")
    for csrf in (None, "forged"):
        data = {"jeton": tokens.admin} | ({"csrf": csrf} if csrf else {})
        answer = browser.http.post("/console/connexion", data=data)
        assert answer.status_code == 403 and "a expiré ou ne vient pas de la console" in text(answer)
    assert browser.get("/console/").status_code == 303


def test_sign_out_ends_the_session_in_the_browser(signed_in, gw) -> None:
    user = signed_in("support_69001")
    answer = user.post("/console/deconnexion")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/connexion?sortie=1"
    assert 'p3g_console=""' in cookie_header(answer, "p3g_console")
    assert "Vous êtes déconnecté" in text(user.get(answer.headers["location"]))
    assert user.get("/console/").status_code == 303
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(audit_t.c.id).where(audit_t.c.action == "CONSOLE_SIGN_OUT")).first()


def test_a_revoked_token_ends_its_sessions_at_the_next_request(signed_in, gw) -> None:
    user = signed_in("support_69001")
    assert user.get("/console/rejets").status_code == 200
    with gw.engine.connect() as conn:
        client_id = conn.execute(sa.select(api_clients_t.c.id)
                                 .where(api_clients_t.c.name == "support_69001")).scalar_one()
    revoke_client(gw.engine, client_id, now=utcnow())
    before = snapshot(gw)
    answer = user.get("/console/rejets")
    assert answer.status_code == 303 and "fin=1" in answer.headers["location"]
    assert 'p3g_console=""' in cookie_header(answer, "p3g_console")
    assert "Votre session a pris fin" in text(user.get(answer.headers["location"]))
    refused = user.post("/console/actions/renvoyer", {"cle": "69001-3"})
    assert refused.status_code == 303 and refused.headers["location"].startswith("/console/connexion")
    assert snapshot(gw) == before


def test_a_session_expires_after_its_hours(signed_in, gw) -> None:
    user = signed_in("admin")
    real = gw.clock
    gw.clock = lambda: real() + timedelta(hours=8, minutes=1)
    answer = user.get("/console/")
    assert answer.status_code == 303 and "fin=1" in answer.headers["location"]


def press_after_the_end(user: Browser, gw, form: dict, *, action: str = "clore", hours: int = 8):
    """``action`` pressed on 69001-3's page once the session's ``hours`` are over."""
    real = gw.clock
    gw.clock = lambda: real() + timedelta(hours=hours, minutes=1)
    return user.post(f"/console/actions/{action}", {"cle": "69001-3", **form},
                     headers={"referer": "http://testserver/console/evenements/69001-3"})


def test_an_action_pressed_after_the_session_ended_says_so_and_signs_in_back_to_its_page(signed_in, gw) -> None:
    """"Clore" pressed on an event page after the 8 hours: the sign-in page said nothing (the browser had
    dropped a cookie that lived exactly as long as the session) and led to the dashboard, not the event."""
    user = signed_in("support_69001")
    before = snapshot(gw)
    refused = press_after_the_end(user, gw, {"commentaire": "parti en formation"})
    location = refused.headers["location"]
    assert refused.status_code == 303 and "fin=1" in location and "suite=%2Fconsole%2Fevenements%2F69001-3" in location
    assert "Votre session a pris fin" in text(user.get(location)) and snapshot(gw) == before
    elsewhere = user.post("/console/actions/clore", {"cle": "69001-3"}, headers={"referer": "https://ailleurs.example/x"})
    assert "suite" not in elsewhere.headers["location"]  # a page of the console only


def sign_in_again(user: Browser, token: str, location: str):
    """The sign-in page ``location`` leads to, filled in with ``token``: where the console sends the person."""
    page = user.get(location)
    suite = re.search(r'name="suite" value="([^"]+)"', page.text)
    form = {"jeton": token, "csrf": CSRF.search(page.text)[1], **({"suite": html.unescape(suite[1])} if suite else {})}
    answer = user.http.post("/console/connexion", data=form)
    assert answer.status_code == 303
    user.csrf = None
    return page, answer.headers["location"]


def test_a_close_pressed_after_the_session_ended_is_said_not_done_and_its_comment_offered_again(
        signed_in, gw, tokens) -> None:
    """The session ended while the event page was open; "Clore" pressed with a comment did nothing, and the
    sign-in page said only that the session had ended: the counsellor believed the event closed."""
    user = signed_in("support_69001")
    before = snapshot(gw)
    refused = press_after_the_end(user, gw, {"commentaire": "jeune parti à Lyon"})
    assert "Lyon" not in refused.headers["location"]  # the comment never goes in an address
    page, location = sign_in_again(user, tokens["support_69001"], refused.headers["location"])
    assert "la clôture de l'événement 69001-3 n'a pas été faite. Reconnectez-vous, puis recommencez." in words(page)
    assert "Lyon" not in page.text and location == "/console/evenements/69001-3"
    event = user.get(location)
    assert "La clôture de cet événement n'a pas été faite : votre session avait pris fin. Votre commentaire est " \
           "repris ci-dessous" in words(event)
    assert re.search(r'<textarea id="commentaire"[^>]*>jeune parti à Lyon</textarea>', text(event))
    assert snapshot(gw) == before  # nothing was done
    again = user.get(location)  # said once
    assert "n'a pas été faite" not in words(again) and "Lyon" not in text(again)


def test_a_resend_stopped_by_the_end_of_the_session_is_said_not_done(signed_in, gw, tokens) -> None:
    user = signed_in("support_69001")
    real = gw.clock
    gw.clock = lambda: real() + timedelta(hours=8, minutes=1)
    refused = user.post("/console/actions/renvoyer", {"cle": "69001-3"})  # no referer: the event's page all the same
    page, location = sign_in_again(user, tokens["support_69001"], refused.headers["location"])
    assert "le renvoi de l'événement 69001-3 n'a pas été fait" in words(page)
    assert "Le renvoi de cet événement n'a pas été fait : votre session avait pris fin." in words(user.get(location))
    assert state_of(gw, "69001-3") == "REJETE"


def test_a_stopped_action_is_shown_to_its_own_user_only_and_never_from_another_site(signed_in, gw, tokens) -> None:
    user = signed_in("support_69001")
    refused = press_after_the_end(user, gw, {"commentaire": "jeune parti à Lyon"})
    _, location = sign_in_again(user, tokens["admin"], refused.headers["location"])  # someone else, same browser
    event = user.get("/console/evenements/69001-3")
    assert "Lyon" not in text(event) and "n'a pas été faite" not in words(event)
    forged = signed_in("support_69001")  # a new session, over too 16 hours later
    refused = press_after_the_end(forged, gw, {"commentaire": "x", "csrf": "autre"}, hours=16)
    assert "p3g_console_action" not in refused.headers.get("set-cookie", "")  # not a form of that session


def readable_parts(value: str) -> bytes:
    """Everything a person can read of a cookie value without the console's key: each of its dot-separated parts
    base64-decoded, and inflated when it is compressed (itsdangerous's ``.``-prefixed payloads)."""
    out = [value.encode()]
    for part in value.lstrip(".").split("."):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except ValueError:
            continue
        out.append(raw)
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(raw))
    return b"\n".join(out)


def test_a_stopped_action_cookie_keeps_its_comment_unreadable_and_refuses_a_forged_one(signed_in, gw, tokens) -> None:
    """The comment typed about a young person sat in the browser's cookie store for an hour, signed but in
    clear (base64): whoever used that browser next read it there, without signing in, whatever their scope."""
    user = signed_in("support_69001")
    press_after_the_end(user, gw, {"commentaire": "jeune parti à Lyon"})
    value = user.http.cookies.get("p3g_console_action")
    assert value and "Lyon".encode() not in readable_parts(value) and b"69001-3" not in readable_parts(value)
    forged = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")  # altered: shown nowhere
    user.http.cookies.delete("p3g_console_action")
    user.http.cookies.set("p3g_console_action", forged, path="/console")
    page, location = sign_in_again(user, tokens["support_69001"], "/console/connexion?fin=1")
    assert "n'a pas été faite" not in words(page) and "Lyon" not in text(user.get("/console/evenements/69001-3"))


def test_a_tampered_session_cookie_is_refused(signed_in) -> None:
    user = signed_in("support_69001")
    value = user.http.cookies.get("p3g_console")
    payload, rest = value.split(".", 1)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    user.http.cookies.set("p3g_console", f"{forged}.{rest}", path="/console")
    assert user.get("/console/").status_code == 303


def test_the_signing_key_is_generated_once_in_the_data_folder(gw, console_app, tokens, night) -> None:
    key_file = gw.settings.console_secret_file
    assert key_file.exists() and oct(os.stat(key_file).st_mode & 0o777) == "0o600"
    assert len(key_file.read_text().strip()) >= 32
    first = key_file.read_bytes()
    with TestClient(console_app, follow_redirects=False) as http:  # a session opened on one instance…
        user = Browser(http)
        user.sign_in(tokens.admin)
        cookie = http.cookies.get("p3g_console")
    with TestClient(create_app(gw), follow_redirects=False) as other:  # …is valid on another one sharing the folder
        other.cookies.set("p3g_console", cookie, path="/console")
        assert other.get("/console/").status_code == 200
    assert key_file.read_bytes() == first


# --- CSRF on every action -----------------------------------------------------------------------

ACTIONS = [("/console/actions/renvoyer", {"cle": "69001-3"}),
           ("/console/actions/clore", {"cle": "69001-4", "commentaire": "hors délai"}),
           ("/console/actions/renvoyer-filtre", {"code": "E01"}),
           ("/console/deconnexion", {})]


def test_every_action_is_refused_without_the_sessions_csrf_token(signed_in, gw) -> None:
    user = signed_in("support_69001")
    other = signed_in("support_69001")
    before = snapshot(gw)
    attempts = {"sans jeton": lambda path, data: user.post(path, data, csrf=False),
                "jeton faux": lambda path, data: user.post(path, data | {"csrf": "x" * 43}),
                "jeton d'une autre session": lambda path, data: user.post(path, data | {"csrf": other.csrf}),
                # the right token, but the browser says the form came from another site
                "autre site": lambda path, data: user.post(path, data, headers={"Sec-Fetch-Site": "cross-site"})}
    for how, attempt in attempts.items():
        for path, data in ACTIONS:
            answer = attempt(path, data)
            assert answer.status_code == 403, (how, path)
            assert "Action refusée" in text(answer) and "rien n'a été fait" in text(answer), (how, path)
            assert snapshot(gw) == before, (how, path)
    assert user.get("/console/").status_code == 200  # still signed in: nothing happened at all


# --- each mission locale sees its own -----------------------------------------------------------

NAMES = ["support_69001", "support_69002", "support_both", "admin"]


@pytest.mark.parametrize("name", NAMES)
def test_lists_exports_and_counts_stay_in_scope(signed_in, name) -> None:
    user = signed_in(name)
    states = "&".join(f"etat={s}" for s in ("INVALIDE", "REJETE", "SANS_REPONSE", "EN_ATTENTE", "CORRIGE", "CLOS"))
    listed = {unquote(k) for k in LISTED.findall(user.get(f"/console/rejets?{states}").text)}
    assert listed == {k for k in visible(name) if k[-1] in "34" or k == UNREADABLE}
    export = user.get("/console/rejets.csv").content.decode("utf-8-sig").splitlines()[1:]
    assert {line.split(";")[1] for line in export} == listed
    for other in {"69001", "69002"} - (SCOPES[name] or {"69001", "69002"}):
        # Asked for, another mission locale is said to be out of scope and left out: none of its events shows.
        page = user.get(f"/console/rejets?ml={other}")
        assert "hors de vos missions locales" in text(page)
        assert not [k for k in LISTED.findall(page.text) if unquote(k).startswith(other)]
        rows = user.get(f"/console/rejets.csv?ml={other}").content.decode("utf-8-sig").splitlines()[1:]
        assert rows and not [line for line in rows if line.split(";")[0] == other]
    confirm = text(user.get("/console/rejets/renvoi"))
    assert f"<strong>{len(listed)}</strong> événements à renvoyer" in confirm  # invalid and rejected: said apart
    dashboard = text(user.get("/console/"))
    assert f"{len(listed)} événements en attente d'un traitement" in dashboard
    read = re.search(r'<td class="nombre">(\d+)</td>', dashboard)[1]  # the first figure of the night: events read
    assert int(read) == len(visible(name))


@pytest.mark.parametrize("name", NAMES)
def test_another_mission_locales_event_is_exactly_as_missing(signed_in, gw, name) -> None:
    user = signed_in(name)
    missing = user.get("/console/evenements/69003-999")
    assert missing.status_code == 404 and "Introuvable" in text(missing)
    before = snapshot(gw)
    for key in ALL_KEYS | {UNREADABLE}:
        page = user.get(f"/console/evenements/{quote(key, safe='')}")
        if key in visible(name):
            assert page.status_code == 200 and f"Événement {key}" in text(page)
            continue
        assert page.status_code == 404 and page.text == missing.text  # not one byte tells them apart
        for path, data in ACTIONS[:2]:
            answer = user.post(path, data | {"cle": key})
            assert answer.status_code == 404 and answer.text == missing.text
    with gw.engine.connect() as conn:  # refused actions leave an audit row (support.py), but move nothing
        moved = conn.execute(sa.select(events_t.c.key, events_t.c.state).order_by(events_t.c.id)).all()
    assert moved == before[0]


def test_a_resend_by_filter_never_reaches_another_mission_locale(signed_in, gw) -> None:
    user = signed_in("support_69001")
    answer = user.post("/console/actions/renvoyer-filtre", {"code": "E01"})
    assert answer.status_code == 303
    with gw.engine.connect() as conn:
        states = dict(conn.execute(sa.select(events_t.c.key, events_t.c.state)).all())
        [audit] = conn.execute(sa.select(audit_t).where(audit_t.c.action == "RESEND_FILTER")).all()
    assert states["69001-3"] == "EN_ATTENTE" and states["69002-3"] == "REJETE"
    assert json.loads(audit.filter)["code_ml_in"] == ["69001"] and audit.actor == "console:support_69001"
    # the filter's mission locale set to another one matches nothing at all
    user.post("/console/actions/renvoyer-filtre", {"ml": "69002"})
    with gw.engine.connect() as conn:
        assert conn.execute(sa.select(events_t.c.state).where(events_t.c.key == "69002-3")).scalar_one() == "REJETE"
