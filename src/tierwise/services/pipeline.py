"""The sales pipeline (商机管道): the opportunities open now in each stage — how many, their
amount, the amount weighted by win probability, and how long they have been in the stage —
and those won and lost in a period, with the win rate; overall and per owner, account
tier or industry, every number a list of its opportunities. The CLI (``tierwise
pipeline``), the API (``/v1/values/pipeline``) and the dashboard (``/pipeline``) call these.

Opportunities are read as they stand now (the table holds each one's current state); a
period picks the ones *closed* in it (``closed_at``). An open opportunity without a
probability counts 0 towards the weighted amount, and how many did is said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.dialects import render
from tierwise.config import WorkspaceConfig
from tierwise.engines.base import naive_utc
from tierwise.errors import Said, TierwiseError
from tierwise.models import compute
from tierwise.services.periods import Period, begun
from tierwise.store import customer_mirror
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

GROUPINGS = ("owner", "tier", "industry")
#: What a list of opportunities may be narrowed to besides an open stage.
CLOSED = ("won", "lost")


@dataclass
class Pipeline:
    period: Period
    as_of: datetime
    stages: list[dict[str, Any]]
    closed: dict[str, Any]
    by: str | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)
    notes: list[Said] = field(default_factory=list)


def _table(ws: Workspace, as_of: datetime) -> pa.Table:
    """Every opportunity created by ``as_of``, with its account's industry and tier."""
    scan = ws.facts.scan("opportunities")
    people = customer_mirror.read(ws.root, ws.control).select(["customer_id", "industry"])
    tiers = (compute.load_snapshot(ws).table.select(["customer_id", "tier"])
             if compute.list_snapshots(ws) else
             pa.table({"customer_id": pa.array([], pa.string()),
                       "tier": pa.array([], pa.string())}))
    with ws.engine.session({"opportunities": scan},
                           {"_people": people, "_tiers": tiers}) as session:
        return session.query(render(
            "SELECT o.opportunity_id, o.customer_id, o.name, o.stage, o.amount, o.probability,"
            " o.created_at, o.stage_at, o.closed_at, o.expected_close, o.owner, p.industry,"
            " t.tier FROM opportunities o LEFT JOIN _people p ON p.customer_id = o.customer_id"
            " LEFT JOIN _tiers t ON t.customer_id = o.customer_id"
            " WHERE o.created_at <= :as_of ORDER BY o.opportunity_id", ws.engine.name),
            {"as_of": naive_utc(as_of)})


def _days(later: datetime, earlier: pa.ChunkedArray) -> np.ndarray:
    values = earlier.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(float)
    return (later.timestamp() * 1e6 - values) / 86_400e6


def _stage_figures(table: pa.Table, stages: list[str], as_of: datetime) -> list[dict[str, Any]]:
    out = []
    for stage in stages:
        mine = table.filter(pc.equal(table["stage"], stage))
        amount = np.nan_to_num(mine["amount"].to_numpy(zero_copy_only=False).astype(float))
        chance = mine["probability"].to_numpy(zero_copy_only=False).astype(float)
        in_stage = _days(as_of, mine["stage_at"])
        out.append({"stage": stage, "open": mine.num_rows,
                    "amount": round(float(amount.sum()), 2),
                    "weighted_amount": round(float((amount * np.nan_to_num(chance)).sum()
                                                   / 100), 2),
                    "median_days_in_stage": round(float(np.nanmedian(in_stage)), 1)
                    if mine.num_rows and not np.isnan(in_stage).all() else None})
    return out


def _closed_figures(table: pa.Table, won: str, lost: str, period: Period) -> dict[str, Any]:
    closed_at = table["closed_at"]
    inside = pc.and_(pc.greater_equal(closed_at, pa.scalar(period.start, closed_at.type)),
                     pc.less(closed_at, pa.scalar(period.end, closed_at.type)))
    closed = table.filter(pc.fill_null(inside, False))
    out: dict[str, Any] = {}
    for name, stage in (("won", won), ("lost", lost)):
        mine = closed.filter(pc.equal(closed["stage"], stage))
        out[name] = mine.num_rows
        out[f"{name}_amount"] = round(float(pc.sum(mine["amount"]).as_py() or 0), 2)
        if name == "won":
            cycle = mine["closed_at"].cast(pa.int64()).to_numpy(zero_copy_only=False) \
                - mine["created_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
            out["median_days_to_win"] = round(float(np.median(cycle)) / 86_400e6, 1) \
                if mine.num_rows else None
    decided = out["won"] + out["lost"]
    out["win_rate"] = out["won"] / decided if decided else None
    return out


def _open_stages(config: WorkspaceConfig) -> list[str]:
    return [s for s in config.opportunity_stages
            if s not in (config.won_stage, config.lost_stage)]


def summary(table: pa.Table, config: WorkspaceConfig, as_of: datetime) -> dict[str, Any]:
    """One account's pipeline in a line (its 360 view): its open opportunities — how many,
    their amount and the amount weighted as the Pipeline page weighs it — and all it won
    and lost. ``table``: the account's opportunities (stage, amount, probability,
    stage_at)."""
    stages = _stage_figures(table, _open_stages(config), as_of)
    won = table.filter(pc.equal(table["stage"], config.won_stage))
    return {"open": sum(s["open"] for s in stages),
            "open_amount": round(sum(s["amount"] for s in stages), 2),
            "weighted_amount": round(sum(s["weighted_amount"] for s in stages), 2),
            "won": won.num_rows,
            "won_amount": round(float(pc.sum(won["amount"]).as_py() or 0), 2),
            "lost": table.filter(pc.equal(table["stage"], config.lost_stage)).num_rows}


def _check_by(by: str | None) -> None:
    if by is not None and by not in GROUPINGS:
        raise TierwiseError(f"by={by!r}: the pipeline is grouped by {', '.join(GROUPINGS)}",
                            zh=f"by={by!r}：商机管道可按 {', '.join(GROUPINGS)} 分组")


def pipeline(ws: Workspace, period_text: str, by: str | None = None,
             as_of: datetime | None = None) -> Pipeline:
    """Open opportunities per stage now, and those closed in the period, overall and per
    group."""
    _check_by(by)
    as_of = as_of or utcnow()
    period = begun(period_text, ws.config.timezone, as_of)
    config = ws.config
    table = _table(ws, as_of)
    open_stages = _open_stages(config)
    found = Pipeline(period, as_of, _stage_figures(table, open_stages, as_of),
                     _closed_figures(table, config.won_stage, config.lost_stage, period), by)
    unweighted = table.filter(pc.and_(pc.is_in(table["stage"], pa.array(open_stages)),
                                      pc.is_null(table["probability"]))).num_rows
    if unweighted:
        found.notes.append(Said(
            f"{unweighted:,} open opportunities have no win probability: they add nothing to "
            "the weighted amount",
            f"{unweighted:,} 个进行中的商机没有赢率：不计入加权金额"))
    if by is not None:
        groups = table[by]
        for value in sorted(set(groups.to_pylist()), key=lambda v: (v is None, str(v))):
            mine = table.filter(pc.is_null(groups) if value is None else pc.equal(groups, value))
            found.groups.append({
                "group": value, "stages": _stage_figures(mine, open_stages, as_of),
                "closed": _closed_figures(mine, config.won_stage, config.lost_stage, period)})
    return found


def opportunities(ws: Workspace, period_text: str, stage: str, by: str | None = None,
                  group: str | None = None, limit: int = 100, after: str | None = None,
                  as_of: datetime | None = None) -> tuple[int, list[dict[str, Any]]]:
    """The opportunities behind a number of ``pipeline``: those open now in ``stage``, or
    ``won`` / ``lost`` in the period (of one group); returns how many and one page, by id
    (``after``: the last id of the page before)."""
    from tierwise.segments.vocabulary import vocabulary

    _check_by(by)
    if (by is None) != (group is None):
        raise TierwiseError("by and group go together: the grouping and the value of the "
                            "group", zh="by 与 group 需同时给出：分组方式与组的取值")
    as_of = as_of or utcnow()
    period = begun(period_text, ws.config.timezone, as_of)
    config = ws.config
    table = _table(ws, as_of)
    if stage in CLOSED:
        code = config.won_stage if stage == "won" else config.lost_stage
        closed_at = table["closed_at"]
        chosen = pc.and_(pc.equal(table["stage"], code), pc.and_(
            pc.greater_equal(closed_at, pa.scalar(period.start, closed_at.type)),
            pc.less(closed_at, pa.scalar(period.end, closed_at.type))))
    else:
        code = vocabulary(ws).code("opportunities.stage", stage)
        if code in (config.won_stage, config.lost_stage):
            raise TierwiseError(f"stage {stage!r} closes an opportunity: ask for won or lost "
                                "(those closed in the period)",
                                zh=f"阶段 {stage!r} 表示商机已结束：请用 won 或 lost（本期结束的）")
        chosen = pc.equal(table["stage"], code)
    if by is not None:
        if by == "tier" and group is not None:
            group = vocabulary(ws).column_code("tier", group)
        chosen = pc.and_(chosen, pc.equal(table[by], group))
    table = table.filter(pc.fill_null(chosen, False))
    ids = table["opportunity_id"].to_pylist()
    start = 0
    if after is not None:
        from bisect import bisect_right

        start = bisect_right(ids, after)
    return table.num_rows, table.slice(start, limit).to_pylist()


__all__ = ["CLOSED", "GROUPINGS", "Pipeline", "opportunities", "pipeline", "summary"]
