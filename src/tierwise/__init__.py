"""tierwise: customer segmentation and tiering.

>>> import tempfile, tierwise
>>> ws = tierwise.init(tempfile.mkdtemp(), timezone="Asia/Shanghai")
>>> ws.config.currency
'CNY'
"""

from __future__ import annotations

import os

from tierwise.actions import hooks as _hooks
from tierwise.config import WorkspaceConfig
from tierwise.errors import ImportRejected, MappingError, SourceError, TierwiseError
from tierwise.ingest.mapping import Mapping
from tierwise.ingest.pipeline import ImportResult
from tierwise.workspace import Workspace

__version__ = "0.1.0"

# Every process that imports tierwise has the triggers and playbooks listen to the changes
# segments, snapshots and lead scores announce (store.changes): none goes unseen.
_hooks.install()
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


def init(path: str | os.PathLike[str], **settings: object) -> Workspace:
    """Create a workspace at ``path`` (settings as in ``tierwise.toml``) and open it."""
    config = WorkspaceConfig(**settings) if settings else None  # type: ignore[arg-type]
    return Workspace.create(path, config)


def open(path: str | os.PathLike[str] | None = None) -> Workspace:  # noqa: A001
    """Open the workspace at ``path`` (default: ``$TIERWISE_WORKSPACE`` or the cwd)."""
    return Workspace.open(path)
