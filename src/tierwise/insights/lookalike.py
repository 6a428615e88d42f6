"""Lookalikes: score prospects and leads by how much they resemble the best customers.

A classifier learns "in the seed group or not" among buyers on what is known before anyone
buys — firmographics (industry, company size, channel, province), behaviour (events by
type in the last 90 days, tickets) and account age — and scores every customer without a
paid order. Cross-validated AUC on the buyers says how much the signal is worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import cross_val_score

from tierwise.errors import TierwiseError
from tierwise.workspace import Workspace

CATEGORICAL = ("industry", "company_size", "channel", "province")
TOP_EVENT_TYPES = 8


@dataclass
class Lookalikes:
    seed: str
    seed_size: int
    buyers: int
    cv_auc: float
    feature_names: list[str]
    customer_ids: list[str]  # prospects and leads, best first
    scores: np.ndarray


def _seed_ids(ws: Workspace, seed: str) -> set[str]:
    kind, _, value = seed.partition(":")
    if kind == "tier":
        from tierwise.models.compute import load_snapshot

        table = load_snapshot(ws).table
        return set(table.filter(pc.equal(table["tier"], value))["customer_id"].to_pylist())
    if kind == "segment":
        from tierwise.segments.membership import members_at

        return set(members_at(ws, value))
    raise TierwiseError(f"seed {seed!r}: expected tier:<A|B|C|D> or segment:<key>",
                        zh=f"种子 {seed!r}：应为 tier:<A|B|C|D> 或 segment:<key>")


def _features(ws: Workspace, as_of: datetime) -> tuple[list[str], np.ndarray, list[str],
                                                      np.ndarray]:
    """Customer ids, the feature matrix, feature names and which rows have bought."""
    people = ws.table("customers")
    ids = people["customer_id"].to_pylist()
    columns: list[np.ndarray] = []
    names: list[str] = []
    for name in CATEGORICAL:
        values = people[name].to_pylist()
        codes = {v: i for i, v in enumerate(sorted({v for v in values if v}))}
        columns.append(np.array([codes.get(v, np.nan) if v else np.nan for v in values]))
        names.append(name)
    signup = people["signup_at"].to_pylist()
    columns.append(np.array([(as_of - s).days if s else np.nan for s in signup], dtype=float))
    names.append("account_age_days")
    with ws.engine.session(ws.facts.scans()) as s:
        events = s.query(
            "SELECT customer_id, type, count(*) AS n FROM events WHERE occurred_at <= $1 AND "
            "occurred_at > $1::TIMESTAMPTZ - INTERVAL 90 DAY GROUP BY 1, 2", [as_of])
        tickets = s.query("SELECT customer_id, count(*) AS n FROM tickets WHERE opened_at <= $1 "
                          "GROUP BY 1", [as_of])
        buyers = s.query("SELECT DISTINCT customer_id FROM orders WHERE status = 'paid' AND "
                         "ordered_at <= $1", [as_of])
    index = {cid: i for i, cid in enumerate(ids)}
    top = events.group_by("type").aggregate([("n", "sum")]).sort_by(
        [("n_sum", "descending")])["type"].to_pylist()[:TOP_EVENT_TYPES]
    def counts(table: pa.Table) -> np.ndarray:
        out = np.zeros(len(ids))
        for cid, n in zip(table["customer_id"].to_pylist(), table["n"].to_pylist(),
                          strict=True):
            if cid in index:
                out[index[cid]] = n
        return out

    for kind in top:
        columns.append(counts(events.filter(pc.equal(events["type"], kind))))
        names.append(f"events_{kind}_90d")
    columns.append(counts(tickets))
    names.append("tickets")
    bought = np.zeros(len(ids), dtype=bool)
    for cid in buyers["customer_id"].to_pylist():
        if cid in index:
            bought[index[cid]] = True
    return ids, np.column_stack(columns), names, bought


def score(ws: Workspace, seed: str = "tier:A", as_of: datetime | None = None,
          random_state: int = 7) -> Lookalikes:
    """Train seed-vs-other buyers; score the customers without a paid order."""
    from tierwise.store.control import utcnow

    as_of = as_of or utcnow()
    positives = _seed_ids(ws, seed)
    ids, x, names, bought = _features(ws, as_of)
    y = np.array([cid in positives for cid in ids])
    train = bought
    if y[train].sum() < 10 or (~y[train]).sum() < 10:
        raise TierwiseError(f"seed {seed!r} has {int(y[train].sum())} buyers: need at least "
                            "10 in and 10 outside the seed to learn from",
                            zh=f"种子 {seed!r} 有 {int(y[train].sum())} 位购买者：种子内外都至少需"
                            "要 10 位才能学习")
    if (~bought).sum() == 0:
        raise TierwiseError("every customer has bought: there are no prospects to score",
                            zh="所有客户都已购买过：没有可评分的潜在客户")
    categorical = [i < len(CATEGORICAL) for i in range(len(names))]
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.06,
                                           categorical_features=np.array(categorical),
                                           class_weight="balanced",
                                           random_state=random_state)
    auc = float(np.mean(cross_val_score(model, x[train], y[train], cv=3, scoring="roc_auc")))
    model.fit(x[train], y[train])
    prospects = np.flatnonzero(~bought)
    scores = model.predict_proba(x[prospects])[:, 1]
    order = np.argsort(-scores, kind="stable")
    return Lookalikes(seed, int(y[train].sum()), int(train.sum()), auc, names,
                      [ids[i] for i in prospects[order]], scores[order])


def as_table(result: Lookalikes) -> pa.Table:
    return pa.table({"customer_id": result.customer_ids,
                     "lookalike_score": pa.array(result.scores, pa.float64())})
