"""Rows from any SQLAlchemy URL and query, streamed in chunks as an import source."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import sqlalchemy as sa

from tierwise.errors import SourceError
from tierwise.ingest.parsers import cell_text
from tierwise.ingest.readers import BATCH_ROWS, RecordsSource
from tierwise.store.control import create_engine


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid URL>"


def sql_source(url: str, query: str, chunk_rows: int = BATCH_ROWS) -> RecordsSource:
    """A source reading ``query`` from ``url``; the query is run as given (read it first)."""
    shown = _redact(url)
    try:
        engine = create_engine(url)
        conn = engine.connect()
    except Exception as exc:  # drivers raise their own types
        raise SourceError(f"cannot connect to {shown}: {exc}",
                          zh=f"无法连接到 {shown}：{exc}") from None
    try:
        result = conn.execution_options(stream_results=True).execute(sa.text(query))
    except sa.exc.SQLAlchemyError as exc:
        conn.close()
        engine.dispose()
        reason = getattr(exc, "orig", None) or exc
        raise SourceError(f"{shown}: the query failed: {reason}",
                          zh=f"{shown}：查询失败：{reason}") from None
    header = list(result.keys())

    def batches() -> Iterator[pa.Table]:
        try:
            while True:
                rows = result.fetchmany(chunk_rows)
                if not rows:
                    return
                yield pa.table({name: pa.array([cell_text(r[i]) for r in rows], pa.string())
                                for i, name in enumerate(header)})
        finally:
            conn.close()
            engine.dispose()

    return RecordsSource(f"{shown} (query)", header, batches(), fmt="sql")
