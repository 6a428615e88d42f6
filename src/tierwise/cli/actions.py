"""CLI commands for real-time work and actions: triggers, playbooks, lead scoring,
deliveries, tasks, escalated tickets, and running the worker without the API."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tierwise.cli import audit as cli_audit
from tierwise.errors import TierwiseError
from tierwise.segments.vocabulary import vocabulary
from tierwise.store import audit
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]

triggers_app = typer.Typer(help="Triggers: actions when customers enter or leave segments, "
                           "change tier or lifecycle stage, qualify as leads, breach SLAs.",
                           no_args_is_help=True)
playbooks_app = typer.Typer(help="Playbooks: service level, SLA and follow-up steps per tier "
                            "or segment.", no_args_is_help=True)
deliveries_app = typer.Typer(help="The action outbox: what was sent, what waits, what failed.",
                             invoke_without_command=True)
tasks_app = typer.Typer(help="Tasks for people (follow-ups, qualified leads, SLA alerts).",
                        invoke_without_command=True)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    return [path]


def _apply(kind: str, path: Path, workspace: Path | None) -> None:
    """Validate every file first; store them all in one transaction, or none."""
    from tierwise.actions import catalog as automations

    models = [automations.load_yaml(kind, f.read_text(encoding="utf-8"), str(f))
              for f in _files(path)]
    ws = Workspace.open(workspace)
    words = vocabulary(ws)
    with ws.control.write() as conn:
        versions = [(m.key, automations.save(
            conn, kind, m, f"applied from {path.name}",
            allowed_targets=ws.config.webhook_allowed_targets, vocabulary=words,
            robots=ws.config.robots, senders=ws.config.sms_senders))
            for m in models]
        for key, version in versions:  # recorded in the same transaction
            audit.append(conn, cli_audit.actor(), f"{kind}_save", f"{kind}:{key}",
                         {"version": version, "file": str(path)})
    for key, version in versions:
        out.print(f"{kind.replace('_', ' ')} {key}: version {version}")


def _list(kind: str, workspace: Path | None) -> None:
    from tierwise.actions import catalog as automations

    ws = Workspace.open(workspace)
    with ws.control.read() as conn:
        found = automations.all_of(conn, kind)
    for key, model in found.items():
        data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        state = "" if data.get("enabled", True) else " (disabled)"
        summary = json.dumps({k: data[k] for k in ("on", "action", "applies_to", "steps")
                              if k in data}, ensure_ascii=False)
        out.print(f"[bold]{key}[/]{state}  {summary}", highlight=False)
    if not found:
        out.print(f"no {kind}s yet")


@triggers_app.command("apply")
def triggers_apply(path: Annotated[Path, typer.Argument(help="A YAML file or a folder.")],
                   workspace: WorkspaceOpt = None) -> None:
    """Validate and store triggers (each changed one becomes a new version)."""
    _apply("trigger", path, workspace)


@triggers_app.command("list")
def triggers_list(workspace: WorkspaceOpt = None) -> None:
    """Triggers and what they do."""
    _list("trigger", workspace)


@triggers_app.command("disable")
def triggers_disable(key: str, workspace: WorkspaceOpt = None) -> None:
    """Stop a trigger from firing (it is kept, with its history)."""
    from tierwise.actions import catalog as automations

    with Workspace.open(workspace).control.write() as conn:
        version = automations.disable(conn, "trigger", key)
        audit.append(conn, cli_audit.actor(), "trigger_disable", f"trigger:{key}",
                     {"version": version})
    out.print(f"trigger {key}: version {version}, disabled")


@playbooks_app.command("apply")
def playbooks_apply(path: Annotated[Path, typer.Argument(help="A YAML file or a folder.")],
                    workspace: WorkspaceOpt = None) -> None:
    """Validate and store playbooks."""
    _apply("playbook", path, workspace)


@playbooks_app.command("list")
def playbooks_list(workspace: WorkspaceOpt = None) -> None:
    """Playbooks and what they apply to."""
    _list("playbook", workspace)


@playbooks_app.command("runs")
def playbooks_runs(customer: Annotated[str | None, typer.Option(help="One customer.")] = None,
                   workspace: WorkspaceOpt = None) -> None:
    """Playbook runs, newest first."""
    from tierwise.actions import playbooks

    table = Table("run", "playbook", "customer", "started", "next step", "next at", "status")
    for r in playbooks.runs(Workspace.open(workspace), customer_id=customer):
        table.add_row(str(r["run_id"]), r["playbook_key"], r["customer_id"],
                      f"{r['started_at']:%Y-%m-%d %H:%M}", str(r["next_step"]),
                      f"{r['next_at']:%Y-%m-%d %H:%M}" if r["next_at"] else "",
                      r["status"])
    out.print(table)


def lead_scoring_cmd(path: Annotated[Path, typer.Argument(help="The lead-scoring YAML.")],
                     workspace: WorkspaceOpt = None) -> None:
    """Store the lead-scoring rules; scores follow as events arrive (or `tierwise leads
    --rescore`)."""
    _apply("lead_scoring", path, workspace)


def leads_cmd(qualified: Annotated[bool, typer.Option(help="Only qualified leads.")] = False,
              rescore: Annotated[bool, typer.Option(help="Rescore everyone first.")] = False,
              replay: Annotated[bool, typer.Option(help=(
                  "First date qualifications from the events' history (when lead scoring "
                  "is set up on existing data); nothing fires."))] = False,
              limit: int = 50, workspace: WorkspaceOpt = None) -> None:
    """Lead scores, highest first."""
    from tierwise.models import leads
    from tierwise.store import leads as lead_store

    ws = Workspace.open(workspace)
    if replay:
        out.print(f"{leads.replay(ws)} qualification(s) dated from history")
    if rescore:
        out.print(f"{leads.update(ws).qualified} lead(s) newly qualified")
    table = Table("customer", "score", "qualified at")
    for r in lead_store.leads(ws.control, qualified, limit):
        table.add_row(r["customer_id"], f"{r['score']:,.1f}",
                      f"{r['qualified_at']:%Y-%m-%d %H:%M}" if r["qualified_at"] else "")
    out.print(table)


@deliveries_app.callback()
def deliveries_list(ctx: typer.Context,
                    status: Annotated[str | None, typer.Option(
                        help="pending, delivered, dead, held_out or suppressed.")] = None,
                    limit: int = 50, workspace: WorkspaceOpt = None) -> None:
    """Deliveries, newest last, and counts by status."""
    if ctx.invoked_subcommand is not None:
        return
    from tierwise.actions import dispatch

    ws = Workspace.open(workspace)
    summary = dispatch.summary(ws)
    out.print(" · ".join(f"{k} {v:,}" for k, v in summary.items()))
    rows = dispatch.deliveries(ws, status=status, limit=limit, newest=True, replies=True)
    table = Table("id", "source", "event", "customer", "action", "status", "attempts",
                  "last error")
    for r in rows:
        table.add_row(str(r["outbox_id"]), r["source"], r["event"]["event"],
                      r["customer_id"], f"{r['action']} → {r['target']}", r["status"],
                      str(r["attempts"]), " — ".join(
                          t for t in (r["last_error"], r.get("last_reply")) if t)[:120])
    out.print(table)


@deliveries_app.command("replay")
def deliveries_replay(ids: Annotated[list[int] | None, typer.Argument(
                          help="Outbox ids; without them, every delivery in --status.")]
                      = None,
                      status: Annotated[str, typer.Option(
                          help="Without ids: `dead` (gave up) or `held` (pending when the "
                          "backup a workspace was restored from was taken).")] = "dead",
                      workspace: WorkspaceOpt = None) -> None:
    """Send deliveries again, with their original idempotency keys."""
    from tierwise.actions import dispatch

    if status not in ("dead", "held"):
        raise TierwiseError(f"--status {status!r}: expected dead or held",
                            zh=f"--status {status!r}：应为 dead 或 held")
    ws = Workspace.open(workspace)
    queued = dispatch.replay(ws, ids or None, status)
    cli_audit.record(ws, "deliveries_replay", None, {"ids": ids or status, "queued": queued})
    out.print(f"{queued} delivery(ies) queued again")


@tasks_app.callback()
def tasks_list(ctx: typer.Context, owner: Annotated[str | None, typer.Option()] = None,
               team: Annotated[str | None, typer.Option(
                   help="The role tasks are for: sales, service, operator, …")] = None,
               status: Annotated[str, typer.Option(
                   help="open, in_progress, active (both), done or cancelled.")] = "active",
               overdue: Annotated[bool, typer.Option(help="Only tasks past due.")] = False,
               csv_file: Annotated[Path | None, typer.Option(
                   "--csv", help="Write the list to this CSV file instead.")] = None,
               workspace: WorkspaceOpt = None) -> None:
    """The worklist: tasks, soonest due first; ★ marks customers of the best tier."""
    if ctx.invoked_subcommand is not None:
        return
    from tierwise.actions import tasks
    from tierwise.cli import render
    from tierwise.store.control import as_utc

    if status not in (*tasks.STATUSES, "active"):
        raise TierwiseError(f"--status {status!r}: expected one of "
                            f"{', '.join((*tasks.STATUSES, 'active'))}",
                            zh=f"--status {status!r}：应为 "
                            f"{', '.join((*tasks.STATUSES, 'active'))} 之一")
    ws = Workspace.open(workspace)
    found = tasks.listing(ws, owner=owner, team=team, status=status, overdue=overdue,
                          limit=100_000 if csv_file else 200)
    if csv_file is not None:
        csv_file.write_bytes(tasks.export(found, ws.config.zone))
        out.print(f"{len(found):,} tasks written to {csv_file}")
        return
    table = Table("task", "customer", "owner", "title", "priority", "due", "status")
    for t in found:
        table.add_row(str(t["task_id"]), ("★ " if t["strategic"] else "") + t["customer_id"],
                      t["owner"] or f"({t['role']})",
                      t["title"], t["priority"],
                      render.shown(as_utc(t["due_at"]), ws.config.zone)
                      if t["due_at"] else "",
                      t["status"] + (" · overdue" if t["overdue"] else ""))
    out.print(table)


@tasks_app.command("done")
def tasks_done(task_id: int, by: Annotated[str, typer.Option()] = "cli",
               workspace: WorkspaceOpt = None) -> None:
    """Mark a task done."""
    from tierwise.actions import tasks

    ws = Workspace.open(workspace)
    tasks.complete(ws, task_id, by)
    cli_audit.record(ws, "task_complete", f"task:{task_id}", {"by": by})
    out.print(f"task {task_id} done")


@tasks_app.command("start")
def tasks_start(task_id: int, workspace: WorkspaceOpt = None) -> None:
    """Mark a task in progress."""
    from tierwise.actions import tasks

    ws = Workspace.open(workspace)
    tasks.start(ws, task_id)
    cli_audit.record(ws, "task_start", f"task:{task_id}", {})
    out.print(f"task {task_id} in progress")


@tasks_app.command("assign")
def tasks_assign(task_id: int, owner: str, workspace: WorkspaceOpt = None) -> None:
    """Give a task to another owner."""
    from tierwise.actions import tasks

    ws = Workspace.open(workspace)
    found = tasks.assign(ws, task_id, owner)
    cli_audit.record(ws, "task_assign", f"task:{task_id}", {"owner": found["owner"]})
    out.print(f"task {task_id} assigned to {found['owner']}")


@tasks_app.command("snooze")
def tasks_snooze(task_id: int, hours: Annotated[float, typer.Option(
                     min=0.01, max=24 * 366, help="Put it off this many hours from now.")],
                 workspace: WorkspaceOpt = None) -> None:
    """Put a task off: its new due time is HOURS from now."""
    from datetime import timedelta

    from tierwise.actions import tasks
    from tierwise.store.control import utcnow

    ws = Workspace.open(workspace)
    found = tasks.snooze(ws, task_id, utcnow() + timedelta(hours=hours))
    cli_audit.record(ws, "task_snooze", f"task:{task_id}", {"hours": hours})
    out.print(f"task {task_id} due {found['due_at']:%Y-%m-%d %H:%M} (UTC)")


def worker_cmd(seconds: Annotated[float | None, typer.Option(
                   help="Stop after this many seconds (default: until Ctrl-C).")] = None,
               wake_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
               status_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
               workspace: WorkspaceOpt = None) -> None:
    """Run the real-time worker without the API: intake, incremental updates, sweeps,
    playbooks, SLA checks and deliveries (what `tierwise serve` runs next to the API)."""
    from tierwise.realtime.process import serve_child
    from tierwise.realtime.worker import Worker

    if wake_fd is not None and status_fd is not None:  # started by `tierwise serve`
        if os.environ.get("TIERWISE_LOG_FORMAT") == "json":  # serve --log-format json
            import logging

            from tierwise.server.metrics import JsonFormatter

            handler = logging.StreamHandler()
            handler.setFormatter(JsonFormatter())
            logging.basicConfig(level=logging.INFO, handlers=[handler])
        serve_child(Workspace.open(workspace), wake_fd, status_fd)
        return
    worker = Worker(Workspace.open(workspace))
    # SIGTERM (what process managers and `docker stop` send) stops it as Ctrl-C does: the
    # lease is given up at once instead of running out
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker.start()
    out.print(f"worker {worker.holder} running; Ctrl-C stops it")
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
    out.print(json.dumps(vars(worker.stats), default=str))


def sweep_cmd(workspace: WorkspaceOpt = None) -> None:
    """Re-evaluate now the segments whose rules depend on the clock (LAST 30d, -90d, …)."""
    from tierwise.segments import incremental

    for r in incremental.sweep(Workspace.open(workspace)):
        out.print(f"{r.key}: {r.members:,} members (+{r.entered:,} −{r.exited:,})"
                  if r.error is None else f"{r.key}: failed: {r.error}")


def register(app: typer.Typer) -> None:
    app.add_typer(triggers_app, name="triggers")
    app.add_typer(playbooks_app, name="playbooks")
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(tasks_app, name="tasks")
    app.command("lead-scoring")(lead_scoring_cmd)
    app.command("leads")(leads_cmd)
    app.command("worker")(worker_cmd)
    app.command("sweep")(sweep_cmd)
