"""segment_sizes: the member count of each segment, kept with every change of its members
(counting them after each real-time round grew with the segments).

Revision ID: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "segment_sizes",
        sa.Column("segment_key", sa.String(128), primary_key=True),
        sa.Column("members", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO segment_sizes (segment_key, members) "
               "SELECT segment_key, COUNT(*) FROM segment_members GROUP BY segment_key")


def downgrade() -> None:
    op.drop_table("segment_sizes")
