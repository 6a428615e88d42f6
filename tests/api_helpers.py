"""A small workspace served by the API, with one user and one key per role."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

import tierwise
from tierwise.definitions.roles import ROLES
from tierwise.segments import catalog as defs
from tierwise.segments import membership
from tierwise.server.app import create_app
from tierwise.store import accounts
from tierwise.web.auth import required_permission

PASSWORD = "a-long-test-password"

CUSTOMERS = """customer_id,姓名,邮箱,手机号,地址,城市,负责人,注册时间
C001,张三,Zhang.San@Example.com,13800138000,上海市浦东新区世纪大道100号,上海,王经理,2025-03-12
C002,李四,lisi@example.cn,139 0013 9000,北京市朝阳区建国路1号,北京,赵经理,2025-03-01
C003,王五,wangwu@example.cn,,深圳市南山区科技园,深圳,王经理,2025-02-28
C004,Erin Ode,erin@example.com,+1 415 555 0100,1 Market St,San Francisco,,2025-01-05
"""

ORDERS = """order_id,customer_id,ordered_at,amount,status,category
O1,C001,2025-03-12 10:00:00,1234.5,paid,手机
O2,C001,2025-04-01 12:00:00,99,paid,配件
O3,C002,2025-04-02 09:00:00,15000,refunded,电脑
O4,C003,2025-04-03 08:00:00,300,paid,配件
O5,C004,2025-05-03 08:00:00,80,paid,配件
O6,C002,2025-06-03 08:00:00,420,paid,电脑
"""

EVENTS = """customer_id,occurred_at,type,properties
C001,2025-04-01 11:00:00,page_view,"{""url"": ""/pricing"", ""email"": ""zhang.san@example.com""}"
C002,2025-04-01 11:00:00,page_view,"{""url"": ""/home""}"
"""


@dataclass
class Served:
    ws: tierwise.Workspace
    app: object
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, role: str | None = None) -> TestClient:
        client = TestClient(self.app, raise_server_exceptions=False)  # type: ignore[arg-type]
        if role is not None:
            client.headers["Authorization"] = f"Bearer {self.keys[role]}"
        return client


def build(root: Path, control_store: str | None = None, **settings: object) -> Served:
    """The workspace, served; ``settings`` as in tierwise.toml."""
    if control_store:
        settings["control_store"] = control_store
    ws = tierwise.init(root / "ws", **settings)
    for name, text in (("customers", CUSTOMERS), ("orders", ORDERS), ("events", EVENTS)):
        path = root / f"{name}.csv"
        path.write_text(text, encoding="utf-8")
        ws.import_file(name, path)
    ws.compute()
    for key, rule in (("buyers", "COUNT(orders) >= 1"), ("big", "SUM(orders.amount) > 1000")):
        definition = defs.SegmentDefinition(key=key, rule=rule)
        defs.write_file(ws, definition)
        defs.save(ws, definition)
    vip = defs.SegmentDefinition(key="vip_list", kind="static")
    defs.write_file(ws, vip)
    defs.save(ws, vip)
    membership.evaluate_all(ws)
    membership.edit_static(ws, "vip_list", add=["C001", "C004"])
    served = Served(ws, create_app(ws))
    with ws.control.write() as conn:
        for role in ROLES:
            owner = "王经理" if role == "operator" else None
            accounts.add_user(conn, role, PASSWORD, role, owner)
            served.keys[role] = accounts.create_key(conn, f"{role} key", role, "test",
                                                    owner_name=owner,
                                                    rate_per_second=1000).secret
    return served


def _flat_routes(routes: list[Any]) -> list[APIRoute]:
    """APIRoutes, looking inside included routers (FastAPI keeps them wrapped)."""
    found: list[APIRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.extend(_flat_routes(inner.routes))
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


def api_routes(app: Any) -> list[tuple[str, str, str | None]]:
    """Every (method, path, permission) of the REST API under /v1, sorted."""
    found = []
    for route in _flat_routes(app.routes):
        if not route.path.startswith("/v1"):
            continue
        needed = [required_permission(d.call) for d in route.dependant.dependencies]
        permission = next((p for p in needed if p), None)
        for method in route.methods:
            found.append((method, route.path, permission))
    return sorted(found)


def wait_for_job(client: TestClient, job_id: int) -> dict[str, Any]:
    """The job once it is done or failed (10 s at most)."""
    for _ in range(200):
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")
