"""explanations and explanation batches

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('explanations',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('experiment_id', sa.String(length=64), nullable=False),
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('split', sa.String(length=10), nullable=False),
    sa.Column('record', sa.Integer(), nullable=False),
    sa.Column('window', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=40), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('npz_path', sa.Text(), nullable=True),
    sa.Column('png_path', sa.Text(), nullable=True),
    sa.Column('summary', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name='fk_explanations_dataset_id_datasets'),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name='fk_explanations_experiment_id_experiments'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('explanations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_explanations_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_explanations_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_explanations_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_explanations_status'), ['status'], unique=False)

    op.create_table('explanation_batches',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('fanout_id', sa.String(length=64), nullable=False),
    sa.Column('experiment_id', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=40), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('n_signals', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('members', sa.JSON(), nullable=False),
    sa.Column('links', sa.JSON(), nullable=True),
    sa.Column('plot_path', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name='fk_explanation_batches_experiment_id_experiments'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('explanation_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_explanation_batches_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_explanation_batches_fanout_id'), ['fanout_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_explanation_batches_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_explanation_batches_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('explanation_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_explanation_batches_status'))
        batch_op.drop_index(batch_op.f('ix_explanation_batches_job_id'))
        batch_op.drop_index(batch_op.f('ix_explanation_batches_fanout_id'))
        batch_op.drop_index(batch_op.f('ix_explanation_batches_experiment_id'))

    op.drop_table('explanation_batches')
    with op.batch_alter_table('explanations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_explanations_status'))
        batch_op.drop_index(batch_op.f('ix_explanations_job_id'))
        batch_op.drop_index(batch_op.f('ix_explanations_experiment_id'))
        batch_op.drop_index(batch_op.f('ix_explanations_dataset_id'))

    op.drop_table('explanations')
