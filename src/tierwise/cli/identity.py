"""CLI commands for identity resolution: find duplicates, review them, merge and undo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tierwise.cli import render
from tierwise.cli.audit import actor, record
from tierwise.identity import review
from tierwise.identity.match import explain, find_duplicates
from tierwise.identity.merge import merge, merges_of, undo
from tierwise.ingest.report import write_safe_csv
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]
duplicates_app = typer.Typer(help="Likely duplicate customers and their review queue.")
merges_app = typer.Typer(help="Merges of duplicate customers.")


def duplicates_cmd(
    ctx: typer.Context,
    threshold: Annotated[float, typer.Option(help="Match probability to report.")] = 0.5,
    retrain: Annotated[bool, typer.Option(help="Train the model again.")] = False,
    output: Annotated[Path | None, typer.Option("--out", help="CSV of the pairs.")] = None,
    apply: Annotated[bool, typer.Option(
        "--queue", help="Merge pairs ≥ --upper, queue the others for review.")] = False,
    upper: Annotated[float, typer.Option(help="Merge automatically from here.")]
    = review.UPPER,
    workspace: WorkspaceOpt = None,
) -> None:
    """Find customer records that are likely the same customer."""
    if ctx.invoked_subcommand:
        return
    ws = Workspace.open(workspace)
    with render.Spinner(out, "Matching"):
        found, reused = find_duplicates(ws, threshold, retrain)
    pairs = found.sort_by([("match_probability", "descending")]).to_pylist()
    out.print(f"{len(pairs):,} likely duplicate pairs at probability ≥ {threshold}"
              + (" (reused the trained model)" if reused else " (model trained and saved)"))
    for p in pairs[:20]:
        out.print(f"  {p['unique_id_l']} ~ {p['unique_id_r']}: {p['match_probability']:.3f}")
    if output:
        write_safe_csv(output, ["customer_id_l", "customer_id_r", "match_probability"],
                       ([p["unique_id_l"], p["unique_id_r"], p["match_probability"]]
                        for p in pairs))
        out.print(f"wrote {output}")
    if apply:
        result = review.queue(ws, found, actor=actor(), upper=upper, lower=threshold)
        out.print(f"merged {len(result.merged):,} group(s) at ≥ {upper}; queued "
                  f"{result.queued:,} pair(s) for review ({result.known:,} seen before)")


@duplicates_app.command("review")
def review_cmd(limit: int = 30, status: Annotated[str, typer.Option(
                   help="pending, merged or rejected.")] = "pending",
               workspace: WorkspaceOpt = None) -> None:
    """Pairs waiting for a decision, most likely first."""
    ws = Workspace.open(workspace)
    people = {}
    rows = review.pending(ws, limit, status)
    if rows:
        wanted = {r["left_id"] for r in rows} | {r["right_id"] for r in rows}
        table = ws.table("customers").to_pylist()
        people = {p["customer_id"]: p for p in table if p["customer_id"] in wanted}
    grid = Table()
    for name in ("pair", "probability", "left", "right"):
        grid.add_column(name)

    def who(cid: str) -> str:
        p = people.get(cid, {})
        parts = [cid, p.get("name"), p.get("phone"), p.get("email"), p.get("city")]
        return " · ".join(str(x) for x in parts if x)

    for r in rows:
        grid.add_row(str(r["pair_id"]), f"{r['probability']:.3f}", who(r["left_id"]),
                     who(r["right_id"]))
    out.print(grid)


@duplicates_app.command("explain")
def explain_cmd(left: str, right: str, workspace: WorkspaceOpt = None) -> None:
    """Why two customers may or may not be the same: each field's weight and its reason."""
    ws = Workspace.open(workspace)
    why = explain(ws, left, right)
    out.print(explanation_text(why))


def explanation_text(why: dict[str, Any]) -> Table:
    """An explanation (``identity.match.explain``) as a table, field by field."""
    grid = Table(title=f"{why['left_id']} ~ {why['right_id']}: match probability "
                       f"{why['match_probability']:.3f}"
                       + (" (names disagree: capped)" if why["capped"] else ""))
    for name in ("field", "agreement", "weight (bits)", "of which rarity"):
        grid.add_column(name)
    grid.add_row("prior", "two records picked at random", f"{why['prior_weight']:+.1f}", "")
    for f in why["fields"]:
        grid.add_row(f["field"], f["reason"], f"{f['weight']:+.1f}",
                     f"{f['rarity']:+.1f}" if f["rarity"] else "")
    grid.add_row("total", "", f"{why['match_weight']:+.1f}", "")
    return grid


@duplicates_app.command("accept")
def accept_cmd(pair_id: int, survivor: Annotated[str | None, typer.Option(
                   help="The id to keep (default: the older record).")] = None,
               workspace: WorkspaceOpt = None) -> None:
    """Merge a pending pair."""
    ws = Workspace.open(workspace)
    m = review.accept(ws, pair_id, actor=actor(), survivor=survivor)
    record(ws, "merge", f"customer:{m.survivor_id}",
         {"merge_id": m.merge_id, "merged": m.merged_ids, "pair": pair_id})
    out.print(f"merge {m.merge_id}: {', '.join(m.merged_ids)} → {m.survivor_id}")


@duplicates_app.command("reject")
def reject_cmd(pair_id: int, workspace: WorkspaceOpt = None) -> None:
    """Not the same customer; the pair is not proposed again."""
    ws = Workspace.open(workspace)
    review.reject(ws, pair_id, actor=actor())
    record(ws, "duplicate_reject", f"pair:{pair_id}", {})
    out.print(f"pair {pair_id} rejected")


def merge_cmd(survivor: str, merged: list[str], workspace: WorkspaceOpt = None) -> None:
    """Merge customers into SURVIVOR (survivorship rules build the golden record)."""
    ws = Workspace.open(workspace)
    m = merge(ws, survivor, merged, actor=actor())
    record(ws, "merge", f"customer:{survivor}", {"merge_id": m.merge_id, "merged": m.merged_ids,
                                               "reason": "manual"})
    out.print(f"merge {m.merge_id}: {', '.join(m.merged_ids)} → {survivor}")
    for column, source in sorted(m.fields.items()):
        out.print(f"  {column}: from {source}", highlight=False)


def merges_cmd(ctx: typer.Context, limit: int = 30, workspace: WorkspaceOpt = None) -> None:
    """Recent merges."""
    if ctx.invoked_subcommand:
        return
    ws = Workspace.open(workspace)
    grid = Table()
    for name in ("merge", "survivor", "merged", "reason", "by", "at", "undone"):
        grid.add_column(name)
    for m in merges_of(ws, limit):
        grid.add_row(str(m["merge_id"]), m["survivor_id"], ", ".join(m["merged_ids"]),
                     m["reason"], m["created_by"],
                     f"{m['created_at'].astimezone(ws.config.zone):%Y-%m-%d %H:%M}",
                     "yes" if m["undone_at"] else "")
    out.print(grid)


@merges_app.command("undo")
def undo_cmd(merge_id: int, workspace: WorkspaceOpt = None) -> None:
    """Undo a merge: the records, facts, history and memberships are as they were."""
    ws = Workspace.open(workspace)
    m = undo(ws, merge_id, actor=actor())
    record(ws, "merge_undo", f"customer:{m.survivor_id}", {"merge_id": merge_id})
    out.print(f"undid merge {merge_id}: {', '.join(m.merged_ids)} are separate again")


def match_import(ws: Workspace, import_id: int) -> None:
    """Match the records an import wrote against all customers and act on the pairs: each
    record against its candidates for a small import once a model is trained, else one
    scan (which trains the model the first time)."""
    from tierwise.identity.arrivals import MAX_ARRIVALS, match_arrivals
    from tierwise.identity.scoring import model_path
    from tierwise.store import customers as customer_store

    with ws.control.read() as conn:
        ids = customer_store.ids_of_import(conn, import_id)
    if not ids:
        return
    with render.Spinner(out, "Matching the imported customers"):
        if len(ids) <= MAX_ARRIVALS and model_path(ws.root).exists():
            found = match_arrivals(ws, ids, actor=actor())
            merged, queued = found.merged, found.queued
        else:
            pairs, _ = find_duplicates(ws, review.LOWER, only=set(ids))
            result = review.queue(ws, pairs, actor=actor())
            merged, queued = result.merged, result.queued
    out.print(f"matching: merged {len(merged):,} group(s), queued {queued:,} "
              "pair(s) for review (`tierwise duplicates review`)")


def register(app: typer.Typer) -> None:
    duplicates_app.callback(invoke_without_command=True)(duplicates_cmd)
    merges_app.callback(invoke_without_command=True)(merges_cmd)
    app.add_typer(duplicates_app, name="duplicates")
    app.add_typer(merges_app, name="merges")
    app.command("merge")(merge_cmd)
