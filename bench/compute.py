"""`tierwise compute` on the 1M-customer workspace, against the same command of a baseline.

    python bench/compute.py [--baseline 0b1d0ae | --baseline none] [--repeat 3]
                            [--workspace bench/out/ws-seg] [--as-of 2026-06-30]

Each run is the whole command in a child process: start-up, the computation, the snapshot
written and registered, the summary printed; every run saves a snapshot in the workspace.
The default workspace is the one ``bench/segments.py`` builds (1.44M customers of which
437,000 contacts, 9M orders, 29.5M events).

The baseline (a commit; by default ``0b1d0ae``, the code before the statistics, fits and
economics of ``tierwise compute`` were reworked) runs the same command alternately with
this checkout's, one run each in turn, so that both see the machine in the same state:
its source is checked out once with ``git worktree`` into ``bench/out/baseline-<commit>``
and imported through ``PYTHONPATH`` (the dependencies are this environment's). Printed:
the seconds and peak RSS of every run, the medians and their ratio, and the last two
snapshots (one of each side) compared column by column — which columns are identical,
and for the others how many customers differ and by how much.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ENVIRONMENT, OUT, ROOT, baseline_source, measure, median, report  # noqa: E402

import tierwise  # noqa: E402
from tierwise.models.compute import list_snapshots  # noqa: E402


def run(source: Path, workspace: Path, as_of: str) -> tuple[float, float, Path]:
    """(seconds, peak RSS in MB, the snapshot it saved) of one ``tierwise compute``."""
    env = {**ENVIRONMENT, "PYTHONPATH": str(source)}
    seconds, peak = measure([sys.executable, "-m", "tierwise.cli.main", "compute", "-w",
                             str(workspace), "--as-of", as_of], env=env)
    ws = tierwise.open(workspace)
    try:
        latest = list_snapshots(ws)[-1]
    finally:
        ws.close()
    return seconds, peak, workspace / latest["path"]


def compare(before: Path, after: Path) -> dict[str, object]:
    """Which columns of two snapshots are identical; for the others, how many customers
    differ and the largest relative difference of a number."""
    a, b = pq.read_table(before), pq.read_table(after)
    if a["customer_id"].to_pylist() != b["customer_id"].to_pylist():
        return {"same_customers": False}
    identical: list[str] = []
    differing: dict[str, object] = {name: "only before" for name in a.column_names
                                    if name not in b.column_names}
    for name in b.column_names:
        if name == "as_of":
            continue
        if name not in a.column_names:
            differing[name] = "only after"
            continue
        old, new = a[name], b[name]
        if old.type != new.type:
            try:
                old = old.cast(new.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                differing[name] = f"type {a[name].type} → {new.type}"
                continue
        if old.equals(new):
            identical.append(name)
            continue
        if pa.types.is_floating(new.type):
            x = np.asarray(old.to_numpy(zero_copy_only=False), float)
            y = np.asarray(new.to_numpy(zero_copy_only=False), float)
            both = ~np.isnan(x) & ~np.isnan(y)
            changed = int(np.sum(both & (x != y)) + np.sum(np.isnan(x) != np.isnan(y)))
            scale = np.maximum(np.abs(x[both]), 1e-12)
            rel = float(np.max(np.abs(x[both] - y[both]) / scale)) if both.any() else 0.0
            differing[name] = {"customers": changed, "max_relative": float(f"{rel:.3g}")}
        else:
            same = pc.fill_null(pc.equal(old, new), False)
            both_null = pc.and_(pc.is_null(old), pc.is_null(new))
            changed = len(new) - pc.sum(pc.or_(same, both_null)).as_py()
            differing[name] = {"customers": changed}
    return {"same_customers": True, "identical": identical, "differing": differing}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, default=OUT / "ws-seg")
    parser.add_argument("--as-of", default="2026-06-30")
    parser.add_argument("--baseline", default="0b1d0ae",
                        help="a commit whose command runs alternately ('none': no baseline)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (args.workspace / "tierwise.toml").exists():
        sys.exit(f"{args.workspace} is not a workspace: `python bench/segments.py` builds "
                 "bench/out/ws-seg")
    baseline = None if args.baseline == "none" else args.baseline
    sides = {"this": ROOT / "src"}
    if baseline:
        sides = {"baseline": baseline_source(baseline), **sides}
    runs: dict[str, list[tuple[float, float, Path]]] = {name: [] for name in sides}
    for i in range(args.repeat):
        for name, source in sides.items():
            seconds, peak, snapshot = run(source, args.workspace, args.as_of)
            runs[name].append((seconds, peak, snapshot))
            print(f"run {i + 1} {name}: {seconds:.2f} s, peak {peak:,.0f} MB", flush=True)
    rows: list[dict[str, object]] = []
    for name, done in runs.items():
        rows.append({"code": name, "seconds": [round(s, 2) for s, _, _ in done],
                     "median_seconds": round(median([s for s, _, _ in done]), 2),
                     "peak_rss_mb": [round(m) for _, m, _ in done]})
    if baseline:
        ratio = median([s for s, _, _ in runs["this"]]) / median(
            [s for s, _, _ in runs["baseline"]])
        rows.append({"ratio_this_over_baseline": round(ratio, 2),
                     "snapshots": compare(runs["baseline"][-1][2], runs["this"][-1][2])})
    report("tierwise_compute", rows)


if __name__ == "__main__":
    main()
