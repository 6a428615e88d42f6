"""Terminal output for the CLI: progress, tables, the customer 360° view."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tierwise.config import WorkspaceConfig
from tierwise.profile import CustomerProfile
from tierwise.workspace import Workspace


class RowProgress:
    """A live count of rows processed (the total is rarely known before reading a file)."""

    def __init__(self, console: Console, label: str, quiet: bool = False) -> None:
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  TextColumn("{task.completed:,.0f} rows"),
                                  TimeElapsedColumn(), console=console, transient=True,
                                  disable=quiet or not console.is_terminal)
        self._task = self._progress.add_task(label, total=None)

    def __enter__(self) -> RowProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, rows: int) -> None:
        self._progress.advance(self._task, rows)


class StepProgress:
    """A bar over generation chunks, then a row count per imported table."""

    def __init__(self, console: Console, label: str) -> None:
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=console, transient=True,
                                  disable=not console.is_terminal)
        self._label = label
        self._task = self._progress.add_task(label, total=None)
        self._rows: dict[str, int] = {}

    def __enter__(self) -> StepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def step(self, _name: str, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)

    def rows(self, table: str, rows: int) -> None:
        self._rows[table] = self._rows.get(table, 0) + rows
        self._progress.update(self._task, description=f"Importing {table}: "
                              f"{self._rows[table]:,} rows")


class Spinner(RowProgress):
    def __init__(self, console: Console, label: str) -> None:
        super().__init__(console, label)


def _fmt(value: Any, zone: ZoneInfo) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(zone)
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def summary(console: Console, ws: Workspace) -> None:
    table = Table(title=f"Workspace {ws.root}", title_justify="left")
    for col in ("table", "rows", "files", "size", "last import"):
        table.add_column(col, justify="right" if col in ("rows", "files", "size") else "left")
    for name, info in ws.summary().items():
        size = f"{info['bytes'] / 1e6:,.1f} MB" if info["bytes"] else "—"
        files = str(info["files"]) if name != "customers" else "control store"
        table.add_row(name, f"{info['rows']:,}", files, size,
                      _fmt(info["last_import"], ws.config.zone))
    console.print(table)


def arrow_table(console: Console, result: pa.Table, limit: int, zone: ZoneInfo) -> None:
    table = Table()
    for name in result.column_names:
        table.add_column(name)
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*[_fmt(v, zone) for v in row.values()])
    console.print(table)
    if result.num_rows > limit:
        console.print(f"… {result.num_rows - limit:,} more rows")


def _kv(rows: list[tuple[str, Any]], zone: ZoneInfo) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, _fmt(value, zone))
    return grid


def _records(title: str, rows: list[dict[str, Any]], zone: ZoneInfo) -> Table | str:
    if not rows:
        return f"[bold]{title}[/]: none"
    table = Table(title=title, title_justify="left")
    for name in rows[0]:
        table.add_column(name)
    for row in rows:
        table.add_row(*[_fmt(v, zone) for v in row.values()])
    return table


def quality(console: Console, data: dict[str, Any], zone: ZoneInfo) -> None:
    total = data["customers"]
    console.print(f"{total:,} customers ({data['stub_customers']:,} stubs known only from "
                  f"facts), computed {_fmt(data['computed_at'], zone)}")
    grid = Table(title="Completeness", title_justify="left")
    grid.add_column("field")
    grid.add_column("filled", justify="right")
    for name, share in data["completeness"].items():
        grid.add_row(name, f"{share:.1%}")
    console.print(grid)
    invalid, shared = data["invalid"], data["shared_contacts"]
    console.print(f"invalid: {invalid['email']:,} e-mails, {invalid['phone']:,} phones "
                  "(not normalisable to E.164)")
    for column, info in shared.items():
        console.print(f"shared {column}: {info['groups']:,} values held by "
                      f"{info['customers']:,} customers (likely duplicates)")
    identity = data.get("identity") or {}
    if identity:
        console.print(f"duplicates: {identity['merges']:,} merges ({identity['merged_records']:,}"
                      f" records merged), {identity['pairs_waiting_for_review']:,} pairs "
                      f"waiting for review, {identity['pairs_rejected']:,} rejected")
    if data["cleaning"]:
        console.print("cleaning on import: " + ", ".join(
            f"{n:,} {rule}" for rule, n in sorted(data["cleaning"].items())))
    fresh = Table(title="Orphans and freshness", title_justify="left")
    for name in ("table", "orphan rows", "last import", "latest fact"):
        fresh.add_column(name)
    for table, info in data["freshness"].items():
        fresh.add_row(table, f"{data['orphans'].get(table, 0):,}",
                      _fmt(info["last_import"], zone), _fmt(info["latest_fact"], zone))
    console.print(fresh)


def profile(console: Console, p: CustomerProfile, config: WorkspaceConfig) -> None:
    zone = config.zone
    c = p.customer
    tags = ", ".join(json.loads(c["tags"])) if c.get("tags") else None
    attributes = c.get("attributes")
    title = f"{c.get('name') or '(no name)'} · {c['customer_id']}"
    if c.get("is_stub"):
        title += " · stub: known only from facts"
    who = _kv([("email", c.get("email")), ("phone", c.get("phone")),
               ("gender", c.get("gender")), ("birth date", c.get("birth_date")),
               ("city", " / ".join(x for x in (c.get("province"), c.get("city")) if x) or None),
               ("country", c.get("country")), ("industry", c.get("industry")),
               ("company size", c.get("company_size"))], zone)
    how = _kv([("channel", c.get("channel")), ("owner", c.get("owner")),
               ("signed up", c.get("signup_at")), ("acquisition cost", c.get("acquisition_cost")),
               ("tags", tags), ("attributes", attributes),
               ("referred by", p.referrals.get("referred_by")),
               ("referred others", p.referrals.get("referred_others"))], zone)
    console.print(Panel(Columns([who, how], padding=(0, 6)), title=title, title_align="left"))
    s = p.order_summary
    money = config.currency
    console.print(Panel(_kv([
        ("paid orders", s["orders"]), (f"revenue ({money})", s["revenue"]),
        ("average order", s["average_order"]), ("gross profit", s["gross_profit"]),
        ("first order", s["first_order_at"]), ("last order", s["last_order_at"]),
        ("days since last order", s["days_since_last_order"]),
        ("refunds / cancellations", f"{s['refunds']} / {s['cancellations']}"),
    ], zone), title=f"Orders as of {_fmt(p.as_of, zone)}", title_align="left"))
    console.print(_records("Recent orders", p.recent_orders, zone))
    console.print(_records("Events by type", p.event_counts, zone))
    console.print(_records("Recent events", p.recent_events, zone))
    console.print(_records("Tickets", p.tickets, zone))
    console.print(_records("Feedback", p.feedback, zone))
