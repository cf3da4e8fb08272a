"""Serving an ASGI application from a background thread on a loopback port: the gateway's API for the
demo (reports pushed by the emulator come back through the real callback, over real HTTP), the tests
and the benchmark; the DUDE emulator's application too (`adapters.dude.emulator.app.serve_in_thread`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from gateway.errors import ConfigurationError

#: How every uvicorn server of the gateway runs (``gateway serve``, its workers, the demo's and the tests'
#: threads): warnings only, and no access log, because a query string may hold a jobseeker's identifier
#: (brief §6); `gateway.api.middleware` logs method, path, status and time instead.
UVICORN_OPTIONS = {"log_level": "warning", "access_log": False}


@contextlib.contextmanager
def serve_in_thread(app, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 15.0,
                    name: str = "the gateway API", thread_name: str = "gateway-api-http") -> Iterator[str]:
    """Serve the ASGI ``app`` until the block ends (lifespan shutdown included); yields its base URL
    (``http://host:port``). ``port=0``: a free one. ``name`` says what failed to start, in the error."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on", **UVICORN_OPTIONS))
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
