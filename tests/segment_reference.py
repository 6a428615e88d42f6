"""A small, independent evaluator of the segment language in plain Python.

It shares nothing with the compiler but the syntax tree: it reads the workspace's rows
into dicts and applies the documented semantics directly. Tests compare its member sets
with the engines'.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays

import tierwise
from tierwise.definitions.segment_ast import (
    Aggregate,
    And,
    Between,
    Call,
    Compare,
    Condition,
    Contains,
    Field,
    InList,
    InSegment,
    IsNull,
    Literal,
    Not,
    Operand,
    Or,
    RelativeDate,
)

TIME = {"orders": "ordered_at", "events": "occurred_at", "tickets": "opened_at",
        "feedback": "at", "referrals": "at", "opportunities": "created_at",
        "opportunity_stages": "at", "contacts": "added_at", "account_orders": "ordered_at",
        "account_events": "occurred_at"}
#: Whom a row counts for, where it is not ``customer_id``: a referral, for the referrer; a
#: contact, for its account.
WHO = {"referrals": "referrer_id", "contacts": "account_id"}
#: An account's rows and its contacts', all counted for the account.
ROLLED_UP = {"account_orders": "orders", "account_events": "events"}
SNAPSHOT = {"rfm.r": "rfm_r", "rfm.f": "rfm_f", "rfm.m": "rfm_m", "rfm.score": "rfm_score",
            "rfm.cell": "rfm_cell", "rfm.segment": "rfm_segment", "tier": "tier",
            "value_score": "value_score", "lifecycle": "lifecycle", "clv": "clv",
            "profit_clv": "profit_clv", "p_alive": "p_alive",
            "expected_purchases": "expected_purchases", "churn_risk": "churn_risk",
            "referrals": "referrals", "referral_revenue": "referral_revenue",
            "contribution_12m": "contribution_12m"}


#: A holiday code → its name in the holidays package's English China calendar.
HOLIDAY_NAMES = {"new_year": "New Year's Day", "new_years_eve": "Chinese New Year's Eve",
                 "spring_festival": "Chinese New Year (Spring Festival)",
                 "qingming": "Tomb-Sweeping Day", "labour_day": "Labor Day",
                 "dragon_boat": "Dragon Boat Festival", "mid_autumn": "Mid-Autumn Festival",
                 "national_day": "National Day"}


def months_back(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = moment.day
    while True:
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1


class Reference:
    def __init__(self, ws: tierwise.Workspace, as_of: datetime,
                 segments: dict[str, Condition] | None = None) -> None:
        self.zone: ZoneInfo = ws.config.zone
        self.as_of = as_of.astimezone(self.zone)
        self.customers = ws.table("customers").to_pylist()
        self.rows = {s: ws.table(s).to_pylist() for s in TIME
                     if s != "contacts" and s not in ROLLED_UP}
        account = {c["customer_id"]: c["account_id"] for c in self.customers
                   if c["account_id"] is not None}
        self.rows["contacts"] = [{**c, "added_at": c["signup_at"] or c["created_at"]}
                                 for c in self.customers if c["account_id"] is not None]
        for rolled, table in ROLLED_UP.items():
            self.rows[rolled] = [{**r, "customer_id": account.get(r["customer_id"],
                                                                  r["customer_id"])}
                                 for r in self.rows[table]]
        self.by_customer: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in TIME}
        for source, rows in self.rows.items():
            for row in rows:
                who = row[WHO.get(source, "customer_id")]
                self.by_customer[source].setdefault(who, []).append(row)
        try:
            facts = ws.customer_facts().to_dict("records")
            self.snapshot = {r["customer_id"]: r for r in facts}
        except tierwise.TierwiseError:
            self.snapshot = {}
        self.segments = segments or {}

    def members(self, rule: Condition) -> list[str]:
        return sorted(c["customer_id"] for c in self.customers if self.test(rule, c, None))

    # -- conditions ----------------------------------------------------------------------
    def test(self, node: Condition, customer: dict[str, Any], row: dict[str, Any] | None
             ) -> bool:
        if isinstance(node, And):
            return all(self.test(o, customer, row) for o in node.operands)
        if isinstance(node, Or):
            return any(self.test(o, customer, row) for o in node.operands)
        if isinstance(node, Not):
            return not self.test(node.operand, customer, row)
        if isinstance(node, InSegment):
            return customer["customer_id"] in set(self.members(self.segments[node.key]))
        if isinstance(node, IsNull):
            value = self.value(node.operand, customer, row)
            return (value is not None) if node.negated else (value is None)
        if isinstance(node, Compare):
            a, b = self.pair(node.left, node.right, customer, row)
            result = False if a is None or b is None else {
                "=": a == b, "!=": a == b, ">": a > b, ">=": a >= b, "<": a < b,
                "<=": a <= b}[node.op]
            return not result if node.op == "!=" else result
        if isinstance(node, InList):
            hits = False
            for item in node.values:
                a, b = self.pair(node.operand, item, customer, row)
                hits = hits or (a is not None and b is not None and a == b)
            return not hits if node.negated else hits
        if isinstance(node, Between):
            a, low = self.pair(node.operand, node.low, customer, row)
            a2, high = self.pair(node.operand, node.high, customer, row)
            inside = None not in (a, low, high) and low <= a and a2 <= high
            return not inside if node.negated else inside
        if isinstance(node, Contains):
            value = self.value(node.operand, customer, row)
            needle = self.value(node.value, customer, row)
            if value is None or needle is None:
                found = False
            elif isinstance(value, list):
                found = needle in value
            else:
                found = str(needle) in str(value)
            return not found if node.negated else found
        raise TypeError(node)

    def pair(self, left: Operand, right: Operand, customer: dict[str, Any],
             row: dict[str, Any] | None) -> tuple[Any, Any]:
        a = self.value(left, customer, row)
        b = self.value(right, customer, row)
        date_only = any(isinstance(x, Literal) and isinstance(x.value, str) and len(x.value) == 10
                        and x.value[4] == "-" for x in (left, right)) or any(
            isinstance(x, RelativeDate) and x.today for x in (left, right))
        a, b = self.align(a, b, date_only)
        return a, b

    def align(self, a: Any, b: Any, date_only: bool) -> tuple[Any, Any]:
        def as_time(v: Any) -> Any:
            if isinstance(v, str):
                if len(v) == 10:
                    return date.fromisoformat(v)
                parsed = datetime.fromisoformat(v)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=self.zone)
            return v

        if isinstance(a, datetime) or isinstance(b, datetime):
            a, b = as_time(a), as_time(b)
            if date_only:
                a = a.astimezone(self.zone).date() if isinstance(a, datetime) else a
                b = b.astimezone(self.zone).date() if isinstance(b, datetime) else b
        elif isinstance(a, date) or isinstance(b, date):
            a, b = as_time(a), as_time(b)
            a = a.astimezone(self.zone).date() if isinstance(a, datetime) else a
            b = b.astimezone(self.zone).date() if isinstance(b, datetime) else b
        elif isinstance(a, str) and isinstance(b, int | float):
            try:
                a = float(a)
            except ValueError:
                a = None
        elif isinstance(b, str) and isinstance(a, int | float):
            b = str(b) if not isinstance(a, int | float) else b
        return a, b

    # -- operands ------------------------------------------------------------------------
    def value(self, node: Operand, customer: dict[str, Any], row: dict[str, Any] | None
              ) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, RelativeDate):
            if node.today:
                return self.as_of.date()
            return self.back(node.amount, node.unit)
        if isinstance(node, Aggregate):
            return self.aggregate(node, customer)
        if isinstance(node, Call):
            return self.call(node, customer, row)
        assert isinstance(node, Field)
        if row is not None:
            name = node.path[-1] if node.path[0] in TIME and len(node.path) > 1 else node.path[0]
            if name == "properties" or node.path[0] == "properties":
                props = json.loads(row["properties"]) if row.get("properties") else {}
                value = props.get(node.path[-1])
                return None if value is None else str(value)
            return row.get(name)
        name = node.name
        if name in SNAPSHOT:
            value = self.snapshot.get(customer["customer_id"], {}).get(SNAPSHOT[name])
            if isinstance(value, float) and math.isnan(value):
                return None
            return value
        if name in ("nps", "nps_class"):
            score = self.aggregate(Aggregate("LATEST", "feedback", "nps",
                                             IsNull(Field(("nps",)), negated=True), None),
                                   customer)
            if name == "nps" or score is None:
                return score
            return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
        if name == "csat":
            return self.aggregate(Aggregate("AVG", "feedback", "csat", None, None), customer)
        if name in ("last_order_at", "first_order_at"):
            return self.aggregate(Aggregate("MAX" if name == "last_order_at" else "MIN",
                                            "orders", "ordered_at", None, None), customer)
        if node.path[0] == "attributes":
            attrs = json.loads(customer["attributes"]) if customer.get("attributes") else {}
            value = attrs.get(node.path[1])
            return None if value is None else str(value)
        if name == "tags":
            return json.loads(customer["tags"]) if customer.get("tags") else None
        return customer.get(name)

    def call(self, node: Call, customer: dict[str, Any], row: dict[str, Any] | None) -> Any:
        today = self.as_of.date()
        if node.function == "DAYS_UNTIL_HOLIDAY":
            wanted = HOLIDAY_NAMES[str(node.argument.value)]  # type: ignore[union-attr]
            days = sorted(d for d, name in holidays.China(years=[today.year, today.year + 1],
                                                          language="en_US").items()
                          if wanted in str(name).split("; ") and d >= today)
            return (days[0] - today).days
        value = self.value(node.argument, customer, row)
        if value is None:
            return None
        if isinstance(value, datetime):
            value = value.astimezone(self.zone)
        if node.function == "YEAR":
            return value.year
        if node.function == "MONTH":
            return value.month
        if node.function == "DAY":
            return value.day
        if node.function == "WEEKDAY":
            return value.isoweekday()
        if node.function == "HOUR":
            return value.hour
        assert node.function == "DAYS_UNTIL_ANNIVERSARY"
        day = value.date() if isinstance(value, datetime) else value
        for year in (today.year, today.year + 1):
            try:
                mark = day.replace(year=year)
            except ValueError:  # 29 February in a common year
                mark = date(year, 2, 28)
            if mark >= today:
                return (mark - today).days
        raise AssertionError("unreachable")

    def back(self, amount: int, unit: str) -> datetime:
        if unit == "d":
            return self.as_of - timedelta(days=amount)
        if unit == "w":
            return self.as_of - timedelta(weeks=amount)
        return months_back(self.as_of, amount * (12 if unit == "y" else 1))

    def aggregate(self, node: Aggregate, customer: dict[str, Any]) -> Any:
        rows = []
        start = self.back(node.window.amount, node.window.unit) if node.window else None
        for row in self.by_customer[node.source].get(customer["customer_id"], []):
            moment = row[TIME[node.source]]
            if moment > self.as_of or (start is not None and moment <= start):
                continue
            if node.source in ("orders", "account_orders") \
                    and not _mentions_status(node.where) \
                    and row["status"] != "paid":
                continue
            if node.where is not None and not self.test(node.where, customer, row):
                continue
            rows.append(row)
        values = [r[node.column] for r in rows] if node.column else []
        present = [v for v in values if v is not None]
        fn = node.function
        if fn == "COUNT":
            return len(rows)
        if fn == "COUNT_DISTINCT":
            return len(set(present))
        if fn == "SUM":
            return sum(present) if present else 0
        if fn == "AVG":
            return sum(present) / len(present) if present else None
        if fn == "MIN":
            return min(present) if present else None
        if fn == "MAX":
            return max(present) if present else None
        if fn == "LATEST":  # the value of the latest row (rules here skip rows without one)
            latest = max(rows, key=lambda r: r[TIME[node.source]], default=None)
            return None if latest is None else latest[node.column]
        times = [r[TIME[node.source]] for r in rows]
        if not times:
            return None
        edge = max(times) if fn == "DAYS_SINCE_LAST" else min(times)
        return math.floor((self.as_of - edge).total_seconds() / 86400)


def _mentions_status(node: Condition | None) -> bool:
    if node is None:
        return False
    from tierwise.definitions.segment_ast import to_text

    return "status" in to_text(node)
