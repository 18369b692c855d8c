"""campaigns.resume_job_id: a resume asked for while stopped trials are still reaching their next epoch

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resume_job_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('resume_job_id')
