"""Segment definitions, plan/apply, batch evaluation, history, static lists, explain, CLI."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from tests.conftest import sizes_agree
from tests.test_cli import tw

import tierwise
from tierwise.definitions.segment_fields import RuleError
from tierwise.definitions.segment_parser import parse
from tierwise.demo.generator import DemoSpec, generate_chunk
from tierwise.demo.load import load_generated
from tierwise.segments import catalog as defs
from tierwise.segments import membership, plan
from tierwise.segments.evaluate import evaluate_rule
from tierwise.segments.explain import explain
from tierwise.store.tables import segment_history, segment_runs

SH = ZoneInfo("Asia/Shanghai")
MAY = datetime(2026, 5, 31, 23, 0, tzinfo=SH)
JUNE = datetime(2026, 6, 30, 23, 0, tzinfo=SH)


@pytest.fixture
def ws(tmp_path: Path) -> tierwise.Workspace:
    workspace = tierwise.init(tmp_path / "ws")
    load_generated(workspace, DemoSpec(customers=600, seed=4, end=date(2026, 6, 30)))
    return workspace


def _define(ws: tierwise.Workspace, key: str, rule: str | None, **extra: object) -> None:
    defs.write_file(ws, defs.SegmentDefinition(key=key, rule=rule, **extra))


def test_plan_apply_evaluate_and_history(ws: tierwise.Workspace):
    _define(ws, "recent", "COUNT(orders, LAST 60d) >= 1",
            names={"zh-CN": "近期购买", "en": "Recent"})
    _define(ws, "recent_big", "IN_SEGMENT('recent') AND SUM(orders.amount, LAST 60d) > 500")
    items = {i.key: i for i in plan.plan(ws, MAY)}
    assert items["recent"].change == "new" and items["recent"].members_after > 0
    assert len(items["recent"].entering) == items["recent"].members_after
    assert plan.apply(ws, list(items.values())) == {"recent": 1, "recent_big": 1}
    assert membership.members_at(ws, "recent") == []  # nothing evaluated yet

    first = {r.key: r for r in membership.evaluate_all(ws, MAY)}
    assert [r.reason for r in first.values()] == ["data_change", "data_change"]
    may_members = membership.members_at(ws, "recent")
    assert len(may_members) == first["recent"].members
    expected = evaluate_rule(ws, "COUNT(orders, LAST 60d) >= 1", MAY)["customer_id"].to_pylist()
    assert may_members == expected
    big = set(membership.members_at(ws, "recent_big"))
    assert big <= set(may_members)

    second = {r.key: r for r in membership.evaluate_all(ws, JUNE)}
    june_members = membership.members_at(ws, "recent")
    assert second["recent"].entered == len(set(june_members) - set(may_members))
    assert second["recent"].exited == len(set(may_members) - set(june_members))
    # The history answers "who was a member at an instant".
    assert membership.members_at(ws, "recent", MAY) == may_members
    assert membership.members_at(ws, "recent", JUNE) == june_members
    assert membership.members_at(ws, "recent", datetime(2026, 1, 1, tzinfo=SH)) == []

    # A rule change is recorded as such.
    _define(ws, "recent", "COUNT(orders, LAST 30d) >= 1")
    changed = {i.key: i for i in plan.plan(ws, JUNE)}["recent"]
    assert changed.change == "changed" and changed.old_rule != changed.new_rule
    assert changed.leaving and not changed.entering  # a shorter window only loses members
    plan.apply(ws, [changed])
    third = {r.key: r for r in membership.evaluate_all(ws, JUNE)}
    assert third["recent"].reason == "rule_change" and third["recent"].version == 2
    with ws.control.read() as conn:
        h = segment_history.c
        reasons = {r[0] for r in conn.execute(sa.select(h.exit_reason).where(
            h.segment_key == "recent", h.exited_at.is_not(None)))}
        runs = conn.execute(sa.select(sa.func.count()).select_from(segment_runs)).scalar()
    assert "rule_change" in reasons and runs == 6


def test_backfill_and_errors_are_recorded(ws: tierwise.Workspace):
    _define(ws, "recent", "COUNT(orders, LAST 60d) >= 1")
    _define(ws, "needs_compute", "tier = 'A'")
    plan.apply(ws, plan.plan(ws, JUNE))
    results = {r.key: r for r in membership.evaluate_all(ws, JUNE)}
    assert "tierwise compute" in (results["needs_compute"].error or "")
    assert results["recent"].error is None  # one failure does not stop the others
    back = {r.key: r for r in membership.evaluate_all(ws, MAY, ["recent"])}
    assert back["recent"].reason == "backfill"


def test_cycles_and_unknown_references(ws: tierwise.Workspace):
    _define(ws, "a", "IN_SEGMENT('b')")
    _define(ws, "b", "COUNT(orders) > 1 AND IN_SEGMENT('a')")
    with pytest.raises(RuleError, match="cycle: a → b → a"):
        plan.plan(ws, JUNE)
    _define(ws, "b", "IN_SEGMENT('zzz')")
    with pytest.raises(RuleError, match="unknown segment"):
        plan.plan(ws, JUNE)


def test_bad_files_are_reported(ws: tierwise.Workspace):
    folder = defs.folder(ws)
    folder.mkdir()
    (folder / "x.yaml").write_text("key: y\nrule: city = 'a'\n")
    with pytest.raises(tierwise.TierwiseError, match="must match the file name"):
        defs.load_files(ws)
    (folder / "x.yaml").write_text("key: x\nrule: citty = 'a'\n")
    with pytest.raises(tierwise.TierwiseError, match="x.yaml.*did you mean city"):
        defs.load_files(ws)
    (folder / "x.yaml").write_text("key: x\nrule: city = \n")
    with pytest.raises(tierwise.TierwiseError, match="line 1, column 7"):
        defs.load_files(ws)
    (folder / "x.yaml").write_text("key: Bad Key\n")
    with pytest.raises(tierwise.TierwiseError, match="lower-case"):
        defs.load_files(ws)


def test_static_lists_snapshots_and_in_segment(ws: tierwise.Workspace):
    _define(ws, "vips", None, kind="static")
    _define(ws, "vip_buyers", "IN_SEGMENT('vips') AND COUNT(orders) >= 1")
    plan.apply(ws, plan.plan(ws, JUNE))
    assert membership.edit_static(ws, "vips", add=["C000001", "C000002", "C000003"]) == (3, 0)
    with pytest.raises(tierwise.TierwiseError, match="unknown customer"):
        membership.edit_static(ws, "vips", add=["NOPE"])
    result = {r.key: r for r in membership.evaluate_all(ws, JUNE)}["vip_buyers"]
    buyers = set(evaluate_rule(ws, "COUNT(orders) >= 1", JUNE)["customer_id"].to_pylist())
    assert set(membership.members_at(ws, "vip_buyers")) == {"C000001", "C000002",
                                                            "C000003"} & buyers
    assert result.members == len({"C000001", "C000002", "C000003"} & buyers)
    assert membership.edit_static(ws, "vips", remove=["C000001"]) == (0, 1)
    sizes_agree(ws)
    assert membership.retire(ws, "vip_buyers") == result.members
    sizes_agree(ws)
    history = membership.customer_segments(ws, "C000001")
    vips = [h for h in history if h["segment_key"] == "vips"]
    assert vips[0]["exit_reason"] == "manual" and vips[0]["exited_at"] is not None


def test_explain_shows_every_condition(ws: tierwise.Workspace):
    rule = parse("COUNT(orders) >= 2 AND (city = '上海' OR NOT gender = 'male')")
    members = evaluate_rule(ws, rule, JUNE)["customer_id"].to_pylist()
    steps = explain(ws, rule, members[0], JUNE)
    assert steps[0].result is True and steps[0].depth == 0
    assert steps[1].text == "COUNT(orders) >= 2" and steps[1].values["COUNT(orders)"] >= 2
    outsider = next(c for c in ws.customers()["customer_id"] if c not in set(members))
    assert explain(ws, rule, outsider, JUNE)[0].result is False
    with pytest.raises(tierwise.TierwiseError, match="no customer"):
        explain(ws, rule, "NOPE", JUNE)


def test_segments_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "cli"
    tw("demo", "-w", str(root), "--customers", "500", "--seed", "2", "--end", "2026-06-30")
    monkeypatch.setenv("TIERWISE_WORKSPACE", str(root))
    monkeypatch.chdir(tmp_path)
    out = tw("segments", "check", "count(orders, last 30d) >= 2")
    assert "COUNT(orders, LAST 30d) >= 2" in out and '"aggregate": "COUNT"' in out
    tw("segments", "check", "citty = 'x'", code=1)
    out = tw("segments", "preview", "COUNT(orders) >= 2", "--as-of", "2026-06-30",
             "--ids-out", "ids.csv")
    # everyone: the 500 customers and the people at its B2B accounts
    people = generate_chunk(DemoSpec(customers=500, seed=2, end=date(2026, 6, 30)), 0)
    assert f"of {people['customers'].num_rows} customers as of 2026-06-30 23:59" in out
    assert (tmp_path / "ids.csv").read_text(encoding="utf-8-sig").startswith("customer_id")
    assert "待唤醒客户" in tw("segments", "templates")
    tw("compute", "--as-of", "2026-06-30")  # the template reads RFM scores
    tw("segments", "new", "awaken", "--template", "to_be_awakened")
    tw("segments", "new", "list1", "--kind", "static")
    assert "would enter" in tw("segments", "plan", "--as-of", "2026-06-30")
    assert "awaken: saved version 1" in tw("segments", "apply")
    assert "nothing to apply" in tw("segments", "apply")
    assert "1 added" in tw("segments", "add", "list1", "C000001")
    out = tw("segments", "evaluate", "--as-of", "2026-06-30")
    assert "awaken" in out and "computed as of 2026-06-30 23:59" in out
    assert "members (computed as of 2026-06-30 23:59)" in tw("segments", "members", "awaken")
    assert "awaken" in tw("segments", "list")
    member = tw("segments", "members", "awaken").split("\n")[1].split(",")[0].strip()
    assert "✓" in tw("segments", "explain", "awaken", member, "--as-of", "2026-06-30")
    assert "awaken" in tw("customers", "segments", member)
    assert "froze" in tw("segments", "freeze", "awaken_june", "--from", "awaken")
    assert "Data change" in tw("segments", "history", "awaken")


def test_a_change_nobody_listens_to_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triggers listen to membership changes (store.changes); a change announced with no
    listener installed must fail, not fire nothing."""
    from datetime import UTC, datetime

    from tierwise.store import changes

    monkeypatch.setattr(changes, "_listener", [])
    with pytest.raises(RuntimeError, match="no listener"):
        changes.membership_changed(None, "vip", ["C1"], [], "manual",  # type: ignore[arg-type]
                                   datetime.now(UTC))
    changes.membership_changed(None, "vip", [], [], "manual",  # type: ignore[arg-type]
                               datetime.now(UTC))  # nothing changed: nothing to announce


def test_an_evaluation_for_everyone_reads_the_columns_its_rules_read(ws: tierwise.Workspace):
    """For everyone, the customers' and the snapshot's columns are read when a rule first
    reads them. Each rule selects what it selects where every column is held (an
    evaluation restricted to all customers); personal data a rule reads is opened, the
    rest is never read; customers imported halfway through are not seen."""
    from tierwise.compile.segments import compile_rule
    from tierwise.ingest.readers import RecordsSource
    from tierwise.segments.evaluate import Evaluation
    from tierwise.segments.vocabulary import vocabulary

    ws.compute(JUNE)
    rules = ["city = '上海'", "tier IN ('A', 'B')", "email IS NOT NULL AND tier = 'C'",
             "rfm.segment = 'champions' OR lifecycle = 'active'",
             "phone IS NULL AND COUNT(orders, LAST 90d) >= 1"]
    words = vocabulary(ws)
    compiled = [compile_rule(parse(r), ws.engine.name, JUNE, SH, vocabulary=words)
                for r in rules]
    everyone = ws.customers()["customer_id"].tolist()
    with Evaluation(ws, JUNE, everyone) as held:
        expected = [sorted(held.run(c)["customer_id"].to_pylist()) for c in compiled]
    assert all(expected) and len({len(e) for e in expected}) > 1

    with Evaluation(ws, JUNE) as evaluation:
        got = [sorted(evaluation.run(compiled[0])["customer_id"].to_pylist())]
        # a customer in 上海 arrives while the evaluation runs
        ws.import_source("customers", RecordsSource.from_dicts("late", [
            {"customer_id": "LATE-1", "city": "上海", "email": "late@example.com"}]))
        got += [sorted(evaluation.run(c)["customer_id"].to_pylist()) for c in compiled[1:]]
        got.append(sorted(evaluation.run(compiled[0])["customer_id"].to_pylist()))
        read = evaluation.session.query("SELECT * FROM customers LIMIT 1").column_names
    assert got == [*expected, expected[0]]
    assert "LATE-1" not in {c for members in got for c in members}
    assert {"customer_id", "city", "email", "phone"} <= set(read)
    assert not {"name", "address", "attributes"} & set(read), read
    # a new evaluation sees the newcomer
    assert "LATE-1" in evaluate_rule(ws, "city = '上海'", JUNE)["customer_id"].to_pylist()


def test_batch_evaluation_on_either_store_records_only_the_changes(any_ws: tierwise.Workspace):
    """The members of each segment are compared with the stored ones in Arrow (read with
    the driver's cursor, on SQLite and PostgreSQL alike): a second run records nothing,
    and after new orders exactly those who crossed a bound enter and leave."""
    from tierwise.ingest.readers import RecordsSource

    ws = any_ws
    load_generated(ws, DemoSpec(customers=300, seed=9, end=date(2026, 6, 30)))
    _define(ws, "buyers", "COUNT(orders, LAST 90d) >= 1")
    _define(ws, "big", "SUM(orders.amount, LAST 90d) > 2000")
    plan.apply(ws, plan.plan(ws, JUNE))
    first = {r.key: r for r in membership.evaluate_all(ws, JUNE)}
    assert first["buyers"].entered == first["buyers"].members > 0
    again = {r.key: r for r in membership.evaluate_all(ws, JUNE)}
    assert all(r.entered == r.exited == 0 and r.error is None for r in again.values())
    before = set(membership.members_at(ws, "buyers"))
    newcomer = next(c for c in ws.customers()["customer_id"].tolist() if c not in before)
    ws.import_source("orders", RecordsSource.from_dicts("late", [
        {"order_id": "LATE-1", "customer_id": newcomer, "ordered_at": "2026-06-30T10:00:00+08:00",
         "amount": "10", "status": "paid"}]))
    later = datetime(2026, 7, 20, 23, 0, tzinfo=SH)
    # three weeks on, the window has slid past some: the rule's own members at that instant
    runs = {r.key: r for r in membership.evaluate_all(ws, later)}
    now = set(membership.members_at(ws, "buyers"))
    assert now == set(evaluate_rule(ws, "COUNT(orders, LAST 90d) >= 1", later)
                      ["customer_id"].to_pylist())
    assert newcomer in now and runs["buyers"].entered == len(now - before) >= 1
    assert runs["buyers"].exited == len(before - now) > 0
    assert runs["buyers"].members == len(now)
    sizes_agree(ws)


def test_changes_between_members_and_the_stored_ones() -> None:
    import pyarrow as pa

    def ids(*names: str) -> pa.Array:
        return pa.array(list(names), pa.string())

    def diff(members: pa.Array | pa.ChunkedArray, before: pa.Array) -> tuple[list, list]:
        entered, exited = membership.changes_between(members, before)
        return sorted(entered), sorted(exited)

    assert diff(ids("a", "b", "c"), ids("c", "b", "a")) == ([], [])
    assert diff(ids("a", "b", "c", "d"), ids("b", "c")) == (["a", "d"], [])
    assert diff(ids("b"), ids("a", "b", "c")) == ([], ["a", "c"])
    assert diff(ids("a", "x"), ids("a", "b")) == (["x"], ["b"])
    assert diff(ids("a", "b"), ids("c", "d")) == (["a", "b"], ["c", "d"])  # same count
    assert diff(ids(), ids("a")) == ([], ["a"])
    assert diff(ids("a"), ids()) == (["a"], [])
    assert diff(pa.chunked_array([ids("a"), ids("b", "z")]), ids("b", "c")) == (["a", "z"], ["c"])
