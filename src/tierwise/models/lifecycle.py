"""Lifecycle stages from each customer's own rhythm, and churn-risk bands from P(alive).

A customer's **typical gap** is their mean time between purchase days
(``t_x / x``); customers with a single purchase day take the population's median gap.
With ``gap`` clamped to ``[min_gap_days, max_gap_days]`` and ``recency`` the days since
the last purchase, the first matching rule wins:

- prospect: never bought;
- new: first purchase within ``new_days`` (30);
- reactivated: recency ≤ the active limit, and the gap before the last purchase was
  longer than ``dormant ×`` the typical gap *before* it (see ``prior_gap``);
- loyal: recency ≤ the active limit, at least ``loyal_purchase_days`` (4) purchase days
  and ``loyal_tenure_days`` (180) as a customer;
- active: recency ≤ ``active × gap`` (1.5 × gap, the active limit);
- at_risk: recency ≤ ``at_risk × gap`` (3 ×);
- dormant: recency ≤ ``dormant × gap`` (6 ×, the dormant limit);
- churned: otherwise.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# the stages and their labels are declared once, with every enumerated field
from tierwise.definitions.vocabulary import STAGE_LABELS as STAGE_LABELS
from tierwise.definitions.vocabulary import STAGES as STAGES


class LifecycleSpec(BaseModel):
    """Lifecycle rules (versioned as ``lifecycle/default``)."""

    model_config = ConfigDict(extra="forbid")
    new_days: int = Field(30, ge=1)
    active: float = Field(1.5, gt=0)
    at_risk: float = Field(3.0, gt=0)
    dormant: float = Field(6.0, gt=0)
    min_gap_days: float = Field(7, gt=0)
    max_gap_days: float = Field(180, gt=0)
    loyal_purchase_days: int = Field(4, ge=2)
    loyal_tenure_days: int = Field(180, ge=0)


def typical_gap(x: np.ndarray, t_x_days: np.ndarray, spec: LifecycleSpec) -> np.ndarray:
    x = np.asarray(x, float)
    own = np.where(x > 0, np.asarray(t_x_days, float) / np.maximum(x, 1), np.nan)
    fallback = float(np.nanmedian(own)) if np.any(x > 0) else spec.max_gap_days
    gap = np.where(np.isnan(own), fallback, own)
    return np.clip(gap, spec.min_gap_days, spec.max_gap_days)


def prior_gap(x: np.ndarray, t_x_days: np.ndarray, gap_before_last: np.ndarray,
              spec: LifecycleSpec) -> np.ndarray:
    """The typical gap before the last purchase: the rhythm a comeback is measured against.

    The mean gap over all purchases would include the long gap itself, so a customer with
    two purchase days could never look reactivated; customers with fewer than two earlier
    gaps take the population's median gap.
    """
    x = np.asarray(x, float)
    before = np.nan_to_num(np.asarray(gap_before_last, float))
    own = np.where(x >= 2, (np.asarray(t_x_days, float) - before) / np.maximum(x - 1, 1),
                   np.nan)
    everyone = np.where(x > 0, np.asarray(t_x_days, float) / np.maximum(x, 1), np.nan)
    fallback = float(np.nanmedian(everyone)) if np.any(x > 0) else spec.max_gap_days
    return np.clip(np.where(np.isnan(own), fallback, own), spec.min_gap_days,
                   spec.max_gap_days)


def stages(spec: LifecycleSpec, bought: np.ndarray, recency: np.ndarray,
           tenure_days: np.ndarray, purchase_days: np.ndarray, gap: np.ndarray,
           gap_before_last: np.ndarray, earlier_gap: np.ndarray | None = None
           ) -> np.ndarray:
    """Stage of each customer (see the module docstring). ``earlier_gap`` is the rhythm
    before the last purchase (``prior_gap``); it defaults to ``gap``."""
    n = len(bought)
    out = np.full(n, "prospect", dtype=object)
    recency = np.asarray(recency, float)
    active_limit = spec.active * gap
    dormant_limit = spec.dormant * gap
    comeback_limit = spec.dormant * (gap if earlier_gap is None else earlier_gap)
    rules = [
        ("new", tenure_days <= spec.new_days),
        ("reactivated", (recency <= active_limit)
         & (np.nan_to_num(gap_before_last, nan=0.0) > comeback_limit)),
        ("loyal", (recency <= active_limit) & (purchase_days >= spec.loyal_purchase_days)
         & (tenure_days >= spec.loyal_tenure_days)),
        ("active", recency <= active_limit),
        ("at_risk", recency <= spec.at_risk * gap),
        ("dormant", recency <= dormant_limit),
        ("churned", np.ones(n, dtype=bool)),
    ]
    free = np.asarray(bought, bool).copy()
    for stage, mask in rules:
        hit = free & mask
        out[hit] = stage
        free &= ~hit
    return out


class ChurnBands(BaseModel):
    """Churn risk from P(alive): high below ``high``, medium below ``medium``, else low."""

    model_config = ConfigDict(extra="forbid")
    high: float = Field(0.3, gt=0, lt=1)
    medium: float = Field(0.7, gt=0, lt=1)


def churn_risk(p_alive: np.ndarray, bands: ChurnBands) -> np.ndarray:
    """"high", "medium" or "low" for each P(alive); None where it is unknown (NaN)."""
    p = np.asarray(p_alive, float)
    out = np.full(len(p), None, dtype=object)
    out[p >= bands.medium] = "low"  # NaN compares false either way
    out[(p >= bands.high) & (p < bands.medium)] = "medium"
    out[p < bands.high] = "high"
    return out
