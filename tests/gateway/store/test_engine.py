"""How the gateway opens its database (`gateway.store.db.make_engine`).

A PostgreSQL server that accepts the connection and never answers (a firewall that drops, a host half down)
held a night, or each ``/readyz``, for as long as the system's TCP time-out: the gateway's connections now give
up after `gateway.store.db.CONNECT_TIMEOUT_SECONDS`, unless the URL says otherwise (``?connect_timeout=N``)."""

from __future__ import annotations

import socket
import sqlite3
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from gateway.store import db
from gateway.store.db import create_schema, make_engine, store_problem


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


class _ServerError(Exception):
    """A psycopg error as the server raises it: with its SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("driver", "said"), [
    (sqlite3.OperationalError("database or disk is full"),
     "disque plein : libérer de la place sur le disque de la base (GATEWAY_DATA_DIR) (OperationalError : database or "
     "disk is full)"),
    (sqlite3.OperationalError("attempt to write a readonly database"), "base en lecture seule : l'utilisateur du "
     "service doit pouvoir écrire le fichier et son dossier (OperationalError : attempt to write a readonly database)"),
    (Exception('connection failed: connection to server at "127.0.0.1", port 5499 failed: Connection refused\n\tIs '
               "the server running on that host and accepting TCP/IP connections?"),
     "serveur de base injoignable (connexion refusée) : PostgreSQL tourne-t-il, à l'adresse et au port de "
     'GATEWAY_DATABASE_URL ? (Exception : connection failed: connection to server at "127.0.0.1", port 5499 failed: '
     "Connection refused)"),
    (_ServerError("could not extend file \"base/16384/16385\": No space left on device", "53100"),
     "disque plein sur le serveur PostgreSQL : y libérer de la place (_ServerError : could not extend file "
     '"base/16384/16385": No space left on device)'),
    (_ServerError("terminating connection due to administrator command", "57P01"),
     "connexion coupée par le serveur PostgreSQL (arrêté ou redémarré) (_ServerError : terminating connection due "
     "to administrator command)"),
    (Exception("something nobody foresaw"), "Exception : something nobody foresaw"),
])
def test_a_store_failure_is_said_in_french_with_what_to_do_then_the_drivers_first_line(driver, said) -> None:
    """A drill's night on a full disk ended "Erreur STORE : cannot take the lease run: (sqlite3.OperationalError)
    database or disk is full (Background on this error at: https://sqlalche.me/e/20/e3q8)", and a PostgreSQL down
    "cannot migrate the schema to 0005: …": English, SQLAlchemy's link, nothing of what to do."""
    exc = sa.exc.OperationalError("UPDATE leases SET holder = 'x' …", {}, driver)
    assert store_problem(exc) == said
    assert "sqlalche.me" not in store_problem(exc) and "UPDATE" not in store_problem(exc)


def test_a_full_disk_when_the_run_takes_its_lease_is_said_so(tmp_path, monkeypatch) -> None:
    from gateway import lease
    from gateway.errors import StoreError

    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    create_schema(engine)

    def full(*args, **kwargs):
        raise sa.exc.OperationalError("INSERT INTO leases …", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(sa.engine.Connection, "execute", full)
    with pytest.raises(StoreError) as refused:
        lease.acquire(engine, "run", "moi", seconds=60)
    assert str(refused.value).startswith("[STORE] disque plein : libérer de la place sur le disque de la base")
    assert str(refused.value).endswith("(en prenant le bail run)") and "Background" not in str(refused.value)
    monkeypatch.undo()
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(("change", "said"), [
    ({"password": "pas-le-bon"}, "mot de passe refusé par PostgreSQL : vérifier GATEWAY_DATABASE_URL ("),
    ({"database": "gateway_inexistante"}, "base ou utilisateur inconnu du serveur PostgreSQL : vérifier "
                                          "GATEWAY_DATABASE_URL ("),
])
def test_a_real_postgresql_refusing_the_gateway_is_said_in_french(change, said) -> None:
    """psycopg gives a connection that failed no SQLSTATE: the server's words are matched (review: a wrong password
    and an unknown database were said in the driver's English only, the unit test faking a SQLSTATE)."""
    from tests.backends import postgres_url

    url = sa.engine.make_url(postgres_url()).set(**change)
    engine = sa.create_engine(url)
    with pytest.raises(sa.exc.OperationalError) as refused:
        engine.connect().close()
    engine.dispose()
    assert store_problem(refused.value).startswith(said), store_problem(refused.value)
    assert "pas-le-bon" not in store_problem(refused.value)


def test_a_table_missing_is_not_taken_for_a_database_missing() -> None:
    """The words are matched only when the server gave no SQLSTATE: a relation that "does not exist" (42P01) is
    not a database or a user unknown."""
    exc = sa.exc.ProgrammingError("SELECT 1 FROM events", {}, _ServerError('relation "events" does not exist', "42P01"))
    assert store_problem(exc) == '_ServerError : relation "events" does not exist'
