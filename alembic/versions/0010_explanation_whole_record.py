"""explanations: a whole record is explained too (window NULL: its windows stitched on one axis)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('explanations', schema=None) as batch_op:
        batch_op.alter_column('window', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # The old schema has no way to name a whole record: those explanations go with it.
    op.execute(sa.text("DELETE FROM explanations WHERE \"window\" IS NULL"))
    with op.batch_alter_table('explanations', schema=None) as batch_op:
        batch_op.alter_column('window', existing_type=sa.Integer(), nullable=False)
