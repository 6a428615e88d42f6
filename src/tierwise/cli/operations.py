"""CLI commands for running a workspace safely: backup, its verification, restore."""

from __future__ import annotations

import getpass
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tierwise.cli import audit as cli_audit
from tierwise.errors import TierwiseError
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]
PassphraseOpt = Annotated[Path | None, typer.Option(
    help="File whose first line is the passphrase of the keys in the backup (else "
    "$TIERWISE_BACKUP_PASSPHRASE, else asked on a terminal).")]


def _passphrase(path: Path | None, *, needed: bool, twice: bool = False) -> str | None:
    from tierwise.security.backup import ENV_PASSPHRASE

    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise TierwiseError(f"{path}: {exc.strerror}",
                                zh=f"{path}：{exc.strerror}") from None
        return lines[0] if lines else ""
    if os.environ.get(ENV_PASSPHRASE):
        return os.environ[ENV_PASSPHRASE]
    if not needed or not sys.stdin.isatty():
        return None
    first = getpass.getpass("passphrase for the keys: ")
    if twice and getpass.getpass("again: ") != first:
        raise TierwiseError("the passphrases differ",
                            zh="两次输入的口令不一致")
    return first


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def backup_cmd(dest: Annotated[str, typer.Argument(
                   help="A new folder for the backup; or `verify` followed by a backup "
                   "folder to check one.")],
               checked: Annotated[Path | None, typer.Argument(
                   help="(after `verify`) the backup to check.", show_default=False)] = None,
               base: Annotated[Path | None, typer.Option(
                   help="An earlier backup: fact and snapshot files it holds are hard-linked "
                   "from it instead of copied (an incremental backup, complete on its "
                   "own).")] = None,
               include_keys: Annotated[bool, typer.Option(
                   help="Put the PII, audit and webhook keys in the backup, encrypted with "
                   "a passphrase. Without it the backup records which keys it needs; keep "
                   "them apart.")] = False,
               passphrase_file: PassphraseOpt = None,
               workspace: WorkspaceOpt = None) -> None:
    """Back up the workspace while it runs: `tierwise backup DEST`; check a backup:
    `tierwise backup verify DEST`."""
    from tierwise.security import backup

    if dest == "verify" and checked is not None:
        result = backup.verify(checked, _passphrase(passphrase_file, needed=False))
        for problem in result["problems"]:
            out.print(f"[red]✗[/] {problem}", highlight=False)
        keys = result["keys"]
        where = "in the backup (sealed)" if keys.get("included") else "kept apart"
        out.print(f"{result['path']}: instant {result['instant']}, {result['files']} files, "
                  f"{_size(result['bytes'])}; needs PII key {', '.join(keys['pii'])} and "
                  f"audit key {keys['audit']} ({where})", highlight=False)
        if result["problems"]:
            out.print(f"[red]the backup is damaged:[/] {len(result['problems'])} problem(s)")
            raise typer.Exit(1)
        out.print("backup intact")
        return
    if checked is not None:
        raise TierwiseError(f"unexpected argument {checked}; `tierwise backup DEST` or "
                            "`tierwise backup verify DEST`",
                            zh=f"多余的参数 {checked}；用法：`tierwise backup DEST` 或 "
                            "`tierwise backup verify DEST`")
    ws = Workspace.open(workspace)
    phrase = _passphrase(passphrase_file, needed=include_keys, twice=True)
    manifest = backup.backup(ws, dest, base=str(base) if base else None,
                             include_keys=include_keys, passphrase=phrase)
    cli_audit.record(ws, "backup", None, {"dest": str(Path(dest).resolve()),
                                          "instant": manifest["instant"],
                                          "bytes": manifest["bytes"],
                                          "keys_included": include_keys})
    rows = manifest["rows"]
    out.print(f"backed up {ws.root} at {manifest['instant']} to {Path(dest).resolve()}: "
              f"{len(manifest['files'])} files, {_size(manifest['bytes'])}"
              + (f" ({_size(manifest['reused_bytes'])} linked from {base})" if base else "")
              + f"; {rows['customers']:,} customers, {rows.get('orders', 0):,} orders, "
              f"{rows.get('events', 0):,} events", highlight=False)
    keys = manifest["keys"]
    if not include_keys:
        out.print(f"the backup does not hold the keys: a restore needs PII key "
                  f"{', '.join(keys['pii'])} and audit key {keys['audit']}", highlight=False)


def restore_cmd(src: Annotated[Path, typer.Argument(help="The backup folder.")],
                dest: Annotated[Path, typer.Argument(help="A new folder for the workspace.")],
                control_store: Annotated[str | None, typer.Option(
                    help="For a backup of a PostgreSQL control store: the empty database "
                    "to restore it into (postgresql://user@host/db).")] = None,
                keys_from: Annotated[Path | None, typer.Option(
                    help="A folder holding the key files the backup needs (pii.json, "
                    "audit.json, webhook.key).")] = None,
                passphrase_file: PassphraseOpt = None) -> None:
    """Rebuild a workspace from a backup, as it was at the backup instant."""
    from tierwise.security import backup

    manifest = backup.read_manifest(src.expanduser().resolve())
    phrase = _passphrase(passphrase_file, needed=bool(manifest["keys"].get("included")))
    report = backup.restore(src, dest, control_store=control_store,
                            keys_from=str(keys_from) if keys_from else None,
                            passphrase=phrase)
    rows = report["rows"]
    out.print(f"restored {report['path']} as of {report['instant']}: "
              f"{rows['customers']:,} customers, {rows.get('orders', 0):,} orders, "
              f"{rows.get('events', 0):,} events, {report['segments']} segments, "
              f"{report['audit_entries']:,} audit entries (chain verified)", highlight=False)
    if report["held_deliveries"]:
        out.print(f"{report['held_deliveries']} deliveries were pending at the backup instant "
                  "and are held (the original may have sent them since): "
                  "`tierwise deliveries replay --status held` sends them with their "
                  "idempotency keys", highlight=False)




schedule_app = typer.Typer(help="Scheduled jobs (nightly compute, periodic review): next runs "
                           "and last outcomes; `run` for an external scheduler.")


@schedule_app.callback(invoke_without_command=True)
def schedule_list(ctx: typer.Context, workspace: WorkspaceOpt = None) -> None:
    """Each job's schedule, its next run and its last runs."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from tierwise.server.schedule import overview

    ws = Workspace.open(workspace)
    zone = ws.config.zone
    table = Table("job", "schedule", "next run", "last runs (due → outcome)")
    for job in overview(ws):
        runs = "\n".join(
            f"{datetime.fromisoformat(r['due']).astimezone(zone):%Y-%m-%d %H:%M} → "
            f"{r['status']}"
            + (f": {r['error'][:80]}" if r["error"] else "") for r in job["runs"][:3])
        upcoming = f"{job['next'].astimezone(zone):%Y-%m-%d %H:%M}" if job["next"] else "—"
        if job["missed"]:
            upcoming = f"now (missed), then {upcoming}"
        table.add_row(job["job"], job["schedule"], upcoming, runs or "none yet")
    out.print(table)


@schedule_app.command("run")
def schedule_run(job: Annotated[str, typer.Argument(help="compute or review.")],
                 workspace: WorkspaceOpt = None) -> None:
    """Run one job now: what an external scheduler (cron, a systemd timer, a Kubernetes
    CronJob) calls instead of `tierwise serve`'s schedule. Exit 1 when it fails."""
    from tierwise.server.schedule import Scheduler

    ws = Workspace.open(workspace)
    done = Scheduler(ws).run(job, actor=cli_audit.actor())
    if done is None:
        raise TierwiseError(f"{job} is running in another process; try again when it ends",
                            zh=f"{job} 正在另一个进程中运行；请等它结束后再试")
    if done["status"] != "done":
        out.print(f"[red]{job} failed:[/] {done['error']}", highlight=False)
        raise typer.Exit(1)
    out.print(f"{job} done: " + ", ".join(f"{k} {v}" for k, v in done["result"].items()),
              highlight=False)


def prune_cmd(workspace: WorkspaceOpt = None) -> None:
    """Delete what the keep_* settings of tierwise.toml no longer keep (finished deliveries,
    old snapshots, import reports, retired fact files); `tierwise serve` does it hourly."""
    from tierwise.security.housekeeping import prune

    ws = Workspace.open(workspace)
    done = prune(ws)
    cli_audit.record(ws, "prune", None, done)
    out.print("deleted " + ", ".join(f"{n:,} {what.replace('_', ' ')}"
                                     for what, n in done.items()))


def space_table(ws: Workspace) -> object:
    """What takes space in the workspace (for `tierwise status`)."""
    from rich.table import Table

    from tierwise.security.housekeeping import space

    table = Table("what", "rows / files", "size", "kept", title="Space")
    for item in space(ws):
        if item["what"] == "seconds":
            continue
        count = item.get("rows") if item.get("rows") is not None else item.get("files")
        table.add_row(item["what"], "" if count is None else f"{count:,}",
                      "" if item["bytes"] is None else _size(item["bytes"]), item["kept"])
    return table


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)
    app.add_typer(schedule_app, name="schedule")
