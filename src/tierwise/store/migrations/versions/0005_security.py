"""Users, sessions, API keys, the audit chain, contact preferences; PII columns of customers.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("address", sa.Text))
        batch.add_column(sa.Column("name_hash", sa.String(64)))
        batch.add_column(sa.Column("email_hash", sa.String(64)))
        batch.add_column(sa.Column("phone_hash", sa.String(64)))
    op.create_index("ix_customers_name_hash", "customers", ["name_hash"])
    op.create_index("ix_customers_email_hash", "customers", ["email_hash"])
    op.create_index("ix_customers_phone_hash", "customers", ["phone_hash"])
    op.create_index("ix_customers_owner", "customers", ["owner"])
    op.create_index("ix_segment_members_customer", "segment_members", ["customer_id"])
    op.create_table(
        "users",
        sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.Text),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("owner_name", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS),
        sa.Column("last_login_at", TS),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("client", sa.Text),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("owner_name", sa.Text),
        sa.Column("rate_per_second", sa.Float, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
        sa.Column("last_used_at", TS),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("client", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    _append_only("audit_log")
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "contact_preferences",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("consent", sa.Boolean),
        sa.Column("unsubscribed_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE on ``table`` in the database itself."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""CREATE FUNCTION {table}_append_only() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION '{table} is append-only'; END $$ LANGUAGE plpgsql""")
        op.execute(f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("jobs", "contact_preferences", "audit_log", "api_keys", "sessions", "users"):
        op.drop_table(table)
    op.drop_index("ix_segment_members_customer", "segment_members")
    for index in ("ix_customers_owner", "ix_customers_phone_hash", "ix_customers_email_hash",
                  "ix_customers_name_hash"):
        op.drop_index(index, "customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("phone_hash")
        batch.drop_column("email_hash")
        batch.drop_column("name_hash")
        batch.drop_column("address")
