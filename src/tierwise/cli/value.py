"""CLI commands for customer value: compute, rfm, tiers, lifecycle, clv."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tierwise.cli import audit as cli_audit
from tierwise.definitions import invalid
from tierwise.definitions.vocabulary import label_of
from tierwise.errors import Said, TierwiseError
from tierwise.ingest.report import write_safe_csv
from tierwise.models import clv_fit, compute, lifecycle, rfm, summaries, tiers
from tierwise.services.tiers import tier_apply, tier_plan
from tierwise.store import versions
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
rfm_app = typer.Typer(help="RFM scores and named segments.", invoke_without_command=True)
tiers_app = typer.Typer(help="A/B/C/D value tiers.", invoke_without_command=True)
clv_app = typer.Typer(help="Customer lifetime value models.", invoke_without_command=True)

WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]
SnapshotOpt = Annotated[int | None, typer.Option(
    "--snapshot", help="Snapshot id (default: the latest).")]


def _as_of(ws: Workspace, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise TierwiseError(f"--as-of {text!r}: expected a date or time such as 2026-09-30 "
                            "or 2026-09-30T18:00",
                            zh=f"--as-of {text!r}：应为日期或时间，例如 2026-09-30 或 "
                            "2026-09-30T18:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ws.config.zone)
        if len(text) <= 10:  # a bare date means the end of that day
            value = value.replace(hour=23, minute=59, second=59, microsecond=999999)
    return value


def _label(ws: Workspace, labels: dict[str, dict[str, str]], key: str | None) -> str:
    return label_of(labels, key, ws.config.locale)


def _stamp(ws: Workspace, snap: compute.Snapshot) -> str:
    return (f"as of {snap.as_of.astimezone(ws.config.zone):%Y-%m-%d %H:%M} "
            f"(snapshot {snap.snapshot_id}, computed in {snap.seconds:.1f}s)")


def _counts(ws: Workspace, title: str, table: pa.Table, column: str,
            labels: dict[str, dict[str, str]], order: list[str] | None = None) -> Table:
    values = np.asarray(table[column].to_pylist(), dtype=object)
    revenue = np.nan_to_num(np.asarray(pc.fill_null(table["revenue_total"], 0.0)
                                       .to_numpy(zero_copy_only=False), float))
    total_rev = revenue.sum() or 1.0
    keys = order or sorted({v for v in values if v is not None},
                           key=lambda k: -np.sum(values == k))
    grid = Table(title=title, title_justify="left")
    for name in ("", "customers", "share", "revenue share"):
        grid.add_column(name, justify="left" if not name else "right")
    for key in keys:
        mask = values == key
        grid.add_row(_label(ws, labels, key), f"{int(mask.sum()):,}",
                     f"{mask.mean():.1%}", f"{revenue[mask].sum() / total_rev:.1%}")
    return grid


def _print_matrix(title: str, moves: pa.Table) -> None:
    grid = Table(title=title, title_justify="left")
    for name in moves.column_names:
        grid.add_column(name, justify="right")
    for row in moves.to_pylist():
        grid.add_row(*[str(v) if isinstance(v, str) else f"{v:,}" for v in row.values()])
    out.print(grid)


def compute_cmd(
    as_of: Annotated[str | None, typer.Option(help="Instant to compute as of (default now).")]
    = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Compute RFM, value score, tier, lifecycle, CLV and churn risk; save a snapshot."""
    ws = Workspace.open(workspace)
    with out.status("Computing customer value…"):
        snap = compute.compute(ws, _as_of(ws, as_of))
    settings = compute.load_settings(ws)
    out.print(f"{snap.table.num_rows:,} customers {_stamp(ws, snap)}")
    out.print(_counts(ws, "Tiers", snap.table, "tier", settings.tiers.labels,
                      settings.tiers.tiers))
    out.print(_counts(ws, "Lifecycle", snap.table, "lifecycle", lifecycle.STAGE_LABELS,
                      list(lifecycle.STAGES)))
    model = snap.settings.get("clv", {}).get("purchases")
    if model:
        params = ", ".join(f"{k} {v:.4g}" for k, v in model["params"].items())
        out.print(f"CLV: {model['model']} ({params}), margin {snap.settings['margin']:.0%}")


def rfm_cmd(ctx: typer.Context, snapshot: SnapshotOpt = None,
            workspace: WorkspaceOpt = None) -> None:
    """RFM segments of the latest snapshot."""
    if ctx.invoked_subcommand:
        return
    ws = Workspace.open(workspace)
    snap = compute.load_snapshot(ws, snapshot)
    settings = compute.load_settings(ws)
    out.print(f"RFM ({settings.scheme.key}) {_stamp(ws, snap)}")
    out.print(_counts(ws, "Segments", snap.table, "rfm_segment", settings.scheme.labels))


@rfm_app.command("settings")
def rfm_settings(
    period_days: Annotated[str | None, typer.Option(help="Days of history, or 'all'.")] = None,
    frequency: Annotated[str | None, typer.Option(help="orders or purchase_days.")] = None,
    monetary: Annotated[str | None, typer.Option(help="total or mean.")] = None,
    bins: Annotated[int | None, typer.Option(help="Score levels (5 or 3 …).")] = None,
    scheme: Annotated[str | None, typer.Option(help="rf_map, cn8, cn8_median or saved.")]
    = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show the RFM settings; with options, save them as a new version."""
    ws = Workspace.open(workspace)
    current = compute.load_settings(ws).rfm.model_dump()
    changes: dict[str, Any] = {k: v for k, v in (("frequency", frequency),
                                                 ("monetary", monetary), ("bins", bins),
                                                 ("scheme", scheme)) if v is not None}
    if period_days is not None:
        changes["period_days"] = None if period_days == "all" else int(period_days)
    if changes:
        version = compute.save_setting(ws, "rfm", rfm.RFMSettings(**{**current, **changes}))
        cli_audit.record(ws, "settings_save", "settings:rfm", {"version": version,
                                                               "changes": changes})
        out.print(f"saved RFM settings version {version}")
        current.update(changes)
    out.print(yaml.safe_dump(current, allow_unicode=True, sort_keys=False), markup=False)


@rfm_app.command("scheme")
def rfm_scheme(
    file: Annotated[Path, typer.Argument(help="YAML scheme: key, labels, rules.")],
    save: Annotated[bool, typer.Option(help="Save it (as the next version).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Validate a user-defined segment scheme: uncovered cells, unreachable segments."""
    spec = yaml.safe_load(file.read_text(encoding="utf-8"))
    scheme = rfm.scheme_from_spec(spec)
    report = rfm.validate_scheme(scheme)
    out.print(f"uncovered cells: {', '.join(report['uncovered']) or 'none'}")  # type: ignore[arg-type]
    out.print(f"unreachable segments: {', '.join(report['unreachable']) or 'none'}")  # type: ignore[arg-type]
    if save:
        ws = Workspace.open(workspace)
        with ws.control.write() as conn:
            version = versions.save(conn, "rfm_scheme", scheme.key, spec)
        cli_audit.record(ws, "rfm_scheme_save", f"rfm_scheme:{scheme.key}",
                         {"version": version})
        out.print(f"saved scheme {scheme.key} version {version}; use it with "
                  f"`tierwise rfm settings --scheme {scheme.key}`")


def tiers_cmd(ctx: typer.Context, snapshot: SnapshotOpt = None,
              workspace: WorkspaceOpt = None) -> None:
    """Tier distribution and revenue share of the latest snapshot."""
    if ctx.invoked_subcommand:
        return
    ws = Workspace.open(workspace)
    snap = compute.load_snapshot(ws, snapshot)
    spec = compute.load_settings(ws).tiers
    out.print(f"Tiers ({spec.method} {spec.cuts}) {_stamp(ws, snap)}")
    out.print(_counts(ws, "Tiers", snap.table, "tier", spec.labels, spec.tiers))


def _tier_spec(ws: Workspace, file: Path | None, method: str | None, cuts: str | None,
               weights: str | None) -> tiers.TierSpec:
    base = compute.load_settings(ws).tiers.model_dump()
    if file is not None:
        base.update(yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    if method:
        base["method"] = method
    if cuts:
        base["cuts"] = [float(c) for c in cuts.split(",")]
    if weights:
        base["weights"] = {k.strip(): float(v) for k, v in
                           (pair.split("=", 1) for pair in weights.split(","))}
    try:
        return tiers.TierSpec.model_validate(base)
    except ValidationError as exc:
        raise TierwiseError.about(Said("invalid tier definition", "等级定义无效"),
                                  invalid.problems(exc)) from None


TierOptions = {
    "file": typer.Option(None, help="YAML tier definition."),
    "method": typer.Option(None, help="percentile, threshold, pareto or rules (with "
                                      "--file)."),
    "cuts": typer.Option(None, help="Comma-separated cuts, best tier first."),
    "weights": typer.Option(None, help="metric=weight,… (monetary, frequency, recency, "
                                       "profit, clv, referrals, growth)."),
}


@tiers_app.command("plan")
def tiers_plan(file: Path | None = TierOptions["file"], method: str | None = TierOptions["method"],
               cuts: str | None = TierOptions["cuts"],
               weights: str | None = TierOptions["weights"],
               as_of: Annotated[str | None, typer.Option(
                   help="Plan on a computation for this instant (default: the latest "
                   "snapshot).")] = None,
               workspace: WorkspaceOpt = None) -> None:
    """Show how customers would move between tiers under a new definition; save nothing."""
    ws = Workspace.open(workspace)
    proposed = _tier_spec(ws, file, method, cuts, weights)
    plan = tier_plan(ws, proposed, as_of=_as_of(ws, as_of))
    out.print(f"Tier plan on snapshot {plan.snapshot_id or '(not saved)'} as of "
              f"{plan.as_of.astimezone(ws.config.zone):%Y-%m-%d %H:%M}")
    _print_matrix("Customers moving (rows: now, columns: proposed)",
                  pa.Table.from_pylist(plan.migration))
    grid = Table(title="Customers per tier", title_justify="left")
    for name in ("tier", "now", "proposed", "change"):
        grid.add_column(name, justify="right")
    for row in plan.tiers:
        grid.add_row(_label(ws, proposed.labels, row["tier"]), f"{row['before']:,}",
                     f"{row['after']:,}", f"{row['after'] - row['before']:+,}")
    out.print(grid)
    for note in plan.notes:
        out.print(f"[yellow]note:[/] {note}")
    out.print(f"{plan.moved:,} customers would change tier. Save with `tierwise tiers apply` "
              "and the same options.")


@tiers_app.command("apply")
def tiers_apply(file: Path | None = TierOptions["file"],
                method: str | None = TierOptions["method"],
                cuts: str | None = TierOptions["cuts"],
                weights: str | None = TierOptions["weights"],
                note: Annotated[str | None, typer.Option(help="Why it changed.")] = None,
                workspace: WorkspaceOpt = None) -> None:
    """Save a tier definition as a new version (used by the next `tierwise compute`)."""
    ws = Workspace.open(workspace)
    version = tier_apply(ws, _tier_spec(ws, file, method, cuts, weights), note)
    cli_audit.record(ws, "settings_save", "settings:tiers", {"version": version, "note": note})
    out.print(f"saved tier definition version {version}")


@tiers_app.command("migration")
def tiers_migration(
    from_: Annotated[int, typer.Option("--from", help="Earlier snapshot id.")],
    to: Annotated[int, typer.Option("--to", help="Later snapshot id.")],
    field: Annotated[str, typer.Option(help="tier, rfm_segment or lifecycle.")] = "tier",
    workspace: WorkspaceOpt = None,
) -> None:
    """How customers moved between two snapshots."""
    ws = Workspace.open(workspace)
    if field not in ("tier", "rfm_segment", "lifecycle"):
        raise TierwiseError("--field must be tier, rfm_segment or lifecycle",
                            zh="--field 应为 tier、rfm_segment 或 lifecycle")
    a, b = compute.load_snapshot(ws, from_), compute.load_snapshot(ws, to)
    joined = a.table.select(["customer_id", field]).join(
        b.table.select(["customer_id", field]), "customer_id", right_suffix="_to",
        join_type="full outer")
    before = np.asarray(pc.fill_null(joined[field], "(none)").to_pylist(), dtype=object)
    after = np.asarray(pc.fill_null(joined[f"{field}_to"], "(none)").to_pylist(), dtype=object)
    labels = sorted(set(before) | set(after))
    moves = tiers.migration(before, after, labels)
    _print_matrix(f"{field}: snapshot {from_} (rows) → {to} (columns)", moves)


def lifecycle_cmd(snapshot: SnapshotOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Customers per lifecycle stage in the latest snapshot."""
    ws = Workspace.open(workspace)
    snap = compute.load_snapshot(ws, snapshot)
    out.print(f"Lifecycle {_stamp(ws, snap)}")
    out.print(_counts(ws, "Stages", snap.table, "lifecycle", lifecycle.STAGE_LABELS,
                      list(lifecycle.STAGES)))


def clv_cmd(ctx: typer.Context, snapshot: SnapshotOpt = None,
            workspace: WorkspaceOpt = None) -> None:
    """CLV and churn risk of the latest snapshot, by tier and by risk band."""
    if ctx.invoked_subcommand:
        return
    ws = Workspace.open(workspace)
    snap = compute.load_snapshot(ws, snapshot)
    settings = compute.load_settings(ws)
    t = snap.table
    value = np.nan_to_num(np.asarray(pc.fill_null(t["clv"], 0.0).to_numpy(
        zero_copy_only=False), float))
    alive = np.asarray(pc.fill_null(t["p_alive"], np.nan).to_numpy(zero_copy_only=False),
                       float)
    risk = np.asarray(t["churn_risk"].to_pylist(), dtype=object)
    model = snap.settings.get("clv", {}).get("purchases", {})
    out.print(f"CLV ({model.get('model', 'not fitted')}, "
              f"{settings.clv.horizon_weeks} weeks, margin {snap.settings.get('margin', 1):.0%})"
              f" {_stamp(ws, snap)}")
    grid = Table(title="By churn risk", title_justify="left")
    for name in ("risk", "customers", "mean P(alive)", f"CLV ({ws.config.currency})",
                 "CLV share"):
        grid.add_column(name, justify="right")
    total = value.sum() or 1.0
    for band in ("high", "medium", "low"):
        mask = risk == band
        grid.add_row(band, f"{int(mask.sum()):,}",
                     f"{np.nanmean(alive[mask]):.2f}" if mask.any() else "—",
                     f"{value[mask].sum():,.0f}", f"{value[mask].sum() / total:.1%}")
    out.print(grid)
    tiers_seen = np.asarray(t["tier"].to_pylist(), dtype=object)
    by_tier = Table(title="By tier", title_justify="left")
    for name in ("tier", "customers", f"mean CLV ({ws.config.currency})", "CLV share"):
        by_tier.add_column(name, justify="right")
    for tier in settings.tiers.tiers:
        mask = tiers_seen == tier
        by_tier.add_row(tier, f"{int(mask.sum()):,}",
                        f"{value[mask].mean():,.0f}" if mask.any() else "—",
                        f"{value[mask].sum() / total:.1%}")
    out.print(by_tier)
    out.print(f"Expected value at risk (Σ (1 − P(alive)) × annual revenue run-rate): "
              f"{summaries.value_at_risk(t):,.0f} {ws.config.currency}")


@clv_app.command("fit")
def clv_fit_cmd(
    model: Annotated[str, typer.Option(help="bgnbd, pareto_nbd, gamma_gamma, bgbb or sbg.")]
    = "pareto_nbd",
    calibration_end: Annotated[str | None, typer.Option(
        help="Fit on orders up to this date and score the model on the rest.")] = None,
    time_unit: Annotated[str, typer.Option(help="day, week or month.")] = "week",
    as_of: Annotated[str | None, typer.Option(help="End of the data (default now).")] = None,
    survivors: Annotated[str | None, typer.Option(
        help="sbg only: a cohort's survivor counts, e.g. 1000,631,468,382.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fit a CLV model and print its parameters and log-likelihood."""
    ws = Workspace.open(workspace)
    if time_unit not in clv_fit.UNIT_DAYS:
        raise TierwiseError("--time-unit must be day, week or month",
                            zh="--time-unit 应为 day、week 或 month")
    end = _as_of(ws, as_of) or datetime.now(ws.config.zone)
    result = clv_fit.fit(ws, model, end, time_unit,  # type: ignore[arg-type]
                         _as_of(ws, calibration_end),
                         [float(s) for s in survivors.split(",")] if survivors else None)
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False))
        return
    params = ", ".join(f"{k} = {v:.4f}" for k, v in result["params"].items())
    out.print(f"{result['model']}: {params}; log-likelihood {result['log_likelihood']:.2f} "
              f"({result['customers']:,} customers)")
    if "holdout" in result:
        h = result["holdout"]
        out.print(f"holdout ({h['periods']} {time_unit}s): predicted {h['predicted_total']:,.1f}"
                  f" vs actual {h['actual_total']:,.0f} repeat purchases; MAE "
                  f"{h['mean_absolute_error']}, correlation {h['correlation']}")


def _horizon_weeks(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([dwmy])", text.strip().lower())
    if not match:
        raise TierwiseError(f"--horizon {text!r}: expected e.g. 52w, 12m, 365d or 1y",
                            zh=f"--horizon {text!r}：应为例如 52w、12m、365d 或 1y")
    n, unit = int(match.group(1)), match.group(2)
    weeks = {"d": n / 7, "w": n, "m": n * 52 / 12, "y": n * 52}[unit]
    return max(1, round(weeks))


@clv_app.command("predict")
def clv_predict(
    horizon: Annotated[str, typer.Option(help="How far ahead: 52w, 12m, 365d, 1y.")] = "52w",
    output: Annotated[Path, typer.Option("--out", help="CSV or Parquet file to write.")]
    = Path("clv_predictions.csv"),
    as_of: Annotated[str | None, typer.Option(help="As of (default now).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write each customer's P(alive), expected purchases and spend, CLV and profit CLV."""
    ws = Workspace.open(workspace)
    settings = compute.load_settings(ws)
    settings.clv = settings.clv.model_copy(update={"horizon_weeks": _horizon_weeks(horizon)})
    snap = compute.compute(ws, _as_of(ws, as_of), save=False, settings=settings)
    columns = ["customer_id", "p_alive", "expected_purchases", "expected_spend", "clv",
               "profit_clv", "churn_risk"]
    table = snap.table.select(columns)
    if output.suffix.lower() == ".parquet":
        pq.write_table(table, output)
    else:
        write_safe_csv(output, columns, (r.values() for r in table.to_pylist()))
    out.print(f"wrote {table.num_rows:,} predictions over {horizon} to {output}")


def report_cmd(
    period: Annotated[str, typer.Option(
        help="2026Q3, 2026H2, 2026-07, 2026 or days: 2026-07-01..2026-08-15.")],
    html: Annotated[Path | None, typer.Option("--html", help="Write the report as HTML.")]
    = None,
    pdf: Annotated[Path | None, typer.Option("--pdf", help="Write the report as PDF.")] = None,
    segment: Annotated[str | None, typer.Option(
        help="Review one segment's members instead of the tiers.")] = None,
    lang: Annotated[str | None, typer.Option(
        help="zh-CN or en (default: the workspace's locale).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """The periodic review (定期复盘): segment KPIs against the previous period, tier
    migration and the biggest movers; printed, and written as HTML and/or PDF."""
    from tierwise.services.review import review
    from tierwise.web import report

    ws = Workspace.open(workspace)
    language = lang or ws.config.locale
    if language not in ("zh-CN", "en"):
        raise TierwiseError(f"--lang {language!r}: expected zh-CN or en",
                            zh=f"--lang {language!r}：应为 zh-CN 或 en")
    found = review(ws, period, segment)
    table = Table(title=f"{found.period.name} vs {found.previous.name} ({found.grouping})")
    for name in ("group", "customers", "revenue", "Δ revenue", "conversion", "repurchase",
                 "AOV", "reactivation", "churn"):
        table.add_column(name, justify="left" if name == "group" else "right")

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}%"

    for g in found.groups:
        now, before = g["now"], g["before"]
        table.add_row(str(g["group"]), f"{g['customers']:,}", f"{now['revenue']:,.0f}",
                      f"{now['revenue'] - before['revenue']:+,.0f}", pct(now["conversion_rate"]),
                      pct(now["repurchase_rate"]),
                      "—" if now["aov"] is None else f"{now['aov']:,.2f}",
                      pct(now["reactivation_rate"]), pct(now["churn_rate"]))
    out.print(table)
    if html:
        html.write_text(report.html(ws, found, language), "utf-8")
        out.print(f"HTML report: {html}")
    if pdf:
        pdf.write_bytes(report.pdf(ws, found, language))
        out.print(f"PDF report: {pdf}")


def breakdown_cmd(
    by: Annotated[str, typer.Option(help=(
        "tier, lifecycle, rfm_segment, churn_risk, owner, city, province, country, industry, "
        "company_size, channel, gender, tag, segment or attributes.KEY."))] = "tier",
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="A filter FIELD=VALUE (codes or labels), e.g. --where tier=A "
        "--where city=上海; repeat to combine.")] = None,
    segment: Annotated[str | None, typer.Option(
        help="Only the current members of this segment.")] = None,
    period: Annotated[str | None, typer.Option(
        help="2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15: add each group's "
        "purchases in it and the "
        "period before.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Customers side by side by a dimension: the overview's figures per group (the
    dashboard's Breakdown page shows the same)."""
    from tierwise.errors import spoken
    from tierwise.models import compute
    from tierwise.services import breakdowns
    from tierwise.store.customers import attribute_key

    ws = Workspace.open(workspace)
    given: dict[str, str] = {}
    for item in where or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise TierwiseError(f"--where {item!r}: expected FIELD=VALUE, e.g. tier=A",
                                zh=f"--where {item!r}：应为 字段=值，例如 tier=A")
        given[name.strip()] = value.strip()
    own = [k for k in given if k in breakdowns.FIELD_DIMENSIONS or attribute_key(k)]
    values = {k: v for k, v in given.items() if k not in own}
    fields = {k: v for k, v in given.items() if k in own}
    found = breakdowns.by_dimension(ws, compute.load_snapshot(ws), by, values, fields,
                                    spoken(), segment, period)
    if as_json:
        out.print_json(json.dumps(found, default=str, ensure_ascii=False))
        return
    from tierwise.segments.vocabulary import vocabulary

    words = vocabulary(ws, spoken())
    grid = Table(title=f"by {by}" + (f" · {given}" if given else ""), title_justify="left")
    names = [by, "customers", "share", "active", "revenue", "share ", "per customer",
             "orders", "churn high", "value at risk"]
    if period:
        names += [f"buyers {period}", f"revenue {period}", "change"]
    for name in names:
        grid.add_column(name, justify="left" if name == by else "right")

    def row(name: str, f: dict[str, Any]) -> None:
        share = f.get("customer_share")
        revenue_share = f.get("revenue_share")
        per = f["revenue_per_customer"]
        cells = [name, f"{f['customers']:,}", "" if share is None else f"{share:.1%}",
                 f"{f['active']:,}", f"{f['revenue']:,.2f}",
                 "" if revenue_share is None else f"{revenue_share:.1%}",
                 "—" if per is None else f"{per:,.2f}", f"{f['orders']:,}",
                 f"{f['churn_high']:,}", f"{f['value_at_risk']:,.2f}"]
        if period:
            p = f.get("period")
            cells += ["", "", ""] if not p else [
                f"{p['now']['buyers']:,}", f"{p['now']['revenue']:,.2f}",
                f"{p['now']['revenue'] - p['before']['revenue']:+,.2f}"]
        grid.add_row(*cells)

    for g in found["groups"]:
        value = g["value"]
        row("—" if value is None else words.column_label(by, value, spoken()), g)
    row("all", found["total"])
    out.print(grid)


def funnel_cmd(
    period: Annotated[str, typer.Option(help=(
        "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15: the period the leads came "
        "in."))],
    by: Annotated[str | None, typer.Option(help=(
        "Also per group: tier, industry, owner or channel."))] = None,
    segment: Annotated[str | None, typer.Option(
        help="Only the members of this segment.")] = None,
    trend: Annotated[int, typer.Option(help=(
        "Also the steps of this many periods up to this one."))] = 0,
    flow: Annotated[str, typer.Option(help=(
        "orders (leads, qualified, first_order, repeat) or opportunities (leads, "
        "qualified, opportunity, won, renewal)."))] = "orders",
    customers: Annotated[str | None, typer.Option(help=(
        "Instead: list the ids of the leads who reached this step of the flow (with "
        "--tier, or --by and --group).")) ] = None,
    tier: Annotated[str | None, typer.Option(help="With --customers: only this tier.")]
    = None,
    group: Annotated[str | None, typer.Option(help=(
        "With --customers and --by: only this group (an industry, an owner, …)."))] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The funnel from marketing to sales to service: the leads of a period, how many
    qualified, bought and bought again — or got an opportunity, won it and won again — the
    rates and the median days between steps (the dashboard's Funnel page shows the
    same)."""
    from tierwise.definitions.json_values import jsonable
    from tierwise.errors import spoken
    from tierwise.segments.vocabulary import vocabulary
    from tierwise.services import funnel as funnels

    ws = Workspace.open(workspace)
    if customers is not None:
        words = vocabulary(ws, spoken())
        code = words.column_code("tier", tier) if tier else None
        if group is not None and by == "tier":
            group = words.column_code("tier", group)
        for customer in funnels.customers_at(ws, period, customers, code, segment,
                                             flow=flow, by=by, group=group):
            out.print(customer, highlight=False)
        return
    if tier is not None or group is not None:
        raise TierwiseError("--tier and --group go with --customers; to see every group, use "
                            "--by", zh="--tier 与 --group 需与 --customers 同用；要看各组请用 --by")
    found = funnels.funnel(ws, period, by, segment, flow=flow)
    recent = funnels.trend(ws, period, trend, segment, flow=flow) if trend else []
    if as_json:
        out.print_json(json.dumps(jsonable({
            "period": found.period.name, "flow": found.flow, "partial": found.partial,
            "qualifying": found.qualifying, "steps": found.steps,
            "bought_unqualified": found.bought_unqualified, "groups": found.groups,
            "trend": recent}), ensure_ascii=False))
        return

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    title = f"{found.period.name}" + (" (partial)" if found.partial else "") + (
        f" · {segment}" if segment else "")
    grid = Table(title=title, title_justify="left")
    for name in ("step", "customers", "from before", "of leads", "median days"):
        grid.add_column(name, justify="left" if name == "step" else "right")
    for s in found.steps:
        grid.add_row(s["step"], f"{s['customers']:,}", pct(s["rate"]), pct(s["of_leads"]),
                     "—" if s["median_days"] is None else f"{s['median_days']:.1f}")
    out.print(grid)
    if not found.qualifying:
        out.print("No lead-scoring rules: the qualified step is left out.")
    elif found.bought_unqualified:
        out.print(f"{found.bought_unqualified:,} more leads bought without qualifying.")
    words = vocabulary(ws, spoken())
    if found.groups and by is not None:
        per = Table(title=f"by {by}", title_justify="left")
        per.add_column(by)
        for s in found.steps:
            per.add_column(s["step"], justify="right")
        for g in found.groups:
            per.add_row("—" if g["group"] is None else words.column_label(by, g["group"],
                                                                          spoken()),
                        *[f"{s['customers']:,}" for s in g["steps"]])
        out.print(per)
    if recent:
        past = Table(title="recent periods", title_justify="left")
        past.add_column("period")
        for s in found.steps:
            past.add_column(s["step"], justify="right")
        for p in recent:
            past.add_row(p["period"] + (" (partial)" if p["partial"] else ""),
                         *[f"{s['customers']:,}" for s in p["steps"]])
        out.print(past)


def economics_cmd(
    period: Annotated[str | None, typer.Option(help=(
        "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15."))] = None,
    by: Annotated[str | None, typer.Option(help=(
        "Also per group: tier, lifecycle, industry, owner or channel."))] = None,
    segment: Annotated[str | None, typer.Option(
        help="Only the members of this segment.")] = None,
    customer: Annotated[str | None, typer.Option(help="Instead: one customer's figures.")]
    = None,
    top: Annotated[int, typer.Option(help=(
        "Also the customers with the highest profit contribution (0: none)."))] = 0,
    settings: Annotated[Path | None, typer.Option(help=(
        "Instead: save these economics settings (YAML or JSON: default_margin, "
        "category_margins, ticket_cost, ticket_costs, manager_hours, hourly_cost, "
        "channel_cac, referral_window_days, referral_credit) as a new version."))] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Customer economics: revenue, gross margin, acquisition cost, cost to serve,
    marketing cost, profit contribution and referral value over a period (the dashboard's
    Economics page shows the same; formulas in docs/customer-value.md)."""
    import yaml

    from tierwise.definitions.json_values import jsonable
    from tierwise.models.economics import MEASURES, EconomicsSettings
    from tierwise.services import economics as economy

    ws = Workspace.open(workspace)
    if settings is not None:
        try:
            data = yaml.safe_load(settings.read_text(encoding="utf-8")) or {}
            spec = EconomicsSettings.model_validate(data)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise TierwiseError(f"{settings}: {exc}", zh=f"{settings}：{exc}") from None
        version = compute.save_setting(ws, "economics", spec)
        out.print(f"economics settings saved as version {version}")
        return
    if period is None:
        raise TierwiseError("--period is needed (or --settings FILE)",
                            zh="需要 --period（或 --settings FILE）")
    if customer is not None:
        found_one = economy.of_customer(ws, customer, period)
        if as_json:
            out.print_json(json.dumps(jsonable(found_one), ensure_ascii=False))
        else:
            for name, value in found_one.items():
                out.print(f"{name}: {value:,.2f}" if isinstance(value, float)
                          else f"{name}: {value}", highlight=False)
        return
    found = economy.economics(ws, period, by, segment)
    best = economy.customers(ws, period, "profit_contribution", True, None, None, segment,
                             top)[1] if top else []
    if as_json:
        out.print_json(json.dumps(jsonable({
            "period": found.period.name, "partial": found.partial, "currency": found.currency,
            "totals": found.totals, "by": by, "groups": found.groups,
            "notes": [str(n) for n in found.notes], "top": best}), ensure_ascii=False))
        return
    title = f"{found.period.name} · {found.currency}" + (" (partial)" if found.partial else "")
    columns = [*found.groups, {**found.totals, "group": "all"}]
    grid = Table(title=title, title_justify="left")
    if len(columns) <= 6:  # a column per group: every measure fits a terminal's width
        grid.add_column("", no_wrap=True)
        for g in columns:
            grid.add_column("—" if g["group"] is None else str(g["group"]), justify="right",
                            no_wrap=True)
        grid.add_row("customers", *[f"{g['customers']:,}" for g in columns])
        for name in MEASURES:  # whole units here; --json has the cents
            grid.add_row(name.replace("_", " "), *[f"{g[name]:,.0f}" for g in columns])
    else:  # a row per group, the main measures (every one: --json)
        shown = ("revenue", "gross_margin", "cost_to_serve", "profit_contribution")
        grid.add_column(by or "")
        grid.add_column("customers", justify="right")
        for name in shown:
            grid.add_column(name.replace("_", " "), justify="right")
        for g in columns:
            grid.add_row("—" if g["group"] is None else str(g["group"]),
                         f"{g['customers']:,}", *[f"{g[m]:,.2f}" for m in shown])
    out.print(grid)
    for note in found.notes:
        out.print(f"Note: {note}", highlight=False)
    if best:
        ranked = Table(title="highest profit contribution", title_justify="left")
        for name in ("customer", "revenue", "gross margin", "profit contribution"):
            ranked.add_column(name, justify="left" if name == "customer" else "right")
        for r in best:
            ranked.add_row(r["customer_id"], f"{r['revenue']:,.2f}", f"{r['gross_margin']:,.2f}",
                           f"{r['profit_contribution']:,.2f}")
        out.print(ranked)


def pipeline_cmd(
    period: Annotated[str, typer.Option(help=(
        "2026, 2026H2, 2026Q3, 2026-07 or 2026-07-01..2026-08-15: when the won and lost "
        "opportunities closed."))],
    by: Annotated[str | None, typer.Option(help="Also per owner, tier or industry.")] = None,
    stage: Annotated[str | None, typer.Option(help=(
        "Instead: list the opportunities open in this stage, or won / lost in the period "
        "(with --by and --group: of that group)."))] = None,
    group: Annotated[str | None, typer.Option(help="With --stage and --by: this group.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The sales pipeline: open opportunities per stage (amount, weighted amount, days in
    stage) and those won and lost in the period (the dashboard's Pipeline page shows the
    same)."""
    from tierwise.definitions.json_values import jsonable
    from tierwise.services import pipeline as pipelines

    ws = Workspace.open(workspace)
    if stage is not None:
        total, rows = pipelines.opportunities(ws, period, stage, by, group, limit=10_000)
        if as_json:
            out.print_json(json.dumps(jsonable({"total": total, "opportunities": rows}),
                                      ensure_ascii=False))
        else:
            for row in rows:
                out.print(f"{row['opportunity_id']}\t{row['customer_id']}\t{row['stage']}\t"
                          f"{row['amount'] or 0:,.2f}\t{row['owner'] or ''}", highlight=False)
        return
    found = pipelines.pipeline(ws, period, by)
    if as_json:
        out.print_json(json.dumps(jsonable({
            "period": found.period.name, "stages": found.stages, "closed": found.closed,
            "by": by, "groups": found.groups, "notes": [str(n) for n in found.notes]}),
            ensure_ascii=False))
        return
    grid = Table(title=f"open now · {ws.config.currency}", title_justify="left")
    for name in ("stage", "open", "amount", "weighted", "median days in stage"):
        grid.add_column(name, justify="left" if name == "stage" else "right")
    for s in found.stages:
        grid.add_row(s["stage"], f"{s['open']:,}", f"{s['amount']:,.2f}",
                     f"{s['weighted_amount']:,.2f}", "—" if s["median_days_in_stage"] is None
                     else f"{s['median_days_in_stage']:.1f}")
    out.print(grid)
    c = found.closed
    rate = "—" if c["win_rate"] is None else f"{c['win_rate']:.1%}"
    out.print(f"{found.period.name}: won {c['won']:,} ({c['won_amount']:,.2f}), lost "
              f"{c['lost']:,} ({c['lost_amount']:,.2f}), win rate {rate}", highlight=False)
    for note in found.notes:
        out.print(f"Note: {note}", highlight=False)
    if found.groups:
        per = Table(title=f"by {by}", title_justify="left")
        per.add_column(str(by))
        for s in found.stages:
            per.add_column(s["stage"], justify="right")
        for name in ("won", "lost", "win rate"):
            per.add_column(name, justify="right")
        for g in found.groups:
            closed = g["closed"]
            per.add_row("—" if g["group"] is None else str(g["group"]),
                        *[f"{s['open']:,}" for s in g["stages"]], f"{closed['won']:,}",
                        f"{closed['lost']:,}", "—" if closed["win_rate"] is None
                        else f"{closed['win_rate']:.1%}")
        out.print(per)


def register(app: typer.Typer) -> None:
    app.command("breakdown")(breakdown_cmd)
    app.command("pipeline")(pipeline_cmd)
    app.command("economics")(economics_cmd)
    app.command("funnel")(funnel_cmd)
    app.command("compute")(compute_cmd)
    app.command("report")(report_cmd)
    app.command("lifecycle")(lifecycle_cmd)
    rfm_app.callback()(rfm_cmd)
    tiers_app.callback()(tiers_cmd)
    clv_app.callback()(clv_cmd)
    app.add_typer(rfm_app, name="rfm")
    app.add_typer(tiers_app, name="tiers")
    app.add_typer(clv_app, name="clv")
