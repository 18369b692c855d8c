"""mlflow_runs: the MLflow run of each experiment, campaign, trial and deployment

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mlflow_runs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('record_id', sa.String(length=200), nullable=False),
        sa.Column('run_id', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'record_id', name='uq_mlflow_runs_kind_record'),
    )


def downgrade() -> None:
    op.drop_table('mlflow_runs')
