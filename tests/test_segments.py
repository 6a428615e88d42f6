"""The segment language: round trips, errors, golden SQL, injection, and conformance of
DuckDB, Spark and an independent Python evaluator on 120 rules plus random ones."""

from __future__ import annotations

import json
import os
import random
import re
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.segment_reference import Reference
from tests.test_engines import SPARK_MISSING

import tierwise
from tierwise.compile.segments import compile_batch, compile_rule, shift
from tierwise.definitions.segment_ast import (
    And,
    Compare,
    Field,
    InList,
    Literal,
    Not,
    Or,
    from_json,
    to_json,
    to_text,
)
from tierwise.definitions.segment_fields import RuleError
from tierwise.definitions.segment_parser import SegmentSyntaxError, parse
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.engines import make_engine
from tierwise.models.labels import DEFAULT as WORDS
from tierwise.segments.evaluate import evaluate_rule

SH = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2026, 6, 30, 18, 0, tzinfo=SH)
FIXTURES = Path(__file__).parent / "fixtures"

DESIGN_RULES = [
    "COUNT(orders, LAST 30d) >= 2 AND AVG(orders.amount, LAST 30d) > 5000",
    "SUM(orders.amount) >= 100000 AND NOT IN_SEGMENT('churned')",
    "COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing', LAST 7d) >= 3",
    "rfm.segment = 'champions' OR tier IN ('A', 'B')",
    "DAYS_SINCE_LAST(orders) > 90 AND lifecycle = 'active'",
    "city IN ('上海', '北京') AND signup_at BETWEEN '2025-01-01' AND '2025-06-30'",
    "email IS NOT NULL AND tags CONTAINS 'vip' AND last_order_at < -90d",
]


@pytest.mark.parametrize("text", DESIGN_RULES)
def test_text_json_round_trips(text: str):
    tree = parse(text)
    canonical = to_text(tree)
    assert canonical == text  # the examples are already canonical
    data = to_json(tree)
    assert to_text(from_json(data)) == canonical
    assert to_json(parse(to_text(from_json(json.loads(json.dumps(data)))))) == data


def test_keywords_are_case_insensitive_and_precedence_is_not_and_or():
    tree = parse("not a = 1 and b = 2 or c = 3")
    assert to_text(tree) == "NOT a = 1 AND b = 2 OR c = 3"
    assert isinstance(tree, Or) and isinstance(tree.operands[0], And)
    assert isinstance(tree.operands[0].operands[0], Not)
    assert to_text(parse("count(orders, last 4w) > 1")) == "COUNT(orders, LAST 4w) > 1"


@pytest.mark.parametrize(("text", "line", "column", "words"), [
    ("COUNT(orders, LAST 30d) >=", 1, 27, "expected a field, a number"),
    ("city = 'x' AND\n  (tier = 'A' OR\n   tier = )", 3, 11, "expected a field"),
    ("city IN ('a' 'b')", 1, 14, "',' or ')' in the IN list"),
    ("signup_at > 30d", 1, 13, "needs a minus sign"),
    ("city = 'unclosed", 1, 8, "not closed"),
    ("COUNT(orders LAST 30d) > 1", 1, 14, "to close COUNT("),
    ("tier", 1, 5, "a comparison"),
])
def test_syntax_errors_point_at_the_spot(text, line, column, words):
    with pytest.raises(SegmentSyntaxError) as info:
        parse(text)
    error = info.value
    assert (error.line, error.column) == (line, column)
    assert words in str(error)
    caret_line = str(error).splitlines()[-1]
    assert caret_line.index("^") == column + 1  # two spaces of indent


@pytest.mark.parametrize(("text", "words"), [
    ("citty = 'x'", "did you mean city"),
    ("rfm.segmnt = 'x'", "did you mean rfm.segment"),
    ("COUNT(order) > 1", "did you mean orders"),
    ("SUM(orders.amout) > 1", "did you mean amount"),
    ("SUM(orders) > 1", "needs a column"),
    ("COUNT(orders.amount) > 1", "counts rows"),
    ("SUM(orders.status) > 1", "numeric column"),
    ("COUNT(events WHERE typ = 'x') > 1", "did you mean type"),
])
def test_unknown_names_suggest_the_closest(text, words):
    with pytest.raises(RuleError, match=words):
        compile_rule(parse(text), "duckdb", AS_OF, SH, vocabulary=WORDS)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line SQL as readable YAML blocks (``|``)."""


_BlockDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def test_golden_sql():
    """tests/fixtures/segments_golden.yaml holds rule → SQL for each dialect.
    Regenerate with UPDATE_GOLDEN=1 after a deliberate change, and read the diff."""
    path = FIXTURES / "segments_golden.yaml"
    cases = yaml.safe_load(path.read_text(encoding="utf-8"))
    fresh = [{"rule": c["rule"], **{d: compile_rule(parse(c["rule"]), d, AS_OF, SH,
                                                     lambda k: parse("tier = 'D'"),
                                                     pretty=True, vocabulary=WORDS).sql + "\n"
                                    for d in ("duckdb", "spark")}} for c in cases]
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(yaml.dump(fresh, Dumper=_BlockDumper, allow_unicode=True,
                                  sort_keys=False, width=100), encoding="utf-8")
    assert fresh == cases


def test_calendar_windows():
    end = datetime(2026, 3, 31, 12, tzinfo=SH)
    assert shift(end, 1, "m", SH) == datetime(2026, 2, 28, 12, tzinfo=SH)
    assert shift(end, 1, "y", SH) == datetime(2025, 3, 31, 12, tzinfo=SH)
    assert shift(end, 2, "w", SH) == datetime(2026, 3, 17, 12, tzinfo=SH)


def test_a_compiled_batch_moves_to_another_instant():
    """The worker compiles a batch once and re-binds it for every micro-batch: the result
    must equal compiling at the new instant."""
    rules = {k: parse(t) for k, t in {
        "w": "COUNT(orders, LAST 1m) >= 1 AND SUM(orders.amount, LAST 2w) > 5",
        "r": "signup_at > -30d OR birth_date < -18y",
        "t": "signup_at < today AND COUNT(events WHERE occurred_at > -3d) = 0",
        "d": "DAYS_SINCE_LAST(orders) > 60 AND IN_SEGMENT('w')",
    }.items()}
    first = datetime(2026, 3, 31, 23, 30, tzinfo=SH)
    later = datetime(2026, 5, 1, 0, 15, tzinfo=SH)
    resolve = rules.get
    moved = compile_batch(rules, "duckdb", first, SH, resolve, vocabulary=WORDS).at(later)
    fresh = compile_batch(rules, "duckdb", later, SH, resolve, vocabulary=WORDS)
    assert moved.params == fresh.params and moved.aggregates_sql == fresh.aggregates_sql
    assert {k: (r.sql, r.params) for k, r in moved.rules.items()} == {
        k: (r.sql, r.params) for k, r in fresh.rules.items()}
    assert moved.params != compile_batch(rules, "duckdb", first, SH, resolve,
            vocabulary=WORDS).params


# -- evaluation ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    workspace = tierwise.init(tmp_path_factory.mktemp("seg") / "ws")
    load_generated(workspace, DemoSpec(customers=900, seed=13, end=date(2026, 6, 30)))
    workspace.compute(AS_OF)
    return workspace


@pytest.fixture(scope="module")
def reference(ws: tierwise.Workspace) -> Reference:
    return Reference(ws, AS_OF, {"churned": parse("lifecycle = 'churned'"),
                                 "big": parse("SUM(orders.amount) > 3000")})


def test_values_are_bound_never_pasted(ws: tierwise.Workspace):
    evil = "'); DROP TABLE orders; --"
    quoted = "'" + evil.replace("'", "''") + "'"
    rule = f"city = {quoted} OR name CONTAINS {quoted}"
    compiled = compile_rule(parse(rule), "duckdb", AS_OF, SH, vocabulary=WORDS)
    assert "DROP" not in compiled.sql and evil in compiled.params.values()
    before = ws.count("orders")
    assert evaluate_rule(ws, rule, AS_OF).num_rows == 0
    assert ws.count("orders") == before


def test_fields_compared_with_fields(ws: tierwise.Workspace):
    """A field against a field: a date against a time compares the local date, numbers
    against numbers as they are; kinds that cannot be compared are the rule's error."""
    customers = ws.table("customers").to_pylist()

    def ids(rule: str) -> set[str]:
        return set(evaluate_rule(ws, rule, AS_OF)["customer_id"].to_pylist())

    expected = {c["customer_id"] for c in customers if c["birth_date"] and c["signup_at"]
                and c["birth_date"] < c["signup_at"].astimezone(SH).date()}
    assert expected and ids("birth_date < signup_at") == expected
    spent = ids("acquisition_cost < SUM(orders.amount)")
    assert spent and spent < {c["customer_id"] for c in customers}
    with pytest.raises(RuleError, match="birth_date is a date and tags is a list"):
        compile_rule(parse("birth_date = tags"), "duckdb", AS_OF, SH, vocabulary=WORDS)


def _atoms(rng: random.Random) -> list[str]:
    day = rng.choice([7, 30, 90, 180, 365])
    return [
        f"city IN ('上海', '北京', '{rng.choice(['深圳', '杭州', '成都'])}')",
        f"tier = '{rng.choice('ABCD')}'",
        f"tier IN ('A', '{rng.choice('BCD')}')",
        f"lifecycle = '{rng.choice(['active', 'loyal', 'at_risk', 'dormant', 'churned'])}'",
        f"rfm.r >= {rng.randint(1, 5)}",
        f"rfm.score > {rng.randint(3, 14)}",
        "rfm.segment != 'champions'",
        f"value_score > {rng.choice([10, 30.5, 50, 80])}",
        f"clv > {rng.choice([0, 100, 500, 2000])}",
        f"p_alive < {rng.choice([0.2, 0.5, 0.8])}",
        f"churn_risk = '{rng.choice(['low', 'medium', 'high'])}'",
        f"gender = '{rng.choice(['male', 'female'])}'",
        "signup_at BETWEEN '2024-01-01' AND '2025-06-30'",
        f"signup_at > -{rng.choice([1, 2])}y",
        "birth_date < '1980-01-01'",
        f"last_order_at < -{day}d",
        f"first_order_at >= '{rng.choice(['2024-06-01', '2025-01-01'])}'",
        "email IS NULL", "phone IS NOT NULL", "owner IS NOT NULL",
        f"tags CONTAINS '{rng.choice(['vip', '高价值', '价格敏感', 'b2b'])}'",
        "tags NOT CONTAINS 'vip'",
        f"attributes.segment = '{rng.choice(['B2B', 'B2C'])}'",
        f"name CONTAINS '{rng.choice(['王', '李', '有限公司'])}'",
        f"COUNT(orders, LAST {day}d) >= {rng.randint(1, 3)}",
        f"COUNT(orders) >= {rng.randint(2, 6)}",
        f"SUM(orders.amount, LAST {rng.randint(1, 12)}m) > {rng.choice([100, 1000, 5000])}",
        f"AVG(orders.amount) > {rng.choice([200, 500, 2000])}",
        f"MIN(orders.amount, LAST 1y) < {rng.choice([50, 100])}",
        f"MAX(orders.amount) >= {rng.choice([1000, 5000])}",
        "MAX(orders.ordered_at) > '2026-01-01'",
        f"COUNT_DISTINCT(orders.category) >= {rng.randint(2, 4)}",
        f"DAYS_SINCE_LAST(orders) > {rng.choice([30, 90, 365])}",
        f"DAYS_SINCE_FIRST(orders) <= {rng.choice([90, 365, 700])}",
        "COUNT(orders WHERE status = 'refunded') >= 1",
        f"COUNT(orders WHERE category = '{rng.choice(['数码电子', '服饰鞋包'])}', LAST 6m) >= 1",
        f"COUNT(events WHERE type = 'page_view' AND properties.page = '/pricing', LAST {day}d)"
        f" >= {rng.randint(1, 2)}",
        "COUNT(events WHERE type = 'email_open', LAST 4w) = 0",
        "COUNT(events WHERE properties.campaign IN ('618', 'double11')) >= 1",
        "COUNT(tickets WHERE priority IN ('high', 'urgent')) >= 1",
        f"AVG(tickets.csat) <= {rng.randint(2, 4)}",
        f"AVG(feedback.nps) >= {rng.randint(7, 9)}",
        f"MIN(feedback.nps) < {rng.randint(3, 6)}",
        "IN_SEGMENT('churned')", "IN_SEGMENT('big')",
        "signup_at < today",
        f"COUNT(referrals) >= {rng.randint(1, 2)}",
        f"COUNT(referrals, LAST {rng.choice([6, 12, 24])}m) >= 1",
        f"DAYS_SINCE_LAST(referrals) < {rng.choice([180, 365])}",
        "COUNT_DISTINCT(referrals.referred_id) >= 1",
        "COUNT(opportunities WHERE stage = '赢单') >= 1",
        f"SUM(opportunities.amount WHERE stage IN ('赢单', '谈判'), LAST {rng.randint(6, 24)}m)"
        f" > {rng.choice([5000, 20000, 80000])}",
        "COUNT(opportunities WHERE stage NOT IN ('赢单', '输单')) >= 1",
        f"COUNT(opportunity_stages WHERE stage = '{rng.choice(['商机', '方案', '谈判'])}', "
        f"LAST {rng.choice([90, 180, 365])}d) >= 1",
        f"DAYS_SINCE_LAST(opportunity_stages) < {rng.choice([30, 90, 365])}",
        "COUNT(opportunities WHERE stage = '谈判' AND stage_at < -30d) >= 1",
        f"MAX(opportunities.probability) >= {rng.choice([25, 50, 100])}",
        "COUNT(opportunity_stages WHERE from_stage = '方案' AND stage = '输单') >= 1",
        "COUNT(contacts WHERE role = 'decision_maker') >= 1",
        f"COUNT(contacts) >= {rng.randint(2, 3)}",
        f"COUNT(contacts WHERE role IN ('purchasing', 'finance'), LAST {rng.choice([6, 12])}m)"
        " >= 1",
        "COUNT_DISTINCT(contacts.role) >= 2 AND COUNT(contacts WHERE role = 'user') = 0",
        f"COUNT(account_events WHERE type IN ('webinar', 'demo_request'), LAST {day}d) >= 1",
        f"COUNT(account_events, LAST {day}d) > COUNT(events, LAST {day}d)",
        f"SUM(account_orders.amount, LAST 1y) > {rng.choice([2000, 10000])}",
        f"DAYS_SINCE_LAST(account_events) < {rng.choice([30, 90])}",
        "role IN ('decision_maker', 'influencer')",
        "account_id IS NOT NULL AND COUNT(events WHERE type = 'webinar') >= 1",
    ]


def conformance_rules(count: int = 120, seed: int = 2026) -> list[str]:
    rng = random.Random(seed)
    rules: list[str] = []
    while len(rules) < count:
        atoms = _atoms(rng)
        pick = rng.sample(atoms, rng.choice([1, 2, 2, 3]))
        shape = rng.choice(["and", "or", "not", "mixed"])
        if shape == "and" or len(pick) == 1:
            text = " AND ".join(pick)
        elif shape == "or":
            text = " OR ".join(pick)
        elif shape == "not":
            text = f"NOT ({pick[0]}) AND " + " AND ".join(pick[1:])
        else:
            text = f"({' OR '.join(pick[:2])})" + (f" AND NOT {pick[2]}" if len(pick) > 2
                                                  else "")
        rules.append(text)
    return rules


RULES = conformance_rules()


@pytest.fixture(scope="module")
def expected(reference: Reference) -> dict[str, list[str]]:
    """The reference's members of each of ``RULES`` (its evaluation in Python takes ~20 s,
    once for the tests that compare with it)."""
    return {text: reference.members(parse(text)) for text in RULES}


def _resolver(reference: Reference):
    return lambda key: reference.segments[key]


def test_conformance_duckdb_vs_reference(ws: tierwise.Workspace, reference: Reference,
                                         expected: dict[str, list[str]]):
    assert len(RULES) >= 100
    nonempty = 0
    for text in RULES:
        tree = parse(text)
        got = evaluate_rule(ws, tree, AS_OF, _resolver(reference))["customer_id"].to_pylist()
        assert got == expected[text], text
        nonempty += bool(expected[text]) and len(expected[text]) < len(reference.customers)
    assert nonempty > 60  # most rules select some but not all customers


@pytest.mark.parametrize("kept", [False, True], ids=["files", "rows-in-memory"])
def test_conformance_for_chosen_customers(ws: tierwise.Workspace, reference: Reference,
                                          expected: dict[str, list[str]], kept: bool):
    """An evaluation for chosen customers (the real-time path) narrows each table a rule
    reads to them, registering the tables when a rule first reads them: every rule
    selects, among the chosen, exactly whom it selects among everyone."""
    from tierwise.segments.evaluate import Evaluation

    chosen = [c["customer_id"] for c in reference.customers][::7]
    picked = set(chosen)
    ws.facts.keep_rows = kept
    try:
        batch = compile_batch({text: parse(text) for text in RULES}, "duckdb", AS_OF, SH,
                              _resolver(reference), vocabulary=WORDS)
        with Evaluation(ws, AS_OF, only=chosen) as evaluation:
            evaluation.prepare(batch)
            found = evaluation.run_many(batch.rules)
        assert found is not None
        for text in RULES:
            among = [c for c in expected[text] if c in picked]
            assert sorted(found[text].to_pylist()) == among, text
    finally:
        ws.facts.keep_rows = False


@pytest.mark.skipif(SPARK_MISSING is not None, reason=str(SPARK_MISSING))
def test_conformance_spark_vs_duckdb(ws: tierwise.Workspace, reference: Reference):
    """Each rule compiled alone for Spark selects what it selects on DuckDB (in one Spark
    session, whose setup would otherwise cost a few seconds a rule)."""
    from tierwise.segments.evaluate import Evaluation

    duck = {t: evaluate_rule(ws, t, AS_OF, _resolver(reference))["customer_id"].to_pylist()
            for t in RULES}
    ws.engine = make_engine("spark")
    try:
        with Evaluation(ws, AS_OF) as evaluation:
            for text in RULES:
                compiled = compile_rule(parse(text), "spark", AS_OF, SH, _resolver(reference),
                        vocabulary=WORDS)
                got = evaluation.run(compiled)["customer_id"].to_pylist()
                assert got == duck[text], text
    finally:
        ws.engine = make_engine("duckdb")


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.skipif(
    SPARK_MISSING is not None, reason=str(SPARK_MISSING)))])
@pytest.mark.parametrize("windowed", [False, True], ids=["all", "windowed"])
def test_batch_evaluation_matches_single_rules(ws: tierwise.Workspace, reference: Reference,
                                               expected: dict[str, list[str]], engine: str,
                                               windowed: bool):
    """All 120 rules compiled together share one aggregate pass per source. Those with a
    window only: every aggregate of a source has conditions, so DuckDB's pass reads only
    the rows one of them counts (customers left without rows read 0 / nothing)."""
    from tierwise.compile.segments import compile_batch
    from tierwise.segments.evaluate import Evaluation

    texts = [t for t in RULES if not windowed or "LAST" in t and "IN_SEGMENT" not in t]
    rules = {f"r{i}": parse(t) for i, t in enumerate(texts)}
    ws.engine = make_engine(engine)
    try:
        batch = compile_batch(rules, engine, AS_OF, SH, _resolver(reference),
                              subqueries_in_columns=ws.engine.subqueries_in_columns,
                              vocabulary=WORDS)
        assert not batch.errors
        if windowed:  # each source's pass keeps only what some aggregate counts
            assert batch.aggregates_sql is not None
            kept = re.findall(r"FROM (\w+) AS r WHERE \S+ <= \$as_of\) AS r WHERE \(",
                              batch.aggregates_sql)
            if engine == "duckdb":
                assert {"events", "orders", "account_orders"} <= set(kept), kept
            else:  # Spark reads every row (``ROWS_FIRST``)
                assert kept == []
        with Evaluation(ws, AS_OF) as evaluation:
            evaluation.prepare(batch)
            got = {k: evaluation.run(c)["customer_id"].to_pylist()
                   for k, c in batch.rules.items()}
    finally:
        ws.engine = make_engine("duckdb")
    for i, text in enumerate(texts):
        assert got[f"r{i}"] == expected[text], text


def test_batch_pass_computes_each_row_condition_once():
    """Rules that count the same rows over different windows share one condition column
    in DuckDB's pass: the JSON property is extracted once per row, not once per aggregate
    and again in the row filter; a condition over another value, or one whose value only
    looks alike (a number against a string), gets its own."""
    from tierwise.compile.segments import compile_batch

    pricing = "type = 'page_view' AND properties.page = '/pricing'"
    texts = [f"COUNT(events WHERE {pricing}, LAST 7d) >= 1",
             f"COUNT(events WHERE {pricing}, LAST 30d) >= 2",
             f"COUNT(events WHERE {pricing}) >= 5",
             "COUNT(events WHERE type = 'page_view' AND properties.page = '/docs', "
             "LAST 30d) >= 1",
             "COUNT(events WHERE properties.plan = '3', LAST 30d) >= 1",
             "COUNT(events WHERE properties.plan = 3, LAST 30d) >= 1"]
    batch = compile_batch({f"r{i}": parse(t) for i, t in enumerate(texts)}, "duckdb", AS_OF,
                          SH, vocabulary=WORDS)
    sql = batch.aggregates_sql
    assert sql is not None and not batch.errors
    columns = re.findall(r"AS (_k\d+)", sql)
    assert columns == ["_k1", "_k2", "_k3", "_k4"], sql
    assert sql.count("JSON_EXTRACT_STRING") == 4, sql  # page twice, plan twice
    # every row of the pricing condition counts (one aggregate has no window)
    assert re.search(r"WHERE \(r\._k1\) OR", sql), sql


def test_in_segment_cycles_are_named(ws: tierwise.Workspace):
    rules = {"a": parse("IN_SEGMENT('b')"), "b": parse("tier = 'A' OR IN_SEGMENT('a')")}
    with pytest.raises(RuleError, match="cycle: a → b → a"):
        compile_rule(rules["a"], "duckdb", AS_OF, SH, rules.__getitem__, key="a", vocabulary=WORDS)
    with pytest.raises(RuleError, match="unknown field"):
        compile_rule(parse("IN_SEGMENT('x')"), "duckdb", AS_OF, SH,
                     lambda k: parse("nope = 1"), vocabulary=WORDS)


# -- random rules --------------------------------------------------------------------------
FIELD_VALUES = {
    "tier": ["A", "B", "C", "D"], "lifecycle": ["active", "churned", "loyal"],
    "city": ["上海", "北京", "广州"], "churn_risk": ["low", "high"],
}
NUMERIC = {"rfm.r": [1, 3, 5], "value_score": [20, 50.5, 90], "clv": [0, 300, 3000]}


def atoms() -> st.SearchStrategy:
    text_atom = st.sampled_from(sorted(FIELD_VALUES)).flatmap(
        lambda f: st.builds(lambda op, v: Compare(op, Field(tuple(f.split("."))), Literal(v)),
                            st.sampled_from(["=", "!="]), st.sampled_from(FIELD_VALUES[f])))
    in_atom = st.sampled_from(sorted(FIELD_VALUES)).flatmap(
        lambda f: st.builds(lambda vs, neg: InList(Field((f,)), tuple(Literal(v) for v in vs),
                                                   neg),
                            st.lists(st.sampled_from(FIELD_VALUES[f]), min_size=1, max_size=3,
                                     unique=True), st.booleans()))
    number_atom = st.sampled_from(sorted(NUMERIC)).flatmap(
        lambda f: st.builds(lambda op, v: Compare(op, Field(tuple(f.split("."))), Literal(v)),
                            st.sampled_from(["=", "!=", ">", ">=", "<", "<="]),
                            st.sampled_from(NUMERIC[f])))
    aggregate_atom = st.builds(lambda t, k: parse(t.format(k=k)), st.sampled_from([
        "COUNT(orders, LAST 90d) >= {k}", "COUNT(events WHERE type = 'login') > {k}",
        "SUM(orders.amount, LAST 1y) > {k}00", "DAYS_SINCE_LAST(orders) < {k}0",
        "COUNT(referrals) >= {k}",
    ]), st.integers(0, 5))
    return st.one_of(text_atom, in_atom, number_atom, aggregate_atom)


def rules_strategy() -> st.SearchStrategy:
    return st.recursive(atoms(), lambda children: st.one_of(
        st.builds(lambda a: Not(a), children),
        st.builds(lambda xs: And(tuple(xs)), st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda xs: Or(tuple(xs)), st.lists(children, min_size=2, max_size=3)),
    ), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(rule=rules_strategy())
def test_random_rules_match_the_reference(ws: tierwise.Workspace, reference: Reference, rule):
    text = to_text(rule)
    assert to_text(parse(text)) == text
    got = evaluate_rule(ws, rule, AS_OF)["customer_id"].to_pylist()
    assert got == reference.members(rule), text
