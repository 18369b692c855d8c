"""experiments and their per-epoch history

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('experiments',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('dataset_id', sa.String(length=64), nullable=False),
    sa.Column('model_key', sa.String(length=40), nullable=False),
    sa.Column('model_args', sa.JSON(), nullable=False),
    sa.Column('training_config', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('epochs_run', sa.Integer(), nullable=False),
    sa.Column('best_epoch', sa.Integer(), nullable=True),
    sa.Column('best_val_accuracy', sa.Float(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('model_path', sa.Text(), nullable=True),
    sa.Column('checkpoint_dir', sa.Text(), nullable=True),
    sa.Column('metrics_path', sa.Text(), nullable=True),
    sa.Column('predictions_path', sa.Text(), nullable=True),
    sa.Column('model_sha256', sa.String(length=64), nullable=True),
    sa.Column('parameter_count', sa.Integer(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('campaign_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name='fk_experiments_dataset_id_datasets'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_experiments_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_experiments_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_experiments_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_experiments_status'), ['status'], unique=False)

    op.create_table('epoch_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('experiment_id', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('train_loss', sa.Float(), nullable=True),
    sa.Column('val_loss', sa.Float(), nullable=True),
    sa.Column('train_acc', sa.Float(), nullable=True),
    sa.Column('val_acc', sa.Float(), nullable=True),
    sa.Column('lr', sa.Float(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.Column('data_wait_fraction', sa.Float(), nullable=True),
    sa.Column('is_best', sa.Boolean(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name='fk_epoch_history_experiment_id_experiments', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('experiment_id', 'epoch', name='uq_epoch_history_experiment_epoch')
    )
    with op.batch_alter_table('epoch_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_epoch_history_experiment_id'), ['experiment_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('epoch_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_epoch_history_experiment_id'))

    op.drop_table('epoch_history')
    with op.batch_alter_table('experiments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_experiments_status'))
        batch_op.drop_index(batch_op.f('ix_experiments_job_id'))
        batch_op.drop_index(batch_op.f('ix_experiments_dataset_id'))
        batch_op.drop_index(batch_op.f('ix_experiments_campaign_id'))

    op.drop_table('experiments')
