"""Shared fixtures: workspaces on SQLite and (when a server is given) PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import tierwise
from tierwise.store.tables import metadata

PG_ENV = "TIERWISE_TEST_PG_URL"


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{PG_ENV} is not set: CI must run the PostgreSQL tests")
    return None


@pytest.fixture
def pg_databases() -> Iterator[Callable[[], str]]:
    """Make fresh, empty PostgreSQL databases (URLs) for one test; dropped afterwards."""
    admin = _pg_admin_url()
    if admin is None:
        pytest.skip(f"no PostgreSQL server: set {PG_ENV}=postgresql://user@host/db")
    engine = sa.create_engine(admin.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"tw_{uuid.uuid4().hex[:12]}"
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return sa.engine.make_url(admin).set(database=name).render_as_string(
            hide_password=False)

    try:
        yield make
    finally:
        with engine.connect() as conn:
            for name in made:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def pg_url(pg_databases: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    return pg_databases()


@pytest.fixture(params=["sqlite", "postgres"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///control.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[tierwise.Workspace]:
    """An empty SQLite-backed workspace in Asia/Shanghai."""
    workspace = tierwise.init(tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture
def any_ws(tmp_path: Path, control_url: str) -> Iterator[tierwise.Workspace]:
    """An empty workspace on each control store (SQLite, PostgreSQL)."""
    workspace = tierwise.init(tmp_path / "ws", control_store=control_url)
    yield workspace
    workspace.close()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def snapshot(ws: tierwise.Workspace) -> dict[str, object]:
    """Everything a user could observe: control-store rows and the files of the workspace."""
    state: dict[str, object] = {}
    with ws.control.read() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            state[table.name] = sorted(repr(tuple(r)) for r in rows)
    files = {}
    for path in sorted(ws.root.rglob("*")):
        if path.is_file() and not path.name.startswith("control.db"):
            files[path.relative_to(ws.root).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    state["files"] = files
    return state


def recount(conn: sa.Connection) -> dict[str, int]:
    """Every segment's members, counted from the rows."""
    from tierwise.store.tables import segment_members

    m = segment_members.c
    return {k: int(n) for k, n in conn.execute(
        sa.select(m.segment_key, sa.func.count()).group_by(m.segment_key))}


def sizes_agree(ws: tierwise.Workspace) -> None:
    """The kept member count of every segment is what counting its members gives."""
    from tierwise.store import sizes

    with ws.control.read() as conn:
        kept = {key: n for key, n in sizes.of(conn).items() if n}
        assert kept == recount(conn)


CUSTOMERS_CSV = """customer_id,姓名,手机号,城市,注册时间,标签
C001,张三,13800138000,上海,2025/3/12,"vip,高价值"
C002,李四,13900139000,北京,2025年3月1日,
C003,王五,,深圳,2025-02-28 09:30:00,老客户
"""

ORDERS_CSV = """订单号,客户编号,下单时间,金额,状态
O1,C001,2025-03-12 10:00:00,"¥1,234.50",已支付
O2,C001,2025/4/1,99元,paid
O3,C002,2025年4月2日,1.5万,refunded
O4,C003,2025-04-03T08:00:00+08:00,300,
"""


@pytest.fixture
def loaded(ws: tierwise.Workspace, tmp_path: Path) -> tierwise.Workspace:
    ws.import_file("customers", write(tmp_path / "customers.csv", CUSTOMERS_CSV))
    ws.import_file("orders", write(tmp_path / "orders.csv", ORDERS_CSV))
    return ws
