"""job trees: each job's parent and root, and the indexes that list jobs newest first

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('root_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_root_id'), ['root_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_jobs_enqueued_at'), ['enqueued_at'], unique=False)
        batch_op.create_index('ix_jobs_state_enqueued_at', ['state', 'enqueued_at'], unique=False)
        batch_op.create_index('ix_jobs_actor_enqueued_at', ['actor', 'enqueued_at'], unique=False)
        batch_op.create_index('ix_jobs_queue_enqueued_at', ['queue', 'enqueued_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_queue_enqueued_at')
        batch_op.drop_index('ix_jobs_actor_enqueued_at')
        batch_op.drop_index('ix_jobs_state_enqueued_at')
        batch_op.drop_index(batch_op.f('ix_jobs_enqueued_at'))
        batch_op.drop_index(batch_op.f('ix_jobs_root_id'))
        batch_op.drop_column('root_id')
        batch_op.drop_column('parent_id')
