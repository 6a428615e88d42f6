"""One raw batch of source text → one canonical Arrow table plus the rows it rejects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.definitions.schemas import TableSchema
from tierwise.errors import Said
from tierwise.ingest.arrow_values import false_where_null, int64s, text_scalar
from tierwise.ingest.cleaning import Change, Cleaner
from tierwise.ingest.mapping import Resolved
from tierwise.ingest.parsers import ColumnFormat, convert, normalize_text
from tierwise.ingest.readers import RawBatch


@dataclass(frozen=True)
class Reject:
    row: int
    column: str  # the source's column name (or the canonical one for constants)
    value: str | None
    reason: str


@dataclass
class ConvertedBatch:
    table: pa.Table  # canonical columns + _row
    rejects: list[Reject]
    bad_rows: int  # rows with at least one problem
    changes: list[Change] = field(default_factory=list)  # what cleaning changed or flagged


def clean_batch(batch: ConvertedBatch, cleaners: dict[str, Cleaner]) -> ConvertedBatch:
    """Apply per-column cleaners (once per distinct value) and record every change."""
    table = batch.table
    ids = table.column("customer_id").to_pylist()
    rows = table.column("_row").to_pylist()
    for column, cleaner in cleaners.items():
        values = table.column(column).to_pylist()
        outcome: dict[str, tuple[str, str | None]] = {}
        cleaned: list[str | None] = []
        for i, value in enumerate(values):
            if value is None:
                cleaned.append(None)
                continue
            if value not in outcome:
                outcome[value] = cleaner(value)
            after, rule = outcome[value]
            cleaned.append(after)
            if rule is not None and ids[i] is not None:
                batch.changes.append(Change(rows[i], ids[i], column, value, after, rule))
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array(cleaned, pa.string()))
    batch.table = table
    return batch


def _extras_json(raw: pa.Table, names: list[str], base: str | None) -> pa.Array:
    """Fold unmapped source columns into a JSON object (merged into ``base``'s, if mapped).

    A ``base`` cell that is not a JSON object is passed on unchanged so that the JSON
    parser rejects it with the usual message.
    """
    columns = [normalize_text(raw.column(n)).to_pylist() for n in names]
    bases = (normalize_text(raw.column(base)).to_pylist() if base
             else [None] * raw.num_rows)
    out: list[str | None] = []
    for own, *values in zip(bases, *columns, strict=True):
        obj = {n: v for n, v in zip(names, values, strict=True) if v is not None}
        if own is not None:
            try:
                parsed = json.loads(own)
            except json.JSONDecodeError:
                out.append(own)
                continue
            if not isinstance(parsed, dict):
                out.append(own)
                continue
            obj = {**obj, **parsed}
        out.append(json.dumps(obj, ensure_ascii=False, sort_keys=True,
                              separators=(",", ":")) if obj else None)
    return pa.array(out, pa.string())


def _typed(values: pa.Array, kind: str, zone: str) -> pa.Array | None:
    """Values that already have the column's type (Parquet, databases, the demo) pass as is."""
    t = values.type
    if kind == "timestamp" and pa.types.is_timestamp(t):
        if t.tz is None:
            values = pc.assume_timezone(values.cast(pa.timestamp("us")), zone,
                                        ambiguous="earliest", nonexistent="earliest")
        return values.cast(pa.timestamp("us", tz="UTC"))
    if kind == "date" and pa.types.is_date(t):
        return values.cast(pa.date32())
    if kind == "float" and pa.types.is_integer(t):
        return values.cast(pa.float64())
    if kind == "float" and pa.types.is_floating(t):
        if pc.all(pc.is_finite(values)).as_py() is False:
            return None  # NaN or infinity: let the text parser reject the cells
        return values.cast(pa.float64())
    if kind == "int" and pa.types.is_integer(t):
        return values.cast(pa.int64())
    return None


def convert_batch(raw: RawBatch, resolved: Resolved, zone: str,
                  max_rejects: int = 10_000) -> ConvertedBatch:
    """Convert every canonical column of one batch; collect per-cell problems."""
    schema: TableSchema = resolved.schema
    n = raw.table.num_rows
    arrays: dict[str, pa.Array] = {}
    rejects: list[Reject] = []
    bad = np.zeros(n, dtype=bool)
    for col in schema.columns:
        fmt = resolved.formats.get(col.name, ColumnFormat())
        source = resolved.sources.get(col.name)
        if col.name == schema.extras_column and resolved.extras:
            text = _extras_json(raw.table, resolved.extras, source)
            label = source or col.name
        elif source is not None:
            native = raw.table.column(source).combine_chunks()
            typed = _typed(native, col.kind, fmt.timezone or zone)
            text = normalize_text(native) if typed is None else None
            label = source
        elif col.name in resolved.constants:
            text = pa.array([resolved.constants[col.name]] * n, pa.string())
            label = col.name
        else:  # a column the file does not have: empty, nothing to convert
            text, typed = None, pa.nulls(n, col.arrow_type)
            label = col.name
        if text is None:  # already typed: only emptiness can be wrong
            assert typed is not None
            values, problems = typed, []
        else:
            converted = convert(text, col, fmt, zone)
            values, problems = converted.values, list(converted.problems)
        if col.default is not None:
            values = pc.fill_null(values, text_scalar(col.default, col.arrow_type)
                                  if isinstance(col.default, str) else col.default)
        if col.required:
            present = text if text is not None else values
            if present.null_count:
                problems.append((pc.is_null(present),
                                 Said("required value is empty", "必填值为空")))
        for mask, reason in problems:
            mask_np = np.asarray(false_where_null(mask).to_numpy(zero_copy_only=False),
                                 dtype=bool)
            if not mask_np.any():
                continue
            bad |= mask_np
            if len(rejects) < max_rejects:
                for i in np.flatnonzero(mask_np)[: max_rejects - len(rejects)]:
                    shown = text[int(i)].as_py() if text is not None else None
                    rejects.append(Reject(int(raw.rows[i]), label, shown, reason))
        arrays[col.name] = values.cast(col.arrow_type)
    arrays["_row"] = int64s(raw.rows)
    return ConvertedBatch(pa.table(arrays), rejects, int(bad.sum()))
