"""The schema comes from the Alembic revisions, on SQLite and PostgreSQL alike, and the revisions describe
exactly the models: whoever changes `gateway/store/models.py` without a revision fails here."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from gateway.store import migrate
from gateway.settings import Settings
from gateway.store.db import make_engine
from tests.backends import BACKENDS, fresh_postgres_database


@pytest.fixture(params=BACKENDS)
def engine(request, tmp_path):
    """An empty store on each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        yield engine
        engine.dispose()
        return
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_the_migrations_build_exactly_the_models(engine) -> None:
    assert migrate.current(engine) is None
    before, after = migrate.upgrade(engine)
    assert (before, after) == (None, migrate.head())
    assert migrate.differences(engine) == []  # autogenerate finds nothing to add, drop or change
    tables = set(sa.inspect(engine).get_table_names())
    assert {"events", "envelopes", "leases", "imported_files", "apscheduler_jobs", "alembic_version"} <= tables


def test_upgrading_a_store_at_the_latest_revision_changes_nothing(engine) -> None:
    migrate.upgrade(engine)
    assert migrate.upgrade(engine) == (migrate.head(), migrate.head())


def test_every_revision_goes_down_and_up_again(engine) -> None:
    from alembic import command

    migrate.upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert migrate.differences(engine) == []


def test_a_store_made_by_create_all_before_migrations_is_adopted(engine) -> None:
    """The spine's stores had no ``alembic_version``; the oldest ones also lack ``controls``."""
    migrate.upgrade(engine, migrate.BASELINE)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DROP TABLE controls"))
        conn.execute(sa.text("INSERT INTO runs (trigger, dry_run, inputs, started_at, outcome, counts) "
                             "VALUES ('cli', false, '[]', '2026-11-28 02:00:00+00:00', 'TERMINE', '{}')"))

    assert migrate.upgrade(engine) == (None, migrate.head())

    assert migrate.differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 1  # nothing lost


@pytest.mark.postgres
def test_instances_starting_together_migrate_one_after_the_other() -> None:
    """Several instances started at once on an empty PostgreSQL: the advisory lock lets one migrate; the
    others then find the schema up to date (without it, two would create the same tables)."""
    with fresh_postgres_database() as url:
        engines = [make_engine(url) for _ in range(3)]
        barrier, results, errors = threading.Barrier(3), [], []

        def start(engine) -> None:
            barrier.wait()
            try:
                results.append(migrate.upgrade(engine))
            except Exception as exc:  # noqa: BLE001  (reported below)
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert sorted(results, key=str) == sorted([(None, migrate.head())] + [(migrate.head(), migrate.head())] * 2,
                                                  key=str)
        for e in engines:
            e.dispose()


def test_gateway_open_and_db_upgrade_run_the_migrations(settings, tmp_path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.context import Gateway

    gw = Gateway.open(settings)
    assert migrate.current(gw.engine) == migrate.head()
    gw.close()
    other = tmp_path / "autre"
    result = CliRunner().invoke(app, ["db", "upgrade", "--data-dir", str(other)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["db", "current", "--data-dir", str(other), "--json"])
    assert f'"current": "{migrate.head()}"' in result.output


def test_db_upgrade_and_current_say_which_database_and_what_they_found(settings, tmp_path) -> None:
    """``GATEWAY_DATABSE_URL`` (misspelt) left ``db upgrade``, the service's ExecStartPre, making a SQLite file
    without naming it; and a store from before the revisions was called "vide" (empty) though full."""
    from typer.testing import CliRunner

    from gateway.cli import app
    data = tmp_path / "avant"
    engine = make_engine(Settings(_env_file=None, data_dir=data).db_url)
    migrate.upgrade(engine, migrate.BASELINE)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
    engine.dispose()

    env = {"GATEWAY_DATABASE_URL": None, "GATEWAY_DATA_DIR": None}
    looked = CliRunner(env=env).invoke(app, ["db", "current", "--data-dir", str(data)])
    said = " ".join(looked.stdout.split())
    assert f"Base : sqlite:///{(data / 'gateway.db').as_posix()}" in said
    assert "Révision du schéma : aucune (un schéma d'avant les révisions : `gateway db upgrade` l'adopte" in said
    upgraded = CliRunner(env=env).invoke(app, ["db", "upgrade", "--data-dir", str(data)])
    said = " ".join(upgraded.stdout.split())
    assert f"Base : sqlite:///{(data / 'gateway.db').as_posix()}" in said and "vide" not in said
    assert f"Schéma à jour : aucune révision → {migrate.head()}." in said

    by_url = CliRunner(env={**env, "GATEWAY_DATABASE_URL": "sqlite:///" + (data / "gateway.db").as_posix()}).invoke(
        app, ["db", "current", "--json"])
    assert json.loads(by_url.stdout)["database"] == "sqlite:///" + (data / "gateway.db").as_posix()
