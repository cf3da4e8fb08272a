"""Events keep the Parcours 3 column their pre-flight reject names (``reject_field``), so that an event read
back (``GET /api/v1/events/{key}``, the console) says which field to correct, as the API's answer at
submission did; it was ``null`` once stored.

A nullable column without a default: on SQLite and PostgreSQL alike, adding it changes the table's
definition, not its rows (the events of earlier nights keep ``NULL``: their message still names the field).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('events', sa.Column('reject_field', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('reject_field')
