"""Rules in the user's words: every label of every enumerated field, in both languages,
selects exactly the customers of its code; a literal that names no value is refused at
check, preview, plan and save with the valid values; free-text literals no row carries
are warned about."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

import tierwise
from test_engines import SPARK_MISSING
from tierwise.compile.segments import compile_rule
from tierwise.definitions.roles import ROLES
from tierwise.definitions.segment_ast import SOURCES
from tierwise.definitions.segment_parser import parse
from tierwise.definitions.vocabulary import Enumeration
from tierwise.demo.generator import DemoSpec
from tierwise.demo.load import load_generated
from tierwise.engines import make_engine
from tierwise.errors import TierwiseError
from tierwise.models import rfm
from tierwise.models.compute import save_setting
from tierwise.segments import catalog as defs
from tierwise.segments import membership, plan
from tierwise.segments.evaluate import evaluate_rule
from tierwise.segments.vocabulary import vocabulary
from tierwise.server.app import create_app
from tierwise.store import accounts
from tierwise.store.control import utcnow

AS_OF = datetime(2026, 6, 30, 23, 59, 59, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> tierwise.Workspace:
    ws = tierwise.init(tmp_path_factory.mktemp("words") / "ws")
    load_generated(ws, DemoSpec(customers=1_500, seed=8, end=date(2026, 6, 30)))
    ws.compute(AS_OF)
    return ws


def _rule(enumeration: Enumeration, literal: str) -> str:
    quoted = "'" + literal.replace("'", "''") + "'"
    if enumeration.name == "DAYS_UNTIL_HOLIDAY":  # every holiday is within a year
        return f"DAYS_UNTIL_HOLIDAY({quoted}) <= 400"
    if "." in enumeration.name and enumeration.name.split(".")[0] in SOURCES:
        source, column = enumeration.name.split(".")
        return f"COUNT({source} WHERE {column} = {quoted}) >= 1"
    return f"{enumeration.name} = {quoted}"


def _forms(enumeration: Enumeration, code: str) -> set[str]:
    """The code, its label in each language, the head of a ``head · tail`` label, and the
    label in other letter case."""
    forms = {code, code.upper()}
    for lang in ("zh-CN", "en"):
        label = enumeration.label(code, lang)
        forms |= {label, label.lower(), label.split("·")[0].strip()}
    return forms


def _members(ws: tierwise.Workspace, rule: str) -> list[str]:
    return evaluate_rule(ws, rule, AS_OF)["customer_id"].to_pylist()  # type: ignore[no-any-return]


def _check_labels(ws: tierwise.Workspace) -> dict[str, int]:
    """Every form of every code selects what the code selects; members per field."""
    found: dict[str, int] = {}
    for enumeration in vocabulary(ws).enumerations:
        total = 0
        for code in enumeration.codes:
            expected = _members(ws, _rule(enumeration, code))
            total += len(expected)
            for form in _forms(enumeration, code):
                assert _members(ws, _rule(enumeration, form)) == expected, \
                    (enumeration.name, code, form)
        found[enumeration.name] = total
    return found


def test_every_label_selects_what_its_code_selects(ws: tierwise.Workspace):
    found = _check_labels(ws)
    assert set(found) == {"lifecycle", "churn_risk", "gender", "orders.status", "tier",
                          "rfm.segment", "DAYS_UNTIL_HOLIDAY", "nps_class",
                          "opportunities.stage", "opportunity_stages.stage",
                          "opportunity_stages.from_stage", "role", "contacts.role",
                          "account_orders.status"}
    # not vacuous: every field has members under its codes
    assert all(n > 0 for n in found.values()), found
    # the issue's own examples
    assert _members(ws, "rfm.segment = '冠军客户'") == _members(ws, "rfm.segment = 'champions'")
    assert _members(ws, "tier = 'A 类'") == _members(ws, "tier = 'A'") != []
    assert _members(ws, "gender = '女'") == _members(ws, "gender = 'female'") != []
    assert _members(ws, "COUNT(contacts WHERE role = '决策者') >= 1") == \
        _members(ws, "COUNT(contacts WHERE role = 'decision_maker') >= 1") != []
    assert _members(ws, "lifecycle = '流失'") == _members(ws, "lifecycle = 'churned'")
    assert _members(ws, "lifecycle IN ('流失预警', 'Dormant')") == \
        _members(ws, "lifecycle IN ('at_risk', 'dormant')")
    assert _members(ws, "NOT churn_risk != '高风险'") == _members(ws, "churn_risk = 'high'")
    # every comparison, not only =, reads a label as its code
    assert _members(ws, "tier >= 'B 类'") == _members(ws, "tier >= 'B'") != []
    assert _members(ws, "tier BETWEEN 'A 类' AND 'b'") == _members(ws, "tier IN ('A', 'B')")
    assert _members(ws, "lifecycle CONTAINS '已流失'") == _members(ws, "lifecycle = 'churned'")


def test_the_chinese_eight_class_scheme_and_own_tier_labels(ws: tierwise.Workspace):
    before = rfm.RFMSettings()
    tiers_before = tierwise.models.compute.load_settings(ws).tiers
    try:
        save_setting(ws, "rfm", before.model_copy(update={"scheme": "cn8"}))
        save_setting(ws, "tiers", tiers_before.model_copy(update={
            "tiers": ["VIP", "REG", "LOW", "LOST"],
            "labels": {"VIP": {"zh-CN": "VIP 客户", "en": "VIP"},
                       "REG": {"zh-CN": "普通客户", "en": "Regular"},
                       "LOW": {"zh-CN": "潜在客户", "en": "Potential"},
                       "LOST": {"zh-CN": "流失客户", "en": "Churned"}}}))
        ws.compute(AS_OF)
        found = _check_labels(ws)
        assert found["rfm.segment"] > 0 and found["tier"] > 0
        assert _members(ws, "rfm.segment = '重要价值客户'") == \
            _members(ws, "rfm.segment = 'important_value'") != []
        assert _members(ws, "tier = '普通客户'") == _members(ws, "tier = 'REG'") != []
        with pytest.raises(TierwiseError, match="'VIP'.*'REG'"):
            _members(ws, "tier = 'A'")  # the old tier names are no longer values
    finally:
        save_setting(ws, "rfm", before)
        save_setting(ws, "tiers", tiers_before)
        ws.compute(AS_OF)


def test_labels_compile_to_the_same_query_on_every_engine(ws: tierwise.Workspace):
    words = vocabulary(ws)
    for enumeration in words.enumerations:
        for code in enumeration.codes:
            for dialect in ("duckdb", "spark"):
                expected = compile_rule(parse(_rule(enumeration, code)), dialect, AS_OF,
                                        ws.config.zone, vocabulary=words)
                for form in _forms(enumeration, code):
                    got = compile_rule(parse(_rule(enumeration, form)), dialect, AS_OF,
                                       ws.config.zone, vocabulary=words)
                    assert (got.sql, got.params) == (expected.sql, expected.params), form


@pytest.mark.skipif(SPARK_MISSING is not None, reason=str(SPARK_MISSING))
def test_labels_on_spark(ws: tierwise.Workspace):
    expected = _members(ws, "tier = 'A' AND lifecycle != 'churned' AND gender = 'female'")
    ws.engine = make_engine("spark")
    try:
        got = _members(ws, "tier = 'A 类' AND lifecycle != '已流失' AND gender = '女'")
    finally:
        ws.engine = make_engine("duckdb")
    assert got == expected != []


WRONG = [("tier = 'E'", "'A'（A 类 · 核心客户）, 'B'"),
         ("rfm.segment = '冠军'", "是否要写 'champions'（冠军客户）"),
         ("lifecycle IN ('active', 'sleeping')", "'dormant'（沉睡客户）"),
         ("churn_risk = 'hihg'", "是否要写 'high'（高风险）"),
         ("gender = 'femail'", "'female'（女）"),
         ("COUNT(orders WHERE status = 'shipped') >= 1", "'paid'（已支付）, 'refunded'"),
         ("tier = 1", "tier 没有取值 '1'"),
         ("lifecycle CONTAINS '流式'", "lifecycle 没有取值 '流式'"),
         ("tier BETWEEN 'A' AND 'Q'", "tier 没有取值 'Q'")]


@pytest.mark.parametrize(("rule", "shown"), WRONG)
def test_a_wrong_literal_is_refused_with_the_valid_values(ws: tierwise.Workspace, rule: str,
                                                          shown: str):
    with pytest.raises(TierwiseError, match="没有取值") as raised:
        _members(ws, rule)
    assert shown in str(raised.value) and "可用的取值" in str(raised.value)


def test_messages_follow_the_workspace_language(tmp_path: Path):
    ws = tierwise.init(tmp_path / "en", locale="en")
    with pytest.raises(TierwiseError) as raised:
        plan.in_codes(defs.SegmentDefinition(key="x", rule="rfm.segment = 'champion'"),
                      vocabulary(ws))
    text = str(raised.value)
    assert "rfm.segment has no value 'champion'; did you mean 'champions' (Champions)?" in text
    assert "Valid values: 'champions' (Champions), 'loyal_customers'" in text


@pytest.fixture(scope="module")
def client(ws: tierwise.Workspace) -> TestClient:
    app = create_app(ws)
    with ws.control.write() as conn:
        secret = accounts.create_key(conn, "words", "admin", "test",
                                     rate_per_second=1000).secret
    assert "admin" in ROLES
    c = TestClient(app, raise_server_exceptions=False)  # type: ignore[arg-type]
    c.headers["Authorization"] = f"Bearer {secret}"
    return c


def test_api_speaks_labels_and_refuses_wrong_values(ws: tierwise.Workspace,
                                                    client: TestClient):
    checked = client.post("/v1/segments/check", json={"rule": "tier = 'B 类' AND "
                                                               "rfm.segment = 'Champions'"})
    assert checked.status_code == 200, checked.text
    assert checked.json()["rule"] == "tier = 'B' AND rfm.segment = 'champions'"
    assert checked.json()["warnings"] == []
    preview = client.post("/v1/segments/preview", json={"rule": "lifecycle = '忠诚客户'",
                                                         "as_of": AS_OF.isoformat()})
    assert preview.json()["count"] == len(_members(ws, "lifecycle = 'loyal'")) > 0
    assert preview.json()["rule"] == "lifecycle = 'loyal'"
    for rule, _ in WRONG:
        for method, url, body in (
                ("POST", "/v1/segments/check", {"rule": rule}),
                ("POST", "/v1/segments/preview", {"rule": rule}),
                ("PUT", "/v1/segments/wrong?dry_run=true", {"rule": rule}),
                ("PUT", "/v1/segments/wrong?dry_run=false", {"rule": rule})):
            answer = client.request(method, url, json=body)
            assert answer.status_code == 400, (url, rule, answer.text)
            assert "可用的取值" in answer.json()["detail"], answer.text
    assert "wrong" not in defs.applied(ws)
    # saved in code form; the plan says who enters
    saved = client.put("/v1/segments/vip_women?dry_run=false",
                       json={"rule": "tier = 'A 类 · 核心客户' AND gender = '女'"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["plan"]["entering_count"] == \
        len(_members(ws, "tier = 'A' AND gender = 'female'")) > 0
    stored = client.get("/v1/segments/vip_women").json()["definition"]["rule"]
    assert stored == "tier = 'A' AND gender = 'female'"


def test_free_text_literals_no_row_carries_are_warned_about(ws: tierwise.Workspace,
                                                            client: TestClient):
    cities = ws.table("customers").column("city").to_pylist()
    city = max(set(cities) - {None}, key=cities.count)
    answer = client.post("/v1/segments/check", json={
        "rule": f"city = '{city}市' AND COUNT(events WHERE type = 'page_veiw') >= 1"}).json()
    assert answer["warnings"][0].startswith(f"没有客户满足 city = '{city}市'；'{city}' 有 "
                                            f"{cities.count(city):,} 个")
    assert answer["warnings"][1].startswith("没有事件满足 events.type = 'page_veiw'；"
                                            "'page_view' 有 ")
    assert len(answer["warnings"]) == 2
    qualified = client.post("/v1/segments/check", json={
        "rule": "COUNT(events WHERE events.type = 'page_veiw') >= 1"}).json()
    assert qualified["warnings"][0].startswith("没有事件满足 events.type = 'page_veiw'")
    fine = client.post("/v1/segments/preview", json={"rule": f"city = '{city}'"}).json()
    assert fine["warnings"] == [] and fine["count"] == cities.count(city)
    # personal fields are not looked up: no warning may tell which names exist
    assert client.post("/v1/segments/check", json={"rule": "name = 'nobody'"}
                       ).json()["warnings"] == []


def test_files_and_stored_rules(ws: tierwise.Workspace):
    folder = defs.folder(ws)
    folder.mkdir(exist_ok=True)
    (folder / "sleepers.yaml").write_text("key: sleepers\nrule: lifecycle = '沉睡客户'\n",
                                          encoding="utf-8")
    items = {i.key: i for i in plan.plan(ws, AS_OF)}
    assert items["sleepers"].new_rule == "lifecycle = 'dormant'"
    assert items["sleepers"].members_after == len(_members(ws, "lifecycle = 'dormant'"))
    (folder / "typo.yaml").write_text("key: typo\nrule: lifecycle = '沉水'\n",
                                      encoding="utf-8")
    with pytest.raises(TierwiseError, match=r"typo\.yaml：lifecycle 没有取值 '沉水'"):
        plan.plan(ws, AS_OF)
    (folder / "typo.yaml").unlink()
    (folder / "sleepers.yaml").unlink()
    # a rule stored in label form (an earlier version) is evaluated by its codes
    defs.save(ws, defs.SegmentDefinition(key="old_words", rule="churn_risk = '高风险'"))
    runs = {r.key: r for r in membership.evaluate_all(ws, utcnow(), ["old_words"])}
    assert runs["old_words"].error is None
    assert runs["old_words"].members == len(evaluate_rule(ws, "churn_risk = 'high'",
                                                          utcnow()))


def test_templates_follow_their_words(ws: tierwise.Workspace):
    from tierwise.segments.templates import DESCRIPTIONS, TEMPLATES, template

    assert TEMPLATES["high_value_active"].rule is not None
    assert "COUNT(orders, LAST 30d) > 2" in TEMPLATES["high_value_active"].rule
    assert "rfm.m >= 4" in str(TEMPLATES["to_be_awakened"].rule)
    assert {"promoters", "detractors", "new_customers", "churn_risk",
            "vip_key_accounts"} <= set(TEMPLATES)
    for key in TEMPLATES:
        zh, en = template(key, "zh-CN"), template(key, "en")
        assert zh.description == DESCRIPTIONS[key]["zh-CN"] != en.description
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh.description + zh.names["zh-CN"])
        assert en.names["en"] and not any("\u4e00" <= ch <= "\u9fff" for ch in en.description)
    found = {key: len(_members(ws, str(t.rule))) for key, t in TEMPLATES.items()}
    # on the demo data every template but the 30-day ones selects somebody
    assert all(found[k] > 0 for k in ("to_be_awakened", "churn_risk", "vip_key_accounts",
                                      "big_spenders_at_risk", "promoters", "detractors",
                                      "deals_without_decision_maker")), found
    awakened = set(_members(ws, "DAYS_SINCE_LAST(orders) > 90"))
    valuable = set(_members(ws, "rfm.m >= 4"))
    assert set(_members(ws, str(TEMPLATES["to_be_awakened"].rule))) == awakened & valuable


SATISFACTION = ["nps_class = 'promoter'", "nps_class = '贬损者'", "nps_class = 'Passive'",
                "nps >= 9", "nps IS NULL", "csat >= 4", "csat < 3",
                "LATEST(feedback.csat) <= 2", "LATEST(orders.amount) > 1000",
                "COUNT(feedback WHERE nps <= 6, LAST 1y) >= 1 AND nps_class != 'detractor'"]


def test_satisfaction_fields_agree_with_the_reference(ws: tierwise.Workspace):
    from segment_reference import Reference

    reference = Reference(ws, AS_OF)
    words = vocabulary(ws)
    for rule in SATISFACTION:
        expected = reference.members(words.normalize(parse(rule)))
        assert _members(ws, rule) == expected, rule
    assert _members(ws, "nps >= 9") == _members(ws, "nps_class = 'promoter'") != []
    assert _members(ws, "nps BETWEEN 0 AND 6") == _members(ws, "nps_class = '贬损者'") != []
    assert _members(ws, "csat >= 4") != []


@pytest.mark.skipif(SPARK_MISSING is not None, reason=str(SPARK_MISSING))
def test_satisfaction_fields_on_spark(ws: tierwise.Workspace):
    rules = SATISFACTION[:3] + SATISFACTION[7:9]
    expected = {rule: _members(ws, rule) for rule in rules}
    ws.engine = make_engine("spark")
    try:
        got = {rule: _members(ws, rule) for rule in rules}
    finally:
        ws.engine = make_engine("duckdb")
    assert got == expected


def test_triggers_and_playbooks_take_labels(client: TestClient):
    """A trigger on tier or lifecycle changes and a playbook for a tier store the codes;
    a value that names none is refused, never a trigger that silently never fires."""
    put = client.put("/v1/triggers/to_core", json={
        "on": {"event": "tier_change", "to": ["A 类 · 核心客户"], "from": ["b", "C 类"]},
        "action": {"type": "tag", "tag": "core"}})
    assert put.status_code == 200, put.text
    on = client.get("/v1/triggers/to_core").json()["on"]
    assert on["to"] == ["A"] and on["from"] == ["B", "C"]
    put = client.put("/v1/triggers/lapsing", json={
        "on": {"event": "lifecycle_change", "to": ["流失预警"]},
        "action": {"type": "tag", "tag": "lapsing"}})
    assert put.status_code == 200, put.text
    assert client.get("/v1/triggers/lapsing").json()["on"]["to"] == ["at_risk"]
    wrong = client.put("/v1/triggers/nowhere", json={
        "on": {"event": "tier_change", "to": ["Z"]}, "action": {"type": "tag", "tag": "z"}})
    assert wrong.status_code == 400 and "可用的取值：'A'" in wrong.json()["detail"]
    book = client.put("/v1/playbooks/core_care", json={
        "applies_to": {"tier": "核心客户"}, "service_level": "gold"})
    assert book.status_code == 200, book.text
    assert client.get("/v1/playbooks/core_care").json()["applies_to"]["tier"] == "A"
    assert client.put("/v1/playbooks/nobody", json={"applies_to": {"tier": "金卡"}}
                      ).status_code == 400


def test_every_builder_suggestion_is_a_valid_operand():
    from tierwise.dashboard.segment_pages import SUGGESTIONS
    from tierwise.definitions.segment_fields import validate

    for suggestion in SUGGESTIONS:
        if "IN_SEGMENT" in suggestion:
            continue
        validate(parse(f"{suggestion} IS NULL"))  # AVG(feedback.score) named no column


def test_messages_follow_the_callers_language(client: TestClient):
    english = {"Accept-Language": "en-US,en;q=0.9"}
    wrong = client.post("/v1/segments/check", json={"rule": "tier = 'E'"}, headers=english)
    assert wrong.status_code == 400
    assert wrong.json()["detail"].startswith("tier has no value 'E'. Valid values: 'A' (A · ")
    warned = client.post("/v1/segments/preview", json={"rule": "city = '火星'"},
                         headers=english).json()
    assert warned["warnings"][0].startswith("no customer has city = '火星'")
    chinese = client.post("/v1/segments/check?lang=zh-CN", json={"rule": "tier = 'E'"})
    assert chinese.json()["detail"].startswith("tier 没有取值 'E'。可用的取值：'A'（A 类")


def test_definition_and_body_errors_speak_the_callers_language(client: TestClient):
    """A trigger, a playbook, a segment definition or a request body with a misspelt,
    missing or mistyped field is refused in the caller's language, each field named."""
    zh, en = {"Accept-Language": "zh-CN"}, {"Accept-Language": "en"}
    trigger = {"on": {"event": "tier_change", "to": ["A"]},
               "acton": {"type": "tag", "tag": "core"}}
    said = client.put("/v1/triggers/typo", json=trigger, headers=zh)
    assert said.status_code == 400, said.text
    assert "action：缺少必填项" in said.json()["detail"], said.text
    assert "acton：不认识这个字段" in said.json()["detail"], said.text
    said = client.put("/v1/triggers/typo", json=trigger, headers=en)
    assert "action: Field required" in said.json()["detail"], said.text
    said = client.put("/v1/playbooks/typo", json={"applies_to": {"tier": "A"},
                                                  "service_level": 5}, headers=zh)
    assert said.status_code == 400 and "应为" in said.json()["detail"], said.text
    said = client.put("/v1/segments/typo", json={"rule": "city = '上海'", "kind": "dynamc"},
                      headers=zh)
    assert said.status_code == 422 and "kind：应为 " in said.json()["detail"], said.text
    said = client.post("/v1/segments/preview", json={"rule": 5}, headers=zh)
    assert said.status_code == 422 and "应为文本" in said.json()["detail"], said.text
    said = client.post("/v1/segments/preview", json={"rule": 5}, headers=en)
    assert "valid string" in said.json()["detail"], said.text


def test_validators_speak_both_languages(client: TestClient):
    """A value a definition's own check refuses (a tier plan with the wrong number of cuts,
    a trigger on entering no segment) is worded in the caller's language too."""
    plan_body = {"method": "percentile", "tiers": ["A", "B", "C", "D"], "cuts": [0.2, 0.5]}
    said = client.post("/v1/tiers/plan", json=plan_body, headers={"Accept-Language": "zh-CN"})
    assert said.status_code == 422 and "4 个等级需要 3 个分界点" in said.text, said.text
    said = client.post("/v1/tiers/plan", json=plan_body, headers={"Accept-Language": "en"})
    assert said.status_code == 422 and "4 tiers need 3 cuts" in said.text, said.text
    trigger = {"on": {"event": "enter"}, "action": {"type": "tag", "tag": "x"}}
    said = client.put("/v1/triggers/nowhere", json=trigger, headers={"Accept-Language": "zh-CN"})
    assert said.status_code == 400 and "on.event enter 需要 on.segment" in said.text, said.text


def test_segment_files_with_mistakes_are_named_in_both_languages(tmp_path: Path):
    from tierwise.errors import speaking

    path = tmp_path / "vip.yaml"
    path.write_text("key: vip\nrule: \"cty = '上海'\"\nkindd: dynamic\n", encoding="utf-8")
    with pytest.raises(TierwiseError) as raised:
        defs.load_file(path)
    with speaking("zh-CN"):
        assert f"{path}：kindd：不认识这个字段" in str(raised.value)
    with speaking("en"):
        assert "kindd: Extra inputs are not permitted" in str(raised.value)
    path.write_text("key: vip\nrule: \"cty = '上海'\"\n", encoding="utf-8")
    with pytest.raises(TierwiseError) as raised:
        defs.load_file(path)
    with speaking("zh-CN"):
        assert "未知字段 'cty'" in str(raised.value)


RULE_ERRORS = [  # (rule, English, Chinese): each kind of mistake a user makes
    ("cty = 'x'", "unknown field 'cty'; did you mean city", "未知字段 'cty'（是不是要写 city"),
    ("COUNT(order) > 1", "unknown source 'order'", "未知数据源 'order'"),
    ("COUNT(orders WHERE amout > 1) > 1", "orders has no column 'amout'", "orders 没有列 'amout'"),
    ("SUM(orders) > 1", "SUM needs a column", "SUM 需要指定一列"),
    ("COUNT(orders.amount) > 1", "COUNT counts rows of a source", "COUNT 统计数据源的行数"),
    ("signup_at = city", "cannot be compared", "两者不能比较"),
    ("acquisition_cost = 'abc'", "is text; this field holds numbers", "是文本；这个字段是数值"),
    ("city = -5d", "can only be compared with a date or time", "只能与日期或时间比较"),
    ("signup_at > 'soon'", "is not a date", "不是日期"),
    ("MONTH(city) = 1", "MONTH takes a date or time field", "MONTH 需要日期或时间字段"),
    ("city = ", "expected a field, a number", "这里应为字段、数字"),
    ("city = 'x", "is not closed with a quote", "缺少结尾的引号"),
    ("(city = 'x'", "expected ')' to close the parenthesis", "这里应为闭合括号的 ')'"),
    ("COUNT(orders, LAST 999999d) > 1", "at most 36,600d", "最多 36,600d"),
    ("tier = 'Z'", "tier has no value 'Z'. Valid values", "tier 没有取值 'Z'。可用的取值"),
]


@pytest.mark.parametrize(("rule", "english", "chinese"), RULE_ERRORS)
def test_rule_errors_speak_the_callers_language(ws: tierwise.Workspace, client: TestClient,
                                                rule: str, english: str, chinese: str):
    from tierwise.errors import speaking

    with pytest.raises(TierwiseError) as raised:
        compile_rule(parse(rule), "duckdb", AS_OF, ZoneInfo("Asia/Shanghai"),
                     vocabulary=vocabulary(ws))
    with speaking("en"):
        assert english in str(raised.value)
    with speaking("zh-CN"):
        assert chinese in str(raised.value)
    for headers, params, expected in (({"Accept-Language": "en"}, {}, english),
                                      ({"Accept-Language": "zh-CN,zh"}, {}, chinese),
                                      ({}, {"lang": "en"}, english)):
        answer = client.post("/v1/segments/preview", json={"rule": rule}, headers=headers,
                             params=params)
        assert answer.status_code == 400 and expected in answer.json()["detail"], answer.text


def test_the_cli_speaks_the_workspaces_locale(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch):
    import os
    import subprocess
    import sys

    root = tmp_path / "zh"
    tierwise.init(root).close()  # zh-CN by default
    tierwise.init(tmp_path / "en", locale="en").close()
    monkeypatch.delenv("TIERWISE_LANG", raising=False)

    def check(*args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "tierwise.cli.main", "segments", "check",
                               "cty = 'x'", *args], capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
        assert done.returncode == 1
        return done.stderr + done.stdout

    assert "未知字段 'cty'" in check("-w", str(root))
    assert "unknown field 'cty'" in check("-w", str(tmp_path / "en"))
    assert "unknown field 'cty'" in check("-w", str(root), env={"TIERWISE_LANG": "en"})
    odd = check("-w", str(root), env={"TIERWISE_LANG": "fr"})
    assert "TIERWISE_LANG='fr' is neither zh-CN nor en" in odd and "未知字段 'cty'" in odd


def test_mapping_errors_speak_the_callers_language(tmp_path: Path):
    from tierwise.errors import speaking
    from tierwise.ingest.mapping import Mapping, resolve

    with pytest.raises(TierwiseError) as raised:
        resolve(Mapping(), "orders", ["a", "b"], "x.csv")
    with speaking("en"):
        assert "x.csv has no column for required orders column(s) order_id" in str(raised.value)
    with speaking("zh-CN"):
        assert "x.csv 缺少 orders 的必填列 order_id" in str(raised.value)
    with pytest.raises(TierwiseError) as raised:
        resolve(Mapping(columns={"订单号": "oder_id"}), "orders", ["订单号"], "x.csv")
    with speaking("zh-CN"):
        assert "不是 orders 的列（是不是要写 order_id" in str(raised.value)
