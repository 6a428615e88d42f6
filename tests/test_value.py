"""RFM scores and segments, value tiers, lifecycle stages and compute snapshots."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import tierwise
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_cdnow, load_generated
from tierwise.models import compute, lifecycle, rfm, stats, tiers

NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    ws = tierwise.init(tmp_path_factory.mktemp("cdnow") / "ws", timezone="America/New_York",
                       currency="USD")
    load_cdnow(ws)
    return ws


def scores_of(table: pa.Table, settings: rfm.RFMSettings) -> pa.Table:
    from tierwise.engines.duckdb import DuckDBEngine

    with DuckDBEngine().session(arrow={"stats": table}) as session:
        return rfm.score(session, settings, "duckdb")


def test_quantile_ties_share_a_score_on_cdnow(cdnow: tierwise.Workspace):
    st = stats.customer_stats(cdnow, datetime(1998, 6, 30, 23, 59, tzinfo=NY),
                              stats.Period(None))
    assert st.num_rows == 23_570
    settings = rfm.RFMSettings(period_days=None, frequency="purchase_days")
    sc = scores_of(st, settings).to_pandas()
    one_timers = sc[sc.frequency == 1]
    assert len(one_timers) > len(sc) / 2  # more than half bought on a single day
    assert set(one_timers.f) == {1}  # ... and they all share F = 1
    for letter, value in (("r", "recency"), ("f", "frequency"), ("m", "monetary")):
        assert sc[letter].between(1, 5).all()
        # equal values, equal scores; better values never score lower
        assert (sc.groupby(value)[letter].nunique() == 1).all()
        ordered = sc.sort_values(value)[letter].to_numpy()
        assert np.all(np.diff(ordered) <= 0) if letter == "r" else np.all(np.diff(ordered) >= 0)
    # Row order does not matter.
    rows = st.to_pylist()
    random.Random(1).shuffle(rows)
    again = scores_of(pa.Table.from_pylist(rows, schema=st.schema), settings).to_pandas()
    assert again.sort_values("customer_id").reset_index(drop=True)[["r", "f", "m"]].equals(
        sc.sort_values("customer_id").reset_index(drop=True)[["r", "f", "m"]])


def test_purchase_statistics_by_hand(tmp_path: Path):
    """One customer's statistics worked out by hand: two orders on one local calendar day
    (a day apart in UTC) make one purchase day, a refund and an order after as_of count
    for nothing, the period and the period before split the revenue."""
    from tests.conftest import write

    ws = tierwise.init(tmp_path / "ws", timezone="Asia/Shanghai")
    ws.import_file("customers", write(tmp_path / "c.csv", "customer_id\nK\nL\n"))
    ws.import_file("orders", write(tmp_path / "o.csv", (
        "order_id,customer_id,ordered_at,amount,cost,status\n"
        "1,K,2024-03-01T02:00:00Z,100,60,paid\n"       # local 2024-03-01
        "2,K,2025-01-10T20:00:00Z,50,,paid\n"          # local 2025-01-11: period before
        "3,K,2026-02-01T17:00:00Z,30,10,paid\n"        # local 2026-02-02 01:00
        "4,K,2026-02-02T03:00:00Z,20,,paid\n"          # local 2026-02-02 11:00
        "5,K,2026-05-05T00:00:00Z,999,,refunded\n"
        "6,K,2026-06-30T16:00:01Z,5,,paid\n"           # after as_of
        "7,L,2026-06-01T00:00:00Z,40,,paid\n")))
    as_of = datetime(2026, 6, 30, 23, 59, 59, tzinfo=ZoneInfo("Asia/Shanghai"))
    got = {r["customer_id"]: r for r in stats.customer_stats(ws, as_of).to_pylist()}
    last = datetime.fromisoformat("2026-02-02T03:00:00+00:00")
    k = got["K"]
    assert {c: k[c] for c in ("orders_total", "revenue_total", "profit_total", "orders",
                              "revenue", "revenue_previous", "purchase_days",
                              "purchase_days_period", "x", "m_x")} == {
        "orders_total": 4, "revenue_total": 200.0, "profit_total": 130.0, "orders": 2,
        "revenue": 50.0, "revenue_previous": 50.0, "purchase_days": 3,
        "purchase_days_period": 1, "x": 2, "m_x": 50.0}  # (200 − the first day's 100) / 2
    assert k["first_order_at"] == datetime.fromisoformat("2024-03-01T02:00:00+00:00")
    assert k["last_order_at"] == last
    assert k["t_x_days"] == (date(2026, 2, 2) - date(2024, 3, 1)).days
    assert k["t_days"] == (date(2026, 6, 30) - date(2024, 3, 1)).days
    assert k["gap_before_last_days"] == (date(2026, 2, 2) - date(2025, 1, 11)).days
    assert k["recency_days"] == int((as_of - last).total_seconds() // 86400)
    one = got["L"]
    assert (one["orders_total"], one["purchase_days"], one["x"], one["t_x_days"],
            one["gap_before_last_days"], one["m_x"]) == (1, 1, 0, 0, None, None)
    ws.close()


def test_three_bins_and_thresholds():
    st = pa.table({"customer_id": ["a", "b", "c", "d"], "recency_days": [5, 40, 100, 400],
                   "orders": [9, 3, 1, 1], "purchase_days_period": [9, 3, 1, 1],
                   "revenue": [900.0, 90.0, 10.0, 10.0]})
    three = scores_of(st, rfm.RFMSettings(bins=3)).to_pylist()
    assert [(r["r"], r["f"], r["m"]) for r in three] == [(3, 3, 3), (2, 2, 2), (1, 1, 1),
                                                          (1, 1, 1)]
    cut = rfm.RFMSettings(scoring="thresholds", thresholds={
        "r": [30, 90, 180, 365], "f": [2, 3, 5, 8], "m": [20, 50, 100, 500]})
    got = [(r["r"], r["f"], r["m"]) for r in scores_of(st, cut).to_pylist()]
    assert got == [(5, 5, 5), (4, 3, 3), (3, 1, 1), (1, 1, 1)]
    with pytest.raises(ValueError, match="strictly ascending"):
        rfm.RFMSettings(scoring="thresholds", thresholds={"r": [3, 2, 4, 5], "f": [1, 2, 3, 4],
                                                          "m": [1, 2, 3, 4]})


def test_rf_map_covers_every_cell_and_assigns_first_match():
    assert rfm.validate_scheme(rfm.RF_MAP) == {"uncovered": [], "unreachable": []}
    sc = pa.table({"r": [5, 1, 1, 3, 4], "f": [5, 1, 2, 3, 1], "m": [1, 1, 1, 1, 1],
                   "recency": [1, 1, 1, 1, 1], "frequency": [1, 1, 1, 1, 1],
                   "monetary": [1.0] * 5})
    assert rfm.assign(rfm.RF_MAP, sc).to_pylist() == [
        "champions", "lost", "hibernating", "need_attention", "promising"]
    assert set(rfm.RF_MAP.labels["champions"]) == {"zh-CN", "en"}


def test_user_scheme_validator():
    scheme = rfm.scheme_from_spec({
        "key": "mine", "labels": {"best": {"zh-CN": "最好", "en": "Best"},
                                  "rest": {"zh-CN": "其他", "en": "Rest"},
                                  "never": {"zh-CN": "永不", "en": "Never"}},
        "rules": [{"segment": "best", "r": "4-5", "f": "4-5", "m": "5"},
                  {"segment": "rest", "r": "*", "f": "1-4"},
                  {"segment": "never", "r": "5", "f": "1"}]})
    report = rfm.validate_scheme(scheme)
    assert report["unreachable"] == ["never"]  # R5F1 is taken by "rest" first
    assert "R1F5M1" in report["uncovered"] and "R4F4M5" not in report["uncovered"]


def test_chinese_eight_classes_against_mean_and_median():
    sc = pa.table({"recency": [1, 100, 1, 100], "frequency": [9, 9, 1, 1],
                   "monetary": [1000.0, 1000.0, 1.0, 1.0], "r": [1] * 4, "f": [1] * 4,
                   "m": [1] * 4})
    assert rfm.assign(rfm.CN8, sc).to_pylist() == [
        "important_value", "important_retention", "general_development", "general_recovery"]
    skewed = pa.table({"recency": [1, 2, 3, 100], "frequency": [1, 1, 1, 1],
                       "monetary": [1.0, 1.0, 1.0, 1.0], "r": [1] * 4, "f": [1] * 4,
                       "m": [1] * 4})
    by_mean = rfm.assign(rfm.CN8, skewed).to_pylist()
    by_median = rfm.assign(rfm.CN8_MEDIAN, skewed).to_pylist()
    assert by_mean[2] == "general_development" and by_median[2] == "general_recovery"
    assert rfm.CN8.labels["important_value"]["zh-CN"] == "重要价值客户"


def test_pareto_tiers_follow_revenue_share():
    spec = tiers.TierSpec(method="pareto", cuts=[0.5, 0.8, 0.95])
    ids = np.array([f"c{i}" for i in range(6)], dtype=object)
    revenue = np.array([50.0, 20.0, 10.0, 10.0, 5.0, 5.0])
    got = tiers.assign_tiers(spec, ids, np.zeros(6), revenue)
    # c0 makes the first 50%; c1 starts at 50% → B; c2 at 70% → B; c3 at 80% → C ...
    assert got.tolist() == ["A", "B", "B", "C", "C", "D"]
    summary = tiers.tier_summary(got, revenue, spec).to_pylist()
    assert summary[0] == {"tier": "A", "customers": 1, "revenue": 50.0, "revenue_share": 0.5}


def test_percentile_and_threshold_tiers():
    ids = np.array([f"c{i:02d}" for i in range(10)], dtype=object)
    score = np.array([90, 80, 70, 60, 50, 40, 30, 20, 10, 10], float)
    spec = tiers.TierSpec(method="percentile", cuts=[0.1, 0.2, 0.3])
    assert Counter(tiers.assign_tiers(spec, ids, score, score).tolist()) == {
        "A": 1, "B": 2, "C": 3, "D": 4}
    spec = tiers.TierSpec(method="threshold", cuts=[75, 45, 25])
    assert tiers.assign_tiers(spec, ids, score, score).tolist()[:8] == [
        "A", "A", "B", "B", "B", "C", "C", "D"]
    with pytest.raises(ValueError, match="need 3 cuts"):
        tiers.TierSpec(cuts=[0.5])
    with pytest.raises(ValueError, match="unknown metrics"):
        tiers.TierSpec(weights={"luck": 1.0})


def test_value_score_uses_ranks_and_ignores_non_buyers():
    metrics = {"monetary": np.array([10.0, 10.0, 1000.0, 0.0]),
               "recency": np.array([5.0, 50.0, 500.0, np.nan])}
    score = tiers.value_score(metrics, {"monetary": 1.0, "recency": 1.0},
                              np.array([True, True, True, False]))
    assert score[3] == 0
    assert score[0] > score[1]  # same spend, more recent
    assert score[2] == pytest.approx(50.0)  # best spender, least recent


def test_value_score_from_ranks_made_ahead_is_the_same_score():
    """``tierwise compute`` ranks some metrics before the others are known; the score of
    ranks made ahead equals the score made at once, to the last bit (a metric weighted 0
    is not ranked)."""
    rng = np.random.default_rng(3)
    metrics = {name: rng.gamma(2, 10, 500).round(1)
               for name in ("monetary", "recency", "clv", "growth")}
    weights = {"clv": 0.5, "recency": 0.25, "monetary": 0.25, "growth": 0.0}
    bought = rng.random(500) < 0.8
    ahead = tiers.metric_ranks({n: metrics[n] for n in ("recency", "growth")}, weights, bought)
    assert list(ahead) == ["recency"]
    assert np.array_equal(tiers.value_score(metrics, weights, bought, ahead),
                          tiers.value_score(metrics, weights, bought))


def test_lifecycle_rules():
    spec = lifecycle.LifecycleSpec()
    bought = np.array([False, True, True, True, True, True, True, True])
    recency = np.array([np.nan, 10, 20, 20, 40, 80, 200, 900], float)
    tenure = np.array([np.nan, 10, 400, 400, 400, 400, 400, 900], float)
    days = np.array([0, 1, 2, 6, 2, 2, 2, 2], float)
    gap = np.full(8, 20.0)
    before_last = np.array([np.nan, np.nan, 300, 20, 20, 20, 20, 20], float)
    got = lifecycle.stages(spec, bought, recency, tenure, days, gap, before_last)
    assert got.tolist() == ["prospect", "new", "reactivated", "loyal", "at_risk", "dormant",
                            "churned", "churned"]
    risk = lifecycle.churn_risk(np.array([0.1, 0.5, 0.9, np.nan, 0.3, 0.7, 0.0, 1.0]),
                                lifecycle.ChurnBands())
    # a band's bound belongs to the band above it
    assert risk.tolist() == ["high", "medium", "low", None, "medium", "low", "high", "low"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    ws = tierwise.init(tmp_path_factory.mktemp("demo") / "ws")
    load_generated(ws, DemoSpec(customers=3_000, seed=5, end=date(2026, 6, 30)))
    return ws


AS_OF = datetime(2026, 7, 1, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_compute_snapshot(demo: tierwise.Workspace):
    snap = compute.compute(demo, AS_OF)
    table = snap.table.to_pandas()
    assert len(table) == 3_000 and table.customer_id.is_unique
    assert set(table.tier) == {"A", "B", "C", "D"}
    prospects = table[table.orders_total.isna()]
    assert (prospects.lifecycle == "prospect").all() and prospects.clv.isna().all()
    buyers = table[table.orders_total.notna()]
    assert buyers.p_alive.between(0, 1).all() and (buyers.clv >= 0).all()
    assert buyers.rfm_segment.notna().all()
    # Churned customers are far less likely to be alive than active ones.
    by_stage = buyers.groupby("lifecycle").p_alive.mean()
    assert by_stage["churned"] < by_stage["active"] - 0.3
    # A is the customers making the first half of revenue: few customers, half the money.
    a = buyers[buyers.tier == "A"]
    assert a.revenue_total.sum() / buyers.revenue_total.sum() == pytest.approx(0.5, abs=0.05)
    assert len(a) < 0.2 * len(buyers)
    loaded = compute.load_snapshot(demo, snap.snapshot_id)
    assert loaded.table.equals(snap.table)
    assert loaded.settings["clv"]["purchases"]["model"] == "pareto_nbd"
    assert compute.list_snapshots(demo)[-1]["rows"] == 3_000


@pytest.mark.parametrize("failing", ["economics", "fit"])
def test_work_done_beside_compute_fails_it_whole(demo: tierwise.Workspace,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  failing: str):
    """The economics and the CLV fit run on threads of their own; an error there is the
    computation's error, and nothing is saved."""
    from tierwise.models import clv, economics

    def broken(*args: object, **kwargs: object) -> None:
        raise tierwise.TierwiseError(f"{failing} broke")

    if failing == "economics":
        monkeypatch.setattr(economics, "per_customer", broken)
    else:
        monkeypatch.setattr(clv, "fit_pareto_nbd", broken)
    def files() -> list[Path]:
        return sorted((demo.root / "snapshots").glob("*"))

    before, written = compute.list_snapshots(demo), files()
    with pytest.raises(tierwise.TierwiseError, match=f"{failing} broke"):
        compute.compute(demo, AS_OF)
    assert compute.list_snapshots(demo) == before
    assert files() == written


def test_settings_are_versioned_and_change_results(demo: tierwise.Workspace):
    before = compute.compute(demo, AS_OF, save=False)
    version = compute.save_setting(demo, "tiers", tiers.TierSpec(method="percentile",
                                                                cuts=[0.1, 0.2, 0.3]))
    assert version == 1
    assert compute.save_setting(demo, "tiers", tiers.TierSpec(method="percentile",
                                                             cuts=[0.1, 0.2, 0.3])) == 1
    after = compute.compute(demo, AS_OF, save=False)
    assert after.settings["versions"]["tiers"] == 1
    counts = Counter(after.table["tier"].to_pylist())
    assert counts["A"] == 300  # 10% of all customers
    moves = tiers.migration(np.array(before.table["tier"].to_pylist()),
                            np.array(after.table["tier"].to_pylist()), ["A", "B", "C", "D"])
    assert sum(sum(v for k, v in row.items() if k != "from") for row in moves.to_pylist()) \
        == 3_000
    compute.save_setting(demo, "tiers", tiers.TierSpec())  # back to the default


def test_user_scheme_is_used(demo: tierwise.Workspace, tmp_path: Path):
    from tierwise.store import versions as definitions

    spec = {"key": "two", "labels": {"top": {"zh-CN": "顶级", "en": "Top"},
                                     "other": {"zh-CN": "其他", "en": "Other"}},
            "rules": [{"segment": "top", "r": "4-5", "f": "4-5"},
                      {"segment": "other"}]}
    with demo.control.write() as conn:
        definitions.save(conn, "rfm_scheme", "two", spec)
    compute.save_setting(demo, "rfm", rfm.RFMSettings(scheme="two"))
    snap = compute.compute(demo, AS_OF, save=False)
    assert set(snap.table["rfm_segment"].drop_null().to_pylist()) == {"top", "other"}
    compute.save_setting(demo, "rfm", rfm.RFMSettings(scheme="nope"))
    with pytest.raises(tierwise.TierwiseError, match="neither built in"):
        compute.compute(demo, AS_OF, save=False)
    compute.save_setting(demo, "rfm", rfm.RFMSettings())


def test_reactivation_is_measured_against_the_rhythm_before_the_comeback():
    spec = lifecycle.LifecycleSpec()
    # Two customers with 3 purchase days: 20 and 20 days apart, then a 400-day gap, last
    # purchase 10 days ago; the second bought steadily every 140 days.
    x = np.array([3.0, 3.0])
    t_x = np.array([440.0, 420.0])
    before_last = np.array([400.0, 140.0])
    earlier = lifecycle.prior_gap(x, t_x, before_last, spec)
    assert earlier.tolist() == [20.0, 140.0]
    gap = lifecycle.typical_gap(x, t_x, spec)
    got = lifecycle.stages(spec, np.array([True, True]), np.array([10.0, 10.0]),
                           np.array([450.0, 430.0]), np.array([3.0, 3.0]), gap, before_last,
                           earlier)
    assert got.tolist() == ["reactivated", "active"]


@pytest.mark.parametrize("data", ["demo", "cdnow"])
@pytest.mark.parametrize("center", ["cn8", "cn8_median"])
def test_every_class_of_the_chinese_eight_class_model_fills(
        data: str, center: str, request: pytest.FixtureRequest):
    """On default settings (F and M scored over 365 days) every one of the 8 classes has
    customers, and each customer's class is R against the center of recency, F and M over
    the whole history against their centers."""
    ws = request.getfixturevalue(data)
    at = datetime(1998, 6, 30, 23, 59, tzinfo=NY) if data == "cdnow" else \
        datetime(2026, 6, 30, 23, 59, tzinfo=ZoneInfo("Asia/Shanghai"))
    settings = compute.load_settings(ws).rfm
    assert settings.period_days == 365
    compute.save_setting(ws, "rfm", settings.model_copy(update={"scheme": center}))
    try:
        table = ws.compute(at, save=False).table.filter(pc.is_valid(pc.field("rfm_segment")))
    finally:
        compute.save_setting(ws, "rfm", settings)
    found = table["rfm_segment"].to_pylist()
    assert set(found) == set(rfm.CN8.labels), sorted(set(found))
    middle = np.median if center == "cn8_median" else np.mean
    recency = np.asarray(table["rfm_recency"].to_pylist(), float)
    orders = np.asarray(table["orders_total"].to_pylist(), float)
    revenue = np.asarray(table["revenue_total"].to_pylist(), float)
    high = (recency < middle(recency), orders > middle(orders), revenue > middle(revenue))
    expected = [rfm.CN8_CELLS[(bool(r), bool(f), bool(m))] for r, f, m in zip(*high,
                                                                              strict=True)]
    assert found == expected


RULE_TIERS = tiers.TierSpec(
    tiers=["流失", "VIP", "普通", "潜在"],
    labels={"流失": {"zh-CN": "流失客户", "en": "Churned"}, "VIP": {"zh-CN": "VIP", "en": "VIP"},
            "普通": {"zh-CN": "普通会员", "en": "Regular"},
            "潜在": {"zh-CN": "潜在客户", "en": "Potential"}},
    method="rules",
    rules=[tiers.TierRule(tier="流失", when="DAYS_SINCE_LAST(orders) > 365"),
           tiers.TierRule(tier="VIP", when="SUM(orders.amount, LAST 12m) >= 50000"),
           tiers.TierRule(tier="普通", when="SUM(orders.amount, LAST 12m) >= 10000")])


def test_tiers_by_rules_first_match_wins(demo: tierwise.Workspace):
    """Absolute thresholds (and a churned tier) as segment rules: each customer gets the
    tier of the first rule the reference evaluator says they meet, else the last tier."""
    from segment_reference import Reference
    from tierwise.definitions.segment_parser import parse
    from tierwise.services.tiers import tier_plan

    settings = compute.load_settings(demo)
    settings.tiers = RULE_TIERS
    table = compute.compute(demo, AS_OF, save=False, settings=settings).table
    reference = Reference(demo, AS_OF)
    members = [set(reference.members(parse(r.when))) for r in RULE_TIERS.rules]
    expected = []
    for customer in table["customer_id"].to_pylist():
        found = [r.tier for r, m in zip(RULE_TIERS.rules, members, strict=True) if customer in m]
        expected.append(found[0] if found else "潜在")
    got = table["tier"].to_pylist()
    assert got == expected
    assert {t: got.count(t) > 0 for t in RULE_TIERS.tiers} == dict.fromkeys(RULE_TIERS.tiers,
                                                                           True)
    # the plan (what every front end shows) gives the same counts
    plan = tier_plan(demo, RULE_TIERS, as_of=AS_OF)
    after = {row["tier"]: row["after"] for row in plan.tiers}
    assert all(after[t] == got.count(t) for t in RULE_TIERS.tiers)


@pytest.mark.parametrize(("change", "message"), [
    ({"rules": []}, "method 'rules' needs rules"),
    ({"rules": [{"tier": "金卡", "when": "COUNT(orders) >= 1"}]}, "'金卡' is not one of"),
    ({"rules": [{"tier": "VIP", "when": "clv > 100"}]}, "cannot read clv"),
    ({"rules": [{"tier": "VIP", "when": "IN_SEGMENT('x')"}]}, "cannot read IN_SEGMENT"),
    ({"rules": [{"tier": "VIP", "when": "SUM(orders.amount >= 1"}]}, r"rules\[0\] \(VIP\)"),
    ({"method": "pareto"}, "rules are for method 'rules'"),
    ({"tiers": ["VIP", "VIP", "普通", "潜在"]}, "tier names must differ"),
])
def test_tier_rules_are_checked_when_saved(change: dict[str, object], message: str):
    spec = {**RULE_TIERS.model_dump(), **change}
    with pytest.raises(ValueError, match=message):
        tiers.TierSpec.model_validate(spec)


def test_referral_value(demo: tierwise.Workspace):
    """referral_revenue: the paid revenue, up to as_of, of the customers each one referred
    (each referred customer once); both it and the count are fields rules can use."""
    from tierwise.segments.evaluate import evaluate_rule

    snap = compute.compute(demo, AS_OF)
    orders = demo.table("orders").to_pylist()
    spent: dict[str, float] = {}
    for o in orders:
        if o["status"] == "paid" and o["ordered_at"] <= AS_OF:
            spent[o["customer_id"]] = spent.get(o["customer_id"], 0.0) + o["amount"]
    pairs: dict[str, set[str]] = {}
    made: Counter[str] = Counter()
    for r in demo.table("referrals").to_pylist():
        if r["at"] <= AS_OF:
            pairs.setdefault(r["referrer_id"], set()).add(r["referred_id"])
            made[r["referrer_id"]] += 1
    expected = {c: sum(spent.get(x, 0.0) for x in referred) for c, referred in pairs.items()}
    rows = {r["customer_id"]: r for r in snap.table.to_pylist()}
    assert any(v > 0 for v in expected.values())
    for customer, row in rows.items():
        assert row["referrals"] == made.get(customer, 0), customer
        assert row["referral_revenue"] == pytest.approx(expected.get(customer, 0.0)), customer
    many = sorted(c for c, n in made.items() if n >= 2)
    assert evaluate_rule(demo, "referrals >= 2", AS_OF)["customer_id"].to_pylist() == many
    # referrals as a source: the same count, live, for the referrer
    assert evaluate_rule(demo, "COUNT(referrals) >= 2", AS_OF)["customer_id"].to_pylist() \
        == many != []
    with pytest.raises(tierwise.TierwiseError, match="referral_revenue"):
        evaluate_rule(demo, "SUM(referrals.revenue) > 1000", AS_OF)
    valuable = sorted(c for c, v in expected.items() if v > 1000)
    assert evaluate_rule(demo, "referral_revenue > 1000", AS_OF)["customer_id"].to_pylist() \
        == valuable != []


def test_value_changes_between_two_snapshots() -> None:
    import pyarrow as pa

    from tierwise.models.compute import value_changes

    before = pa.table({"customer_id": ["a", "b", "c", "d", "e"],
                       "tier": ["A", "B", None, "C", "D"]})
    after = pa.chunked_array([["e", "d", "c"], ["b", "new", "x"]])
    after = pa.table({"customer_id": after,
                      "tier": pa.chunked_array([["D", None, "B"], ["B", "A", None]])})
    # d lost its tier, c got one, new and x are new (x without a tier: no change)
    assert value_changes(before, after, "tier") == [("d", "C", None), ("c", None, "B"),
                                                   ("new", None, "A")]


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_percentile_rank_counts_the_strictly_worse(higher_is_better: bool) -> None:
    """Each value's rank is the share of the others strictly worse: ties share one rank
    (0.0 and -0.0 are a tie), NaN is as bad as the worst possible value (a recency of NaN
    counted as the best before)."""
    rng = np.random.default_rng(5)
    values = np.concatenate([np.round(rng.normal(size=2_000), 1), [np.nan, np.nan, 0.0, -0.0,
                                                                     np.inf, -np.inf, 1.0]])
    rng.shuffle(values)
    got = tiers.percentile_rank(values, higher_is_better)

    def key(a: float) -> float:  # NaN as bad as the worst possible value
        return -np.inf if np.isnan(a) else a if higher_is_better else -a

    def worse(a: float, b: float) -> bool:  # is b worse than a?
        return key(b) < key(a)

    expected = [sum(worse(a, b) for b in values) / (len(values) - 1) for a in values]
    assert got.tolist() == expected
    assert tiers.percentile_rank(np.array([3.0]), higher_is_better).tolist() == [0.0]
    assert tiers.percentile_rank(np.array([]), higher_is_better).tolist() == []
