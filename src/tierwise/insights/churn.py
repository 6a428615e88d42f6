"""A supervised churn model with a time-based split, measured against BG/NBD P(alive).

Features are computed as of a cutoff T from the facts up to T; the label is "no paid order
in the N days after T". The model (scikit-learn's HistGradientBoosting, probabilities
calibrated isotonically by cross-validation) learns on the cutoff T1 = T2 - N (labels from
(T1, T2]) and is tested on T2 = end - M (labels from (T2, end]), so nothing after the test
cutoff is seen in training. The baseline on the same test rows is 1 - P(alive) of a BG/NBD
model (and, for comparison, Pareto/NBD) fitted on the history up to the test cutoff.
Reported: AUC, PR-AUC and the lift of the riskiest 10%; permutation importance of every
feature; per customer, the features that raise the risk most against a typical customer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import average_precision_score, roc_auc_score

from tierwise.errors import TierwiseError
from tierwise.models.clv import (
    Summary,
    bgnbd_p_alive,
    fit_bgnbd,
    fit_pareto_nbd,
    pareto_p_alive,
)
from tierwise.workspace import Workspace

FEATURES = ("recency_days", "orders", "revenue", "average_order", "tenure_days",
            "orders_90d", "orders_365d", "refunds", "events_30d", "events_90d", "tickets",
            "average_csat", "average_nps")
LABELS = {"recency_days": ("距上次购买天数", "days since last order"),
          "orders": ("订单数", "orders"), "revenue": ("消费总额", "revenue"),
          "average_order": ("客单价", "average order"), "tenure_days": ("客龄(天)", "tenure"),
          "orders_90d": ("近90天订单", "orders in 90 days"),
          "orders_365d": ("近一年订单", "orders in a year"), "refunds": ("退款数", "refunds"),
          "events_30d": ("近30天行为", "events in 30 days"),
          "events_90d": ("近90天行为", "events in 90 days"), "tickets": ("工单数", "tickets"),
          "average_csat": ("平均满意度", "average CSAT"),
          "average_nps": ("平均NPS", "average NPS")}

_SQL = """
WITH o AS (
  SELECT customer_id,
    count(*) FILTER (WHERE status = 'paid') AS orders,
    coalesce(sum(amount) FILTER (WHERE status = 'paid'), 0) AS revenue,
    count(*) FILTER (WHERE status = 'refunded') AS refunds,
    count(*) FILTER (WHERE status = 'paid' AND ordered_at > $1::TIMESTAMPTZ - INTERVAL 90 DAY)
      AS orders_90d,
    count(*) FILTER (WHERE status = 'paid' AND ordered_at > $1::TIMESTAMPTZ - INTERVAL 365 DAY)
      AS orders_365d,
    date_diff('day', max(ordered_at) FILTER (WHERE status = 'paid'), $1::TIMESTAMPTZ)
      AS recency_days,
    date_diff('day', min(ordered_at) FILTER (WHERE status = 'paid'), $1::TIMESTAMPTZ)
      AS tenure_days,
    count(DISTINCT CAST(ordered_at AS DATE)) FILTER (WHERE status = 'paid') - 1 AS repeat_days,
    date_diff('day', min(ordered_at) FILTER (WHERE status = 'paid'),
              max(ordered_at) FILTER (WHERE status = 'paid')) AS t_x_days
  FROM orders WHERE ordered_at <= $1 GROUP BY 1),
e AS (
  SELECT customer_id,
    count(*) FILTER (WHERE occurred_at > $1::TIMESTAMPTZ - INTERVAL 30 DAY) AS events_30d,
    count(*) FILTER (WHERE occurred_at > $1::TIMESTAMPTZ - INTERVAL 90 DAY) AS events_90d
  FROM events WHERE occurred_at <= $1 GROUP BY 1),
t AS (SELECT customer_id, count(*) AS tickets, avg(csat) AS average_csat
      FROM tickets WHERE opened_at <= $1 GROUP BY 1),
f AS (SELECT customer_id, avg(nps) AS average_nps FROM feedback WHERE "at" <= $1 GROUP BY 1),
later AS (SELECT DISTINCT customer_id FROM orders WHERE status = 'paid' AND ordered_at > $1
          AND ordered_at <= $1::TIMESTAMPTZ + INTERVAL ({horizon}) DAY)
SELECT o.*, coalesce(e.events_30d, 0) AS events_30d, coalesce(e.events_90d, 0) AS events_90d,
  coalesce(t.tickets, 0) AS tickets, t.average_csat, f.average_nps,
  o.revenue / o.orders AS average_order,
  CASE WHEN later.customer_id IS NULL THEN 1 ELSE 0 END AS churned
FROM o LEFT JOIN e USING (customer_id) LEFT JOIN t USING (customer_id)
  LEFT JOIN f USING (customer_id) LEFT JOIN later USING (customer_id)
WHERE o.orders > 0 ORDER BY o.customer_id
"""


@dataclass
class Dataset:
    customer_ids: list[str]
    x: np.ndarray  # customers × FEATURES (NaN where unknown: HistGB handles it)
    churned: np.ndarray  # 1 = no paid order within the horizon after the cutoff
    bgnbd: tuple[np.ndarray, np.ndarray, np.ndarray]  # x, t_x, T in weeks


def dataset(ws: Workspace, cutoff: datetime, horizon_days: int) -> Dataset:
    with ws.engine.session(ws.facts.scans()) as s:
        table = s.query(_SQL.replace("{horizon}", str(int(horizon_days))), [cutoff])
    if table.num_rows == 0:
        raise TierwiseError(f"no customer has a paid order before {cutoff:%Y-%m-%d}",
                            zh=f"没有客户在 {cutoff:%Y-%m-%d} 之前有已付订单")
    x = np.column_stack([np.asarray(table[f].to_numpy(zero_copy_only=False), dtype=float)
                         for f in FEATURES])
    x[:, np.isnan(x).all(axis=0)] = 0.0  # a source with no rows (CDNOW has only orders)
    repeat = np.asarray(table["repeat_days"].to_numpy(zero_copy_only=False), dtype=float)
    t_x = np.asarray(table["t_x_days"].to_numpy(zero_copy_only=False), dtype=float) / 7
    age = np.asarray(table["tenure_days"].to_numpy(zero_copy_only=False), dtype=float) / 7
    return Dataset(table["customer_id"].to_pylist(), x,
                   np.asarray(table["churned"].to_numpy(zero_copy_only=False), dtype=int),
                   (np.maximum(repeat, 0), t_x, age))


def _lift(y: np.ndarray, score: np.ndarray, top: float = 0.1) -> float:
    n = max(1, int(len(y) * top))
    best = np.argsort(-score, kind="stable")[:n]
    return float(y[best].mean() / max(y.mean(), 1e-12))


def _metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    return {"auc": float(roc_auc_score(y, score)),
            "pr_auc": float(average_precision_score(y, score)),
            "lift_top_10pct": _lift(y, score)}


@dataclass
class ChurnReport:
    train_cutoff: datetime
    test_cutoff: datetime
    horizon_days: int
    train_rows: int
    test_rows: int
    churn_rate: float
    model: dict[str, float]
    p_alive_baseline: dict[str, float]  # BG/NBD
    pareto_p_alive: dict[str, float]
    importance: dict[str, float] = field(default_factory=dict)


def _classifier(seed: int) -> CalibratedClassifierCV:
    # No early stopping: it failed inside scikit-learn on CDNOW-sized folds.
    base = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.06,
                                          min_samples_leaf=40, early_stopping=False,
                                          random_state=seed)
    return CalibratedClassifierCV(base, method="isotonic", cv=3)


def evaluate(ws: Workspace, horizon_days: int = 90, end: datetime | None = None,
             seed: int = 7, test_horizon_days: int | None = None) -> tuple[ChurnReport, Any]:
    """Train on T₁ = T₂ − N, test on T₂ = end − M (M = ``test_horizon_days``, default N);
    training labels end at T₂, so nothing after the test cutoff is seen in training.
    Returns the report and the trained model."""
    end = end or _last_fact(ws)
    test_horizon = test_horizon_days or horizon_days
    test_cutoff = end - timedelta(days=test_horizon)
    train_cutoff = test_cutoff - timedelta(days=horizon_days)
    train = dataset(ws, train_cutoff, horizon_days)
    test = dataset(ws, test_cutoff, test_horizon)
    if len(set(train.churned)) < 2 or len(set(test.churned)) < 2:
        raise TierwiseError("every customer churned or none did in a split: the history is "
                            "too short for this horizon",
                            zh="某个时间切分中要么所有客户都流失了，要么都没有：对这个时间跨度来说"
                            "历史太短")
    model = _classifier(seed).fit(train.x, train.churned)
    risk = model.predict_proba(test.x)[:, 1]
    # The baselines see the whole history up to the test cutoff, as they would in use.
    summary = Summary.compress(*test.bgnbd)
    alive = bgnbd_p_alive(fit_bgnbd(summary).params, *test.bgnbd)
    pareto_alive = pareto_p_alive(fit_pareto_nbd(summary).params, *test.bgnbd)
    sample = np.random.default_rng(seed).choice(len(test.x), min(len(test.x), 20_000),
                                                replace=False)
    importance = permutation_importance(model, test.x[sample], test.churned[sample],
                                        scoring="roc_auc", n_repeats=3, random_state=seed)
    report = ChurnReport(
        train_cutoff, test_cutoff, horizon_days, len(train.x), len(test.x),
        float(test.churned.mean()), _metrics(test.churned, risk),
        _metrics(test.churned, 1 - alive), _metrics(test.churned, 1 - pareto_alive),
        {f: float(v) for f, v in sorted(zip(FEATURES, importance.importances_mean,
                                            strict=True), key=lambda p: -p[1])})
    return report, model


def _last_fact(ws: Workspace) -> datetime:
    with ws.engine.session(ws.facts.scans()) as s:
        value = s.query("SELECT max(ordered_at) AS t FROM orders").column(0)[0].as_py()
    if value is None:
        raise TierwiseError("no orders to learn churn from",
                            zh="没有订单可用于学习流失")
    return value  # type: ignore[no-any-return]


def reasons(model: Any, x: np.ndarray, top: int = 3) -> list[list[tuple[str, float]]]:
    """Per row, the features whose value raises the risk most against a typical customer
    (the risk with that one feature set to the population median, subtracted)."""
    base = model.predict_proba(x)[:, 1]
    medians = np.nanmedian(x, axis=0)
    effects = np.zeros_like(x)
    for j in range(x.shape[1]):
        typical = x.copy()
        typical[:, j] = medians[j]
        effects[:, j] = base - model.predict_proba(typical)[:, 1]
    out = []
    for row in effects:
        order = np.argsort(-row)[:top]
        out.append([(FEATURES[j], float(row[j])) for j in order if row[j] > 0.005])
    return out


def score_now(ws: Workspace, horizon_days: int = 90, seed: int = 7,
              end: datetime | None = None) -> tuple[Dataset, np.ndarray, Any]:
    """Train on the latest labelled cutoff (``end`` − horizon; ``end``: the latest order
    by default) and score every buyer as of ``end``: the buyers, their probabilities and
    the model. ``evaluate`` tells how far such a model can be trusted."""
    end = end or _last_fact(ws)
    latest = dataset(ws, end - timedelta(days=horizon_days), horizon_days)
    model = _classifier(seed).fit(latest.x, latest.churned)
    now = dataset(ws, end, horizon_days)
    return now, model.predict_proba(now.x)[:, 1], model


def save_to_snapshot(ws: Workspace, customer_ids: list[str], risk: np.ndarray) -> int:
    """Write the model's probabilities into the latest snapshot's ``churn_probability``
    (the segment field of that name); returns how many customers got one."""
    from tierwise.models.compute import set_snapshot_column

    return set_snapshot_column(ws, "churn_probability", customer_ids, risk.tolist())
