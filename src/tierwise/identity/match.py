"""Finding records of the same customer: deterministic rules plus a splink model.

Records are first reduced to comparison columns — cleaned e-mail and E.164 phone (the same
cleaners as imports use) and ``match_key`` forms of name, company and city (simplified
characters, no suffixes, no punctuation). Pairs that share an e-mail or a phone are always
candidates; a Fellegi-Sunter model (splink, on DuckDB) weighs name, phone, e-mail, city
and birth date, trained without labels (u by random sampling, m by EM on small blocks:
shared phone, shared e-mail, same name and birth date).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.ingest.cleaning import clean_email, clean_region, match_key, phone_cleaner

if TYPE_CHECKING:
    from tierwise.workspace import Workspace


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


def _shares_contact(table: pa.Table) -> bool:
    """Whether any two records share a cleaned e-mail or phone."""
    for column in ("email_key", "phone_key"):
        values = pc.drop_null(table[column])
        if len(values) and pc.max(pc.value_counts(values).field("counts")).as_py() > 1:
            return True
    return False


@dataclass
class MatchResult:
    pairs: pa.Table  # unique_id_l, unique_id_r, match_probability
    model: dict[str, Any]  # the trained splink settings (saved for reuse)


def _backend(engine: str, table: pa.Table) -> tuple[Any, Any]:
    """splink's database API for the workspace's engine, and the registered input."""
    if engine == "spark":
        from splink import SparkAPI

        from tierwise.engines.spark import spark_session

        spark = spark_session()
        spark_api = SparkAPI(spark_session=spark, break_lineage_method="persist")
        return spark_api, spark_api.register(spark.createDataFrame(table.to_pandas()))
    from splink import DuckDBAPI

    duck_api = DuckDBAPI()
    return duck_api, duck_api.register(table)


def match(records: pa.Table, threshold: float = 0.5, phone_region: str = "CN",
          model: dict[str, Any] | None = None, engine: str = "duckdb") -> MatchResult:
    """Scored candidate pairs of records that may be the same customer."""
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on

    table = comparison_table(records, phone_region)
    _, frame = _backend(engine, table)
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
        if _shares_contact(table):  # else the estimate is 0: keep splink's small default
            linker.training.estimate_probability_two_random_records_match(
                [block_on("email_key"), block_on("phone_key")], recall=0.8)
        linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
        from splink.internals.exceptions import EMTrainingException

        # Blocks must stay small: EM on a single low-cardinality column such as the city
        # pairs up every two customers of a city (tried: it filled the disk on 1M records).
        for rule in (block_on("phone_key"), block_on("email_key"),
                     block_on("name_key", "birth_date")):
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(rule)
            except EMTrainingException:
                # No pairs share this block (data without duplicates yet): the m values
                # keep their estimates from the other blocks, or splink's defaults.
                continue
    # splink filters on the match weight, log2(p / (1 - p)), which is infinite at p = 1
    # (its SQL then names a column "inf"): ask for a little less, keep the exact threshold
    asked = min(threshold, 1 - 1e-9)
    predictions = linker.inference.predict(threshold_match_probability=asked)
    pairs = pa.Table.from_pandas(predictions.as_pandas_dataframe()[
        ["unique_id_l", "unique_id_r", "match_probability"]], preserve_index=False) \
        if engine == "spark" else predictions.as_duckdbpyrelation().select(
        "unique_id_l, unique_id_r, match_probability").to_arrow_table()
    if asked < threshold:
        pairs = pairs.filter(pc.greater_equal(pairs["match_probability"], threshold))
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


def model_path(root: Path) -> Path:
    return root / "identity" / "model.json"


def find_duplicates(ws: Workspace, threshold: float = 0.5, retrain: bool = False,
                    only: set[str] | None = None) -> tuple[pa.Table, bool]:
    """Scored pairs among the workspace's customers with the saved model (trained and saved
    on first use or with ``retrain``); ``only`` keeps pairs that touch those ids. Returns
    the pairs and whether a saved model was reused."""
    path = model_path(ws.root)
    model = None if retrain or not path.exists() else json.loads(
        path.read_text(encoding="utf-8"))
    result = match(ws.table("customers"), threshold, ws.config.phone_region, model,
                   ws.config.engine)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result.model, ensure_ascii=False, indent=1), encoding="utf-8")
    pairs = result.pairs
    if only is not None:
        wanted = pa.array(sorted(only), pa.string())
        pairs = pairs.filter(pc.or_(pc.is_in(pairs["unique_id_l"], wanted),
                                    pc.is_in(pairs["unique_id_r"], wanted)))
    return pairs, model is not None


def score_records(ws: Workspace, records: list[dict[str, Any]]
                  ) -> list[list[dict[str, Any]]]:
    """For each new record (not imported), the existing customers it may be, best first.

    Candidates are customers with the same e-mail, phone or name (through the search
    hashes, so this stays fast on a million customers); with a saved model each candidate
    gets its match probability, else the rule that found it.
    """
    from tierwise.store import customers as customer_store

    path = model_path(ws.root)
    model = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    phone = phone_cleaner(ws.config.phone_region)
    out: list[list[dict[str, Any]]] = []
    for record in records:
        found: dict[str, str] = {}
        with ws.control.read() as conn:
            for column in ("email", "phone", "name"):
                value = record.get(column)
                if not value:
                    continue
                value = (clean_email(value)[0] if column == "email" else
                         phone(value)[0] if column == "phone" else value)
                for cid in customer_store.find(conn, column, value)[:50]:
                    found.setdefault(cid, f"same {column}")
            rows = [customer_store.get(conn, cid) for cid in found]
        candidates = [r for r in rows if r is not None]
        if not candidates:
            out.append([])
            continue
        if model is None:
            out.append([{"customer_id": c["customer_id"], "found_by": found[c["customer_id"]],
                         "match_probability": None} for c in candidates])
            continue
        out.append(_score(model, record, candidates, found, ws.config.phone_region))
    return out


def _score(model: dict[str, Any], record: dict[str, Any], candidates: list[dict[str, Any]],
           found: dict[str, str], region: str) -> list[dict[str, Any]]:
    from splink import DuckDBAPI, Linker

    new = comparison_table(pa.Table.from_pylist([{**record, "customer_id": "_new"}]),
                           region).to_pylist()
    existing = comparison_table(pa.Table.from_pylist(
        [{k: c.get(k) for k in ("customer_id", "name", "email", "phone", "city", "birth_date",
                                 "industry")} for c in candidates]), region)
    logging.getLogger("splink").setLevel(logging.ERROR)
    api = DuckDBAPI()
    linker = Linker(api.register(existing), model, log_level=None)
    scored = linker.inference.score_pairs(new, existing.to_pylist()).as_record_list()
    ranked = sorted(({"customer_id": r["unique_id_r"], "found_by": found[r["unique_id_r"]],
                      "match_probability": float(r["match_probability"])} for r in scored),
                    key=lambda r: -r["match_probability"])
    return ranked
