"""Tier definitions: the plan (who would move under a new definition) and the apply.

One plan for every front end: the customers and measures of a snapshot (the latest, or
one computed for ``as_of`` and not saved), their tiers as computed, and their tiers under
the proposed definition, scored from the same measures. Nothing is saved by a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from tierwise.models import compute, tiers
from tierwise.models.summaries import column_floats
from tierwise.models.tiers import TierSpec
from tierwise.workspace import Workspace

#: Tier metric -> the snapshot column holding it.
METRIC_COLUMNS = {"monetary": "rfm_monetary", "frequency": "rfm_frequency",
                  "recency": "rfm_recency", "profit": "profit_total", "clv": "clv",
                  "referrals": "referrals", "growth": "revenue_growth",
                  "contribution": "contribution_12m"}


@dataclass
class TierPlan:
    snapshot_id: int | None
    as_of: datetime
    #: Per tier label (current and proposed): customers now and under the proposal.
    tiers: list[dict[str, Any]]
    #: Customers whose tier changes.
    moved: int
    #: Customers per (tier now, tier proposed), rows and columns in ``labels`` order.
    migration: list[dict[str, Any]]
    labels: list[str]
    notes: list[str] = field(default_factory=list)


def tier_plan(ws: Workspace, spec: TierSpec, *, snapshot: compute.Snapshot | None = None,
              as_of: datetime | None = None) -> TierPlan:
    """Who would be in which tier under ``spec``, against the tiers computed now.

    ``snapshot``: the snapshot to plan on (a caller that holds the latest passes it);
    ``as_of``: plan on a computation for that instant instead (not saved).
    """
    settings = compute.load_settings(ws)
    if as_of is not None:
        snapshot = compute.compute(ws, as_of, save=False, settings=settings)
    elif snapshot is None:
        snapshot = compute.load_snapshot(ws)
    t = snapshot.table
    current = TierSpec.model_validate(snapshot.settings.get("tiers") or
                                      settings.tiers.model_dump())
    ids = np.asarray(t.column("customer_id").to_pylist(), dtype=object)
    revenue = np.nan_to_num(column_floats(t, "revenue_total"))
    bought = np.nan_to_num(column_floats(t, "orders_total")) > 0
    notes: list[str] = []
    if spec.weights == current.weights:
        score = np.nan_to_num(column_floats(t, "value_score"))
    else:
        metrics = {name: np.nan_to_num(column_floats(t, column))
                   for name, column in METRIC_COLUMNS.items()}
        missing = [name for name, column in METRIC_COLUMNS.items()
                   if spec.weights.get(name) and column not in t.column_names]
        if missing:
            notes.append(f"{', '.join(missing)} is not kept in this snapshot (computed "
                         "before it was): counted as 0 here; compute again for the real "
                         "figures")
        score = tiers.value_score(metrics, spec.weights, bought)
    after = compute.tiers_of(ws, spec, ids, score, revenue, snapshot.as_of)
    before = np.asarray(t.column("tier").to_pylist(), dtype=object)
    labels = list(dict.fromkeys([*current.tiers, *spec.tiers]))
    rows = [{"tier": label, "before": int((before == label).sum()),
             "after": int((after == label).sum())} for label in labels]
    return TierPlan(snapshot.snapshot_id, snapshot.as_of, rows, int((before != after).sum()),
                    tiers.migration(before, after, labels).to_pylist(), labels, notes)


def tier_apply(ws: Workspace, spec: TierSpec, note: str | None = None) -> int:
    """Save ``spec`` as the next version of the tier definition (used by the next
    computation); returns the version."""
    return compute.save_setting(ws, "tiers", spec, note)
