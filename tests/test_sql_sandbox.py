"""`tierwise sql` and `Workspace.sql`: one SELECT over the registered tables, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from tests.conftest import write
from tests.test_cli import tw

import tierwise
from tierwise.cli.render import shown
from tierwise.engines.duckdb import ReadOnlyQuery
from tierwise.store import accounts
from tierwise.store.tables import audit_log

CUSTOMERS = """customer_id,name,email,phone,city
C001,Ilvana Torsk,ilvana.torsk@sql-canary.test,13811112222,上海
C002,李四,lisi@example.cn,13900139000,北京
"""
ORDERS = """order_id,customer_id,ordered_at,amount
O1,C001,2025-03-12 10:00:00,120.5
O2,C002,2025-04-02 09:00:00,99
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tierwise.init(tmp_path / "ws")
    ws.import_file("customers", write(tmp_path / "c.csv", CUSTOMERS))
    ws.import_file("orders", write(tmp_path / "o.csv", ORDERS))
    with ws.control.write() as conn:
        accounts.add_user(conn, "vera", "a-long-test-password", "viewer")
        accounts.add_user(conn, "ana", "a-long-test-password", "analyst")
    ws.close()
    return tmp_path / "ws"


ESCAPES = {
    "select * from read_csv('/etc/passwd')": "Permission Error",
    "select * from read_text('{root}/keys/pii.json')": "Permission Error",
    "select * from read_blob('{root}/control.db')": "Permission Error",
    "select * from glob('{root}/*')": "Permission Error",
    "COPY (select * from customers) TO '{tmp}/leak.csv'": "only SELECT",
    "COPY orders TO '{root}/facts/orders/x.parquet'": "only SELECT",
    "ATTACH '{tmp}/other.db' AS other": "only SELECT",
    "INSTALL httpfs": "only SELECT",
    "LOAD httpfs": "only SELECT",
    "SET enable_external_access = true": "only SELECT",
    "PRAGMA enable_external_access": "only SELECT",
    "CREATE TABLE x AS SELECT 1": "only SELECT",
    "DELETE FROM orders": "only SELECT",
    "select 1; COPY (select 1) TO '{tmp}/x.csv'": "one SELECT statement",
    "select * from nosuch": "Catalog Error",
}


@pytest.mark.parametrize("query", list(ESCAPES))
def test_sql_reads_the_workspace_tables_and_nothing_else(root: Path, tmp_path: Path,
                                                         query: str) -> None:
    text = query.format(root=root, tmp=tmp_path)
    out = tw("sql", text, "-w", str(root), code=1)
    assert ESCAPES[query] in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.csv")) or {p.name for p in tmp_path.glob("*.csv")} == {
        "c.csv", "o.csv"}
    assert not (tmp_path / "other.db").exists()
    ws = tierwise.open(root)
    assert ws.count("orders") == 2  # nothing was overwritten
    ws.close()


def test_personal_data_is_masked_unless_asked_for_and_allowed(root: Path) -> None:
    query = "select name, email, phone from customers where customer_id = 'C001'"
    masked = json.loads(tw("sql", query, "--format", "json", "-w", str(root)))
    assert masked == [{"name": "I***", "email": "i***@sql-canary.test",
                       "phone": "138****2222"}]
    full = json.loads(tw("sql", query, "--format", "json", "--pii", "-w", str(root)))
    assert full[0]["email"] == "ilvana.torsk@sql-canary.test"
    refused = tw("--actor", "vera", "sql", query, "--pii", "-w", str(root), code=1)
    assert "vera (viewer) may not" in refused and "pii:read" in refused
    tw("--actor", "ana", "sql", query, "--pii", "-w", str(root))
    ws = tierwise.open(root)
    with ws.control.read() as conn:
        entries = conn.execute(sa.select(audit_log.c.actor, audit_log.c.action)
                               .where(audit_log.c.action == "sql_pii")).all()
    ws.close()
    assert len(entries) == 2
    assert all(a.startswith("cli:") and "unknown" not in a for a, _ in entries)
    assert entries[1][0].endswith(" as ana")


def test_formats_dates_and_limits(root: Path) -> None:
    rows = tw("sql", "select order_id, amount, ordered_at from orders order by 1",
              "--format", "csv", "-w", str(root))
    assert rows.splitlines() == ["order_id,amount,ordered_at",
                                 "O1,120.5,2025-03-12T02:00:00+00:00",
                                 "O2,99.0,2025-04-02T01:00:00+00:00"]
    extreme = ("select DATE '0001-01-01' AS first, TIMESTAMPTZ '0001-01-01 00:00:00+00' AS "
               "early, TIMESTAMPTZ '9999-12-31 23:59:59+00' AS late, TIMESTAMP '294000-01-01' "
               "AS far, DATE '-5000-03-01' AS before")
    table = tw("sql", extreme, "-w", str(root))  # the terminal's table: printed, no error
    assert "0001-01-01" in table and "Traceback" not in table
    data = json.loads(tw("sql", extreme, "--format", "json", "-w", str(root)))
    assert data == [{"first": "0001-01-01", "early": "0001-01-01T00:00:00+00:00",
                     "late": "9999-12-31T23:59:59+00:00", "far": "294000-01-01T00:00:00",
                     "before": "-5000-03-01"}]
    # the last minute of 9999 in UTC is in year 10000 in Shanghai: shown in UTC instead
    assert shown(datetime(9999, 12, 31, 23, 59, tzinfo=UTC), ZoneInfo("Asia/Shanghai")) == \
        "9999-12-31 23:59 UTC"
    many = tw("sql", "select * from range(100000000000)", "--limit", "3", "-w", str(root))
    assert "more rows" in many
    tw("sql", "select 1", "--format", "xml", "-w", str(root), code=1)


def test_the_python_api_runs_in_the_same_sandbox(root: Path) -> None:
    ws = tierwise.open(root)
    assert ws.sql("select sum(amount) AS s from orders").column("s")[0].as_py() == 219.5
    with pytest.raises(ReadOnlyQuery, match="only SELECT"):
        ws.sql("COPY orders TO '/tmp/x.parquet'")
    with pytest.raises(ReadOnlyQuery, match="Permission"):
        ws.sql("select * from read_csv('/etc/passwd')")
    people = ws.sql("select email from customers order by customer_id")
    assert people.column("email").to_pylist() == ["i***@sql-canary.test", "l***@example.cn"]
    assert ws.sql("select email from customers order by customer_id", pii=True
                  ).column("email")[0].as_py() == "ilvana.torsk@sql-canary.test"
    ws.close()
