"""Initial control store: customers, imports, the fact-file manifest, saved mappings.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("gender", sa.String(16)),
        sa.Column("birth_date", sa.Date),
        sa.Column("city", sa.Text),
        sa.Column("province", sa.Text),
        sa.Column("country", sa.Text),
        sa.Column("industry", sa.Text),
        sa.Column("company_size", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("signup_at", TS),
        sa.Column("acquisition_cost", sa.Float),
        sa.Column("tags", sa.Text),
        sa.Column("attributes", sa.Text),
        sa.Column("is_stub", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("import_id", sa.Integer),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "imports",
        sa.Column("import_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("encoding", sa.String(32)),
        sa.Column("mapping", sa.Text),
        sa.Column("rows_read", sa.BigInteger, nullable=False),
        sa.Column("inserted", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
        sa.Column("stubs_created", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
    )
    op.create_table(
        "fact_files",
        sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("seq", sa.Integer),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("min_time", TS),
        sa.Column("max_time", TS),
        sa.Column("overlaps", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("import_id", sa.Integer),
        sa.Column("added_at", TS, nullable=False),
        sa.Column("removed_at", TS),
    )
    op.create_index("ix_fact_files_table_live", "fact_files", ["table_name", "removed_at"])
    op.create_table(
        "mappings",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("table_name", sa.String(32), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("saved_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mappings")
    op.drop_index("ix_fact_files_table_live", "fact_files")
    op.drop_table("fact_files")
    op.drop_table("imports")
    op.drop_table("customers")
