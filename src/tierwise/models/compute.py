"""`tierwise compute`: every customer's RFM, value score, tier, lifecycle stage, CLV and
churn risk as of an instant, saved as a dated snapshot.

Settings are versioned definitions in the control store (kind/key): ``rfm/settings``,
``rfm_scheme/<key>`` (user schemes), ``tiers/value``, ``lifecycle/default``,
``clv/settings``, ``churn/bands``. Defaults apply until a version is saved; each snapshot
records the versions and fitted parameters it used.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from tierwise.compile.segments import compile_rule
from tierwise.definitions.segment_parser import parse
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.models import clv, economics, lifecycle, rfm, stats, tiers
from tierwise.models.lifecycle import ChurnBands, LifecycleSpec
from tierwise.models.rfm import RFMSettings, SegmentScheme
from tierwise.models.tiers import TierSpec
from tierwise.segments.evaluate import Evaluation
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import changes as store_changes
from tierwise.store import customer_mirror
from tierwise.store import snapshots as snapshot_store
from tierwise.store import versions as stored
from tierwise.store.control import utcnow
from tierwise.store.facts import repeating_columns
from tierwise.workspace import Workspace

WEEK_DAYS = 7.0
MONTH_WEEKS = 52.0 / 12.0


class CLVSettings(BaseModel):
    """CLV settings (versioned as ``clv/settings``)."""

    model_config = ConfigDict(extra="forbid")
    #: Pareto/NBD by default: BG/NBD puts P(alive) = 1 for every customer without a repeat
    #: purchase, however long ago, which would hide one-time buyers from churn warnings.
    model: Literal["bgnbd", "pareto_nbd"] = "pareto_nbd"
    horizon_weeks: int = Field(52, ge=1)
    #: Share of revenue kept as profit; None: measured from orders' cost, else 1.
    margin: float | None = Field(None, gt=0, le=1)
    #: Yearly discount rate for future cash flows, applied monthly.
    discount_rate: float = Field(0.10, ge=0, lt=1)
    #: Service cost per expected future purchase, for profit CLV.
    service_cost_per_purchase: float = Field(0.0, ge=0)


SETTINGS: dict[str, tuple[str, str, type[BaseModel]]] = {
    "rfm": ("rfm", "settings", rfm.RFMSettings),
    "tiers": ("tiers", "value", tiers.TierSpec),
    "lifecycle": ("lifecycle", "default", lifecycle.LifecycleSpec),
    "clv": ("clv", "settings", CLVSettings),
    "churn": ("churn", "bands", lifecycle.ChurnBands),
    "economics": ("economics", "settings", economics.EconomicsSettings),
}


@dataclass
class Settings:
    rfm: RFMSettings
    scheme: SegmentScheme
    tiers: TierSpec
    lifecycle: LifecycleSpec
    clv: CLVSettings
    churn: ChurnBands
    economics: economics.EconomicsSettings = field(
        default_factory=economics.EconomicsSettings)
    versions: dict[str, int] = field(default_factory=dict)


def load_settings(ws: Workspace, for_compute: bool = True) -> Settings:
    """The latest saved version of every setting, or its default (version 0).
    ``for_compute``: also refuse settings that cannot compute together (a cell scheme for
    another number of score levels); labels are read without that check."""
    loaded: dict[str, Any] = {}
    versions: dict[str, int] = {}
    with ws.control.read() as conn:
        for name, (kind, key, model) in SETTINGS.items():
            saved = stored.latest(conn, kind, key)
            loaded[name] = model.model_validate(saved.spec) if saved else model()
            versions[name] = saved.version if saved else 0
        scheme_key = loaded["rfm"].scheme
        if scheme_key in rfm.SCHEMES:
            scheme = rfm.SCHEMES[scheme_key]
        else:
            saved = stored.latest(conn, "rfm_scheme", scheme_key)
            if saved is None:
                raise TierwiseError(f"RFM scheme {scheme_key!r} is neither built in "
                                    f"({', '.join(rfm.SCHEMES)}) nor saved",
                                    zh=f"RFM 方案 {scheme_key!r} 既不是内置方案"
                                    f"（{', '.join(rfm.SCHEMES)}），也没有保存过")
            scheme = rfm.scheme_from_spec(saved.spec)
            versions["rfm_scheme"] = saved.version
    if for_compute and scheme.kind == "cells" and scheme.bins != loaded["rfm"].bins:
        raise TierwiseError(f"RFM scheme {scheme.key} is for {scheme.bins} score levels but "
                            f"RFM is scored in {loaded['rfm'].bins}",
                            zh=f"RFM 方案 {scheme.key} 用于 {scheme.bins} 级评分，但 RFM 按 "
                            f"{loaded['rfm'].bins} 级评分")
    return Settings(loaded["rfm"], scheme, loaded["tiers"], loaded["lifecycle"],
                    loaded["clv"], loaded["churn"], loaded["economics"], versions)


def save_setting(ws: Workspace, name: str, spec: BaseModel, note: str | None = None) -> int:
    kind, key, model = SETTINGS[name]
    if name == "economics":
        assert isinstance(spec, economics.EconomicsSettings)
        tiers_now = load_settings(ws, for_compute=False).tiers.tiers
        unknown = sorted(set(spec.manager_hours) - set(tiers_now))
        if unknown:  # hours of a tier nobody is in would price nothing
            raise TierwiseError(
                f"economics.manager_hours names tiers that do not exist: {', '.join(unknown)};"
                f" the tiers are {', '.join(tiers_now)}",
                zh=f"economics.manager_hours 中的等级不存在：{'、'.join(unknown)}；现有等级："
                   f"{'、'.join(tiers_now)}")
    with ws.control.write() as conn:
        return stored.save(conn, kind, key, model.model_validate(
            spec.model_dump()).model_dump(mode="json"), note)


@dataclass
class Snapshot:
    snapshot_id: int | None
    as_of: datetime
    path: Path | None
    table: pa.Table
    settings: dict[str, Any]
    seconds: float


#: Rows per Parquet row group of a snapshot file: snapshots are sorted by customer id, so
#: reading one customer's row (their tier history) touches one group of this size.
SNAPSHOT_ROW_GROUP = 65_536


def _np(table: pa.Table, name: str, fill: float = np.nan) -> np.ndarray:
    return np.asarray(pc.fill_null(table[name].cast(pa.float64()), fill)
                      .to_numpy(zero_copy_only=False), dtype=float)


def _fit_clv(settings: CLVSettings, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
             m_x: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """(fitted parameters, P(alive), expected purchases over the horizon, expected spend)."""
    data = clv.Summary.compress(x, t_x, T)
    if settings.model == "bgnbd":
        fitted = clv.fit_bgnbd(data)
        p_alive = clv.bgnbd_p_alive(fitted.params, x, t_x, T)

        def cumulative(t: float) -> np.ndarray:
            return clv.bgnbd_expected(fitted.params, t, x, t_x, T)
    else:
        fitted = clv.fit_pareto_nbd(data)
        assert data.rows is not None
        p_alive = clv.pareto_p_alive_rows(fitted.params, data)[data.rows]

        def cumulative(t: float) -> np.ndarray:
            return clv.pareto_expected(fitted.params, t, x, t_x, T, p_alive)
    info: dict[str, Any] = {"purchases": fitted.as_dict()}
    try:
        spend_model = clv.fit_gamma_gamma(x, np.nan_to_num(m_x))
        observed = float(np.nanmean(m_x)) if np.any(~np.isnan(m_x)) else 0.0
        spend = clv.gamma_gamma_expected_spend(spend_model.params, x, m_x, observed)
        info["spend"] = spend_model.as_dict()
    except TierwiseError:
        spend = np.full(len(x), np.nanmean(m_x) if np.any(~np.isnan(m_x)) else 0.0)
        info["spend"] = {"model": "mean", "note": "too few repeat buyers for gamma_gamma"}
    info["cumulative"] = cumulative
    return info, p_alive, cumulative(float(settings.horizon_weeks)), spend


def _positions(ids: pa.ChunkedArray | pa.Array, other: pa.ChunkedArray | pa.Array
               ) -> pa.Array | None:
    """Where each of ``ids`` is in ``other`` (null: absent); None when ``other`` is ``ids``
    in the same order (most tables here are ordered by customer: a look-up of a million
    ids costs 0.2 s, the comparison nothing)."""
    def chunked(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
        return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])

    if len(ids) == len(other) and chunked(ids).equals(chunked(other)):
        return None
    return pc.index_in(ids, other)


def tiers_of(ws: Workspace, spec: TierSpec, customer_id: np.ndarray, score: np.ndarray,
             revenue: np.ndarray, as_of: datetime) -> np.ndarray:
    """Each customer's tier under ``spec``: from the value score or revenue, or — method
    ``rules`` — from its rules evaluated at ``as_of`` (what compute and the tier plan
    both call)."""
    if spec.method != "rules":
        return tiers.assign_tiers(spec, customer_id, score, revenue)
    words = vocabulary(ws)
    members = []
    with Evaluation(ws, as_of) as evaluation:
        for rule in spec.rules:
            compiled = compile_rule(parse(rule.when), ws.engine.name, as_of, ws.config.zone,
                                    vocabulary=words)
            members.append(set(evaluation.run(compiled)["customer_id"].to_pylist()))
    return tiers.assign_by_rules(spec, customer_id, members)


def compute(ws: Workspace, as_of: datetime | None = None, save: bool = True,
            settings: Settings | None = None) -> Snapshot:
    """Compute every customer's facts as of ``as_of`` (default now) and save a snapshot."""
    t0 = time.perf_counter()
    as_of = as_of or utcnow()
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=ws.config.zone)
    settings = settings or load_settings(ws)
    period = stats.Period(settings.rfm.period_days)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="compute") as beside:
        # accounts and private customers; an account's people (contacts) are not
        # customers of their own, their orders count for the account (models.stats):
        # read once for this and for the economics, beside the statistics' query, as one
        # row per customer (prospects included) ordered by id
        read = beside.submit(_people, ws)
        buyer_stats = stats.customer_stats(ws, as_of, period)
        people, base = read.result()
        # where each customer's statistics are (None: the same rows in the same order)
        s_idx = _positions(base["customer_id"], buyer_stats["customer_id"])
        # Two pieces of work that need nothing else computed here go on beside it: the
        # CLV models' fit (numpy, one core) and, once this thread's queries are done,
        # the last twelve months' economics (without the manager's time, which is
        # priced by the tier this computation decides: the "contribution" metric, and
        # the costs to serve and market per purchase that profit CLV subtracts per
        # expected one), on the engine for background work (DuckDB: a database with one
        # thread). One thread at a time uses an engine.
        fit = beside.submit(_fit_buyers, settings.clv, buyer_stats, s_idx)
        with ws.engine.session(arrow={"stats": buyer_stats}) as session:
            scores = rfm.score(session, settings.rfm, ws.engine.name)
        referrals = stats.referrals_made(ws, as_of, buyer_stats)
        year = beside.submit(economics.per_customer, ws, settings.economics,
                             as_of - timedelta(days=365), as_of + timedelta(microseconds=1),
                             people=people, engine=ws.engine.for_background())
        return _compute(ws, as_of, settings, t0, buyer_stats, base, s_idx, scores,
                        referrals, fit, year, save)


def _people(ws: Workspace) -> tuple[pa.Table, pa.Table]:
    """The accounts and private customers as read, and ordered by id."""
    people = customer_mirror.accounts_and_customers(ws.root, ws.control,
                                                    economics.PEOPLE_COLUMNS)
    return people, people.sort_by("customer_id")


#: What ``_fit_clv`` gives: (fitted parameters, P(alive), expected purchases over the
#: horizon, expected spend), or None with fewer than 10 buyers.
Fit = tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray] | None


def _fit_buyers(settings: CLVSettings, buyer_stats: pa.Table, s_idx: pa.Array | None) -> Fit:
    """``_fit_clv`` on the buyers that are customers, in the customers' order (those whose
    orders count for an account missing from the customers are left out)."""
    rows = buyer_stats if s_idx is None else buyer_stats.take(pc.drop_null(s_idx))
    if rows.num_rows < 10:
        return None
    return _fit_clv(settings, np.nan_to_num(_np(rows, "x")),
                    np.nan_to_num(_np(rows, "t_x_days")) / WEEK_DAYS,
                    np.nan_to_num(_np(rows, "t_days")) / WEEK_DAYS, _np(rows, "m_x"))


def _compute(ws: Workspace, as_of: datetime, settings: Settings, t0: float,
             buyer_stats: pa.Table, base: pa.Table, s_idx: pa.Array | None,
             scores: pa.Table, referrals: pa.Table, fit: Future[Fit],
             economics_year: Future[pa.Table], save: bool) -> Snapshot:
    ids = base["customer_id"]
    bought = np.ones(len(ids), dtype=bool) if s_idx is None else np.asarray(
        pc.is_valid(s_idx).to_numpy(zero_copy_only=False), dtype=bool)

    def col(table: pa.Table, name: str, index: pa.Array | None) -> pa.Array:
        return table[name] if index is None else pc.take(table[name], index)

    # the statistics every customer's row needs (the period's counts went to RFM, the
    # repeat spend to the fit)
    st = pa.table({name: col(buyer_stats, name, s_idx) for name in buyer_stats.column_names
                   if name not in ("customer_id", "orders", "purchase_days_period", "m_x")})
    sc_idx = s_idx if scores["customer_id"].equals(buyer_stats["customer_id"]) \
        else _positions(ids, scores["customer_id"])
    sc = pa.table({name: col(scores, name, sc_idx) for name in ("recency", "frequency",
                                                                 "monetary", "r", "f", "m")})
    segment = rfm.assign(settings.scheme, rfm.segment_basis(settings.scheme, settings.rfm,
                                                             scores, buyer_stats))
    segment = segment if sc_idx is None else pc.take(segment, sc_idx)

    x = np.nan_to_num(_np(st, "x"))
    revenue_total = np.nan_to_num(_np(st, "revenue_total"))
    profit_total = np.nan_to_num(_np(st, "profit_total"))
    clv_info: dict[str, Any] = {}
    p_alive = np.full(len(ids), np.nan)
    expected = np.full(len(ids), np.nan)
    spend = np.full(len(ids), np.nan)
    value = np.full(len(ids), np.nan)
    margin = settings.clv.margin
    if margin is None:
        cost_known = revenue_total.sum() > 0 and profit_total.sum() < revenue_total.sum()
        margin = float(np.clip(profit_total.sum() / revenue_total.sum(), 0.01, 1.0)) \
            if cost_known else 1.0
    acquisition = np.nan_to_num(_np(base, "acquisition_cost"))
    t_x_days = np.nan_to_num(_np(st, "t_x_days"))
    before_last = _np(st, "gap_before_last_days")
    gap = lifecycle.typical_gap(x, t_x_days, settings.lifecycle)
    earlier = lifecycle.prior_gap(x, t_x_days, before_last, settings.lifecycle)
    stage = lifecycle.stages(settings.lifecycle, bought, _np(st, "recency_days"),
                             _np(st, "t_days"), np.nan_to_num(_np(st, "purchase_days")), gap,
                             before_last, earlier)

    # What needs neither the fit nor the economics comes first, while they run beside
    # this thread: the percentile ranks of the value score's other metrics among them
    # (0.3 s for a million customers, which would otherwise wait for the fit).
    weights = settings.tiers.weights
    ref_idx = pc.index_in(ids, referrals["customer_id"])
    referrals_made = np.nan_to_num(_np(pa.table({"n": col(referrals, "referrals", ref_idx)}),
                                       "n"))
    referral_revenue = np.nan_to_num(_np(pa.table(
        {"v": col(referrals, "referral_revenue", ref_idx)}), "v"))
    growth = np.nan_to_num(_np(st, "revenue")) - np.nan_to_num(_np(st, "revenue_previous"))
    metrics = {
        "monetary": _np(sc, "monetary"), "frequency": _np(sc, "frequency"),
        "recency": _np(sc, "recency"), "profit": profit_total, "referrals": referrals_made,
        "growth": growth,
    }
    ranks = tiers.metric_ranks(metrics, weights, bought)
    id_np = np.asarray(ids.to_pylist(), dtype=object)

    year = economics_year.result()
    e_idx = _positions(ids, year["customer_id"])
    ey = pa.table({name: col(year, name, e_idx) for name in (
        "profit_contribution", "ticket_cost", "service_message_cost", "marketing_cost",
        "orders")})
    contribution = np.nan_to_num(_np(ey, "profit_contribution"))
    per_purchase = (np.nan_to_num(_np(ey, "ticket_cost")) + np.nan_to_num(
        _np(ey, "service_message_cost")) + np.nan_to_num(_np(ey, "marketing_cost"))) \
        / np.maximum(np.nan_to_num(_np(ey, "orders")), 1)
    metrics["contribution"] = contribution
    ranks |= tiers.metric_ranks({"contribution": contribution}, weights, bought)

    fitted = fit.result()
    if fitted is not None:
        b = np.flatnonzero(bought)
        info, pa_b, exp_b, spend_b = fitted
        cumulative = info.pop("cumulative")
        clv_info = info
        p_alive[b], expected[b], spend[b] = pa_b, exp_b, spend_b
        months = max(1, round(settings.clv.horizon_weeks / MONTH_WEEKS))
        monthly = (1 + settings.clv.discount_rate) ** (1 / 12) - 1
        value[b] = clv.discounted_value(cumulative, spend_b, months, MONTH_WEEKS, margin,
                                        monthly)
    risk = lifecycle.churn_risk(p_alive, settings.churn)
    profit_clv = value - (settings.clv.service_cost_per_purchase + per_purchase) \
        * np.nan_to_num(expected) - acquisition
    metrics["clv"] = np.nan_to_num(value)
    score = tiers.value_score(metrics, weights, bought, ranks)
    tier = tiers_of(ws, settings.tiers, id_np, score, revenue_total, as_of)

    def maybe(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), from_pandas=True)  # NaN → null

    table = pa.table({
        "customer_id": ids,
        "as_of": pa.repeat(pa.scalar(as_of, pa.timestamp("us", tz="UTC")), len(ids)),
        "first_order_at": st["first_order_at"],
        "last_order_at": st["last_order_at"],
        "orders_total": st["orders_total"],
        "revenue_total": st["revenue_total"],
        "profit_total": st["profit_total"],
        "recency_days": st["recency_days"],
        "rfm_recency": sc["recency"],
        "rfm_frequency": sc["frequency"],
        "rfm_monetary": sc["monetary"],
        "rfm_r": sc["r"],
        "rfm_f": sc["f"],
        "rfm_m": sc["m"],
        "rfm_score": pc.add(pc.add(sc["r"], sc["f"]), sc["m"]),
        "rfm_cell": pc.binary_join_element_wise(sc["r"].cast(pa.string()),
                                                sc["f"].cast(pa.string()),
                                                sc["m"].cast(pa.string()), ""),
        "rfm_segment": segment,
        "referrals": pa.array(referrals_made.astype(np.int64)),
        # paid revenue of the customers this one referred: the value of their referrals
        "referral_revenue": pa.array(referral_revenue, pa.float64()),
        # revenue this period minus the period before (the tier metric "growth")
        "revenue_growth": pa.array(growth, pa.float64()),
        "value_score": pa.array(score),
        "tier": pa.array(tier.tolist(), pa.string()),
        "lifecycle": pa.array(stage.tolist(), pa.string()),
        "typical_gap_days": maybe(np.where(bought, gap, np.nan)),
        "p_alive": maybe(p_alive),
        "expected_purchases": maybe(expected),
        "expected_spend": maybe(spend),
        "clv": maybe(value),
        "profit_clv": maybe(profit_clv),
        # the last twelve months' profit contribution without the manager's time
        # (models.economics): named apart from the economics page's contribution of a
        # period, which prices that time
        "contribution_12m": pa.array(contribution, pa.float64()),
        "churn_risk": pa.array(risk.tolist(), pa.string()),
        # Filled by the insights models (`tierwise churn --save`, `tierwise lookalikes
        # --save`), else empty.
        "churn_probability": pa.nulls(len(ids), pa.float64()),
        "lookalike_score": pa.nulls(len(ids), pa.float64()),
    })
    record = {"versions": settings.versions, "scheme": settings.scheme.key,
              "margin": margin, "clv": clv_info,
              "rfm": settings.rfm.model_dump(mode="json"),
              "tiers": settings.tiers.model_dump(mode="json")}
    seconds = time.perf_counter() - t0
    snap = Snapshot(None, as_of, None, table, record, seconds)
    if save:
        _save(ws, snap)
    return snap


def value_changes(before: pa.Table, after: pa.Table, column: str
                  ) -> list[tuple[str, str | None, str | None]]:
    """(customer, before, after) for every customer whose ``column`` differs between two
    snapshots; customers new in ``after`` have ``before`` None."""
    # vectorised (a million customers: 1 s a column as Python dictionaries); only the
    # customers that changed become Python values
    new = after[column]
    index = _positions(after["customer_id"], before["customer_id"])
    old = before[column] if index is None else pc.take(before[column], index)
    differ = pc.or_(pc.not_equal(pc.is_null(old), pc.is_null(new)),
                    pc.fill_null(pc.not_equal(old, new), False))
    ids = after["customer_id"].filter(differ).to_pylist()
    return list(zip(ids, old.filter(differ).to_pylist(), new.filter(differ).to_pylist(),
                    strict=True))


#: Snapshot columns whose changes fire triggers, by event.
WATCHED = {"tier_change": "tier", "lifecycle_change": "lifecycle"}


def _changes_since(ws: Workspace, row: dict[str, Any], table: pa.Table
                   ) -> dict[str, list[tuple[str, str | None, str | None]]]:
    """Tier and lifecycle changes from the snapshot registered as ``row`` to ``table``."""
    before = pq.read_table(ws.root / row["path"], columns=["customer_id", *WATCHED.values()])
    return {event: value_changes(before, table, column) for event, column in WATCHED.items()}


def _save(ws: Workspace, snap: Snapshot) -> None:
    """Write the snapshot file and register it; tier and lifecycle changes against the
    latest earlier snapshot fire their triggers in the same transaction."""
    folder = ws.root / "snapshots"
    folder.mkdir(exist_ok=True)
    name = f"{snap.as_of.astimezone(ws.config.zone):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{name}.parquet"
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot") as writer:
            # the file is written (1 s for a million customers) while the changes since
            # the latest snapshot are found, before the write transaction: comparing 1M
            # rows should not hold the write lock
            written = writer.submit(
                pq.write_table, snap.table, tmp, compression="zstd",
                row_group_size=SNAPSHOT_ROW_GROUP,
                use_dictionary=repeating_columns(snap.table, ("customer_id",)))
            with ws.control.read() as conn:
                previous = snapshot_store.latest(conn)
            changes = _changes_since(ws, previous, snap.table) if previous is not None \
                else {}
            written.result()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = folder / f"{name}.parquet"
    tmp.replace(final)
    try:
        with ws.control.write() as conn:
            ws.control.lock(conn, "snapshots")
            snap.snapshot_id = snapshot_store.register(
                conn, as_of=snap.as_of, computed_at=utcnow(),
                path=final.relative_to(ws.root).as_posix(), rows=snap.table.num_rows,
                seconds=snap.seconds,
                settings=json.dumps(snap.settings, ensure_ascii=False, default=str))
            latest = snapshot_store.latest(conn)
            assert latest is not None
            if previous is not None and latest["snapshot_id"] == snap.snapshot_id:
                # The first snapshot is a baseline, not a wave of changes. A snapshot
                # computed while another was registered compares with that one instead.
                earlier = snapshot_store.latest(conn, excluding=snap.snapshot_id)
                assert earlier is not None
                if earlier["snapshot_id"] != previous["snapshot_id"]:
                    changes = _changes_since(ws, earlier, snap.table)
                old = json.loads(earlier["settings"])
                reason = "rule_change" if (old.get("tiers"), old.get("versions")) != (
                    snap.settings.get("tiers"), snap.settings.get("versions")) \
                    else "data_change"
                for event, found in changes.items():
                    store_changes.values_changed(conn, event, found, reason, snap.as_of)
    except BaseException:
        final.unlink(missing_ok=True)
        raise
    snap.path = final


def list_snapshots(ws: Workspace) -> list[dict[str, Any]]:
    with ws.control.read() as conn:
        return snapshot_store.listing(conn)


def load_snapshot(ws: Workspace, snapshot_id: int | None = None) -> Snapshot:
    """A saved snapshot (default: the latest, ``store.snapshots.latest``)."""
    with ws.control.read() as conn:
        row = snapshot_store.get(conn, snapshot_id) if snapshot_id \
            else snapshot_store.latest(conn)
    if row is None:
        raise NotFoundError("no snapshot yet: run `tierwise compute` first"
                            if snapshot_id is None else f"no snapshot {snapshot_id}",
                            zh="还没有快照：请先运行 `tierwise compute`"
                            if snapshot_id is None else f"没有快照 {snapshot_id}")
    path = ws.root / row["path"]
    return Snapshot(row["snapshot_id"], row["as_of"] or utcnow(), path, pq.read_table(path),
                    json.loads(row["settings"]), row["seconds"])


def latest_values(ws: Workspace, customer_ids: Iterable[str], columns: list[str]
                  ) -> dict[str, dict[str, Any]]:
    """Some customers' values in the latest snapshot (none before the first compute),
    read with the ids pushed down to the file rather than the whole snapshot."""
    ids = sorted(set(customer_ids))
    with ws.control.read() as conn:
        row = snapshot_store.latest(conn)
    if row is None or not ids:
        return {}
    found = pq.read_table(ws.root / row["path"], columns=["customer_id", *columns],
                          filters=[("customer_id", "in", ids)])
    return {r["customer_id"]: r for r in found.to_pylist()}


def best_tier(ws: Workspace) -> str:
    """The first tier of the tier setting in force: the customers who matter most."""
    return str(load_settings(ws, for_compute=False).tiers.tiers[0])


def set_snapshot_column(ws: Workspace, column: str, customer_ids: list[str],
                        values: list[float]) -> int:
    """Fill a model's column (churn_probability, lookalike_score) of the latest snapshot,
    rewriting its file in place; customers not given get null. Returns how many got one."""
    snap = load_snapshot(ws)
    assert snap.path is not None
    scores = dict(zip(customer_ids, values, strict=True))
    filled = pa.array([scores.get(c) for c in snap.table["customer_id"].to_pylist()],
                      pa.float64())
    table = snap.table
    if column in table.column_names:
        table = table.drop_columns([column])
    replace_snapshot_file(snap.path, table.append_column(column, filled))
    return int(pc.sum(pc.is_valid(filled)).as_py() or 0)


def replace_snapshot_file(path: Path, table: pa.Table) -> None:
    """Rewrite a snapshot file in place, atomically (readers see the old or the new file)."""
    import os

    tmp = path.with_name(f".{path.name}.rewrite")
    pq.write_table(table, tmp, compression="zstd", row_group_size=SNAPSHOT_ROW_GROUP)
    os.replace(tmp, path)
