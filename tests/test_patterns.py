"""Lookalike scores and behaviour patterns."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from tests.test_cli import tw

import tierwise
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.insights import patterns
from tierwise.insights.lookalike import score


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    ws = tierwise.init(tmp_path_factory.mktemp("patterns") / "ws")
    load_generated(ws, DemoSpec(customers=4000, seed=5, end=date(2026, 6, 30)))
    ws.compute()
    return ws


def test_lookalikes_learn_the_seed_and_score_prospects(demo: tierwise.Workspace,
                                                       tmp_path: Path) -> None:
    result = score(demo, "tier:A")
    assert result.cv_auc >= 0.7
    assert result.customer_ids and list(result.scores) == sorted(result.scores, reverse=True)
    bought = set(demo.sql("SELECT DISTINCT customer_id FROM orders WHERE status = 'paid'"
                          ).column(0).to_pylist())
    assert not bought & set(result.customer_ids)  # only prospects are scored
    out = tw("lookalikes", "--out", str(tmp_path / "look.csv"), "--save", "-w", str(demo.root))
    assert "cross-validated AUC" in out and "saved lookalike_score" in out
    from tierwise.segments.evaluate import evaluate_rule

    likely = evaluate_rule(demo, "lookalike_score > 0.5")["customer_id"].to_pylist()
    assert likely and set(likely) <= set(result.customer_ids)
    with pytest.raises(tierwise.TierwiseError, match="expected tier"):
        score(demo, "vip")


def test_patterns_on_generated_data(demo: tierwise.Workspace) -> None:
    affinity = patterns.category_affinity(demo)
    assert abs(sum(r["share"] for r in affinity) - 1) < 1e-9
    times = patterns.purchase_times(demo)
    paid = demo.sql("SELECT count(*) FROM orders WHERE status = 'paid'").column(0)[0].as_py()
    assert sum(times["hour"]) == sum(times["weekday"]) == paid
    upcoming = patterns.next_purchases(demo)
    row = upcoming.slice(0, 1).to_pylist()[0]
    assert row["expected_next_purchase"] > row["last_order_at"]
    assert "association rules" in tw("patterns", "-w", str(demo.root))


def test_association_rules_exact(tmp_path: Path) -> None:
    ws = tierwise.init(tmp_path / "ws")
    rows = ["order_id,customer_id,ordered_at,amount,category"]
    baskets = {"A": ["手机", "配件"], "B": ["手机", "配件"], "C": ["手机"], "D": ["电脑"]}
    n = 0
    for cid, items in baskets.items():
        for item in items:
            n += 1
            rows.append(f"O{n},{cid},2025-05-0{n % 9 + 1} 10:00,100,{item}")
    (tmp_path / "o.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ws.import_file("orders", tmp_path / "o.csv", unknown_customers="create")
    rules = {(r["if"], r["then"]): r for r in patterns.association_rules(ws, min_support=0.1)}
    phone_to_acc = rules[("手机", "配件")]
    assert phone_to_acc["support"] == 0.5  # 2 of 4 baskets
    assert phone_to_acc["confidence"] == pytest.approx(2 / 3)
    assert phone_to_acc["lift"] == pytest.approx((2 / 3) / 0.5)
    assert rules[("配件", "手机")]["confidence"] == 1.0
    affinity = {r["category"]: r for r in patterns.category_affinity(ws)}
    assert affinity["手机"]["share"] == pytest.approx(3 / 6)
    # one customer: D spends everything on computers, 1/6 of all spend → lift 6
    mine = patterns.category_affinity(ws, customer_id="D")
    assert mine == [{"category": "电脑", "share": 1.0, "share_all": pytest.approx(1 / 6),
                     "lift": pytest.approx(6.0)}]
    assert "电脑" in tw("patterns", "--customer", "D", "-w", str(ws.root))
    ws.close()
