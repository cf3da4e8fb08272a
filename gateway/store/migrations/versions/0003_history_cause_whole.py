"""The history's cause holds 2,200 characters instead of 255, so that a close comment (up to 2,000
through the API, 1,000 in the console) is kept whole where support staff read it: it was cut at 255.

Only PostgreSQL enforces the length: widening a ``VARCHAR`` there changes the catalogue, not the rows.
SQLite keeps no length (`gateway.store.migrate.compare_type`): nothing to do, and no table to copy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column('event_history', 'cause', type_=sa.String(length=2200),
                        existing_type=sa.String(length=255), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":  # longer causes are cut, as they were before
        op.alter_column('event_history', 'cause', type_=sa.String(length=255),
                        existing_type=sa.String(length=2200), existing_nullable=False,
                        postgresql_using="left(cause, 255)")
