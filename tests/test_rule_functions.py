"""Date parts and countdowns in rules — YEAR, MONTH, DAY, WEEKDAY, HOUR,
DAYS_UNTIL_ANNIVERSARY and DAYS_UNTIL_HOLIDAY — against the reference evaluator, in
several time zones, around 29 February and the turn of the year, on DuckDB and Spark."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

import tierwise
from segment_reference import Reference
from test_engines import SPARK_MISSING
from tierwise.definitions.segment_ast import from_json, to_json, to_text
from tierwise.definitions.segment_parser import SegmentSyntaxError, parse
from tierwise.engines import make_engine
from tierwise.errors import TierwiseError
from tierwise.models.labels import DEFAULT
from tierwise.segments.evaluate import evaluate_rule
from tierwise.segments.incremental import reads, time_edges

CUSTOMERS = """customer_id,birth_date,signup_at,city
leap2000,2000-02-29,2024-02-29 23:30:00+00:00,上海
leap1996,1996-02-29,2023-12-31 16:30:00+00:00,北京
feb28,1990-02-28,2024-03-01 00:30:00+00:00,上海
mar01,1985-03-01,2022-06-15 12:00:00+00:00,深圳
jan01,1979-01-01,2021-01-01 03:00:00+00:00,上海
dec31,1992-12-31,2020-12-31 15:59:59+00:00,广州
dec12,1988-12-12,2019-12-12 20:00:00+00:00,上海
nobirth,,2025-07-04 09:15:00+00:00,北京
"""
ORDERS = """order_id,customer_id,ordered_at,amount
o1,leap2000,2026-03-01 15:30:00+00:00,100
o2,leap2000,2026-03-02 14:10:00+00:00,200
o3,dec31,2026-02-27 23:59:00+00:00,50
o4,mar01,2026-02-28 16:00:00+00:00,80
o5,jan01,2026-01-04 02:00:00+00:00,60
o6,dec12,2026-02-22 12:00:00+00:00,70
"""

RULES = [
    "MONTH(birth_date) = 12",
    "MONTH(birth_date) = 2 AND DAY(birth_date) = 29",
    "YEAR(birth_date) < 1990",
    "WEEKDAY(signup_at) IN (6, 7)",
    "WEEKDAY(birth_date) = 1",
    "HOUR(signup_at) >= 20 OR HOUR(signup_at) < 6",
    "MONTH(signup_at) = 1",
    "DAY(signup_at) = 1",
    "DAYS_UNTIL_ANNIVERSARY(birth_date) <= 7",
    "DAYS_UNTIL_ANNIVERSARY(birth_date) = 0",
    "DAYS_UNTIL_ANNIVERSARY(birth_date) BETWEEN 1 AND 2",
    "DAYS_UNTIL_ANNIVERSARY(signup_at) <= 3",
    "DAYS_UNTIL_ANNIVERSARY(signup_at) > 300",
    "COUNT(orders WHERE HOUR(ordered_at) >= 22 OR HOUR(ordered_at) < 6) >= 1",
    "COUNT(orders WHERE WEEKDAY(ordered_at) >= 6) >= 1",
    "COUNT(orders WHERE MONTH(ordered_at) = 3 AND DAY(ordered_at) = 1) >= 1",
    "DAYS_UNTIL_HOLIDAY('spring_festival') <= 14 AND city = '上海'",
    "DAYS_UNTIL_HOLIDAY('national_day') > 200",
]
#: Instants around 29 February (common and leap years) and the turn of the year, each
#: given as a wall-clock time in the workspace's zone.
INSTANTS = ["2026-02-27 10:00", "2026-02-28 23:30", "2027-02-28 00:10", "2028-02-28 12:00",
            "2028-02-29 08:00", "2026-12-31 23:59", "2027-01-01 00:01", "2027-01-25 09:00"]
ZONES = ["Asia/Shanghai", "America/New_York", "Pacific/Kiritimati", "UTC"]


def _workspace(root: Path, zone: str) -> tierwise.Workspace:
    ws = tierwise.init(root / zone.replace("/", "_"), timezone=zone)
    for name, text in (("customers", CUSTOMERS), ("orders", ORDERS)):
        path = root / f"{name}.csv"
        path.write_text(text, encoding="utf-8")
        ws.import_file(name, path)
    return ws


@pytest.fixture(scope="module")
def spaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tierwise.Workspace]:
    root = tmp_path_factory.mktemp("functions")
    return {zone: _workspace(root, zone) for zone in ZONES}


def _at(ws: tierwise.Workspace, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ws.config.zone)


def _members(ws: tierwise.Workspace, rule: str, at: datetime) -> list[str]:
    return evaluate_rule(ws, rule, at)["customer_id"].to_pylist()  # type: ignore[no-any-return]


def test_text_and_json_forms():
    for rule in [*RULES, "DAYS_UNTIL_HOLIDAY('春节') <= 14"]:
        tree = parse(rule.lower())  # keywords and functions in any case
        assert from_json(to_json(tree)) == tree
        assert parse(to_text(tree)) == tree
    assert to_json(parse("month(birth_date) = 12"))["left"] == {
        "function": "MONTH", "of": {"field": "birth_date"}}


@pytest.mark.parametrize("zone", ZONES)
def test_functions_agree_with_the_reference(spaces: dict[str, tierwise.Workspace], zone: str):
    ws = spaces[zone]
    checked = 0
    for instant in INSTANTS:
        at = _at(ws, instant)
        reference = Reference(ws, at)
        for rule in RULES:
            expected = reference.members(DEFAULT.normalize(parse(rule)))
            assert _members(ws, rule, at) == expected, (zone, instant, rule)
            checked += len(expected)
    assert checked > 100  # the rules select somebody, not only nobody


def test_twenty_ninth_of_february(spaces: dict[str, tierwise.Workspace]):
    ws = spaces["Asia/Shanghai"]
    # in a common year the birthday of 29 February is kept on 28 February
    assert _members(ws, "DAYS_UNTIL_ANNIVERSARY(birth_date) = 0",
                    _at(ws, "2027-02-28 09:00")) == ["feb28", "leap1996", "leap2000"]
    assert _members(ws, "DAYS_UNTIL_ANNIVERSARY(birth_date) = 0",
                    _at(ws, "2028-02-28 09:00")) == ["feb28"]
    assert _members(ws, "DAYS_UNTIL_ANNIVERSARY(birth_date) = 0",
                    _at(ws, "2028-02-29 09:00")) == ["leap1996", "leap2000"]
    # after this year's day has passed, the countdown runs to next year's
    assert _members(ws, "DAYS_UNTIL_ANNIVERSARY(birth_date) = 364",
                    _at(ws, "2027-01-02 09:00")) == ["jan01"]


def test_time_parts_use_the_workspace_zone(spaces: dict[str, tierwise.Workspace]):
    # leap1996 signed up at 2023-12-31 16:30 UTC: still 31 December in New York, already
    # 1 January in Shanghai
    rule = "MONTH(signup_at) = 1 AND DAY(signup_at) = 1"
    at = "2026-06-30 12:00"
    assert "leap1996" in _members(spaces["Asia/Shanghai"], rule,
                                  _at(spaces["Asia/Shanghai"], at))
    assert "leap1996" not in _members(spaces["America/New_York"], rule,
                                   _at(spaces["America/New_York"], at))


def test_holidays_count_down_to_the_first_day(spaces: dict[str, tierwise.Workspace]):
    ws = spaces["Asia/Shanghai"]
    everyone = sorted(ws.table("customers")["customer_id"].to_pylist())
    # Spring Festival 2027 starts on 6 February
    assert _members(ws, "DAYS_UNTIL_HOLIDAY('春节') <= 14", _at(ws, "2027-01-23 10:00")) \
        == everyone
    assert _members(ws, "DAYS_UNTIL_HOLIDAY('Spring Festival') <= 14",
                    _at(ws, "2027-01-22 10:00")) == []
    assert _members(ws, "DAYS_UNTIL_HOLIDAY('国庆') = 0", _at(ws, "2026-10-03 10:00")) \
        == everyone
    assert _members(ws, "DAYS_UNTIL_HOLIDAY('Mid-Autumn Festival') = 1",
                    _at(ws, "2026-09-24 10:00")) == everyone


@pytest.mark.parametrize(("rule", "message"), [
    ("MONTH(city) = 1", "MONTH takes a date or time field"),
    ("HOUR(birth_date) = 1", "HOUR takes a time field"),
    ("DAYS_UNTIL_HOLIDAY('圣诞节') <= 3", "'new_year'"),
    ("COUNT(orders WHERE MONTH(amount) = 1) >= 1", "amount is a number"),
])
def test_misuse_is_the_rules_error(spaces: dict[str, tierwise.Workspace], rule: str,
                                   message: str):
    ws = spaces["UTC"]
    with pytest.raises(TierwiseError, match=message):
        _members(ws, rule, _at(ws, "2026-06-30 12:00"))


def test_misspelt_calls_point_at_the_spot():
    with pytest.raises(SegmentSyntaxError, match="a date or time field"):
        parse("MONTH('x') = 1")
    with pytest.raises(SegmentSyntaxError, match="holiday's name in quotes"):
        parse("DAYS_UNTIL_HOLIDAY(birth_date) < 3")


def test_countdowns_follow_the_clock():
    assert reads(parse("DAYS_UNTIL_ANNIVERSARY(birth_date) <= 7")).timed
    assert time_edges(parse("DAYS_UNTIL_HOLIDAY('春节') <= 7")) is None  # swept daily
    assert not reads(parse("MONTH(birth_date) = 12")).timed
    assert reads(parse("MONTH(birth_date) = 12")).tables == {"customers"}


@pytest.mark.skipif(SPARK_MISSING is not None, reason=str(SPARK_MISSING))
def test_functions_on_spark(spaces: dict[str, tierwise.Workspace]):
    ws = spaces["America/New_York"]
    at = _at(ws, "2028-02-28 23:30")
    rules = [r for r in RULES if "HOLIDAY" not in r]
    expected = {rule: _members(ws, rule, at) for rule in rules}
    ws.engine = make_engine("spark")
    try:
        got = {rule: _members(ws, rule, at) for rule in rules}
    finally:
        ws.engine = make_engine("duckdb")
    assert got == expected
    assert sum(map(len, got.values())) > 10
