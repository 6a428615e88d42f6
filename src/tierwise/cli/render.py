"""Terminal output for the CLI: progress, tables, the customer 360° view."""

from __future__ import annotations

import csv
import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
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
from tierwise.definitions.vocabulary import ROLE_VALUES
from tierwise.services.customers import CustomerProfile
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


def shown(value: Any, zone: ZoneInfo) -> str:
    """A value as the CLI's tables show it (times in ``zone``, to the minute)."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            try:
                value = value.astimezone(zone)
            except OverflowError:  # 0001-01-01 west of UTC, 9999-12-31 east of it
                return _minutes(value) + " UTC"
        return _minutes(value)
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
                      shown(info["last_import"], ws.config.zone))
    console.print(table)


def arrow_table(console: Console, result: pa.Table, limit: int, zone: ZoneInfo) -> None:
    table = Table()
    for name in result.column_names:
        table.add_column(name)
    for row in python_rows(result.slice(0, limit)):
        table.add_row(*[shown(v, zone) for v in row.values()])
    console.print(table)
    if result.num_rows > limit:
        console.print("… more rows (--limit shows more)")


def _minutes(value: datetime) -> str:
    # strftime's %Y drops the leading zeros of years before 1000 on some C libraries
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:" \
        f"{value.minute:02d}"


def python_rows(result: pa.Table) -> list[dict[str, Any]]:
    """A result's rows as Python values; dates and instants beyond Python's years 1 to 9999
    (which SQL can produce) become ISO text instead of failing."""
    columns: dict[str, list[Any]] = {}
    for name, column in zip(result.column_names, result.columns, strict=True):
        try:
            columns[name] = column.to_pylist()
        except OverflowError:
            columns[name] = _iso_text(column)
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                     strict=True)]


def _iso_text(column: pa.ChunkedArray) -> list[str | None]:
    """ISO text of dates or timestamps from their integers (proleptic Gregorian calendar)."""
    unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    if pa.types.is_timestamp(column.type):
        per_second = unit[column.type.unit]
        raw = column.cast(pa.int64()).to_pylist()
        suffix = "Z" if column.type.tz else ""
        out: list[str | None] = []
        for v in raw:
            if v is None:
                out.append(None)
                continue
            days, rest = divmod(v, 86_400 * per_second)
            seconds = rest // per_second
            out.append(f"{_civil(days)}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:"
                       f"{seconds % 60:02d}{suffix}")
        return out
    days_of = column.cast(pa.int32()) if pa.types.is_date32(column.type) else \
        pc.divide(column.cast(pa.int64()), 86_400_000)
    return [None if d is None else _civil(d) for d in days_of.to_pylist()]


def _civil(days: int) -> str:
    """The date ``days`` after 1970-01-01 (any sign, any size) as YYYY-MM-DD."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    return f"{year:04d}-{month:02d}-{day:02d}" if year >= 0 else f"-{-year:04d}-{month:02d}-" \
        f"{day:02d}"


def csv_rows(stream: IO[str], result: pa.Table) -> None:
    """A result as CSV for other programs: a header, ISO dates, empty cells for NULL."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(result.column_names)
    for row in python_rows(result):
        writer.writerow(["" if v is None else _plain(v) for v in row.values()])


def json_rows(stream: IO[str], result: pa.Table) -> None:
    """A result as a JSON array of objects (ISO dates, decimals as numbers)."""
    json.dump([{k: _plain(v) for k, v in row.items()} for row in python_rows(result)],
              stream, ensure_ascii=False, default=str)
    stream.write("\n")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _kv(rows: list[tuple[str, Any]], zone: ZoneInfo) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, shown(value, zone))
    return grid


def _records(title: str, rows: list[dict[str, Any]], zone: ZoneInfo) -> Table | str:
    if not rows:
        return f"[bold]{title}[/]: none"
    table = Table(title=title, title_justify="left")
    for name in rows[0]:
        table.add_column(name)
    for row in rows:
        table.add_row(*[shown(v, zone) for v in row.values()])
    return table


def quality(console: Console, data: dict[str, Any], zone: ZoneInfo) -> None:
    total = data["customers"]
    console.print(f"{total:,} customers ({data['stub_customers']:,} stubs known only from "
                  f"facts), computed {shown(data['computed_at'], zone)}")
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
                      shown(info["last_import"], zone), shown(info["latest_fact"], zone))
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
               ("referred others", p.referrals.get("referred_others")),
               *([("account", f"{p.account['name'] or ''} · {p.account['customer_id']}"),
                  ("role", ROLE_VALUES.label(p.account["role"], "en")
                   if p.account["role"] else None)] if p.account else [])], zone)
    console.print(Panel(Columns([who, how], padding=(0, 6)), title=title, title_align="left"))
    s = p.order_summary
    money = config.currency
    console.print(Panel(_kv([
        ("paid orders", s["orders"]), (f"revenue ({money})", s["revenue"]),
        ("average order", s["average_order"]), ("gross profit", s["gross_profit"]),
        ("first order", s["first_order_at"]), ("last order", s["last_order_at"]),
        ("days since last order", s["days_since_last_order"]),
        ("refunds / cancellations", f"{s['refunds']} / {s['cancellations']}"),
    ], zone), title=f"Orders as of {shown(p.as_of, zone)}", title_align="left"))
    console.print(_records("Recent orders", p.recent_orders, zone))
    console.print(_records("Events by type", p.event_counts, zone))
    console.print(_records("Recent events", p.recent_events, zone))
    console.print(_records("Tickets", p.tickets, zone))
    console.print(_records("Feedback", p.feedback, zone))
    if p.people:
        r = p.rollup
        console.print(_records(
            f"People at this account · {r['people']} · with theirs: {r['orders']} paid "
            f"orders ({money} {r['revenue']:,.2f}), {r['events_30d']} events in 30 days",
            [{"customer_id": x["customer_id"], "name": x.get("name"),
              "role": ROLE_VALUES.label(x["role"], "en") if x.get("role") else None,
              "email": x.get("email"), "orders": x["orders"], "revenue": x["revenue"],
              "events 30d": x["events_30d"], "last event": x["last_event_at"]}
             for x in p.people], zone))
    if p.opportunities:
        pipe = p.pipeline
        console.print(_records(
            f"Opportunities · open {pipe['open']} ({money} {pipe['open_amount']:,.2f}, "
            f"weighted {pipe['weighted_amount']:,.2f}) · won {pipe['won']} "
            f"({money} {pipe['won_amount']:,.2f}) · lost {pipe['lost']}",
            [{k: o[k] for k in ("opportunity_id", "name", "stage", "amount", "stage_at",
                                 "owner")} for o in p.opportunities], zone))
