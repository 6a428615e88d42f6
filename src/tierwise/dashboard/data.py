"""What the pages show, computed from a snapshot once and kept while the snapshot is current.

A snapshot never changes once saved, so its aggregates are cached per (workspace, snapshot
id); a new compute run makes a new snapshot and so new aggregates. Monthly trends read the
orders up to the snapshot's as_of and are cached the same way.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tierwise.definitions.vocabulary import label_of
from tierwise.models import compute
from tierwise.models.lifecycle import STAGE_LABELS, STAGES
from tierwise.models.summaries import (
    at_risk,
    breakdown,
    clv_by_tier,
    column_floats,
    kpis,
    moves,
    rf_grid,
    value_at_risk,
)
from tierwise.workspace import Workspace

CACHE_SIZE = 8
PARETO_POINTS = 101
AT_RISK_ROWS = 50
#: Paid orders per local calendar month from :start (a local midnight) to :as_of.
MONTHLY_SQL = """
SELECT date_trunc('month', LOCAL_TS(:tz, ordered_at)) AS month, sum(amount) AS revenue,
       count(*) AS orders, count(DISTINCT customer_id) AS buyers
FROM orders
WHERE status = 'paid' AND ordered_at >= :start AND ordered_at <= :as_of
GROUP BY 1 ORDER BY 1
"""


BUYERS_SQL = """
SELECT DISTINCT customer_id FROM orders
WHERE status = 'paid' AND ordered_at >= :start AND ordered_at < :end AND ordered_at <= :as_of
"""


@dataclass
class View:
    """One snapshot and its settings, with aggregates computed on first use."""

    ws: Workspace
    snapshot: compute.Snapshot
    settings: compute.Settings
    _memo: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def table(self) -> pa.Table:
        return self.snapshot.table

    @property
    def as_of(self) -> datetime:
        return self.snapshot.as_of

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._memo:
                self._memo[name] = make()
            return self._memo[name]

    # -- labels --------------------------------------------------------------------------

    def tier_label(self, tier: str | None, lang: str) -> str:
        return label_of(self.settings.tiers.labels, tier, lang)

    def rfm_label(self, segment: str | None, lang: str) -> str:
        return label_of(self.settings.scheme.labels, segment, lang)

    @staticmethod
    def stage_label(stage: str | None, lang: str) -> str:
        return label_of(STAGE_LABELS, stage, lang)

    # -- aggregates ----------------------------------------------------------------------

    def kpis(self) -> dict[str, Any]:
        return self._once("kpis", lambda: kpis(self.table))  # type: ignore[no-any-return]

    def satisfaction(self, by: str | None = None) -> dict[str, Any]:
        """NPS and CSAT at the snapshot's instant (``insights.satisfaction``)."""
        from tierwise.insights.satisfaction import satisfaction

        return self._once(f"satisfaction:{by}",  # type: ignore[no-any-return]
                          lambda: satisfaction(self.ws, self.as_of, by))

    def satisfaction_trend(self) -> list[dict[str, Any]]:
        """NPS and CSAT of each month's answers, the last twelve months to the snapshot."""
        from tierwise.insights.satisfaction import trend

        return self._once("satisfaction_trend",  # type: ignore[no-any-return]
                          lambda: trend(self.ws, self.as_of))

    def respondents_in_month(self, month: str) -> pa.Array | None:
        """The customers behind a month of ``satisfaction_trend`` (those who gave an NPS
        score in it, up to the snapshot's instant); None for a month outside the trend."""
        from tierwise.insights.satisfaction import months_to, respondents

        window = next(((start, end) for name, start, end in months_to(
            self.as_of, self.ws.config.zone) if name == month), None)
        return None if window is None else respondents(self.ws, *window)

    def value_at_risk(self) -> float:
        return value_at_risk(self.table)

    def breakdown(self, column: str) -> list[dict[str, Any]]:
        if column not in self.table.column_names:
            return []
        return self._once(f"breakdown:{column}",  # type: ignore[no-any-return]
                          lambda: breakdown(self.table, column))

    def rf_grid(self) -> list[dict[str, Any]]:
        return self._once("rf_grid", lambda: rf_grid(self.table))  # type: ignore[no-any-return]

    def rfm_segments(self) -> list[dict[str, Any]]:
        """Per RFM segment: customers, revenue, shares, mean recency, mean orders and AOV."""
        def make() -> list[dict[str, Any]]:
            t = self.table.filter(pc.is_valid(self.table.column("rfm_segment")))
            grouped = pa.table({
                "segment": t.column("rfm_segment"),
                "revenue": pc.fill_null(t.column("revenue_total"), 0.0),
                "orders": pc.fill_null(t.column("orders_total"), 0),
                "recency": t.column("recency_days"),
            }).group_by("segment").aggregate([
                ("revenue", "sum"), ("revenue", "count"), ("orders", "sum"),
                ("orders", "mean"), ("recency", "mean")])
            total_c = max(t.num_rows, 1)
            total_r = float(pc.sum(pc.fill_null(t.column("revenue_total"), 0.0)).as_py()
                            or 0.0) or 1.0
            rows = []
            for r in grouped.to_pylist():
                revenue = float(r["revenue_sum"] or 0.0)
                orders = int(r["orders_sum"] or 0)
                rows.append({"segment": r["segment"], "customers": int(r["revenue_count"]),
                             "customer_share": r["revenue_count"] / total_c,
                             "revenue": revenue, "revenue_share": revenue / total_r,
                             "mean_recency": r["recency_mean"], "mean_orders": r["orders_mean"],
                             "aov": revenue / orders if orders else None})
            return sorted(rows, key=lambda r: -r["revenue"])
        return self._once("rfm_segments", make)  # type: ignore[no-any-return]

    def pareto(self) -> list[tuple[float, float]]:
        """(share of customers, share of revenue) with customers sorted best first; the
        point at share x holds the first ``round(x × customers)`` of them."""
        def make() -> list[tuple[float, float]]:
            revenue = np.sort(np.nan_to_num(column_floats(self.table, "revenue_total")))[::-1]
            total = revenue.sum()
            if not len(revenue) or total <= 0:
                return []
            cumulative = np.cumsum(revenue) / total
            points = np.linspace(0, 1, PARETO_POINTS)
            index = np.clip(np.round(points * len(revenue)).astype(int) - 1, 0, len(revenue) - 1)
            shares = np.where(points == 0, 0.0, cumulative[index])
            return [(float(x), float(y)) for x, y in zip(points, shares, strict=True)]
        return self._once("pareto", make)  # type: ignore[no-any-return]

    def clv_by_tier(self) -> list[dict[str, Any]]:
        if "clv" not in self.table.column_names:
            return []
        return self._once("clv_by_tier",  # type: ignore[no-any-return]
                          lambda: clv_by_tier(self.table))

    def clv_histogram(self, bins: int = 20) -> list[dict[str, Any]]:
        """Buyers per CLV band (bands up to the 99th percentile, the rest in the last)."""
        def make() -> list[dict[str, Any]]:
            values = column_floats(self.table, "clv")
            values = values[~np.isnan(values) & (values > 0)]
            if not len(values):
                return []
            edges = self._clv_edges(values, bins)
            counts = np.bincount(self._clv_band(values, edges), minlength=bins)
            return [{"low": float(a), "high": float(b), "customers": int(c)}
                    for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)]
        return self._once(f"clv_histogram:{bins}", make)  # type: ignore[no-any-return]

    @staticmethod
    def _clv_edges(values: np.ndarray, bins: int) -> np.ndarray:
        return np.linspace(0, float(np.quantile(values, 0.99)), bins + 1)

    @staticmethod
    def _clv_band(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Each value's band: [low, high), the last band also holding the top and above."""
        bins = len(edges) - 1
        return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)

    def clv_band_members(self, band: int, bins: int = 20) -> pa.Array:
        """The customers in one band of ``clv_histogram`` (the same bands, the same
        customers: a positive CLV)."""
        values = column_floats(self.table, "clv")
        positive = ~np.isnan(values) & (values > 0)
        if not positive.any():
            return pa.array([], pa.string())
        edges = self._clv_edges(values[positive], bins)
        chosen = np.zeros(len(values), dtype=bool)
        chosen[positive] = self._clv_band(values[positive], edges) == band
        return self.table.column("customer_id").filter(pa.array(chosen)).combine_chunks()

    def at_risk(self, lang: str, limit: int = AT_RISK_ROWS) -> list[dict[str, Any]]:
        """High-risk customers with the most value at stake first, each with its reasons."""
        t = self.table
        if "churn_risk" not in t.column_names:
            return []
        rows = self._once(f"at_risk:{limit}", lambda: at_risk(t, limit))
        return [{**row, "reasons": reasons(row, lang)} for row in rows]

    def moves_from(self, earlier: View, column: str) -> list[dict[str, Any]]:
        """Customers per (value in ``earlier``, value here) of ``column``."""
        return self._once(  # type: ignore[no-any-return]
            f"moves:{earlier.snapshot.snapshot_id}:{column}",
            lambda: moves(earlier.table, self.table, column))

    def monthly(self, months: int = 12) -> list[dict[str, Any]]:
        """Revenue, orders and buyers per calendar month of the workspace's time zone, the
        last ``months`` of them up to the snapshot's as_of (the last one runs to as_of)."""
        def make() -> list[dict[str, Any]]:
            from tierwise.compile.dialects import render
            from tierwise.compile.segments import shift

            start = shift(self.as_of, months - 1, "m", self.ws.config.zone).replace(
                day=1, hour=0, minute=0, second=0, microsecond=0)
            with self.ws.engine.session({"orders": self.ws.facts.scan("orders")}) as session:
                found = session.query(render(MONTHLY_SQL, self.ws.engine.name), {
                    "tz": self.ws.config.timezone, "start": start, "as_of": self.as_of})
            return [{"month": f"{r['month']:%Y-%m}", "revenue": float(r["revenue"] or 0.0),
                     "orders": int(r["orders"]), "buyers": int(r["buyers"])}
                    for r in found.to_pylist()]
        return self._once(f"monthly:{months}", make)  # type: ignore[no-any-return]

    def buyers_in_month(self, month: str) -> pa.Array:
        """The customers with a paid order in a calendar month (``2026-07``, the workspace's
        zone) up to the snapshot's instant: the buyers of ``monthly``'s month."""
        from datetime import datetime

        from tierwise.compile.dialects import render

        year, number = (int(part) for part in month.split("-"))
        zone = self.ws.config.zone
        start = datetime(year, number, 1, tzinfo=zone)
        end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
        with self.ws.engine.session({"orders": self.ws.facts.scan("orders")}) as session:
            found = session.query(render(BUYERS_SQL, self.ws.engine.name), {
                "start": start, "end": end, "as_of": self.as_of})
        return found.column("customer_id").combine_chunks()

    def top_by_revenue(self, n: int) -> pa.Array:
        """The ``n`` customers with the most revenue to date (ties by id): the first ``n``
        of the Pareto curve."""
        t = pa.table({"customer_id": self.table.column("customer_id"),
                      "revenue": pc.fill_null(self.table.column("revenue_total"), 0.0)})
        order = pc.sort_indices(t, [("revenue", "descending"), ("customer_id", "ascending")])
        return t.take(order.slice(0, n)).column("customer_id").combine_chunks()

    def matching(self, filters: dict[str, Any], after: str | None, limit: int,
                 within: pa.Array | None = None) -> tuple[list[str], int]:
        """Customer ids (in id order, after ``after``, at most ``limit``) whose values in
        this snapshot equal ``filters`` (column -> value) — and who are among ``within``
        when given — and how many match in all."""
        t = self.table
        mask = None if within is None else pc.is_in(t.column("customer_id"), within)
        for column, value in filters.items():
            hit = pc.fill_null(pc.equal(t.column(column), value), False)
            mask = hit if mask is None else pc.and_(mask, hit)
        ids = t.column("customer_id") if mask is None else t.filter(mask).column("customer_id")
        total = len(ids)
        if after:
            ids = ids.filter(pc.greater(ids, after))
        return ids.slice(0, limit).to_pylist(), total

    def stage_order(self) -> list[str]:
        present = {r["value"] for r in self.breakdown("lifecycle")}
        return [s for s in STAGES if s in present]


def reasons(row: dict[str, Any], lang: str) -> list[str]:
    """Plain reasons why a customer is flagged, from the snapshot's own measures."""
    zh = lang == "zh-CN"
    out = []
    recency, gap = row.get("recency_days"), row.get("typical_gap_days")
    if recency is not None and gap:
        ratio = recency / gap
        if ratio >= 1.5:
            out.append(f"已 {recency:.0f} 天未购买，是平常间隔（{gap:.0f} 天）的 {ratio:.1f} 倍"
                       if zh else f"no order for {recency:.0f} days, {ratio:.1f}× the usual "
                       f"gap of {gap:.0f} days")
    elif recency is not None:
        out.append(f"已 {recency:.0f} 天未购买" if zh else f"no order for {recency:.0f} days")
    p = row.get("p_alive")
    if p is not None:
        out.append(f"存活概率仅 {p:.0%}" if zh else f"P(alive) only {p:.0%}")
    if row.get("orders_total") == 1:
        out.append("只购买过一次" if zh else "bought only once")
    return out


#: Snapshots read for one customer's tier and lifecycle history.
HISTORY_SNAPSHOTS = 12


def value_history(ws: Workspace, customer_id: str,
                  limit: int = HISTORY_SNAPSHOTS) -> list[dict[str, Any]]:
    """One customer's tier and lifecycle stage in each of the latest ``limit`` snapshots,
    oldest first (snapshots are sorted by customer id, so the filter reads little)."""
    import pyarrow.parquet as pq

    out = []
    for snap in compute.list_snapshots(ws)[-limit:]:
        found = pq.read_table(ws.root / snap["path"], columns=["tier", "lifecycle"],
                              filters=[("customer_id", "=", customer_id)])
        if found.num_rows:
            row = found.to_pylist()[0]
            out.append({"snapshot_id": snap["snapshot_id"], "as_of": snap["as_of"], **row})
    return sorted(out, key=lambda r: r["as_of"])


def warm(view: View, lang: str) -> None:
    """Compute every aggregate a page of this view shows, so that no request waits."""
    view.kpis()
    view.monthly()
    for column in ("tier", "lifecycle", "churn_risk", "rfm_segment"):
        view.breakdown(column)
    view.rf_grid()
    view.rfm_segments()
    view.pareto()
    view.clv_by_tier()
    view.clv_histogram()
    view.at_risk(lang)
    view.satisfaction("tier")
    view.satisfaction("lifecycle")
    view.satisfaction_trend()


class Views:
    """Views of recent snapshots per workspace, least recently used dropped first."""

    def __init__(self) -> None:
        self._views: OrderedDict[tuple[str, int | None], View] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ws: Workspace, snapshot_id: int | None = None) -> View:
        """The view of a snapshot (default the latest); NotFoundError if there is none."""
        if snapshot_id is None:
            latest = compute.list_snapshots(ws)
            snapshot_id = latest[-1]["snapshot_id"] if latest else None
        key = (str(ws.root), snapshot_id)
        with self._lock:
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
                return found
        view = View(ws, compute.load_snapshot(ws, snapshot_id), compute.load_settings(ws))
        with self._lock:
            self._views[key] = view
            while len(self._views) > CACHE_SIZE:
                self._views.popitem(last=False)
        return view


VIEWS = Views()
#: Seconds between looks for a new snapshot to warm.
WARM_EVERY = 15.0
WARM_AFTER = 120.0
log = logging.getLogger("tierwise.dashboard")


def keep_warm(ws: Workspace, stop: threading.Event, every: float = WARM_EVERY,
              also: Callable[[], object] | None = None,
              after: threading.Event | None = None) -> None:
    """While the server runs: whenever a snapshot becomes the latest (at start, after a
    compute run in any process), compute what the pages show of it, the migration from the
    snapshot before it and the review of the last full quarter; ``also`` is called then too
    (the API's per-customer values). The first round waits for ``after`` (the real-time
    worker's catch-up), at most ``WARM_AFTER`` seconds."""
    from tierwise.services.review import cached_review, last_full_quarter

    if after is not None:
        after.wait(WARM_AFTER)
    seen = None
    while not stop.is_set():
        try:
            found = compute.list_snapshots(ws)
            if found and found[-1]["snapshot_id"] != seen:
                seen = found[-1]["snapshot_id"]  # tried once: a failure is not retried
                view = VIEWS.get(ws, seen)
                warm(view, ws.config.locale)
                if len(found) > 1:
                    earlier = VIEWS.get(ws, found[-2]["snapshot_id"])
                    view.moves_from(earlier, "tier")
                    view.moves_from(earlier, "lifecycle")
                cached_review(ws, last_full_quarter(view.as_of))
                if also is not None:
                    also()
        except Exception:  # noqa: BLE001 - pages compute on demand instead
            log.exception("could not precompute the dashboard's figures")
        stop.wait(every)
