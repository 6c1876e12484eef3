"""The team server's MLflow view: experiments with ids, deleted runs, logged models.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("experiment_id", _AutoId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(500), nullable=False, unique=True),
        sa.Column("lifecycle_stage", sa.String(16), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    # Every experiment that runs already name gets its id now (oldest first).
    op.execute(
        "INSERT INTO experiments (name, lifecycle_stage, tags, created_at, updated_at) "
        "SELECT experiment, 'active', '{}', MIN(start_time), MAX(start_time) FROM runs "
        "GROUP BY experiment ORDER BY MIN(start_time)"
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("user_id", sa.String(250)))
        batch.add_column(sa.Column("deleted_at", sa.BigInteger))
    with op.batch_alter_table("registered_models") as batch:
        batch.add_column(sa.Column("tags", sa.JSON))
    op.create_table(
        "logged_models",
        sa.Column("model_id", sa.String(40), primary_key=True),
        sa.Column("experiment_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("model_type", sa.String(200), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.BigInteger),
    )
    op.create_table(
        "logged_model_files",
        sa.Column("model_id", sa.String(40), primary_key=True),
        sa.Column("path", sa.String(500), primary_key=True),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("logged_model_files")
    op.drop_table("logged_models")
    with op.batch_alter_table("registered_models") as batch:
        batch.drop_column("tags")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("user_id")
    op.drop_table("experiments")
