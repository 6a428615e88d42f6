"""Source readers: a file (CSV, XLSX, Parquet, JSON Lines) in, batches of text columns out.

Every reader yields ``RawBatch`` objects: the source's own column names, every value as text
(or null), and the row number a person would see in the source (a spreadsheet's row with the
header as row 1, a JSON Lines file's line). Nothing here knows the canonical schema.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tierwise.errors import Said, SourceError
from tierwise.ingest.parsers import cell_text

BATCH_ROWS = 262_144
CSV_BLOCK_BYTES = 16 << 20
FORMATS = ("csv", "xlsx", "parquet", "jsonl")
_SAMPLE_BYTES = 1 << 20
_FULL_SCAN_BYTES = 64 << 20
# Long cells are rejected by the length rules with a precise message, not by the csv module.
csv.field_size_limit(1 << 30)


@dataclass
class RawBatch:
    table: pa.Table  # text columns, or typed ones (numbers, times) from typed sources
    rows: np.ndarray  # int64 row numbers as the source shows them


@dataclass
class SourceInfo:
    path: str
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    header: list[str] = field(default_factory=list)


class RetryRead(Exception):  # noqa: N818 - a signal, not an error
    """The source must be read again from the start (nothing read so far counts)."""


class Source:
    """A readable source; ``batches()`` may be called once (again after ``RetryRead``)."""

    info: SourceInfo

    def prefer_types(self, types: dict[str, pa.DataType]) -> None:
        """Hint that these columns should hold numbers or times (a reader may ignore it)."""

    def batches(self) -> Iterator[RawBatch]:
        raise NotImplementedError


# -- detection -----------------------------------------------------------------------------
def detect_format(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise SourceError(Said(f"{path}: the file is empty", f"{path}：文件是空的"))
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise SourceError(Said(f"{path}: this is an old .xls workbook; save it as .xlsx or CSV",
                               f"{path}：这是旧的 .xls 工作簿；请另存为 .xlsx 或 CSV"))
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def _decodes(data: bytes, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        decoder.decode(data, final=False)  # a character cut at the sample's end is fine
    except UnicodeDecodeError:
        return False
    return True


def _samples(path: Path) -> list[bytes]:
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size <= _FULL_SCAN_BYTES:
            return [fh.read()]
        samples = []
        for i in range(8):
            fh.seek(size * i // 8)
            chunk = fh.read(_SAMPLE_BYTES)
            if i:  # start at a line boundary so no character is cut in front
                chunk = chunk[chunk.find(b"\n") + 1:]
            samples.append(chunk)
        return samples


def detect_encoding(path: Path) -> str:
    """utf-8-sig, utf-8, gbk or gb18030 (its superset), judged from the file's bytes."""
    samples = _samples(path)
    head = samples[0]
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head[:4096]:
        raise SourceError(Said(f"{path}: this is not a text file (it contains NUL bytes)",
                               f"{path}：这不是文本文件（含有 NUL 字节）"))
    for encoding in ("utf-8", "gbk", "gb18030"):
        if all(_decodes(s, encoding) for s in samples):
            return encoding
    raise SourceError(Said(
        f"{path}: cannot tell the text encoding: it is neither UTF-8 nor GBK/GB18030; "
        "save it as UTF-8 or pass --encoding",
        f"{path}：无法判断文本编码：既不是 UTF-8 也不是 GBK/GB18030；请另存为 UTF-8 或使用 "
        "--encoding"))


def _first_bad_line(path: Path, encoding: str) -> tuple[int, bytes] | None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                return number, line[max(exc.start - 4, 0):exc.end + 4]
    return None


def encoding_error(path: Path, encoding: str) -> SourceError:
    where = _first_bad_line(path, encoding)
    guess = guess_zh = ""
    try:
        other = detect_encoding(path)
        if other.replace("-sig", "") != encoding.replace("-sig", ""):
            guess = f"; the file looks like {other.upper()}: pass --encoding {other}"
            guess_zh = f"；文件看起来是 {other.upper()}：请使用 --encoding {other}"
    except SourceError:
        pass
    if where is None:
        return SourceError(Said(f"{path}: the text is not valid {encoding}{guess}",
                                f"{path}：文本不是有效的 {encoding}{guess_zh}"))
    line, context = where
    return SourceError(Said(
        f"{path}: line {line}: bytes {context!r} are not valid {encoding}{guess}",
        f"{path}：第 {line} 行：字节 {context!r} 不是有效的 {encoding}{guess_zh}"))


def detect_delimiter(text: str) -> str:
    lines = [ln for ln in text.splitlines()[:20] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", -1
    for delim in (",", "\t", ";", "|"):
        counts = [len(next(csv.reader([ln], delimiter=delim))) for ln in lines]
        if counts[0] < 2:
            continue
        score = sum(c == counts[0] for c in counts) * 100 + counts[0]
        if score > best_score:
            best, best_score = delim, score
    return best


def _has_multiline_cells(sample: str, delimiter: str) -> bool:
    try:
        rows = csv.reader(io.StringIO(sample), delimiter=delimiter)
        return any("\n" in cell for row in rows for cell in row)
    except csv.Error:
        return True  # the sample ends inside a quoted cell: read in the careful mode


def _check_header(path: Path, header: list[str]) -> list[str]:
    clean = [h.strip().lstrip("\ufeff") for h in header]
    for i, name in enumerate(clean, start=1):
        if not name:
            raise SourceError(Said(f"{path}: header column {i} has no name",
                                   f"{path}：表头第 {i} 列没有名称"))
    seen: dict[str, int] = {}
    for i, name in enumerate(clean, start=1):
        if name in seen:
            raise SourceError(Said(
                f"{path}: header names {name!r} twice (columns {seen[name]} and {i})",
                f"{path}：表头中 {name!r} 出现了两次（第 {seen[name]} 列和第 {i} 列）"))
        seen[name] = i
    return clean


# -- CSV -----------------------------------------------------------------------------------
class CsvSource(Source):
    def __init__(self, path: Path, encoding: str | None = None, delimiter: str | None = None):
        self.path = path
        self.declared_encoding = encoding is not None
        enc = encoding or detect_encoding(path)
        with path.open("rb") as fh:
            head = fh.read(_SAMPLE_BYTES)
        try:
            text = codecs.getincrementaldecoder(enc)().decode(head, final=False)
        except UnicodeDecodeError:
            raise encoding_error(path, enc) from None
        except LookupError:
            raise SourceError(Said(f"unknown encoding {enc!r}",
                                   f"未知编码 {enc!r}")) from None
        text = text.lstrip("\ufeff")
        delim = delimiter or detect_delimiter(text)
        first = text.splitlines()[0] if text.strip() else ""
        if not first.strip():
            raise SourceError(Said(f"{path}: the file has no header line",
                                   f"{path}：文件没有表头行"))
        header = _check_header(path, next(csv.reader([first], delimiter=delim)))
        self.info = SourceInfo(str(path), "csv", enc, delim, header)
        self._multiline = _has_multiline_cells(text, delim)
        self._types: dict[str, pa.DataType] = {}

    def prefer_types(self, types: dict[str, pa.DataType]) -> None:
        # Arrow converts clean numbers and ISO timestamps while it parses, on all cores.
        # The first value it cannot convert sends the whole read back to text (RetryRead),
        # where every cell gets the full parsers and, if bad, a precise message.
        self._types = {k: v for k, v in types.items() if k in self.info.header}

    def _reader(self, invalid: list[tuple[int, int, str]]) -> pacsv.CSVStreamingReader:
        def on_invalid(row: pacsv.InvalidRow) -> str:
            invalid.append((row.expected_columns, row.actual_columns, row.text))
            return "skip"

        encoding = self.info.encoding or "utf-8"
        return pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(
                encoding="utf8" if encoding in ("utf-8", "utf-8-sig") else encoding,
                block_size=CSV_BLOCK_BYTES,
                column_names=self.info.header,
                skip_rows=1,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.info.delimiter or ",",
                newlines_in_values=self._multiline,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={h: self._types.get(h, pa.string()) for h in self.info.header},
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    def batches(self) -> Iterator[RawBatch]:
        invalid: list[tuple[int, int, str]] = []
        emitted = 0
        try:
            for batch in self._reader(invalid):
                if invalid:
                    break
                rows = np.arange(emitted + 2, emitted + 2 + batch.num_rows, dtype=np.int64)
                emitted += batch.num_rows
                yield RawBatch(pa.Table.from_batches([batch]), rows)
        except pa.ArrowInvalid as exc:
            message = str(exc)
            if self._types and "conversion error to" in message and "to string" not in message:
                self._types = {}
                raise RetryRead() from None
            if "UTF8" in message or "UTF-8" in message or "decode" in message.lower():
                raise encoding_error(self.path, self.info.encoding or "utf-8") from None
            raise self._structure_error(message) from None
        if invalid:
            problems = self._rescan()
            if problems:
                raise self._invalid_rows_error(problems)
            if not self._multiline:
                # Quoted cells with line breaks made rows look short to the block reader;
                # Python's csv module found every row well-formed, so read again.
                self._multiline = True
                raise RetryRead()
            raise SourceError(Said(
                f"{self.path}: malformed CSV near: {invalid[0][2][:80]!r}",
                f"{self.path}：CSV 格式错误，位置靠近：{invalid[0][2][:80]!r}"))

    def _rescan(self) -> list[tuple[int, Said]]:
        """Exact row numbers of malformed rows, found with Python's csv module."""
        problems: list[tuple[int, Said]] = []
        width = len(self.info.header)
        with self.path.open(encoding=self.info.encoding or "utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter=self.info.delimiter or ",", strict=True)
            try:
                next(reader)
                for number, row in enumerate(reader, start=2):
                    if len(row) not in (width, 0):  # blank lines are skipped
                        problems.append((number, Said(
                            f"expected {width} fields, found {len(row)}",
                            f"应有 {width} 个字段，实际 {len(row)} 个")))
                        if len(problems) >= 1000:
                            break
            except csv.Error as exc:
                if "end of data" in str(exc):
                    problems.append((reader.line_num, Said(
                        "a quoted cell is not closed before the end of the file",
                        "有一个带引号的单元格直到文件结尾都没有闭合")))
                else:
                    problems.append((reader.line_num, Said(f"malformed CSV: {exc}",
                                                           f"CSV 格式错误：{exc}")))
        return problems

    def _invalid_rows_error(self, problems: list[tuple[int, Said]]) -> SourceError:
        single = len(problems) == 1
        rest = len(problems) - 5
        return SourceError(Said(
            f"{self.path}: " + "; ".join(f"row {r}: {why.both()[0]}" for r, why in problems[:5])
            + (f"; and {rest} more" if rest > 0 else "")
            + (" (the file may be truncated)" if single else ""),
            f"{self.path}：" + "；".join(f"第 {r} 行：{why.zh}" for r, why in problems[:5])
            + (f"；另有 {rest} 处" if rest > 0 else "") + ("（文件可能不完整）" if single else "")))

    def _structure_error(self, message: str) -> SourceError:
        problems = self._rescan()
        if problems:
            row, why = problems[0]
            return self._invalid_rows_error(problems)
        return SourceError(Said(f"{self.path}: cannot parse as CSV: {message}",
                                f"{self.path}：无法按 CSV 解析：{message}"))


# -- Excel ---------------------------------------------------------------------------------
class XlsxSource(Source):
    def __init__(self, path: Path, sheet: str | None = None):
        from python_calamine import CalamineWorkbook

        self.path = path
        try:
            book = CalamineWorkbook.from_path(str(path))
        except Exception as exc:  # calamine raises several unrelated types
            raise SourceError(Said(f"{path}: cannot open as an Excel workbook: {exc}",
                                   f"{path}：无法作为 Excel 工作簿打开：{exc}")) from None
        names = book.sheet_names
        if sheet is not None and sheet not in names:
            raise SourceError(Said(f"{path}: no sheet {sheet!r}; the workbook has {names}",
                                   f"{path}：没有工作表 {sheet!r}；工作簿中有 {names}"))
        self._sheet = book.get_sheet_by_name(sheet or names[0])
        self._rows = self._sheet.iter_rows()
        try:
            raw_header = next(self._rows)
        except StopIteration:
            raise SourceError(Said(f"{path}: the sheet {self._sheet.name!r} is empty",
                                   f"{path}：工作表 {self._sheet.name!r} 是空的")) from None
        while raw_header and cell_text(raw_header[-1]) in (None, ""):
            raw_header = raw_header[:-1]
        header = _check_header(path, [cell_text(c) or "" for c in raw_header])
        self.info = SourceInfo(str(path), "xlsx", None, None, header)

    def batches(self) -> Iterator[RawBatch]:
        width = len(self.info.header)
        columns: list[list[str | None]] = [[] for _ in range(width)]
        rows: list[int] = []
        row_number = self._sheet.start[0] + 1 if self._sheet.start else 1
        for cells in self._rows:
            row_number += 1
            texts = [cell_text(c) for c in cells[:width]]
            if all(t in (None, "") for t in texts) and all(
                    cell_text(c) in (None, "") for c in cells[width:]):
                continue  # blank spreadsheet row
            if any(cell_text(c) not in (None, "") for c in cells[width:]):
                raise SourceError(Said(
                    f"{self.path}: row {row_number}: cells beyond the header's {width} "
                    "columns are not empty",
                    f"{self.path}：第 {row_number} 行：表头 {width} 列以外的单元格不是空的"))
            texts += [None] * (width - len(texts))
            for col, value in zip(columns, texts, strict=True):
                col.append(value)
            rows.append(row_number)
            if len(rows) >= BATCH_ROWS:
                yield self._batch(columns, rows)
                columns, rows = [[] for _ in range(width)], []
        if rows:
            yield self._batch(columns, rows)

    def _batch(self, columns: list[list[str | None]], rows: list[int]) -> RawBatch:
        table = pa.table({h: pa.array(c, pa.string()) for h, c in
                          zip(self.info.header, columns, strict=True)})
        return RawBatch(table, np.array(rows, dtype=np.int64))


# -- Parquet -------------------------------------------------------------------------------
def _as_text(array: pa.Array) -> pa.Array:
    """Strings stay strings, numbers and times keep their type, anything else becomes text."""
    t = array.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return array.cast(pa.string())
    if (pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_integer(t)
            or (pa.types.is_floating(t) and pc.all(pc.is_finite(array)).as_py() is not False)):
        return array
    if pa.types.is_nested(array.type) or pa.types.is_dictionary(array.type):
        return pa.array([cell_text(v) for v in array.to_pylist()], pa.string())
    if pa.types.is_floating(array.type):
        return pa.array([cell_text(v) for v in array.to_pylist()], pa.string())
    return array.cast(pa.string())


class ParquetSource(Source):
    """One Parquet file, or a folder of them read in name order as one source.

    Row numbers count data rows from 1 across the whole source.
    """

    def __init__(self, path: Path):
        self.path = path
        self._paths = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not self._paths:
            raise SourceError(Said(f"{path}: the folder has no .parquet files",
                                   f"{path}：文件夹中没有 .parquet 文件"))
        try:
            first = pq.ParquetFile(self._paths[0])
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(Said(f"{self._paths[0]}: cannot read as Parquet: {exc}",
                                   f"{self._paths[0]}：无法按 Parquet 读取：{exc}")) from None
        header = _check_header(path, list(first.schema_arrow.names))
        self.info = SourceInfo(str(path), "parquet", None, None, header)

    def batches(self) -> Iterator[RawBatch]:
        start = 1
        for path in self._paths:
            try:
                file = pq.ParquetFile(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(Said(f"{path}: cannot read as Parquet: {exc}",
                                       f"{path}：无法按 Parquet 读取：{exc}")) from None
            if list(file.schema_arrow.names) != self.info.header:
                raise SourceError(Said(
                    f"{path}: its columns differ from {self._paths[0].name}'s",
                    f"{path}：它的列与 {self._paths[0].name} 不同"))
            for batch in file.iter_batches(batch_size=BATCH_ROWS):
                table = pa.table({name: _as_text(batch.column(i))
                                  for i, name in enumerate(self.info.header)})
                rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
                start += batch.num_rows
                yield RawBatch(table, rows)


# -- JSON Lines ----------------------------------------------------------------------------
class JsonLinesSource(Source):
    def __init__(self, path: Path, encoding: str | None = None):
        self.path = path
        self.encoding = encoding or detect_encoding(path)
        header: dict[str, None] = {}
        # Column names are the union of keys in the file's objects, in order of appearance.
        for _, obj in self._objects():
            header.update(dict.fromkeys(obj))
        if not header:
            raise SourceError(Said(f"{path}: the file has no JSON objects",
                                   f"{path}：文件中没有 JSON 对象"))
        self.info = SourceInfo(str(path), "jsonl", self.encoding, None,
                               _check_header(path, list(header)))

    def _objects(self) -> Iterator[tuple[int, dict[str, object]]]:
        try:
            with self.path.open(encoding=self.encoding) as fh:
                for number, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise SourceError(Said(
                            f"{self.path}: line {number}: not valid JSON: {exc.msg} at "
                            f"column {exc.colno}",
                            f"{self.path}：第 {number} 行：不是有效的 JSON：{exc.msg}（第 "
                            f"{exc.colno} 列）")) from None
                    if not isinstance(obj, dict):
                        raise SourceError(Said(
                            f"{self.path}: line {number}: expected a JSON object, found "
                            f"{type(obj).__name__}",
                            f"{self.path}：第 {number} 行：应为 JSON 对象，实际是 "
                            f"{type(obj).__name__}"))
                    yield number, obj
        except UnicodeDecodeError:
            raise encoding_error(self.path, self.encoding) from None

    def batches(self) -> Iterator[RawBatch]:
        names = self.info.header
        columns: dict[str, list[str | None]] = {n: [] for n in names}
        rows: list[int] = []
        for number, obj in self._objects():
            for name in names:
                columns[name].append(cell_text(obj.get(name)))
            rows.append(number)
            if len(rows) >= BATCH_ROWS:
                yield _text_batch(columns, rows)
                columns, rows = {n: [] for n in names}, []
        if rows:
            yield _text_batch(columns, rows)


def _text_batch(columns: dict[str, list[str | None]], rows: list[int]) -> RawBatch:
    table = pa.table({n: pa.array(v, pa.string()) for n, v in columns.items()})
    return RawBatch(table, np.array(rows, dtype=np.int64))


class RecordsSource(Source):
    """Python rows (dicts) or Arrow batches already in memory, e.g. from a database cursor."""

    def __init__(self, name: str, header: list[str], batches: Iterator[pa.Table],
                 fmt: str = "records"):
        self._batches = batches
        self.info = SourceInfo(name, fmt, None, None, header)

    @classmethod
    def from_dicts(cls, name: str, rows: list[dict[str, object]]) -> RecordsSource:
        """Rows posted as JSON objects: every value as text (objects and lists as JSON)."""
        header: list[str] = []
        for row in rows:
            header.extend(k for k in row if k not in header)
        text = {n: [None if r.get(n) is None else
                    json.dumps(r[n], ensure_ascii=False) if isinstance(r[n], dict | list)
                    else str(r[n]) for r in rows] for n in header}
        table = pa.table({n: pa.array(v, pa.string()) for n, v in text.items()})
        return cls(name, header, iter([table]), "json")

    def batches(self) -> Iterator[RawBatch]:
        start = 1
        for table in self._batches:
            text = pa.table({n: _as_text(table.column(n).combine_chunks())
                             for n in self.info.header})
            yield RawBatch(text, np.arange(start, start + text.num_rows, dtype=np.int64))
            start += text.num_rows


def open_file(path: str | os.PathLike[str], fmt: str | None = None,
              encoding: str | None = None, delimiter: str | None = None,
              sheet: str | None = None) -> Source:
    """Open a source file, detecting its format, text encoding and delimiter."""
    p = Path(path)
    if p.is_dir():
        return ParquetSource(p)
    if not p.is_file():
        raise SourceError(Said(f"{p}: no such file", f"{p}：文件不存在"))
    if p.stat().st_size == 0:
        raise SourceError(Said(f"{p}: the file is empty", f"{p}：文件是空的"))
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise SourceError(Said(f"unknown format {fmt!r}; expected one of {FORMATS}",
                               f"未知格式 {fmt!r}：应为 {FORMATS} 之一"))
    if fmt == "csv":
        return CsvSource(p, encoding, delimiter)
    if fmt == "xlsx":
        return XlsxSource(p, sheet)
    if fmt == "parquet":
        return ParquetSource(p)
    return JsonLinesSource(p, encoding)


