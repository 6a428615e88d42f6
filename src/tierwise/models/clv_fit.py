"""Fitting CLV models on a workspace's orders, with an optional calibration/holdout split."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tierwise.errors import TierwiseError
from tierwise.models import clv, stats
from tierwise.workspace import Workspace

TimeUnit = Literal["day", "week", "month"]
UNIT_DAYS = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}


def _summary(ws: Workspace, as_of: datetime, unit: TimeUnit) -> tuple[pa.Table, np.ndarray,
                                                                      np.ndarray, np.ndarray]:
    table = stats.clv_summary(ws, as_of)
    days = UNIT_DAYS[unit]
    x = table["x"].to_numpy().astype(float)
    t_x = table["t_x_days"].to_numpy().astype(float) / days
    T = table["t_days"].to_numpy().astype(float) / days
    return table, x, t_x, T


def _discrete(x_days: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """Purchase days → BG/BB periods: n whole periods observed, last purchase period t_x,
    repeat count x capped at one per period (an approximation: days in one period merge)."""
    n = np.floor(T)
    t = np.minimum(np.floor(t_x), n)
    x = np.minimum(x_days, t)
    return x, t, n


def fit(ws: Workspace, model: str, as_of: datetime, unit: TimeUnit = "week",
        calibration_end: datetime | None = None,
        survivors: list[float] | None = None) -> dict[str, Any]:
    """Fit ``model``; with ``calibration_end``, also score it on the holdout period."""
    if model == "sbg":
        if not survivors:
            raise TierwiseError("sbg is a contractual model: give the cohort's survivor counts "
                                "per period with --survivors 1000,631,468,...",
                                zh="sbg 是合约模型：请用 --survivors 1000,631,468,... 给出每期的存"
                                "续人数")
        fitted = clv.fit_sbg(np.asarray(survivors, float))
        return {**fitted.as_dict(), "time_unit": "period"}
    end = calibration_end or as_of
    table, x, t_x, T = _summary(ws, end, unit)
    if table.num_rows < 10:
        raise TierwiseError(f"only {table.num_rows} customers bought by {end:%Y-%m-%d}; "
                            "a CLV model needs more",
                            zh=f"截至 {end:%Y-%m-%d} 只有 {table.num_rows} 位客户有购买；CLV 模型需"
                            "要更多")
    if model == "bgnbd":
        fitted = clv.fit_bgnbd(clv.Summary.compress(x, t_x, T))
    elif model == "pareto_nbd":
        fitted = clv.fit_pareto_nbd(clv.Summary.compress(x, t_x, T))
    elif model == "gamma_gamma":
        m_x = np.nan_to_num(table["m_x"].to_numpy(zero_copy_only=False).astype(float))
        fitted = clv.fit_gamma_gamma(x, m_x)
    elif model == "bgbb":
        dx, dt, dn = _discrete(x, t_x, T)
        rows, counts = np.unique(np.column_stack([dx, dt, dn]), axis=0, return_counts=True)
        fitted = clv.fit_bgbb(rows[:, 0], rows[:, 1], rows[:, 2], counts)
    else:
        raise TierwiseError(f"unknown model {model!r}; expected one of {', '.join(clv.MODELS)}",
                            zh=f"未知模型 {model!r}：应为 {', '.join(clv.MODELS)} 之一")
    out: dict[str, Any] = {**fitted.as_dict(), "time_unit": unit,
                           "calibration_end": end.isoformat()}
    if calibration_end is not None and model in ("bgnbd", "pareto_nbd", "bgbb"):
        out["holdout"] = _holdout(ws, fitted, model, table, x, t_x, T, calibration_end,
                                  as_of, unit)
    return out


def _holdout(ws: Workspace, fitted: clv.Fitted, model: str, table: pa.Table, x: np.ndarray,
             t_x: np.ndarray, T: np.ndarray, start: datetime, end: datetime,
             unit: TimeUnit) -> dict[str, Any]:
    """Predicted vs actual purchase days after calibration, for customers known by then."""
    if end <= start:
        raise TierwiseError("the calibration end must be before as_of",
                            zh="校准截止时间必须早于 as_of")
    horizon = (end - start) / timedelta(days=UNIT_DAYS[unit])
    later = stats.clv_summary(ws, end)
    index = {c: i for i, c in enumerate(later["customer_id"].to_pylist())}
    total_days = later["purchase_days"].to_numpy()
    actual = np.array([total_days[index[c]] for c in table["customer_id"].to_pylist()], float)
    actual -= table["purchase_days"].to_numpy()
    if model == "bgnbd":
        predicted = clv.bgnbd_expected(fitted.params, horizon, x, t_x, T)
    elif model == "pareto_nbd":
        predicted = clv.pareto_expected(fitted.params, horizon, x, t_x, T)
    else:
        dx, dt, dn = _discrete(x, t_x, T)
        predicted = clv.bgbb_expected(fitted.params, int(round(horizon)), dx, dt, dn)
    return {
        "periods": round(float(horizon), 3),
        "customers": int(len(actual)),
        "actual_total": float(actual.sum()),
        "predicted_total": round(float(predicted.sum()), 3),
        "mean_absolute_error": round(float(np.mean(np.abs(predicted - actual))), 4),
        "correlation": round(float(np.corrcoef(predicted, actual)[0, 1]), 4)
        if np.std(actual) > 0 else None,
    }
