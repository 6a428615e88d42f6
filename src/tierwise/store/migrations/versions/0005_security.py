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
        batch.add_column(sa.Column("email_hash", sa.String(64)))
        batch.add_column(sa.Column("phone_hash", sa.String(64)))
    op.create_index("ix_customers_email_hash", "customers", ["email_hash"])
    op.create_index("ix_customers_phone_hash", "customers", ["phone_hash"])
    op.create_index("ix_customers_owner", "customers", ["owner"])
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
    op.create_table(
        "contact_preferences",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(32), primary_key=True),
        sa.Column("consent", sa.Boolean),
        sa.Column("unsubscribed_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("contact_preferences", "audit_log", "api_keys", "sessions", "users"):
        op.drop_table(table)
    for index in ("ix_customers_owner", "ix_customers_phone_hash", "ix_customers_email_hash"):
        op.drop_index(index, "customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("phone_hash")
        batch.drop_column("email_hash")
        batch.drop_column("address")
