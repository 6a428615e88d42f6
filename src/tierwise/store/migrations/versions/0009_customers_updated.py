"""An index on customers.updated_at: the real-time worker asks every round which customers
changed since its last look, and the customers mirror keys its copy on the latest change.

Revision ID: 0009
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_updated_at", "customers", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_customers_updated_at", table_name="customers")
