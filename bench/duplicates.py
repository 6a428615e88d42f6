"""Deduplicate generated customer records with known duplicates: accuracy, time, peak RSS.

    python bench/duplicates.py [--sizes 900000 5000] [--share 0.1]

For each size, generates customers plus duplicates of about ``share`` of them (≈1.08M
records for 900,000) with the hard variations of ``tierwise.demo.duplicates`` (pinyin and
nicknames, company prefixes and branches, landlines, addresses written differently,
transposed digits, no contact at all) and look-alike other people (a family sharing a
phone and an address, colleagues giving the switchboard). The matcher runs in a child
process: comparison keys, training, prediction. Reported: pairwise precision and recall
against the known truth at several thresholds (the precision–recall curve; 0.5 is the
default), recall per kind of duplicate, pairs per blocking rule, time and peak RSS.

The baseline in the same run is the deterministic rule alone (pairs sharing a cleaned
e-mail or phone, one DuckDB self-join each), to show what the probabilistic model adds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure, python, report  # noqa: E402

THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)

SCORE = """
def scores(pairs, truth, kinds):
    from collections import Counter, defaultdict
    from tierwise.identity.match import pair_scores
    curve = {str(t): pair_scores(pairs, truth, t) for t in THRESHOLDS}
    found = {tuple(sorted(p)) for p, q in zip(zip(pairs["unique_id_l"].to_pylist(),
             pairs["unique_id_r"].to_pylist()), pairs["match_probability"].to_pylist())
             if q >= 0.5}
    groups = defaultdict(list)
    for record, entity in truth.items():
        groups[entity].append(record)
    total, hit = Counter(), Counter()
    for members in groups.values():
        members.sort()
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                kind = kinds.get(b) or kinds.get(a) or "typed"
                total[kind] += 1
                hit[kind] += (a, b) in found
    return {"curve": curve, "recall_by_kind": {k: round(hit[k] / total[k], 4)
                                               for k in sorted(total)}}
"""

RUN = SCORE + """
import json, sys, time
import pyarrow.parquet as pq
from tierwise.identity.match import match
THRESHOLDS = json.loads(sys.argv[4])
records = pq.read_table(sys.argv[1])
data = json.load(open(sys.argv[2]))
t0 = time.perf_counter()
result = match(records, threshold=min(THRESHOLDS))
seconds = time.perf_counter() - t0
json.dump({"seconds": round(seconds, 1), "blocking": result.blocking,
           **scores(result.pairs, data["truth"], data["kinds"])}, open(sys.argv[3], "w"))
"""

DETERMINISTIC = SCORE + """
import json, sys, time, duckdb
import pyarrow.parquet as pq
from tierwise.identity.keys import comparison_table
THRESHOLDS = json.loads(sys.argv[4])
records = pq.read_table(sys.argv[1])
data = json.load(open(sys.argv[2]))
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
json.dump({"seconds": round(seconds, 1), **scores(pairs, data["truth"], data["kinds"])},
          open(sys.argv[3], "w"))
"""


def _records(customers: int, share: float) -> tuple[Path, Path]:
    from tierwise.demo.duplicates import with_duplicates

    # v2: the generator with hard variations and look-alikes (older files are not reused)
    records_path = OUT / f"dup2-records-{customers}.parquet"
    truth_path = OUT / f"dup2-truth-{customers}.json"
    if not records_path.exists():
        data = with_duplicates(customers, share, seed=11)
        pq.write_table(data.records, records_path)
        truth_path.write_text(json.dumps({"truth": data.truth, "kinds": data.kinds}))
    return records_path, truth_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[900_000, 5_000])
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    rows = []
    for customers in args.sizes:
        records_path, truth_path = _records(customers, args.share)
        row: dict[str, object] = {"customers": customers,
                                  "records": pq.read_metadata(records_path).num_rows}
        for name, code in (("model", RUN), ("baseline_shared_contact", DETERMINISTIC)):
            target = OUT / f"dup2-{name}-{customers}.json"
            seconds, peak = measure(python(code, str(records_path), str(truth_path),
                                           str(target), json.dumps(THRESHOLDS)))
            row[name] = {**json.loads(target.read_text()),
                         "process_seconds": round(seconds, 1), "peak_rss_mb": round(peak)}
        rows.append(row)
    report("duplicates", rows)


if __name__ == "__main__":
    main()
