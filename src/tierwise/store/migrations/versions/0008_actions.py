"""Actions: the outbox, trigger fires, tasks, playbook runs, lead scores, ticket SLAs and
the worker lease.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(160), nullable=False),  # trigger:<key> / playbook:<key>
        sa.Column("event", sa.String(32), nullable=False),  # enter, exit, tier_change, …
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),  # webhook, email, task, tag
        sa.Column("payload", sa.Text, nullable=False),  # JSON: the event and the action
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_customer", "outbox", ["customer_id"])
    op.create_table(
        "trigger_fires",
        sa.Column("trigger_key", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), unique=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("owner", sa.Text),
        sa.Column("role", sa.String(32)),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("source", sa.String(160), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False, server_default="normal"),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),  # open, done, cancelled
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("completed_by", sa.Text),
    )
    op.create_index("ix_tasks_owner", "tasks", ["owner", "status"])
    op.create_index("ix_tasks_customer", "tasks", ["customer_id"])
    op.create_table(
        "playbook_runs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("playbook_key", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_step", sa.Integer, nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),  # active, done, stopped
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_playbook_runs_due", "playbook_runs", ["status", "next_at"])
    op.create_index("ix_playbook_runs_customer", "playbook_runs", ["customer_id", "playbook_key"])
    op.create_table(
        "lead_scores",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("qualified_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "ticket_sla",
        sa.Column("ticket_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("playbook_key", sa.String(128), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("breached_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_ticket_sla_open", "ticket_sla", ["closed_at", "due_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("ticket_sla")
    op.drop_table("lead_scores")
    op.drop_table("playbook_runs")
    op.drop_table("tasks")
    op.drop_table("trigger_fires")
    op.drop_table("outbox")
