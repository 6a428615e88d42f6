"""Value parsers, as data: input text → expected value or the reason it is rejected."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from tierwise.definitions.schemas import CUSTOMERS, ORDERS
from tierwise.ingest.parsers import ColumnFormat, convert, normalize_text

SH = timezone(timedelta(hours=8))


def run(values, column, fmt=None, zone="Asia/Shanghai"):
    fmt = fmt or ColumnFormat()
    result = convert(normalize_text(pa.array(values, pa.string())), column, fmt, zone)
    reasons = [None] * len(values)
    for mask, reason in result.problems:
        for i, bad in enumerate(mask.to_pylist()):
            if bad and reasons[i] is None:
                reasons[i] = reason
    return result.values.to_pylist(), reasons


TIMESTAMPS = [
    ("2025-03-12", datetime(2025, 3, 12, tzinfo=SH)),
    ("2025/3/12", datetime(2025, 3, 12, tzinfo=SH)),
    ("2025年3月12日", datetime(2025, 3, 12, tzinfo=SH)),
    ("2025年3月12日 14:30", datetime(2025, 3, 12, 14, 30, tzinfo=SH)),
    ("2025.03.12 14:30:05", datetime(2025, 3, 12, 14, 30, 5, tzinfo=SH)),
    ("20250312", datetime(2025, 3, 12, tzinfo=SH)),
    ("2025-03-12T14:30:00Z", datetime(2025, 3, 12, 14, 30, tzinfo=UTC)),
    ("2025-03-12T14:30:00+02:00", datetime(2025, 3, 12, 12, 30, tzinfo=UTC)),
    ("2025-03-12 14:30:00.250-0500", datetime(2025, 3, 12, 19, 30, 0, 250000, tzinfo=UTC)),
    ("45728", datetime(2025, 3, 12, tzinfo=SH)),  # Excel serial date
    ("45728.5", datetime(2025, 3, 12, 12, tzinfo=SH)),
    ("1741737600", datetime(2025, 3, 12, tzinfo=UTC)),  # Unix seconds
    ("1741737600000", datetime(2025, 3, 12, tzinfo=UTC)),  # Unix milliseconds
    ("  2025-03-12  ", datetime(2025, 3, 12, tzinfo=SH)),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS)
def test_timestamps(text, expected):
    values, reasons = run([text], ORDERS.column("ordered_at"))
    assert reasons == [None]
    assert values[0] == expected


def test_values_with_offsets_parse_alike_alone_and_among_others():
    """Every value with an offset (what the API receives) takes Arrow's parser; mixed with
    other spellings, the patterns: the same instants either way."""
    col = ORDERS.column("ordered_at")
    aware = ["2025-03-12T14:30:00Z", "2025-03-12T14:30:00+02:00",
             "2025-03-12 14:30:00.250-0500", None]
    alone, reasons = run(aware, col)
    mixed, _ = run([*aware, "2025-03-12", "45728"], col)
    assert reasons == [None] * 4 and alone == mixed[:4]
    assert alone[:3] == [datetime(2025, 3, 12, 14, 30, tzinfo=UTC),
                         datetime(2025, 3, 12, 12, 30, tzinfo=UTC),
                         datetime(2025, 3, 12, 19, 30, 0, 250000, tzinfo=UTC)]
    values, reasons = run(["2025-03-12T14:30:00Z", "2025-02-30T10:00:00Z"], col)
    assert values == [datetime(2025, 3, 12, 14, 30, tzinfo=UTC), None]
    assert "not a real calendar date" in reasons[1]


def test_day_month_order_must_be_declared():
    col = ORDERS.column("ordered_at")
    _, reasons = run(["12/03/2025"], col)
    assert "ambiguous" in reasons[0] and "DMY" in reasons[0]
    dmy, _ = run(["12/03/2025"], col, ColumnFormat(date_order="DMY"))
    mdy, _ = run(["12/03/2025"], col, ColumnFormat(date_order="MDY"))
    assert dmy[0] == datetime(2025, 3, 12, tzinfo=SH)
    assert mdy[0] == datetime(2025, 12, 3, tzinfo=SH)


@pytest.mark.parametrize(("text", "reason"), [
    ("2025-02-30", "not a real calendar date"),
    ("2025-13-01", "not a real calendar date"),
    ("2025-03-12 25:00", "not a real calendar date"),
    ("yesterday", "expected a date"),
    ("12.5.25", "expected a date"),
])
def test_bad_timestamps(text, reason):
    values, reasons = run([text], ORDERS.column("ordered_at"))
    assert values == [None]
    assert reason in reasons[0]


def test_explicit_format_and_time_zone():
    col = ORDERS.column("ordered_at")
    values, reasons = run(["12-03-2025 08h15"], col,
                          ColumnFormat(format="%d-%m-%Y %Hh%M", timezone="UTC"))
    assert values == [datetime(2025, 3, 12, 8, 15, tzinfo=UTC)]
    _, reasons = run(["2025-03-12"], col, ColumnFormat(format="%d-%m-%Y"))
    assert "does not match the format" in reasons[0]


def test_daylight_saving_zone():
    values, _ = run(["2025-07-01 12:00", "2025-01-01 12:00"], ORDERS.column("ordered_at"),
                    zone="Europe/Berlin")
    assert values == [datetime(2025, 7, 1, 10, tzinfo=UTC), datetime(2025, 1, 1, 11, tzinfo=UTC)]


def test_dates_do_not_shift():
    values, _ = run(["1990-05-17", "1990年5月17日", "33010"], CUSTOMERS.column("birth_date"))
    assert values == [date(1990, 5, 17)] * 3


AMOUNTS = [
    ("1234.5", 1234.5), ("¥1,234.50", 1234.5), ("￥1,234.50", 1234.5), ("1234.5元", 1234.5),
    ("RMB 88", 88.0), ("$12.00", 12.0), ("1.2万", 12000.0), ("-¥3", -3.0), ("¥-3", -3.0),
    ("1,000,000", 1e6), (".5", 0.5), ("  42  ", 42.0),
]


@pytest.mark.parametrize(("text", "expected"), AMOUNTS)
def test_amounts(text, expected):
    values, reasons = run([text], ORDERS.column("amount"))
    assert reasons == [None]
    assert values == [pytest.approx(expected)]


@pytest.mark.parametrize("text", ["abc", "1,23", "12..5", "nan", "inf", "1.2.3", "¥", "--5"])
def test_bad_amounts(text):
    values, reasons = run([text], ORDERS.column("amount"))
    assert values == [None]
    assert reasons[0].startswith("not a number")


def test_amount_scale():
    values, _ = run(["12345"], ORDERS.column("amount"), ColumnFormat(scale=0.01))
    assert values == [pytest.approx(123.45)]


def test_integers_and_bounds():
    values, reasons = run(["3", "4.0", "4.5", "-1"], ORDERS.column("quantity"))
    assert values[:2] == [3, 4]
    assert reasons == [None, None, "not a whole number", "less than 0"]


def test_enum_synonyms():
    values, reasons = run(["已支付", "Refunded", "已取消", "lost"], ORDERS.column("status"))
    assert values[:3] == ["paid", "refunded", "cancelled"]
    assert reasons[3] == "not one of cancelled, paid, refunded"


def test_tags_and_json():
    values, reasons = run(["vip,高价值", "a；b|a", '["x", "y"]', "[1"], CUSTOMERS.column("tags"))
    assert values[:3] == ['["vip", "高价值"]', '["a", "b"]', '["x", "y"]']
    assert reasons[3] is not None
    values, reasons = run(['{"b": 1, "a": "上海"}', "[1]", "{oops"],
                          CUSTOMERS.column("attributes"))
    assert values[0] == '{"a":"上海","b":1}'
    assert reasons[1].startswith("not a JSON object") and reasons[2].startswith("not a JSON")


def test_text_length_limit():
    _, reasons = run(["x" * 3000], CUSTOMERS.column("name"))
    assert reasons[0] == "text longer than 2,000 characters"


def test_text_length_counts_characters_not_bytes():
    # 2,000 Chinese characters are 6,000 bytes: within the limit; one more is not
    _, reasons = run(["上" * 2000, "上" * 2001], CUSTOMERS.column("name"))
    assert reasons == [None, "text longer than 2,000 characters"]


CELLS = ["a", " b", "c ", "\u3000x", "y\xa0", "\ufeffz", "", None, "中文", "é", "\t",
         "ab\n", "瀀", "  ", "x y"]


@pytest.mark.parametrize("cut", [slice(None), slice(1, None), slice(3, 9), slice(7, 8),
                                 slice(8, 11), slice(12, None)])
@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_normalized_text_is_trimmed_with_empty_cells_null(cut, kind):
    """The trim is skipped when no cell can need it: whatever the cells and the slice of
    the buffers they sit in, the result is each cell stripped of the trimmed characters,
    empty ones null."""
    values = pa.array(CELLS, kind)[cut]
    expected = [None if c is None or not c.strip(" \t\r\n\u3000\ufeff\xa0")
                else c.strip(" \t\r\n\u3000\ufeff\xa0") for c in CELLS[cut]]
    assert normalize_text(values).to_pylist() == expected
    assert normalize_text(pa.chunked_array([values, values])).to_pylist() == expected * 2
