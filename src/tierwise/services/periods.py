"""Periods as the review, the funnel and customer economics read them: ``2026Q3``, ``2026-07``
(a month), ``2026H2``, ``2026`` or any stretch of days ``2026-07-01..2026-08-15`` (both days
included), in the workspace's time zone, from their first instant (inclusive) to the next
period's first instant (exclusive). The period before a stretch of days is as many days
just before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tierwise.errors import TierwiseError

_PERIOD = re.compile(r"^(\d{4})(?:(Q[1-4])|(H[12])|-(\d{2}))?$", re.IGNORECASE)
_DAYS = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
#: The longest stretch of days a period may be written as.
MAX_DAYS = 3660


@dataclass(frozen=True)
class Period:
    name: str
    start: datetime
    end: datetime  # exclusive
    #: A stretch of days (``2026-07-01..2026-08-15``): the period before is as many days.
    days: int | None = None

    def previous(self) -> Period:
        if self.days is not None:
            start = (self.start - timedelta(days=self.days)).replace(tzinfo=self.start.tzinfo)
            return _stretch(start.date(), self.days, self.start.tzinfo)
        months = _months_between(self.start, self.end)
        start = _add_months(self.start, -months)
        return Period(_name(start, months), start, self.start)


def _stretch(first: Any, days: int, tz: Any) -> Period:
    """The ``days`` days from ``first`` (a date) in zone ``tz``."""
    from datetime import date

    assert isinstance(first, date)
    last = first + timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    after = last + timedelta(days=1)
    return Period(f"{first.isoformat()}..{last.isoformat()}", start,
                  datetime(after.year, after.month, after.day, tzinfo=tz), days)


def _add_months(when: datetime, months: int) -> datetime:
    index = when.year * 12 + when.month - 1 + months
    return when.replace(year=index // 12, month=index % 12 + 1)


def _months_between(a: datetime, b: datetime) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def _name(start: datetime, months: int) -> str:
    if months == 12:
        return f"{start.year}"
    if months == 6:
        return f"{start.year}H{1 if start.month == 1 else 2}"
    if months == 3:
        return f"{start.year}Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}-{start.month:02d}"


#: The years a period (and the one before it) may fall in.
YEARS = (1900, 2999)


def parse_period(text: str, zone: str = "UTC") -> Period:
    """``2026Q3`` → 1 July 2026 00:00 to 1 October 2026 00:00 in ``zone``;
    ``2026-07-01..2026-07-10`` → 1 July 00:00 to 11 July 00:00. Periods (and the ones
    before them) fall within the years ``YEARS``."""
    found = _parse_period(text, zone)
    first, last = YEARS
    if found.start.year - 1 < first or found.end.year > last:
        raise TierwiseError(f"period {text[:40]!r}: expected a period between {first + 1} "
                            f"and {last - 1}",
                            zh=f"期间 {text[:40]!r}：应在 {first + 1} 年到 {last - 1} 年之间")
    return found


def _parse_period(text: str, zone: str) -> Period:
    days = _DAYS.match(text.strip())
    if days:
        return _parse_days(text, days.group(1), days.group(2), ZoneInfo(zone))
    found = _PERIOD.match(text.strip())
    if not found:
        raise TierwiseError(f"period {text!r}: expected a year (2026), a half (2026H2), a "
                            "quarter (2026Q3), a month (2026-07) or days "
                            "(2026-07-01..2026-08-15)",
                            zh=f"期间 {text!r}：应为年份（2026）、半年（2026H2）、季度（2026Q3）、"
                            "月份（2026-07）或日期范围（2026-07-01..2026-08-15）")
    year = int(found.group(1))
    if not YEARS[0] < year < YEARS[1]:
        raise TierwiseError(f"period {text[:40]!r}: expected a year between {YEARS[0] + 1} and "
                            f"{YEARS[1] - 1}",
                            zh=f"期间 {text[:40]!r}：年份应在 {YEARS[0] + 1} 到 "
                               f"{YEARS[1] - 1} 之间")
    quarter, half, month = found.group(2), found.group(3), found.group(4)
    tz = ZoneInfo(zone)
    if quarter:
        first, months = (int(quarter[1]) - 1) * 3 + 1, 3
    elif half:
        first, months = (1 if half[1] == "1" else 7), 6
    elif month:
        first, months = int(month), 1
        if not 1 <= first <= 12:
            raise TierwiseError(f"period {text!r}: month {first} does not exist",
                                zh=f"期间 {text!r}：月份 {first} 不存在")
    else:
        first, months = 1, 12
    start = datetime(year, first, 1, tzinfo=tz)
    return Period(_name(start, months), start, _add_months(start, months))


def _parse_days(text: str, first: str, last: str, tz: ZoneInfo) -> Period:
    from datetime import date

    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as exc:
        raise TierwiseError(f"period {text!r}: {exc}", zh=f"期间 {text!r}：{exc}") from None
    days = (end - start).days + 1
    if not (YEARS[0] < start.year and end.year < YEARS[1]):
        raise TierwiseError(f"period {text[:40]!r}: expected days between {YEARS[0] + 1} and "
                            f"{YEARS[1] - 1}",
                            zh=f"期间 {text[:40]!r}：日期应在 {YEARS[0] + 1} 年到 "
                               f"{YEARS[1] - 1} 年之间")
    if not 1 <= days <= MAX_DAYS:
        raise TierwiseError(f"period {text!r}: the last day must be on or after the first, "
                            f"at most {MAX_DAYS} days later",
                            zh=f"期间 {text!r}：结束日期不能早于开始日期，且最多相隔 {MAX_DAYS} 天")
    return _stretch(start, days, tz)


def begun(text: str, zone: str, as_of: datetime) -> Period:
    """``parse_period``, refusing a period that starts at or after ``as_of`` (nothing in it
    has happened yet)."""
    period = parse_period(text, zone)
    if period.start >= as_of:
        raise TierwiseError(f"period {period.name} has not started yet",
                            zh=f"期间 {period.name} 还没有开始")
    return period


__all__ = ["MAX_DAYS", "YEARS", "Period", "begun", "parse_period"]
