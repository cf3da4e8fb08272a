"""``gateway serve --root-path /passerelle`` behind a reverse proxy that serves the gateway under ``/passerelle``
and strips it before passing requests on (nginx: ``location /passerelle/ { proxy_pass http://127.0.0.1:8780/; }``).

The server then hands the application ``scope["root_path"] == "/passerelle"`` and, as uvicorn does, a
``scope["path"]`` starting with it (``/passerelle/api/v1/dude/comptes-rendus``). Everything the gateway
decides by path had to see through it: DUDE's callback took the JSON body limit (a report over 16 MB refused
413), the console's pages went out gzip-compressed, and the static files of ``/docs`` and of the console were
marked ``no-store``. Everything it gives as an address must carry the prefix: the console's links, forms,
redirects and cookie paths, the API's ``Location``, ``/docs`` and ``/openapi.json``'s ``servers``.

These tests go through a real ``gateway serve`` process and a small proxy doing what nginx does, as a
partner and a support person would: every address followed is one the gateway gave.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.api.main import create_app
from gateway.api.routes.dude import CALLBACK_PATH
from gateway.api.serving import serve_in_thread
from gateway.demo import free_port
from tests.factories import json_event
from tests.gateway.api.conftest import bearer
from tests.tools import stop_server

PREFIX = "/passerelle"
#: A small JSON body limit for the served gateway: DUDE's callback must take more (``max_document_bytes``).
JSON_LIMIT = 4096
#: What a proxy does not pass on (RFC 9110 §7.6.1), and what it sets itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length"}
ADDRESS = re.compile(r'(?:href|src|action)="([^"]+)"')


@contextmanager
def stripping_proxy(backend: str, prefix: str = PREFIX) -> Iterator[str]:
    """nginx's ``location /passerelle/ { proxy_pass http://backend/; proxy_set_header Host $host; }``: a request
    for ``/passerelle/x`` goes to ``/x`` with its headers and body, the answer comes back as it is (not
    decompressed); anything else is a 404 of the proxy's own. Yields the proxy's base URL."""
    target = urlsplit(backend)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if not self.path.startswith(prefix + "/"):
                self._answer(404, [("content-type", "text/plain")], b"not routed by the proxy")
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                upstream.request(self.command, self.path[len(prefix):], body=body, headers=headers)
                answer = upstream.getresponse()
                self._answer(answer.status, [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP],
                             answer.read())
            finally:
                upstream.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, name="stripping-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def gateway_serve(data_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """A real ``gateway --verbose serve`` (access log at INFO, in ``log``), schedule off, JSON bodies limited to
    `JSON_LIMIT`; yields its own base URL once it answers, stops it with SIGTERM."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environ |= {"GATEWAY_SCHEDULE_ENABLED": "false", "GATEWAY_API_MAX_BODY_BYTES": str(JSON_LIMIT), **(env or {})}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "gateway", "--verbose", "serve", "--port", str(port),
                                   "--data-dir", str(data_dir), *args], env=environ, cwd=log.parent,
                                  stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"gateway serve did not start: {log.read_text()}"
            time.sleep(0.1)
        yield base
    finally:
        stop_server(server)


@dataclass
class Served:
    public: str  # the proxy: what partners and browsers use, ``http://host:port/passerelle``
    origin: str  # the proxy's scheme, host and port alone
    log: Path


@pytest.fixture
def served(settings, dev_keys, night, tmp_path) -> Iterator[Served]:
    """``gateway serve --root-path /passerelle`` over the API tests' night, behind the stripping proxy."""
    log = tmp_path / "serve.log"
    with gateway_serve(settings.data_dir, log, "--root-path", PREFIX) as backend, stripping_proxy(backend) as origin:
        yield Served(f"{origin}{PREFIX}", origin, log)


def _addresses(page: str) -> list[str]:
    """Every address a page gives (links, scripts, styles, forms), in-page anchors and other sites left out."""
    return [a for a in ADDRESS.findall(page) if not a.startswith(("#", "http://", "https://", "mailto:"))]


def test_the_console_signs_in_and_is_followed_link_by_link_through_the_prefix(served: Served, tokens, gw) -> None:
    """A support person at ``/passerelle/console/``: sent to sign in, signed in (cookies scoped to the
    prefixed paths, which the client only sends back there), then dashboard → rejects → event → close with its
    CSRF token, every step an address the previous page or redirect gave. The pages are not compressed and
    their style and script, fetched through the proxy, are not marked ``no-store``."""
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        first = browser.get(f"{served.public}/console/")
        assert first.status_code == 303
        signin_url = urljoin(str(first.url), first.headers["location"])
        assert signin_url.startswith(f"{served.public}/console/connexion"), signin_url

        form = browser.get(signin_url)
        assert form.status_code == 200 and "content-encoding" not in form.headers
        assert f"Path={PREFIX}/console/connexion" in form.headers["set-cookie"]
        action = re.search(r'<form method="post" action="([^"]+)"', form.text)[1]
        assert action == f"{PREFIX}/console/connexion"
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)[1]
        signed = browser.post(urljoin(served.origin, action), data={"jeton": tokens.support_69001, "csrf": csrf})
        assert signed.status_code == 303, signed.text
        assert f"Path={PREFIX}/console;" in signed.headers["set-cookie"]
        home = urljoin(str(signed.url), signed.headers["location"])
        assert home.startswith(f"{served.public}/console/"), home

        dashboard = browser.get(home)
        assert dashboard.status_code == 200 and "Tableau de bord" in dashboard.text
        assert "content-encoding" not in dashboard.headers  # the console is never compressed
        addresses = _addresses(dashboard.text)
        assert addresses and all(a.startswith(f"{PREFIX}/console/") for a in addresses), addresses
        for asset in {a for a in addresses if "/static/" in a}:
            fetched = browser.get(urljoin(served.origin, asset))
            assert fetched.status_code == 200, asset
            assert fetched.headers.get("cache-control") != "no-store", asset  # as at the root

        rejects = next(a for a in addresses if a.split("?")[0] == f"{PREFIX}/console/rejets")
        listing = browser.get(urljoin(served.origin, rejects.replace("&amp;", "&")))
        assert listing.status_code == 200
        events = [a for a in _addresses(listing.text) if a.startswith(f"{PREFIX}/console/evenements/")]
        assert events, listing.text
        event_url = urljoin(served.origin, events[0])
        page = browser.get(event_url, headers={"referer": str(listing.url)})
        assert page.status_code == 200
        assert all(a.startswith(f"{PREFIX}/console/") for a in _addresses(page.text)), _addresses(page.text)
        key = re.search(r'name="cle" value="([^"]+)"', page.text)[1]
        close = f"{PREFIX}/console/actions/clore"
        assert f'action="{close}"' in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
        closed = browser.post(urljoin(served.origin, close),
                              data={"cle": key, "commentaire": "Corrigé dans DUDE", "csrf": csrf})
        assert closed.status_code == 303, closed.text
        after = urljoin(served.origin, closed.headers["location"])
        assert after.startswith(f"{served.public}/console/evenements/"), after
        assert browser.get(after).status_code == 200

        bare = browser.get(f"{served.public}/console")  # typed without its "/": to the prefixed console
        assert bare.status_code == 308
        assert urljoin(str(bare.url), bare.headers["location"]) == f"{served.public}/console/"

    state = httpx.get(f"{served.public}/api/v1/events/{key}", headers=bearer(tokens.admin), timeout=30)
    assert state.json()["state"] == "CLOS"


def test_the_api_documentation_and_callback_through_the_prefix(served: Served, tokens, settings) -> None:
    """A partner's ``Location`` is followed through the proxy; ``/docs`` loads its files and its document
    under the prefix, which ``/openapi.json`` gives as its server; DUDE's callback keeps its own body limit
    while JSON bodies keep theirs; the access log names the path the client used, without its query."""
    with httpx.Client(base_url=served.public, timeout=30) as partner:
        created = partner.post("/api/v1/events", json=json_event(id_evenement="7001"),
                               headers=bearer(tokens.partner_69001))
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location.startswith(f"{PREFIX}/api/v1/events/"), location
        read = httpx.get(urljoin(served.origin, location), headers=bearer(tokens.partner_69001), timeout=30)
        assert read.status_code == 200 and read.json()["key"] == created.json()["key"]
        found = partner.get("/api/v1/events", params={"identifiant_pe": "1234567A"},
                            headers=bearer(tokens.partner_69001))
        assert found.status_code == 200 and created.json()["key"] in [e["key"] for e in found.json()["items"]]

        docs = partner.get("/docs")
        assert docs.status_code == 200
        wanted = [f"{PREFIX}/openapi.json", f"{PREFIX}/docs/assets/swagger-ui-bundle.js",
                  f"{PREFIX}/docs/assets/swagger-ui.css"]
        for url in wanted:
            assert f"'{url}'" in docs.text or f'"{url}"' in docs.text, url
            fetched = httpx.get(urljoin(served.origin, url), timeout=30)
            assert fetched.status_code == 200, url
            if "/assets/" in url:  # static files may be cached, as at the root
                assert fetched.headers.get("cache-control") != "no-store", url
        assert partner.get("/openapi.json").json()["servers"] == [{"url": PREFIX}]

        report = b"<CompteRendu>" + b" " * (2 * JSON_LIMIT) + b"</CompteRendu"  # over the JSON limit, not XML's
        callback = partner.post(CALLBACK_PATH, content=report, headers={"content-type": "application/xml"})
        assert callback.status_code != 413, callback.text
        assert callback.json()["code"] != "TOO_LARGE"
        bulk = partner.post("/api/v1/events/bulk", headers=bearer(tokens.partner_69001),
                            json={"events": [json_event(id_evenement=f"8{i:03d}") for i in range(20)]})
        assert bulk.status_code == 413 and bulk.json()["instance"] == f"{PREFIX}/api/v1/events/bulk"

    deadline = time.monotonic() + 10
    while f"GET {location} 200" not in served.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = served.log.read_text()
    assert f"GET {location} 200" in log and f"GET {PREFIX}/api/v1/events 200" in log, log
    assert "1234567A" not in log  # the query string (a jobseeker id) is never logged
    assert f"POST {PREFIX}{CALLBACK_PATH} {callback.status_code}" in log, log
    assert f"{PREFIX}{PREFIX}" not in log


@pytest.mark.slow
def test_workers_take_the_prefix_from_the_command_line(settings, dev_keys, tokens, tmp_path) -> None:
    """``gateway serve --workers 2 --root-path /passerelle``: each worker builds its application anew, from the
    settings; the prefix reaches them all."""
    log = tmp_path / "serve.log"
    with gateway_serve(settings.data_dir, log, "--workers", "2", "--root-path", f"{PREFIX}/") as backend, \
            stripping_proxy(backend) as origin:
        for _ in range(4):  # new connections, whichever worker takes them
            with httpx.Client(base_url=f"{origin}{PREFIX}", timeout=30, follow_redirects=False) as client:
                assert client.get("/console/").headers["location"].startswith(f"{PREFIX}/console/connexion")
        created = httpx.post(f"{origin}{PREFIX}/api/v1/events", json=json_event(id_evenement="7002"),
                             headers=bearer(tokens.partner_69001), timeout=30)
        assert created.headers["location"].startswith(f"{PREFIX}/api/v1/events/")
    assert f"sous le préfixe {PREFIX} " in log.read_text()


def test_a_root_path_that_is_not_a_path_stops_serve_naming_the_setting(tmp_path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--root-path", "passerelle", "--data-dir",
                           str(tmp_path / "data"), "--port", str(free_port())], env=environ, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "GATEWAY_API_ROOT_PATH" in done.stderr and "/passerelle" in done.stderr and "Traceback" not in done.stderr


#: Who gives the prefix: uvicorn's own ``root_path`` (uvicorn run by hand), the gateway's setting (`RootPath`,
#: what ``gateway serve --root-path`` does), or both at once (never put twice).
GIVERS = {"uvicorn": (PREFIX, None), "setting": ("", PREFIX), "both": (PREFIX, PREFIX)}


@pytest.mark.parametrize("giver", GIVERS)
def test_the_prefix_given_by_uvicorn_or_by_the_setting_is_seen_through_and_given_once(gw, tokens, giver) -> None:
    """uvicorn puts the prefix in front of ``scope["path"]`` (``/passerelle/api/v1/dude/comptes-rendus``): the
    callback keeps its own limit, the documentation's files are not marked ``no-store``, the console is not
    compressed, and every address given carries the prefix once."""
    server_root, setting = GIVERS[giver]
    gw.settings = gw.settings.model_copy(update={"api_max_body_bytes": JSON_LIMIT})
    with serve_in_thread(create_app(gw, root_path=setting), root_path=server_root) as base, \
            httpx.Client(base_url=base, timeout=30, follow_redirects=False) as client:
        report = b"<CompteRendu>" + b" " * (2 * JSON_LIMIT) + b"</CompteRendu"
        assert client.post(CALLBACK_PATH, content=report,
                           headers={"content-type": "application/xml"}).status_code != 413
        assert client.get("/docs/assets/swagger-ui.css").headers.get("cache-control") != "no-store"
        page = client.get("/console/connexion", headers={"accept-encoding": "gzip"})
        assert page.status_code == 200 and "content-encoding" not in page.headers
        assert f'action="{PREFIX}/console/connexion"' in page.text
        assert client.get("/console/").headers["location"].startswith(f"{PREFIX}/console/connexion?")
        created = client.post("/api/v1/events", json=json_event(id_evenement="7003"),
                              headers=bearer(tokens.partner_69001))
        assert created.headers["location"] == f"{PREFIX}/api/v1/events/{created.json()['key']}"
        assert created.headers["cache-control"] == "no-store"


def test_a_prefix_left_out_of_the_path_is_matched_too(gw) -> None:
    """Starlette's ``TestClient(root_path=…)`` gives ``root_path`` without putting it in front of ``path``
    (the API's own tests do so): the limits and the caching rule hold there as well."""
    gw.settings = gw.settings.model_copy(update={"api_max_body_bytes": JSON_LIMIT})
    with TestClient(create_app(gw), root_path=PREFIX) as client:
        report = b"<CompteRendu>" + b" " * (2 * JSON_LIMIT) + b"</CompteRendu"
        assert client.post(CALLBACK_PATH, content=report,
                           headers={"content-type": "application/xml"}).status_code != 413
        assert client.post("/api/v1/events/bulk", content=b" " * (2 * JSON_LIMIT),
                           headers={"content-type": "application/json"}).status_code == 413
        assert client.get("/docs/assets/swagger-ui.css").headers.get("cache-control") != "no-store"
