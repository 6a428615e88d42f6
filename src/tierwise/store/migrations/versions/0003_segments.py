"""Segment memberships, their history, and evaluation runs.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "segment_members",
        sa.Column("segment_key", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("entered_at", TS, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "segment_history",
        sa.Column("history_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("segment_key", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("entered_at", TS, nullable=False),
        sa.Column("exited_at", TS),
        sa.Column("enter_reason", sa.String(16), nullable=False),
        sa.Column("exit_reason", sa.String(16)),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_segment_history_key_customer", "segment_history",
                    ["segment_key", "customer_id"])
    op.create_index("ix_segment_history_customer", "segment_history", ["customer_id"])
    op.create_table(
        "segment_runs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("segment_key", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("members", sa.BigInteger),
        sa.Column("entered", sa.BigInteger),
        sa.Column("exited", sa.BigInteger),
        sa.Column("reason", sa.String(16)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_segment_runs_key", "segment_runs", ["segment_key", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_segment_runs_key", "segment_runs")
    op.drop_table("segment_runs")
    op.drop_index("ix_segment_history_customer", "segment_history")
    op.drop_index("ix_segment_history_key_customer", "segment_history")
    op.drop_table("segment_history")
    op.drop_table("segment_members")
