"""Is this installation ready for a night? One list of checks for two readers.

``/readyz`` (`gateway.api.routes.health`) asks the part an orchestrator needs of a running service: the
store answers, the signing key and DUDE's certificates load, none has expired (`readiness`). It is not
authenticated: what it says of a failure stays terse (no database address).

``gateway check`` (`gateway.cli.check`) asks the integrator's whole list, before the service is started and at
2 a.m. when a night said nothing (`installation`): the same, said in full, plus the store's schema, the key
files' permissions, the drop folder and its exports, the sending switch, and DUDE itself. Why DUDE: an
address, a firewall, a proxy or a TLS chain wrong at installation was only found by the first night, in its
log, as "attempt 1/5 failed" on every envelope; the check asks DUDE for the report of an ``IdLot`` no envelope
ever had (`DudeClient.probe`), which sends nothing and which only DUDE's exchange endpoint answers
``404 NO_REPORT``.

Each check says what it found, and what to do when it is not ok, in French like every message for operators;
its ``status`` is ASCII for scripts (``ok``, ``warning``, ``failing``, ``skipped``). Nothing here creates or
changes anything: `looking_engine` opens the store without the gateway's own connection settings (which
switch a SQLite file to WAL, and make its folder).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from adapters.dude.client import ACCESS_REFUSED_STATUSES, TEXT_MAX, one_line
from gateway.certificates import check_certificates, no_dude_certificate, problems
from gateway.context import Gateway
from gateway.errors import AccessRefused, GatewayError, RemoteServerError, TransportError, os_reason
from gateway.settings import Settings
from gateway.store.db import server_connect_args, shown_url, store_problem

OK, WARNING, FAILING, SKIPPED = "ok", "warning", "failing", "skipped"

#: Free space under which the disk the gateway writes to is a warning, and a failure: a national night of 20,000
#: events adds some tens of MB to a SQLite store (events, their history, the signed documents kept a year), and
#: a disk that filled mid-run stopped the night (nothing lost, but nothing sent).
DISK_WARNING_BYTES = 1 << 30
DISK_FAILING_BYTES = 256 << 20

#: The probe waits at most this long (a night's posts wait ``GATEWAY_HTTP_TIMEOUT_SECONDS``, 60 s by default).
PROBE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # stable, for scripts (``--json``) and /readyz: database, signing_key, trust_store, …
    label: str  # what is checked, for people
    status: str  # OK; WARNING (works, but look); FAILING (a night would not do its work); SKIPPED
    detail: str  # what was found, and what to do when it is not ok
    warnings: list[str] = field(default_factory=list)  # certificates expiring soon (/readyz lists them)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def looking_engine(settings: Settings) -> sa.Engine:
    """An engine to look at the store with: no SQLite pragma (``journal_mode=WAL`` would write to the file),
    no folder made; a PostgreSQL server that accepts the connection and never answers fails as the gateway's
    own connections do (`gateway.store.db.CONNECT_TIMEOUT_SECONDS`)."""
    url = settings.db_url
    if url.startswith("sqlite"):
        return sa.create_engine(url)
    return sa.create_engine(url, connect_args=server_connect_args(url))


def database(gw: Gateway, *, in_full: bool = False) -> Check:
    """``in_full`` (the command): which database, and what its driver said; /readyz only says the kind."""
    label = "base de la passerelle"
    where = shown_url(gw.settings.db_url)
    try:
        with gw.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        if not in_full:
            return Check("database", label, FAILING, f"injoignable : {exc.__class__.__name__}")
        return Check("database", label, FAILING, f"{where} : {store_problem(exc)} ; vérifier GATEWAY_DATABASE_URL "
                     "(serveur, port, base, utilisateur, mot de passe) ou --data-dir")
    return Check("database", label, OK, where if in_full else "ok")


def signing_key(gw: Gateway, *, in_full: bool = False) -> Check:
    """What cannot be loaded is said as `gateway.keys.load_signer` says it: the file, what is wrong, its setting,
    and ``gateway keys init`` only for development keys (`gateway.keys.key_names`)."""
    label = "clé et certificat de signature"
    try:
        signer = gw.signer
    except (GatewayError, OSError) as exc:
        return Check("signing_key", label, FAILING, f"non chargée : {exc}")
    if not in_full:
        return Check("signing_key", label, OK, "ok")
    return Check("signing_key", label, OK, f"{signer.certificate.subject.rfc4514_string()}, "
                 f"clé {gw.settings.gateway_key_file}")


def trust_store(gw: Gateway, *, in_full: bool = False) -> Check:
    label = "certificats du DUDE"
    folder = gw.settings.gateway_trust_dir
    try:
        count = len(gw.dude_trust)
    except (GatewayError, OSError) as exc:
        return Check("trust_store", label, FAILING, f"non chargé : {exc}")
    if not count:
        return Check("trust_store", label, FAILING, no_dude_certificate(folder))
    return Check("trust_store", label, OK, f"{count} certificat(s) dans {folder}" if in_full else "ok")


def certificates(gw: Gateway, *, in_full: bool = False) -> Check:
    """Expired: failing (DUDE refuses our envelopes, or nothing it says can be trusted); expiring within
    ``GATEWAY_CERTIFICATE_WARNING_DAYS``: a warning (`gateway.certificates`)."""
    statuses = check_certificates(gw)
    failing, warnings = problems(statuses, trust_dir=gw.settings.gateway_trust_dir)
    label = "échéance des certificats"
    if failing:
        return Check("certificates", label, FAILING, "; ".join(failing), warnings)
    if warnings:
        return Check("certificates", label, WARNING, "; ".join(warnings), warnings)
    if not in_full:
        return Check("certificates", label, OK, "ok")
    first = min(statuses, key=lambda s: s.not_after)
    return Check("certificates", label, OK, f"la plus proche : {first.describe()}")


def keys(gw: Gateway, *, in_full: bool = False) -> list[Check]:
    """The signing key, DUDE's certificates, and their expiry (asked only once both load)."""
    checks = [signing_key(gw, in_full=in_full), trust_store(gw, in_full=in_full)]
    if all(c.status == OK for c in checks):
        checks.append(certificates(gw, in_full=in_full))
    return checks


def readiness(gw: Gateway) -> list[Check]:
    """What ``/readyz`` asks: the store and the keys."""
    return [database(gw), *keys(gw)]


def key_files(gw: Gateway) -> Check:
    """The private key and its password file readable by others: `gateway run` and `serve` warn of it."""
    from gateway.keys import unsafe_key_files

    unsafe = unsafe_key_files(gw.settings)
    if unsafe:
        return Check("key_files", "droits des fichiers secrets", WARNING, " ; ".join(unsafe))
    return Check("key_files", "droits des fichiers secrets", OK, "lisibles par leur seul propriétaire")


def _store(gw: Gateway) -> list[Check]:
    """The database, its schema, and (only in a store with one) the sending switch."""
    from gateway.pipeline.pause import current as sending_state
    from gateway.store.migrate import current, head, known_revision

    reached = database(gw, in_full=True)
    if reached.status != OK:
        return [reached]
    label = "schéma de la base"
    try:
        have, want = current(gw.engine), head()
    except GatewayError as exc:
        return [reached, Check("schema", label, FAILING, str(exc))]
    if have is None:
        return [reached, Check("schema", label, WARNING, "base vide : gateway db upgrade (ou le premier démarrage "
                               "du service, ou la première nuit) y crée le schéma")]
    if not known_revision(have):
        return [reached, Check("schema", label, FAILING, f"révision {have}, inconnue de cette version (une version "
                               "plus récente de la passerelle a migré cette base ?) : installer cette version-là, "
                               "ou restaurer la base")]
    schema = (Check("schema", label, OK, f"à jour ({have})") if have == want else
              Check("schema", label, WARNING, f"révision {have}, cette version attend {want} : gateway db upgrade "
                    "(ou le prochain démarrage) la met à jour"))
    try:
        state = sending_state(gw.engine)
    except SQLAlchemyError as exc:
        return [reached, schema, Check("sending", "envoi au DUDE", FAILING, f"illisible : {store_problem(exc)}")]
    if state.paused:
        said = state.describe(ZoneInfo(gw.settings.timezone))
        switch = Check("sending", "envoi au DUDE", WARNING, f"{said} ; gateway sending resume le reprend")
    else:
        switch = Check("sending", "envoi au DUDE", OK, state.describe())
    return [reached, schema, switch]


#: The exports a night refuses before reading a line (`gateway.nightly.exports_in`): code, what they are, what to do.
_REFUSED_EXPORTS = (
    ("P3_UNREADABLE", "export(s) que la passerelle ne peut pas lire",
     "donner le droit de lecture à l'utilisateur du service"),
    ("P3_SYMLINK", "lien(s) symbolique(s)", "déposer les fichiers eux-mêmes, pas des liens"),
    ("P3_FILE_NAME", "export(s) au nom illisible", "les renommer, par exemple P3_69001_20261128.csv"),
)


def drop_folder(gw: Gateway, store: Sequence[Check] = ()) -> Check:
    """Missing, a file, unlistable: failing, as a night would read nothing. Exports there that the night would
    refuse: failing too, each named with the night's code (``P3_UNREADABLE``: this user may not read it;
    ``P3_SYMLINK``: a symbolic link; ``P3_FILE_NAME``: a name that cannot be shown). Otherwise how many wait to
    be imported, decided as the night decides it (`gateway.nightly`: by name and content, each file opened as
    the run opens it): "so many exports" did not tell an integrator whether tonight had anything to read.
    ``store``, the store's checks, says whether the imports can be asked for."""
    from gateway.nightly import exports_in, list_drop_folder, pending_among
    from gateway.pipeline.run import printable_name

    label = "dossier de dépôt"
    folder = gw.settings.runs_input_dir
    listing = list_drop_folder(gw.settings)
    if listing.problem is not None:
        return Check("drop_folder", label, FAILING, f"{folder} : {listing.problem['message']}")
    if not folder.is_dir():  # the default folder, made by the first night
        return Check("drop_folder", label, OK, f"{folder} : pas encore créé (la première nuit le crée)")
    exports = exports_in(listing)
    imported = _imported_exports(gw, store)
    pending = pending_among(exports, imported or set())
    refused = [e for e in pending if e.refused]
    if imported is None:
        said = f"{len(exports) - len(refused)} export(s) (importés ou non : la base ne répond pas)"
    else:
        done = len(exports) - len(pending)
        said = (f"{len(pending) - len(refused)} export(s) en attente d'import"
                + (f" ({done} déjà importé(s))" if done else ""))
    if not refused:
        return Check("drop_folder", label, OK, f"{folder} : lisible, {said}")
    parts = []
    for code, what, then in _REFUSED_EXPORTS:
        names = [printable_name(e.path.name) for e in refused if e.refused == code]
        if names:
            shown = ", ".join(names[:3]) + ("…" if len(names) > 3 else "")
            parts.append(f"{len(names)} {what} ({shown}) : la nuit les refuse ({code}) ; {then}")
    return Check("drop_folder", label, FAILING, f"{folder} : {said}, et {len(refused)} que la nuit refusera : "
                 + " ; ".join(parts))


def _imported_exports(gw: Gateway, store: Sequence[Check]) -> set[tuple[str, str]] | None:
    """The exports the store lists as imported: none while there is no store or no schema yet, None (not known)
    when the store does not answer. Asked only of a store its own check reached: asking again one that did not
    answer would wait for it again, and a SQLite file not made yet would be made by the connection."""
    from gateway.nightly import imported_exports
    from gateway.store.models import imported_files_t

    reached = next((c for c in store if c.name == "database"), None)
    if reached is None or reached.status == FAILING:
        return None
    if reached.status != OK:  # no store yet (`installation`): nothing imported
        return set()
    try:
        if not sa.inspect(gw.engine).has_table(imported_files_t.name):
            return set()  # an empty database, its schema still to be made
        return imported_exports(gw.engine)
    except SQLAlchemyError:
        return None


def _refused_post(gw: Gateway, store: Sequence[Check]) -> str | None:
    """If DUDE refused the gateway itself (``DUDE_ACCESS_REFUSED``, `gateway.errors.AccessRefused`) at the last post
    of an envelope still to send, and has acknowledged no envelope since: how, and when. Not after a receipt
    came: DUDE then took a post, and the refusal was that envelope's, or is mended."""
    from gateway.codes import AWAITING_RECEIPT
    from gateway.store.models import envelope_history_t, envelopes_t

    reached = next((c for c in store if c.name == "database"), None)
    if reached is None or reached.status != OK:
        return None
    e, h = envelopes_t.c, envelope_history_t.c
    try:
        if not sa.inspect(gw.engine).has_table(envelopes_t.name):
            return None
        with gw.engine.connect() as conn:
            row = conn.execute(sa.select(e.id, e.last_error, sa.func.max(h.at).label("at"))
                               .join_from(envelopes_t, envelope_history_t, h.envelope_id == e.id)
                               .where(e.state.in_(AWAITING_RECEIPT), e.last_error.like(f"[{AccessRefused.code}]%"),
                                      h.cause.like("le DUDE refuse l'accès%"))
                               .group_by(e.id, e.last_error).order_by(sa.desc("at")).limit(1)).first()
            if row is None:
                return None
            since = conn.execute(sa.select(sa.func.max(e.receipt_at))).scalar()
    except SQLAlchemyError:
        return None
    if since is not None and since >= row.at:
        return None
    status = next((s for s in ACCESS_REFUSED_STATUSES if f"HTTP {s}" in row.last_error), None)
    when = row.at.astimezone(ZoneInfo(gw.settings.timezone))
    return (f"a refusé la passerelle au dernier envoi, le {when:%d/%m à %H:%M} (lot {row.id[:8]}…"
            + (f", HTTP {status}" if status else "") + "), et n'a accusé réception d'aucun lot depuis")


def shown_dude_url(url: str) -> str:
    """``url`` without what may be a secret: a user and password, a query string."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "(adresse illisible : vérifier GATEWAY_DUDE_URL)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def _dude_label(gw: Gateway) -> str:
    return f"DUDE ({shown_dude_url(gw.settings.dude_url)})"


def _unreachable(gw: Gateway, exc: TransportError) -> Check:
    """What a failed connection most likely means, from what httpx said."""
    label = _dude_label(gw)
    said = str(exc.__cause__ or exc)
    if isinstance(exc.__cause__, httpx.TimeoutException):
        return Check("dude", label, WARNING, f"pas de réponse en {PROBE_TIMEOUT_SECONDS:g} s : DUDE lent, ou un "
                     f"pare-feu qui ne répond pas (une nuit attend {gw.settings.http_timeout_seconds:g} s par envoi)")
    if "Errno 111" in said or "Connection refused" in said:
        hint = "rien n'écoute à cette adresse et ce port"
    elif "Name or service not known" in said or "nodename nor servname" in said or "Temporary failure in name" in said:
        hint = "nom d'hôte inconnu (DNS)"
    elif "WRONG_VERSION_NUMBER" in said:
        hint = "https:// vers un port qui parle en http simple ?"
    elif "CERTIFICATE_VERIFY_FAILED" in said:
        hint = "certificat TLS du serveur non reconnu (chaîne de confiance de la machine)"
    else:  # httpx's words, which may quote what came back: one line, cut (as every error about DUDE's answer)
        hint = one_line(said, TEXT_MAX) or type(exc.__cause__ or exc).__name__
    default = gw.settings.dude_url == type(gw.settings).model_fields["dude_url"].default
    then = ("c'est l'adresse par défaut, celle de l'émulateur (gateway emulator serve) : pour le vrai DUDE, régler "
            "GATEWAY_DUDE_URL" if default else "vérifier GATEWAY_DUDE_URL, le pare-feu, le proxy")
    return Check("dude", label, FAILING, f"injoignable : {hint} ; {then}")


def dude(gw: Gateway, store: Sequence[Check] = ()) -> Check:
    """Asks DUDE for the report of an ``IdLot`` no envelope ever had: only its exchange endpoint answers
    ``404 NO_REPORT``. Sends nothing; signs nothing. A filter before DUDE may refuse the gateway's posts only:
    that probe then says "ok" while every night's envelopes are refused, so an envelope still to send whose last
    post was refused so (`_refused_post`, in the store its check reached) is said too."""
    from adapters.dude.client import DudeClient

    label = _dude_label(gw)
    started = time.perf_counter()
    client = DudeClient(gw.settings.dude_url, timeout=min(PROBE_TIMEOUT_SECONDS, gw.settings.http_timeout_seconds),
                        transport=gw.transport)
    try:
        status, code, location = client.probe()
    except RemoteServerError as exc:
        return Check("dude", label, FAILING, f"répond mais indisponible (HTTP {exc.status_code}) : les envois "
                     "attendront (GATEWAY_DUDE_OUTAGE_SECONDS)")
    except TransportError as exc:
        return _unreachable(gw, exc)
    finally:
        client.close()
    took = f"{(time.perf_counter() - started) * 1000:.0f} ms"
    if status == 404 and code == "NO_REPORT":
        if (refused := _refused_post(gw, store)) is not None:  # a warning: the access may be mended since
            return Check("dude", label, WARNING, f"joignable, mais {refused} : si l'accès n'a pas été rétabli "
                         "depuis, voir avec l'agence ou le réseau (un filtre devant le DUDE refuse les envois de la "
                         "passerelle) ; la prochaine nuit le dira")
        return Check("dude", label, OK, f"joignable, répond en {took}")
    if status in ACCESS_REFUSED_STATUSES:
        return Check("dude", label, FAILING, f"refuse la passerelle (HTTP {status}) : voir avec l'agence")
    if 300 <= status < 400 and location:
        return Check("dude", label, FAILING, f"redirige (HTTP {status}) vers {shown_dude_url(location)} : mettre "
                     "cette adresse-là dans GATEWAY_DUDE_URL (une redirection n'est pas suivie)")
    return Check("dude", label, FAILING, f"quelque chose répond (HTTP {status}{f', {code}' if code else ''}), "
                 "mais pas le point d'échange du DUDE : vérifier GATEWAY_DUDE_URL (chemin compris, ex. …/dude/v1)")


def disk(gw: Gateway) -> Check:
    """Free space where the gateway writes: the SQLite store's folder, else (PostgreSQL, whose disk is its
    server's) the data folder, where the keys, the console's secret and the workers' counters live. A drill
    filled the disk: the night stopped on it, and ``gateway check`` had said "Prête pour la nuit"."""
    label = "espace disque"
    url = sa.engine.make_url(gw.settings.db_url)
    sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    folder = Path(url.database).parent if sqlite_file else gw.settings.data_dir
    while not folder.exists() and folder != folder.parent:  # not made yet: the disk it will be made on
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        return Check("disk", label, WARNING, f"{folder} : {os_reason(exc)}")
    share = f" ({usage.free * 100 // usage.total} %)" if usage.total else ""  # 0 on some FUSE or network mounts
    said = f"{usage.free / 2**30:.1f} Gio libres sur le disque de {folder}{share}"
    if usage.free < DISK_FAILING_BYTES:
        return Check("disk", label, FAILING, f"{said} : une nuit pourrait ne pas y tenir ; libérer de la place")
    if usage.free < DISK_WARNING_BYTES:
        return Check("disk", label, WARNING, f"{said} : à surveiller, une nuit y écrit quelques dizaines de Mo")
    return Check("disk", label, OK, said)


def installation(gw: Gateway, *, store_exists: bool = True, ask_dude: bool = True) -> list[Check]:
    """``gateway check``'s list. ``store_exists`` False (a SQLite file not made yet): the store's checks say
    so instead of connecting, which would create it."""
    if store_exists:
        store = _store(gw)
    else:
        store = [Check("database", "base de la passerelle", WARNING,
                       f"pas encore de base à {gw.engine.url.database} : la première nuit "
                       "(ou gateway db upgrade) la crée ; si la passerelle en a une ailleurs, vérifier --data-dir")]
    own = keys(gw, in_full=True)
    files = [key_files(gw)] if own[0].status == OK else []
    asked = dude(gw, store) if ask_dude else Check("dude", _dude_label(gw), SKIPPED,
                                            "non interrogé (--no-dude)")
    return [*store, disk(gw), *own, *files, drop_folder(gw, store), asked]

