"""campaigns (HPO and NAS), NAS candidates, and the schema of the Optuna studies

Revision ID: 0006
Revises: 0005

On PostgreSQL the Optuna studies live in their own schema, ``optuna``: Optuna keeps its own
``alembic_version`` row, which must not meet the project's (see ``pipeline.hpo.study``).
Optuna creates and upgrades its tables in that schema itself. On SQLite they live in a
sibling file, which this migration does not touch.
"""

import sqlalchemy as sa

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OPTUNA_SCHEMA = 'optuna'


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('study_name', sa.String(length=200), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('space', sa.JSON(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('n_trials', sa.Integer(), nullable=False),
    sa.Column('parallelism', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=40), nullable=False),
    sa.Column('direction', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('best', sa.JSON(), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('trials', sa.JSON(), nullable=False),
    sa.Column('waves', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name='fk_campaigns_dataset_id_datasets'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaigns_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaigns_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaigns_status'), ['status'], unique=False)

    op.create_table('nas_candidates',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=64), nullable=False),
    sa.Column('arch_hash', sa.String(length=64), nullable=False),
    sa.Column('arch', sa.JSON(), nullable=False),
    sa.Column('trial_number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name='fk_nas_candidates_campaign_id_campaigns', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'arch_hash', name='uq_nas_candidates_campaign_arch')
    )
    with op.batch_alter_table('nas_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nas_candidates_campaign_id'), ['campaign_id'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        # The studies belong to the campaigns dropped below.
        op.execute(f'DROP SCHEMA IF EXISTS {OPTUNA_SCHEMA} CASCADE')
    with op.batch_alter_table('nas_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nas_candidates_campaign_id'))

    op.drop_table('nas_candidates')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaigns_status'))
        batch_op.drop_index(batch_op.f('ix_campaigns_kind'))
        batch_op.drop_index(batch_op.f('ix_campaigns_job_id'))
        batch_op.drop_index(batch_op.f('ix_campaigns_dataset_id'))

    op.drop_table('campaigns')
