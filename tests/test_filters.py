"""Filters that are not understood are refused with the valid ones, never ignored: every
API route's query parameters, and the dashboard's customer list (whose values may be given
as codes or as the labels the product prints)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow.parquet as pq
from tests.api_helpers import build

from tierwise.definitions.vocabulary import STAGE_LABELS


def test_unknown_query_parameters_are_refused_on_every_api_route(tmp_path: Path) -> None:
    served = build(tmp_path)
    client = served.client("admin")
    wrong = client.get("/v1/customers", params={"region": "华东", "city": "上海"})
    assert wrong.status_code == 400
    body = wrong.json()
    assert body["unknown"] == ["region"] and {"city", "industry", "tag"} <= set(body["allowed"])
    assert "region" in body["detail"] and "owner" in body["detail"]
    assert client.get("/v1/customers", params={"city": "上海", "lang": "en"}).status_code == 200
    for path in ("/v1/segments", "/v1/deliveries", "/v1/tasks", "/v1/jobs"):
        answer = client.get(path, params={"no_such_filter": "1"})
        assert answer.status_code == 400 and "no_such_filter" in answer.json()["detail"], path
        assert client.get(path).status_code == 200, path
    served.ws.close()


def test_the_customer_list_takes_codes_and_labels_and_refuses_the_rest(tmp_path: Path) -> None:
    served = build(tmp_path)
    client = served.client("admin")

    def shown(params: dict[str, str]) -> list[str]:
        answer = client.get("/customers", params=params)
        assert answer.status_code == 200, answer.text
        return sorted(set(re.findall(r"/customers/(C\d+)", answer.text)))

    everyone = shown({})
    snapshot = next((served.ws.root / "snapshots").glob("*.parquet"))
    stages = pq.read_table(snapshot, columns=["lifecycle"])["lifecycle"].to_pylist()
    stage = max(set(stages), key=stages.count)  # the commonest stage: some customers have it
    by_code = shown({"lifecycle": stage})
    assert by_code and set(by_code) <= set(everyone)
    for lang in ("zh-CN", "en"):
        assert shown({"lifecycle": STAGE_LABELS[stage][lang]}) == by_code, lang
    for params, needle in (({"region": "华东"}, "region"), ({"size": "big"}, "size"),
                           ({"tier": "Z"}, "'Z'"), ({"lifecycle": "asleep"}, "asleep"),
                           ({"gender": "unicorn"}, "unicorn")):
        answer = client.get("/customers", params=params)
        assert answer.status_code == 400 and needle in answer.json()["detail"], params
    assert "可用的取值" in client.get("/customers", params={"tier": "Z"}).json()["detail"]
    english = client.get("/customers", params={"tier": "Z", "lang": "en"}).json()["detail"]
    assert "Valid values" in english and "'A'" in english
    served.ws.close()


def test_the_delivery_log_refuses_an_unknown_status(tmp_path: Path) -> None:
    served = build(tmp_path)
    client = served.client("admin")
    assert client.get("/actions", params={"status": "dead"}).status_code == 200
    wrong = client.get("/actions", params={"status": "lost"})
    assert wrong.status_code == 400 and "held" in wrong.json()["detail"]
    assert client.get("/v1/deliveries", params={"status": "lost"}).status_code == 422
    served.ws.close()


def test_dashboard_pages_refuse_parameters_they_do_not_read(tmp_path: Path) -> None:
    served = build(tmp_path)
    client = served.client("admin")
    for path, good in (("/tiers", {"before": "1"}), ("/segments/buyers", {"q": "C00"}),
                       ("/review", {"period": "2025Q2"}), ("/rfm", {})):
        assert client.get(path, params={**good, "lang": "en"}).status_code == 200, path
        wrong = client.get(path, params={**good, "region": "华东", "lang": "en"})
        assert wrong.status_code == 400, path
        assert wrong.json()["unknown"] == ["region"] and "lang" in wrong.json()["allowed"]
    served.ws.close()


def test_a_value_no_customer_has_is_refused_with_the_closest_ones(tmp_path: Path) -> None:
    """``city=上海市`` where the data says ``上海`` is a 400 that names 上海 (the closest) and
    the values there are — on the customer list, the breakdown and the API — never an empty
    list; a value some customer has is answered as before."""
    served = build(tmp_path)
    client = served.client("admin")
    for path in ("/customers", "/breakdown", "/v1/customers", "/v1/values/breakdown"):
        answer = client.get(path, params={"city": "上海市", "lang": "en"})
        assert answer.status_code == 400, path
        detail = answer.json()["detail"]
        assert "did you mean 上海" in detail and "北京" in detail, (path, detail)
        assert client.get(path, params={"city": "上海"}).status_code == 200, path
    chinese = client.get("/customers", params={"city": "上海市", "lang": "zh-CN"})
    assert "是否要找 上海" in chinese.json()["detail"]
    owner = client.get("/v1/customers", params={"owner": "王经"}).json()["detail"]
    assert "王经理" in owner
    assert client.get("/v1/customers", params={"tag": "no-such-tag"}).status_code == 400
    listed = client.get("/v1/customers", params={"city": "上海"}).json()["items"]
    assert [c["customer_id"] for c in listed] == ["C001"]
    served.ws.close()


def test_customers_are_grouped_and_filtered_by_an_attribute(tmp_path: Path,
                                                           control_url: str) -> None:
    """``attributes.KEY``: a breakdown dimension and a filter of the customer list (on
    SQLite and PostgreSQL alike, text and other JSON values compared as the breakdown
    shows them); each group links to exactly its customers; a value nobody has, an
    attribute nobody has and a sensitive attribute are refused."""
    from fastapi.testclient import TestClient

    import tierwise
    from tierwise.models.compute import load_snapshot
    from tierwise.server.app import create_app
    from tierwise.services.breakdowns import by_dimension
    from tierwise.store import accounts

    ws = tierwise.init(tmp_path / "ws", control_store=control_url,
                       sensitive_attributes=["health"])
    rows = ['{"plan": "gold", "seats": 5, "vip": true, "health": "x"}',
            '{"plan": "gold", "seats": 12}', '{"plan": "silver", "vip": false}', '{}']
    with (tmp_path / "c.csv").open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "attributes"])
        writer.writerows([f"C{i}", r] for i, r in enumerate(rows))
    ws.import_file("customers", tmp_path / "c.csv")
    ws.compute()
    found = by_dimension(ws, load_snapshot(ws), "attributes.plan")
    assert {g["value"]: g["customers"] for g in found["groups"]} == {
        "gold": 2, "silver": 1, None: 1}
    seats = by_dimension(ws, load_snapshot(ws), "attributes.seats")
    assert {g["value"] for g in seats["groups"]} == {"5", "12", None}
    with ws.control.write() as conn:
        accounts.add_user(conn, "admin", "attribute-pass-1", "admin")
    client = TestClient(create_app(ws))
    ok = client.post("/v1/auth/login", json={"username": "admin",
                                             "password": "attribute-pass-1"})
    client.headers["X-CSRF-Token"] = ok.json()["csrf_token"]
    page = client.get("/breakdown", params={"by": "attributes.plan", "lang": "en"}).text
    assert '<a href="/customers?attributes.plan=gold">gold</a>' in page
    for name, value, expected in (("attributes.plan", "gold", ["C0", "C1"]),
                                  ("attributes.seats", "12", ["C1"]),
                                  ("attributes.vip", "true", ["C0"]),
                                  ("attributes.vip", "false", ["C2"])):
        listed = client.get("/customers", params={name: value}).text
        assert sorted(set(re.findall(r"/customers/(C\d+)", listed))) == expected, (name, value)
    narrowed = client.get("/breakdown", params={"by": "tier", "attributes.plan": "gold"})
    assert narrowed.status_code == 200
    for params in ({"attributes.plan": "bronze"}, {"attributes.health": "x"}):
        answer = client.get("/customers", params=params)
        assert answer.status_code == 400, params
    assert "silver" in client.get("/customers", params={"attributes.plan": "silvr"}
                                  ).json()["detail"]
    assert client.get("/breakdown", params={"by": "attributes.health"}).status_code == 400
    api = client.get("/v1/values/breakdown", params={"by": "attributes.plan"}).json()
    assert {g["value"]: g["customers"] for g in api["groups"]} == {
        "gold": 2, "silver": 1, None: 1}
    assert client.get("/v1/values/breakdown", params={"by": "attributes.nope"}
                      ).status_code == 400
    # the API takes the same filters
    listed = client.get("/v1/customers", params={"attributes.plan": "gold"}).json()["items"]
    assert [c["customer_id"] for c in listed] == ["C0", "C1"]
    narrowed = client.get("/v1/values/breakdown", params={"by": "tier",
                                                          "attributes.vip": "true"}).json()
    assert narrowed["total"]["customers"] == 1
    for params in ({"attributes.plan": "bronze"}, {"attributes.health": "x"},
                   {"attributes.a b": "1"}, {"attribute.plan": "gold"}):
        assert client.get("/v1/customers", params=params).status_code == 400, params
    ws.close()
