"""Imports of every format and encoding, mappings, dry runs, idempotency and upserts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import CUSTOMERS_CSV, ORDERS_CSV, snapshot, write

import tierwise
from tierwise import Mapping

SH = timezone(timedelta(hours=8))


def test_csv_with_chinese_headers_dates_and_amounts(loaded: tierwise.Workspace):
    orders = {r["order_id"]: r for r in loaded.table("orders").to_pylist()}
    assert orders["O1"]["amount"] == 1234.5
    assert orders["O1"]["ordered_at"] == datetime(2025, 3, 12, 10, tzinfo=SH)
    assert orders["O2"]["amount"] == 99.0
    assert orders["O3"]["amount"] == 15000.0 and orders["O3"]["status"] == "refunded"
    assert orders["O4"]["status"] == "paid"  # the default for an empty status
    assert orders["O4"]["ordered_at"] == datetime(2025, 4, 3, tzinfo=UTC)
    customers = {r["customer_id"]: r for r in loaded.customers().to_dict("records")}
    assert customers["C001"]["name"] == "张三"
    assert json.loads(customers["C001"]["tags"]) == ["vip", "高价值"]
    assert customers["C002"]["signup_at"] == datetime(2025, 3, 1, tzinfo=SH)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_encodings_are_detected(ws: tierwise.Workspace, tmp_path: Path, encoding: str):
    text = CUSTOMERS_CSV + "C004,欧阳𠀋,,广州,2025-01-01,\n" if encoding == "gb18030" \
        else CUSTOMERS_CSV
    result = ws.import_file("customers", write(tmp_path / "c.csv", text, encoding))
    assert result.encoding == encoding
    names = set(ws.customers()["name"])
    assert {"张三", "李四", "王五"} <= names


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_detected(ws: tierwise.Workspace, tmp_path: Path, delimiter: str):
    text = CUSTOMERS_CSV.replace(",", delimiter).replace('"vip' + delimiter + '高价值"',
                                                         '"vip,高价值"')
    ws.import_file("customers", write(tmp_path / "c.csv", text))
    assert ws.count("customers") == 3


def test_xlsx_with_dates_numbers_and_mapping(ws: tierwise.Workspace, tmp_path: Path):
    ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "订单"
    sheet.append(["单号", "会员", "日期", "实付(分)"])
    sheet.append([1001, "C001", datetime(2025, 5, 1, 9, 30), 12345])
    sheet.append([1002, "C002", 45728, 500])  # an unformatted Excel serial date
    sheet.append([None, None, None, None])  # blank rows are skipped
    book.save(tmp_path / "orders.xlsx")
    write(tmp_path / "map.yaml", """
table: orders
columns: {单号: order_id, 会员: customer_id, 日期: ordered_at, 实付(分): amount}
formats: {amount: {scale: 0.01}}
defaults: {currency: CNY}
""")
    result = ws.import_file("orders", tmp_path / "orders.xlsx", mapping=tmp_path / "map.yaml")
    assert result.rows_read == 2 and result.format == "xlsx"
    rows = {r["order_id"]: r for r in ws.table("orders").to_pylist()}
    assert set(rows) == {"1001", "1002"}  # whole numbers lose their ".0"
    assert rows["1001"]["amount"] == pytest.approx(123.45)
    assert rows["1001"]["ordered_at"] == datetime(2025, 5, 1, 9, 30, tzinfo=SH)
    assert rows["1002"]["ordered_at"] == datetime(2025, 3, 12, tzinfo=SH)
    assert rows["1002"]["currency"] == "CNY"


def test_parquet_and_jsonl(ws: tierwise.Workspace, tmp_path: Path):
    ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    pq.write_table(pa.table({
        "order_id": ["P1", "P2"], "customer_id": ["C001", "C002"],
        "ordered_at": pa.array([datetime(2025, 1, 1, 12, tzinfo=UTC)] * 2,
                               pa.timestamp("ms", tz="UTC")),
        "amount": pa.array([10, 20], pa.int32()),
    }), tmp_path / "o.parquet")
    ws.import_file("orders", tmp_path / "o.parquet")
    assert sorted(ws.table("orders")["amount"].to_pylist()) == [10.0, 20.0]
    lines = [
        {"customer_id": "C001", "occurred_at": "2025-01-02 10:00", "type": "page_view",
         "properties": {"page": "/pricing"}},
        {"customer_id": "C002", "occurred_at": "2025-01-03", "type": "login",
         "campaign": "spring"},
    ]
    write(tmp_path / "e.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines))
    result = ws.import_file("events", tmp_path / "e.jsonl")
    assert result.extras == ["campaign"]
    events = sorted(ws.table("events").to_pylist(), key=lambda r: r["customer_id"])
    assert json.loads(events[0]["properties"]) == {"page": "/pricing"}
    assert json.loads(events[1]["properties"]) == {"campaign": "spring"}


def test_map_option_and_saved_mapping(ws: tierwise.Workspace, tmp_path: Path):
    write(tmp_path / "c.csv", "cid,who\nX1,Alice\n")
    mapping = Mapping().with_pairs(["cid=customer_id", "who=name"])
    ws.import_file("customers", tmp_path / "c.csv", mapping=mapping)
    ws.save_mapping("crm", "customers", mapping)
    write(tmp_path / "c2.csv", "cid,who\nX2,Bob\n")
    ws.import_file("customers", tmp_path / "c2.csv", mapping="crm")
    assert sorted(ws.customers()["name"]) == ["Alice", "Bob"]
    assert [m["name"] for m in ws.saved_mappings()] == ["crm"]


def test_unmapped_customer_columns_go_to_attributes(ws: tierwise.Workspace, tmp_path: Path):
    write(tmp_path / "c.csv", "customer_id,会员等级,积分\nX1,金卡,1200\n")
    result = ws.import_file("customers", tmp_path / "c.csv")
    assert result.extras == ["会员等级", "积分"]
    assert json.loads(ws.customers()["attributes"][0]) == {"会员等级": "金卡", "积分": "1200"}


def test_dry_run_changes_nothing(loaded: tierwise.Workspace, tmp_path: Path):
    before = snapshot(loaded)
    text = ORDERS_CSV.replace("O4,C003,2025-04-03T08:00:00+08:00,300,",
                              "O4,C003,2025-04-03T08:00:00+08:00,350,") + "O5,C003,2025-05-01,10,\n"
    result = loaded.import_file("orders", write(tmp_path / "o2.csv", text), dry_run=True)
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 3)
    assert result.dry_run
    assert snapshot(loaded) == before


def test_reimport_is_idempotent(loaded: tierwise.Workspace, tmp_path: Path):
    before = loaded.table("orders").sort_by("order_id")
    files = loaded.summary()["orders"]["files"]
    again = loaded.import_file("orders", tmp_path / "orders.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    assert loaded.summary()["orders"]["files"] == files  # nothing new was written
    assert loaded.table("orders").sort_by("order_id").equals(before)
    again = loaded.import_file("customers", tmp_path / "customers.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)


def test_upsert_replaces_rows_by_key(loaded: tierwise.Workspace, tmp_path: Path):
    write(tmp_path / "o2.csv", "order_id,customer_id,ordered_at,amount,status\n"
          "O1,C001,2025-03-12 10:00:00,1300,paid\nO9,C002,2025-06-01,5,paid\n")
    result = loaded.import_file("orders", tmp_path / "o2.csv")
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 0)
    rows = {r["order_id"]: r for r in loaded.table("orders").to_pylist()}
    assert len(rows) == 5 and loaded.count("orders") == 5
    assert rows["O1"]["amount"] == 1300.0
    # Compaction keeps exactly the current rows.
    loaded.compact("orders")
    assert loaded.summary()["orders"]["files"] == 1
    assert {r["order_id"]: r for r in loaded.table("orders").to_pylist()} == rows


def test_customer_update_keeps_columns_the_file_lacks(loaded: tierwise.Workspace,
                                                      tmp_path: Path):
    write(tmp_path / "c.csv", "customer_id,城市\nC001,杭州\n")
    result = loaded.import_file("customers", tmp_path / "c.csv")
    assert result.updated == 1
    row = loaded.customers().set_index("customer_id").loc["C001"]
    assert row["city"] == "杭州" and row["name"] == "张三" and row["phone"] == "+8613800138000"


def test_unknown_customers_create_stubs(ws: tierwise.Workspace, tmp_path: Path):
    write(tmp_path / "o.csv", "order_id,customer_id,ordered_at,amount\nA,N1,2025-01-01,1\n"
          "B,N2,2025-01-02,2\nC,N1,2025-01-03,3\n")
    result = ws.import_file("orders", tmp_path / "o.csv", unknown_customers="create")
    assert result.stubs_created == 2
    customers = ws.customers()
    assert sorted(customers["customer_id"]) == ["N1", "N2"] and customers["is_stub"].all()
    write(tmp_path / "c.csv", "customer_id,name\nN1,Real Name\n")
    ws.import_file("customers", tmp_path / "c.csv")
    row = ws.customers().set_index("customer_id").loc["N1"]
    assert row["name"] == "Real Name" and not row["is_stub"]


def test_events_without_ids_are_idempotent(loaded: tierwise.Workspace, tmp_path: Path):
    text = ("customer_id,occurred_at,type,page\nC001,2025-01-01 10:00,page_view,/pricing\n"
            "C001,2025-01-01 10:00,page_view,/pricing\nC002,2025-01-02,login,\n")
    first = loaded.import_file("events", write(tmp_path / "e.csv", text))
    assert first.duplicates_collapsed == 1 and first.inserted == 2
    second = loaded.import_file("events", tmp_path / "e.csv")
    assert second.unchanged == 2 and loaded.count("events") == 2


def test_other_tables(loaded: tierwise.Workspace, tmp_path: Path):
    loaded.import_file("tickets", write(tmp_path / "t.csv",
                                        "工单号,客户编号,创建时间,关闭时间,优先级,满意度\n"
                                        "T1,C001,2025-03-01 09:00,2025-03-02 10:00,高,5\n"))
    loaded.import_file("feedback", write(tmp_path / "f.csv", "customer_id,at,nps,comment\n"
                                         "C001,2025-03-05,9,很好\n"))
    loaded.import_file("referrals", write(tmp_path / "r.csv", "推荐人,被推荐人,时间\n"
                                          "C001,C002,2025-03-01\n"))
    assert [loaded.count(t) for t in ("tickets", "feedback", "referrals")] == [1, 1, 1]
    ticket = loaded.table("tickets").to_pylist()[0]
    assert ticket["csat"] == 5 and ticket["priority"] == "高"


def test_quoted_cells_with_line_breaks(ws: tierwise.Workspace, tmp_path: Path):
    write(tmp_path / "c.csv", 'customer_id,channel\nX1,"two\nlines"\nX2,plain\n')
    ws.import_file("customers", tmp_path / "c.csv")
    assert sorted(ws.customers()["channel"]) == ["plain", "two\nlines"]


def test_big_file_in_many_batches(ws: tierwise.Workspace, tmp_path: Path, monkeypatch):
    from tierwise.ingest import readers

    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1 << 16)
    rows = "\n".join(f"C{i:06d},name {i},2025-01-{i % 28 + 1:02d}" for i in range(20_000))
    write(tmp_path / "c.csv", "customer_id,name,signup_at\n" + rows + "\n")
    result = ws.import_file("customers", tmp_path / "c.csv")
    assert result.inserted == 20_000 and ws.count("customers") == 20_000


def test_store_backends(any_ws: tierwise.Workspace, tmp_path: Path):
    """The same import, upsert and compaction on SQLite and PostgreSQL control stores."""
    any_ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    any_ws.import_file("orders", write(tmp_path / "o.csv", ORDERS_CSV))
    write(tmp_path / "o2.csv", "order_id,customer_id,ordered_at,amount\nO1,C001,2025-03-12,1\n"
          "O7,N9,2025-03-12,2\n")
    any_ws.import_file("orders", tmp_path / "o2.csv", unknown_customers="create")
    assert any_ws.count("orders") == 5 and any_ws.count("customers") == 4
    any_ws.compact()
    assert any_ws.count("orders") == 5
    assert any_ws.table("orders").filter(
        pa.compute.equal(any_ws.table("orders")["order_id"], "O1"))["amount"][0].as_py() == 1.0
    customers = any_ws.customers().set_index("customer_id")
    assert customers.loc["C002", "signup_at"] == datetime(2025, 3, 1, tzinfo=SH)


@pytest.mark.parametrize("ahead", [True, False], ids=["read-ahead", "read-after"])
@pytest.mark.parametrize("policy", ["reject", "create"])
def test_unknown_customers_among_many(ws: tierwise.Workspace, tmp_path: Path, monkeypatch,
                                      policy: str, ahead: bool):
    """Past the small look-up (every known id read, then compared with every row when the
    first batch already named many customers, or with the file's distinct ids when only the
    whole file did) the unknown ids are still found with every row that names them."""
    from tierwise import ImportRejected
    from tierwise.ingest import checks

    monkeypatch.setattr(checks, "SMALL_LOOKUP", 10)
    if not ahead:
        monkeypatch.setattr(checks.KnownAhead, "start", lambda self: None)
    known = "\n".join(f"K{i}" for i in range(40))
    ws.import_file("customers", write(tmp_path / "c.csv", "customer_id\n" + known + "\n"))
    lines = [f"O{i},K{i % 40},2025-01-01,1" for i in range(100)]
    lines[17] = "O17,U1,2025-01-01,1"
    lines[60] = "O60,U2,2025-01-01,1"
    lines[83] = "O83,U1,2025-01-01,1"
    write(tmp_path / "o.csv", "order_id,customer_id,ordered_at,amount\n" + "\n".join(lines))
    if policy == "create":
        result = ws.import_file("orders", tmp_path / "o.csv", unknown_customers="create")
        assert result.stubs_created == 2 and result.inserted == 100
        assert ws.count("customers") == 42
        return
    with pytest.raises(ImportRejected) as caught:
        ws.import_file("orders", tmp_path / "o.csv")
    rows = [(r["row"], r["column"], r["value"]) for r in caught.value.rejects]
    assert rows == [(19, "customer_id", "U1"), (62, "customer_id", "U2"),
                    (85, "customer_id", "U1")]
    assert ws.count("orders") == 0


def test_staged_files_keep_dictionaries_for_repeated_values_only(tmp_path: Path):
    """Columns whose values mostly differ (timestamps, many customers' ids) are written
    without a Parquet dictionary; repeated ones (a status, a category) with one."""
    import numpy as np

    from tierwise.definitions.schemas import ORDERS
    from tierwise.store.facts import StagingWriter, dictionary_columns

    n = 50_000
    table = pa.table({
        "order_id": [f"O{i}" for i in range(n)],
        "customer_id": [f"C{i % 40_000}" for i in range(n)],
        "ordered_at": pa.array(np.arange(n) * 1_000_000, pa.timestamp("us", tz="UTC")),
        "status": ["paid", "refunded"] * (n // 2),
        "_row": np.arange(n) + 2,
    })
    assert dictionary_columns(ORDERS, table) == ["status"]
    assert dictionary_columns(ORDERS, table.slice(0, 100)) == [
        "customer_id", "ordered_at", "status"]  # too few rows to tell
    writer = StagingWriter(tmp_path, ORDERS)
    full = pa.table({f.name: table[f.name] if f.name in table.column_names
                     else pa.nulls(n, f.type) for f in writer.arrow_schema})
    writer.write(full)
    staged = writer.close()
    meta = pq.ParquetFile(staged.path).metadata.row_group(0)
    encoded = {meta.column(i).path_in_schema: meta.column(i).encodings
               for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encoded["status"]
    assert "RLE_DICTIONARY" not in encoded["ordered_at"]
    assert pq.read_table(staged.path).select(table.column_names).equals(
        full.select(table.column_names))


@pytest.mark.parametrize("where", [None, "inside", "first of a batch", "last"])
def test_repeated_key_found_in_a_file_sorted_by_key(loaded: tierwise.Workspace,
                                                    tmp_path: Path, monkeypatch,
                                                    where: str | None):
    """A file whose keys ascend skips the hash of every key; a key repeated anywhere —
    inside a batch, or the last key of one batch first in the next — is still found."""
    from tierwise import ImportRejected
    from tierwise.ingest import checks, readers

    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1 << 16)
    seen = []
    original = checks.duplicate_keys
    monkeypatch.setattr(checks, "duplicate_keys",
                        lambda session, schema, staged, *rest:
                        seen.append(staged.keys_ascending)
                        or original(session, schema, staged, *rest))
    ids = [f"S{i:06d}" for i in range(5000)]

    def csv() -> Path:
        return write(tmp_path / "o.csv", "order_id,customer_id,ordered_at,amount\n"
                     + "\n".join(f"{k},C001,2025-01-01,1" for k in ids) + "\n")

    first = next(iter(readers.open_file(csv()).batches())).table.num_rows
    assert first < len(ids)  # more than one batch
    if where is None:
        assert loaded.import_file("orders", csv()).inserted == 5000
        assert seen == [True]
        return
    repeat = {"inside": 1000, "first of a batch": first, "last": len(ids) - 1}[where]
    ids[repeat] = ids[repeat - 1]
    with pytest.raises(ImportRejected) as caught:
        loaded.import_file("orders", csv())
    assert seen == [False]
    assert [(r["row"], r["value"]) for r in caught.value.rejects] == [
        (repeat + 2, ids[repeat])]


def test_a_clean_file_is_imported_without_loading_pandas(ws: tierwise.Workspace,
                                                         tmp_path: Path) -> None:
    """The steps every batch of a clean file takes build their Arrow values from buffers
    (``ingest.arrow_values``): pyarrow's conversion of Python values imports pandas on
    first use, 0.3 s of a 10M-row import that needs it nowhere. Run in a fresh
    interpreter, as the command is; the file has a default-filled column (status), known
    customers, and a second import finds every row unchanged."""
    import subprocess
    import sys

    ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS_CSV))
    orders = write(tmp_path / "o.csv", "order_id,customer_id,ordered_at,amount,status\n"
                   + "".join(f"O{i},C00{i % 3 + 1},2025-04-0{i % 9 + 1} 10:00:00,{i}.50,"
                             f"{'paid' if i % 2 else ''}\n" for i in range(500)))
    code = ("import sys, tierwise\n"
            "ws = tierwise.open(sys.argv[1])\n"
            "first, second = (ws.import_file('orders', sys.argv[2]) for _ in range(2))\n"
            "print(first.inserted, second.unchanged, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(ws.root), str(orders)],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "500 500 False", out


def _many_customers(ws: tierwise.Workspace, tmp_path: Path, count: int) -> list[str]:
    ids = [f"K{i:06d}" for i in range(count)]
    ws.import_file("customers", write(tmp_path / "many.csv",
                                      "customer_id\n" + "".join(f"{c}\n" for c in ids)))
    return ids


def _orders_of(path: Path, ids: list[str]) -> Path:
    return write(path, "order_id,customer_id,ordered_at,amount\n" + "".join(
        f"O{i},{c},2025-04-01 10:00:00,10\n" for i, c in enumerate(ids)))


def test_a_large_file_checks_its_customers_against_ids_read_while_it_stages(
        ws: tierwise.Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file naming more customers than a small lookup serves has the known ids read on a
    thread while it stages (``checks.KnownAhead``); an unknown id is still found, and a
    customer created after that read but before the check counts as known (the read is
    taken only if the customers are as they were)."""
    from tierwise.errors import ImportRejected
    from tierwise.ingest import checks

    ids = _many_customers(ws, tmp_path, checks.SMALL_LOOKUP + 5_000)
    reads: list[str] = []
    original = checks.KnownAhead._known

    def known_then_a_new_customer(self: checks.KnownAhead):  # type: ignore[no-untyped-def]
        found = original(self)
        reads.append("ahead")
        if len(reads) == 1:  # the first import: a customer arrives after the read
            ws.import_file("customers", write(tmp_path / "new.csv", "customer_id\nNEW1\n"))
        return found

    monkeypatch.setattr(checks.KnownAhead, "_known", known_then_a_new_customer)
    result = ws.import_file("orders", _orders_of(tmp_path / "o.csv", [*ids, "NEW1"]))
    assert reads == ["ahead"] and result.inserted == len(ids) + 1
    with pytest.raises(ImportRejected, match="GHOST"):
        ws.import_file("orders", _orders_of(tmp_path / "o2.csv", [*ids, "GHOST"]))
    assert reads == ["ahead", "ahead"]
