"""tierwise: customer segmentation and tiering.

>>> import tempfile, tierwise
>>> ws = tierwise.init(tempfile.mkdtemp(), timezone="Asia/Shanghai")
>>> ws.config.currency
'CNY'
"""

from __future__ import annotations

import os

# Arrow's allocator (mimalloc) asks for transparent huge pages on its arenas unless told not
# to, and it reads the setting once, when pyarrow loads: so it is set here, before the first
# import below brings pyarrow in. The buffers an import or a computation allocates are
# short-lived; on virtual machines whose freed memory goes back to the host, every huge page
# is then a fresh 2 MB to be zeroed and backed again, which cost ~13 ms a page and half the
# CPU of a 10M-row import (docs/benchmarks.md, "Huge pages"). A value already in the
# environment wins; a process that loaded pyarrow before tierwise keeps its own.
os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")

from datetime import datetime
from typing import TYPE_CHECKING, Any

from tierwise import workspace as _workspace
from tierwise.actions import hooks as _hooks
from tierwise.config import WorkspaceConfig
from tierwise.errors import ImportRejected, MappingError, SourceError, TierwiseError
from tierwise.ingest import imports as _imports
from tierwise.ingest.mapping import Mapping
from tierwise.ingest.results import ImportResult
from tierwise.models import compute as _compute
from tierwise.models import labels as _labels
from tierwise.segments import vocabulary as _vocabulary

if TYPE_CHECKING:
    import pandas as pd

__version__ = "0.1.0"

# Every process that imports tierwise has the triggers and playbooks listen to the changes
# segments, snapshots and lead scores announce (store.changes): none goes unseen.
_hooks.install()
# ... and rules name tiers, RFM segments and stages with the labels the workspace shows.
_vocabulary.provide(_labels.vocabulary)
__all__ = [
    "ImportRejected",
    "ImportResult",
    "Mapping",
    "MappingError",
    "SourceError",
    "TierwiseError",
    "Workspace",
    "WorkspaceConfig",
    "init",
    "open",
]


class Workspace(_workspace.Workspace):
    """A workspace for the Python API: the stores and engine of ``tierwise.workspace``, plus
    imports and computations.

    >>> ws = tierwise.open("./acme")  # doctest: +SKIP
    >>> ws.import_file("orders", "orders.csv", mapping="orders_map.yaml")  # doctest: +SKIP
    >>> ws.compute().table.to_pandas().groupby("tier").clv.sum()  # doctest: +SKIP
    """

    def import_file(self, table: str, path: str | os.PathLike[str], *,
                    mapping: _imports.MappingLike = None, **options: Any) -> ImportResult:
        """Import a CSV, XLSX, Parquet or JSON Lines file (``ingest.imports.import_file``:
        format, unknown_customers, dry_run, report_path, progress)."""
        return _imports.import_file(self, table, path, mapping=mapping, **options)

    def import_source(self, table: str, source: Any, **options: Any) -> ImportResult:
        """Import rows from a ``Source`` (``ingest.imports.import_source``)."""
        return _imports.import_source(self, table, source, **options)

    def import_sql(self, table: str, url: str, query: str, **options: Any) -> ImportResult:
        """Import the rows of ``query`` run against any SQLAlchemy URL."""
        return _imports.import_sql(self, table, url, query, **options)

    def resolve_mapping(self, mapping: _imports.MappingLike) -> Mapping:
        """A Mapping object, a YAML file path, or the name of a saved mapping."""
        return _imports.resolve_mapping(self, mapping)

    def save_mapping(self, name: str, table: str, mapping: Mapping) -> None:
        _imports.save_mapping(self, name, table, mapping)

    def saved_mappings(self) -> list[dict[str, Any]]:
        return _imports.saved_mappings(self)

    def compute(self, as_of: datetime | None = None, save: bool = True) -> _compute.Snapshot:
        """RFM, value score, tier, lifecycle, CLV and churn risk of every customer; a
        ``Snapshot`` whose ``table`` is one Arrow row per customer."""
        return _compute.compute(self, as_of, save=save)

    def customer_facts(self, snapshot_id: int | None = None) -> pd.DataFrame:
        """The customer facts of a saved snapshot (default: the latest) as pandas."""
        return _compute.load_snapshot(self, snapshot_id).table.to_pandas()


def init(path: str | os.PathLike[str], **settings: object) -> Workspace:
    """Create a workspace at ``path`` (settings as in ``tierwise.toml``) and open it."""
    config = WorkspaceConfig(**settings) if settings else None  # type: ignore[arg-type]
    ws = Workspace.create(path, config)
    assert isinstance(ws, Workspace)
    return ws


def open(path: str | os.PathLike[str] | None = None) -> Workspace:  # noqa: A001
    """Open the workspace at ``path`` (default: ``$TIERWISE_WORKSPACE`` or the cwd)."""
    ws = Workspace.open(path)
    assert isinstance(ws, Workspace)
    return ws
