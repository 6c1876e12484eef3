"""Initial tables: runs, params, tags, metrics, datasets, artifacts, models, versions, aliases.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _run_fk(primary_key: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "run_id",
        sa.String(32),
        sa.ForeignKey("runs.run_id"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("experiment", sa.String(200), nullable=False, index=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("seed", sa.BigInteger),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("environment", sa.JSON),
    )
    for table in ("params", "tags"):
        op.create_table(
            table,
            _run_fk(),
            sa.Column("key", sa.String(250), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
    op.create_table(
        "metrics",
        sa.Column("id", _AutoId, primary_key=True, autoincrement=True),
        _run_fk(primary_key=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_id", "key", "step"])
    op.create_table(
        "latest_metrics",
        _run_fk(),
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.create_table(
        "run_datasets",
        _run_fk(),
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("context", sa.String(50), nullable=False),
        sa.Column("num_rows", sa.BigInteger),
        sa.Column("schema", sa.JSON),
    )
    op.create_table(
        "run_artifacts",
        _run_fk(),
        sa.Column("path", sa.String(500), primary_key=True),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
    )
    op.create_table(
        "registered_models",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column(
            "name", sa.String(250), sa.ForeignKey("registered_models.name"), primary_key=True
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.run_id")),
        sa.Column("flavor", sa.String(50), nullable=False),
        sa.Column("artifact", sa.String(80), nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("lineage", sa.JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "model_aliases",
        sa.Column(
            "name", sa.String(250), sa.ForeignKey("registered_models.name"), primary_key=True
        ),
        sa.Column("alias", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "model_aliases",
        "model_versions",
        "registered_models",
        "run_artifacts",
        "run_datasets",
        "latest_metrics",
        "metrics",
        "tags",
        "params",
        "runs",
    ):
        op.drop_table(table)
