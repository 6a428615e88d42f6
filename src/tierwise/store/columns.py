"""One table's columns, read when first asked for.

A batch evaluation reads a few columns of the customers' copy and of a snapshot (a tier,
a city): reading either whole costs more than the query (0.5 s each at a million
customers, their sealed personal data and 33 computed fields). ``Columns`` holds either
the table already in memory or the Parquet file, open, so that every read of one
evaluation sees the same rows even if a newer copy replaces the file meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class Columns:
    """Columns of one table at one instant: a table in memory or a Parquet file."""

    def __init__(self, source: pa.Table | Path) -> None:
        self._table = source if isinstance(source, pa.Table) else None
        self._file = None if isinstance(source, pa.Table) else pq.ParquetFile(source)

    @property
    def names(self) -> tuple[str, ...]:
        if self._table is not None:
            return tuple(self._table.column_names)
        assert self._file is not None
        return tuple(self._file.schema_arrow.names)

    def read(self, columns: Iterable[str]) -> pa.Table:
        """``columns`` (in the table's order; unknown names are left out)."""
        wanted = set(columns)
        names = [n for n in self.names if n in wanted]
        if self._table is not None:
            return self._table.select(names)
        assert self._file is not None
        return self._file.read(columns=names)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["Columns"]
