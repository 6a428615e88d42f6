"""Finding records of the same customer: a Fellegi-Sunter model (splink) trained on the
customers themselves.

Records are reduced to comparison keys (``keys.py``: cleaned e-mail and phone, name
spellings in pinyin and with nicknames, company names without place and branch, normalised
addresses, city and province, company profile). ``BLOCKING`` says which pairs are
compared; ``_settings`` how each field agrees, as a ladder of levels. Training needs no
labels: the prior from pairs sharing an e-mail or a phone, u from random pairs, m by
expectation maximisation on pairs sharing a personal e-mail or a name and birth date.
Agreement on rare values weighs more (leave-one-out term frequencies, ``scoring``), and a
pair whose names disagree outright is capped below the threshold unless it shares a
personal e-mail (``scoring.NAMES_DISAGREE_CAP``). The saved model scores single pairs
later (``scoring.Scorer``: arrivals, explanations).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tierwise.errors import TierwiseError
from tierwise.identity.keys import comparison_table
from tierwise.identity.scoring import (
    FIELDS,
    capped,
    frequencies_path,
    ladder,
    model_path,
    register_frequencies,
    scorer,
    term_frequencies,
)

if TYPE_CHECKING:
    from tierwise.workspace import Workspace


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
    blocking: dict[str, int]  # pairs each blocking rule makes
    frequencies: pa.Table  # column, value, tf of the records (``scoring.term_frequencies``)


def _backend(engine: str, table: pa.Table) -> tuple[Any, Any]:
    """splink's database API for the workspace's engine, and the registered input."""
    if engine == "spark":
        from splink import SparkAPI

        from tierwise.engines.spark import spark_session

        spark = spark_session()
        spark_api = SparkAPI(spark_session=spark, break_lineage_method="persist")
        # The schema is given: a column with no value at all (no abbreviated names) would
        # otherwise come through pandas without a type.
        ddl = ", ".join(f"`{f.name}` {'array<string>' if pa.types.is_list(f.type) else 'string'}"
                        for f in table.schema)
        return spark_api, spark_api.register(spark.createDataFrame(table.to_pandas(),
                                                                   schema=ddl))
    from splink import DuckDBAPI

    from tierwise.engines.duckdb import separate_database

    duck_api = DuckDBAPI(connection=separate_database())
    return duck_api, duck_api.register(table)


def _settings() -> Any:
    """The comparisons (each a ladder of levels, best first) and the blocking rules."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator

    # Each level is labelled with a code of ``LEVELS`` (the words people read).
    def ladder(name: str, column: str, *levels: Any) -> Any:
        return cl.CustomComparison(output_column_name=name, comparison_levels=[
            cll.NullLevel(column).configure(label_for_charts="missing"), *levels,
            cll.ElseLevel().configure(label_for_charts="different")])

    def exact(column: str, label: str = "same", tf: bool = True) -> Any:
        return cll.ExactMatchLevel(column, term_frequency_adjustments=tf).configure(
            label_for_charts=label)

    def similar(column: str, threshold: float) -> Any:
        return cll.JaroWinklerLevel(column, threshold).configure(
            label_for_charts=f"similar_{threshold}")

    def shared(column: str, label: str) -> Any:
        return cll.ArrayIntersectLevel(column, 1).configure(label_for_charts=label)

    def near(column: str, edits: int, prefix: int, shortest: int = 0) -> Any:
        # The edit distance is the dear part of a comparison: most pairs that are compared
        # at all (and all the random pairs that estimate u) already differ in the first
        # characters, which is cheap to check first.
        # (DuckDB evaluates both sides of an AND; a CASE skips the THEN for rows it rejects.)
        left, right = f"{column}_l", f"{column}_r"
        long_enough = f" AND length({left}) >= {shortest}" if shortest else ""
        return cll.CustomLevel(
            f"CASE WHEN substr({left}, 1, {prefix}) = substr({right}, 1, {prefix})"
            f"{long_enough} THEN damerau_levenshtein({left}, {right}) <= {edits} "
            "ELSE FALSE END", label_for_charts=f"edits_{edits}")

    comparisons = [
        ladder("name", "name_key", exact("name_key"),
               exact("name_canonical", "same_spelling"), shared("name_forms", "nickname"),
               similar("name_key", 0.9), cll.CustomLevel(
                   "array_length(array_intersect(name_initials_l, name_abbreviated_r)) > 0 "
                   "OR array_length(array_intersect(name_abbreviated_l, name_initials_r)) > 0",
                   label_for_charts="initials"),
               # A typo, not a likeness: Jaro-Winkler rates "jordanwells" and "jordanstone"
               # (two colleagues) 0.8 for the first name they share.
               near("name_key", 1, 1), near("name_key", 2, 1, shortest=6)),
        ladder("email", "email_key", exact("email_key"),
               exact("email_user", "same_user"), near("email_key", 2, 2)),
        ladder("phone", "phone_key", exact("phone_key"), near("phone_key", 1, 6)),
        ladder("city", "city_key", exact("city_key"), shared("region_keys", "regions")),
        ladder("birth_date", "birth_date", exact("birth_date", tf=False),
               near("birth_date", 1, 2)),
        ladder("gender", "gender", exact("gender", tf=False)),
        ladder("address", "address_key", exact("address_key"), similar("address_key", 0.9)),
        ladder("firm", "industry_key", cll.And(
            cll.ExactMatchLevel("industry_key"), cll.ExactMatchLevel("size_key")).configure(
                label_for_charts="same_industry_size"),
            exact("industry_key", "same_industry", tf=False)),
    ]
    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking_rules(),
        retain_intermediate_calculation_columns=False,
    )


#: Which pairs are compared at all: each rule pairs the records that agree on all its keys
#: (a list key — the spellings of a name — pairs records that share any element). Each
#: rule's pair count is logged and returned with the result (``blocking_counts``).
BLOCKING: tuple[tuple[str, ...], ...] = (
    ("email_key",), ("phone_key",), ("email_user",), ("address_key",), ("company_key",),
    ("name_key", "city_key"), ("name_key", "birth_date"), ("name_key", "gender"),
    ("birth_date", "city_key"), ("name_forms", "city_key"), ("name_forms", "birth_date"),
)
_LIST_KEYS = {"name_forms"}


def blocking_rules() -> list[Any]:
    """``BLOCKING`` as splink rules."""
    from splink import block_on

    return [block_on(*keys, arrays_to_explode=[k for k in keys if k in _LIST_KEYS] or None)
            for keys in BLOCKING]


def blocking_counts(table: pa.Table) -> dict[str, int]:
    """How many pairs each blocking rule makes on a comparison table (pairs made by
    earlier rules counted again; a list key counts a pair once per shared element)."""
    counts = {}
    for keys in BLOCKING:
        columns = {k: table[k] for k in keys}
        for k in keys:
            if k in _LIST_KEYS:  # one row per element of the list
                parents = pc.list_parent_indices(table[k])
                columns = {c: pc.list_flatten(table[c]) if c == k else pc.take(v, parents)
                           for c, v in columns.items()}
        flat = pa.table(columns)
        for k in keys:
            flat = flat.filter(pc.is_valid(flat[k]))
        sizes = flat.group_by(list(keys)).aggregate([([], "count_all")])["count_all"]
        sizes = pc.cast(sizes, pa.int64())
        counts[" & ".join(keys)] = int(pc.sum(pc.divide(pc.multiply(
            sizes, pc.subtract(sizes, 1)), 2)).as_py() or 0)
    logging.getLogger(__name__).info("pairs per blocking rule: %s", counts)
    return counts


#: The least m (share of true duplicates) and u (share of other pairs) a level may have.
#: A level the training data never showed — no duplicate with two different birth dates,
#: no random pair on the nickname level — gets no estimate, and splink weighs it 0, so a
#: different birth date would count for nothing; a floor makes it rare, not impossible.
M_FLOOR, U_FLOOR = 0.005, 5e-7


#: How often a true duplicate stands on each level of each ladder when the data cannot say
#: (a population with no duplicates yet to learn from: EM then fits coincidences, such as
#: two people who share a name and a birth date, and learns that duplicates rarely share a
#: phone). Rough shares from the duplicates of CRM exports; every field's sum is 1.
PRIOR_M: dict[str, dict[str, float]] = {
    "name": {"same": 0.55, "same_spelling": 0.1, "nickname": 0.03, "similar_0.9": 0.1,
             "initials": 0.02, "edits_1": 0.1, "edits_2": 0.03, "different": 0.07},
    "email": {"same": 0.6, "same_user": 0.1, "edits_2": 0.05, "different": 0.25},
    "phone": {"same": 0.6, "edits_1": 0.05, "different": 0.35},
    "city": {"same": 0.85, "regions": 0.05, "different": 0.1},
    "birth_date": {"same": 0.9, "edits_1": 0.05, "different": 0.05},
    "gender": {"same": 0.97, "different": 0.03},
    "address": {"same": 0.6, "similar_0.9": 0.2, "different": 0.2},
    "firm": {"same_industry_size": 0.8, "same_industry": 0.1, "different": 0.1},
}


def _sane(model: dict[str, Any]) -> dict[str, Any]:
    """The trained model with ``PRIOR_M`` in place of what training got backwards: a field
    whose top level (agreeing exactly) is not more common among duplicates than its last
    (different) was not learnt from duplicates."""
    for comparison in model["comparisons"]:
        levels = ladder(comparison)
        top, last = (lv.get("m_probability") or 0.0 for lv in (levels[0], levels[-1]))
        if top <= last:
            prior = PRIOR_M[comparison["output_column_name"]]
            for level in levels:
                level["m_probability"] = prior[level["label_for_charts"]]
    return model


def _floored(model: dict[str, Any]) -> dict[str, Any]:
    """The trained model with missing or zero m and u values raised to the floors (each
    comparison's m values then scaled to sum to 1 again)."""
    for comparison in model["comparisons"]:
        levels = ladder(comparison)
        for level in levels:
            level["m_probability"] = max(level.get("m_probability") or 0.0, M_FLOOR)
            level["u_probability"] = max(level.get("u_probability") or 0.0, U_FLOOR)
        total = sum(lv["m_probability"] for lv in levels)
        for level in levels:
            level["m_probability"] /= total
    return model


def match(records: pa.Table, threshold: float = 0.5, phone_region: str = "CN",
          model: dict[str, Any] | None = None, engine: str = "duckdb") -> MatchResult:
    """Scored candidate pairs of records that may be the same customer."""
    from splink import Linker, block_on

    table = comparison_table(records, phone_region)
    api, frame = _backend(engine, table)
    settings: Any = model or _settings()
    logging.getLogger("splink").setLevel(logging.ERROR)  # training chatter is not news
    linker = Linker(frame, settings, log_level=None)
    if model is None:
        if _shares_contact(table):  # else the estimate is 0: keep splink's small default
            linker.training.estimate_probability_two_random_records_match(
                [block_on("email_key"), block_on("phone_key")], recall=0.7)
        linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1, num_chunks=1)
        from splink.internals.exceptions import EMTrainingException

        # EM learns how true duplicates differ from the pairs in a block; the blocks must
        # stay small (EM on a single low-cardinality column such as the city pairs up every
        # two customers of a city: it filled the disk on 1M records), and must not be full
        # of look-alikes: pairs sharing a phone or an address are often a family or a
        # switchboard, which taught the model that a wholly different name is common among
        # duplicates. A personal e-mail, or the name with the birth date, is shared by few
        # people who are not the same customer.
        for rule in (block_on("email_key"), block_on("name_key", "birth_date")):
            before = linker.misc.save_model_to_json()
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(rule)
            except EMTrainingException:
                # No pairs share this block (data without duplicates yet): the m values
                # keep their estimates from the other blocks, or splink's defaults. (A
                # failed session leaves the comparisons it set aside out of the linker's
                # settings: start again from the model as it was.)
                linker = Linker(frame, before, log_level=None)
        linker = Linker(frame, _floored(_sane(linker.misc.save_model_to_json())),
                        log_level=None)
    frequencies = term_frequencies(table)
    register_frequencies(linker, api, frequencies)
    # splink filters on the match weight, log2(p / (1 - p)), which is infinite at p = 1
    # (its SQL then names a column "inf"): ask for a little less, keep the exact threshold
    asked = min(threshold, 1 - 1e-9)
    predictions = linker.inference.predict(threshold_match_probability=asked)
    pairs = capped(pa.Table.from_pandas(predictions.as_pandas_dataframe()[
        ["unique_id_l", "unique_id_r", "match_probability", "gamma_name", "gamma_email"]],
        preserve_index=False) if engine == "spark" else predictions.as_duckdbpyrelation().select(
        "unique_id_l, unique_id_r, match_probability, gamma_name, gamma_email"
    ).to_arrow_table())
    pairs = pairs.filter(pc.greater_equal(pairs["match_probability"], threshold))
    return MatchResult(pairs, linker.misc.save_model_to_json(), blocking_counts(table),
                       frequencies)


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


def _current(model: dict[str, Any]) -> bool:
    """Whether a saved model compares what this version compares (older ones are
    retrained: they lack fields such as the address)."""
    return {c["output_column_name"] for c in model.get("comparisons", [])} == set(FIELDS)


def find_duplicates(ws: Workspace, threshold: float = 0.5, retrain: bool = False,
                    only: set[str] | None = None) -> tuple[pa.Table, bool]:
    """Scored pairs among the workspace's customers with the saved model (trained and saved
    on first use, with ``retrain``, or when saved by an older version); ``only`` keeps pairs
    that touch those ids. Returns the pairs and whether a saved model was reused."""
    path = model_path(ws.root)
    model = None if retrain or not path.exists() else json.loads(
        path.read_text(encoding="utf-8"))
    if model is not None and not _current(model):
        model = None
    result = match(ws.table("customers"), threshold, ws.config.phone_region, model,
                   ws.config.engine)
    path.parent.mkdir(exist_ok=True)
    pq.write_table(result.frequencies, frequencies_path(ws.root))
    path.write_text(json.dumps(result.model, ensure_ascii=False, indent=1), encoding="utf-8")
    pairs = result.pairs
    if only is not None:
        wanted = pa.array(sorted(only), pa.string())
        pairs = pairs.filter(pc.or_(pc.is_in(pairs["unique_id_l"], wanted),
                                    pc.is_in(pairs["unique_id_r"], wanted)))
    return pairs, model is not None


def explain(ws: Workspace, left_id: str, right_id: str) -> dict[str, Any]:
    """Why two customers may or may not be the same: the prior, each field's match weight
    with the level it reached, and the probability. Holds no personal data (the records
    themselves are read through the masked customer view)."""
    from tierwise.errors import NotFoundError
    from tierwise.store import customers as customer_store

    with ws.control.read() as conn:
        rows = {cid: customer_store.get(conn, cid) for cid in (left_id, right_id)}
    for cid, row in rows.items():
        if row is None:
            raise NotFoundError(f"no customer {cid}", zh=f"没有客户 {cid}")
    if left_id == right_id:
        raise TierwiseError("a customer is compared with another one, not with itself",
                            zh="请选择两个不同的客户进行比较")
    result = scorer(ws.root).score([rows[left_id] or {}], [rows[right_id] or {}],
                                   ws.config.phone_region)[0]
    return {**result, "left_id": left_id, "right_id": right_id,
            "fields": [vars(f) for f in result["fields"]]}
