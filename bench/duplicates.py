"""Deduplicate 1M customer records (with known duplicates) on DuckDB: time and peak RSS.

    python bench/duplicates.py [--customers 900000] [--share 0.1]

Generates customers plus duplicates of about ``share`` of them (≈1M records for the
defaults), then runs the matcher in a child process: comparison keys, splink training,
prediction. Reports pairwise precision and recall against the known truth. The baseline
in the same run is the deterministic part alone (pairs sharing a cleaned e-mail or phone,
found with one DuckDB self-join), to show what the probabilistic model adds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure, python, report  # noqa: E402

RUN = """
import json, sys, time
import pyarrow.parquet as pq
from tierwise.identity.match import match, pair_scores
records = pq.read_table(sys.argv[1])
truth = json.load(open(sys.argv[2]))
t0 = time.perf_counter()
result = match(records, threshold=0.5)
seconds = time.perf_counter() - t0
json.dump({"seconds": seconds, **pair_scores(result.pairs, truth, 0.5)}, open(sys.argv[3], "w"))
"""

DETERMINISTIC = """
import json, sys, time, duckdb
import pyarrow.parquet as pq
from tierwise.identity.match import comparison_table, pair_scores
records = pq.read_table(sys.argv[1])
truth = json.load(open(sys.argv[2]))
t0 = time.perf_counter()
keys = comparison_table(records)
con = duckdb.connect()
con.register("k", keys)
# Two equi-joins and a UNION: an OR in the join condition forces a nested-loop join.
pairs = con.sql(
    "SELECT a.unique_id AS unique_id_l, b.unique_id AS unique_id_r, 1.0 AS match_probability "
    "FROM k a JOIN k b ON a.email_key = b.email_key AND a.unique_id < b.unique_id UNION "
    "SELECT a.unique_id, b.unique_id, 1.0 FROM k a JOIN k b ON a.phone_key = b.phone_key "
    "AND a.unique_id < b.unique_id").to_arrow_table()
seconds = time.perf_counter() - t0
json.dump({"seconds": seconds, **pair_scores(pairs, truth, 0.5)}, open(sys.argv[3], "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=900_000)
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    from tierwise.demo.duplicates import with_duplicates

    OUT.mkdir(exist_ok=True)
    records_path = OUT / f"dup-records-{args.customers}.parquet"
    truth_path = OUT / f"dup-truth-{args.customers}.json"
    if not records_path.exists():
        data = with_duplicates(args.customers, args.share, seed=11)
        pq.write_table(data.records, records_path)
        truth_path.write_text(json.dumps(data.truth))
    rows = pq.read_metadata(records_path).num_rows
    results = {}
    for name, code in (("splink", RUN), ("deterministic_only", DETERMINISTIC)):
        target = OUT / f"dup-{name}.json"
        seconds, peak = measure(python(code, str(records_path), str(truth_path), str(target)))
        results[name] = {**json.loads(target.read_text()), "process_seconds": round(seconds, 1),
                         "peak_rss_mb": round(peak)}
    report("duplicates", [{"records": rows, **results}])


if __name__ == "__main__":
    main()
