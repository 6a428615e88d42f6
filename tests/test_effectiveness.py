"""Holdout groups and uplift with confidence intervals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tests.test_cli import tw

import tierwise
from tierwise.insights.effectiveness import holdout, uplift


def test_holdout_is_random_reproducible_and_sized() -> None:
    ids = [f"C{i:05d}" for i in range(20_000)]
    treated, held = holdout(ids, 0.1, "spring")
    assert abs(len(held) / len(ids) - 0.1) < 0.01
    assert holdout(ids, 0.1, "spring") == (treated, held)
    assert set(holdout(ids, 0.1, "autumn")[1]) != set(held)


def _workspace(tmp_path: Path, treated_rate: float, holdout_rate: float
               ) -> tuple[tierwise.Workspace, list[str], list[str]]:
    rng = np.random.default_rng(3)
    ws = tierwise.init(tmp_path / "ws")
    treated = [f"T{i:04d}" for i in range(1500)]
    held = [f"H{i:04d}" for i in range(1500)]
    rows = ["order_id,customer_id,ordered_at,amount"]
    n = 0
    for ids, rate in ((treated, treated_rate), (held, holdout_rate)):
        for cid in ids:
            n += 1
            rows.append(f"O{n},{cid},2025-01-05 10:00,50")  # before the treatment
            if rng.random() < rate:
                n += 1
                rows.append(f"O{n},{cid},2025-03-{rng.integers(2, 28):02d} 10:00,"
                            f"{rng.integers(50, 150)}")
    (tmp_path / "o.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ws.import_file("orders", tmp_path / "o.csv", unknown_customers="create")
    return ws, treated, held


def test_uplift_finds_a_real_effect(tmp_path: Path) -> None:
    ws, treated, held = _workspace(tmp_path, 0.45, 0.30)
    effects = {e.metric: e for e in uplift(ws, treated, held,
                                           datetime(2025, 3, 1, tzinfo=UTC), 30)}
    repurchase = effects["repurchase_rate"]
    assert 0.10 < repurchase.difference < 0.20 and repurchase.significant
    assert repurchase.low < 0.15 < repurchase.high
    assert effects["revenue_per_customer"].difference > 0
    ws.close()


def test_no_effect_is_not_significant(tmp_path: Path) -> None:
    ws, treated, held = _workspace(tmp_path, 0.30, 0.30)
    repurchase = uplift(ws, treated, held, datetime(2025, 3, 1, tzinfo=UTC), 30)[0]
    assert repurchase.low < 0 < repurchase.high
    ws.close()


def test_holdout_and_uplift_cli(tmp_path: Path) -> None:
    ws, treated, held = _workspace(tmp_path, 0.45, 0.30)
    from tierwise.segments import definitions as defs
    from tierwise.segments import membership

    campaign = defs.SegmentDefinition(key="spring", kind="static")
    defs.write_file(ws, campaign)
    defs.save(ws, campaign)
    membership.edit_static(ws, "spring", add=treated + held)
    root = str(ws.root)
    assert "spring_holdout" in tw("holdout", "spring", "--share", "0.2", "-w", root)
    out = tw("uplift", "--treated", "spring", "--holdout", "spring_holdout", "--since",
             "2025-03-01", "-w", root)
    assert "repurchase" in out and "95% CI" in out
    ws.close()
