"""Certificate expiry (issue 5): the gateway's certificate and DUDE's trusted ones, warned about
``certificate_warning_days`` ahead in the log (the daily job), ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
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


def _status(role: str, *, days: int = 730, not_before=None, now=None):
    from cryptography import x509

    from gateway.certificates import _status as status

    cert = x509.load_pem_x509_certificate(make_self_signed("PARCOURS3 passerelle", days=days, key_size=1024,
                                                           not_before=not_before)[1])
    return status(role, cert, now or utcnow(), 30)


def test_the_time_left_is_rounded_up_in_days_or_said_in_hours_and_ends_with_the_action() -> None:
    """Right after ``gateway keys init --days 10`` it said "dans 9 jour(s)" (truncated), and "dans 0 jour(s)"
    on a certificate ending within the day."""
    fresh = _status("passerelle", days=10)
    assert "dans 10 jour(s)" in fresh.describe()
    assert fresh.describe().endswith(": à renouveler, puis à enregistrer auprès de l'agence (gateway keys show-cert)")
    start = utcnow() - timedelta(days=1)
    for left, said in [(timedelta(hours=23), "dans 23 heure(s)"), (timedelta(minutes=10), "dans 1 heure(s)"),
                       (timedelta(hours=22, minutes=30), "dans 23 heure(s)"),
                       (timedelta(hours=23, minutes=30), "dans 1 jour(s)"),
                       (timedelta(days=1, minutes=1), "dans 2 jour(s)")]:
        ending = _status("dude", days=2, not_before=start, now=start + timedelta(days=2) - left)
        assert f"expire le {ending.not_after:%Y-%m-%d}, {said} : à renouveler" in ending.describe(), (left, said)
        assert "show-cert" not in ending.describe()  # DUDE's: a new one from the agency, not ours to register
    expired = _status("passerelle", days=2, not_before=start, now=start + timedelta(days=3))
    assert "expiré depuis le" in expired.describe() and "gateway keys show-cert" in expired.describe()


def test_a_certificate_not_valid_yet_is_said_and_counts_as_expired() -> None:
    """Its validity starting in a few days, it was reported fine while `adapters.dude.signing` refuses any
    signature outside the validity window: every receipt refused, every envelope refused by DUDE (L02)."""
    from gateway.certificates import problems

    later = utcnow() + timedelta(days=3)
    own_later = _status("passerelle", not_before=later)
    assert own_later.not_yet_valid and not own_later.expired and own_later.warning
    assert f"valide seulement à partir du {later:%Y-%m-%d}, dans 3 jour(s)" in own_later.describe()
    failing, warnings = problems([own_later, _status("dude")])
    assert failing == [own_later.describe()] and warnings == []

    dude_now, dude_later = _status("dude"), _status("dude", not_before=later)
    failing, warnings = problems([_status("passerelle"), dude_later])  # the only one DUDE's: nothing trusted
    assert len(failing) == 1 and "aucun certificat du DUDE valide" in failing[0]
    assert "valide seulement à partir du" in failing[0] and warnings == []
    assert problems([_status("passerelle"), dude_now, dude_later]) == ([], [dude_later.describe()])  # rotation
    expired = _status("dude", days=1, not_before=utcnow() - timedelta(days=2))
    failing, _ = problems([_status("passerelle"), expired, dude_later])
    assert len(failing) == 1 and "expiré depuis" in failing[0] and "valide seulement" in failing[0]


def test_readyz_and_gateway_run_refuse_a_certificate_not_valid_yet(settings, dev_keys, tmp_path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.errors import KeyMaterialError
    from gateway.keys import check_key_material
    from tests.factories import p3_line, write_export

    gw = Gateway.open(settings)
    later = utcnow() + timedelta(days=2)
    trusted = settings.gateway_trust_dir / "dude.cert.pem"
    current = trusted.read_bytes()
    trusted.write_bytes(make_self_signed("DUDE", not_before=later)[1])  # DUDE's next, alone: nothing trusted today
    with TestClient(create_app(gw)) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and "aucun certificat du DUDE valide" in answer.text
        with pytest.raises(KeyMaterialError, match="aucun certificat du DUDE valide à cette date"):
            check_key_material(settings)

        (settings.gateway_trust_dir / "dude-current.cert.pem").write_bytes(current)  # rotation: the next one waits
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok" and len(ready["warnings"]) == 1
        assert "valide seulement à partir du" in ready["warnings"][0]
        check_key_material(settings)

        key, cert = make_self_signed("PARCOURS3 passerelle", not_before=later)  # ours, not valid yet
        settings.gateway_key_file.write_bytes(key)
        settings.gateway_cert_file.write_bytes(cert)
        answer = client.get("/readyz")
        assert answer.status_code == 503 and f"valide seulement à partir du {later:%Y-%m-%d}" in answer.text
    gw.close()

    export = write_export(tmp_path / "P3_69001_20261128.csv", [p3_line(id_evenement="1")])
    result = CliRunner(env={"GATEWAY_DATA_DIR": None, "GATEWAY_DATABASE_URL": settings.database_url,
                            "GATEWAY_DUDE_URL": "http://127.0.0.1:9/dude/v1", "GATEWAY_SEND_ATTEMPTS": "1"}).invoke(
        app, ["run", "--input", str(export), "--data-dir", str(settings.data_dir)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, (result.exception, said)
    assert "Erreur KEYS" in said and "valide seulement à partir du" in said


def test_a_renewed_certificate_put_in_place_is_signed_with_without_a_restart(settings, dev_keys, caplog) -> None:
    """`gateway serve` read its key and certificate once: after a renewal put in place, its scheduled nights
    went on signing with the old certificate until it expired (every envelope L02), while ``/readyz`` judged
    the new file. The files are read again when they change; between the two moves (the certificate in, its
    key not yet) the signer loaded before goes on, with a warning, rather than a night stopping on KEYS."""
    import os

    from cryptography.hazmat.primitives import hashes
    from lxml import etree

    gw = Gateway.open(settings)
    before = gw.signer
    assert gw.signer is before  # read once while the files stay as they are
    key, cert = make_self_signed("PARCOURS3 passerelle", days=400)
    moves = [(settings.gateway_cert_file, cert), (settings.gateway_key_file, key)]
    for n, (path, pem) in enumerate(moves):
        fresh = path.with_suffix(".neuf")  # written aside, then moved in place, as an operator would
        fresh.write_bytes(pem)
        os.replace(fresh, path)
        if n == 0:
            with caplog.at_level(logging.WARNING, logger="gateway.keys"):
                assert gw.signer is before  # the new certificate, the old key: not a pair
            assert "do not load" in caplog.text and "ne correspond pas" in caplog.text
    renewed = gw.signer
    assert renewed is not before
    assert renewed.certificate.fingerprint(hashes.SHA256()) != before.certificate.fingerprint(hashes.SHA256())
    signed = renewed.sign_in_place(etree.fromstring(b'<Lot xmlns="urn:fr:spe:dude:echanges:v1" Id="x"/>'))
    assert cert.decode().split("-----")[2].replace("\n", "") in etree.tostring(signed).decode().replace("\n", "")
    gw.close()


def test_gateway_run_refuses_in_the_words_readyz_uses_and_logs_what_the_daily_check_logs(settings, dev_keys,
                                                                                          caplog) -> None:
    """`gateway.keys.check_key_material` (``gateway run``) and `gateway.certificates` (``/readyz``, ``gateway
    check``, the daily job) judged the same certificates with two codes, and said it in two wordings: one decides
    now, the other says what it decided."""
    from gateway.errors import KeyMaterialError
    from gateway.keys import check_key_material

    gw = Gateway.open(settings)
    own = gw.signer.certificate
    dude_file = settings.gateway_trust_dir / "dude.cert.pem"
    later = utcnow() + timedelta(days=2)
    for moment, dude_pem in [(own.not_valid_after_utc + timedelta(days=1), None),  # everything expired
                             (own.not_valid_before_utc - timedelta(hours=1), None),  # nothing valid yet
                             (utcnow(), make_self_signed("DUDE", not_before=later)[1])]:  # DUDE's, from later
        if dude_pem is not None:
            dude_file.write_bytes(dude_pem)
        failing, _ = problems(check_certificates(gw, now=moment))
        assert failing
        with pytest.raises(KeyMaterialError) as refused:
            check_key_material(settings, now=moment)
        assert refused.value.message == "; ".join(failing)
    gw.close()

    end = own.not_valid_after_utc  # both certificates end within 5 days of it (made together by keys init)
    caplog.set_level(logging.WARNING)
    dude_file.write_bytes((settings.data_dir / "emulator" / "keys" / "dude.cert.pem").read_bytes())
    gw = Gateway.open(settings)
    caplog.clear()
    check_key_material(settings, now=end - timedelta(days=5))
    by_run = [r.getMessage() for r in caplog.records]
    caplog.clear()
    log_expiring(check_certificates(gw, now=end - timedelta(days=5)))
    assert by_run == [r.getMessage() for r in caplog.records] and len(by_run) == 2
    assert by_run[0].startswith("the gateway's certificate expires on") and "in 5 day(s)" in by_run[0]
    gw.close()


def test_metrics_say_a_certificate_not_valid_yet_and_whether_the_certificates_let_a_night_work(settings,
                                                                                                dev_keys) -> None:
    """``gateway_certificate_expiry_days`` said nothing of a certificate installed before its validity starts
    (a renewal put in too early, a wrong clock), and two certificates of one subject (DUDE's current one and
    its renewal, side by side in the trust folder) came out as one series twice."""
    import re

    gw = Gateway.open(settings)
    _, token = create_client(gw.engine, name="adm", role="admin", now=utcnow())

    def scrape(client) -> str:
        return client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text

    def samples(text: str, name: str) -> dict[str, float]:
        return {labels: float(value) for labels, value in re.findall(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M)}

    with TestClient(create_app(gw)) as client:
        now = scrape(client)
        assert "gateway_certificates_ok 1.0" in now
        assert all(v < 0 for v in samples(now, "gateway_certificate_start_days").values())

        later = utcnow() + timedelta(days=3)
        renewal = make_self_signed("DUDE emulateur", not_before=later)[1]  # the same subject as the current one
        (settings.gateway_trust_dir / "dude-2027.cert.pem").write_bytes(renewal)
        rotating = scrape(client)
        assert "gateway_certificates_ok 1.0" in rotating  # the current one is still valid
        starts = samples(rotating, "gateway_certificate_start_days")
        assert len(starts) == 3 and len(samples(rotating, "gateway_certificate_expiry_days")) == 3
        assert sorted(round(v) for v in starts.values() if v > 0) == [3]

        (settings.gateway_trust_dir / "dude.cert.pem").unlink()  # the renewal alone: nothing DUDE signs is trusted
        assert "gateway_certificates_ok 0.0" in scrape(client)
    gw.close()
