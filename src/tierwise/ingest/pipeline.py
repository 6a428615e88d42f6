"""An import from start to finish: read → convert → stage → check → apply in one transaction.

Nothing becomes visible before the final control-store transaction commits; any problem
before it discards the staging file and leaves the workspace exactly as it was.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tierwise.definitions.personal_data import PII_COLUMNS, PersonalData, mask, mask_value
from tierwise.definitions.schemas import (
    OPPORTUNITIES,
    OPPORTUNITY_STAGES,
    TableSchema,
    table_schema,
)
from tierwise.engines.base import TableScan
from tierwise.engines.duckdb import ident
from tierwise.errors import ImportRejected, Said, SourceError, say, speaking
from tierwise.ingest import checks, opportunities
from tierwise.ingest.cleaning import Change, Cleaner, cleaners
from tierwise.ingest.convert import ConvertedBatch, Reject, clean_batch, convert_batch
from tierwise.ingest.mapping import Mapping, Resolved, resolve
from tierwise.ingest.readers import RawBatch, RetryRead, Source
from tierwise.ingest.report import MAX_VALUE_CHARS, write_reject_report
from tierwise.ingest.results import ImportResult
from tierwise.store import changes as announce
from tierwise.store import cleaning_log, import_log
from tierwise.store import customers as customer_store
from tierwise.store.control import utcnow
from tierwise.store.facts import StagedFile, StagingWriter, file_schema, key_columns
from tierwise.store.key_index import KeyIndex

if TYPE_CHECKING:
    from tierwise.workspace import Workspace

Progress = Callable[[int], None]
MAX_REJECTS_KEPT = 10_000


@dataclass
class ImportOptions:
    mapping: Mapping = field(default_factory=Mapping)
    unknown_customers: str = "reject"
    dry_run: bool = False
    report_path: Path | None = None
    progress: Progress | None = None
    #: Hashes of the table's stored keys (``store.key_index``): lets a small import skip
    #: the comparison with the stored rows when none of its keys can be among them.
    key_index: KeyIndex | None = None


class _Rejects:
    def __init__(self) -> None:
        self.kept: list[Reject] = []
        self.rows = 0

    def add(self, rejects: list[Reject], bad_rows: int) -> None:
        self.rows += bad_rows
        room = MAX_REJECTS_KEPT - len(self.kept)
        self.kept.extend(rejects[:room])

    def report_order(self) -> list[Reject]:
        return sorted(self.kept, key=lambda r: r.row)


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
    source.prefer_types(_type_hints(resolved))

    ahead = checks.KnownAhead(ws) if schema.customer_refs else None
    changes: list[Change] = []
    for _attempt in range(2):
        writer = StagingWriter(ws.facts.staging_dir, schema)
        changes.clear()
        try:
            staged, rejects = _stage(ws, schema, source, resolved, writer, options.progress,
                                     changes, ahead)
            break
        except RetryRead:
            writer.discard()
        except BaseException:
            writer.discard()
            raise
    else:  # pragma: no cover - RetryRead is raised at most once by a source
        raise SourceError(Said(f"{source.info.path}: could not read the file consistently",
                               f"{source.info.path}：两次读取文件的结果不一致"))

    settled = opportunities.Settled()
    try:
        if staged.rows == 0:
            raise SourceError(Said(f"{source.info.path}: the file has a header but no data rows",
                                   f"{source.info.path}：文件只有表头，没有数据行"))
        result = ImportResult(
            table=table, source=source.info.path, format=source.info.format,
            encoding=source.info.encoding, rows_read=staged.rows, inserted=0, updated=0,
            unchanged=0, dry_run=options.dry_run, columns=dict(resolved.sources),
            extras=resolved.extras, ignored=resolved.ignored,
            sensitive=ws.personal_data.sensitive_keys(resolved.extras),
        )
        written = (list(resolved.sources) + list(resolved.constants)
                   + ([schema.extras_column] if resolved.extras and schema.extras_column
                      else []))
        with ws.engine.for_staging().session() as session:
            session.register_scan("staged", _staged_scan(staged, schema))
            duplicates = checks.duplicate_keys(session, schema, staged, result, ws.facts)
            unknown, missing = checks.unknown_customers(ws, session, schema, resolved, policy,
                                                        ahead)
            rejects.add(duplicates + missing, len(duplicates) + len(missing))
            if schema.name == "customers":
                links = checks.account_links(ws, session, staged, resolved, written)
                rejects.add(links, len(links))
            if schema is OPPORTUNITY_STAGES:
                stages = opportunities.name_history(
                    ws, staged, resolved,
                    lambda rows: _content_keys(session, rows, OPPORTUNITY_STAGES))
                rejects.add(stages, len({r.row for r in stages}))
            if schema is OPPORTUNITIES:
                stages, settled = opportunities.settle(
                    ws, session, staged, resolved, started,
                    lambda rows: _content_keys(session, rows, OPPORTUNITY_STAGES))
                rejects.add(stages, len(stages))
            if rejects.kept:
                _reject(source, rejects, options.report_path,
                        _concealer(resolved, ws.personal_data))
            if schema.home == "facts":
                snapshot = checks.classify_facts(ws, session, schema, staged, result,
                                                 options.key_index)
            else:
                snapshot = 0
                checks.classify_customers(ws, session, staged, result, written, ws.facts)
        result.stubs_created = len(unknown)
        if changes:
            kept = set(pq.read_table(staged.path, columns=["customer_id"])["customer_id"]
                       .to_pylist()) if staged.rows else set()
            changes = [c for c in changes if c.customer_id in kept]
            result.cleaned = dict(Counter(c.rule for c in changes))
        if not options.dry_run:
            _apply(ws, schema, staged, result, unknown, snapshot, mapping, started, written,
                   changes, settled)
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        staged.path.unlink(missing_ok=True)
        settled.discard()


def check_rows(ws: Workspace, table: str, source: Source,
               report_path: Path | None = None) -> int:
    """Check rows the way an import does — every cell converts, required values are there —
    without writing or comparing anything; returns the row count or raises
    ``ImportRejected`` naming each bad row, column and value (real-time intake checks every
    request this way, in a few milliseconds)."""
    resolved = resolve(Mapping(), table, source.info.header, source.info.path)
    source.prefer_types(_type_hints(resolved))
    rejects = _Rejects()
    rows = 0
    for raw in source.batches():
        batch = convert_batch(raw, resolved, ws.config.timezone)
        rejects.add(batch.rejects, batch.bad_rows)
        if resolved.schema is OPPORTUNITIES:
            stages = opportunities.named_stages(ws, batch.table, resolved)[1]
            rejects.add(stages, len(stages))
        rows += batch.table.num_rows
    if rows == 0:
        raise SourceError(Said(f"{source.info.path}: no rows", f"{source.info.path}：没有数据行"))
    if rejects.kept:
        _reject(source, rejects, report_path, _concealer(resolved, ws.personal_data))
    return rows


def _type_hints(resolved: Resolved) -> dict[str, pa.DataType]:
    """Source columns a reader may convert itself: plain numbers and timestamps."""
    hints: dict[str, pa.DataType] = {}
    for name, source in resolved.sources.items():
        col = resolved.schema.column(name)
        fmt = resolved.formats.get(name)
        if fmt is not None and (fmt.format or fmt.date_order):
            continue
        if col.kind == "float":
            hints[source] = pa.float64()
        elif col.kind == "timestamp":
            hints[source] = pa.timestamp("us")
    return hints


def _convert_and_clean(raw: RawBatch, resolved: Resolved, zone: str,
                       cleaners: dict[str, Cleaner] | None) -> ConvertedBatch:
    batch = convert_batch(raw, resolved, zone)
    return clean_batch(batch, cleaners) if cleaners else batch


def _stage(ws: Workspace, schema: TableSchema, source: Source, resolved: Resolved,
           writer: StagingWriter, progress: Progress | None, changes: list[Change],
           ahead: checks.KnownAhead | None = None) -> tuple[StagedFile, _Rejects]:
    """Read, convert and write the staging file, overlapping the three on threads.

    Arrow's kernels and the Parquet writer release the GIL, so reading batch n+1,
    converting batch n and writing batch n-1 run at the same time; batches stay in order.
    Rows with bad cells are written too (the bad cells empty) so that the checks after
    staging still see every key and customer reference; the import is rejected anyway.
    A first batch that names more customers than a small lookup serves starts reading the
    known ids (``ahead``).
    """
    rejects = _Rejects()
    zone = ws.config.timezone
    cleaning = ({c: f for c, f in cleaners(ws.config.phone_region).items()
                 if c in resolved.sources or c in resolved.constants}
                if schema.name == "customers" else None)
    pending: deque[Future[ConvertedBatch]] = deque()
    writing: Future[None] | None = None
    with ws.engine.for_staging().session() as session, ThreadPoolExecutor(2) as convert_pool, \
            ThreadPoolExecutor(1) as write_pool:

        def take(batch: ConvertedBatch) -> None:
            nonlocal writing, ahead
            rejects.add(batch.rejects, batch.bad_rows)
            changes.extend(batch.changes)
            table = batch.table
            if ahead is not None:  # the first batch tells (a count of each batch would
                # cost a hash of every row of a file with few customers)
                if any(pc.count_distinct(table[ref]).as_py() > checks.SMALL_LOOKUP
                       for ref in schema.customer_refs):
                    ahead.start()
                ahead = None
            if not schema.key:
                table = table.append_column("_key", _content_keys(session, table, schema))
            if writing is not None:
                writing.result()
            writing = write_pool.submit(writer.write, table)
            if progress:
                progress(table.num_rows)

        for raw in source.batches():
            pending.append(convert_pool.submit(_convert_and_clean, raw, resolved, zone,
                                               cleaning))
            while len(pending) > 2:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
        if writing is not None:
            writing.result()
    return writer.close(), rejects


def _content_keys(session, table: pa.Table, schema: TableSchema) -> pa.Array:
    """A stable identity for rows of tables without a key: their id column or their content."""
    session.register_arrow("batch", table.drop_columns(["_row"]))
    parts = ", ".join(f"coalesce(CAST({ident(name)} AS VARCHAR), '∅')"
                      for name in schema.identity or schema.names)
    natural = ident(schema.columns[0].name) if schema.columns[0].name == "event_id" else "NULL"
    return session.query(
        f"SELECT coalesce({natural}, md5(concat_ws(chr(31), {parts}))) AS k FROM batch"
    ).column(0).combine_chunks()


def _staged_scan(staged: StagedFile, schema: TableSchema) -> TableScan:
    from tierwise.engines.base import ScanFile

    return TableScan(schema.name, (ScanFile(str(staged.path), 0),), key_columns(schema), False,
                     file_schema(schema))


def _concealer(resolved: Resolved, personal: PersonalData) -> Callable[[Reject], Reject]:
    """How a rejected value is written to reports and errors: values of personal data (PII
    columns, sensitive keys of the extras) masked; the file and row locate the original."""
    canonical = {source: column for column, source in resolved.sources.items()}
    extras = resolved.schema.extras_column

    def masked(label: str, value: str) -> str | None:
        """The value as reports show it, or None when it is not personal data."""
        column = canonical.get(label, label)
        if column in PII_COLUMNS and resolved.schema.name == "customers":
            return mask(column, value)
        if column == extras:
            return str(personal.mask_json(value))
        if label in resolved.extras and personal.is_sensitive_key(label):
            return str(mask_value(value))
        return None

    def conceal(reject: Reject) -> Reject:
        shown = None if reject.value is None else masked(reject.column, reject.value)
        if shown is None:
            return reject
        if len(reject.value or "") > MAX_VALUE_CHARS:  # the length stays a clue
            shown = f"{shown[:MAX_VALUE_CHARS]}… ({len(reject.value or ''):,} characters)"
        return replace(reject, value=shown)

    return conceal


def _reject(source: Source, rejects: _Rejects, report_path: Path | None,
            conceal: Callable[[Reject], Reject]) -> None:
    path = report_path or Path.cwd() / f"{Path(source.info.path).stem}.rejected.csv"
    ordered = [conceal(r) for r in rejects.report_order()]
    write_reject_report(path, source.info.path,
                        ((r.row, r.column, r.value, r.reason) for r in ordered))
    first = ordered[0]
    shown = first.value if first.value is None or len(first.value) <= 60 else (
        first.value[:60] + "…")
    with speaking("en"):
        en = (f"{source.info.path}: {rejects.rows:,} row(s) rejected, nothing imported; "
              f"first: row {first.row}, column {first.column!r}, value {shown!r}: "
              f"{first.reason}. Report: {path}")
    with speaking("zh-CN"):
        zh = (f"{source.info.path}：{rejects.rows:,} 行被拒绝，未导入任何数据；第一处：第 "
              f"{first.row} 行，列 {first.column!r}，值 {shown!r}：{first.reason}。"
              f"报告：{path}")
    error = ImportRejected(
        say(en, zh),
        # the reasons as text in the language being spoken (the API's JSON shows them)
        [{**asdict(r), "reason": str(r.reason)} for r in ordered[:100]], rejects.rows,
        str(path))
    error.en, error.zh = en, zh
    raise error


def _apply(ws: Workspace, schema: TableSchema, staged: StagedFile, result: ImportResult,
           new_ids: list[str], snapshot: int, mapping: Mapping, started, columns: list[str],
           changes: list[Change] | None = None,
           settled: opportunities.Settled | None = None) -> None:
    published: list[str] = []
    try:
        with ws.control.write() as conn:
            import_id = import_log.record(
                conn, table_name=schema.name, source=result.source,
                source_format=result.format, encoding=result.encoding,
                mapping=json.dumps(mapping.model_dump(exclude_none=True), ensure_ascii=False),
                rows_read=result.rows_read, inserted=result.inserted, updated=result.updated,
                stubs_created=len(new_ids), started_at=started, finished_at=utcnow())
            result.import_id = import_id
            if new_ids:
                result.stubs_created = customer_store.create_stubs(conn, new_ids, import_id)
            if schema.home == "control":
                if staged.rows:
                    table = pq.read_table(staged.path)
                    customer_store.upsert(conn, table, sorted(set(columns)), import_id)
                if changes:
                    cleaning_log.record(conn, import_id, changes)
                return
            if staged.rows == 0:
                return
            ws.control.lock(conn, f"facts:{schema.name}")
            # Another import of this table committed after our comparison: readers must
            # deduplicate, since its keys were not compared with ours. (A merge of stored
            # files meanwhile — the real-time worker's, on a thread of its own — brings no
            # new key: marking the file overlapping then would make every later reader
            # deduplicate the whole table for nothing.)
            raced = ws.facts.imported_since(conn, schema.name, snapshot)
            published.append(ws.facts.publish(conn, staged, import_id=import_id,
                                              overlaps=result.updated > 0 or raced))
            if settled is not None and settled.history is not None:
                # the moves this import makes, published and announced with it
                ws.control.lock(conn, f"facts:{OPPORTUNITY_STAGES.name}")
                published.append(ws.facts.publish(conn, settled.history, import_id=import_id,
                                                  overlaps=True))
                for reason, moves in settled.moves.items():
                    announce.stage_changed(conn, moves, reason, started)
    except BaseException:
        for path in published:
            ws.facts.unpublish(path)
        raise


__all__ = ["ImportOptions", "ImportResult", "run_import"]
