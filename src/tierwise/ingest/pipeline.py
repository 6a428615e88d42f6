"""An import from start to finish: read → convert → stage → check → apply in one transaction.

Nothing becomes visible before the final control-store transaction commits; any problem
before it discards the staging file and leaves the workspace exactly as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tierwise.definitions.schemas import TableSchema, table_schema
from tierwise.engines.base import TableScan, sql_literal
from tierwise.engines.duckdb import ident
from tierwise.errors import ImportRejected, SourceError
from tierwise.ingest.convert import Reject, convert_batch
from tierwise.ingest.mapping import Mapping, resolve
from tierwise.ingest.readers import RetryRead, Source
from tierwise.ingest.report import write_reject_report
from tierwise.store import customers as customer_store
from tierwise.store.control import utcnow
from tierwise.store.facts import StagedFile, StagingWriter, file_schema, key_columns
from tierwise.store.tables import imports

if TYPE_CHECKING:
    from tierwise.workspace import Workspace

Progress = Callable[[int], None]
MAX_REJECTS_KEPT = 10_000


@dataclass
class ImportResult:
    """What an import did (or, with ``dry_run``, would do)."""

    table: str
    source: str
    format: str
    encoding: str | None
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    stubs_created: int = 0
    duplicates_collapsed: int = 0
    dry_run: bool = False
    import_id: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        parts = [f"{self.inserted:,} new", f"{self.updated:,} updated",
                 f"{self.unchanged:,} unchanged"]
        if self.stubs_created:
            parts.append(f"{self.stubs_created:,} stub customers "
                         f"{'to create' if self.dry_run else 'created'}")
        if self.duplicates_collapsed:
            parts.append(f"{self.duplicates_collapsed:,} identical rows collapsed")
        return (f"{self.table}: {verb} {self.rows_read:,} rows from {self.source} "
                f"({', '.join(parts)}) in {self.seconds:.1f}s")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ImportOptions:
    mapping: Mapping = field(default_factory=Mapping)
    unknown_customers: str = "reject"
    dry_run: bool = False
    report_path: Path | None = None
    progress: Progress | None = None


class _Rejects:
    def __init__(self) -> None:
        self.kept: list[Reject] = []
        self.rows = 0

    def add(self, rejects: list[Reject], bad_rows: int) -> None:
        self.rows += bad_rows
        room = MAX_REJECTS_KEPT - len(self.kept)
        self.kept.extend(rejects[:room])


def run_import(ws: Workspace, table: str, source: Source, options: ImportOptions) -> ImportResult:
    """Import one source into ``table``; all or nothing."""
    started = utcnow()
    t0 = time.perf_counter()
    schema = table_schema(table)
    mapping = options.mapping
    policy = mapping.unknown_customers or options.unknown_customers
    if policy not in ("reject", "create"):
        raise ValueError(f"unknown-customers policy {policy!r}; expected 'reject' or 'create'")
    resolved = resolve(mapping, table, source.info.header, source.info.path)

    for _attempt in range(2):
        writer = StagingWriter(ws.facts.staging_dir, schema)
        try:
            staged, rejects, unknown = _stage(ws, schema, source, resolved, policy, writer,
                                              options.progress)
            break
        except RetryRead:
            writer.discard()
        except BaseException:
            writer.discard()
            raise
    else:  # pragma: no cover - RetryRead is raised at most once by a source
        raise SourceError(f"{source.info.path}: could not read the file consistently")

    try:
        if rejects.kept:
            _reject(source, rejects, options.report_path)
        if staged.rows == 0:
            raise SourceError(f"{source.info.path}: the file has a header but no data rows")
        result = ImportResult(
            table=table, source=source.info.path, format=source.info.format,
            encoding=source.info.encoding, rows_read=staged.rows, inserted=0, updated=0,
            unchanged=0, dry_run=options.dry_run, columns=dict(resolved.sources),
            extras=resolved.extras, ignored=resolved.ignored,
        )
        with ws.engine.session() as session:
            session.register_scan("staged", _staged_scan(staged, schema))
            _check_duplicates(session, schema, source, options.report_path, result, staged,
                              ws)
            if schema.home == "facts":
                snapshot = _classify_facts(ws, session, schema, staged, result)
            else:
                snapshot = 0
                _classify_customers(ws, session, staged, result, list(resolved.sources)
                                    + ([schema.extras_column] if resolved.extras else [])
                                    + list(resolved.constants))
        new_ids = sorted(unknown)
        result.stubs_created = len(new_ids)
        if options.dry_run:
            result.seconds = time.perf_counter() - t0
            return result
        _apply(ws, schema, staged, result, new_ids, snapshot, mapping, started,
               list(resolved.sources) + list(resolved.constants)
               + ([schema.extras_column] if resolved.extras and schema.extras_column else []))
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        staged.path.unlink(missing_ok=True)


def _stage(ws: Workspace, schema: TableSchema, source: Source, resolved, policy: str,
           writer: StagingWriter, progress: Progress | None
           ) -> tuple[StagedFile, _Rejects, set[str]]:
    rejects = _Rejects()
    unknown: set[str] = set()
    known = None
    if schema.customer_refs:
        with ws.control.read() as conn:
            known = customer_store.known_ids(conn)
    zone = ws.config.timezone
    with ws.engine.session() as session:
        for raw in source.batches():
            batch = convert_batch(raw, resolved, zone)
            rejects.add(batch.rejects, batch.bad_rows)
            table = batch.table
            if known is not None:
                for ref in schema.customer_refs:
                    ids = table.column(ref)
                    missing = pc.and_(pc.is_valid(ids), pc.invert(pc.is_in(ids, known)))
                    if not pc.any(missing).as_py():
                        continue
                    if policy == "create":
                        unknown.update(pc.unique(pc.filter(ids, missing)).to_pylist())
                        continue
                    source_col = resolved.sources.get(ref, ref)
                    found = pc.indices_nonzero(missing).to_pylist()
                    rejects.add([Reject(int(raw.rows[i]), source_col, ids[i].as_py(),
                                        "unknown customer: import customers first, or use "
                                        "--unknown-customers create")
                                 for i in found[:MAX_REJECTS_KEPT]], len(found))
            if not rejects.kept:
                if not schema.key:
                    table = table.append_column("_key", _content_keys(session, table, schema))
                writer.write(table)
            if progress:
                progress(raw.table.num_rows)
    return writer.close(), rejects, unknown


def _content_keys(session, table: pa.Table, schema: TableSchema) -> pa.Array:
    """A stable identity for rows of tables without a key: their id column or their content."""
    session.register_arrow("batch", table.drop_columns(["_row"]))
    parts = ", ".join(f"coalesce(CAST({ident(c.name)} AS VARCHAR), '∅')"
                      for c in schema.columns)
    natural = ident(schema.columns[0].name) if schema.columns[0].name == "event_id" else "NULL"
    return session.query(
        f"SELECT coalesce({natural}, md5(concat_ws(chr(31), {parts}))) AS k FROM batch"
    ).column(0).combine_chunks()


def _staged_scan(staged: StagedFile, schema: TableSchema) -> TableScan:
    from tierwise.engines.base import ScanFile

    return TableScan(schema.name, (ScanFile(str(staged.path), 0),), key_columns(schema), False,
                     file_schema(schema))


def _reject(source: Source, rejects: _Rejects, report_path: Path | None) -> None:
    path = report_path or Path.cwd() / f"{Path(source.info.path).stem}.rejected.csv"
    write_reject_report(path, source.info.path,
                        ((r.row, r.column, r.value, r.reason) for r in rejects.kept))
    first = rejects.kept[0]
    shown = first.value if first.value is None or len(first.value) <= 60 else (
        first.value[:60] + "…")
    raise ImportRejected(
        f"{source.info.path}: {rejects.rows:,} row(s) rejected, nothing imported; first: "
        f"row {first.row}, column {first.column!r}, value {shown!r}: {first.reason}. "
        f"Report: {path}",
        [asdict(r) for r in rejects.kept[:100]], rejects.rows, str(path),
    )


def _check_duplicates(session, schema: TableSchema, source: Source, report_path: Path | None,
                      result: ImportResult, staged: StagedFile, ws: Workspace) -> None:
    key = ", ".join(ident(k) for k in key_columns(schema))
    if not schema.key:
        total = session.scalar("SELECT count(*) FROM staged")
        distinct = session.scalar(f"SELECT count(DISTINCT {key}) FROM staged")
        if total != distinct:
            # Identical rows (or repeated event ids) in one file: keep the last occurrence.
            tmp = ws.facts.staging_path()
            session.copy_to_parquet(
                f"SELECT * FROM staged QUALIFY row_number() OVER (PARTITION BY {key} "
                "ORDER BY _row DESC) = 1 ORDER BY _row", str(tmp))
            tmp.replace(staged.path)
            result.duplicates_collapsed = int(total - distinct)
            staged.rows = int(distinct)
        return
    dupes = session.query(
        f"SELECT {key}, list(_row ORDER BY _row) AS rows FROM staged GROUP BY {key} "
        f"HAVING count(*) > 1 ORDER BY min(_row) LIMIT {MAX_REJECTS_KEPT}"
    ).to_pylist()
    if not dupes:
        return
    count = session.scalar(f"SELECT count(*) FROM (SELECT {key} FROM staged GROUP BY {key} "
                           "HAVING count(*) > 1)")
    rejects = _Rejects()
    column = schema.key[0]
    for d in dupes:
        rows = d["rows"]
        for r in rows[1:]:
            rejects.add([Reject(r, column, str(d[column]),
                                f"duplicate key: row {rows[0]} has the same {column}")], 1)
    rejects.rows = int(session.scalar(
        f"SELECT sum(c - 1) FROM (SELECT count(*) c FROM staged GROUP BY {key} "
        "HAVING count(*) > 1)") or count)
    _reject(source, rejects, report_path)


def _changed_predicate(columns: list[str]) -> str:
    return " OR ".join(f"s.{ident(c)} IS DISTINCT FROM l.{ident(c)}" for c in columns)


def _classify_facts(ws: Workspace, session, schema: TableSchema, staged: StagedFile,
                    result: ImportResult) -> int:
    """Count new / changed / unchanged rows; drop unchanged ones from the staging file."""
    with ws.control.read() as conn:
        live = ws.facts.scan(schema.name, conn)
        snapshot = ws.facts.max_file_id(conn, schema.name)
    if not live.files:
        result.inserted = staged.rows
        return snapshot
    full = TableScan(live.table, live.files, live.key, live.dedupe, file_schema(schema))
    session.register_scan("live", full)
    keys = key_columns(schema)
    join = " AND ".join(f"s.{ident(k)} = l.{ident(k)}" for k in keys)
    compare = [c.name for c in schema.columns]
    counts = session.query(
        f"SELECT count(*) FILTER (WHERE l.{ident(keys[0])} IS NULL) AS inserted, "
        f"count(*) FILTER (WHERE l.{ident(keys[0])} IS NOT NULL AND "
        f"({_changed_predicate(compare)})) AS updated, count(*) AS total "
        f"FROM staged s LEFT JOIN live l ON {join}"
    ).to_pylist()[0]
    result.inserted = int(counts["inserted"])
    result.updated = int(counts["updated"])
    result.unchanged = int(counts["total"]) - result.inserted - result.updated
    if result.unchanged:
        tmp = ws.facts.staging_path()
        session.copy_to_parquet(
            f"SELECT s.* FROM staged s LEFT JOIN live l ON {join} WHERE l.{ident(keys[0])} "
            f"IS NULL OR ({_changed_predicate(compare)}) ORDER BY s._row", str(tmp))
        tmp.replace(staged.path)
        staged.rows = result.inserted + result.updated
    return snapshot


def _classify_customers(ws: Workspace, session, staged: StagedFile, result: ImportResult,
                        columns: list[str]) -> None:
    with ws.control.read() as conn:
        existing = customer_store.as_arrow(conn, columns=sorted(set(columns)))
    session.register_arrow("live", existing)
    compare = [c for c in sorted(set(columns)) if c != "customer_id"]
    predicate = _changed_predicate(compare) if compare else "false"
    counts = session.query(
        "SELECT count(*) FILTER (WHERE l.customer_id IS NULL) AS inserted, "
        f"count(*) FILTER (WHERE l.customer_id IS NOT NULL AND ({predicate})) AS updated, "
        "count(*) AS total FROM staged s LEFT JOIN live l USING (customer_id)"
    ).to_pylist()[0]
    result.inserted = int(counts["inserted"])
    result.updated = int(counts["updated"])
    result.unchanged = int(counts["total"]) - result.inserted - result.updated
    if result.unchanged:
        tmp = ws.facts.staging_path()
        session.copy_to_parquet(
            "SELECT s.* FROM staged s LEFT JOIN live l USING (customer_id) WHERE "
            f"l.customer_id IS NULL OR ({predicate}) ORDER BY s._row", str(tmp))
        tmp.replace(staged.path)
        staged.rows = result.inserted + result.updated


def _apply(ws: Workspace, schema: TableSchema, staged: StagedFile, result: ImportResult,
           new_ids: list[str], snapshot: int, mapping: Mapping, started, columns: list[str]
           ) -> None:
    published: str | None = None
    try:
        with ws.control.write() as conn:
            import_id = conn.execute(imports.insert().values(
                table_name=schema.name, source=result.source, source_format=result.format,
                encoding=result.encoding, mapping=json.dumps(mapping.model_dump(
                    exclude_none=True), ensure_ascii=False),
                rows_read=result.rows_read, inserted=result.inserted, updated=result.updated,
                stubs_created=len(new_ids), started_at=started, finished_at=utcnow(),
            )).inserted_primary_key[0]
            result.import_id = int(import_id)
            if new_ids:
                result.stubs_created = customer_store.create_stubs(conn, new_ids, import_id)
            if schema.home == "control":
                if staged.rows:
                    table = pq.read_table(staged.path)
                    customer_store.upsert(conn, table, sorted(set(columns)), import_id)
                return
            if staged.rows == 0:
                return
            ws.control.lock(conn, f"facts:{schema.name}")
            # Another import of this table committed after our comparison: readers must
            # deduplicate, since its keys were not compared with ours.
            raced = ws.facts.max_file_id(conn, schema.name) > snapshot
            published = ws.facts.publish(conn, staged, import_id=import_id,
                                         overlaps=result.updated > 0 or raced)
    except BaseException:
        if published:
            ws.facts.unpublish(published)
        raise


__all__ = ["ImportOptions", "ImportResult", "run_import", "sql_literal"]
