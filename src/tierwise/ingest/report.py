"""Rejected-row reports and spreadsheet-safe CSV export."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Cells starting with these run as formulas in Excel, LibreOffice and Google Sheets.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
REPORT_COLUMNS = ("file", "row", "column", "value", "reason")
MAX_VALUE_CHARS = 200


def safe_cell(value: object) -> str:
    """Text for a CSV cell that a spreadsheet shows as text, never runs as a formula.

    >>> safe_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> safe_cell(-3.5)
    '-3.5'
    """
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def write_safe_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a UTF-8 CSV (with BOM, so Excel reads Chinese correctly) with escaped cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([safe_cell(h) for h in header])
        for row in rows:
            writer.writerow([safe_cell(v) for v in row])


def safe_csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """``write_safe_csv`` into bytes (UTF-8 with BOM), for a download."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return ("\ufeff" + buffer.getvalue()).encode()


def shorten(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_VALUE_CHARS:
        return value
    return f"{value[:MAX_VALUE_CHARS]}… ({len(value):,} characters)"


def reject_report_path(root: Path, name: str) -> Path:
    """Where a rejected-rows report of an API import goes: inside the workspace, under
    reports/imports/, so that erasure finds and scrubs it."""
    folder = root / "reports" / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def write_reject_report(path: Path, source: str,
                        rejects: Iterable[tuple[int, str, str | None, str]]) -> None:
    write_safe_csv(path, REPORT_COLUMNS,
                   ((source, row, column, shorten(value), reason)
                    for row, column, value, reason in rejects))
