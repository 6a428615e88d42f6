"""Columns of an order file beyond the canonical ones (payment method, store, …) are kept
as the order's properties and reachable in rules; fact files written before the column
existed read it as NULL on every engine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import tierwise
from test_engines import ENGINES, SPARK_MISSING
from tierwise.engines import make_engine
from tierwise.engines.duckdb import _file_columns
from tierwise.errors import TierwiseError
from tierwise.segments.evaluate import evaluate_rule

ORDERS = """订单号,客户编号,下单时间,金额,支付方式,门店
O1,C1,2026-06-01 10:00,100,微信支付,上海一店
O2,C1,2026-06-02 10:00,200,微信支付,上海一店
O3,C2,2026-06-03 10:00,300,支付宝,北京店
O4,C3,2026-06-04 10:00,50,微信支付,北京店
"""
AT = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture
def ws(tmp_path: Path) -> tierwise.Workspace:
    ws = tierwise.init(tmp_path / "ws")
    (tmp_path / "orders.csv").write_text(ORDERS, encoding="utf-8")
    result = ws.import_file("orders", tmp_path / "orders.csv", unknown_customers="create")
    assert result.ignored == []  # nothing of the file is dropped
    return ws


@pytest.mark.parametrize("engine", ENGINES)
def test_extra_columns_are_kept_and_usable(ws: tierwise.Workspace, engine: str):
    first = ws.table("orders").to_pylist()[0]
    assert first["properties"] == '{"支付方式":"微信支付","门店":"上海一店"}'
    ws.engine = make_engine(engine)
    try:
        rule = "COUNT(orders WHERE properties.支付方式 = '微信支付', LAST 90d) >= 2"
        assert evaluate_rule(ws, rule, AT)["customer_id"].to_pylist() == ["C1"]
        stores = "COUNT_DISTINCT(orders.customer_id WHERE properties.门店 = '北京店') >= 1"
        with pytest.raises(TierwiseError):  # customer_id is how a source joins, not a column
            evaluate_rule(ws, stores, AT)
        found = evaluate_rule(ws, "COUNT(orders WHERE properties.门店 = '北京店') >= 1", AT)
        assert found["customer_id"].to_pylist() == ["C2", "C3"]
    finally:
        ws.engine = make_engine("duckdb")


def test_a_bare_extra_name_says_where_it_is(ws: tierwise.Workspace):
    with pytest.raises(TierwiseError, match=r"kept as properties: write properties\.支付方式"):
        evaluate_rule(ws, "COUNT(orders WHERE 支付方式 = '微信支付') >= 1", AT)


@pytest.mark.parametrize("engine", ENGINES)
def test_files_written_before_the_column_read_it_as_null(ws: tierwise.Workspace,
                                                         engine: str):
    """A workspace whose order files predate ``properties``: every file is rewritten
    without it, and the scans still answer, with NULL properties."""
    for scan_file in ws.facts.scans(["orders"])["orders"].files:
        table = pq.read_table(scan_file.path)
        pq.write_table(table.drop_columns(["properties"]), scan_file.path)
        _file_columns.cache_clear()
    ws.engine = make_engine(engine)
    try:
        assert evaluate_rule(ws, "COUNT(orders) >= 2", AT)["customer_id"].to_pylist() == ["C1"]
        assert evaluate_rule(ws, "COUNT(orders WHERE properties.门店 = '北京店') >= 1",
                             AT).num_rows == 0
        assert ws.table("orders").column("properties").null_count == 4
    finally:
        ws.engine = make_engine("duckdb")


@pytest.mark.skipif(SPARK_MISSING is not None, reason=str(SPARK_MISSING))
def test_imports_on_a_spark_workspace(tmp_path: Path):
    """A workspace whose engine is Spark imports like any other: the staged file is
    checked by a local DuckDB engine (``Engine.for_staging``), the facts read by Spark."""
    ws = tierwise.init(tmp_path / "ws", engine="spark")
    path = tmp_path / "orders.csv"
    path.write_text(ORDERS, encoding="utf-8")
    ws.import_file("orders", path, unknown_customers="create")
    path.write_text(ORDERS.replace("O4,C3,2026-06-04 10:00,50", "O4,C3,2026-06-04 10:00,75"),
                    encoding="utf-8")
    ws.import_file("orders", path, unknown_customers="create")  # O4 updated
    rows = {r["order_id"]: r for r in ws.table("orders").to_pylist()}
    assert len(rows) == 4 and rows["O4"]["amount"] == 75.0
    assert rows["O3"]["properties"] == '{"支付方式":"支付宝","门店":"北京店"}'
