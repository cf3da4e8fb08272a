"""A DUDE, or a proxy in front of it, that answers with what we sent it: a firewall's page quoting the part of
the envelope it blocked, a problem whose ``detail`` quotes it. The night's logs, the envelope's last error (the
console, the API) and the run's summary say the envelope, the status and the problem's code, never the young
person (brief §6: logs carry event keys, never names or birth dates; the NIR is never anywhere)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import sqlalchemy as sa

from adapters.dude.emulator.app import mock_transport
from gateway.pipeline import reconcile
from gateway.pipeline.run import run_batch
from gateway.store.models import envelopes_t
from tests.factories import p3_line, write_export
from tests.gateway.test_gateway_faults import dude, open_gateway

#: What the envelope says of the factories' young person, and a NIR a proxy's page could hold.
PERSONAL = ("Lefèvre", "LEFEVRE", "Zoé", "1234567A", "2004-05-06", "06/05/2004", "204056912345678")


class Echoing(httpx.BaseTransport):
    """DUDE, until ``status`` is set: then every request is answered with it and a body quoting the request."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.status, self.content_type = inner, None, "text/html"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.status is None:
            return self.inner.handle_request(request)
        sent = request.content.decode()
        quoted = sent[sent.find("<Jeune"):][:400] or request.url.path  # a GET has no body: its path
        if self.content_type == "text/html":
            body = f"<h1>Requête bloquée</h1><pre>{quoted} nir=204056912345678</pre>".encode()
        else:
            body = json.dumps({"type": "about:blank", "title": "Requête bloquée", "status": self.status,
                               "code": "WAF_BLOCKED", "detail": f"{quoted} nir=204056912345678"}).encode()
        return httpx.Response(self.status, content=body, headers={"Content-Type": self.content_type},
                              request=request)


@pytest.mark.parametrize("status, content_type, said", [
    (403, "text/html", "HTTP 403 (text/html, "),
    (409, "application/problem+json", "HTTP 409 WAF_BLOCKED (Requête bloquée)"),
    (500, "application/problem+json", "HTTP 500 WAF_BLOCKED (Requête bloquée)"),
], ids=["403-page", "409-problem", "500-problem"])
def test_an_answer_quoting_the_envelope_leaves_no_one_in_the_logs_nor_the_store(
        status, content_type, said, settings, dev_keys, registry_file, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    with dude(settings, registry_file) as emu:
        link = Echoing(mock_transport(emu))
        gw = open_gateway(settings, link, send_attempts=2, dude_outage_seconds=0)
        try:
            first = run_batch(gw, [write_export(tmp_path / "P3_69001_20261127.csv", [p3_line(id_evenement="1")])],
                              wait_for_reports=False)
            assert first.envelopes == {"RECU": 1}  # awaiting its report, which is asked below
            link.status, link.content_type = status, content_type
            night = run_batch(gw, [write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="2")])],
                              wait_for_reports=False)
            reconcile.poll_reports(gw, force=True)
        finally:
            gw.close()

    with gw.engine.connect() as conn:
        [(awaiting, _)] = conn.execute(sa.select(envelopes_t.c.id, envelopes_t.c.last_error)
                                       .where(envelopes_t.c.run_id == first.run_id)).all()
        [(posted, last_error)] = conn.execute(sa.select(envelopes_t.c.id, envelopes_t.c.last_error)
                                              .where(envelopes_t.c.run_id == night.run_id)).all()
    assert said in last_error, last_error
    logged = [r.getMessage() for r in caplog.records]
    assert [m for m in logged if posted in m and said in m], logged  # the failed post: its envelope and status
    assert [m for m in logged if awaiting in m and f"HTTP {status}" in m], logged  # the failed report poll
    for where, text in (("logs", caplog.text), ("last_error", last_error),
                        ("summary", json.dumps(night.as_dict(), ensure_ascii=False))):
        assert not [p for p in PERSONAL if p in text], (where, text)
