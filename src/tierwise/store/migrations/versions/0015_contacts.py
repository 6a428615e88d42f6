"""customers.account_id and customers.role: a contact names the account it works for and
its role in the account's decision chain.

Revision ID: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("account_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("role", sa.String(32), nullable=True))
        batch.create_index("ix_customers_account", ["account_id"])


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_index("ix_customers_account")
        batch.drop_column("role")
        batch.drop_column("account_id")
