"""Merges with their undo records, id redirects for fact scans, the duplicate review queue.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("merge_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("survivor_id", sa.String(128), nullable=False),
        sa.Column("merged_ids", sa.Text, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("undo", sa.Text, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("undone_at", TS),
        sa.Column("undone_by", sa.Text),
    )
    op.create_index("ix_merges_survivor", "merges", ["survivor_id"])
    op.create_table(
        "customer_redirects",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("survivor_id", sa.String(128), nullable=False),
        sa.Column("merge_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_customer_redirects_survivor", "customer_redirects", ["survivor_id"])
    op.create_table(
        "duplicate_pairs",
        sa.Column("pair_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("left_id", sa.String(128), nullable=False),
        sa.Column("right_id", sa.String(128), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("found_at", TS, nullable=False),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", TS),
        sa.Column("merge_id", sa.Integer),
        sa.UniqueConstraint("left_id", "right_id", name="uq_duplicate_pairs"),
    )
    op.create_index("ix_duplicate_pairs_status", "duplicate_pairs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_duplicate_pairs_status", "duplicate_pairs")
    op.drop_table("duplicate_pairs")
    op.drop_index("ix_customer_redirects_survivor", "customer_redirects")
    op.drop_table("customer_redirects")
    op.drop_index("ix_merges_survivor", "merges")
    op.drop_table("merges")
