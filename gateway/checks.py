"""Is this installation ready for a night? One list of checks for two readers.

``/readyz`` (`gateway.api.routes.health`) asks the part an orchestrator needs of a running service: the
store answers, the signing key and DUDE's certificates load, none has expired (`readiness`).

``gateway check`` (`gateway.cli.ops`) asks the integrator's whole list, before the service is started and at
2 a.m. when a night said nothing (`installation`): the same, plus the store's schema, the drop folder, the
sending switch, and DUDE itself. Why DUDE: an address, a firewall, a proxy or a TLS chain wrong at
installation was only found by the first night, in its log, as "attempt 1/5 failed" on every envelope; the
check asks DUDE for the report of an ``IdLot`` no envelope ever had (`DudeClient.probe`), which sends
nothing and which only DUDE's exchange endpoint answers ``404 NO_REPORT``.

Each check says what is wrong and what to do, in French like every message for operators; nothing here
creates or changes anything (a missing SQLite store stays missing: the first night makes it).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.certificates import check_certificates, problems
from gateway.context import Gateway
from gateway.errors import GatewayError, RemoteServerError, TransportError

OK, WARNING, FAILING = "ok", "attention", "échec"

#: The probe waits at most this long (a night's posts wait ``GATEWAY_HTTP_TIMEOUT_SECONDS``, 60 s by default).
PROBE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # stable, for scripts (``--json``) and /readyz: database, signing_key, trust_store, …
    label: str  # what is checked, for people
    status: str  # OK, WARNING (works, but look), FAILING (a night would not do its work)
    detail: str  # what was found, and what to do when it is not ok
    warnings: list[str] = field(default_factory=list)  # certificates expiring soon

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def database(gw: Gateway) -> Check:
    label = "base de la passerelle"
    try:
        with gw.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return Check("database", label, FAILING, f"injoignable : {exc.__class__.__name__}")
    return Check("database", label, OK, "ok")


def signing_key(gw: Gateway) -> Check:
    label = "clé et certificat de signature"
    try:
        gw.signer  # noqa: B018  (loads the key and certificate once)
    except (GatewayError, OSError) as exc:
        return Check("signing_key", label, FAILING, f"non chargée : {exc}")
    return Check("signing_key", label, OK, "ok")


def trust_store(gw: Gateway) -> Check:
    label = "certificats du DUDE"
    try:
        count = len(gw.dude_trust)
    except (GatewayError, OSError) as exc:
        return Check("trust_store", label, FAILING, f"non chargé : {exc}")
    if not count:
        return Check("trust_store", label, FAILING, "vide : aucun certificat du DUDE")
    return Check("trust_store", label, OK, "ok")


def certificates(gw: Gateway) -> Check:
    """Expired: failing (DUDE refuses our envelopes, or nothing it says can be trusted); expiring within
    ``GATEWAY_CERTIFICATE_WARNING_DAYS``: a warning (`gateway.certificates`)."""
    failing, warnings = problems(check_certificates(gw))
    label = "échéance des certificats"
    if failing:
        return Check("certificates", label, FAILING, "; ".join(failing), warnings)
    if warnings:
        return Check("certificates", label, WARNING, "; ".join(warnings), warnings)
    return Check("certificates", label, OK, "ok")


def keys(gw: Gateway) -> list[Check]:
    """The signing key, DUDE's certificates, and their expiry (asked only once both load)."""
    checks = [signing_key(gw), trust_store(gw)]
    if all(c.status == OK for c in checks):
        checks.append(certificates(gw))
    return checks


def readiness(gw: Gateway) -> list[Check]:
    """What ``/readyz`` asks: the store and the keys."""
    return [database(gw), *keys(gw)]


def schema(gw: Gateway) -> Check:
    """The store's schema revision against this version's: behind, the next start migrates it (say so)."""
    from gateway.store.migrate import current, head

    label = "schéma de la base"
    try:
        have, want = current(gw.engine), head()
    except GatewayError as exc:
        return Check("schema", label, FAILING, str(exc))
    if have is None:
        return Check("schema", label, WARNING, "base vide : la première nuit (ou gateway db upgrade) crée le schéma")
    if have != want:
        return Check("schema", label, WARNING, f"révision {have}, cette version attend {want} : gateway db upgrade "
                     "(ou le prochain démarrage) la met à jour")
    return Check("schema", label, OK, f"à jour ({have})")


def drop_folder(gw: Gateway) -> Check:
    from gateway.nightly import drop_folder_check, is_export_name

    label = "dossier de dépôt"
    folder = gw.settings.runs_input_dir
    problem = drop_folder_check(gw.settings)
    if problem is not None:
        return Check("drop_folder", label, FAILING, f"{folder} : {problem['message']}")
    if not folder.is_dir():  # the default folder, made by the first night
        return Check("drop_folder", label, OK, f"{folder} : pas encore créé (la première nuit le crée)")
    exports = sum(1 for p in folder.iterdir() if is_export_name(p.name) and p.is_file())
    return Check("drop_folder", label, OK, f"{folder} : lisible, {exports} export(s) *.csv (lus ou non)")


def sending(gw: Gateway) -> Check:
    from gateway.pipeline.pause import current

    state = current(gw.engine)
    if state.paused:
        return Check("sending", "envoi au DUDE", WARNING, f"{state.describe()} ; gateway sending resume le reprend")
    return Check("sending", "envoi au DUDE", OK, state.describe())


def dude(gw: Gateway) -> Check:
    """Asks DUDE for the report of an ``IdLot`` no envelope ever had: only its exchange endpoint answers
    ``404 NO_REPORT``. Sends nothing; signs nothing."""
    from adapters.dude.client import DudeClient

    label = f"DUDE ({gw.settings.dude_url})"
    started = time.perf_counter()
    client = DudeClient(gw.settings.dude_url, timeout=min(PROBE_TIMEOUT_SECONDS, gw.settings.http_timeout_seconds),
                        transport=gw.transport)
    try:
        status, code = client.probe()
    except RemoteServerError as exc:
        return Check("dude", label, FAILING, f"répond mais indisponible (HTTP {exc.status_code}) : les envois "
                     "attendront (GATEWAY_DUDE_OUTAGE_SECONDS)")
    except TransportError as exc:
        default = gw.settings.dude_url == type(gw.settings).model_fields["dude_url"].default
        return Check("dude", label, FAILING, f"injoignable : {exc.message} ; " + (
            "c'est l'adresse par défaut, celle de l'émulateur (gateway emulator serve) : pour le vrai DUDE, "
            "régler GATEWAY_DUDE_URL" if default else
            "vérifier GATEWAY_DUDE_URL, le pare-feu, le proxy, le certificat TLS"))
    finally:
        client.close()
    took = f"{(time.perf_counter() - started) * 1000:.0f} ms"
    if status == 404 and code == "NO_REPORT":
        return Check("dude", label, OK, f"joignable, répond en {took}")
    if status in (401, 403):
        return Check("dude", label, FAILING, f"refuse la passerelle (HTTP {status}) : voir avec l'agence")
    return Check("dude", label, FAILING, f"quelque chose répond (HTTP {status}{f', {code}' if code else ''}), "
                 "mais pas le point d'échange du DUDE : vérifier GATEWAY_DUDE_URL (chemin compris, ex. …/dude/v1)")


def installation(gw: Gateway, *, store_exists: bool = True, ask_dude: bool = True) -> list[Check]:
    """``gateway check``'s list. ``store_exists`` False (a SQLite file not made yet): the store's checks say
    so instead of connecting, which would create it."""
    if store_exists:
        store = [database(gw)]
        if store[0].status == OK:
            store += [schema(gw), sending(gw)]
    else:
        store = [Check("database", "base de la passerelle", WARNING,
                       f"pas encore de base à {gw.engine.url.database} : la première nuit "
                       "(ou gateway db upgrade) la crée ; si la passerelle en a une ailleurs, vérifier --data-dir")]
    return [*store, *keys(gw), drop_folder(gw), *([dude(gw)] if ask_dude else [])]
