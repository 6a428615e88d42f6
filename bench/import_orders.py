"""Import of a 10M-row orders CSV: rows/s and peak RSS, against pandas in the same run.

    python bench/import_orders.py [--rows 10000000] [--repeat 3] [--shuffled]
                                  [--baseline COMMIT]

The orders are numbered in the order of the file (an export sorted by its key); with
``--shuffled`` the same rows come in a random order, so no shortcut for sorted keys applies.

With ``--baseline`` the import of that commit's source (checked out once with ``git
worktree`` into ``bench/out/baseline-<commit>``, imported through ``PYTHONPATH``) runs
alternately with this checkout's, one run each in turn.

The baseline is ``pandas.read_csv(path).to_parquet(out)`` on the same file: the plain
"load it and write Parquet" a user would otherwise do, without tierwise's parsing of
dates and amounts, validation, duplicate and reference checks or the manifest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENVIRONMENT, OUT, ROOT, baseline_source, measure, median, python, report  # noqa: E402

TIERWISE = """
import sys, tierwise
ws = tierwise.open(sys.argv[1])
r = ws.import_file("orders", sys.argv[2])
assert r.inserted == int(sys.argv[3]), r.summary()
"""
PANDAS = """
import sys, pandas as pd
pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2])
"""


def shuffle_csv(source: Path, path: Path) -> None:
    """The rows of ``source`` in a random order (fixed seed)."""
    table = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in ("order_id", "customer_id", "ordered_at",
                                               "amount", "status", "category")}))
    order = np.random.default_rng(7).permutation(table.num_rows)
    pacsv.write_csv(table.take(order), path)


def make_csv(path: Path, rows: int, customers: int) -> None:
    """Orders with ISO timestamps, two-decimal amounts and a status, written in chunks."""
    rng = np.random.default_rng(42)
    chunk = 1_000_000
    with pacsv.CSVWriter(path, pa.schema([
        ("order_id", pa.string()), ("customer_id", pa.string()), ("ordered_at", pa.string()),
        ("amount", pa.string()), ("status", pa.string()), ("category", pa.string()),
    ])) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            seconds = 1_700_000_000 + rng.integers(0, 60_000_000, n)
            stamps = pa.array(seconds * 1_000_000, pa.int64()).cast(pa.timestamp("us"))
            writer.write_table(pa.table({
                "order_id": [f"O{i:09d}" for i in range(start, start + n)],
                "customer_id": [f"C{c:07d}" for c in rng.integers(0, customers, n)],
                "ordered_at": pa.compute.strftime(stamps, "%Y-%m-%d %H:%M:%S"),
                "amount": pa.array(np.round(rng.gamma(2, 150, n), 2)).cast(pa.string()),
                "status": rng.choice(["paid", "refunded", "cancelled"], n, p=[.94, .04, .02]),
                "category": rng.choice(["books", "music", "video", "games"], n),
            }))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=None,
                        help="a commit whose import runs alternately with this checkout's")
    parser.add_argument("--shuffled", action="store_true",
                        help="the same rows in a random order (keys not ascending)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    csv = OUT / f"orders_{args.rows}.csv"
    if not csv.exists():
        make_csv(csv, args.rows, args.customers)
    if args.shuffled:
        sorted_csv, csv = csv, OUT / f"orders_{args.rows}_shuffled.csv"
        if not csv.exists():
            shuffle_csv(sorted_csv, csv)
    customers = OUT / f"customers_{args.customers}.parquet"
    if not customers.exists():
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"customer_id": [f"C{c:07d}" for c in range(args.customers)]}),
                       customers)
    sides = {"this": ROOT / "src"}
    if args.baseline:
        sides = {"baseline": baseline_source(args.baseline), **sides}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    base = []
    for _ in range(args.repeat):
        for name, source in sides.items():
            env = {**ENVIRONMENT, "PYTHONPATH": str(source)}
            ws = OUT / "ws-import"
            shutil.rmtree(ws, ignore_errors=True)
            measure(python("import sys, tierwise; ws = tierwise.init(sys.argv[1]); "
                           "ws.import_file('customers', sys.argv[2])", str(ws), str(customers)),
                    env=env)
            runs[name].append(measure(python(TIERWISE, str(ws), str(csv), str(args.rows)),
                                      env=env))
        base.append(measure(python(PANDAS, str(csv), str(OUT / "pandas.parquet"))))
    t_base = median([s for s, _ in base])
    row: dict[str, object] = {
        "rows": args.rows, "order": "shuffled" if args.shuffled else "by key",
        "file_mb": round(csv.stat().st_size / 1e6)}
    for name, done in runs.items():
        prefix = "tierwise" if name == "this" else f"baseline_{args.baseline}"
        seconds = median([s for s, _ in done])
        row |= {f"{prefix}_seconds": [round(s, 2) for s, _ in done],
                f"{prefix}_rows_per_s": round(args.rows / seconds),
                f"{prefix}_peak_rss_mb": round(max(m for _, m in done))}
    t_ours = median([s for s, _ in runs["this"]])
    row |= {"pandas_seconds": [round(s, 2) for s, _ in base],
            "pandas_rows_per_s": round(args.rows / t_base),
            "pandas_peak_rss_mb": round(max(m for _, m in base)),
            "speed_ratio_tierwise_over_pandas": round(t_base / t_ours, 2)}
    if args.baseline:
        row["ratio_seconds_this_over_baseline"] = round(
            t_ours / median([s for s, _ in runs["baseline"]]), 2)
    report("import_orders_csv", [row])

if __name__ == "__main__":
    main()
