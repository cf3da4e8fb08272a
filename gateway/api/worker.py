"""The application of one worker process of ``gateway serve --workers N``: uvicorn's supervisor starts N
processes that share the listening socket, and each imports `create_worker_app`.

Why processes: one interpreter took in 6,300–8,200 new events/s through the bulk API on this project's
2-core machines (``bench/api.py``), because parsing, pre-flight, the store's writes and HTTP share one
GIL; two workers took in 8,900–13,600/s from two clients sending at once. Each worker is an instance of its
own (interpreter, `Gateway`, connection pool) over the one store: PostgreSQL takes their writes side by
side, SQLite one after the other (WAL, 30 s busy timeout), as it already does for a night written while
the API serves.

What the supervisor does once, before the workers start (`gateway.cli.server.serve`): the schema
migrations, the console's session key (so that every worker signs sessions with the same key), the
warning about readable keys, and **the schedule**, which runs in the supervisor only: one scheduler per
``gateway serve``, whatever the number of workers.

A worker reads its settings as any instance does (``GATEWAY_*``, ``.env``); the supervisor puts the
command line's ``--data-dir``, the log level and the folder of the request counters (`gateway.api.metrics`)
in the environment the workers inherit.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from gateway.api.main import create_app
from gateway.api.metrics import MULTIPROCESS_DIR_ENV
from gateway.api.serving import UVICORN_OPTIONS
from gateway.console.session import load_secret
from gateway.context import Gateway
from gateway.errors import ConfigurationError, os_reason
from gateway.gc_tuning import tune_gc
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.scheduler import GatewayScheduler

#: How the supervisor tells its workers whether ``gateway --verbose serve`` was asked (access log at INFO).
VERBOSE_ENV = "GATEWAY_SERVE_VERBOSE"


#: The supervisor's process id, for a worker to tell whether it is still there (`_stop_with_the_supervisor`).
SUPERVISOR_ENV = "GATEWAY_SERVE_SUPERVISOR"


def _stop_with_the_supervisor() -> None:
    """Ask Linux to send this worker SIGTERM (a graceful stop) when the supervisor dies.

    Killed with ``kill -9`` (outside systemd, whose control group would stop them all), the supervisor left
    its workers serving: without the schedule, ``/readyz`` still "ok", and holding the port, so that the
    service could not start again. A supervisor gone before this line is seen by its process id."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not glibc's prctl: the old behaviour, nothing worse
        return
    if (expected := os.environ.get(SUPERVISOR_ENV)) and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def create_worker_app() -> FastAPI:
    """The API and console of one worker, without a scheduler; its `Gateway` is closed when it stops."""
    from gateway.cli.common import setup_logging

    _stop_with_the_supervisor()

    tune_gc()
    setup_logging(verbose=os.environ.get(VERBOSE_ENV) == "1")
    gw = Gateway.open(Settings(), create=False)  # the supervisor has migrated the schema
    return create_app(gw, close_gateway=True)


def serve_workers(settings: Settings, *, scheduler: GatewayScheduler | None) -> None:
    """Serve with ``settings.api_workers`` processes until SIGINT or SIGTERM; ``scheduler`` runs here, in
    the supervisor, from before the first worker starts until the last has stopped. The caller has
    opened the store (so migrated it) and closes it."""
    load_secret(settings)  # made now: N workers starting at once would race to make it
    os.environ["GATEWAY_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    os.environ[VERBOSE_ENV] = "1" if logging.getLogger().isEnabledFor(logging.INFO) else "0"
    config = uvicorn.Config("gateway.api.worker:create_worker_app", factory=True, workers=settings.api_workers,
                            host=settings.api_host, port=settings.api_port, **UVICORN_OPTIONS)
    # The workers' request counters (gateway.api.metrics), in the data folder: a service's /tmp may be
    # read-only (systemd's ProtectSystem=strict), the data folder never is. On PostgreSQL, with the keys
    # and the console's secret elsewhere, nothing else may have made that folder yet: made here.
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        counters = tempfile.mkdtemp(prefix="metrics-workers-", dir=settings.data_dir)
    except OSError as exc:
        raise ConfigurationError(f"dossier de données {settings.data_dir} inutilisable ({os_reason(exc)}) : les "
                                 "processus y comptent leurs requêtes ; vérifier GATEWAY_DATA_DIR") from exc
    listener = tcp_listener(config)
    os.environ[MULTIPROCESS_DIR_ENV] = counters
    if scheduler is not None:
        scheduler.start()
    try:
        Multiprocess(config, sockets=[listener]).run()
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        listener.close()
        shutil.rmtree(counters, ignore_errors=True)


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """The socket uvicorn binds for its workers, declared as TCP.

    uvicorn creates it with protocol 0 (uvicorn issue #3149), and asyncio sets ``TCP_NODELAY`` only on
    accepted sockets whose protocol is ``IPPROTO_TCP``: Nagle's algorithm stays on, and every keep-alive
    request after the first waits ~40 ms for the client's delayed ACK (``bench/api.py``'s reads took
    48 ms instead of 5). The same descriptor, wrapped again with the protocol it really has.
    """
    bound = config.bind_socket()
    listener = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    listener.set_inheritable(True)
    return listener
