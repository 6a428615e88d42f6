"""CLI commands for segments: check, preview, plan/apply, evaluate, members, explain, …"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tierwise.cli import audit as cli_audit
from tierwise.cli.value import _as_of
from tierwise.definitions.segment_ast import to_json, to_text
from tierwise.errors import NotFoundError, TierwiseError
from tierwise.ingest.report import write_safe_csv
from tierwise.segments import catalog as defs
from tierwise.segments import literals, membership, plan, templates
from tierwise.segments.evaluate import evaluate_rule
from tierwise.segments.explain import explain
from tierwise.segments.templates import TEMPLATES, template
from tierwise.store import memberships, sizes
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
err = Console(soft_wrap=True, stderr=True)
app = typer.Typer(help="Rule-based segments.", no_args_is_help=True)
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]
AsOfOpt = Annotated[str | None, typer.Option(help="Evaluate as of (default now).")]


def _when(ws: Workspace, value: datetime) -> str:
    return f"{value.astimezone(ws.config.zone):%Y-%m-%d %H:%M}"


@app.command("check")
def check(rule: Annotated[str, typer.Argument(help="A rule in the text form.")],
          workspace: WorkspaceOpt = None) -> None:
    """Parse a rule and print its canonical text (labels of tiers, RFM segments, stages, …
    as their codes) and JSON form; warn about free-text values no customer has."""
    ws = Workspace.open(workspace)
    checked = literals.check(ws, rule)
    out.print(to_text(checked.rule), markup=False)
    out.print_json(json.dumps(to_json(checked.rule), ensure_ascii=False))
    _warn(checked.warnings)


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        err.print(f"warning: {warning}", markup=False, style="yellow")


@app.command("preview")
def preview(
    rule: Annotated[str, typer.Argument(help="A rule in the text form.")],
    as_of: AsOfOpt = None,
    ids_out: Annotated[Path | None, typer.Option(help="Write all member ids here.")] = None,
    sample: Annotated[int, typer.Option(help="How many members to show.")] = 10,
    workspace: WorkspaceOpt = None,
) -> None:
    """Count and show who a rule selects; nothing is saved."""
    ws = Workspace.open(workspace)
    when = _as_of(ws, as_of) or utcnow()
    checked = literals.check(ws, rule, when)
    ids = evaluate_rule(ws, checked.rule, when,
                        membership.applied_resolver(ws))["customer_id"].to_pylist()
    _warn(checked.warnings)
    total = ws.count("customers")
    out.print(f"{len(ids):,} of {total:,} customers as of {_when(ws, when)}")
    if ids and sample:
        people = ws.table("customers").select(["customer_id", "name", "city", "owner"])
        shown = set(ids[:sample])
        grid = Table()
        for name in people.column_names:
            grid.add_column(name)
        for row in people.to_pylist():
            if row["customer_id"] in shown:
                grid.add_row(*[str(v) if v is not None else "—" for v in row.values()])
        out.print(grid)
    if ids_out:
        write_safe_csv(ids_out, ["customer_id"], ([i] for i in ids))
        out.print(f"wrote {len(ids):,} ids to {ids_out}")


@app.command("list")
def list_(workspace: WorkspaceOpt = None) -> None:
    """Applied segments with their size, and when and how fast they were last computed."""
    ws = Workspace.open(workspace)
    grid = Table()
    for name in ("key", "name", "kind", "status", "version", "members", "computed",
                 "seconds", "last error"):
        grid.add_column(name)
    with ws.control.read() as conn:
        for key, applied in defs.applied(ws).items():
            last = memberships.last_run(conn, key)
            count = sizes.of(conn, [key])[key]
            d = applied.definition
            grid.add_row(key, d.names.get(ws.config.locale, ""), d.kind, d.status,
                         str(applied.version), f"{count:,}",
                         _when(ws, last["as_of"]) if last else "never",
                         f"{last['seconds']:.2f}" if last else "—",
                         (last["error"] or "")[:60] if last else "")
    out.print(grid)


@app.command("plan")
def plan_cmd(as_of: AsOfOpt = None, workspace: WorkspaceOpt = None) -> None:
    """For each changed file in segments/: how many and which customers enter and leave."""
    ws = Workspace.open(workspace)
    when = _as_of(ws, as_of) or utcnow()
    items = plan.plan(ws, when)
    if not items:
        out.print("no segment files in segments/ (start with `tierwise segments new`)")
    for item in items:
        if item.change == "unchanged":
            out.print(f"{item.key}: unchanged (version {item.version})")
            continue
        out.print(f"{item.key}: {item.change}" + (f" (from version {item.version})"
                                                  if item.version else ""))
        if item.old_rule != item.new_rule and item.old_rule:
            out.print(f"  - {item.old_rule}", markup=False)
        if item.new_rule:
            out.print(f"  + {item.new_rule}", markup=False)
        if item.error:
            out.print(f"  cannot evaluate yet: {item.error}", markup=False)
        _warn(item.warnings)
        if item.members_after is not None:
            out.print(f"  {len(item.entering):,} would enter, {len(item.leaving):,} would "
                      f"leave, {item.members_after:,} members after (as of {_when(ws, when)})")
            if item.entering:
                out.print(f"  entering: {', '.join(item.entering[:plan.SAMPLE])}"
                          + (" …" if len(item.entering) > plan.SAMPLE else ""))
            if item.leaving:
                out.print(f"  leaving: {', '.join(item.leaving[:plan.SAMPLE])}"
                          + (" …" if len(item.leaving) > plan.SAMPLE else ""))


@app.command("apply")
def apply_cmd(note: Annotated[str | None, typer.Option(help="Why it changed.")] = None,
              evaluate: Annotated[bool, typer.Option(help="Evaluate after saving.")] = False,
              workspace: WorkspaceOpt = None) -> None:
    """Save new and changed segment files as new versions."""
    ws = Workspace.open(workspace)
    saved = plan.apply(ws, plan.plan(ws, utcnow()), note)
    for key, version in saved.items():
        cli_audit.record(ws, "segment_save", f"segment:{key}", {"version": version,
                                                                "note": note})
        out.print(f"{key}: saved version {version}")
    if not saved:
        out.print("nothing to apply: every file matches its applied version")
    if evaluate and saved:
        _print_runs(ws, membership.evaluate_all(ws, keys=list(saved)))


def _print_runs(ws: Workspace, runs: list[membership.RunResult]) -> None:
    grid = Table()
    for name in ("segment", "members", "entered", "exited", "reason", "seconds", "error"):
        grid.add_column(name)
    for r in runs:
        grid.add_row(r.key, f"{r.members:,}" if r.members is not None else "—",
                     str(r.entered if r.entered is not None else "—"),
                     str(r.exited if r.exited is not None else "—"), _reason(r.reason),
                     f"{r.seconds:.2f}", r.error or "")
    out.print(grid)
    if runs:
        out.print(f"computed as of {_when(ws, runs[0].as_of)}")


@app.command("evaluate")
def evaluate_cmd(keys: Annotated[list[str] | None, typer.Argument(
                     help="Segments to evaluate (default: all active).")] = None,
                 as_of: AsOfOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Evaluate segments in dependency order; record memberships, history and runs."""
    ws = Workspace.open(workspace)
    runs = membership.evaluate_all(ws, _as_of(ws, as_of), keys or None)
    _print_runs(ws, runs)
    if any(r.error for r in runs):
        raise typer.Exit(1)


@app.command("members")
def members_cmd(key: str, at: Annotated[str | None, typer.Option(
                    help="Members at a past instant, from the history.")] = None,
                out_file: Annotated[Path | None, typer.Option("--out", help="CSV to write.")]
                = None,
                workspace: WorkspaceOpt = None) -> None:
    """Members now or at a past instant."""
    ws = Workspace.open(workspace)
    ids = membership.members_at(ws, key, _as_of(ws, at))
    with ws.control.read() as conn:
        last = memberships.last_run(conn, key, succeeded=True)
    when = f"at {at}" if at else (f"computed as of {_when(ws, last['as_of'])}"
                                  if last else "never computed")
    out.print(f"{key}: {len(ids):,} members ({when})")
    if out_file:
        write_safe_csv(out_file, ["customer_id"], ([i] for i in ids))
        out.print(f"wrote {out_file}")
    else:
        out.print(", ".join(ids[:50]) + (" …" if len(ids) > 50 else ""))


@app.command("history")
def history_cmd(key: str, customer: Annotated[str | None, typer.Option()] = None,
                limit: int = 30, workspace: WorkspaceOpt = None) -> None:
    """Entries and exits of a segment (optionally for one customer)."""
    ws = Workspace.open(workspace)
    with ws.control.read() as conn:
        rows = memberships.history(conn, key, customer_id=customer, limit=limit)
    grid = Table()
    for name in ("customer", "entered", "reason", "exited", "reason ", "version"):
        grid.add_column(name)
    for r in rows:
        grid.add_row(r["customer_id"], _when(ws, r["entered_at"]), _reason(r["enter_reason"]),
                     _when(ws, r["exited_at"]) if r["exited_at"] else "—",
                     _reason(r["exit_reason"]), str(r["version"]))
    out.print(grid)


@app.command("explain")
def explain_cmd(key: str, customer_id: str, as_of: AsOfOpt = None,
                workspace: WorkspaceOpt = None) -> None:
    """The value of each condition for one customer: why they are in or out."""
    ws = Workspace.open(workspace)
    applied = defs.applied(ws).get(key)
    if applied is None or applied.definition.condition() is None:
        raise NotFoundError(f"no applied dynamic segment {key!r}",
                            zh=f"没有已生效的动态分群 {key!r}")
    when = _as_of(ws, as_of) or utcnow()
    tree = applied.definition.condition()
    assert tree is not None
    for step in explain(ws, tree, customer_id, when, membership.applied_resolver(ws)):
        mark = "[green]✓[/]" if step.result else "[red]✗[/]"
        values = "; ".join(f"{k} = {v}" for k, v in step.values.items())
        out.print(f"{'  ' * step.depth}{mark} {step.text}" + (f"   ({values})" if values
                                                               else ""), highlight=False)


@app.command("templates")
def templates_cmd(workspace: WorkspaceOpt = None) -> None:
    """Built-in templates (use one with `tierwise segments new KEY --template NAME`)."""
    ws = Workspace.open(workspace)
    for key in TEMPLATES:
        t = template(key, ws.config.locale)
        out.print(f"{key}: {t.names.get(ws.config.locale, '')} — {t.rule}\n  {t.description}",
                  markup=False)


@app.command("new")
def new_cmd(key: str, template: Annotated[str | None, typer.Option()] = None,
            rule: Annotated[str | None, typer.Option()] = None,
            kind: Annotated[str, typer.Option(help="dynamic, static or snapshot.")] = "dynamic",
            workspace: WorkspaceOpt = None) -> None:
    """Write segments/KEY.yaml from a template or a rule (then `plan` and `apply`)."""
    ws = Workspace.open(workspace)
    if template:
        definition = templates.template(template, ws.config.locale).model_copy(
            update={"key": key})
    else:
        definition = defs.SegmentDefinition(key=key, rule=rule, kind=kind)  # type: ignore[arg-type]
    definition = defs.SegmentDefinition.model_validate(definition.model_dump())
    if (defs.folder(ws) / f"{key}.yaml").exists():
        raise TierwiseError(f"segments/{key}.yaml exists already",
                            zh=f"segments/{key}.yaml 已存在")
    out.print(f"wrote {defs.write_file(ws, definition)}")


@app.command("add")
def add_cmd(key: str, ids: Annotated[list[str] | None, typer.Argument()] = None,
            file: Annotated[Path | None, typer.Option(help="CSV/text file of ids.")] = None,
            workspace: WorkspaceOpt = None) -> None:
    """Add customers to a static list."""
    ws = Workspace.open(workspace)
    entered, _ = membership.edit_static(ws, key, add=_ids(ids, file))
    cli_audit.record(ws, "segment_members_add", f"segment:{key}", {"added": entered})
    out.print(f"{key}: {entered:,} added")


@app.command("remove")
def remove_cmd(key: str, ids: Annotated[list[str] | None, typer.Argument()] = None,
               file: Annotated[Path | None, typer.Option()] = None,
               workspace: WorkspaceOpt = None) -> None:
    """Remove customers from a static list."""
    ws = Workspace.open(workspace)
    _, exited = membership.edit_static(ws, key, remove=_ids(ids, file))
    cli_audit.record(ws, "segment_members_remove", f"segment:{key}", {"removed": exited})
    out.print(f"{key}: {exited:,} removed")


@app.command("freeze")
def freeze_cmd(new_key: str, source: Annotated[str, typer.Option("--from")],
               at: Annotated[str | None, typer.Option(help="Instant to freeze (default now).")]
               = None,
               workspace: WorkspaceOpt = None) -> None:
    """Freeze a segment's members at an instant into a new snapshot segment."""
    ws = Workspace.open(workspace)
    when = _as_of(ws, at)
    ids = membership.members_at(ws, source, when)
    definition = defs.SegmentDefinition(
        key=new_key, kind="snapshot",
        description=f"members of {source} at {_when(ws, when or utcnow())}")
    defs.write_file(ws, definition)
    defs.save(ws, definition)
    entered, _ = membership.edit_static(ws, new_key, add=ids, at=when)
    cli_audit.record(ws, "segment_freeze", f"segment:{new_key}", {"from": source,
                                                                  "members": entered})
    out.print(f"{new_key}: froze {entered:,} members of {source}")


def _ids(ids: list[str] | None, file: Path | None) -> list[str]:
    found = list(ids or [])
    if file is not None:
        for line in file.read_text(encoding="utf-8-sig").splitlines()[0:]:
            value = line.split(",")[0].strip()
            if value and value != "customer_id":
                found.append(value)
    if not found:
        raise TierwiseError("give customer ids as arguments or with --file",
                            zh="请以参数或 --file 给出客户编号")
    return found


def customer_segments_cmd(customer_id: str, workspace: WorkspaceOpt = None) -> None:
    """Segments a customer is in, and has been in."""
    ws = Workspace.open(workspace)
    grid = Table()
    for name in ("segment", "entered", "reason", "exited", "reason ", "version"):
        grid.add_column(name)
    for r in membership.customer_segments(ws, customer_id):
        grid.add_row(r["segment_key"], _when(ws, r["entered_at"]), _reason(r["enter_reason"]),
                     _when(ws, r["exited_at"]) if r["exited_at"] else "— (member)",
                     _reason(r["exit_reason"]), str(r["version"]))
    out.print(grid)


def _reason(code: str | None) -> str:
    """A membership change's reason in the language spoken (the workspace's locale)."""
    from tierwise.errors import spoken
    from tierwise.web import i18n

    return i18n.reason_label(code, spoken()) or "—"
