"""Finding records of the same customer: deterministic rules plus a splink model.

Records are first reduced to comparison columns — cleaned e-mail and E.164 phone (the same
cleaners as imports use) and ``match_key`` forms of name, company and city (simplified
characters, no suffixes, no punctuation). Pairs that share an e-mail or a phone are always
candidates; a Fellegi-Sunter model (splink, on DuckDB) weighs name, phone, e-mail, city
and birth date, trained without labels (u by random sampling, m by EM on small blocks:
shared phone, shared e-mail, same name and birth date).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tierwise.ingest.cleaning import clean_email, clean_region, match_key, phone_cleaner


def comparison_table(records: pa.Table, phone_region: str = "CN") -> pa.Table:
    """The columns the matcher compares, one row per record."""
    phone = phone_cleaner(phone_region)
    rows = []
    for r in records.to_pylist():
        email = r.get("email")
        phone_value = r.get("phone")
        company = r.get("industry") is not None
        name = r.get("name")
        rows.append({
            "unique_id": r["customer_id"],
            "name_key": match_key(name, company=company),
            "email_key": clean_email(email)[0] if email else None,
            "phone_key": phone(phone_value)[0] if phone_value else None,
            "city_key": match_key(clean_region(r["city"])[0]) if r.get("city") else None,
            "birth_date": str(r["birth_date"]) if r.get("birth_date") else None,
        })
    return pa.Table.from_pylist(rows)


@dataclass
class MatchResult:
    pairs: pa.Table  # unique_id_l, unique_id_r, match_probability
    model: dict[str, Any]  # the trained splink settings (saved for reuse)


def match(records: pa.Table, threshold: float = 0.5, phone_region: str = "CN",
          model: dict[str, Any] | None = None) -> MatchResult:
    """Scored candidate pairs of records that may be the same customer."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    table = comparison_table(records, phone_region)
    api = DuckDBAPI()
    frame = api.register(table)
    settings: Any = model or SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("name_key", [0.95, 0.85]),
            cl.ExactMatch("email_key"),
            cl.ExactMatch("phone_key"),
            cl.ExactMatch("city_key"),
            cl.ExactMatch("birth_date"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("email_key"), block_on("phone_key"), block_on("name_key", "city_key"),
            block_on("name_key", "birth_date"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    logging.getLogger("splink").setLevel(logging.ERROR)  # training chatter is not news
    linker = Linker(frame, settings, log_level=None)
    if model is None:
        linker.training.estimate_probability_two_random_records_match(
            [block_on("email_key"), block_on("phone_key")], recall=0.8)
        linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("phone_key"))
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("email_key"))
        # Blocks must stay small: EM on a single low-cardinality column such as the city
        # pairs up every two customers of a city (tried: it filled the disk on 1M records).
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("name_key", "birth_date"))
    predictions = linker.inference.predict(threshold_match_probability=threshold)
    pairs = predictions.as_duckdbpyrelation().select(
        "unique_id_l, unique_id_r, match_probability").to_arrow_table()
    return MatchResult(pairs, linker.misc.save_model_to_json())


def pair_scores(pairs: pa.Table, truth: dict[str, str],
                threshold: float) -> dict[str, float]:
    """Pairwise precision and recall of predicted pairs at ``threshold`` against truth."""
    from collections import Counter

    predicted = {tuple(sorted((a, b))) for a, b, p in zip(
        pairs["unique_id_l"].to_pylist(), pairs["unique_id_r"].to_pylist(),
        pairs["match_probability"].to_pylist(), strict=True) if p >= threshold}
    sizes = Counter(truth.values())
    true_pairs = sum(n * (n - 1) // 2 for n in sizes.values())
    correct = sum(1 for a, b in predicted if truth.get(a) == truth.get(b))
    precision = correct / len(predicted) if predicted else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    return {"precision": precision, "recall": recall, "predicted": len(predicted),
            "true_pairs": true_pairs}
