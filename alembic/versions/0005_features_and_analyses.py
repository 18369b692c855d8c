"""feature sets and analyses (evaluations and feature rankings)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feature_sets',
    sa.Column('id', sa.String(length=160), nullable=False),
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('domains', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('checksum', sa.String(length=64), nullable=True),
    sa.Column('dataset_checksum', sa.String(length=64), nullable=True),
    sa.Column('n_windows', sa.Integer(), nullable=False),
    sa.Column('n_features', sa.Integer(), nullable=False),
    sa.Column('split_counts', sa.JSON(), nullable=True),
    sa.Column('shards', sa.Integer(), nullable=False),
    sa.Column('fanout_id', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name='fk_feature_sets_dataset_id_datasets', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('feature_sets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_feature_sets_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_feature_sets_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_feature_sets_status'), ['status'], unique=False)

    op.create_table('analyses',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('experiment_ids', sa.JSON(), nullable=False),
    sa.Column('feature_set_id', sa.String(length=160), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('plot_paths', sa.JSON(), nullable=True),
    sa.Column('artifact_path', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['feature_set_id'], ['feature_sets.id'], name='fk_analyses_feature_set_id_feature_sets', ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analyses_feature_set_id'), ['feature_set_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_analyses_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analyses_status'))
        batch_op.drop_index(batch_op.f('ix_analyses_kind'))
        batch_op.drop_index(batch_op.f('ix_analyses_job_id'))
        batch_op.drop_index(batch_op.f('ix_analyses_feature_set_id'))

    op.drop_table('analyses')
    with op.batch_alter_table('feature_sets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feature_sets_status'))
        batch_op.drop_index(batch_op.f('ix_feature_sets_job_id'))
        batch_op.drop_index(batch_op.f('ix_feature_sets_dataset_id'))

    op.drop_table('feature_sets')
