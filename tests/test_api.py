"""The REST API: authentication, the role matrix, masking, limits, and the main flows."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.api_helpers import PASSWORD, Served, api_routes, build, wait_for_job

from tierwise.definitions.roles import ROLES
from tierwise.store import accounts
from tierwise.store.control import utcnow
from tierwise.store.tables import api_keys


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    found = build(tmp_path_factory.mktemp("api"))
    yield found  # type: ignore[misc]
    found.ws.close()


# -- the role matrix ---------------------------------------------------------------------

#: Path parameters that name things that exist in the fixture workspace.
PATH_VALUES = {"customer_id": "C003", "key": "buyers", "job_id": "999999", "username": "nobody",
               "key_id": "000000000000", "name": "rfm", "pair_id": "999999",
               "merge_id": "999999", "task_id": "999999"}
#: A body each write route accepts as well-formed (the answer may still be 4xx for state).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/customers"): {"customers": [{"customer_id": "C900", "name": "测试"}]},
    ("PATCH", "/v1/customers/{customer_id}"): {"city": "深圳"},
    ("PUT", "/v1/customers/{customer_id}/preferences"): {"channel": "email",
                                                         "unsubscribed": True},
    ("POST", "/v1/segments/check"): {"rule": "COUNT(orders) >= 1"},
    ("POST", "/v1/segments/preview"): {"rule": "COUNT(orders) >= 1"},
    ("POST", "/v1/segments/evaluate"): {"keys": ["buyers"]},
    ("PUT", "/v1/segments/{key}"): {"rule": "COUNT(orders) >= 1"},
    ("POST", "/v1/segments/{key}/members"): {"add": []},
    ("PUT", "/v1/settings/{name}"): {},
    ("POST", "/v1/users"): {"username": "someone", "password": PASSWORD, "role": "viewer"},
    ("PATCH", "/v1/users/{username}"): {"disabled": True},
    ("POST", "/v1/keys"): {"name": "x", "role": "viewer"},
    ("POST", "/v1/privacy/retention"): {"days": {"events": 100000}},
    ("POST", "/v1/customers/match"): {"customers": [{"email": "lisi@example.cn"}]},
    ("POST", "/v1/duplicates/scan"): {"lower": 0.99, "upper": 1.0},
    ("POST", "/v1/duplicates/{pair_id}/accept"): {},
    ("POST", "/v1/merges"): {"survivor_id": "NOPE", "merged_ids": ["NOPE2"]},
    ("POST", "/v1/insights/clusters"): {"k": 2},
    ("POST", "/v1/insights/churn"): {},
    ("POST", "/v1/insights/lookalikes"): {},
    ("PUT", "/v1/triggers/{key}"): {"on": {"event": "enter", "segment": "buyers"},
                                    "action": {"type": "tag", "tag": "buyer"}},
    ("PUT", "/v1/playbooks/{key}"): {"applies_to": {"tier": "A"}, "sla_response_hours": 4},
    ("PUT", "/v1/lead-scoring"): {"events": [{"when": "type = 'page_view'", "points": 1}]},
    ("POST", "/v1/deliveries/replay"): {"ids": [999999]},
}
#: Destructive routes get ids that do not exist: allowed roles get 404, others 403.
PATH_OVERRIDES = {("DELETE", "/v1/segments/{key}"): {"key": "no_such_segment"},
                  ("DELETE", "/v1/triggers/{key}"): {"key": "no_such_trigger"},
                  ("DELETE", "/v1/playbooks/{key}"): {"key": "no_such_playbook"},
                  ("POST", "/v1/tasks/{task_id}/complete"): {"task_id": "999999"}}
#: Query strings for routes with required parameters.
QUERIES = {("GET", "/v1/insights/uplift"): "?treated=buyers&holdout=vip_list&since=2025-01-01",
           ("GET", "/v1/insights/uplift/action"): "?source=trigger:none"}
SKIP = {("DELETE", "/v1/privacy/customers/{customer_id}"),  # covered by the erasure test
        ("POST", "/v1/imports")}  # multipart; covered by the import test


def test_every_route_needs_authentication(served: Served) -> None:
    client = served.client()
    for method, path, _ in api_routes(served.app):
        if path == "/v1/auth/login":
            continue
        url = path.format(**PATH_VALUES)
        response = client.request(method, url, json=BODIES.get((method, path)))
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs", follow_redirects=False).status_code == 303
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("role", list(ROLES))
def test_role_matrix(served: Served, role: str) -> None:
    """Every route, with this role's key: denied exactly when the role lacks the permission."""
    client = served.client(role)
    checked = 0
    for method, path, permission in api_routes(served.app):
        if (method, path) in SKIP:
            continue
        url = path.format(**{**PATH_VALUES, **PATH_OVERRIDES.get((method, path), {})}) \
            + QUERIES.get((method, path), "")
        response = client.request(method, url, json=BODIES.get((method, path)))
        assert response.status_code < 500, (role, method, path, response.text)
        if permission is not None and permission not in ROLES[role]:
            assert response.status_code == 403, (role, method, path, response.text)
            assert permission in response.json()["detail"]
        else:
            assert response.status_code not in (401, 403), (role, method, path, response.text)
        checked += 1
    assert checked >= 35


def test_every_v1_route_declares_a_permission(served: Served) -> None:
    unguarded = [(m, p) for m, p, perm in api_routes(served.app) if perm is None
                 and not p.startswith("/v1/auth/")]
    assert unguarded == []


# -- sessions, CSRF, keys ----------------------------------------------------------------

def test_login_session_and_csrf(served: Served) -> None:
    client = served.client()
    wrong = client.post("/v1/auth/login", json={"username": "analyst", "password": "nope"},
                        headers={"Accept-Language": "en"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "wrong user name or password"
    # without a language asked for, the workspace's (zh-CN)
    wrong = client.post("/v1/auth/login", json={"username": "analyst", "password": "nope"})
    assert wrong.json()["detail"] == "用户名或密码错误"
    ok = client.post("/v1/auth/login", json={"username": "analyst", "password": PASSWORD})
    assert ok.status_code == 200
    assert "httponly" in ok.headers["set-cookie"].lower()
    assert "samesite=strict" in ok.headers["set-cookie"].lower()
    csrf = ok.json()["csrf_token"]
    assert client.get("/v1/auth/me").json()["role"] == "analyst"
    body = {"rule": "COUNT(orders) >= 1"}
    refused = client.post("/v1/segments/check", json=body)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    assert client.post("/v1/segments/check", json=body,
                       headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.post("/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/v1/auth/me").status_code == 401


def test_sign_in_form_with_csrf(served: Served) -> None:
    import re

    client = served.client()
    to_login = client.get("/docs", follow_redirects=False)
    assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login")
    form = client.get("/login?next=//evil.example")
    assert 'name="next" value="/"' in form.text  # no open redirect: the dashboard instead
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    fields = {"username": "viewer", "password": PASSWORD, "next": "/docs"}
    forged = client.post("/login", data={**fields, "csrf": "made-up"}, follow_redirects=False)
    assert forged.status_code == 403
    wrong = client.post("/login", data={**fields, "password": "nope", "csrf": token})
    assert wrong.status_code == 401 and "密码错误" in wrong.text
    token = re.search(r'name="csrf" value="([^"]+)"', wrong.text).group(1)  # type: ignore[union-attr]
    ok = client.post("/login", data={**fields, "csrf": token}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/docs"
    assert "tierwise API" in client.get("/docs").text


def test_disabled_user_loses_sessions(served: Served) -> None:
    ws = served.ws
    with ws.control.write() as conn:
        accounts.add_user(conn, "temp", PASSWORD, "viewer")
    client = served.client()
    assert client.post("/v1/auth/login", json={"username": "temp", "password": PASSWORD}
                       ).status_code == 200
    with ws.control.write() as conn:
        accounts.set_user(conn, "temp", disabled=True)
    assert client.get("/v1/auth/me").status_code == 401
    again = client.post("/v1/auth/login", json={"username": "temp", "password": PASSWORD})
    assert again.status_code == 401 and "已停用" in again.json()["detail"]


def test_key_expiry_revocation_and_scopes(served: Served) -> None:
    ws = served.ws
    with ws.control.write() as conn:
        old = accounts.create_key(conn, "old", "analyst", "test",
                                  expires_at=utcnow() + timedelta(seconds=1))
        conn.execute(api_keys.update().where(api_keys.c.key_id == old.key_id)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))  # time passed
        expired = old.secret
        scoped = accounts.create_key(conn, "narrow", "analyst", "test",
                                     scopes=["segments:read"]).secret
        revoked = accounts.create_key(conn, "gone", "analyst", "test")
    client = served.client()

    def get(key: str, url: str = "/v1/segments") -> Any:
        return client.get(url, headers={"Authorization": f"Bearer {key}"})

    assert get(expired).status_code == 401 and "已过期" in get(expired).json()["detail"]
    assert get(scoped).status_code == 200
    assert get(scoped, "/v1/customers").status_code == 403
    assert get(revoked.secret).status_code == 200
    with ws.control.write() as conn:
        accounts.revoke_key(conn, revoked.key_id)
    assert get(revoked.secret).status_code == 401
    assert "已被吊销" in get(revoked.secret).json()["detail"]
    tampered = revoked.secret[:-2] + ("AA" if not revoked.secret.endswith("AA") else "BB")
    assert get(tampered).json()["detail"] == "未知的 API 密钥"
    assert get("not-a-key").status_code == 401
    with ws.control.read() as conn:
        stored = json.dumps([dict(k) for k in accounts.list_keys(conn)], default=str)
    assert revoked.secret.split("_", 2)[2] not in stored


def test_rate_limit_per_key(served: Served) -> None:
    with served.ws.control.write() as conn:
        slow = accounts.create_key(conn, "slow", "viewer", "test", rate_per_second=1).secret
    client = served.client()
    codes = [client.get("/v1/segments", headers={"Authorization": f"Bearer {slow}"})
             for _ in range(4)]
    assert [c.status_code for c in codes[:2]] == [200, 200]
    assert codes[-1].status_code == 429
    assert int(codes[-1].headers["retry-after"]) >= 1


def test_limits_headers_and_problems(served: Served) -> None:
    client = served.client("admin")
    huge = client.post("/v1/segments/check", content=b"{" + b" " * (2 << 20) + b"}",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413
    assert huge.headers["content-type"] == "application/problem+json"
    page = client.get("/v1/segments")
    for header in ("x-content-type-options", "x-frame-options", "content-security-policy",
                   "referrer-policy"):
        assert header in page.headers
    assert "access-control-allow-origin" not in client.options(
        "/v1/segments", headers={"Origin": "https://evil.example",
                                 "Access-Control-Request-Method": "GET"}).headers
    bad = client.post("/v1/segments/check", json={"rule": "COUNT(orders >= 1"},
                      headers={"Accept-Language": "en"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert "column" in bad.json()["detail"] or "position" in bad.json()["detail"] \
        or "expected" in bad.json()["detail"]
    invalid = client.get("/v1/customers?limit=0")
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["location"] == "query.limit"
    missing = client.get("/v1/customers/NOPE")
    assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]
    assert "tierwise API" in client.get("/docs").text


def test_bodies_take_exactly_the_json_types_they_declare(served: Served) -> None:
    """No guessing: ``true`` is not the integer 1, ``1`` not a boolean, a number not a
    date-time (the schema says what each field is, and the answer names the field)."""
    client = served.client("admin")
    wrong = [("/v1/deliveries/replay", {"ids": [True]}, "body.ids.0"),
             ("/v1/insights/churn", {"horizon_days": True}, "body.horizon_days"),
             ("/v1/insights/churn", {"save": 1}, "body.save"),
             ("/v1/segments/preview", {"rule": "COUNT(orders) >= 1", "sample": False},
              "body.sample"),
             ("/v1/segments/preview", {"rule": "COUNT(orders) >= 1", "as_of": 1782813600},
              "body.as_of"),
             ("/v1/duplicates/scan", {"lower": True}, "body.lower"),
             ("/v1/privacy/retention", {"days": {"events": True}}, "body.days.events")]
    for path, body, location in wrong:
        answer = client.post(path, json=body)
        assert answer.status_code == 422, (path, body, answer.text)
        assert answer.json()["errors"][0]["location"] == location, answer.json()
    instant = client.post("/v1/segments/preview", json={
        "rule": "COUNT(orders) >= 1", "as_of": "2026-06-30T18:00:00+08:00", "sample": 2})
    assert instant.status_code == 200, instant.text
    # JSON has one number type: 1 is a float too (this scan is turned away for its band)
    band = client.post("/v1/duplicates/scan", json={"lower": 1, "upper": 0.5})
    assert band.status_code == 422 and "不能大于 upper" in band.json()["detail"]  # zh-CN workspace


# -- customers and PII -------------------------------------------------------------------

def test_masking_by_role(served: Served) -> None:
    rows = {role: served.client(role).get("/v1/customers").json()["items"]
            for role in ("analyst", "operator", "viewer")}
    analyst = {r["customer_id"]: r for r in rows["analyst"]}
    assert analyst["C001"]["phone"] == "+8613800138000"
    assert analyst["C001"]["email"] == "zhang.san@example.com"
    viewer = {r["customer_id"]: r for r in rows["viewer"]}
    assert viewer["C001"]["phone"] == "138****8000"
    assert viewer["C001"]["email"] == "z***@example.com"
    assert viewer["C001"]["name"] == "张*"
    assert viewer["C001"]["address"].endswith("***")
    assert viewer["C001"]["pii_masked"] is True
    operator = {r["customer_id"]: r for r in rows["operator"]}
    assert operator["C001"]["phone"] == "+8613800138000"  # owned by 王经理
    assert operator["C002"]["phone"] == "139****9000"  # owned by someone else


def test_search_by_name_email_phone(served: Served) -> None:
    client = served.client("analyst")

    def ids(q: str) -> list[str]:
        return [r["customer_id"] for r in client.get("/v1/customers", params={"q": q}
                                                     ).json()["items"]]

    assert ids("ZHANG.SAN@example.com") == ["C001"]
    assert ids("138 0013 8000") == ["C001"]
    assert ids("+86 139-0013-9000") == ["C002"]
    assert ids("李四") == ["C002"]
    assert ids("C00") == ["C001", "C002", "C003", "C004"]
    page = client.get("/v1/customers", params={"limit": 2}).json()
    rest = client.get("/v1/customers", params={"limit": 2, "after": page["next_after"]}).json()
    assert [r["customer_id"] for r in page["items"] + rest["items"]] == [
        "C001", "C002", "C003", "C004"]


def test_customer_write_and_profile(served: Served) -> None:
    client = served.client("analyst")
    created = client.post("/v1/customers", json={"customers": [
        {"customer_id": "C100", "name": "新 客户", "email": " New@Example.COM ",
         "phone": "13700137000", "city": "杭州市"}]})
    assert created.status_code == 200, created.text
    assert created.json()["inserted"] == 1
    shown = client.get("/v1/customers/C100").json()["customer"]
    assert (shown["name"], shown["email"], shown["phone"], shown["city"]) == (
        "新客户", "new@example.com", "+8613700137000", "杭州")
    bad = client.post("/v1/customers", json={"customers": [
        {"customer_id": "C101", "signup_at": "not a date"}]})
    assert bad.status_code == 422
    assert bad.json()["rejects"][0]["column"] == "signup_at"
    assert client.get("/v1/customers/C101").status_code == 404
    patched = client.patch("/v1/customers/C100", json={"city": "宁波"})
    assert patched.status_code == 200
    assert client.get("/v1/customers/C100").json()["customer"]["city"] == "宁波"
    profile = client.get("/v1/customers/C001/profile").json()
    assert profile["order_summary"]["orders"] == 2
    assert profile["values"]["customer_id"] == "C001"
    assert {h["segment_key"] for h in profile["segment_history"]} >= {"buyers", "vip_list"}
    values = client.get("/v1/customers/C001").json()
    assert values["segments"] == ["buyers", "big", "vip_list"] or set(values["segments"]) == {
        "buyers", "big", "vip_list"}


# -- segments ----------------------------------------------------------------------------

def test_segment_plan_apply_members_export(served: Served) -> None:
    client = served.client("analyst")
    rule = "COUNT(orders) >= 1 AND city IN ('上海', '北京')"
    plan = client.put("/v1/segments/shoppers", json={"rule": rule,
                                                     "names": {"en": "Shoppers"}})
    assert plan.status_code == 200, plan.text
    assert plan.json()["applied"] is False
    assert plan.json()["plan"]["change"] == "new"
    assert plan.json()["plan"]["members_after"] == 2
    assert plan.json()["plan"]["entering"] == ["C001", "C002"]
    applied = client.put("/v1/segments/shoppers?dry_run=false&evaluate=true",
                         json={"rule": rule})
    assert applied.json()["applied"] is True and applied.json()["version"] == 1
    members = client.get("/v1/segments/shoppers/members").json()
    assert members["total"] == 2
    viewer = served.client("viewer")
    masked = viewer.get("/v1/segments/shoppers/members/export").text
    assert "138****8000" in masked and "13800138000" not in masked
    assert viewer.get("/v1/segments/shoppers/members/export?include_pii=true"
                      ).status_code == 403
    full = client.get("/v1/segments/shoppers/members/export?include_pii=true")
    assert "+8613800138000" in full.text
    plain = client.get("/v1/segments/shoppers/members/export").text  # analyst, no flag
    assert "138****8000" in plain and "13800138000" not in plain
    xlsx = client.get("/v1/segments/shoppers/members/export?format=xlsx")
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet.cell(1, 1).value == "customer_id" and sheet.max_row == 3
    audit = served.client("admin").get("/v1/audit", params={"action": "export_pii"}).json()
    assert audit[0]["target"] == "segment:shoppers" and audit[0]["actor"].startswith("key:")
    history = client.get("/v1/segments/shoppers/history").json()
    assert {h["customer_id"] for h in history} == {"C001", "C002"}
    explained = client.get("/v1/segments/shoppers/explain/C003").json()
    assert explained["result"] is False
    assert client.get("/v1/segments/nope/members").status_code == 404
    retired = client.delete("/v1/segments/shoppers")
    assert retired.json() == {"key": "shoppers", "status": "paused", "members_left": 2}
    assert client.get("/v1/segments/shoppers").json()["definition"]["status"] == "paused"
    assert all(h["exit_reason"] == "rule_change"
               for h in client.get("/v1/segments/shoppers/history").json())


# -- identity resolution -----------------------------------------------------------------

def test_match_merge_and_undo_through_the_api(served: Served) -> None:
    client = served.client("analyst")
    found = client.post("/v1/customers/match", json={"customers": [
        {"name": "李四", "phone": "13900139000"}, {"email": "nobody@example.org"}]}).json()
    assert [c["customer_id"] for c in found[0]] == ["C002"]
    assert found[0][0]["found_by"] in ("same phone", "same name") and found[1] == []
    merged = client.post("/v1/merges", json={"survivor_id": "C002", "merged_ids": ["C004"]})
    assert merged.status_code == 201, merged.text
    assert client.get("/v1/customers/C004").status_code == 404
    assert client.get("/v1/merges").json()[0]["merged_ids"] == ["C004"]
    undone = client.delete(f"/v1/merges/{merged.json()['merge_id']}")
    assert undone.status_code == 200
    assert client.get("/v1/customers/C004").json()["customer"]["name"] == "Erin Ode"
    assert served.client("viewer").post("/v1/merges", json={
        "survivor_id": "C002", "merged_ids": ["C004"]}).status_code == 403


# -- insights ------------------------------------------------------------------------------

def test_insights_routes(served: Served) -> None:
    client = served.client("analyst")
    found = client.get("/v1/insights/patterns").json()
    assert {r["category"] for r in found["category_affinity"]} >= {"手机", "配件"}
    assert sum(found["purchase_times"]["hour"]) == 5
    effects = client.get("/v1/insights/uplift", params={
        "treated": "buyers", "holdout": "vip_list", "since": "2025-01-01T00:00:00+08:00"})
    assert [e["metric"] for e in effects.json()] == [
        "repurchase_rate", "retention_rate", "revenue_per_customer"]
    job = client.post("/v1/insights/clusters", json={"k": 2}).json()
    assert wait_for_job(client, job["job_id"])["status"] in ("done", "failed")
    assert served.client("viewer").post("/v1/insights/churn", json={}).status_code == 403


# -- imports through the API -------------------------------------------------------------

def test_import_upload_progress_and_rejects(served: Served, tmp_path: Path) -> None:
    client = served.client("analyst")
    good = "订单号,客户编号,下单时间,金额\nO90,C001,2025-07-01 10:00,88\n"
    started = client.post("/v1/imports", data={"table": "orders"},
                          files={"file": ("new orders.csv", good.encode(), "text/csv")})
    assert started.status_code == 202, started.text
    job = wait_for_job(client, started.json()["job_id"])
    assert job["status"] == "done", job
    assert job["result"]["inserted"] == 1
    bad = "订单号,客户编号,下单时间,金额\nO91,C001,yesterday,88\nO92,C001,2025-07-01,abc\n"
    started = client.post("/v1/imports", data={"table": "orders"},
                          files={"file": ("bad.csv", bad.encode(), "text/csv")})
    job = wait_for_job(client, started.json()["job_id"])
    assert job["status"] == "failed"
    assert job["result"]["rejected_rows"] == 2
    report = client.get(f"/v1/imports/{job['job_id']}/rejects")
    assert report.status_code == 200 and "yesterday" in report.text
    # the job speaks the submitter's language: its error, its reasons and its report
    for lang, words in (("zh-CN", "不是数字"), ("en", "not a number")):
        started = client.post("/v1/imports", data={"table": "orders"},
                              files={"file": ("bad.csv", bad.encode(), "text/csv")},
                              headers={"Accept-Language": lang})
        job = wait_for_job(client, started.json()["job_id"])
        assert words in job["error"] or words in str(job["result"]["rejects"]), (lang, job)
        assert any(words in r["reason"] for r in job["result"]["rejects"]), job
        report = client.get(f"/v1/imports/{job['job_id']}/rejects")
        assert words in report.text, report.text
    mapped = client.post("/v1/imports", data={"table": "orders", "mapping":
                                              "columns:\n  单号: order_id\n"},
                         files={"file": ("m.csv", "单号,客户编号,下单时间,金额\nO93,C002,"
                                         "2025-07-02,5\n".encode(), "text/csv")})
    mapped_job = wait_for_job(client, mapped.json()["job_id"])
    assert mapped_job["status"] == "done", mapped_job
    assert served.client("viewer").post(
        "/v1/imports", data={"table": "orders"},
        files={"file": ("x.csv", good.encode(), "text/csv")}).status_code == 403


def test_every_key_expires_unless_an_admin_says_otherwise(served: Served) -> None:
    client = served.client("admin")
    made = client.post("/v1/keys", json={"name": "etl", "role": "viewer"})
    assert made.status_code == 201, made.text
    from datetime import datetime

    expires = datetime.fromisoformat(made.json()["expires_at"])
    assert timedelta(days=89) < expires - utcnow() <= timedelta(days=90)
    for body, said in (
            ({"expires_at": (utcnow() + timedelta(days=400)).isoformat()}, "at most 366 days"),
            ({"expires_at": (utcnow() - timedelta(days=1)).isoformat()}, "in the future"),
            ({"no_expiry": True, "expires_at": (utcnow() + timedelta(days=9)).isoformat()},
             "not both")):
        refused = client.post("/v1/keys", json={"name": "x", "role": "viewer", **body},
                              headers={"Accept-Language": "en"})
        assert refused.status_code == 422 and said in refused.json()["detail"], refused.text
    forever = client.post("/v1/keys", json={"name": "forever", "role": "viewer",
                                            "no_expiry": True})
    assert forever.status_code == 201 and forever.json()["expires_at"] is None
    entry = client.get("/v1/audit", params={"action": "key_create"}).json()[0]
    assert entry["target"] == f"key:{forever.json()['key_id']}"
    assert entry["detail"]["no_expiry"] is True


def test_cli_keys_expire(served: Served) -> None:
    from tests.test_cli import tw

    w = str(served.ws.root)
    assert "expires" in tw("keys", "create", "etl", "--role", "viewer", "-w", w)
    assert "at least 1 day" in tw("keys", "create", "x", "--role", "viewer", "--days", "0",
                                  "-w", w, code=1)
    assert "at most 366 days" in tw("keys", "create", "x", "--role", "viewer", "--days",
                                    "400", "-w", w, code=1)
    tw("keys", "create", "forever", "--role", "viewer", "--no-expiry", "-w", w)
    refused = tw("--actor", "viewer", "keys", "create", "y", "--role", "viewer",
                 "--no-expiry", "-w", w, code=1)
    assert "viewer (viewer) may not create API keys" in refused


def test_an_instant_written_as_a_number_is_refused(tmp_path: Path) -> None:
    """A query's ``as_of=0.0`` is a client's bug (seconds since 1970?), not 1 January 1970."""
    served = build(tmp_path)
    client = served.client("admin")
    for value in ("0.0", "1700000000", "1e9"):
        answer = client.get("/v1/insights/satisfaction", params={"as_of": value})
        assert answer.status_code == 422 and "ISO 8601" in answer.text, value
    assert client.get("/v1/insights/satisfaction",
                      params={"as_of": "2026-06-30T18:00:00+08:00"}).status_code == 200
    served.ws.close()
