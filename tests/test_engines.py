"""One test body, every engine: DuckDB and Spark give identical customer statistics and
RFM scores over the same Parquet files."""

from __future__ import annotations

import math
import os
import shutil
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

import tierwise
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.engines import make_engine
from tierwise.models import rfm, stats
from tierwise.models.compute import compute


def _spark_available() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime"
    return None


SPARK_MISSING = _spark_available()
if SPARK_MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the Spark tests: {SPARK_MISSING}")

ENGINES = [pytest.param("duckdb"),
           pytest.param("spark", marks=pytest.mark.skipif(SPARK_MISSING is not None,
                                                           reason=str(SPARK_MISSING)))]
AS_OF = datetime(2026, 6, 30, 23, 59, 59, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    ws = tierwise.init(tmp_path_factory.mktemp("engines") / "ws")
    load_generated(ws, DemoSpec(customers=1_200, seed=21, end=date(2026, 6, 30)))
    # An update makes one file overlap another: both engines must deduplicate the same way.
    first = ws.table("orders").slice(0, 50)
    changed = first.set_column(first.schema.get_field_index("amount"), "amount",
                               pa.array([1.0] * 50))
    from tierwise.ingest.readers import RecordsSource

    ws.import_source("orders", RecordsSource("update", changed.column_names, iter([changed])))
    ws.updated_orders = set(first["order_id"].to_pylist())  # type: ignore[attr-defined]
    return ws


@pytest.fixture(scope="module")
def reference(workspace: tierwise.Workspace) -> dict[str, list[dict[str, object]]]:
    return _results(workspace, "duckdb")


def _results(ws: tierwise.Workspace, engine: str) -> dict[str, list[dict[str, object]]]:
    ws.engine = make_engine(engine)
    try:
        table = stats.customer_stats(ws, AS_OF, stats.Period(365))
        light = stats.rfm_summary(ws, AS_OF, stats.Period(365))
        clv_inputs = stats.clv_summary(ws, AS_OF)
        with ws.engine.session(arrow={"stats": table}) as session:
            scores = rfm.score(session, rfm.RFMSettings(), engine)
        snap = compute(ws, AS_OF, save=False)
    finally:
        ws.engine = make_engine("duckdb")
    return {"stats": table.to_pylist(), "rfm": scores.to_pylist(),
            "light": light.to_pylist(), "clv": clv_inputs.to_pylist(),
            "snapshot": snap.table.to_pylist()}


# Model outputs come from numerical optimisation on sums whose last bits depend on the
# engine's summation order; they agree to well within this tolerance.
FITTED = {"p_alive", "expected_purchases", "expected_spend", "clv", "profit_clv"}


def _same(a: object, b: object, rel: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9)  # type: ignore[arg-type]
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b
    return a == b


@pytest.mark.parametrize("engine", [p for p in ENGINES if p.values[0] != "duckdb"])
def test_engines_agree(workspace: tierwise.Workspace,
                       reference: dict[str, list[dict[str, object]]], engine: str):
    got = _results(workspace, engine)
    for part in ("stats", "rfm", "light", "clv", "snapshot"):
        assert len(got[part]) == len(reference[part]), part
        for mine, theirs in zip(got[part], reference[part], strict=True):
            for key, value in theirs.items():
                rel = 1e-6 if key in FITTED else 1e-9
                assert _same(mine[key], value, rel), (part, theirs["customer_id"], key,
                                                      mine[key], value)


@pytest.mark.parametrize("engine", ENGINES)
def test_dedupe_applies(workspace: tierwise.Workspace, engine: str):
    """Each engine reads one row per order, the updated version where there are two."""
    updated = workspace.updated_orders  # type: ignore[attr-defined]
    scans = workspace.facts.scans(["orders"])
    assert scans["orders"].dedupe  # the update's file overlaps the first one
    with make_engine(engine).session(scans) as session:
        rows = session.query("SELECT order_id, amount FROM orders").to_pylist()
    ids = [r["order_id"] for r in rows]
    assert len(ids) > 1_000 and len(ids) == len(set(ids))
    assert {r["order_id"] for r in rows if r["order_id"] in updated and r["amount"] == 1.0} \
        == updated


@pytest.mark.parametrize("engine", [p for p in ENGINES if p.values[0] != "duckdb"])
def test_satisfaction_of_periods_agrees(workspace: tierwise.Workspace, engine: str):
    """NPS and CSAT of the answers given in each month (the review's and the trend's
    figures) are the same on every engine, overall and per group."""
    from tierwise.insights.satisfaction import in_windows

    months = [(datetime(2026, m, 1, tzinfo=ZoneInfo("Asia/Shanghai")),
               datetime(2026, m + 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))) for m in range(1, 6)]
    ids = workspace.table("customers")["customer_id"]
    groups = pa.table({"customer_id": ids,
                       "grp": pa.array(["even" if i % 2 else "odd" for i in range(len(ids))])})
    expected = in_windows(workspace, months, groups)
    assert sum(w["figures"]["respondents"] for w in expected) > 0
    workspace.engine = make_engine(engine)
    try:
        got = in_windows(workspace, months, groups)
    finally:
        workspace.engine = make_engine("duckdb")
    assert got == expected


def test_a_scans_redirects_as_arrow_follow_the_scan() -> None:
    """The Arrow table of a scan's redirects is made once for one tuple of redirects and
    made again for another, even an equal one built apart."""
    from tierwise.engines.base import TableScan

    def scan(redirects: tuple[tuple[str, str], ...]) -> TableScan:
        return TableScan("orders", (), ("order_id",), False, pa.schema([]), redirects,
                         ("customer_id",))

    first = (("C1-old", "C1"), ("C2-old", "C2"))
    table = scan(first).redirect_table()
    assert table.to_pylist() == [{"customer_id": "C1-old", "survivor_id": "C1"},
                                 {"customer_id": "C2-old", "survivor_id": "C2"}]
    assert scan(first).redirect_table() is table
    other = (("C3-old", "C3"),)
    assert scan(other).redirect_table().to_pylist() == [{"customer_id": "C3-old",
                                                         "survivor_id": "C3"}]
    empty = scan(()).redirect_table()
    assert empty.num_rows == 0
    assert empty.schema == pa.schema([("customer_id", pa.string()),
                                      ("survivor_id", pa.string())])


def test_every_duckdb_session_works_in_utc() -> None:
    """UTC is the shared database's default, so every session starts in it, including one
    opened after another session chose a zone of its own (and the background engine's)."""
    from tierwise.engines.duckdb import DuckDBEngine

    engine = DuckDBEngine()
    for one in (engine, engine.for_background()):
        with one.session() as session:
            assert session.scalar("SELECT current_setting('TimeZone')") == "UTC"
            session.execute("SET TimeZone = 'Asia/Shanghai'")
            assert session.scalar("SELECT CAST(TIMESTAMPTZ '2026-01-01 00:00:00+00' AS "
                                  "VARCHAR)") == "2026-01-01 08:00:00+08"
        with one.session() as session:
            assert session.scalar("SELECT current_setting('TimeZone')") == "UTC"
            assert session.scalar("SELECT CAST(TIMESTAMPTZ '2026-01-01 00:00:00+00' AS "
                                  "VARCHAR)") == "2026-01-01 00:00:00+00"


@pytest.mark.parametrize("engine", ENGINES)
def test_whole_days_are_whole_on_every_engine(tmp_path, engine: str) -> None:
    """Days elapsed are whole days of 86,400 s, to the microsecond: a last order 0.4 s short
    of two days before as_of was one day ago (DuckDB's difference in seconds counts second
    boundaries and said two), in the statistics and in a rule alike."""
    from tests.conftest import write

    from tierwise.segments.evaluate import evaluate_rule

    ws = tierwise.init(tmp_path / "ws", timezone="UTC")
    ws.import_file("customers", write(tmp_path / "c.csv", "customer_id\nSHORT\nFULL\n"))
    ws.import_file("orders", write(tmp_path / "o.csv", (
        "order_id,customer_id,ordered_at,amount,status\n"
        "1,SHORT,2026-06-28T12:00:00.600000Z,10,paid\n"   # 2 days − 0.4 s before as_of
        "2,FULL,2026-06-28T12:00:00.000000Z,10,paid\n")))  # 2 days exactly
    as_of = datetime.fromisoformat("2026-06-30T12:00:00.200000+00:00")
    ws.engine = make_engine(engine)
    try:
        got = {r["customer_id"]: r["recency_days"]
               for r in stats.customer_stats(ws, as_of).to_pylist()}
        assert got == {"SHORT": 1, "FULL": 2}
        assert stats.rfm_summary(ws, as_of)["recency_days"].to_pylist() == [2, 1]
        members = evaluate_rule(ws, "DAYS_SINCE_LAST(orders) >= 2", as_of)
        assert members["customer_id"].to_pylist() == ["FULL"]
    finally:
        ws.engine = make_engine("duckdb")
        ws.close()
