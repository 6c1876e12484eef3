"""Materialization watermarks: how far each feature view version is in the online store.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_watermarks",
        sa.Column("view", sa.String(250), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("watermark", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feature_watermarks")
