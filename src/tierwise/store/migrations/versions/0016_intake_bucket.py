"""intake.bucket: which of the real-time partitions moves a received row (the bucket of
the customer that owns it: its account for a contact, itself otherwise).

Revision ID: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows pending at the upgrade take bucket 0; the partition that reads them hands each
    # to its owner (``realtime.intake.flush``)
    with op.batch_alter_table("intake") as batch:
        batch.add_column(sa.Column("bucket", sa.SmallInteger, nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("intake") as batch:
        batch.drop_column("bucket")
