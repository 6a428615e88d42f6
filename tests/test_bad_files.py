"""Every kind of bad input: a precise error, and the workspace exactly as it was."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest
from tests.conftest import ORDERS_CSV, snapshot, write

import tierwise
from tierwise import ImportRejected, MappingError, SourceError
from tierwise.errors import speaking

HEADER = "order_id,customer_id,ordered_at,amount\n"


def reject_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def before(loaded: tierwise.Workspace):
    return snapshot(loaded)


def check_unchanged(ws: tierwise.Workspace, before: dict[str, object]) -> None:
    assert snapshot(ws) == before


CASES = [
    # (file name, content, error type, words the message must contain, and in Chinese)
    ("truncated.csv", HEADER + "X1,C001,2025-01-01,10\nX2,C0", SourceError,
     ["row 3", "expected 4 fields, found 2", "truncated"],
     ["第 3 行", "应有 4 个字段，实际 2 个", "文件可能不完整"]),
    ("unclosed.csv", HEADER + 'X1,C001,2025-01-01,10\nX2,"C001,2025-01-01,10\n', SourceError,
     ["row 3", "quoted cell is not closed", "truncated"], ["第 3 行", "没有闭合"]),
    ("missing_column.csv", "order_id,customer_id,amount\nX1,C001,10\n", tierwise.MappingError,
     ["no column for required orders column(s) ordered_at", "order_id, customer_id, amount"],
     ["缺少 orders 的必填列 ordered_at"]),
    ("empty.csv", "", SourceError, ["the file is empty"], ["文件是空的"]),
    ("header_only.csv", HEADER, SourceError, ["no data rows"], ["没有数据行"]),
    ("binary.csv", "\x00\x01\x02garbage", SourceError, ["not a text file"], ["不是文本文件"]),
    ("dup_header.csv", "order_id,order_id,ordered_at,amount\n1,2,3,4\n", SourceError,
     ["names 'order_id' twice", "columns 1 and 2"], ["'order_id' 出现了两次", "第 1 列和第 2 列"]),
]


@pytest.mark.parametrize(("name", "content", "error", "words", "words_zh"), CASES,
                         ids=[c[0] for c in CASES])
def test_unreadable_files(loaded, before, tmp_path, name, content, error, words, words_zh):
    path = write(tmp_path / name, content)
    with pytest.raises(error) as info:
        loaded.import_file("orders", path)
    for word in words:
        assert word in str(info.value)
    assert name in str(info.value) or error is MappingError
    with speaking("zh-CN"):
        for word in words_zh:
            assert word in str(info.value), str(info.value)
    check_unchanged(loaded, before)


ROW_CASES = [
    # (rows after the header, expected (row, column, value, reason-start) of the first reject)
    ("X1,C001,2025-02-30,10\n", (2, "ordered_at", "2025-02-30", "not a real calendar date")),
    ("X1,C001,soon,10\n", (2, "ordered_at", "soon", "expected a date")),
    ("X1,C001,2025-01-01,10\nX2,C001,2025-01-01,12 dollars\n",
     (3, "amount", "12 dollars", "not a number")),
    ("X1,C001,2025-01-01,\n", (2, "amount", "", "required value is empty")),
    ("X1,NOBODY,2025-01-01,1\n", (2, "customer_id", "NOBODY", "unknown customer")),
    ("X1,C001,2025-01-01,1\nX2,C001,2025-01-01,2\nX1,C002,2025-01-02,3\n",
     (4, "order_id", "X1", "duplicate key: row 2 has the same order_id")),
    ("X1,C001,12/03/2025,1\n", (2, "ordered_at", "12/03/2025", "day and month order")),
    ("X1,C001,2025-01-01,=HYPERLINK(\"http://evil\")\n",
     (2, "amount", "'=HYPERLINK(\"http://evil\")", "not a number")),
]


@pytest.mark.parametrize(("rows", "first"), ROW_CASES, ids=[c[1][3] for c in ROW_CASES])
def test_bad_rows_are_reported(loaded, before, tmp_path, rows, first):
    path = write(tmp_path / "bad.csv", HEADER + rows)
    report = tmp_path / "report.csv"
    with pytest.raises(ImportRejected) as info:
        loaded.import_file("orders", path, report_path=report)
    assert "nothing imported" in str(info.value)
    reported = reject_rows(report)[0]
    assert reported["file"] == str(path)
    assert (int(reported["row"]), reported["column"], reported["value"]) == first[:3]
    assert reported["reason"].startswith(first[3])
    check_unchanged(loaded, before)


def test_every_bad_row_is_listed(loaded, before, tmp_path):
    rows = "".join(f"X{i},C001,2025-01-{i:02d},{'bad' if i % 3 == 0 else i}\n"
                   for i in range(1, 28))
    report = tmp_path / "r.csv"
    with pytest.raises(ImportRejected) as info:
        loaded.import_file("orders", write(tmp_path / "b.csv", HEADER + rows), report_path=report)
    assert info.value.total == 9
    assert [int(r["row"]) for r in reject_rows(report)] == [i + 1 for i in range(3, 28, 3)]
    check_unchanged(loaded, before)


def test_wrong_declared_encoding(loaded, before, tmp_path):
    path = write(tmp_path / "gbk.csv", ORDERS_CSV.replace("¥", "￥"), "gbk")
    with pytest.raises(SourceError) as info:
        loaded.import_file("orders", path, mapping=tierwise.Mapping(encoding="utf-8"))
    message = str(info.value)
    assert "line 1" in message and "not valid utf-8" in message and "GBK" in message
    check_unchanged(loaded, before)


def test_undecodable_text(loaded, before, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(HEADER.encode() + b"X1,C001,2025-01-01,10\n" + bytes([0x81, 0x20]) * 3)
    with pytest.raises(SourceError) as info:
        loaded.import_file("orders", path)
    assert "cannot tell the text encoding" in str(info.value)
    check_unchanged(loaded, before)


def test_a_one_megabyte_cell(loaded, before, tmp_path):
    big = "x" * (1 << 20)
    path = write(tmp_path / "big.csv", "customer_id,name\nC009,ok\nC010," + big + "\n")
    report = tmp_path / "r.csv"
    with pytest.raises(ImportRejected) as info:
        loaded.import_file("customers", path, report_path=report)
    assert "row 3" in str(info.value) and "longer than 2,000 characters" in str(info.value)
    value = reject_rows(report)[0]["value"]
    # a name: masked, and still says how long it was
    assert len(value) < 300 and value.startswith("x***") and "1,048,576 characters" in value
    check_unchanged(loaded, before)


def test_formula_cells_are_escaped_in_reports(loaded, before, tmp_path):
    path = write(tmp_path / "f.csv", "customer_id,name,birth_date\n@SUM(A1),x,=1+1\n")
    report = tmp_path / "r.csv"
    with pytest.raises(ImportRejected):
        loaded.import_file("customers", path, report_path=report)
    text = report.read_text(encoding="utf-8-sig")
    assert ",'=1+1," in text and "\n=" not in text and ",=" not in text
    check_unchanged(loaded, before)


def test_bad_mapping(loaded, before, tmp_path):
    path = write(tmp_path / "o.csv", "id,cust,when,amt\nX1,C001,2025-01-01,1\n")
    with pytest.raises(MappingError) as info:
        loaded.import_file("orders", path, mapping=tierwise.Mapping().with_pairs(
            ["id=order_id", "cust=customer_id", "when=orderd_at", "amt=amount"]))
    assert "'orderd_at'" in str(info.value) and "did you mean ordered_at" in str(info.value)
    with pytest.raises(MappingError) as info:
        loaded.import_file("orders", path, mapping=tierwise.Mapping().with_pairs(["idd=order_id"]))
    assert "source column 'idd'" in str(info.value) and "did you mean id" in str(info.value)
    bad_yaml = write(tmp_path / "m.yaml", "columns: [a, b]\n")
    with pytest.raises(MappingError) as info:
        loaded.import_file("orders", path, mapping=bad_yaml)
    assert "m.yaml" in str(info.value) and "columns" in str(info.value)
    check_unchanged(loaded, before)


def test_bad_xlsx(loaded, before, tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["order_id", "customer_id", "ordered_at", "amount"])
    book.active.append(["X1", "C001", "not a date", 5])
    book.save(tmp_path / "o.xlsx")
    report = tmp_path / "r.csv"
    with pytest.raises(ImportRejected):
        loaded.import_file("orders", tmp_path / "o.xlsx", report_path=report)
    assert reject_rows(report)[0]["row"] == "2"
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SourceError) as info:
        loaded.import_file("orders", tmp_path / "broken.xlsx")
    assert "cannot open as an Excel workbook" in str(info.value)
    check_unchanged(loaded, before)


def test_bad_jsonl(loaded, before, tmp_path):
    path = write(tmp_path / "e.jsonl", '{"customer_id": "C001"}\n[1, 2]\n')
    with pytest.raises(SourceError) as info:
        loaded.import_file("events", path)
    assert "line 2: expected a JSON object" in str(info.value)
    path = write(tmp_path / "e2.jsonl", '{"customer_id": "C001"}\n{"oops"\n')
    with pytest.raises(SourceError) as info:
        loaded.import_file("events", path)
    assert "line 2: not valid JSON" in str(info.value)
    check_unchanged(loaded, before)


def test_failure_while_committing_leaves_nothing(loaded, before, tmp_path, monkeypatch):
    """A crash inside the final transaction rolls back the manifest and removes the file."""
    from tierwise.store import facts

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(facts, "_time_range", boom)
    path = write(tmp_path / "o.csv", HEADER + "X1,C001,2025-01-01,1\n")
    with pytest.raises(RuntimeError):
        loaded.import_file("orders", path)
    check_unchanged(loaded, before)


def test_late_bad_value_in_a_big_file(loaded, before, tmp_path, monkeypatch):
    """Clean blocks are converted by the CSV reader; a bad cell far down falls back to the
    text parsers for the whole file and is still reported at its exact row."""
    from tierwise.ingest import readers

    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1 << 14)
    rows = "".join(f"X{i},C001,2025-01-01 10:00:00,{i}.5\n" for i in range(5_000))
    rows += "Y1,C001,2025-01-01 10:00:00,12.5元\nY2,C001,2025-13-01,1\nY3,GHOST,2025-01-01,1\n"
    report = tmp_path / "r.csv"
    with pytest.raises(ImportRejected) as info:
        loaded.import_file("orders", write(tmp_path / "b.csv", HEADER + rows), report_path=report)
    listed = [(int(r["row"]), r["column"], r["reason"][:20]) for r in reject_rows(report)]
    assert listed == [(5003, "ordered_at", "not a real calendar "),
                      (5004, "customer_id", "unknown customer: im")]
    assert info.value.total == 2
    check_unchanged(loaded, before)
