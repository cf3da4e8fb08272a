"""How the gateway opens its database (`gateway.store.db.make_engine`).

A PostgreSQL server that accepts the connection and never answers (a firewall that drops, a host half down)
held a night, or each ``/readyz``, for as long as the system's TCP time-out: the gateway's connections now give
up after `gateway.store.db.CONNECT_TIMEOUT_SECONDS`, unless the URL says otherwise (``?connect_timeout=N``)."""

from __future__ import annotations

import socket
import threading

import pytest
from sqlalchemy.exc import OperationalError

from gateway.store import db


@pytest.fixture
def silent_server():
    """A port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def connect_in_thread(url: str) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def connect() -> None:
        try:
            with db.make_engine(url).connect():
                pass
        except BaseException as exc:  # noqa: BLE001  (what the connection attempt ended with, for the test)
            raised.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    return thread, raised


def test_a_server_that_never_answers_fails_the_connection_instead_of_holding_it(silent_server, monkeypatch) -> None:
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_SECONDS", 1)
    thread, raised = connect_in_thread(f"postgresql+psycopg://u:p@127.0.0.1:{silent_server}/gateway")
    thread.join(30)  # libpq's own time-out is what ends it (1 s here); 30 s only bounds the test if it did not
    assert not thread.is_alive(), "the connection is still waiting for the server"
    assert len(raised) == 1 and isinstance(raised[0], OperationalError)


def test_the_url_s_own_connect_timeout_wins(silent_server, monkeypatch) -> None:
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_SECONDS", 3600)
    thread, raised = connect_in_thread(f"postgresql+psycopg://u:p@127.0.0.1:{silent_server}/gateway?connect_timeout=1")
    thread.join(30)
    assert not thread.is_alive() and isinstance(raised[0], OperationalError)


def test_a_driver_that_is_not_installed_is_a_store_error_naming_the_one_to_use() -> None:
    """``postgresql+psycopg2://`` passes the settings (a PostgreSQL URL) but its driver is not installed: a
    traceback (``ModuleNotFoundError``) in every command; now ``Erreur STORE`` saying which URL to write."""
    from gateway.errors import StoreError

    with pytest.raises(StoreError, match=r"its driver is not installed \(psycopg2\).*postgresql\+psycopg://") as err:
        db.make_engine("postgresql+psycopg2://passerelle:secret@127.0.0.1/passerelle")
    assert "secret" not in str(err.value)
