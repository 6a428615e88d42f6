"""Churn model training on 1M customers: time and peak RSS.

``python bench/churn.py [--horizon 90]``

Workspace: bench/out/ws-seg (1M customers; built by bench/segments.py if missing). One child
process runs `tierwise churn`'s evaluation: features at two cutoffs, HistGradientBoosting
with isotonic calibration (3-fold), the BG/NBD and Pareto/NBD baselines, permutation
importance. Baseline in the same run: one bare HistGradientBoosting fit on the same
training matrix (what calibration and the reports add is the ratio).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure, python, report  # noqa: E402
from segments import WS, ensure_workspace  # noqa: E402

RUN = r"""
import json, sys, time
from datetime import timedelta
import tierwise
from sklearn.ensemble import HistGradientBoostingClassifier
from tierwise.insights import churn

ws = tierwise.open(sys.argv[1])
horizon = int(sys.argv[2])
t0 = time.perf_counter()
report, _ = churn.evaluate(ws, horizon)
t1 = time.perf_counter()
train = churn.dataset(ws, report.train_cutoff, horizon)
t2 = time.perf_counter()
HistGradientBoostingClassifier(max_iter=150, learning_rate=0.06, min_samples_leaf=40,
                               early_stopping=False, random_state=7).fit(train.x, train.churned)
t3 = time.perf_counter()
json.dump({"train_rows": report.train_rows, "test_rows": report.test_rows,
           "churn_rate": report.churn_rate, "model": report.model,
           "bgnbd": report.p_alive_baseline, "pareto": report.pareto_p_alive,
           "evaluate_seconds": t1 - t0, "dataset_seconds": t2 - t1,
           "baseline_fit_seconds": t3 - t2}, open(sys.argv[3], "w"), default=str)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizon", type=int, default=90)
    args = parser.parse_args()
    ensure_workspace()
    target = OUT / "churn.json"
    seconds, peak = measure(python(RUN, str(WS), str(args.horizon), str(target)))
    data = json.loads(target.read_text())
    data.update(process_seconds=round(seconds, 1), peak_rss_mb=round(peak),
                ratio_evaluate_over_bare_fit=round(
                    data["evaluate_seconds"] / data["baseline_fit_seconds"], 1))
    report("churn", [data])


if __name__ == "__main__":
    main()
