"""China's public holidays for ``DAYS_UNTIL_HOLIDAY('春节')``: which holidays a rule may
name, and how many days remain until the next one.

The dates come from the ``holidays`` package (its China calendar follows the State
Council's yearly notices and computes the lunar holidays for any year). A holiday counts
from its first statutory day: days in lieu (补假) and swapped working days (调休) are not
the holiday itself. During the holiday the countdown is 0.

>>> from datetime import date
>>> days_until("spring_festival", date(2026, 2, 10))
7
>>> days_until("national_day", date(2026, 10, 2))
0
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays

from tierwise.errors import Said

#: code -> (name in the zh_CN calendar, zh-CN label, en label)
_HOLIDAYS = {
    "new_year": ("元旦", "元旦", "New Year's Day"),
    "new_years_eve": ("农历除夕", "除夕", "Chinese New Year's Eve"),
    "spring_festival": ("春节", "春节", "Spring Festival"),
    "qingming": ("清明节", "清明节", "Qingming Festival"),
    "labour_day": ("劳动节", "劳动节", "Labour Day"),
    "dragon_boat": ("端午节", "端午节", "Dragon Boat Festival"),
    "mid_autumn": ("中秋节", "中秋节", "Mid-Autumn Festival"),
    "national_day": ("国庆节", "国庆节", "National Day"),
}
LABELS = {code: {"zh-CN": zh, "en": en} for code, (_, zh, en) in _HOLIDAYS.items()}
#: Further names a rule may use.
SPELLINGS = {
    "农历除夕": "new_years_eve", "除夕夜": "new_years_eve", "大年三十": "new_years_eve",
    "chinese new year": "spring_festival", "lunar new year": "spring_festival",
    "chinese new year (spring festival)": "spring_festival", "春节假期": "spring_festival",
    "过年": "spring_festival", "新年": "new_year", "阳历新年": "new_year",
    "清明": "qingming", "tomb-sweeping day": "qingming", "五一": "labour_day",
    "五一劳动节": "labour_day", "labor day": "labour_day", "may day": "labour_day",
    "端午": "dragon_boat", "中秋": "mid_autumn", "mid autumn festival": "mid_autumn",
    "moon festival": "mid_autumn", "国庆": "national_day", "十一": "national_day",
    "golden week": "national_day",
}


@lru_cache(maxsize=64)
def _days(year: int) -> dict[str, tuple[date, ...]]:
    calendar = holidays.China(years=year, language="zh_CN")
    by_name = {name: code for code, (name, _, _) in _HOLIDAYS.items()}
    found: dict[str, list[date]] = {code: [] for code in _HOLIDAYS}
    for day, name in calendar.items():
        for part in str(name).split("; "):
            if part in by_name:
                found[by_name[part]].append(day)
    return {code: tuple(sorted(days)) for code, days in found.items()}


def days_until(code: str, today: date) -> int:
    """Days from ``today`` to the next day of holiday ``code`` (0 on any of its days)."""
    for year in (today.year, today.year + 1):
        upcoming = [d for d in _days(year)[code] if d >= today]
        if upcoming:
            return (upcoming[0] - today).days
    raise LookupError(Said(
        f"the holiday calendar has no {LABELS[code]['en']} ({LABELS[code]['zh-CN']}) from "
        f"{today} within a year (China's calendar in the holidays package starts with each "
        "holiday's first statutory year)",
        f"节假日日历中从 {today} 起一年内没有{LABELS[code]['zh-CN']}（holidays 包的中国日历从"
        "每个节日成为法定假日的那一年开始）"))
