"""A workspace: ``tierwise.toml``, the control store, the fact store and the compute engine.

This is the handle every layer above the stores receives. The Python API's
``tierwise.Workspace`` adds imports and computations to it (``tierwise/__init__.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from tierwise.store.control import Connection, ControlStore
from tierwise.store.facts import FactStore
from tierwise.store.key_inventory import sealed_key_ids
from tierwise.store.sealing import ENV_KEY, KeyRing, MissingPiiKey

if TYPE_CHECKING:  # pyarrow makes the frames; importing pandas costs every command 0.4 s
    import pandas as pd


class Workspace:
    """One tierwise workspace on disk.

    >>> import tempfile, tierwise
    >>> ws = tierwise.init(tempfile.mkdtemp())
    >>> ws.count("orders")
    0
    """

    def __init__(self, root: Path, config: WorkspaceConfig, *, new: bool = False) -> None:
        """Open the workspace at ``root``; ``new`` (``create`` only) makes its keys."""
        self.root = root
        self.config = config
        #: What is personal data here: the PII columns and the sensitive attribute keys.
        self.personal_data = PersonalData.of(config.sensitive_attributes,
                                             config.public_attributes)
        try:
            ring = KeyRing.load(self.pii_key_path(root, config), create=new)
        except MissingPiiKey as exc:
            raise missing_key_error(config.control_store_url(root), exc.key_file) from None
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
        existed = (path / "tierwise.toml").exists()
        if existed and not exist_ok:
            raise WorkspaceError(f"{path} is already a tierwise workspace",
                                 zh=f"{path} 已经是 tierwise 工作区")
        path.mkdir(parents=True, exist_ok=True)
        config = config or WorkspaceConfig(name=path.name)
        (path / "facts").mkdir(exist_ok=True)
        write_config(path, config)
        ws = cls(path, config, new=not existed)  # keys are made for a new workspace only
        ws._prepare(new=not existed)
        return ws

    @classmethod
    def open(cls, root: str | os.PathLike[str] | None = None) -> Workspace:
        path = find_workspace(root)
        ws = cls(path, read_config(path))
        ws._prepare()
        return ws

    def _prepare(self, new: bool = False) -> None:
        """Migrate the control store and load the audit key (``new``: create it and record
        the ids of both keys in the audit log, so that a lost key can be named)."""
        self.control.upgrade()
        with self.control.read() as conn:
            self.control.audit = audit.open_key(conn, self.audit_key_path(self.root,
                                                                          self.config),
                                                create=new)
        if new:
            self.record_key_ids("system:init")

    @staticmethod
    def audit_key_path(root: Path, config: WorkspaceConfig) -> Path:
        return (root / config.audit_key_file).resolve()

    def record_key_ids(self, actor: str) -> None:
        """Write the ids (never the keys) of the PII and audit keys in use to the audit log."""
        assert self.control.pii is not None and self.control.audit is not None
        with self.control.write() as conn:
            audit.append(conn, actor, audit.KEYS_ACTION, None,
                         {"pii_keys": list(self.control.pii.key_ids),
                          "audit_key": self.control.audit.key_id})

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
        ``referrals``, ``opportunities``, ``opportunity_stages`` and ``customers`` and
        nothing else: no other file, no writing, no
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

    def count(self, name: str, conn: Connection | None = None) -> int:
        """Rows of a canonical table; ``conn``: as that connection sees the control store
        (a backup's instant), else now."""
        schema = table_schema(name)
        if schema.home == "control":
            if conn is not None:
                return customer_store.count(conn)
            with self.control.read() as own:
                return customer_store.count(own)
        with self.engine.session({name: self.facts.scan(name, conn)}) as session:
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


def sealed_keys(control_url: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Read without any key: the key ids sealed values need (id → columns) and the ids the
    audit log recorded for this workspace."""
    store = ControlStore(control_url)
    try:
        if store.revision() is None:
            return {}, {}
        with store.read() as conn:
            return sealed_key_ids(conn), audit.recorded_key_ids(conn)
    finally:
        store.dispose()


def missing_key_error(control_url: str, key_file: Path) -> WorkspaceError:
    """Why a workspace without its PII key does not open: which keys its data needs, where
    the key was looked for, and the fix."""
    needed, recorded = sealed_keys(control_url)
    looked = f"looked for ${ENV_KEY} (not set) and {key_file} (no such file)"
    if needed:
        ids = ", ".join(f"{k} ({', '.join(v)})" for k, v in needed.items())
        return WorkspaceError(
            f"the personal data here is encrypted with key {ids}, and no PII key was found: "
            f"{looked}. Put the key file back from where you keep it, restore it from a "
            f"backup made with --include-keys, or set ${ENV_KEY}. A new key could not read "
            "this data, so none was created.")
    known = recorded.get("pii_keys") or []
    hint = f" (it was created with key {known[0]})" if known else ""
    return WorkspaceError(
        f"no PII key{hint}: {looked}. No stored value is encrypted yet, so if that key is "
        f"truly lost, `tierwise pii new-key` creates one; otherwise put it back first.")


def new_pii_key(root: str | os.PathLike[str] | None = None) -> Workspace:
    """Create the PII key of a workspace that has none and holds nothing sealed (the one
    explicit way besides ``init``); with sealed data a new key could read none of it, so
    this refuses and names the key that is needed."""
    path = find_workspace(root)
    config = read_config(path)
    key_file = Workspace.pii_key_path(path, config)
    if os.environ.get(ENV_KEY) or key_file.exists():
        raise WorkspaceError(f"this workspace has a PII key already "
                             f"({'$' + ENV_KEY if os.environ.get(ENV_KEY) else key_file}); "
                             "`tierwise pii rotate-key` replaces it safely",
                             zh=f"这个工作区已经有 PII 密钥（"
                             f"{'$' + ENV_KEY if os.environ.get(ENV_KEY) else key_file}）；"
                             "`tierwise pii rotate-key` 可以安全地替换它")
    if sealed_keys(config.control_store_url(path))[0]:
        raise missing_key_error(config.control_store_url(path), key_file)
    KeyRing.load(key_file, create=True)
    ws = Workspace(path, config)
    ws._prepare()
    ws.record_key_ids("system:pii_new_key")
    return ws
