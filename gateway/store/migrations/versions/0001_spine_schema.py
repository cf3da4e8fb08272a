"""The spine's schema (issues 1–3), as `create_all` made it before migrations existed: the baseline.

Revision ID: 0001
Revises:
Create Date: 2026-11-29 12:40:41.663770
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.store.models import UTCDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('ml_codes', sa.String(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('revoked_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=120), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('target', sa.String(length=255), nullable=True),
    sa.Column('filter', sa.String(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('comment', sa.String(), nullable=True),
    sa.Column('detail', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('controls',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('value', sa.String(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.Column('updated_by', sa.String(length=120), nullable=True),
    sa.Column('reason', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('envelope_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('note', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_documents_envelope_id'), ['envelope_id'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=20), nullable=False),
    sa.Column('dry_run', sa.Boolean(), nullable=False),
    sa.Column('inputs', sa.String(), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('counts', sa.String(), nullable=False),
    sa.Column('error', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_outcome'), ['outcome'], unique=False)

    op.create_table('envelopes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('byte_size', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('first_sent_at', UTCDateTime(), nullable=True),
    sa.Column('receipt_at', UTCDateTime(), nullable=True),
    sa.Column('report_at', UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('reject_code', sa.String(length=3), nullable=True),
    sa.Column('reject_message', sa.String(), nullable=True),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('next_poll_at', UTCDateTime(), nullable=True),
    sa.Column('accepted_count', sa.Integer(), nullable=True),
    sa.Column('rejected_count', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('envelopes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_envelopes_next_poll_at'), ['next_poll_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_envelopes_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_envelopes_state'), ['state'], unique=False)

    op.create_table('envelope_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('envelope_id', sa.String(length=36), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('cause', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['envelope_id'], ['envelopes.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('envelope_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_envelope_history_envelope_id'), ['envelope_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('operation', sa.String(length=1), nullable=False),
    sa.Column('event_type', sa.String(length=3), nullable=True),
    sa.Column('code_ml', sa.String(length=10), nullable=True),
    sa.Column('identifiant_pe', sa.String(length=20), nullable=True),
    sa.Column('date_evenement', sa.Date(), nullable=True),
    sa.Column('payload', sa.String(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('reject_code', sa.String(length=3), nullable=True),
    sa.Column('reject_message', sa.String(), nullable=True),
    sa.Column('source_file', sa.String(length=255), nullable=True),
    sa.Column('source_line', sa.Integer(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('envelope_id', sa.String(length=36), nullable=True),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['envelope_id'], ['envelopes.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.ForeignKeyConstraint(['supersedes_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key', 'version', name='uq_events_key_version')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_code_ml'), ['code_ml'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_date_evenement'), ['date_evenement'], unique=False)
        batch_op.create_index('ix_events_envelope_id', ['envelope_id'], unique=False,
                              sqlite_where=sa.text('envelope_id IS NOT NULL'),
                              postgresql_where=sa.text('envelope_id IS NOT NULL'))
        batch_op.create_index(batch_op.f('ix_events_identifiant_pe'), ['identifiant_pe'], unique=False)
        batch_op.create_index('ix_events_reject_code', ['reject_code'], unique=False,
                              sqlite_where=sa.text('reject_code IS NOT NULL'),
                              postgresql_where=sa.text('reject_code IS NOT NULL'))
        batch_op.create_index(batch_op.f('ix_events_run_id'), ['run_id'], unique=False)
        batch_op.create_index('ix_events_state_id', ['state', 'id'], unique=False)

    op.create_table('event_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('cause', sa.String(length=255), nullable=False),
    sa.Column('code', sa.String(length=3), nullable=True),
    sa.Column('envelope_id', sa.String(length=36), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=120), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('event_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_history_event_id'), ['event_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('event_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_history_event_id'))

    op.drop_table('event_history')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_state_id')
        batch_op.drop_index(batch_op.f('ix_events_run_id'))
        batch_op.drop_index('ix_events_reject_code', sqlite_where=sa.text('reject_code IS NOT NULL'),
                            postgresql_where=sa.text('reject_code IS NOT NULL'))
        batch_op.drop_index(batch_op.f('ix_events_identifiant_pe'))
        batch_op.drop_index('ix_events_envelope_id', sqlite_where=sa.text('envelope_id IS NOT NULL'),
                            postgresql_where=sa.text('envelope_id IS NOT NULL'))
        batch_op.drop_index(batch_op.f('ix_events_date_evenement'))
        batch_op.drop_index(batch_op.f('ix_events_code_ml'))

    op.drop_table('events')
    with op.batch_alter_table('envelope_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_envelope_history_envelope_id'))

    op.drop_table('envelope_history')
    with op.batch_alter_table('envelopes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_envelopes_state'))
        batch_op.drop_index(batch_op.f('ix_envelopes_run_id'))
        batch_op.drop_index(batch_op.f('ix_envelopes_next_poll_at'))

    op.drop_table('envelopes')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_outcome'))

    op.drop_table('runs')
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_documents_envelope_id'))

    op.drop_table('documents')
    op.drop_table('controls')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
    op.drop_table('api_clients')
