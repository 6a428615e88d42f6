"""The intake queue: rows received through the API, durable before they are acknowledged.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake",
        sa.Column("intake_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("row_key", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("moved_at", sa.DateTime(timezone=True)),
        sa.Column("import_id", sa.Integer),
        sa.UniqueConstraint("table_name", "row_key", name="uq_intake_key"),
    )
    op.create_index("ix_intake_pending", "intake", ["table_name", "moved_at"])


def downgrade() -> None:
    op.drop_index("ix_intake_pending", "intake")
    op.drop_table("intake")
