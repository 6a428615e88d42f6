"""The command line, end to end in one workspace."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import CUSTOMERS_CSV, ORDERS_CSV, write
from typer.testing import CliRunner

import tierwise
from tierwise.cli.main import app
from tierwise.demo.generator import DemoSpec, generate_chunk

runner = CliRunner()


def tw(*args: str, code: int = 0) -> str:
    """Run the CLI in-process; errors map to exit codes as ``tierwise.cli.main.main`` does."""
    try:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        exit_code = result.exit_code
        output = result.output
    except tierwise.ImportRejected as exc:
        exit_code, output = 2, str(exc)
    except tierwise.TierwiseError as exc:
        exit_code, output = 1, str(exc)
    assert exit_code == code, output
    return output


def test_cli_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "acme"
    assert "Created workspace" in tw("init", str(root))
    monkeypatch.setenv("TIERWISE_WORKSPACE", str(root))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "crm.csv", CUSTOMERS_CSV, "gbk")
    out = tw("import", "customers", str(tmp_path / "crm.csv"))
    assert "3 new" in out
    write(tmp_path / "o.csv", ORDERS_CSV.replace("订单号", "单号"))
    out = tw("import", "orders", str(tmp_path / "o.csv"), "--map", "单号=order_id",
             "--save-mapping", "shop", "--dry-run")
    assert "would import 4 rows" in out and tierwise.open(root).count("orders") == 0
    tw("import", "orders", str(tmp_path / "o.csv"), "--mapping", "shop", code=1)  # not saved
    tw("import", "orders", str(tmp_path / "o.csv"), "--map", "单号=order_id",
       "--save-mapping", "shop")
    assert "shop" in tw("mappings", "list")
    assert "单号: order_id" in tw("mappings", "show", "shop")
    out = tw("import", "orders", str(tmp_path / "o.csv"), "--mapping", "shop", "--json")
    assert json.loads(out)["unchanged"] == 4
    out = tw("customers", "show", "C001")
    assert "张三" in out and "1,333.50" in out and "O2" in out
    assert "orders" in tw("status")
    assert "1,234.50" in tw("sql", "select order_id, amount from orders order by 1")
    assert "orders: 1 file(s) → 1" in tw("compact")
    tw("customers", "show", "NOPE", code=1)


def test_cli_rejects_with_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tw("init", str(tmp_path / "w"))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.csv", "order_id,customer_id,ordered_at,amount\nX,Y,2025-01-01,1\n")
    out = tw("import", "orders", "bad.csv", "-w", str(tmp_path / "w"), code=2)
    assert "unknown customer" in out
    assert (tmp_path / "bad.rejected.csv").exists()


def test_exit_codes_of_the_real_command(tmp_path: Path):
    import subprocess
    import sys

    tw("init", str(tmp_path / "w"))
    write(tmp_path / "bad.csv", "order_id,customer_id,ordered_at,amount\nX,Y,2025-01-01,1\n")
    run = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "import", "orders", "bad.csv",
                          "-w", str(tmp_path / "w")], cwd=tmp_path, capture_output=True,
                         text=True)
    # a new workspace speaks zh-CN: the label, the summary and the reason are Chinese
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "已拒绝：" in run.stderr and "未知客户" in run.stderr, run.stderr
    assert "未知客户" in (tmp_path / "bad.rejected.csv").read_text(encoding="utf-8-sig")
    run = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "import", "orders", "bad.csv",
                          "-w", str(tmp_path / "w")], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "TIERWISE_LANG": "en"})
    assert run.returncode == 2 and "rejected:" in run.stderr and "unknown customer" in run.stderr
    assert "unknown customer" in (tmp_path / "bad.rejected.csv").read_text(encoding="utf-8-sig")
    run = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "status", "-w",
                          str(tmp_path / "nothing")], capture_output=True, text=True)
    assert run.returncode == 1 and "not a tierwise workspace" in run.stderr


def test_demo_command(tmp_path: Path):
    out = tw("demo", "-w", str(tmp_path / "d"), "--customers", "300", "--seed", "7",
             "--end", "2026-06-30")
    # 300 customers and the people at its B2B accounts
    people = generate_chunk(DemoSpec(customers=300, seed=7, end=date(2026, 6, 30)), 0)
    assert f"customers: imported {people['customers'].num_rows} rows" in out
    assert people["customers"].num_rows > 300
    assert tierwise.open(tmp_path / "d").count("orders") > 300


def test_import_from_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tw("init", str(tmp_path / "w"))
    db = tmp_path / "crm.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table members (id text, full_name text, joined text, spend real)")
        conn.executemany("insert into members values (?, ?, ?, ?)",
                         [("M1", "赵六", "2024-05-01", 10.5), ("M2", "钱七", "2024/6/2", None)])
    out = tw("import", "customers", "--from-sql", f"sqlite:///{db}", "--query",
             "select id as customer_id, full_name as name, joined as signup_at, spend "
             "from members", "-w", str(tmp_path / "w"))
    assert "2 new" in out
    ws = tierwise.open(tmp_path / "w")
    assert sorted(ws.customers()["name"]) == ["赵六", "钱七"]
    out = tw("import", "customers", "--from-sql", f"sqlite:///{db}", "--query",
             "select nope from nowhere", "-w", str(tmp_path / "w"), code=1)
    assert "the query failed" in out and "no such table: nowhere" in out


def test_import_from_postgres(pg_url: str, ws: tierwise.Workspace):
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("create table crm_orders (no text, cust text, at timestamptz, "
                             "total numeric(12,2))"))
        conn.execute(sa.text("insert into crm_orders values ('A1', 'P1', "
                             "'2025-03-01 10:00+08', 12.34), ('A2', 'P1', "
                             "'2025-03-02 00:00+00', 5)"))
    engine.dispose()
    result = ws.import_sql("orders", pg_url, "select no as order_id, cust as customer_id, "
                           "at as ordered_at, total as amount from crm_orders",
                           unknown_customers="create")
    assert result.inserted == 2 and result.stubs_created == 1
    rows = sorted(ws.table("orders").to_pylist(), key=lambda r: r["order_id"])
    assert rows[0]["amount"] == pytest.approx(12.34)
    assert rows[0]["ordered_at"].isoformat() == "2025-03-01T02:00:00+00:00"


def test_value_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "v"
    tw("demo", "-w", str(root), "--customers", "1500", "--seed", "3", "--end", "2026-06-30")
    monkeypatch.setenv("TIERWISE_WORKSPACE", str(root))
    tw("rfm", code=1)  # no snapshot yet: a clear error, not a traceback
    out = tw("compute", "--as-of", "2026-06-30")
    assert "1,500 customers as of 2026-06-30 23:59" in out and "A 类" in out
    assert "冠军客户" in tw("rfm") or "忠诚客户" in tw("rfm")
    assert "Tiers (pareto [0.5, 0.8, 0.95])" in tw("tiers")
    assert "已流失" in tw("lifecycle")
    out = tw("tiers", "plan", "--method", "percentile", "--cuts", "0.1,0.2,0.3",
             "--as-of", "2026-06-30")
    assert "would change tier" in out and "150 │" in out.replace(",", "")
    assert "version 1" in tw("tiers", "apply", "--method", "percentile", "--cuts",
                             "0.1,0.2,0.3")
    tw("compute", "--as-of", "2026-06-30")
    assert "snapshot 1 (rows) → 2" in tw("tiers", "migration", "--from", "1", "--to", "2")
    result = json.loads(tw("clv", "fit", "--model", "bgnbd", "--calibration-end",
                           "2026-03-31", "--as-of", "2026-06-30", "--json"))
    assert set(result["params"]) == {"r", "alpha", "a", "b"}
    assert result["holdout"]["actual_total"] > 0
    result = json.loads(tw("clv", "fit", "--model", "sbg", "--survivors",
                           "1000,631,468,382,326,289,262,241", "--json"))
    assert round(result["params"]["alpha"], 3) == 0.704
    tw("clv", "fit", "--model", "sbg", code=1)
    out = tw("clv", "predict", "--horizon", "12m", "--out", str(tmp_path / "p.csv"),
             "--as-of", "2026-06-30")
    assert "wrote 1,500 predictions" in out
    assert (tmp_path / "p.csv").read_text(encoding="utf-8-sig").startswith("customer_id,p_alive")
    assert "version 1" in tw("rfm", "settings", "--scheme", "cn8")
    tw("compute", "--as-of", "2026-06-30")
    assert "重要价值客户" in tw("rfm")
    write(tmp_path / "s.yaml", "key: mine\nlabels: {a: {zh-CN: 甲, en: A}, b: {zh-CN: 乙, en: B}}"
          "\nrules:\n  - {segment: a, r: 5}\n  - {segment: b, r: 1-3}\n")
    out = tw("rfm", "scheme", str(tmp_path / "s.yaml"))
    assert "uncovered cells: R4F1" in out and "unreachable segments: none" in out


def test_a_command_starts_without_loading_what_it_may_not_need() -> None:
    """pandas (with pyarrow's datasets), scipy and an argon2 hash made to answer logins of
    unknown users cost every command 0.8 s before it did anything; they are loaded or made
    when something uses them."""
    import subprocess
    import sys

    code = ("import sys, tierwise.cli.main\n"
            "from tierwise.store import accounts\n"
            "print(sorted(m for m in ('pandas', 'scipy', 'pyarrow.dataset') if m in sys.modules),"
            " accounts._dummy_hash.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] 0", out


_ARENA_FLAGS = """
import sys
if sys.argv[1] == "tierwise first":
    import tierwise
import pyarrow as pa
buffer = pa.allocate_buffer(64 << 20)
address = buffer.address
with open("/proc/self/smaps") as smaps:
    inside = False
    for line in smaps:
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(part, 16) for part in head.split("-"))
            inside = start <= address < end
        elif inside and head == "VmFlags:":
            print(pa.default_memory_pool().backend_name, "hg" in line.split()[1:])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_arrow_buffers_are_not_given_transparent_huge_pages() -> None:
    """Arrow's mimalloc marks its arenas for transparent huge pages (VmFlags 'hg') unless
    MIMALLOC_ALLOW_THP=0 is in the environment when pyarrow loads; importing tierwise first
    sets it (each huge page of a short-lived buffer cost ~13 ms to fault in on a virtual
    machine), and a value the user set wins."""
    import subprocess

    def flags(order: str, **env: str) -> str:
        environment = {k: v for k, v in os.environ.items() if k != "MIMALLOC_ALLOW_THP"}
        return subprocess.run([sys.executable, "-c", _ARENA_FLAGS, order], capture_output=True,
                              text=True, check=True, env={**environment, **env}).stdout.strip()

    if not flags("pyarrow alone").startswith("mimalloc"):
        pytest.skip("Arrow's default memory pool here is not mimalloc")
    # The check can see the flag: pyarrow alone, or a user who asks for huge pages, has it.
    assert flags("pyarrow alone") == "mimalloc True"
    assert flags("tierwise first", MIMALLOC_ALLOW_THP="1") == "mimalloc True"
    assert flags("tierwise first") == "mimalloc False"
