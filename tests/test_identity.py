"""Duplicate detection on generated data with known duplicates: precision and recall, each
kind of hard duplicate and look-alike, explanations."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.test_cli import tw

import tierwise
from tierwise.demo.duplicates import KINDS, LOOKALIKES, with_duplicates
from tierwise.identity.keys import address_key, comparison_table
from tierwise.identity.match import match, pair_scores


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Records with the union of the rows' keys (``from_pylist`` reads the first row's)."""
    columns = sorted({k for r in rows for k in r})
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])


def test_comparison_columns_use_the_cleaners():
    data = with_duplicates(300, share=0.3, seed=5)
    table = comparison_table(data.records).to_pylist()
    assert all(r["phone_key"] is None or r["phone_key"].startswith("+") for r in table)
    keys = comparison_table(_table([
        {"customer_id": "a", "name": "張偉明", "email": "Info@Example.com", "city": "上海市",
         "province": "上海", "address": "上海市浦东新区张江路８８号3幢"},
        {"customer_id": "b", "name": "Weiming Zhang", "email": "wm.zhang@example.com",
         "city": "浦东", "address": "浦东新区 张江路88号3栋"},
        {"customer_id": "c", "name": "Bob Smith"},
        {"customer_id": "d", "name": "R. Smith"},
        {"customer_id": "e", "name": "北京华盛科技有限公司", "industry": "互联网"},
        {"customer_id": "f", "name": "华盛科技有限公司上海分公司", "industry": "互联网"},
    ])).to_pylist()
    a, b, c, d, e, f = keys
    # traditional characters, pinyin and either order: one canonical spelling
    assert a["name_canonical"] == b["name_canonical"] == "weiming zhang"
    assert a["city_key"] == "上海" and a["region_keys"] == ["上海", "上海"]
    assert a["address_key"] == b["address_key"] == "浦东新区张江路88号3栋"
    assert a["email_user"] is None  # a shared mailbox says nothing about who wrote
    assert b["email_user"] == "wm.zhang"
    assert "robert smith" in c["name_forms"]  # Bob is a Robert
    # an initial agrees with the full name, two full names with one initial do not
    full = comparison_table(_table([{"customer_id": "x", "name": "Robert Smith"},
                                    {"customer_id": "y", "name": "Rachel Smith"}])).to_pylist()
    assert set(d["name_abbreviated"]) & set(full[0]["name_initials"])
    assert full[0]["name_abbreviated"] is None and d["name_initials"] is None
    assert e["company_key"] == "北京华盛科技" and e["name_canonical"] == f["name_canonical"] == \
        "华盛科技"
    assert address_key("12 Main Street, Apt 4") == address_key("12 main st apt 4")


def _kind_recall(result: Any, truth: dict[str, str], kinds: dict[str, str]
                 ) -> dict[str, float]:
    found = {tuple(sorted(p)) for p, q in zip(zip(
        result.pairs["unique_id_l"].to_pylist(), result.pairs["unique_id_r"].to_pylist(),
        strict=True), result.pairs["match_probability"].to_pylist(), strict=True) if q >= 0.5}
    groups: dict[str, list[str]] = {}
    for record, entity in truth.items():
        groups.setdefault(entity, []).append(record)
    total: dict[str, int] = {}
    hit: dict[str, int] = {}
    for members in groups.values():
        members.sort()
        for i, left in enumerate(members):
            for right in members[i + 1:]:
                kind = kinds.get(right) or kinds.get(left) or "typed"
                total[kind] = total.get(kind, 0) + 1
                hit[kind] = hit.get(kind, 0) + ((left, right) in found)
    return {k: hit[k] / total[k] for k in total}


def test_precision_and_recall_on_known_duplicates(capsys: pytest.CaptureFixture[str]):
    """6,000 records: typing variations on every copy plus one hard change each (pinyin,
    company prefix or branch, landline, address, transposed digits, no contact), and
    families and colleagues sharing a phone. Target at the default threshold: precision
    ≥ 0.99, recall ≥ 0.92; every kind of duplicate found at least 85% of the time; no
    look-alike merged automatically."""
    data = with_duplicates(5000, share=0.1, seed=3)
    result = match(data.records, threshold=0.3)
    scores = pair_scores(result.pairs, data.truth, 0.5)
    by_kind = _kind_recall(result, data.truth, data.kinds)
    with capsys.disabled():
        print(f"\nduplicates: precision {scores['precision']:.4f}, recall "
              f"{scores['recall']:.4f} ({scores['predicted']} predicted, "
              f"{scores['true_pairs']} true pairs); by kind "
              + ", ".join(f"{k} {v:.3f}" for k, v in sorted(by_kind.items())))
    assert scores["precision"] >= 0.99
    assert scores["recall"] >= 0.92
    assert set(by_kind) >= {k for k in KINDS if k != "pinyin_or_nickname"} | {"typed"}
    assert min(by_kind.values()) >= 0.85, by_kind
    lookalike = {r for r, k in data.kinds.items() if k in LOOKALIKES}
    sure = [(a, b) for a, b, p in zip(
        result.pairs["unique_id_l"].to_pylist(), result.pairs["unique_id_r"].to_pylist(),
        result.pairs["match_probability"].to_pylist(), strict=True)
        if p >= 0.95 and (a in lookalike or b in lookalike)]
    assert sure == []
    # The trained model can be reused without training again.
    again = match(data.records, threshold=0.5, model=result.model)
    assert pair_scores(again.pairs, data.truth, 0.5) == scores
    # a threshold of 1 (the API allows it) is an infinite match weight to splink
    certain = match(data.records, threshold=1.0, model=result.model).pairs
    assert all(p >= 1.0 for p in certain["match_probability"].to_pylist())


#: Hand-written records of one person or company as two systems hold them, and of two
#: people who only share a phone or an address. Each is added to a generated population.
HARD = {
    "pinyin": ({"name": "欧阳娜娜", "phone": "+8613800138111", "city": "上海",
                "gender": "female", "birth_date": "1990-02-03"},
               {"name": "Nana Ouyang", "email": "nana.oy@example.org", "city": "上海市",
                "gender": "female", "birth_date": "1990-02-03"}),
    "pinyin_surname_first": ({"name": "张伟明", "email": "zwm@example.org", "city": "杭州"},
                             {"name": "Zhang Weiming", "email": "ZWM@example.org",
                              "city": "杭州"}),
    "nickname": ({"name": "Robert Johnson", "phone": "+8613700137001", "city": "深圳",
                  "address": "深圳市南山区科技路12号5栋101室"},
                 {"name": "Bob Johnson", "city": "深圳",
                  "address": "南山区科技路12号5幢101室"}),
    "initial": ({"name": "Margaret Wilson", "email": "mwilson@example.org", "city": "北京"},
                {"name": "M. Wilson", "email": "mwilson@exmaple.org", "city": "北京"}),
    "company_prefix": ({"name": "北京华盛科技有限公司", "industry": "互联网",
                        "company_size": "51-200", "city": "北京", "phone": "010-62345678"},
                       {"name": "华盛科技", "industry": "互联网", "company_size": "51-200",
                        "city": "北京", "email": "contact@huasheng.example"}),
    "company_branch": ({"name": "华盛科技有限公司上海分公司", "industry": "互联网",
                        "city": "上海", "email": "sh@huasheng2.example"},
                       {"name": "华盛科技股份有限公司", "industry": "互联网",
                        "city": "上海", "email": "sh@huasheng2.example"}),
    "landline": ({"name": "司马光辉", "phone": "+8613912345678", "city": "成都",
                  "email": "smgh@example.org", "gender": "male"},
                 {"name": "司马光辉", "phone": "028-87654321", "city": "成都",
                  "email": "smgh@example.org", "gender": "male"}),
    "address_written_differently": (
        {"name": "诸葛明亮", "city": "广州", "address": "广州市天河区中山大道88号3号楼1201室",
         "gender": "male", "birth_date": "1985-07-09"},
        {"name": "诸葛明亮", "city": "广州", "address": "天河区中山大道８８号3栋1201室",
         "gender": "male"}),
    "transposed_digits": ({"name": "令狐冲", "phone": "+8613612345678", "city": "武汉"},
                          {"name": "令狐冲", "phone": "136-1234-5687", "city": "武汉市"}),
    "no_contact": ({"name": "上官婉儿", "email": "sgwe@example.org", "city": "西安",
                    "gender": "female", "birth_date": "1992-11-30",
                    "address": "西安市雁塔区科技路7号2栋302室"},
                   {"name": "上官婉儿", "city": "西安", "gender": "female",
                    "birth_date": "1992-11-30"}),
}
LOOKALIKE = {
    "family_phone": ({"name": "王建国", "phone": "+8613512340000", "city": "南京",
                      "gender": "male", "address": "南京市鼓楼区人民路5号1栋101室"},
                     {"name": "王丽华", "phone": "+8613512340000", "city": "南京",
                      "gender": "female", "address": "南京市鼓楼区人民路5号1栋101室"}),
    "switchboard": ({"name": "李晓峰", "phone": "021-50001234", "city": "上海",
                     "email": "lxf@corp.example", "address": "上海市浦东新区世纪大道100号"},
                    {"name": "陈静怡", "phone": "021-50001234", "city": "上海",
                     "email": "cjy@corp.example", "address": "上海市浦东新区世纪大道100号"}),
}


@pytest.fixture(scope="module")
def hand_made() -> dict[tuple[str, str], float]:
    data = with_duplicates(1500, share=0.1, seed=21)
    rows = data.records.to_pylist()
    for name, (left, right) in {**HARD, **LOOKALIKE}.items():
        for side, record in (("L", left), ("R", right)):
            born = record.get("birth_date")
            rows.append({**record, "customer_id": f"{name}-{side}",
                         "birth_date": date.fromisoformat(born) if born else None})
    records = pa.Table.from_pylist(rows, schema=data.records.schema)
    pairs = match(records, threshold=0.001).pairs.to_pylist()
    return {tuple(sorted((p["unique_id_l"], p["unique_id_r"]))): p["match_probability"]
            for p in pairs}


@pytest.mark.parametrize("kind", sorted(HARD))
def test_each_kind_of_hard_duplicate_is_found(hand_made: dict[tuple[str, str], float],
                                              kind: str):
    assert hand_made.get((f"{kind}-L", f"{kind}-R"), 0.0) >= 0.5, kind


@pytest.mark.parametrize("kind", sorted(LOOKALIKE))
def test_people_sharing_a_phone_are_not_matched(hand_made: dict[tuple[str, str], float],
                                                kind: str):
    assert hand_made.get((f"{kind}-L", f"{kind}-R"), 0.0) < 0.5, kind


def test_duplicates_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = with_duplicates(400, share=0.2, seed=8)
    ws = tierwise.init(tmp_path / "w")
    from tierwise.ingest.readers import RecordsSource

    ws.import_source("customers", RecordsSource("crm", data.records.column_names,
                                                iter([data.records])))
    monkeypatch.chdir(tmp_path)
    out = tw("duplicates", "-w", str(tmp_path / "w"), "--out", "pairs.csv")
    assert "likely duplicate pairs" in out
    assert (tmp_path / "w" / "identity" / "model.json").exists()
    assert (tmp_path / "pairs.csv").read_text(encoding="utf-8-sig").startswith("customer_id_l")
    assert "reused the trained model" in tw("duplicates", "-w", str(tmp_path / "w"))
    copy = next(k for k, v in data.kinds.items() if v == "typed")
    explained = tw("duplicates", "explain", data.truth[copy], copy, "-w", str(tmp_path / "w"))
    assert "match probability" in explained and "prior" in explained and "name" in explained


@pytest.mark.slow
def test_matching_on_spark_agrees_in_quality():
    """The same model on Spark (splink's SparkAPI with its similarity jar) for scale-out."""
    from tests.test_engines import SPARK_MISSING

    if SPARK_MISSING:
        pytest.skip(SPARK_MISSING)
    data = with_duplicates(600, share=0.1, seed=3)
    result = match(data.records, threshold=0.3, engine="spark")
    scores = pair_scores(result.pairs, data.truth, 0.5)
    assert scores["precision"] >= 0.95 and scores["recall"] >= 0.90, scores


def test_a_pair_scored_alone_gets_the_probability_the_scan_gave_it():
    """The explanation, the review page and matching on arrival score single pairs with
    the saved model and its term frequencies (``Scorer``); the scan scores all pairs at
    once in splink. Both must give one pair one number."""
    from tierwise.identity.scoring import Scorer

    data = with_duplicates(800, share=0.2, seed=12)
    result = match(data.records, threshold=0.05)
    rows = {r["customer_id"]: r for r in data.records.to_pylist()}
    scorer = Scorer(result.model, result.frequencies)
    pairs = result.pairs.to_pylist()
    assert len(pairs) > 50
    for pair in pairs[:: max(1, len(pairs) // 60)]:
        alone = scorer.score([rows[pair["unique_id_l"]]], [rows[pair["unique_id_r"]]])[0]
        assert alone["match_probability"] == pytest.approx(pair["match_probability"],
                                                           abs=1e-9), pair
