"""Job slots and runs, release records and live traffic splits.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_slots",
        sa.Column("job", sa.String(250), primary_key=True),
        sa.Column("logical_date", sa.BigInteger, primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("lease_until", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("sla_alerted", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "job_runs",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("job", sa.String(250), nullable=False),
        sa.Column("logical_date", sa.BigInteger, nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("log", sa.Text, nullable=False),
    )
    op.create_index("ix_job_runs_job_date", "job_runs", ["job", "logical_date"])
    op.create_table(
        "release_records",
        sa.Column("id", _AutoId, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(250), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("alias", sa.String(100)),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer),
        sa.Column("passed", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_release_records_model", "release_records", ["model"])
    op.create_table(
        "model_traffic",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("candidate", sa.String(100), nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        # A rollout's lease on its split (µs); NULL: set by hand, never expires.
        sa.Column("expires_at", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("model_traffic")
    op.drop_index("ix_release_records_model", "release_records")
    op.drop_table("release_records")
    op.drop_index("ix_job_runs_job_date", "job_runs")
    op.drop_table("job_runs")
    op.drop_table("job_slots")
