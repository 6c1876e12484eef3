"""Monitoring results as time series, alert rule states and alert history.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitor_metrics",
        sa.Column("id", _AutoId, primary_key=True, autoincrement=True),
        sa.Column("subject", sa.String(250), nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("variant", sa.String(100)),
        sa.Column("metric", sa.String(300), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("window_s", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_monitor_metrics_subject_metric_at", "monitor_metrics", ["subject", "metric", "at"]
    )
    op.create_table(
        "alert_states",
        sa.Column("rule", sa.String(250), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", _AutoId, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(250), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(250), nullable=False),
        sa.Column("metric", sa.String(300), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("deliveries", sa.JSON, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alert_events_rule", "alert_events", ["rule"])


def downgrade() -> None:
    op.drop_index("ix_alert_events_rule", "alert_events")
    op.drop_table("alert_events")
    op.drop_table("alert_states")
    op.drop_index("ix_monitor_metrics_subject_metric_at", "monitor_metrics")
    op.drop_table("monitor_metrics")
