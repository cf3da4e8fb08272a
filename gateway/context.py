"""Everything a pipeline stage needs, built once per process from the settings.

The CLI, the API and the scheduler each open one `Gateway` and pass it down; stages never read
settings files, keys or the environment on their own. Tests build one on a temporary data folder
and plug the emulator in through ``transport``; ``clock`` and ``sleep`` are injectable so that
time-outs and back-off can be tested without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy.engine import Engine

from adapters.dude.client import DudeClient
from adapters.dude.signing import Signer, TrustFolder, TrustStore
from gateway.errors import KeyMaterialError
from gateway.keys import key_names, load_signer
from gateway.lease import new_holder_id
from gateway.settings import Settings
from gateway.store.db import create_schema, make_engine
from gateway.store.models import utcnow

log = logging.getLogger("gateway.keys")


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    transport: httpx.BaseTransport | None = None
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep
    #: This instance's name in leases and envelope claims (several instances may share one store).
    instance_id: str = ""
    _client: DudeClient | None = field(default=None, init=False, repr=False)
    _trust: TrustFolder | None = field(default=None, init=False, repr=False)
    _signer: tuple[tuple, Signer] | None = field(default=None, init=False, repr=False)  # (files' stamp, signer)

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = new_holder_id(self.settings.instance_name)

    @classmethod
    def open(cls, settings: Settings, *, transport: httpx.BaseTransport | None = None,
             clock: Callable[[], datetime] = utcnow, sleep: Callable[[float], None] = time.sleep,
             create: bool = True) -> Gateway:
        engine = make_engine(settings.db_url)
        if create:  # the schema migrations (Alembic): at the latest revision, one SELECT
            create_schema(engine)
        return cls(settings=settings, engine=engine, transport=transport, clock=clock, sleep=sleep)

    @property
    def signer(self) -> Signer:
        """The gateway's key and certificate, read again whenever one of their files changes (or the key's
        password file): a renewed certificate put in place is signed with from the next envelope on, without
        restarting ``gateway serve``. Before, the scheduler's nights went on signing with the certificate read at
        start (until it expired: every envelope ``L02``), while the sealing process, which reads the files at
        each run, used the new one, and ``/readyz`` judged the files. Three ``stat`` calls an envelope.

        Files that changed but do not load (the certificate moved in, its key not yet; a broken copy; one the
        service may not read) keep the signer loaded before, with a warning, and are tried again at the next
        envelope: a night sealing at that moment goes on, rather than stopping on ``KEYS``. With nothing loaded
        before, the error is raised: `gateway.keys.load_signer`'s, which names the file and its setting (a bare
        ``PermissionError`` used to escape here, and the password file's error was ``CONFIG``)."""
        stamp = self._key_files_stamp()
        if self._signer is None or self._signer[0] != stamp:
            try:
                self._signer = (stamp, load_signer(self.settings))
            except KeyMaterialError as exc:
                if self._signer is None:
                    raise
                log.warning("the key or certificate files changed but do not load (%s): signing with the ones "
                            "loaded before", exc)
        return self._signer[1]

    @signer.setter
    def signer(self, signer: Signer) -> None:
        """A signer just loaded from the current files (``gateway run`` checks the keys before opening the store,
        and signs with what it checked rather than reading the key, and using its password, again)."""
        self._signer = (self._key_files_stamp(), signer)

    def _key_files_stamp(self) -> tuple:
        s = self.settings
        stamp = []
        for path in (s.gateway_key_file, s.gateway_cert_file, s.key_password_file):
            try:
                st = path.stat() if path is not None else None
            except OSError:  # missing: loading says so
                st = None
            stamp.append(None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp)

    @property
    def dude_trust(self) -> TrustStore:
        """Certificates whose signatures on receipts and reports are accepted.

        Read again whenever the trust folder changes (a file added, replaced or removed), so that an
        operator rotating DUDE's key drops the new certificate in and a running ``gateway serve``
        trusts it at once, without a restart (brief §6: rotation without a gap).
        """
        folder = self.settings.gateway_trust_dir
        if self._trust is None or self._trust.folder != folder:  # the settings may name another folder
            self._trust = TrustFolder(folder, names=key_names(self.settings))
        return self._trust.current()

    @property
    def client(self) -> DudeClient:
        if self._client is None:
            self._client = DudeClient(self.settings.dude_url, timeout=self.settings.http_timeout_seconds,
                                      transport=self.transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self.engine.dispose()
