"""Alembic's environment for the gateway's store (`gateway.store.migrate` drives it).

Run through `gateway.store.migrate` (``gateway db upgrade``, ``Gateway.open``), which hands over an open
connection, already holding PostgreSQL's advisory lock so that instances starting together migrate one
after the other. ``alembic`` on the command line works too, with ``-x url=…`` or ``sqlalchemy.url``.

``render_as_batch``: SQLite alters a table by copying it (Alembic's batch mode); the same revisions then
run on PostgreSQL, where batch mode alters in place.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from gateway.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from gateway.store.migrate import compare_type, include_name, render_item

config = context.config
target_metadata = SQLModel.metadata
OPTIONS = dict(target_metadata=target_metadata, render_as_batch=True, compare_type=compare_type,
               include_name=include_name, render_item=render_item)


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = sa.create_engine(_url())
        with engine.begin() as conn:
            context.configure(connection=conn, **OPTIONS)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
        return
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
