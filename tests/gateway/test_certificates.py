"""Certificate expiry (issue 5): the gateway's certificate and DUDE's trusted ones, warned about
``certificate_warning_days`` ahead in the log (the daily job), ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi.testclient import TestClient

from gateway.api.auth import create_client
from gateway.api.main import create_app
from gateway.certificates import check_certificates, log_expiring, problems
from gateway.context import Gateway
from gateway.keys import make_self_signed
from gateway.scheduler import certificates_job, run_job_now
from gateway.store.models import utcnow


def test_every_certificate_is_checked_and_none_is_near_its_end_after_keys_init(settings, dev_keys) -> None:
    gw = Gateway.open(settings)
    statuses = check_certificates(gw)
    assert [s.role for s in statuses] == ["passerelle", "dude"]
    assert all(700 < s.days_left <= 730 and not s.warning for s in statuses)
    assert problems(statuses) == ([], [])
    gw.close()


def test_a_certificate_near_its_end_is_a_warning_and_an_expired_one_stops_readiness(settings, dev_keys,
                                                                                   caplog) -> None:
    gw = Gateway.open(settings)
    in_710_days = check_certificates(gw, now=utcnow() + timedelta(days=710))
    failing, warnings = problems(in_710_days)
    assert failing == [] and len(warnings) == 2 and "expire le" in warnings[0]
    with caplog.at_level(logging.WARNING, logger="gateway.certificates"):
        assert run_job_now(gw, certificates_job) == 0  # today: nothing to say
        assert log_expiring(in_710_days) == 2
    assert sum("passerelle" in r.getMessage() for r in caplog.records) == 1

    key, cert = make_self_signed("PARCOURS3 passerelle", days=20)  # a certificate that ends within 30 days
    settings.gateway_key_file.write_bytes(key)
    settings.gateway_cert_file.write_bytes(cert)
    _, token = create_client(gw.engine, name="adm", role="admin", now=utcnow())
    with TestClient(create_app(gw)) as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok" and ready["checks"]["certificates"] == "ok"
        assert len(ready["warnings"]) == 1 and "passerelle" in ready["warnings"][0]
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
        assert 'gateway_certificate_expiry_days{role="passerelle"' in metrics
        assert 'gateway_certificate_expiry_days{role="dude"' in metrics
    expired = check_certificates(gw, now=utcnow() + timedelta(days=21))
    assert "expiré" in problems(expired)[0][0]
    gw.close()
