"""Vectorised value parsers: text cells in, typed Arrow arrays and per-row problems out.

Every parser takes a string array (already trimmed, empty cells as null) and returns the
typed array plus a list of problems, each a boolean mask of bad rows and the reason. A fast
path tries Arrow's own cast first; the slower regex path runs only when that fails, so clean
files pay for nothing they do not need.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.definitions.schemas import Column
from tierwise.errors import Said
from tierwise.ingest.arrow_values import booleans, false_where_null, falses

Problem = tuple[pa.Array, str]  # (boolean mask of bad rows, reason: Said words)

DATE_ORDERS = ("YMD", "DMY", "MDY")


@dataclass(frozen=True)
class ColumnFormat:
    """How to read one column, from a mapping. All fields optional."""

    #: strptime format such as ``%d/%m/%Y %H:%M``; overrides the automatic date parser.
    format: str | None = None
    #: Order of day and month in dates like ``12/03/2025``.
    date_order: str | None = None
    #: Multiply numbers by this (0.01 for amounts in fen / cents).
    scale: float | None = None
    #: Time zone of timestamps that carry none (default: the workspace's).
    timezone: str | None = None


@dataclass
class Converted:
    values: pa.Array
    problems: list[Problem] = field(default_factory=list)

    def add(self, mask: pa.Array, reason: str) -> None:
        mask = false_where_null(mask)
        if pc.any(mask).as_py():
            self.problems.append((mask, reason))


#: Characters trimmed from every cell, and the bytes their UTF-8 forms start and end with.
_TRIMMED = " \t\r\n\u3000\ufeff\xa0"
_FIRST_BYTES = np.zeros(256, dtype=bool)
_LAST_BYTES = np.zeros(256, dtype=bool)
for _char in _TRIMMED:
    _encoded = _char.encode()
    _FIRST_BYTES[_encoded[0]] = _LAST_BYTES[_encoded[-1]] = True


def byte_lengths(values: pa.Array) -> np.ndarray:
    """Each cell's length in bytes (0 for nulls), read from the string array's offsets."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    offsets = _offsets(values)
    return np.diff(offsets)


def _offsets(values: pa.Array) -> np.ndarray:
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    buffer = values.buffers()[1]
    if buffer is None:
        return np.zeros(len(values) + 1, dtype=width)
    return np.frombuffer(buffer, dtype=width)[values.offset: values.offset + len(values) + 1]


def _may_need_trim(values: pa.Array) -> bool:
    """Whether some cell starts or ends with a byte that one of the trimmed characters
    starts or ends with: a vector look at each cell's first and last byte, so clean
    columns skip Arrow's trim (which copies every cell)."""
    offsets = _offsets(values)
    data = values.buffers()[2]
    if data is None or len(offsets) < 2:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    if len(raw) == 0:
        return False
    # An empty cell reads a neighbour's byte: at worst a needless trim, never a missed one.
    first = raw[np.minimum(offsets[:-1], len(raw) - 1)]
    last = raw[np.maximum(offsets[1:] - 1, 0)]
    return bool(_FIRST_BYTES[first].any() or _LAST_BYTES[last].any())


def normalize_text(values: pa.Array) -> pa.Array:
    """Trim whitespace (including full-width spaces) and turn empty cells into nulls."""
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    trimmed = (pc.utf8_trim(values, characters=_TRIMMED) if _may_need_trim(values)
               else values)
    empty = byte_lengths(trimmed) == 0
    if trimmed.null_count:
        empty &= np.asarray(trimmed.is_valid())
    if not empty.any():
        return trimmed
    return pc.if_else(booleans(empty), pa.nulls(len(trimmed), trimmed.type), trimmed)


# -- text ----------------------------------------------------------------------------------
def parse_string(values: pa.Array, col: Column) -> Converted:
    out = Converted(values)
    # A cell has at most as many characters as bytes: only long cells are counted.
    if len(values) == 0 or byte_lengths(values).max() <= col.max_length:
        return out
    too_long = pc.greater(pc.utf8_length(values), col.max_length)
    if pc.any(pc.fill_null(too_long, False)).as_py():
        out.add(too_long, Said(f"text longer than {col.max_length:,} characters",
                                f"文本超过 {col.max_length:,} 个字符"))
    return out


def _map_unique(values: pa.Array, fn: Callable[[str], str | None]) -> tuple[pa.Array, pa.Array]:
    """Apply a Python function once per distinct value; return (mapped, failed mask).

    ``fn`` returns the new text or raises ValueError. Distinct values are few in practice
    (enums, tags, JSON properties), so this stays fast on millions of rows.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)  # one hash pass: the distinct values and where
    distinct = encoded.dictionary.to_pylist()
    mapped: list[str | None] = []
    failed: list[bool] = []
    for raw in distinct:
        try:
            mapped.append(fn(raw))
            failed.append(False)
        except ValueError:
            mapped.append(None)
            failed.append(True)
    clean = falses(len(values))
    if mapped == distinct:  # already canonical (the usual case for a clean column)
        return values, clean
    new = pc.take(pa.array(mapped, pa.string()), encoded.indices)
    if not any(failed):
        return new, clean
    bad = pc.take(pa.array(failed, pa.bool_()), encoded.indices)
    return new, pc.fill_null(bad, False)


def parse_enum(values: pa.Array, col: Column) -> Converted:
    choices = col.choices

    def lookup(raw: str) -> str:
        key = raw.strip().lower()
        if key in choices:
            return choices[key]
        raise ValueError(raw)

    new, bad = _map_unique(values, lookup)
    out = Converted(new)
    canonical = sorted(set(choices.values()))
    out.add(bad, Said(f"not one of {', '.join(canonical)}",
                      f"不是以下值之一：{', '.join(canonical)}"))
    return out


def _json_object(raw: str) -> str:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def parse_json(values: pa.Array, col: Column) -> Converted:
    out = parse_string(values, col)
    new, bad = _map_unique(values, _json_object)
    out.values = new
    out.add(bad, Said('not a JSON object such as {"page": "/pricing"}',
                      '不是 JSON 对象（例如 {"page": "/pricing"}）'))
    return out


def _tags(raw: str) -> str:
    text = raw.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(items, list):
            raise ValueError("not a list")
    else:
        for sep in ("，", ";", "；", "|", "、"):
            text = text.replace(sep, ",")
        items = text.split(",")
    clean = sorted({str(t).strip() for t in items if str(t).strip()})
    return json.dumps(clean, ensure_ascii=False)


def parse_tags(values: pa.Array, col: Column) -> Converted:
    out = parse_string(values, col)
    new, bad = _map_unique(values, _tags)
    out.values = new
    out.add(bad, Said('not a tag list such as "vip,高价值" or ["vip"]',
                      '不是标签列表（例如 "vip,高价值" 或 ["vip"]）'))
    return out


# -- numbers -------------------------------------------------------------------------------
_CURRENCY_PREFIX = r"^([+-]?)\s*(?:¥|￥|\$|US\$|€|£|HK\$|RMB|CNY|USD|EUR|HKD)\s*"
_CURRENCY_SUFFIX = r"\s*(?:元|圆|块|RMB|CNY|USD|EUR|HKD)$"
_NUMBER = r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?$"


def _try_cast(values: pa.Array, to: pa.DataType) -> pa.Array | None:
    try:
        return pc.cast(values, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _clean_number_text(values: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Strip currency marks, 万 and thousands separators; return (text, multiplier, ok)."""
    text = pc.replace_substring_regex(values, _CURRENCY_PREFIX, r"\1")
    text = pc.replace_substring_regex(text, _CURRENCY_SUFFIX, "")
    wan = pc.ends_with(text, "万")
    text = pc.if_else(wan, pc.utf8_slice_codeunits(text, 0, -1), text)
    text = pc.utf8_trim_whitespace(text)
    ok = pc.and_(pc.match_substring_regex(text, _NUMBER), pc.match_substring_regex(text, r"\d"))
    text = pc.replace_substring(text, ",", "")
    multiplier = pc.if_else(wan, 10_000.0, 1.0)
    return text, multiplier, ok


def parse_float(values: pa.Array, col: Column, fmt: ColumnFormat) -> Converted:
    fast = _try_cast(values, pa.float64())
    if fast is not None and pc.all(pc.fill_null(pc.is_finite(fast), True)).as_py():
        out = Converted(fast)
    else:
        text, multiplier, ok = _clean_number_text(values)
        good_text = pc.if_else(ok, text, pa.scalar(None, pa.string()))
        number = pc.multiply(pc.cast(good_text, pa.float64()), multiplier)
        out = Converted(number)
        out.add(pc.and_(pc.is_valid(values), pc.invert(ok)),
                Said("not a number (expected e.g. 1234.50, ¥1,234.50, 1234.5元 or 1.2万)",
                     "不是数字（应为例如 1234.50、¥1,234.50、1234.5元 或 1.2万）"))
    if fmt.scale is not None:
        out.values = pc.multiply(out.values, fmt.scale)
    _check_bounds(out, col)
    return out


def parse_int(values: pa.Array, col: Column, fmt: ColumnFormat) -> Converted:
    fast = _try_cast(values, pa.int64())
    if fast is not None:
        out = Converted(fast)
    else:
        as_float = parse_float(values, Column(col.name, "float"), ColumnFormat())
        numbers = as_float.values
        whole = pc.equal(pc.floor(numbers), numbers)
        # 2**63 as a double: every whole double below it in size fits 64 bits
        fits = pc.less(pc.abs(numbers), 9.223372036854775808e18)
        usable = pc.and_(whole, fits)
        out = Converted(pc.cast(pc.if_else(usable, numbers, None), pa.int64()))
        out.problems = as_float.problems
        out.add(pc.and_(pc.is_valid(numbers), pc.invert(whole)),
                Said("not a whole number", "不是整数"))
        out.add(pc.and_(pc.and_(pc.is_valid(numbers), whole), pc.invert(fits)),
                Said("too large for a whole number (at most 9,223,372,036,854,775,807)",
                     "整数太大（最大 9,223,372,036,854,775,807）"))
    _check_bounds(out, col)
    return out


def _check_bounds(out: Converted, col: Column) -> None:
    low, high = col.min_value, col.max_value
    if low is not None:
        below = pc.less(out.values, low)
        out.add(below, Said(f"less than {low:g}", f"小于 {low:g}") if high is None
                else _outside(low, high))
    if high is not None:
        out.add(pc.greater(out.values, high), _outside(low, high) if low is not None
                else Said(f"greater than {high:g}", f"大于 {high:g}"))


def _outside(low: float, high: float) -> Said:
    return Said(f"outside {low:g}..{high:g}", f"超出范围 {low:g}..{high:g}")


# -- dates and times -----------------------------------------------------------------------
_TIME = (r"(?:[T\s]+(?P<h>\d{1,2})[:时](?P<mi>\d{1,2})(?:[:分](?P<s>\d{1,2})"
         r"(?:\.(?P<f>\d{1,9}))?秒?)?)?\s*(?P<tz>Z|z|UTC|[+-]\d{2}:?\d{2})?")
_YMD = r"^(?P<y>\d{4})[-/.年](?P<a>\d{1,2})[-/.月](?P<b>\d{1,2})日?" + _TIME + "$"
_XXY = r"^(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<y>\d{4})" + _TIME + "$"
_COMPACT = r"^(?P<y>\d{4})(?P<a>\d{2})(?P<b>\d{2})" + _TIME + "$"
_SERIAL = r"^\d{1,6}(?:\.\d+)?$"
_EPOCH_S = r"^\d{10}$"
_EPOCH_MS = r"^\d{13}$"
#: Excel counts days from 1899-12-30 (its 1900 leap-year bug folded in).
_EXCEL_EPOCH_US = int((datetime(1899, 12, 30) - datetime(1970, 1, 1)).total_seconds() * 1e6)
_US_PER_DAY = 86_400_000_000

DATE_HELP = Said("expected a date such as 2025-03-12, 2025/3/12, 2025年3月12日, "
                 "2025-03-12 14:30:00+08:00, an Excel serial date, or the mapping's format",
                 "应为日期，例如 2025-03-12、2025/3/12、2025年3月12日、"
                 "2025-03-12 14:30:00+08:00、Excel 日期序号，或映射中声明的格式")


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (vectorised)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    table = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    return table[np.clip(m, 0, 12)] + ((m == 2) & leap)


def _digits(text: pa.Array, default: int) -> np.ndarray:
    """Digit strings to int64; null or empty (an unmatched optional group) gives ``default``."""
    text = pc.fill_null(text, "")
    text = pc.if_else(pc.equal(text, ""), str(default), text)
    return np.asarray(pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _field(parts: pa.StructArray, name: str, default: int) -> np.ndarray:
    return _digits(parts.field(name), default)


def _from_parts(parts: pa.StructArray, order: str, matched: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(local microseconds, offset microseconds, has-offset, invalid) from regex parts."""
    y = _field(parts, "y", 1970)
    a = _field(parts, "a", 1)
    b = _field(parts, "b", 1)
    month, day = (b, a) if order == "DMY" else (a, b)
    h = _field(parts, "h", 0)
    mi = _field(parts, "mi", 0)
    s = _field(parts, "s", 0)
    frac_text = pc.utf8_slice_codeunits(pc.fill_null(parts.field("f"), ""), 0, 6)
    frac = _digits(pc.utf8_rpad(frac_text, width=6, padding="0"), 0)
    bad = matched & ((month < 1) | (month > 12) | (day < 1) | (h > 23) | (mi > 59) | (s > 59))
    bad |= matched & (day > _days_in_month(y, month))
    days = _days_from_civil(y, np.clip(month, 1, 12), day)
    local = days * _US_PER_DAY + ((h * 60 + mi) * 60 + s) * 1_000_000 + frac
    tz = pc.fill_null(parts.field("tz"), "")
    has_offset = np.asarray(pc.not_equal(tz, "").to_numpy(zero_copy_only=False), dtype=bool)
    sign = np.where(np.asarray(pc.starts_with(tz, "-").to_numpy(zero_copy_only=False)), -1, 1)
    digits = pc.replace_substring_regex(tz, r"[^0-9]", "")
    hh = _digits(pc.utf8_slice_codeunits(digits, 0, 2), 0)
    mm = _digits(pc.utf8_slice_codeunits(digits, 2, 4), 0)
    offset = sign * (hh * 60 + mm) * 60_000_000
    return local, offset, has_offset, bad


def _localize(local_us: pa.Array, zone: str) -> pa.Array:
    """Naive local wall-clock microseconds → UTC timestamps in ``zone``."""
    naive = pc.cast(local_us, pa.timestamp("us"))
    return pc.assume_timezone(naive, zone, ambiguous="earliest", nonexistent="earliest")


def parse_timestamp(values: pa.Array, col: Column, fmt: ColumnFormat, zone: str) -> Converted:
    """Text → UTC timestamps. Naive values are wall-clock time in ``fmt.timezone or zone``."""
    zone = fmt.timezone or zone
    present = pc.is_valid(values)
    if fmt.format:
        parsed = pc.strptime(values, format=fmt.format, unit="us", error_is_null=True)
        if parsed.type.tz is None:
            parsed = pc.assume_timezone(parsed, zone, ambiguous="earliest",
                                        nonexistent="earliest")
        out = Converted(pc.cast(parsed, pa.timestamp("us", tz="UTC")))
        out.add(pc.and_(present, pc.is_null(parsed)),
                Said(f"does not match the format {fmt.format!r}",
                     f"与格式 {fmt.format!r} 不符"))
        return out

    fast = _try_cast(values, pa.timestamp("us"))
    if fast is not None:
        return Converted(pc.cast(_localize(fast, zone), pa.timestamp("us", tz="UTC")))
    # ISO 8601 with an offset or Z on every value (what APIs post): Arrow's own parser,
    # ~100 times faster than the patterns below
    aware = _try_cast(values, pa.timestamp("us", tz="UTC"))
    if aware is not None:
        return Converted(aware)

    n = len(values)
    utc_us = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    invalid = np.zeros(n, dtype=bool)
    ambiguous = np.zeros(n, dtype=bool)
    naive_local = np.zeros(n, dtype=np.int64)
    is_naive = np.zeros(n, dtype=bool)

    patterns: list[tuple[str, str]] = [(_YMD, "YMD"), (_COMPACT, "YMD")]
    patterns.append((_XXY, fmt.date_order or "?"))
    for pattern, order in patterns:
        parts = pc.extract_regex(values, pattern)
        matched = np.asarray(pc.fill_null(pc.is_valid(parts), False)
                             .to_numpy(zero_copy_only=False), dtype=bool) & ~done
        if not matched.any():
            continue
        if order == "?":
            ambiguous |= matched
            done |= matched
            continue
        local, offset, has_offset, bad = _from_parts(parts, order, matched)
        with_offset = matched & has_offset
        utc_us[with_offset] = local[with_offset] - offset[with_offset]
        without = matched & ~has_offset
        naive_local[without] = local[without]
        is_naive |= without
        invalid |= bad
        done |= matched

    text = pc.fill_null(values, "")
    serial = np.asarray(pc.match_substring_regex(text, _SERIAL).to_numpy(zero_copy_only=False),
                        dtype=bool) & ~done
    if serial.any():
        numbers = np.asarray(pc.cast(pc.if_else(pa.array(serial), text, "0"), pa.float64())
                             .to_numpy(zero_copy_only=False))
        local = _EXCEL_EPOCH_US + np.round(numbers * _US_PER_DAY).astype(np.int64)
        naive_local[serial] = local[serial]
        is_naive |= serial
        done |= serial
    for pattern, scale in ((_EPOCH_S, 1_000_000), (_EPOCH_MS, 1_000)):
        hit = np.asarray(pc.match_substring_regex(text, pattern).to_numpy(zero_copy_only=False),
                         dtype=bool) & ~done
        if hit.any():
            numbers = np.asarray(pc.cast(pc.if_else(pa.array(hit), text, "0"), pa.int64())
                                 .to_numpy(zero_copy_only=False))
            utc_us[hit] = numbers[hit] * scale
            done |= hit

    if is_naive.any():
        localized = _localize(pa.array(naive_local), zone)
        as_int = np.asarray(pc.cast(localized, pa.int64()).to_numpy(zero_copy_only=False))
        utc_us[is_naive] = as_int[is_naive]

    present_np = np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool)
    unparsed = present_np & ~done
    good = present_np & done & ~invalid & ~ambiguous
    result = pa.array(utc_us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    result = pc.if_else(pa.array(good), result, pa.scalar(None, result.type))
    out = Converted(result)
    out.add(pa.array(unparsed), DATE_HELP)
    out.add(pa.array(invalid & present_np),
            Said("not a real calendar date or time", "不是真实存在的日期或时间"))
    out.add(pa.array(ambiguous & present_np),
            Said("day and month order is ambiguous; declare date_order DMY or MDY in the "
                 "mapping (or --date-order)",
                 "日和月的先后有歧义：请在映射中声明 date_order DMY 或 MDY（或使用 "
                 "--date-order）"))
    return out


def parse_date(values: pa.Array, col: Column, fmt: ColumnFormat, zone: str) -> Converted:
    """Text → calendar dates (no time zone shift: a birthday is the same day everywhere)."""
    out = parse_timestamp(values, col, ColumnFormat(fmt.format, fmt.date_order, None, "UTC"),
                          "UTC")
    out.values = pc.cast(pc.cast(out.values, pa.timestamp("us")), pa.date32())
    return out


def convert(values: pa.Array, col: Column, fmt: ColumnFormat, zone: str) -> Converted:
    """Convert one normalised text column to the column's canonical type."""
    kind = col.kind
    if kind == "string":
        return parse_string(values, col)
    if kind == "enum":
        return parse_enum(values, col)
    if kind == "json":
        return parse_json(values, col)
    if kind == "tags":
        return parse_tags(values, col)
    if kind == "float":
        return parse_float(values, col, fmt)
    if kind == "int":
        return parse_int(values, col, fmt)
    if kind == "timestamp":
        return parse_timestamp(values, col, fmt, zone)
    if kind == "date":
        return parse_date(values, col, fmt, zone)
    raise AssertionError(f"unhandled column kind {kind}")


def cell_text(value: object) -> str | None:
    """A spreadsheet or database cell as text: whole floats lose their '.0'."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
