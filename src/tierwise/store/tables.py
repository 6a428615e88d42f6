"""Control-store tables (SQLAlchemy Core). Migrations in ``migrations/versions`` create them.

The control store is the system of record for everything small and transactional. The
large append-only facts live in Parquet; ``fact_files`` is their manifest: a file is part
of a table exactly when a committed row here says so.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
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
    sa.Column("signup_at", sa.DateTime(timezone=True)),
    sa.Column("acquisition_cost", sa.Float),
    sa.Column("tags", sa.Text),  # JSON array
    sa.Column("attributes", sa.Text),  # JSON object
    # A stub is created when facts name a customer no import has described yet.
    sa.Column("is_stub", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("import_id", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("min_time", sa.DateTime(timezone=True)),
    sa.Column("max_time", sa.DateTime(timezone=True)),
    # True when some key in this file also appears in an older file, so readers deduplicate.
    sa.Column("overlaps", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("import_id", sa.Integer),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    # Set when compaction replaces the file; it is deleted from disk some time later so that
    # readers that listed it before still find it.
    sa.Column("removed_at", sa.DateTime(timezone=True)),
    sa.Index("ix_fact_files_table_live", "table_name", "removed_at"),
)

mappings = sa.Table(
    "mappings",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("table_name", sa.String(32), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # YAML
    sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# One Parquet file of customer facts (RFM, value score, tier, lifecycle, CLV, churn risk)
# per computation; ``settings`` records the definition versions it used.
snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("snapshot_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("path", sa.Text, nullable=False, unique=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Index("ix_snapshots_as_of", "as_of"),
)
