"""The ``tierwise`` command line."""

from __future__ import annotations

import gc
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from tierwise.cli import actions as cli_actions
from tierwise.cli import admin as cli_admin
from tierwise.cli import audit as cli_audit
from tierwise.cli import identity as cli_identity
from tierwise.cli import insights as cli_insights
from tierwise.cli import operations as cli_operations
from tierwise.cli import render
from tierwise.cli import segments as cli_segments
from tierwise.cli import value as cli_value
from tierwise.config import ENV_WORKSPACE, WorkspaceConfig
from tierwise.errors import ImportRejected, TierwiseError, say
from tierwise.ingest import imports
from tierwise.ingest.mapping import Mapping
from tierwise.workspace import Workspace

app = typer.Typer(help="tierwise: customer segmentation and tiering.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
customers_app = typer.Typer(help="Look up customers.", no_args_is_help=True)
mappings_app = typer.Typer(help="Saved column mappings.", no_args_is_help=True)
app.add_typer(customers_app, name="customers")
app.add_typer(mappings_app, name="mappings")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar=ENV_WORKSPACE,
    help="Workspace folder (default: $TIERWISE_WORKSPACE, else the current folder).")]


def _open(workspace: Path | None) -> Workspace:
    return Workspace.open(workspace)


@app.callback()
def _everyone(
    actor: Annotated[str | None, typer.Option(
        "--actor", envvar=cli_audit.ENV_ACTOR,
        help="Who is acting, recorded in the audit log next to the operating-system user; "
        "when it names a tierwise user, that user's role must allow the command.")] = None,
) -> None:
    cli_audit.set_named(actor)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone of naive timestamps.")]
    = "Asia/Shanghai",
    currency: Annotated[str, typer.Option(help="ISO 4217 currency of amounts.")] = "CNY",
    locale: Annotated[str, typer.Option(help="zh-CN or en.")] = "zh-CN",
    engine: Annotated[str, typer.Option(help="Compute engine: duckdb or spark.")] = "duckdb",
    control_store: Annotated[str, typer.Option(
        help="SQLAlchemy URL of the control store (default: SQLite in the workspace).")]
    = "sqlite:///control.db",
) -> None:
    """Create a workspace: tierwise.toml, the control store and the fact store."""
    config = WorkspaceConfig(name=directory.resolve().name, timezone=timezone,
                             currency=currency.upper(), locale=locale,  # type: ignore[arg-type]
                             engine=engine, control_store=control_store)  # type: ignore[arg-type]
    ws = Workspace.create(directory, config)
    out.print(f"Created workspace {ws.root} ({config.timezone}, {config.currency}, "
              f"{config.locale}, engine {config.engine}, control store "
              f"{ws.control.dialect}).")


@app.command("import")
def import_(
    table: Annotated[str, typer.Argument(
        help="customers, orders, events, tickets, feedback, referrals, opportunities or "
        "opportunity_stages.")],
    file: Annotated[Path | None, typer.Argument(
        help="CSV, XLSX, Parquet (file or folder) or JSON Lines file.")] = None,
    mapping: Annotated[str | None, typer.Option(
        help="Mapping YAML file, or the name of a saved mapping.")] = None,
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="file_column=canonical_column (repeatable).")] = None,
    save_mapping: Annotated[str | None, typer.Option(
        help="Save the mapping used under this name after a successful import.")] = None,
    format_: Annotated[str | None, typer.Option("--format", help="csv, xlsx, parquet, jsonl.")]
    = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding (default: detect).")]
    = None,
    delimiter: Annotated[str | None, typer.Option(help="CSV delimiter (default: detect).")]
    = None,
    sheet: Annotated[str | None, typer.Option(help="Excel sheet (default: the first).")]
    = None,
    date_order: Annotated[str | None, typer.Option(
        help="Order of day and month in dates like 12/03/2025: DMY or MDY.")] = None,
    timezone: Annotated[str | None, typer.Option(
        help="Time zone of timestamps without one (default: the workspace's).")] = None,
    unknown_customers: Annotated[str, typer.Option(
        help="Rows naming unknown customers: reject (default) or create stub customers.")]
    = "reject",
    from_sql: Annotated[str | None, typer.Option(
        help="Read from this SQLAlchemy URL instead of a file (with --query).")] = None,
    query: Annotated[str | None, typer.Option(help="SQL query for --from-sql.")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="Check everything and report what would change; change nothing.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Where to write rejected rows (default: ./<file>.rejected.csv).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    match: Annotated[bool, typer.Option(
        "--match", help="Customers: match the imported records against the others; merge "
        "sure pairs, queue likely ones for review.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import a file or a SQL query into a canonical table: all or nothing, idempotent."""
    ws = _open(workspace)
    base = imports.resolve_mapping(ws, mapping)
    updates = {k: v for k, v in (("encoding", encoding), ("delimiter", delimiter),
                                 ("sheet", sheet), ("timezone", timezone),
                                 ("date_order", date_order.upper() if date_order else None))
               if v is not None}
    effective = Mapping.model_validate({**base.model_dump(), **updates}).with_pairs(map_ or [])
    if (file is None) == (from_sql is None):
        raise TierwiseError("give either a FILE or --from-sql URL --query SQL",
                            zh="请给出一个文件，或 --from-sql URL --query SQL")
    with render.RowProgress(out, f"Importing {table}", quiet=as_json) as progress:
        if from_sql is not None:
            if not query:
                raise TierwiseError("--from-sql needs --query",
                                    zh="--from-sql 需要同时给出 --query")
            result = imports.import_sql(ws, table, from_sql, query, mapping=effective,
                                   unknown_customers=unknown_customers, dry_run=dry_run,
                                   report_path=report, progress=progress.advance)
        else:
            assert file is not None
            result = imports.import_file(ws, table, file, mapping=effective, format=format_,
                                    unknown_customers=unknown_customers, dry_run=dry_run,
                                    report_path=report, progress=progress.advance)
    if not dry_run:
        cli_audit.record(ws, "import", f"table:{table}", {
            "source": "a SQL query" if from_sql else str(file), "import_id": result.import_id,
            "rows": result.rows_read, "inserted": result.inserted, "updated": result.updated,
            "sensitive": result.sensitive})
    if save_mapping and not dry_run:
        imports.save_mapping(ws, save_mapping, table, effective)
        cli_audit.record(ws, "mapping_save", f"mapping:{save_mapping}", {"table": table})
    if match and table == "customers" and not dry_run and result.import_id is not None:
        cli_identity.match_import(ws, result.import_id)
    if as_json:
        out.print_json(json.dumps(result.as_dict(), default=str, ensure_ascii=False))
        return
    out.print(result.summary())
    if result.extras:
        out.print(f"  kept in {table}.{'attributes' if table == 'customers' else 'properties'}: "
                  f"{', '.join(result.extras)}")
    if result.ignored:
        out.print(f"  ignored columns: {', '.join(result.ignored)}")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="How many customers to generate.")] = 5_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same data.")] = 7,
    locale: Annotated[str | None, typer.Option(
        help="zh-CN (Chinese names, cities, phones) or en (default: the workspace's).")] = None,
    end: Annotated[str | None, typer.Option(
        help="Last day of history, YYYY-MM-DD (default: yesterday).")] = None,
    activity: Annotated[float, typer.Option(
        help="Scale purchase rates up and dropout down (4: about 7 orders per customer).")]
    = 1.0,
    dataset: Annotated[str | None, typer.Option(
        help="Load a real dataset instead: cdnow.")] = None,
    keep_files: Annotated[Path | None, typer.Option(
        help="Also keep the generated Parquet files in this folder.")] = None,
    showcase: Annotated[bool, typer.Option(
        help="Then compute a snapshot 90 days back and one now, and save and evaluate the "
        "built-in segment templates (what `make run` shows).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Fill a workspace (created if missing) with demo data."""
    from tierwise.demo.generator import DemoSpec
    from tierwise.demo.load import load_cdnow, load_generated
    from tierwise.demo.load import showcase as make_showcase

    root = (workspace or Path(os.environ.get(ENV_WORKSPACE) or ".")).resolve()
    if (root / "tierwise.toml").exists():
        ws = Workspace.open(root)
    elif dataset == "cdnow":  # a US record store: dollars, US Eastern dates
        ws = Workspace.create(root, WorkspaceConfig(name=root.name, timezone="America/New_York",
                                                    currency="USD", locale="en"))
    else:
        ws = Workspace.create(root, WorkspaceConfig(name=root.name, locale=(
            locale or "zh-CN")))  # type: ignore[arg-type]
    if dataset is not None:
        if dataset != "cdnow":
            raise TierwiseError(f"unknown dataset {dataset!r}; expected 'cdnow'",
                                zh=f"未知数据集 {dataset!r}：应为 'cdnow'")
        with render.RowProgress(out, "Importing CDNOW") as progress:
            results = load_cdnow(ws, progress=lambda _t, n: progress.advance(n))
    else:
        if customers < 1 or activity <= 0:
            raise TierwiseError("--customers must be at least 1 and --activity above 0",
                                zh="--customers 至少为 1，--activity 应大于 0")
        spec = DemoSpec(customers=customers, seed=seed, locale=locale or ws.config.locale,
                        end=date.fromisoformat(end) if end else None, activity=activity)
        with render.StepProgress(out, f"Generating {customers:,} customers") as steps:
            results = load_generated(ws, spec, keep_files, step=steps.step,
                                     progress=lambda t, n: steps.rows(t, n))
    for r in results:
        out.print(r.summary())
    if showcase:
        with render.StepProgress(out, "Computing values and segments") as steps:
            make_showcase(ws, step=steps.step)
    render.summary(out, ws)


@app.command()
def status(workspace: WorkspaceOpt = None) -> None:
    """Rows, files and the last import of every table, and what takes space."""
    ws = _open(workspace)
    render.summary(out, ws)
    out.print(cli_operations.space_table(ws))


@app.command()
def compact(
    table: Annotated[str | None, typer.Argument(help="One fact table (default: all).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Merge small Parquet files of the fact store and drop superseded rows."""
    ws = _open(workspace)
    with render.Spinner(out, "Compacting"):
        done = ws.compact(table)
    for name, (before, after) in done.items():
        out.print(f"{name}: {before} file(s) → {after}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One SELECT over orders, events, tickets, "
                                              "feedback, referrals, opportunities, "
                                              "opportunity_stages and customers.")],
    limit: Annotated[int | None, typer.Option(
        min=1, help="Rows to show (default: 50 in a table, all as CSV or JSON).")] = None,
    format_: Annotated[str, typer.Option(
        "--format", help="table, csv or json (an array of objects).")] = "table",
    pii: Annotated[bool, typer.Option(
        "--pii", help="Show customers' name, e-mail, phone, address and sensitive attributes "
        "unmasked (needs pii:read when --actor names a user; audited).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run one read-only SELECT and print the result.

    The query sees the workspace's tables and nothing else: no files, no writing, no
    settings. Personal data of customers is masked unless --pii is given.
    """
    if format_ not in ("table", "csv", "json"):
        raise TierwiseError(f"--format {format_!r}: expected table, csv or json",
                            zh=f"--format {format_!r}：应为 table、csv 或 json")
    ws = _open(workspace)
    if pii:
        cli_audit.require(ws, "pii:read", "read personal data with SQL")
    shown = limit or (50 if format_ == "table" else None)
    # one row beyond what is shown tells the table that there are more
    result = ws.sql(query, pii=pii, limit=None if shown is None else shown + 1)
    if pii:
        cli_audit.record(ws, "sql_pii", None, {"query": query[:2000], "rows": result.num_rows})
    if format_ == "csv":
        render.csv_rows(sys.stdout, result.slice(0, shown))
    elif format_ == "json":
        render.json_rows(sys.stdout, result.slice(0, shown))
    else:
        render.arrow_table(out, result, shown or 50, ws.config.zone)


@customers_app.command("show")
def customers_show(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """A 360° view: profile, orders, events, tickets, feedback, opportunities."""
    from tierwise.services.customers import customer_profile

    ws = _open(workspace)
    render.profile(out, customer_profile(ws, customer_id), ws.config)


@customers_app.command("consent")
def customers_consent(
    customer_id: Annotated[str, typer.Argument(help="The customer's id.")],
    channel: Annotated[str, typer.Option(help="email, sms, phone, webhook or wechat.")],
    purpose: Annotated[str, typer.Option(help="marketing or service.")] = "marketing",
    workspace: WorkspaceOpt = None,
) -> None:
    """Whether an action may reach the customer on a channel for a purpose, and why."""
    from tierwise.security.consent import may_contact

    found = may_contact(_open(workspace), customer_id, channel,
                        purpose)  # type: ignore[arg-type]
    out.print(f"{customer_id} {channel} {purpose}: "
              f"{'allowed' if found.allowed else 'not allowed'} ({found.reason})")


clean_app = typer.Typer(help="What import cleaning changed or flagged.", no_args_is_help=True)
app.add_typer(clean_app, name="clean")


@app.command()
def quality(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Data quality: completeness, invalid values, shared contacts, orphans, freshness."""
    from tierwise.ingest.quality import report

    ws = _open(workspace)
    data = report(ws)
    if as_json:
        out.print_json(json.dumps(data, default=str, ensure_ascii=False))
        return
    render.quality(out, data, ws.config.zone)


@clean_app.command("log")
def clean_log(
    import_id: Annotated[int | None, typer.Option("--import", help="One import only.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    workspace: WorkspaceOpt = None,
) -> None:
    """Values import cleaning changed or flagged (newest first)."""
    from tierwise.ingest.quality import cleaning_entries

    rows = cleaning_entries(_open(workspace), import_id, limit)
    for r in rows:
        undone = " (undone)" if r["undone_at"] else ""
        out.print(f"import {r['import_id']} · {r['customer_id']} · {r['column_name']}: "
                  f"{r['before']!r} → {r['after']!r} [{r['rule']}]{undone}", markup=False)
    if not rows:
        out.print("nothing was cleaned")


@clean_app.command("undo")
def clean_undo(import_id: int, workspace: WorkspaceOpt = None) -> None:
    """Put back the original values of one import's cleaning."""
    from tierwise.ingest.quality import undo_cleaning

    ws = _open(workspace)
    restored = undo_cleaning(ws, import_id)
    cli_audit.record(ws, "cleaning_undo", f"import:{import_id}", {"restored": restored})
    out.print(f"restored {restored:,} value(s) of import {import_id}")


@mappings_app.command("list")
def mappings_list(workspace: WorkspaceOpt = None) -> None:
    """Saved mappings."""
    for m in imports.saved_mappings(_open(workspace)):
        out.print(f"{m['name']}\t{m['table_name']}\t{m['saved_at']}")


@mappings_app.command("show")
def mappings_show(name: str, workspace: WorkspaceOpt = None) -> None:
    """Print a saved mapping as YAML (save it to a file to edit and reuse)."""
    out.print(imports.resolve_mapping(_open(workspace), name).to_yaml(), markup=False)


cli_value.register(app)
cli_admin.register(app)
app.add_typer(cli_segments.app, name="segments")
cli_identity.register(app)
cli_insights.register(app)
cli_actions.register(app)
cli_operations.register(app)
customers_app.command("segments")(cli_segments.customer_segments_cmd)


def _language(argv: list[str]) -> str:
    """The language of the command's messages: ``$TIERWISE_LANG``, else the locale of the
    workspace it names (``-w``, ``$TIERWISE_WORKSPACE`` or the folder it runs in), else
    English."""
    chosen = os.environ.get("TIERWISE_LANG")
    if chosen in ("zh-CN", "en"):
        return chosen
    if chosen:
        err.print(f"[yellow]warning:[/] TIERWISE_LANG={chosen!r} is neither zh-CN nor en; "
                  "using the workspace's locale", highlight=False)
    root = None
    for i, arg in enumerate(argv):
        if arg in ("-w", "--workspace") and i + 1 < len(argv):
            root = argv[i + 1]
        elif arg.startswith("--workspace="):
            root = arg.split("=", 1)[1]
    from tierwise.config import declared_locale, find_workspace

    return declared_locale(find_workspace(root)) or "en"


def main() -> None:
    from tierwise.errors import speaking

    # A command's process lives for one command: the modules and objects start-up built stay
    # to its end, so the cyclic collector need not walk them again, in the full collections
    # a long command runs nor in the one at exit (0.2 s of every command's 1.1 s).
    gc.freeze()
    with speaking(_language(sys.argv[1:])):
        _main()


def _main() -> None:
    try:
        app()
    except ImportRejected as exc:
        err.print(f"[red]{say('rejected:', '已拒绝：')}[/]", escape(str(exc)), highlight=False)
        sys.exit(2)
    except TierwiseError as exc:
        err.print(f"[red]{say('error:', '错误：')}[/]", escape(str(exc)), highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
