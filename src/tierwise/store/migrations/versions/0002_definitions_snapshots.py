"""Versioned definitions (RFM, tiers, lifecycle, CLV settings) and customer-facts snapshots.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("snapshot_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("computed_at", TS, nullable=False),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
    )
    op.create_index("ix_snapshots_as_of", "snapshots", ["as_of"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_as_of", "snapshots")
    op.drop_table("snapshots")
    op.drop_table("definitions")
