"""Event keys compare character by character on PostgreSQL (``COLLATE "C"``), whatever the database's
collation (`gateway.store.models.KEY_TYPE`).

Under a language's collation (``fr_FR.UTF-8``, which ``initdb`` takes from a French server's locale) the dash
of ``62899-1001`` is ignored when comparing, so the range by which a key is found from its beginning matched
nothing: the console's search for a key, or its beginning, answered nothing. Changing the column's collation
rebuilds the indexes on ``key`` (the unique ``(key, version)`` one); the rows are unchanged. SQLite compares
bytes already: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column('events', 'key', type_=sa.String(length=120, collation="C"),
                        existing_type=sa.String(length=120), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # back to the database's collation
        op.execute('ALTER TABLE events ALTER COLUMN key TYPE VARCHAR(120) COLLATE "default"')
