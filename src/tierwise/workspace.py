"""A workspace: ``tierwise.toml``, the control store, the fact store and the compute engine.

This is the handle every layer above the stores receives. The Python API's
``tierwise.Workspace`` adds imports and computations to it (``tierwise/__init__.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from tierwise.compile.dialects import render
from tierwise.config import WorkspaceConfig, find_workspace, read_config, write_config
from tierwise.definitions.personal_data import PersonalData
from tierwise.definitions.schemas import TABLES, table_schema
from tierwise.engines import make_engine
from tierwise.engines.base import Engine
from tierwise.errors import WorkspaceError
from tierwise.store import audit, import_log
from tierwise.store import customers as customer_store
from tierwise.store.control import ControlStore
from tierwise.store.facts import FactStore
from tierwise.store.sealing import KeyRing


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

    # -- reading -------------------------------------------------------------------------
    def table(self, name: str) -> pa.Table:
        """The current rows of a canonical table as Arrow."""
        schema = table_schema(name)
        if schema.home == "control":
            with self.control.read() as conn:
                return customer_store.as_arrow(conn)
        with self.engine.session({name: self.facts.scan(name)}) as session:
            return session.query(render(f'SELECT * FROM "{name}"', self.engine.name))

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
                files, size = self.facts.live_files(conn, name)
                out[name] = {"rows": self.count(name), "files": files, "bytes": size,
                             "last_import": import_log.last_finished(conn, name)}
        return out

    def compact(self, table: str | None = None) -> dict[str, tuple[int, int]]:
        """Merge small fact files; delete files that earlier compactions replaced."""
        names = [table] if table else [t.name for t in TABLES.values() if t.home == "facts"]
        done = {name: self.facts.compact(self.engine, name) for name in names}
        self.facts.collect_garbage()
        return done
