"""Customer economics for the front ends: each measure of ``models.economics`` summed per
tier, lifecycle stage, industry, owner or acquisition channel over a period, the customers
behind them, and one customer's own figures. The CLI (``tierwise economics``), the API
(``/v1/values/economics``) and the dashboard (``/economics``) all call these functions.

Periods are written as for the review (``2026Q3``, ``2026-07``, ``2026``,
``2026-07-01..2026-08-15``); a period still under way runs to now and is marked partial.
The account manager's time is priced by the tier of the latest snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.compile.dialects import render
from tierwise.engines.base import naive_utc
from tierwise.errors import NotFoundError, Said, TierwiseError
from tierwise.models import compute
from tierwise.models.economics import MEASURES, EconomicsSettings, per_customer
from tierwise.services.memo import Memo, data_token
from tierwise.services.periods import Period, begun, parse_period
from tierwise.store import customer_mirror
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

#: What customers are grouped by: the latest snapshot's tier or stage, or a customer field.
GROUPINGS = ("tier", "lifecycle", "industry", "owner", "channel")
#: Counts summed beside the measures.
COUNTS = ("orders", "orders_without_cost", "tickets", "messages")
#: What a list of customers is ordered by.
ORDERS = MEASURES


@dataclass
class Economics:
    period: Period
    as_of: datetime
    partial: bool
    currency: str
    #: Customers, the counts and every measure summed over all of them.
    totals: dict[str, Any]
    by: str | None = None
    segment: str | None = None
    #: Per group: ``group`` (a value, None for none), customers, counts and measures.
    groups: list[dict[str, Any]] = field(default_factory=list)
    #: What the figures leave out or assume, in both languages (shown by every front end).
    notes: list[Said] = field(default_factory=list)


def _snapshot_values(ws: Workspace) -> pa.Table | None:
    if not compute.list_snapshots(ws):
        return None
    return compute.load_snapshot(ws).table.select(["customer_id", "tier", "lifecycle"])


def _service_levels(ws: Workspace, econ: EconomicsSettings, tiers: pa.Table | None,
                    notes: list[Said]) -> pa.Table | None:
    """The service level of the playbook that applies to each customer (for the account
    manager's hours, ``service_level_hours``); None when no hours are set by level. A level
    the setting names and no enabled playbook has is said: it prices nobody."""
    if not econ.service_level_hours:
        return None
    from tierwise.actions import catalog as automations
    from tierwise.actions import playbooks

    with ws.control.read() as conn:
        offered = {b.service_level for b in automations.all_of(
            conn, "playbook", enabled_only=True).values() if b.service_level}
    unused = sorted(set(econ.service_level_hours) - offered)
    if unused:
        notes.append(Said(
            f"service_level_hours names {', '.join(unused)}, which no enabled playbook has: "
            "those hours price nobody",
            f"service_level_hours 中的 {'、'.join(unused)} 没有任何已启用的服务方案使用："
            "这些工时未计入"))
    if tiers is None:
        ids = customer_mirror.accounts_and_customers(
            ws.root, ws.control, ["customer_id"])["customer_id"].to_pylist()
        known: dict[str, str | None] | None = None
    else:
        ids = tiers["customer_id"].to_pylist()
        known = dict(zip(ids, tiers["tier"].to_pylist(), strict=True))
    books = playbooks.applying(ws, ids, known)
    return pa.table({"customer_id": pa.array(list(books), pa.string()),
                     "service_level": pa.array([b.service_level for b in books.values()],
                                               pa.string())})


def _table(ws: Workspace, period: Period, as_of: datetime, segment: str | None
           ) -> tuple[pa.Table, list[Said]]:
    """Every customer's economics in the period (with their groups), and the notes."""
    settings = compute.load_settings(ws, for_compute=False)
    econ = settings.economics
    values = _snapshot_values(ws)
    end = min(period.end, as_of)
    notes: list[Said] = []
    tiers = None if values is None else values.select(["customer_id", "tier"])
    levels = _service_levels(ws, econ, tiers, notes)
    found = per_customer(ws, econ, period.start, end, tiers, levels)
    people = customer_mirror.read(ws.root, ws.control).select(
        ["customer_id", "industry", "owner", "channel"])
    index = pc.index_in(found["customer_id"], people["customer_id"])
    for name in ("industry", "owner", "channel"):
        found = found.append_column(name, pc.take(people[name], index))
    if values is not None:
        index = pc.index_in(found["customer_id"], values["customer_id"])
        for name in ("tier", "lifecycle"):
            found = found.append_column(name, pc.take(values[name], index))
    else:
        for name in ("tier", "lifecycle"):
            found = found.append_column(name, pa.nulls(found.num_rows, pa.string()))
        if econ.manager_hours:
            notes.append(Said("no snapshot yet: the account managers' time is not priced "
                              "(run `tierwise compute`)",
                              "还没有快照：客户经理的时间成本未计入（请运行 `tierwise compute`）"))
    stale = sorted(set(econ.manager_hours) - set(settings.tiers.tiers))
    if stale:
        notes.append(Said(f"manager_hours names tiers that no longer exist ({', '.join(stale)})"
                          ": their hours price nobody",
                          f"manager_hours 中的等级已不存在（{'、'.join(stale)}）：这些工时未计入"))
    if segment is not None:
        from tierwise.segments.catalog import known
        from tierwise.segments.membership import members_at

        ids = pa.array(members_at(ws, known(ws, segment), as_of), pa.string())
        found = found.filter(pc.is_in(found["customer_id"], ids))
    missing = int(pc.sum(found["orders_without_cost"]).as_py() or 0)
    if missing:
        notes.append(Said(
            f"{missing:,} paid orders have no cost, their category no margin "
            "(category_margins) and there is no default_margin: their whole amount is "
            "counted as gross margin",
            f"{missing:,} 笔已支付订单没有成本、所属品类没有毛利率（category_margins），也没有 "
            "default_margin：其全部金额计为毛利"))
    unpriced, unused = _unmatched(ws, econ, found, period.start, end)
    for setting, keys in unused.items():
        if keys:  # a typo would price nothing: said, not ignored
            notes.append(Said(f"{setting} names {', '.join(keys)}, which nothing in the period "
                              "has: those entries price nothing",
                              f"{setting} 中的 {'、'.join(keys)} 在本期数据中不存在："
                              "这些设置未起作用"))
    if unpriced:
        notes.append(Said(
            f"tickets of priority {', '.join(unpriced)} have no cost in ticket_costs: each "
            f"costs ticket_cost ({econ.ticket_cost:g})",
            f"优先级为 {'、'.join(unpriced)} 的工单在 ticket_costs 中没有单价：按 ticket_cost"
            f"（{econ.ticket_cost:g}）计"))
    if not any(ws.config.message_costs.values()):
        notes.append(Said("message_costs is not set in tierwise.toml: messages cost nothing",
                          "tierwise.toml 中没有设置 message_costs：消息不计成本"))
    return found, notes


def _unmatched(ws: Workspace, econ: EconomicsSettings, table: pa.Table, start: datetime,
               end: datetime) -> tuple[list[str], dict[str, list[str]]]:
    """Priorities (with their channel, when they have one) of the period's tickets that no
    key of ``ticket_costs`` prices (when it has any: otherwise every ticket costs
    ``ticket_cost`` on purpose); and per setting, its keys that no order category, ticket
    or customer channel of the period carries. ``table``: the customers' economics."""
    seen: list[dict[str, Any]] = []
    categories: set[str] = set()
    span = {"start": naive_utc(start), "end": naive_utc(end)}
    with ws.engine.session(ws.facts.scans(("tickets", "orders"))) as session:
        if econ.ticket_costs:
            seen = session.query(render(
                "SELECT DISTINCT channel, priority FROM tickets "
                "WHERE opened_at >= :start AND opened_at < :end", ws.engine.name),
                span).to_pylist()
        if econ.category_margins:
            categories = {c for c in session.query(render(
                "SELECT DISTINCT category FROM orders WHERE status = 'paid' "
                "AND ordered_at >= :start AND ordered_at < :end", ws.engine.name),
                span)["category"].to_pylist() if c is not None}
    costs = econ.ticket_costs
    unpriced = sorted({r["priority"] if r["channel"] is None else
                       f"{r['channel']}/{r['priority']}"
                       for r in seen if r["priority"] is not None
                       and f"{r['channel']}/{r['priority']}" not in costs
                       and r["priority"] not in costs and r["channel"] not in costs})
    ticket_keys = ({r["priority"] for r in seen} | {r["channel"] for r in seen}
                   | {f"{r['channel']}/{r['priority']}" for r in seen})
    channels = set(pc.unique(table["channel"]).to_pylist())
    unused = {"ticket_costs": sorted(set(costs) - ticket_keys),
              "category_margins": sorted(set(econ.category_margins) - categories),
              "channel_cac": sorted(set(econ.channel_cac) - channels)}
    return unpriced, unused


def _sums(table: pa.Table) -> dict[str, Any]:
    out: dict[str, Any] = {"customers": table.num_rows}
    for name in (*COUNTS, *MEASURES):
        total = pc.sum(table[name]).as_py() or 0
        out[name] = int(total) if name in COUNTS else round(float(total), 2)
    return out


def _check_by(by: str | None) -> None:
    if by is not None and by not in GROUPINGS:
        raise TierwiseError(f"by={by!r}: economics are grouped by {', '.join(GROUPINGS)}",
                            zh=f"by={by!r}：经济价值可按 {', '.join(GROUPINGS)} 分组")


def economics(ws: Workspace, period_text: str, by: str | None = None,
              segment: str | None = None, as_of: datetime | None = None) -> Economics:
    """Every measure summed over the customers (of ``segment``), and per group (``by``)."""
    _check_by(by)
    as_of = as_of or utcnow()
    period = begun(period_text, ws.config.timezone, as_of)
    table, notes = _table(ws, period, as_of, segment)
    found = Economics(period, as_of, period.end > as_of, ws.config.currency, _sums(table),
                      by, segment, notes=notes)
    if by is not None:
        groups = table[by]
        for value in sorted(set(groups.to_pylist()), key=lambda v: (v is None, str(v))):
            mine = table.filter(pc.is_null(groups) if value is None
                                else pc.equal(groups, value))
            found.groups.append({"group": value, **_sums(mine)})
    return found


def customers(ws: Workspace, period_text: str, order: str = "profit_contribution",
              descending: bool = True, by: str | None = None, group: str | None = None,
              segment: str | None = None, limit: int = 50, as_of: datetime | None = None
              ) -> tuple[int, list[dict[str, Any]]]:
    """The customers (of a group, of a segment) with their figures, ordered by one measure
    (ties by id); returns how many there are and the first ``limit``."""
    _check_by(by)
    if order not in ORDERS:
        raise TierwiseError(f"order={order!r}: expected one of {', '.join(ORDERS)}",
                            zh=f"order={order!r}：应为 {', '.join(ORDERS)} 之一")
    if (by is None) != (group is None):
        raise TierwiseError("by and group go together: the grouping and the value of the "
                            "group", zh="by 与 group 需同时给出：分组方式与组的取值")
    period = parse_period(period_text, ws.config.timezone)
    table, _ = _table(ws, period, as_of or utcnow(), segment)
    if by is not None:
        table = table.filter(pc.fill_null(pc.equal(table[by], group), False))
    values = np.nan_to_num(table[order].to_numpy(zero_copy_only=False).astype(float))
    ids = np.asarray(table["customer_id"].to_pylist(), dtype=object)
    ranked = np.lexsort((ids, -values if descending else values))[:limit]
    rows = table.take(pa.array(ranked, pa.int64())).select(
        ["customer_id", *COUNTS, *MEASURES]).to_pylist()
    return table.num_rows, rows


def of_customer(ws: Workspace, customer_id: str, period_text: str,
                as_of: datetime | None = None) -> dict[str, Any]:
    """One customer's figures in a period."""
    period = parse_period(period_text, ws.config.timezone)
    table, _ = _table(ws, period, as_of or utcnow(), None)
    mine = table.filter(pc.equal(table["customer_id"], customer_id))
    if mine.num_rows == 0:
        raise NotFoundError(f"no customer with id {customer_id!r}",
                            zh=f"没有编号为 {customer_id!r} 的客户")
    row = mine.select(["customer_id", *COUNTS, *MEASURES]).to_pylist()[0]
    return {"period": period.name, **row}


def grouped(ws: Workspace, period: Period, groups: pa.Table, as_of: datetime | None = None
            ) -> tuple[list[dict[str, Any]], list[Said]]:
    """The measures summed per group of ``groups`` (customer_id, grp) — the review's tiers or
    segment — in ``period``, with the notes."""
    table, notes = _table(ws, period, as_of or utcnow(), None)
    index = pc.index_in(table["customer_id"], groups["customer_id"])
    grp = pc.take(groups["grp"], index)
    out = []
    for value in sorted({v for v in grp.to_pylist() if v is not None}, key=str):
        out.append({"group": value, **_sums(table.filter(pc.fill_null(pc.equal(grp, value),
                                                                      False)))})
    return out, notes


_MEMO = Memo()


def _token(ws: Workspace, segment: str | None) -> tuple[object, ...]:
    return (data_token(ws, ("orders", "tickets", "referrals"), segment, customers=True),
            _settings_token(ws))


def cached_economics(ws: Workspace, period_text: str, by: str | None = None,
                     segment: str | None = None) -> Economics:
    """``economics`` as of now, computed once for the same data, settings and hour."""
    key = (*_token(ws, segment), "economics", period_text.strip().upper(), by, segment)
    return _MEMO.get(key, lambda: economics(ws, period_text, by, segment))


def cached_customers(ws: Workspace, period_text: str, order: str = "profit_contribution",
                     descending: bool = True, by: str | None = None,
                     group: str | None = None, segment: str | None = None, limit: int = 50
                     ) -> tuple[int, list[dict[str, Any]]]:
    """``customers`` as of now, computed once for the same data, settings and hour (the
    dashboard asks for a list with every page)."""
    key = (*_token(ws, segment), "customers", period_text.strip().upper(), order, descending,
           by, group, segment, limit)
    return _MEMO.get(key, lambda: customers(ws, period_text, order, descending, by, group,
                                            segment, limit))


def _settings_token(ws: Workspace) -> tuple[object, ...]:
    """The settings, the playbooks (their service levels price the manager's time) and the
    deliveries (what messages cost) the figures read."""
    from tierwise.store import outbox as outbox_store
    from tierwise.store import versions

    loaded = compute.load_settings(ws, for_compute=False)
    with ws.control.read() as conn:
        books = tuple(sorted(versions.latest_versions(conn, "playbook").items()))
        delivered = outbox_store.delivered_state(conn)
    return (loaded.versions.get("economics"), loaded.versions.get("tiers"),
            tuple(sorted(ws.config.message_costs.items())), books, delivered)


__all__ = ["GROUPINGS", "ORDERS", "Economics", "cached_customers", "cached_economics",
           "customers", "economics", "grouped", "of_customer"]
