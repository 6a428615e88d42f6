"""Control-store tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create them.

The control store is the system of record for everything small and transactional. The
large append-only facts live in Parquet; ``fact_files`` is their manifest: a file is part
of a table exactly when a committed row here says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Instants stored as UTC and read back as UTC-aware datetimes, on every database.

    SQLite keeps no zone: without this, an aware 23:59 Asia/Shanghai would be stored as
    23:59 and read back as 23:59 UTC, eight hours off.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, datetime):
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
            if dialect.name == "sqlite":
                return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


customers = sa.Table(
    "customers",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("address", sa.Text),
    sa.Column("gender", sa.String(16)),
    sa.Column("birth_date", sa.Date),
    sa.Column("city", sa.Text),
    sa.Column("province", sa.Text),
    sa.Column("country", sa.Text),
    sa.Column("industry", sa.Text),
    sa.Column("company_size", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("owner", sa.Text),
    sa.Column("account_id", sa.String(128)),
    sa.Column("role", sa.String(32)),
    sa.Column("signup_at", UtcDateTime()),
    sa.Column("acquisition_cost", sa.Float),
    sa.Column("tags", sa.Text),  # JSON array
    sa.Column("attributes", sa.Text),  # JSON object
    # A stub is created when facts name a customer no import has described yet.
    sa.Column("is_stub", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("import_id", sa.Integer),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # Name, e-mail, phone and address are stored encrypted (security/pii.py); these keyed
    # hashes of the normalised name, e-mail and phone let a search find a customer by equality.
    sa.Column("name_hash", sa.String(64)),
    sa.Column("email_hash", sa.String(64)),
    sa.Column("phone_hash", sa.String(64)),
    sa.Index("ix_customers_name_hash", "name_hash"),
    sa.Index("ix_customers_email_hash", "email_hash"),
    sa.Index("ix_customers_phone_hash", "phone_hash"),
    sa.Index("ix_customers_owner", "owner"),
    sa.Index("ix_customers_account", "account_id"),
    sa.Index("ix_customers_updated_at", "updated_at"),
    sa.Index("ix_customers_import", "import_id"),
)

imports = sa.Table(
    "imports",
    metadata,
    sa.Column("import_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(32), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_format", sa.String(16), nullable=False),
    sa.Column("encoding", sa.String(32)),
    sa.Column("mapping", sa.Text),  # JSON of the effective mapping
    sa.Column("rows_read", sa.BigInteger, nullable=False),
    sa.Column("inserted", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Column("stubs_created", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=False),
)

fact_files = sa.Table(
    "fact_files",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(32), nullable=False),
    sa.Column("path", sa.Text, nullable=False, unique=True),  # relative to the workspace
    # Rows with the same key: the file with the higher ``seq`` wins. Imports take their own
    # file_id; a compacted file takes the highest seq of the files it replaced, so an import
    # that commits while compaction runs still wins.
    sa.Column("seq", sa.Integer),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("min_time", UtcDateTime()),
    sa.Column("max_time", UtcDateTime()),
    # True when some key in this file also appears in an older file, so readers deduplicate.
    sa.Column("overlaps", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("import_id", sa.Integer),
    sa.Column("added_at", UtcDateTime(), nullable=False),
    # Set when compaction replaces the file; it is deleted from disk some time later so that
    # readers that listed it before still find it.
    sa.Column("removed_at", UtcDateTime()),
    sa.Index("ix_fact_files_table_live", "table_name", "removed_at"),
)

mappings = sa.Table(
    "mappings",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("table_name", sa.String(32), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # YAML
    sa.Column("saved_at", UtcDateTime(), nullable=False),
)

# Versioned definitions: RFM settings, tier rules, lifecycle rules, CLV settings (and,
# later, segments). A change never overwrites: it adds the next version.
definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),  # JSON
    sa.Column("note", sa.Text),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

# One Parquet file of customer facts (RFM, value score, tier, lifecycle, CLV, churn risk)
# per computation; ``settings`` records the definition versions it used.
snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("snapshot_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("as_of", UtcDateTime(), nullable=False),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("path", sa.Text, nullable=False, unique=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Index("ix_snapshots_as_of", "as_of"),
)

# Who is in each segment now (the definition version that put them there).
segment_members = sa.Table(
    "segment_members",
    metadata,
    sa.Column("segment_key", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("entered_at", UtcDateTime(), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_segment_members_customer", "customer_id"),
)

# How many members each segment has now. Every change to segment_members changes it in
# the same transaction (``store/sizes.py``): counting a segment's members after each
# real-time round took ~40 ms on a busy workspace.
segment_sizes = sa.Table(
    "segment_sizes",
    metadata,
    sa.Column("segment_key", sa.String(128), primary_key=True),
    sa.Column("members", sa.BigInteger, nullable=False),
)

# One row per stay in a segment. Reasons: rule_change, data_change, manual, backfill.
segment_history = sa.Table(
    "segment_history",
    metadata,
    sa.Column("history_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("segment_key", sa.String(128), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("entered_at", UtcDateTime(), nullable=False),
    sa.Column("exited_at", UtcDateTime()),
    sa.Column("enter_reason", sa.String(16), nullable=False),
    sa.Column("exit_reason", sa.String(16)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_segment_history_key_customer", "segment_key", "customer_id"),
    sa.Index("ix_segment_history_customer", "customer_id"),
)

# Every evaluation of a segment: when, how long, how many, what changed, or the error.
segment_runs = sa.Table(
    "segment_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("segment_key", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("as_of", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("members", sa.BigInteger),
    sa.Column("entered", sa.BigInteger),
    sa.Column("exited", sa.BigInteger),
    sa.Column("reason", sa.String(16)),
    sa.Column("error", sa.Text),
    sa.Index("ix_segment_runs_key", "segment_key", "run_id"),
)

# Every value cleaning changed (rule: what it did) or flagged (rule: flag_…) on import.
cleaning_log = sa.Table(
    "cleaning_log",
    metadata,
    sa.Column("log_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("import_id", sa.Integer, nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("column_name", sa.String(64), nullable=False),
    sa.Column("before", sa.Text, nullable=False),
    sa.Column("after", sa.Text, nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("undone_at", UtcDateTime()),
    sa.Index("ix_cleaning_log_import", "import_id"),
)

# -- people and machines that use the API, and what they did ------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.Text),
    sa.Column("password_hash", sa.Text, nullable=False),  # argon2id
    sa.Column("role", sa.String(16), nullable=False),
    # For operators: the ``customers.owner`` value whose customers' PII they may see.
    sa.Column("owner_name", sa.Text),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("disabled_at", UtcDateTime()),
    sa.Column("last_login_at", UtcDateTime()),
)

# Dashboard sessions: the cookie carries a random token; only its SHA-256 is stored.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("client", sa.Text),
)

# Machine keys: ``tw_<key_id>_<secret>`` is shown once; the secret's SHA-256 is stored.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),  # JSON list of permissions
    sa.Column("owner_name", sa.Text),
    sa.Column("rate_per_second", sa.Float, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime()),
    sa.Column("revoked_at", UtcDateTime()),
    sa.Column("last_used_at", UtcDateTime()),
)

# Append-only and hash-chained: each entry's hash covers its content and the previous hash.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("detail", sa.Text, nullable=False),  # JSON object
    sa.Column("client", sa.Text),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Consent and unsubscribe, per customer and channel ("all" covers every channel).
contact_preferences = sa.Table(
    "contact_preferences",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("consent", sa.Boolean),
    sa.Column("unsubscribed_at", UtcDateTime()),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Long operations started through the API (imports, computations): status and progress.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    # queued, running, done, failed; "start" marks where a schedule began (server.schedule)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("params", sa.Text, nullable=False),  # JSON
    sa.Column("result", sa.Text),  # JSON
    sa.Column("error", sa.Text),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
    # the process running it (host:pid:start) and its upload's folder, for crash recovery
    sa.Column("runner", sa.String(300)),
    sa.Column("upload_folder", sa.Text),
)

# -- identity resolution ------------------------------------------------------------------

# One row per merge: who survived, who was merged, where each golden field came from, and
# (encrypted) everything needed to undo it.
merges = sa.Table(
    "merges",
    metadata,
    sa.Column("merge_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("survivor_id", sa.String(128), nullable=False),
    sa.Column("merged_ids", sa.Text, nullable=False),  # JSON list
    sa.Column("reason", sa.String(16), nullable=False),  # auto, review, manual
    sa.Column("fields", sa.Text, nullable=False),  # JSON: column → source customer id
    sa.Column("undo", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("undone_at", UtcDateTime()),
    sa.Column("undone_by", sa.Text),
    sa.Index("ix_merges_survivor", "survivor_id"),
)

# Merged ids and the id that survived them; fact scans read facts through this map.
customer_redirects = sa.Table(
    "customer_redirects",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("survivor_id", sa.String(128), nullable=False),
    sa.Column("merge_id", sa.Integer, nullable=False),
    sa.Index("ix_customer_redirects_survivor", "survivor_id"),
)

# Candidate duplicates between the review thresholds, and what was decided about them.
duplicate_pairs = sa.Table(
    "duplicate_pairs",
    metadata,
    sa.Column("pair_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("left_id", sa.String(128), nullable=False),
    sa.Column("right_id", sa.String(128), nullable=False),
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending, accepted, rejected, merged
    sa.Column("found_at", UtcDateTime(), nullable=False),
    sa.Column("decided_by", sa.Text),
    sa.Column("decided_at", UtcDateTime()),
    sa.Column("merge_id", sa.Integer),
    sa.UniqueConstraint("left_id", "right_id", name="uq_duplicate_pairs"),
    sa.Index("ix_duplicate_pairs_status", "status"),
)

# -- real-time intake --------------------------------------------------------------------

# Rows posted to the API: committed here before the answer, moved to the fact store in
# micro-batches. (table_name, row_key) makes a repeated post of the same row a no-op.
intake = sa.Table(
    "intake",
    metadata,
    sa.Column("intake_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(32), nullable=False),
    sa.Column("row_key", sa.String(256), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON object (PII encrypted)
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("moved_at", UtcDateTime()),
    sa.Column("import_id", sa.Integer),
    # the partition bucket of the row's owner (``definitions.partitions``)
    sa.Column("bucket", sa.SmallInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("table_name", "row_key", name="uq_intake_key"),
    sa.Index("ix_intake_pending", "table_name", "moved_at"),
)

# -- actions -----------------------------------------------------------------------------

# One row per action to carry out, written in the same transaction as the change that
# caused it (a membership change, a tier change, a qualified lead, a playbook step); the
# dispatcher delivers it at least once. ``idempotency_key`` is sent with every attempt.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("source", sa.String(160), nullable=False),  # trigger:<key> / playbook:<key>
    sa.Column("event", sa.String(32), nullable=False),  # enter, exit, tier_change, …
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # webhook, email, task, tag
    sa.Column("payload", sa.Text, nullable=False),  # JSON: the event and the action
    # pending, delivered, dead (gave up), held_out (holdout group), suppressed (no consent)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("last_error", sa.Text),
    # the start of the receiver's last answer (shown to admins only)
    sa.Column("last_reply", sa.Text),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("delivered_at", UtcDateTime()),
    # what the delivered message cost (the channel's ``message_costs`` when it was sent)
    sa.Column("cost", sa.Float),
    sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    sa.Index("ix_outbox_customer", "customer_id"),
)

# Credentials of SMS senders and chat robots, encrypted under the PII key (the value column
# holds ciphertext only).
channel_secrets = sa.Table(
    "channel_secrets",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

# When each trigger last fired for each customer (fire-once and cooldown).
trigger_fires = sa.Table(
    "trigger_fires",
    metadata,
    sa.Column("trigger_key", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("first_at", UtcDateTime(), nullable=False),
    sa.Column("last_at", UtcDateTime(), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)

# Follow-up work for people: assigned to the customer's owner (or a role), completable.
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", sa.String(64), unique=True),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("role", sa.String(32)),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text),
    sa.Column("source", sa.String(160), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False, server_default="normal"),
    sa.Column("due_at", UtcDateTime()),
    sa.Column("status", sa.String(16), nullable=False),  # open, done, cancelled
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("completed_by", sa.Text),
    sa.Index("ix_tasks_owner", "owner", "status"),
    sa.Index("ix_tasks_customer", "customer_id"),
)

# A customer's way through a playbook's steps; leaving the segment stops it.
playbook_runs = sa.Table(
    "playbook_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("playbook_key", sa.String(128), nullable=False),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("next_step", sa.Integer, nullable=False),
    sa.Column("next_at", UtcDateTime()),
    # active, done, stopped (left the segment or tier), converted (reached exit_when)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("ended_at", UtcDateTime()),
    sa.Index("ix_playbook_runs_due", "status", "next_at"),
    sa.Index("ix_playbook_runs_customer", "customer_id", "playbook_key"),
)

# Lead scores kept current as events arrive; qualified_at is set once, on crossing.
lead_scores = sa.Table(
    "lead_scores",
    metadata,
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("computed_at", UtcDateTime(), nullable=False),
    sa.Column("qualified_at", UtcDateTime()),
)

# Service tickets under a playbook's SLA: escalated priority, deadline, breach alert.
ticket_sla = sa.Table(
    "ticket_sla",
    metadata,
    sa.Column("ticket_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("playbook_key", sa.String(128), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("opened_at", UtcDateTime(), nullable=False),
    sa.Column("due_at", UtcDateTime(), nullable=False),
    sa.Column("closed_at", UtcDateTime()),
    sa.Column("breached_at", UtcDateTime()),
    sa.Index("ix_ticket_sla_open", "closed_at", "due_at"),
)

# Which server process runs the real-time worker (one at a time across processes).
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)
