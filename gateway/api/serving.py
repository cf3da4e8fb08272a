"""Serving an ASGI application from a background thread on a loopback port: the gateway's API for the
demo (reports pushed by the emulator come back through the real callback, over real HTTP), the tests
and the benchmark; the DUDE emulator's application too (`adapters.dude.emulator.app.serve_in_thread`)."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn

from gateway.errors import ConfigurationError

#: How every uvicorn server of the gateway runs (``gateway serve``, its workers, the demo's and the tests'
#: threads): warnings only, and no access log, because a query string may hold a jobseeker's identifier
#: (brief §6); `gateway.api.middleware` logs method, path, status and time instead.
UVICORN_OPTIONS = {"log_level": "warning", "access_log": False}


def cannot_listen(host: str, port: int, *, what: str, port_hint: str, host_hint: str) -> str | None:
    """Why a server could not listen on ``host:port`` (the port taken, the address not this machine's), or
    None; ``what`` names the server that may hold the port, the hints the option to change. Said before a
    server announces itself: uvicorn would fail after the announcement (``gateway serve``, ``gateway emulator
    serve``), and the demo would run its night against whatever answers on a taken port. Bound with
    ``SO_REUSEADDR`` as uvicorn does, so that a port left in TIME_WAIT by the last stop is free; a port
    taken in the instant between this check and uvicorn's own bind is still uvicorn's error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        said = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            return f"port déjà pris ({said}) : une autre instance de {what} ? Choisir {port_hint}"
        return f"{said} : vérifier {host_hint}, une adresse de cette machine"
    return None


@contextlib.contextmanager
def serve_in_thread(app, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 15.0,
                    name: str = "the gateway API", thread_name: str = "gateway-api-http",
                    root_path: str = "") -> Iterator[str]:
    """Serve the ASGI ``app`` until the block ends (lifespan shutdown included); yields its base URL
    (``http://host:port``). ``port=0``: a free one. ``name`` says what failed to start, in the error.
    ``root_path``: uvicorn's own ``--root-path`` (the tests' check that the gateway takes a prefix given by the
    server as it takes its own setting, `gateway.api.middleware.RootPath`)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on", root_path=root_path,
                                           **UVICORN_OPTIONS))
    thread = threading.Thread(target=server.run, name=thread_name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ConfigurationError(f"{name} did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
