"""Imports as callers start them: a file, a SQL query or records, with a mapping given as an
object, a YAML file or a saved mapping's name. All or nothing (``pipeline.run_import``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tierwise.definitions.schemas import table_schema
from tierwise.errors import MappingError
from tierwise.ingest.mapping import Mapping
from tierwise.ingest.pipeline import ImportOptions, Progress, run_import
from tierwise.ingest.readers import Source, open_file
from tierwise.ingest.results import ImportResult
from tierwise.store import mappings as mapping_store
from tierwise.store.key_index import KeyIndex
from tierwise.workspace import Workspace

MappingLike = Mapping | str | os.PathLike[str] | None


def import_source(ws: Workspace, table: str, source: Source, *,
                  mapping: Mapping | None = None, unknown_customers: str = "reject",
                  dry_run: bool = False, report_path: str | os.PathLike[str] | None = None,
                  progress: Progress | None = None,
                  key_index: KeyIndex | None = None) -> ImportResult:
    """Import rows from any ``Source`` (a file's reader, records, a SQL query)."""
    options = ImportOptions(mapping or Mapping(), unknown_customers, dry_run,
                            Path(report_path) if report_path else None, progress, key_index)
    return run_import(ws, table, source, options)


def import_file(ws: Workspace, table: str, path: str | os.PathLike[str], *,
                mapping: MappingLike = None, format: str | None = None,
                unknown_customers: str = "reject", dry_run: bool = False,
                report_path: str | os.PathLike[str] | None = None,
                progress: Progress | None = None) -> ImportResult:
    """Import a CSV, XLSX, Parquet or JSON Lines file into a canonical table."""
    table_schema(table)
    resolved = resolve_mapping(ws, mapping)
    source = open_file(path, format, resolved.encoding, resolved.delimiter, resolved.sheet)
    return import_source(ws, table, source, mapping=resolved,
                         unknown_customers=unknown_customers, dry_run=dry_run,
                         report_path=report_path, progress=progress)


def import_sql(ws: Workspace, table: str, url: str, query: str, *,
               mapping: Mapping | None = None, unknown_customers: str = "reject",
               dry_run: bool = False, report_path: str | os.PathLike[str] | None = None,
               progress: Progress | None = None) -> ImportResult:
    """Import the rows of ``query`` run against any SQLAlchemy URL."""
    from tierwise.ingest.sqlsource import sql_source

    return import_source(ws, table, sql_source(url, query), mapping=mapping,
                         unknown_customers=unknown_customers, dry_run=dry_run,
                         report_path=report_path, progress=progress)


def resolve_mapping(ws: Workspace, mapping: MappingLike) -> Mapping:
    """A Mapping object, a YAML file path, or the name of a saved mapping."""
    if mapping is None:
        return Mapping()
    if isinstance(mapping, Mapping):
        return mapping
    path = Path(mapping)
    if path.is_file():
        return Mapping.load(path)
    with ws.control.read() as conn:
        text = mapping_store.spec(conn, str(mapping))
    if text is None:
        raise MappingError(f"no mapping file or saved mapping named {str(mapping)!r}",
                           zh=f"没有名为 {str(mapping)!r} 的映射文件或已保存的映射")
    return Mapping.from_yaml(text, f"saved mapping {mapping!r}")


def save_mapping(ws: Workspace, name: str, table: str, mapping: Mapping) -> None:
    with ws.control.write() as conn:
        mapping_store.save(conn, name, table,
                           mapping.model_copy(update={"table": table}).to_yaml())


def saved_mappings(ws: Workspace) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return mapping_store.listing(conn)
