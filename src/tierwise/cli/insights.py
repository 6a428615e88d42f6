"""CLI commands for insights: clustering with profiles, names and rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tierwise.cli import render
from tierwise.errors import TierwiseError
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]


def clusters_cmd(
    features: Annotated[str, typer.Option(
        help="Feature groups: rfm, value, engagement, categories (comma-separated).")]
    = "rfm,value,engagement",
    k: Annotated[str, typer.Option(help="Number of clusters, or auto.")] = "auto",
    method: Annotated[str, typer.Option(help="kmeans, minibatch or gmm.")] = "kmeans",
    criterion: Annotated[str, typer.Option(
        help="How k is chosen: silhouette, or bic (gmm only).")] = "silhouette",
    save: Annotated[str | None, typer.Option(
        help="Save each cluster's rule as segment PREFIX_<n>.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Cluster the buyers of the latest snapshot; profile, name and describe each cluster."""
    from tierwise.errors import TierwiseError
    from tierwise.insights.clustering import cluster_workspace, save_as_segments

    if method not in ("kmeans", "minibatch", "gmm"):
        raise TierwiseError(f"unknown method {method!r}; expected kmeans, minibatch or gmm",
                            zh=f"未知方法 {method!r}：应为 kmeans、minibatch 或 gmm")
    chosen = None if k == "auto" else int(k)
    ws = Workspace.open(workspace)
    with render.Spinner(out, "Clustering"):
        result = cluster_workspace(ws, [g.strip() for g in features.split(",") if g.strip()],
                                   chosen, method, criterion=criterion)  # type: ignore[arg-type]
    locale = ws.config.locale
    if as_json:
        out.print_json(json.dumps({
            "algorithm": result.algorithm, "k": result.k, "curve": result.curve,
            "clusters": [vars(c) for c in result.clusters]}, ensure_ascii=False))
        return
    for metric in ("silhouette", "bic"):
        if result.curve and metric in result.curve[0]:
            out.print(f"{metric} by k: " + ", ".join(f"{c['k']}: {c[metric]:,.3f}"
                                                     for c in result.curve)
                      + (f" → k = {result.k}" if metric == criterion else ""))
    for c in result.clusters:
        label = c.names.get(locale, c.names["en"])
        out.print(f"\n[bold]cluster {c.cluster}[/] · {label} · {c.size:,} ({c.share:.1%})")
        grid = Table(show_header=True)
        for name in ("feature", "mean", "vs population (sd)"):
            grid.add_column(name)
        labels = {f.name: f.labels[0 if locale == "zh-CN" else 1] for f in result.features}
        for name in c.distinctive[:5] or list(c.z)[:3]:
            grid.add_row(labels[name], f"{c.means[name]:,.2f}", f"{c.z[name]:+.2f}")
        out.print(grid)
        if c.rule:
            out.print(f"rule: {c.rule}  (precision {c.rule_precision:.2f}, recall "
                      f"{c.rule_recall:.2f})", markup=False, highlight=False)
    if save:
        keys = save_as_segments(ws, result, save)
        out.print(f"\nsaved segments {', '.join(keys)} (evaluate with `tierwise segments "
                  f"evaluate`)")


def churn_cmd(
    horizon: Annotated[int, typer.Option(help="Days without a purchase that mean churned.")]
    = 90,
    test_horizon: Annotated[int | None, typer.Option(
        help="Days of the test label window (default: --horizon).")] = None,
    end: Annotated[str | None, typer.Option(
        help="Last day of history to use, YYYY-MM-DD (default: the latest order).")] = None,
    scores: Annotated[Path | None, typer.Option(
        "--out", help="CSV of every buyer's churn probability now, with top reasons.")]
    = None,
    save: Annotated[bool, typer.Option(
        "--save", help="Write every buyer's probability into the latest snapshot "
        "(segment field churn_probability).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train and test a churn model on a time split; compare it with P(alive)."""
    from datetime import datetime, time

    from tierwise.ingest.report import write_safe_csv
    from tierwise.insights import churn

    ws = Workspace.open(workspace)
    until = (datetime.combine(datetime.strptime(end, "%Y-%m-%d").date(), time(23, 59, 59),
                              ws.config.zone) if end else None)
    with render.Spinner(out, "Training"):
        report, _ = churn.evaluate(ws, horizon, until, test_horizon_days=test_horizon)
    if as_json:
        out.print_json(json.dumps(vars(report), default=str))
    else:
        out.print(f"trained as of {report.train_cutoff:%Y-%m-%d} ({report.train_rows:,} "
                  f"buyers), tested as of {report.test_cutoff:%Y-%m-%d} ({report.test_rows:,}"
                  f" buyers, {report.churn_rate:.1%} churned within "
                  f"{report.horizon_days if test_horizon is None else test_horizon} days)")
        grid = Table()
        for name in ("scorer", "AUC", "PR-AUC", "lift, riskiest 10%"):
            grid.add_column(name)
        for label, m in (("churn model", report.model),
                         ("1 − P(alive), BG/NBD", report.p_alive_baseline),
                         ("1 − P(alive), Pareto/NBD", report.pareto_p_alive)):
            grid.add_row(label, f"{m['auc']:.3f}", f"{m['pr_auc']:.3f}",
                         f"{m['lift_top_10pct']:.2f}")
        out.print(grid)
        locale = 0 if ws.config.locale == "zh-CN" else 1
        out.print("importance (AUC lost when shuffled): " + ", ".join(
            f"{churn.LABELS[f][locale]} {v:.3f}" for f, v in list(report.importance.items())[:6]))
    if save and not scores:
        with render.Spinner(out, "Scoring"):
            now, risk, model = churn.score_now(ws, horizon, end=until)
        saved = churn.save_to_snapshot(ws, now.customer_ids, risk)
        out.print(f"saved churn_probability for {saved:,} buyers in the latest snapshot")
    if scores:
        with render.Spinner(out, "Scoring"):
            now, risk, model = churn.score_now(ws, horizon, end=until)
            why = churn.reasons(model, now.x)
        if save:
            saved = churn.save_to_snapshot(ws, now.customer_ids, risk)
            out.print(f"saved churn_probability for {saved:,} buyers in the latest snapshot")
        write_safe_csv(scores, ["customer_id", "churn_probability", "reasons"], (
            [cid, f"{p:.4f}", "; ".join(f"{f} (+{e:.2f})" for f, e in r)]
            for cid, p, r in zip(now.customer_ids, risk, why, strict=True)))
        out.print(f"wrote {scores} ({len(now.customer_ids):,} buyers)")


def lookalikes_cmd(
    seed: Annotated[str, typer.Option(help="tier:<A|B|C|D> or segment:<key>.")] = "tier:A",
    top: Annotated[int, typer.Option(help="How many to show.")] = 20,
    output: Annotated[Path | None, typer.Option("--out", help="CSV of every score.")] = None,
    save: Annotated[bool, typer.Option(
        "--save", help="Write the scores into the latest snapshot (segment field "
        "lookalike_score).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Score customers without orders by how much they resemble the seed group."""
    from tierwise.ingest.report import write_safe_csv
    from tierwise.insights.lookalike import score

    ws = Workspace.open(workspace)
    with render.Spinner(out, "Learning"):
        result = score(ws, seed)
    out.print(f"seed {seed}: {result.seed_size:,} of {result.buyers:,} buyers; "
              f"cross-validated AUC {result.cv_auc:.3f}; {len(result.customer_ids):,} "
              "prospects scored")
    for cid, value in list(zip(result.customer_ids, result.scores, strict=True))[:top]:
        out.print(f"  {cid}  {value:.3f}")
    if output:
        write_safe_csv(output, ["customer_id", "lookalike_score"],
                       ([c, f"{v:.4f}"] for c, v in zip(result.customer_ids, result.scores,
                                                        strict=True)))
        out.print(f"wrote {output}")
    if save:
        from tierwise.models.compute import set_snapshot_column

        saved = set_snapshot_column(ws, "lookalike_score", result.customer_ids,
                                    result.scores.tolist())
        out.print(f"saved lookalike_score for {saved:,} prospects in the latest snapshot")


def patterns_cmd(
    segment: Annotated[str | None, typer.Option(help="A segment (default: all buyers).")]
    = None,
    item: Annotated[str, typer.Option(help="category or product_id for the rules.")]
    = "category",
    min_support: Annotated[float, typer.Option()] = 0.02,
    customer: Annotated[str | None, typer.Option(
        help="Only one customer's category affinity.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Category affinity, purchase hours and weekdays, and association rules."""
    from tierwise.insights import patterns

    ws = Workspace.open(workspace)
    who = f"customer {customer}" if customer else (f"segment {segment}" if segment
                                                    else "all buyers")
    grid = Table(title=f"Category affinity: {who}", title_justify="left")
    for name in ("category", "share of spend", "all buyers", "lift"):
        grid.add_column(name)
    for r in patterns.category_affinity(ws, segment, customer)[:12]:
        grid.add_row(str(r["category"]), f"{r['share']:.1%}", f"{r['share_all']:.1%}",
                     f"{r['lift']:.2f}" if r["lift"] is not None else "—")
    out.print(grid)
    if customer:
        return
    times = patterns.purchase_times(ws, segment)
    peak = max(range(24), key=lambda h: times["hour"][h])
    out.print("orders by hour: " + " ".join(str(n) for n in times["hour"])
              + f" (peak {peak}:00)")
    out.print("by weekday: " + ", ".join(f"{d} {n}" for d, n in
                                        zip(patterns.WEEKDAYS, times["weekday"], strict=True)))
    rules = patterns.association_rules(ws, segment, item, min_support)
    out.print(f"{len(rules)} association rules (support ≥ {min_support:.0%}):")
    for r in rules[:10]:
        out.print(f"  {r['if']} → {r['then']}: support {r['support']:.1%}, confidence "
                  f"{r['confidence']:.1%}, lift {r['lift']:.2f}")


def holdout_cmd(
    key: Annotated[str, typer.Argument(help="A static list to split.")],
    share: Annotated[float, typer.Option(help="Share of members to hold out.")] = 0.1,
    workspace: WorkspaceOpt = None,
) -> None:
    """Move a random, reproducible share of a static list into KEY_holdout."""
    from tierwise.insights.effectiveness import holdout
    from tierwise.segments import catalog as defs
    from tierwise.segments import membership

    ws = Workspace.open(workspace)
    ids = membership.members_at(ws, key)
    treated, held = holdout(ids, share, key)
    target = f"{key}_holdout"
    if target not in defs.applied(ws):
        definition = defs.SegmentDefinition(key=target, kind="static", tags=["holdout"],
                                            description=f"holdout of {key} ({share:.0%})")
        defs.write_file(ws, definition)
        defs.save(ws, definition)
    membership.edit_static(ws, key, remove=held)
    membership.edit_static(ws, target, add=held)
    out.print(f"{key}: {len(treated):,} treated; {target}: {len(held):,} held out")


def uplift_cmd(
    treated: Annotated[str | None, typer.Option(help="Segment of treated customers.")] = None,
    holdout: Annotated[str | None, typer.Option(help="Segment of held-out customers.")]
    = None,
    since: Annotated[str | None, typer.Option(help="When treatment started, YYYY-MM-DD.")]
    = None,
    action: Annotated[str | None, typer.Option(
        help="Instead: a trigger or playbook (trigger:KEY, playbook:KEY) against its own "
             "holdout group, each customer from the instant the action was due.")] = None,
    days: Annotated[int, typer.Option(help="Days of the outcome window.")] = 30,
    workspace: WorkspaceOpt = None,
) -> None:
    """Uplift of treated over holdout: repurchase, retention, revenue, with 95% CIs."""
    from datetime import datetime, time

    from tierwise.errors import TierwiseError
    from tierwise.insights.effectiveness import action_uplift, uplift
    from tierwise.segments import membership

    ws = Workspace.open(workspace)
    if action is not None:
        found = action_uplift(ws, action, days)
        effects = found.effects
        out.print(f"{action}: {found.treated:,} treated, {found.held_out:,} held out; "
                  f"{found.delivered:,} messages delivered, cost {found.cost:,.2f} "
                  f"{found.currency}, incremental revenue {found.incremental_revenue:+,.2f} "
                  f"{found.currency}" + (f", return {found.return_on_cost:,.2f}× the cost"
                                         if found.return_on_cost is not None else ""))
    elif treated and holdout and since:
        start = datetime.combine(datetime.strptime(since, "%Y-%m-%d").date(), time(0),
                                 ws.config.zone)
        effects = uplift(ws, membership.members_at(ws, treated),
                         membership.members_at(ws, holdout), start, days)
    else:
        raise TierwiseError("give --action trigger:KEY (or playbook:KEY), or --treated, "
                            "--holdout and --since",
                            zh="请给出 --action trigger:KEY（或 playbook:KEY），"
                            "或 --treated、--holdout 和 --since")
    grid = Table()
    for name in ("metric", "treated", "holdout", "difference", "95% CI", "relative"):
        grid.add_column(name)
    for e in effects:
        grid.add_row(e.metric, f"{e.treated:,.3f}", f"{e.holdout:,.3f}",
                     f"{e.difference:+,.3f}" + (" *" if e.significant else ""),
                     f"[{e.low:+,.3f}, {e.high:+,.3f}]",
                     f"{e.relative:+.1%}" if e.relative is not None else "—")
    out.print(grid)


def satisfaction_cmd(
    by: Annotated[str | None, typer.Option(help=(
        "Break down by tier, lifecycle, rfm_segment, churn_risk, city, province, country, "
        "industry, company_size, channel, owner or gender."))] = None,
    segment: Annotated[str | None, typer.Option(help=(
        "Only the members of this segment."))] = None,
    trend: Annotated[int | None, typer.Option(help=(
        "Instead: NPS and CSAT of the answers given in each of the last N months."))] = None,
    as_of: Annotated[str | None, typer.Option(help=(
        "An instant (default: the latest snapshot's)."))] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """NPS and CSAT from feedback: promoters, passives, detractors, mean rating, satisfied
    share; overall, by a dimension, of a segment's members, or month by month (the
    dashboard shows the same figures)."""
    from tierwise.cli.value import _as_of
    from tierwise.errors import spoken
    from tierwise.insights import satisfaction

    ws = Workspace.open(workspace)
    at = _as_of(ws, as_of) or satisfaction.default_as_of(ws)
    if trend is not None:
        if by is not None:
            raise TierwiseError("--trend and --by cannot be combined: a trend is of everyone "
                                "or of one segment (--segment)",
                                zh="--trend 不能与 --by 同用：趋势针对全部客户或一个分群"
                                   "（--segment）")
        _satisfaction_trend(ws, satisfaction.trend(ws, at, trend, segment), as_json)
        return
    found = satisfaction.labelled(ws, satisfaction.satisfaction(ws, at, by, segment), spoken())
    if as_json:
        out.print_json(json.dumps(found, default=str, ensure_ascii=False))
        return
    grid = Table(title=f"NPS / CSAT · {render.shown(found['as_of'], ws.config.zone)}",
                 title_justify="left")
    for name in (by or "", "respondents", "promoters", "passives", "detractors", "NPS",
                 "rated", "CSAT", "satisfied"):
        grid.add_column(name, justify="left" if name == (by or "") else "right")

    def row(name: str, f: dict[str, object]) -> None:
        nps, csat, share = f["nps"], f["csat"], f["satisfied_share"]
        grid.add_row(name, f"{f['respondents']:,}", f"{f['promoters']:,}", f"{f['passives']:,}",
                     f"{f['detractors']:,}", "—" if nps is None else f"{nps:+.1f}",
                     f"{f['rated']:,}", "—" if csat is None else f"{csat:.2f}",
                     "—" if share is None else f"{share:.0%}")

    row("all" if by else "", found)
    for g in found.get("groups", []):
        row(str(g["label"] if g["label"] is not None else "—"), g)
    out.print(grid)


def _satisfaction_trend(ws: Workspace, months: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(months, default=str, ensure_ascii=False))
        return
    grid = Table(title="NPS / CSAT", title_justify="left")
    for name in ("month", "respondents", "NPS", "rated", "CSAT", "satisfied"):
        grid.add_column(name, justify="left" if name == "month" else "right")
    for m in months:
        nps, csat, share = m["nps"], m["csat"], m["satisfied_share"]
        grid.add_row(m["month"] + (" (partial)" if m["partial"] else ""),
                     f"{m['respondents']:,}", "—" if nps is None else f"{nps:+.1f}",
                     f"{m['rated']:,}", "—" if csat is None else f"{csat:.2f}",
                     "—" if share is None else f"{share:.0%}")
    out.print(grid)


def register(app: typer.Typer) -> None:
    app.command("satisfaction")(satisfaction_cmd)
    app.command("holdout")(holdout_cmd)
    app.command("uplift")(uplift_cmd)
    app.command("clusters")(clusters_cmd)
    app.command("churn")(churn_cmd)
    app.command("lookalikes")(lookalikes_cmd)
    app.command("patterns")(patterns_cmd)
