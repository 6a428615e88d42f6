"""customers.import_id indexed: the customers an import wrote are read after every write
through the API (to match them against the others), which scanned the whole table.

Revision ID: 0012
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_import", "customers", ["import_id"])


def downgrade() -> None:
    op.drop_index("ix_customers_import", table_name="customers")
