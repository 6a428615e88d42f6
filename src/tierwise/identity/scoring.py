"""Scoring given pairs of records with the saved model, and explaining a score.

The scan (``match.find_duplicates``) trains the model on all customers and saves it with
the term frequencies it was trained on (how often each name, phone, e-mail, city and
address occurs), so a pair scored later — a customer arriving through the API, a reviewer
asking why — weighs a common name such as 王伟 as little as the scan did.

A loaded scorer is kept per workspace while the saved model does not change.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tierwise.engines.duckdb import separate_database
from tierwise.errors import TierwiseError
from tierwise.identity.keys import RECORD_COLUMNS, comparison_table

#: Columns whose agreement is weighed by how rare the agreeing value is.
TF_COLUMNS = ("name_key", "name_canonical", "email_key", "email_user", "phone_key",
              "city_key", "address_key")

#: The highest probability of a pair whose names disagree outright (the last level of the
#: name ladder) and who do not share a personal e-mail: families share a phone and an
#: address, colleagues a switchboard, and neither is the same customer however much else
#: agrees. Such a pair never reaches the default threshold; a reviewer can still merge the
#: two by hand. (The e-mail ladder's top two levels — same address, same user — are
#: gamma 3 and 2.)
NAMES_DISAGREE_CAP = 0.3
_SAME_EMAIL_USER = 2

FIELDS = ("name", "email", "phone", "city", "birth_date", "gender", "address", "firm")


def model_path(root: Path) -> Path:
    return root / "identity" / "model.json"


def frequencies_path(root: Path) -> Path:
    return root / "identity" / "frequencies.parquet"


def term_frequencies(table: pa.Table) -> pa.Table:
    """column, value, tf for each value of ``TF_COLUMNS``: the chance that a record other
    than one holding the value holds it too, (count − 1) / (records − 1), at least
    1 / records. (The share of all records, count / records, counts the record itself: a
    value only two records hold would look twice as common as it is to the other one.)"""
    parts = []
    n = max(table.num_rows, 2)
    for column in TF_COLUMNS:
        counts = pc.value_counts(pc.drop_null(table[column]))
        others = pc.max_element_wise(pc.subtract(pc.cast(counts.field("counts"), pa.float64()),
                                                 1.0), 1.0)
        parts.append(pa.table({
            "column": pa.array([column] * len(counts), pa.string()),
            "value": counts.field("values"),
            "tf": pc.divide(others, n - 1),
        }))
    return pa.concat_tables(parts)


def register_frequencies(linker: Any, api: Any, frequencies: pa.Table) -> None:
    """Give a splink linker ``frequencies`` instead of the shares it would compute."""
    for column in TF_COLUMNS:
        rows = frequencies.filter(pc.equal(frequencies["column"], column))
        lookup = pa.table({column: rows["value"], f"tf_{column}": rows["tf"]})
        linker.table_management.register_term_frequency_lookup(api.register(lookup), column)


def capped(pairs: pa.Table) -> pa.Table:
    """Predictions (unique_id_l, unique_id_r, match_probability, gamma_name, gamma_email)
    with ``NAMES_DISAGREE_CAP`` applied (gamma 0 is the name ladder's last level)."""
    disagree = pc.and_(pc.equal(pairs["gamma_name"], 0),
                       pc.less(pairs["gamma_email"], _SAME_EMAIL_USER))
    probability = pc.if_else(disagree, pc.min_element_wise(pairs["match_probability"],
                                                           NAMES_DISAGREE_CAP),
                             pairs["match_probability"])
    return pa.table({"unique_id_l": pairs["unique_id_l"], "unique_id_r": pairs["unique_id_r"],
                     "match_probability": pc.cast(probability, pa.float64())})


#: The levels of the comparison ladders (``match._settings`` labels each with its code), in
#: the dashboard's languages.
LEVELS: dict[str, tuple[str, str]] = {
    "missing": ("一方或双方缺失", "missing on one side or both"),
    "same": ("完全相同", "the same"),
    "same_spelling": ("同名的另一种写法（拼音、顺序、去掉城市或分支）",
                      "the same name in pinyin, another order, or without place and branch"),
    "nickname": ("昵称或名字的其他形式", "a nickname or another form of the name"),
    "initials": ("首字母一致", "initials agree"),
    "similar_0.9": ("几乎相同（相似度 ≥ 0.9）", "nearly the same (similarity ≥ 0.9)"),
    "same_user": ("用户名相同、域名不同", "the same user at another domain"),
    "edits_1": ("相差一个字符（错字，或两个字符颠倒）",
                "one character apart (a typo, or two characters swapped)"),
    "edits_2": ("相差不超过两个字符", "at most two characters apart"),
    "regions": ("城市与省份填反但一致", "city and province agree across the two columns"),
    "same_industry_size": ("行业与规模相同", "the same industry and size"),
    "same_industry": ("行业相同", "the same industry"),
    "different": ("不同", "different"),
}
FIELD_WORDS: dict[str, tuple[str, str]] = {
    "name": ("姓名", "name"), "email": ("邮箱", "e-mail"), "phone": ("电话", "phone"),
    "city": ("城市", "city"), "birth_date": ("生日", "birth date"),
    "gender": ("性别", "gender"), "address": ("地址", "address"),
    "firm": ("企业信息", "company profile"),
}


def describe(code: str, lang: str) -> str:
    """A level code (or field name) in words."""
    words = LEVELS.get(code) or FIELD_WORDS.get(code) or (code, code)
    return words[0] if lang.startswith("zh") else words[1]


@dataclass(frozen=True)
class FieldWeight:
    field: str
    level: str  # the rung of the field's ladder the pair is on (a code of ``LEVELS``)
    reason: str  # the level in words
    weight: float  # log2 Bayes factor: > 0 speaks for the same customer, < 0 against
    rarity: float  # the part of ``weight`` from how rare the agreeing value is


def ladder(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """A saved comparison's levels without its null level, best first."""
    return [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]


def _labels(model: dict[str, Any]) -> dict[str, dict[int, str]]:
    """For each comparison, its levels' labels by gamma (splink numbers the levels that
    are not the null level from the top down to 0; the null level is -1)."""
    out: dict[str, dict[int, str]] = {}
    for comparison in model["comparisons"]:
        real = ladder(comparison)
        labels = {-1: "missing"}
        for rank, level in enumerate(real):
            labels[len(real) - 1 - rank] = str(level.get("label_for_charts") or
                                               level["sql_condition"])
        out[comparison["output_column_name"]] = labels
    return out


class _Lookup:
    """Term frequencies by value, for scoring a few records without joining the tables:
    the values held by three records or more, sorted, searched by bisection (the others
    have the floor, 1 / (records − 1))."""

    def __init__(self, frequencies: pa.Table | None) -> None:
        self.floor: float | None = None
        self.values: dict[str, tuple[list[str], list[float]]] = {}
        if frequencies is None or frequencies.num_rows == 0:
            return
        self.floor = float(pc.min(frequencies["tf"]).as_py())
        common = frequencies.filter(pc.greater(frequencies["tf"], self.floor * 1.5))
        for column in TF_COLUMNS:
            rows = common.filter(pc.equal(common["column"], column)).sort_by("value")
            self.values[column] = (rows["value"].to_pylist(), rows["tf"].to_pylist())

    def of(self, column: str, value: str | None) -> float | None:
        if value is None or self.floor is None:
            return None
        keys, tfs = self.values.get(column, ([], []))
        at = bisect.bisect_left(keys, value)
        return tfs[at] if at < len(keys) and keys[at] == value else self.floor


class Scorer:
    """The saved model, ready to score pairs of customer-shaped records."""

    def __init__(self, model: dict[str, Any], frequencies: pa.Table | None) -> None:
        from splink import DuckDBAPI, Linker

        logging.getLogger("splink").setLevel(logging.ERROR)
        self.model = model
        self.labels = _labels(model)
        self._lock = threading.Lock()  # one DuckDB connection: one query at a time
        self._api = DuckDBAPI(connection=separate_database("256MB"))
        empty = comparison_table(pa.table({"customer_id": pa.array([], pa.string())}))
        self._linker = Linker(self._api.register(empty), model, log_level=None)
        self._frequencies = _Lookup(frequencies)

    def score(self, left: list[dict[str, Any]], right: list[dict[str, Any]],
              phone_region: str = "CN") -> list[dict[str, Any]]:
        """Each pair of a left and a right record, with ``match_probability`` (capped) and
        ``fields`` (a ``FieldWeight`` per compared field)."""
        if not left or not right:
            return []
        def keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            trimmed = [{c: r.get(c) for c in RECORD_COLUMNS} for r in rows]
            keyed = comparison_table(pa.Table.from_pylist(trimmed), phone_region).to_pylist()
            for row in keyed:  # given with the records, splink joins no lookup table
                for column in TF_COLUMNS:
                    row[f"tf_{column}"] = self._frequencies.of(column, row[column])
            return keyed

        keys_left, keys_right = keys(left), keys(right)
        with self._lock:
            rows = self._linker.inference.score_pairs(keys_left, keys_right).as_record_list()
        prior = self.model["probability_two_random_records_match"]
        limited = capped(pa.Table.from_pylist([
            {k: row[k] for k in ("unique_id_l", "unique_id_r", "match_probability",
                                 "gamma_name", "gamma_email")} for row in rows]))
        out = []
        for row, probability in zip(rows, limited["match_probability"].to_pylist(),
                                    strict=True):
            levels = [self.labels[name].get(int(row[f"gamma_{name}"]), "?")
                      for name in FIELDS]
            fields = [FieldWeight(
                name, level, describe(level, "en"),
                float(row[f"mw_{name}"] or 0) + float(row.get(f"mw_tf_adj_{name}") or 0),
                float(row.get(f"mw_tf_adj_{name}") or 0))
                for name, level in zip(FIELDS, levels, strict=True)]
            out.append({"left_id": row["unique_id_l"], "right_id": row["unique_id_r"],
                        "match_probability": probability,
                        "capped": probability < float(row["match_probability"]),
                        "prior_weight": math.log2(prior / (1 - prior)),
                        "match_weight": float(row["match_weight"]), "fields": fields})
        return out


_cache: dict[Path, tuple[float, Scorer]] = {}
_cache_lock = threading.Lock()


def scorer(root: Path) -> Scorer:
    """The workspace's saved model as a ``Scorer`` (loaded again when the scan retrains)."""
    path = model_path(root)
    if not path.exists():
        raise TierwiseError(
            "no matching model yet: run a duplicate scan first (`tierwise duplicates`), "
            "it trains the model on the customers",
            zh="尚无匹配模型：请先运行一次重复客户扫描（`tierwise duplicates`），"
               "它会用现有客户训练模型")
    stamp = path.stat().st_mtime
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    freq_file = frequencies_path(root)
    loaded = Scorer(json.loads(path.read_text(encoding="utf-8")),
                    pq.read_table(freq_file) if freq_file.exists() else None)
    with _cache_lock:
        _cache[path] = (stamp, loaded)
    return loaded
