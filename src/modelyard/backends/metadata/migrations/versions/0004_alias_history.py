"""Alias history (for rollback) and a model version's feature binding (for serving).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_alias_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_model_alias_events_name_alias", "model_alias_events", ["name", "alias"])
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("features", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("features")
    op.drop_index("ix_model_alias_events_name_alias", "model_alias_events")
    op.drop_table("model_alias_events")
