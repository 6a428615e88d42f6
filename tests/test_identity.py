"""Duplicate detection on generated data with known duplicates: precision and recall."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.test_cli import tw

import tierwise
from tierwise.demo.duplicates import with_duplicates
from tierwise.identity.match import comparison_table, match, pair_scores


def test_comparison_columns_use_the_cleaners():
    data = with_duplicates(300, share=0.3, seed=5)
    table = comparison_table(data.records).to_pylist()
    by_id = {r["unique_id"]: r for r in table}
    copies = [k for k in data.truth if "-D" in k]
    original = data.truth[copies[0]]
    if by_id[copies[0]]["phone_key"] and by_id[original]["phone_key"]:
        assert by_id[copies[0]]["phone_key"] == by_id[original]["phone_key"]
    assert all(r["phone_key"] is None or r["phone_key"].startswith("+") for r in table)


def test_precision_and_recall_on_known_duplicates(capsys: pytest.CaptureFixture[str]):
    """Variants: phone formats, e-mail case and domain typos, traditional characters,
    name typos and spacing, company suffixes, long city names, swapped city/province,
    missing fields. Target: precision ≥ 0.95, recall ≥ 0.90."""
    data = with_duplicates(5000, share=0.1, seed=3)
    result = match(data.records, threshold=0.3)
    scores = pair_scores(result.pairs, data.truth, 0.5)
    with capsys.disabled():
        print(f"\nduplicates: precision {scores['precision']:.4f}, recall "
              f"{scores['recall']:.4f} ({scores['predicted']} predicted, "
              f"{scores['true_pairs']} true pairs)")
    assert scores["precision"] >= 0.95
    assert scores["recall"] >= 0.90
    # The trained model can be reused without training again.
    again = match(data.records, threshold=0.5, model=result.model)
    assert pair_scores(again.pairs, data.truth, 0.5) == scores
    # a threshold of 1 (the API allows it) is an infinite match weight to splink
    certain = match(data.records, threshold=1.0, model=result.model).pairs
    assert all(p >= 1.0 for p in certain["match_probability"].to_pylist())


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
