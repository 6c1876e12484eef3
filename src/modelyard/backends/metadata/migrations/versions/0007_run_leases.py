"""A lease on each running run, so a run whose process died is marked failed.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Microseconds since the epoch; NULL for runs started before leases (never expired).
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lease_until", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_until")
