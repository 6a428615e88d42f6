"""A workspace: ``tierwise.toml``, the control store, the fact store and the compute engine."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from tierwise.config import WorkspaceConfig, find_workspace, read_config, write_config
from tierwise.definitions.personal_data import PersonalData
from tierwise.definitions.schemas import TABLES, table_schema
from tierwise.engines.base import Engine, make_engine
from tierwise.errors import MappingError, WorkspaceError
from tierwise.ingest.mapping import Mapping
from tierwise.ingest.pipeline import ImportOptions, ImportResult, Progress, run_import
from tierwise.ingest.readers import Source, open_file
from tierwise.store import audit
from tierwise.store import customers as customer_store
from tierwise.store.control import ControlStore, utcnow
from tierwise.store.facts import FactStore
from tierwise.store.key_index import KeyIndex
from tierwise.store.sealing import KeyRing
from tierwise.store.tables import fact_files, imports, mappings


class Workspace:
    """One tierwise workspace on disk.

    >>> import tempfile, tierwise
    >>> ws = tierwise.init(tempfile.mkdtemp())
    >>> ws.count("orders")
    0
    """

    def __init__(self, root: Path, config: WorkspaceConfig) -> None:
        self.root = root
        self.config = config
        #: What is personal data here: the PII columns and the sensitive attribute keys.
        self.personal_data = PersonalData.of(config.sensitive_attributes,
                                             config.public_attributes)
        ring = KeyRing.load(self.pii_key_path(root, config))
        ring.sensitive_key = self.personal_data.is_sensitive_key
        self.control = ControlStore(config.control_store_url(root), ring)
        self.facts = FactStore(root, self.control)
        self.engine: Engine = make_engine(config.engine)

    @staticmethod
    def pii_key_path(root: Path, config: WorkspaceConfig) -> Path:
        return (root / config.pii_key_file).resolve()

    # -- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike[str], config: WorkspaceConfig | None = None,
               exist_ok: bool = False) -> Workspace:
        path = Path(root).expanduser().resolve()
        if (path / "tierwise.toml").exists() and not exist_ok:
            raise WorkspaceError(f"{path} is already a tierwise workspace")
        path.mkdir(parents=True, exist_ok=True)
        config = config or WorkspaceConfig(name=path.name)
        (path / "facts").mkdir(exist_ok=True)
        write_config(path, config)
        ws = cls(path, config)
        ws._prepare()
        return ws

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        path = find_workspace(root)
        ws = cls(path, read_config(path))
        ws._prepare()
        return ws

    def _prepare(self) -> None:
        """Migrate the control store and load the audit key (created on first use)."""
        self.control.upgrade()
        with self.control.read() as conn:
            self.control.audit = audit.open_key(conn, (self.root / self.config.audit_key_file)
                                                .resolve())

    def close(self) -> None:
        self.control.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- import --------------------------------------------------------------------------
    def import_source(self, table: str, source: Source, *, mapping: Mapping | None = None,
                      unknown_customers: str = "reject", dry_run: bool = False,
                      report_path: str | os.PathLike[str] | None = None,
                      progress: Progress | None = None,
                      key_index: KeyIndex | None = None) -> ImportResult:
        options = ImportOptions(mapping or Mapping(), unknown_customers, dry_run,
                                Path(report_path) if report_path else None, progress,
                                key_index)
        return run_import(self, table, source, options)

    def import_file(self, table: str, path: str | os.PathLike[str], *,
                    mapping: Mapping | str | os.PathLike[str] | None = None,
                    format: str | None = None, unknown_customers: str = "reject",
                    dry_run: bool = False, report_path: str | os.PathLike[str] | None = None,
                    progress: Progress | None = None) -> ImportResult:
        """Import a CSV, XLSX, Parquet or JSON Lines file into a canonical table.

        >>> ws.import_file("orders", "orders.csv", mapping="orders_map.yaml")  # doctest: +SKIP
        """
        table_schema(table)
        resolved_mapping = self.resolve_mapping(mapping)
        source = open_file(path, format, resolved_mapping.encoding, resolved_mapping.delimiter,
                           resolved_mapping.sheet)
        return self.import_source(table, source, mapping=resolved_mapping,
                                  unknown_customers=unknown_customers, dry_run=dry_run,
                                  report_path=report_path, progress=progress)

    def import_sql(self, table: str, url: str, query: str, *, mapping: Mapping | None = None,
                   unknown_customers: str = "reject", dry_run: bool = False,
                   report_path: str | os.PathLike[str] | None = None,
                   progress: Progress | None = None) -> ImportResult:
        """Import the rows of ``query`` run against any SQLAlchemy URL."""
        from tierwise.ingest.sqlsource import sql_source

        source = sql_source(url, query)
        return self.import_source(table, source, mapping=mapping,
                                  unknown_customers=unknown_customers, dry_run=dry_run,
                                  report_path=report_path, progress=progress)

    # -- saved mappings ------------------------------------------------------------------
    def resolve_mapping(self, mapping: Mapping | str | os.PathLike[str] | None) -> Mapping:
        """A Mapping object, a YAML file path, or the name of a saved mapping."""
        if mapping is None:
            return Mapping()
        if isinstance(mapping, Mapping):
            return mapping
        path = Path(mapping)
        if path.is_file():
            return Mapping.load(path)
        with self.control.read() as conn:
            row = conn.execute(sa.select(mappings.c.spec)
                               .where(mappings.c.name == str(mapping))).first()
        if row is None:
            raise MappingError(f"no mapping file or saved mapping named {str(mapping)!r}")
        return Mapping.from_yaml(row.spec, f"saved mapping {mapping!r}")

    def save_mapping(self, name: str, table: str, mapping: Mapping) -> None:
        spec = mapping.model_copy(update={"table": table}).to_yaml()
        with self.control.write() as conn:
            conn.execute(mappings.delete().where(mappings.c.name == name))
            conn.execute(mappings.insert().values(name=name, table_name=table, spec=spec,
                                                  saved_at=utcnow()))

    def saved_mappings(self) -> list[dict[str, Any]]:
        with self.control.read() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(mappings.c.name, mappings.c.table_name, mappings.c.saved_at)
                .order_by(mappings.c.name))]

    # -- reading -------------------------------------------------------------------------
    def table(self, name: str) -> pa.Table:
        """The current rows of a canonical table as Arrow."""
        schema = table_schema(name)
        if schema.home == "control":
            with self.control.read() as conn:
                return customer_store.as_arrow(conn)
        with self.engine.session({name: self.facts.scan(name)}) as session:
            return session.query(f'SELECT * FROM "{name}"')

    def customers(self) -> pd.DataFrame:
        return self.table("customers").to_pandas()

    def sql(self, query: str, params: list[Any] | None = None,
            with_customers: bool | None = None, pii: bool = False,
            limit: int | None = None) -> pa.Table:
        """Run one read-only SELECT over the fact tables and customers (DuckDB).

        The query sees the views ``orders``, ``events``, ``tickets``, ``feedback``,
        ``referrals`` and ``customers`` and nothing else: no other file, no writing, no
        settings (``engines.duckdb.sandbox``). Customers' name, e-mail, phone, address and
        sensitive attributes are masked unless ``pii`` is true. ``limit`` keeps the first
        rows only (the rest is never computed).

        >>> ws.sql("select customer_id, sum(amount) from orders group by 1")  # doctest: +SKIP
        """
        from tierwise.engines.duckdb import sandbox

        if with_customers is None:
            with_customers = "customers" in query.lower()
        arrow = {}
        if with_customers:
            people = self.table("customers")
            arrow["customers"] = people if pii else self.personal_data.mask_table(people)
        with sandbox(self.facts.scans(), arrow) as session:
            return session.select(query, params, limit)

    def count(self, name: str) -> int:
        schema = table_schema(name)
        if schema.home == "control":
            with self.control.read() as conn:
                return customer_store.count(conn)
        with self.engine.session({name: self.facts.scan(name)}) as session:
            return int(session.scalar(f'SELECT count(*) FROM "{name}"'))

    def summary(self) -> dict[str, Any]:
        """Row counts, file counts and the last import of every table."""
        out: dict[str, Any] = {}
        with self.control.read() as conn:
            for name in TABLES:
                files = conn.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(fact_files.c.bytes), 0))
                    .where(fact_files.c.table_name == name, fact_files.c.removed_at.is_(None))
                ).one()
                last = conn.execute(sa.select(sa.func.max(imports.c.finished_at))
                                    .where(imports.c.table_name == name)).scalar()
                out[name] = {"rows": self.count(name), "files": files[0], "bytes": files[1],
                             "last_import": last}
        return out

    # -- customer value ------------------------------------------------------------------
    def compute(self, as_of: datetime | None = None, save: bool = True) -> Any:
        """RFM, value score, tier, lifecycle, CLV and churn risk of every customer.

        Returns a ``Snapshot`` whose ``table`` is one Arrow row per customer.

        >>> ws.compute().table.to_pandas().groupby("tier").clv.sum()  # doctest: +SKIP
        """
        from tierwise.models.compute import compute

        return compute(self, as_of, save=save)

    def customer_facts(self, snapshot_id: int | None = None) -> pd.DataFrame:
        """The customer facts of a saved snapshot (default: the latest) as pandas."""
        from tierwise.models.compute import load_snapshot

        return load_snapshot(self, snapshot_id).table.to_pandas()

    def compact(self, table: str | None = None) -> dict[str, tuple[int, int]]:
        """Merge small fact files; delete files that earlier compactions replaced."""
        names = [table] if table else [t.name for t in TABLES.values() if t.home == "facts"]
        done = {name: self.facts.compact(self.engine, name) for name in names}
        self.facts.collect_garbage()
        return done
