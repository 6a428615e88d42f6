"""Generated demo data and the real CDNOW log."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

import tierwise
from tierwise.demo import generator
from tierwise.demo.generator import DemoSpec, generate_chunk
from tierwise.demo.load import load_cdnow, load_generated

END = date(2026, 6, 30)


def test_same_seed_same_data():
    a = generate_chunk(DemoSpec(customers=800, seed=3, end=END), 0)
    b = generate_chunk(DemoSpec(customers=800, seed=3, end=END), 0)
    c = generate_chunk(DemoSpec(customers=800, seed=4, end=END), 0)
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["orders"].equals(c["orders"])


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    generator_chunk = generator.CHUNK
    generator.CHUNK = 1_500  # several chunks on a small population
    try:
        ws = tierwise.init(tmp_path_factory.mktemp("demo") / "ws")
        load_generated(ws, DemoSpec(customers=4_000, seed=11, end=END))
    finally:
        generator.CHUNK = generator_chunk
    return ws


def test_every_reference_is_a_known_customer(demo_ws: tierwise.Workspace):
    people = demo_ws.customers()
    accounts = people[people["account_id"].isna()]
    contacts = people[people["account_id"].notna()]
    assert len(accounts) == 4_000 and "C000123" in set(accounts["customer_id"])
    ids = set(people["customer_id"])
    for table, column in (("orders", "customer_id"), ("events", "customer_id"),
                          ("tickets", "customer_id"), ("feedback", "customer_id"),
                          ("referrals", "referrer_id"), ("referrals", "referred_id")):
        assert set(demo_ws.table(table)[column].to_pylist()) <= ids, table
    assert not people["is_stub"].any()
    # the B2B accounts' people: each names a B2B account, most have a role
    b2b = set(accounts[accounts["attributes"].str.contains("B2B")]["customer_id"])
    assert 0.25 < len(contacts) / len(accounts) < 0.7
    assert set(contacts["account_id"]) <= b2b
    assert contacts["role"].notna().all() and contacts["role"].nunique() == 6
    theirs = demo_ws.sql("SELECT count(*) FROM events WHERE customer_id LIKE '%-%'")
    assert theirs.column(0)[0].as_py() > 2 * len(contacts)


def test_buyers_are_heterogeneous(demo_ws: tierwise.Workspace):
    counts = demo_ws.sql(
        "SELECT c.customer_id, count(o.order_id) AS n FROM customers c LEFT JOIN orders o "
        "USING (customer_id) WHERE c.account_id IS NULL GROUP BY 1",
        with_customers=True)["n"].to_numpy()
    assert len(counts) == 4_000
    buyers = counts[counts > 0]
    assert 0.7 < len(buyers) / 4_000 < 0.95  # some sign up and never buy
    assert buyers.var() > 1.5 * buyers.mean()  # over-dispersed, as with a Gamma mixture
    assert 0.25 < np.mean(buyers == 1) < 0.75  # many one-time buyers, as in real logs
    orders = demo_ws.table("orders")
    assert orders.num_rows > 6_000
    assert pc.max(orders["ordered_at"]).as_py().date() <= END
    assert set(orders["status"].to_pylist()) == {"paid", "refunded", "cancelled"}


def test_b2b_accounts_spend_more_and_have_owners(demo_ws: tierwise.Workspace):
    result = demo_ws.sql(
        "SELECT json_extract_string(c.attributes, '$.segment') AS seg, avg(o.amount) AS aov, "
        "avg(CASE WHEN c.owner IS NULL THEN 0 ELSE 1 END) AS owned "
        "FROM orders o JOIN customers c USING (customer_id) GROUP BY 1 ORDER BY 1",
        with_customers=True).to_pylist()
    b2b, b2c = result
    assert b2b["seg"] == "B2B" and b2b["aov"] > 5 * b2c["aov"] and b2b["owned"] == 1.0


def test_events_include_pricing_page_views(demo_ws: tierwise.Workspace):
    types = set(demo_ws.table("events")["type"].to_pylist())
    assert {"page_view", "email_open", "login", "download"} <= types
    pricing = demo_ws.sql("SELECT count(*) FROM events WHERE type = 'page_view' AND "
                          "json_extract_string(properties, '$.page') = '/pricing'")
    assert pricing.column(0)[0].as_py() > 500


def test_chinese_and_english_locales():
    zh = generate_chunk(DemoSpec(customers=200, seed=1, end=END), 0)["customers"]
    en = generate_chunk(DemoSpec(customers=200, seed=1, end=END, locale="en"), 0)["customers"]
    assert any(c == "上海" for c in zh["city"].to_pylist())
    phones = [p for p in zh["phone"].to_pylist() if p is not None]
    assert all(p.replace(" ", "").lstrip("+86").startswith("1") for p in phones)
    assert any(p.startswith("+86") for p in phones) and any(" " in p for p in phones)
    assert all(n.isascii() for n in en["name"].to_pylist())
    assert set(en["country"].to_pylist()) == {"United States"}


def test_cdnow(tmp_path: Path):
    ws = tierwise.init(tmp_path / "cd", timezone="America/New_York", currency="USD")
    customers, orders = load_cdnow(ws)
    assert customers.inserted == 23_570 and orders.inserted == 69_659
    stats = ws.sql("SELECT count(DISTINCT customer_id) AS c, count(*) AS n, sum(amount) AS s, "
                   "min(ordered_at) AS lo, max(ordered_at) AS hi, sum(quantity) AS q "
                   "FROM orders").to_pylist()[0]
    assert (stats["c"], stats["n"]) == (23_570, 69_659)
    assert stats["s"] == pytest.approx(2_500_315.63, abs=0.01)
    assert stats["q"] == 167_881
    assert str(stats["lo"].astimezone(ws.config.zone).date()) == "1997-01-01"
    assert str(stats["hi"].astimezone(ws.config.zone).date()) == "1998-06-30"
    again = load_cdnow(ws)
    assert again[1].unchanged == 69_659  # idempotent
