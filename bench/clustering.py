"""Clustering 1M customers: features, choice of k, fit, profiles and rules.

``python bench/clustering.py [--features rfm,value,engagement]``

Workspace: bench/out/ws-seg (1M customers; built by bench/segments.py if missing). One child
process does the whole `tierwise clusters` path with k chosen automatically; its phases are
timed inside. Baseline in the same run: a bare MiniBatchKMeans fit with the chosen k on the
same transformed matrix (the floor any clustering of these rows pays).
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
import numpy as np
import tierwise
from sklearn.cluster import MiniBatchKMeans
from tierwise.insights.clustering import fit, transform
from tierwise.insights.features import customer_features

ws = tierwise.open(sys.argv[1])
groups = sys.argv[2].split(",")
t0 = time.perf_counter()
matrix = customer_features(ws, groups)
t1 = time.perf_counter()
result = fit(matrix.values, matrix.features, customer_ids=matrix.customer_ids)
t2 = time.perf_counter()
x = transform(matrix.values, matrix.features)
t3 = time.perf_counter()
MiniBatchKMeans(result.k, random_state=7, n_init=3, batch_size=4096).fit(x)
t4 = time.perf_counter()
json.dump({"rows": len(matrix.customer_ids), "features": len(matrix.features),
           "k": result.k, "curve": result.curve,
           "features_seconds": t1 - t0, "cluster_seconds": t2 - t1,
           "baseline_fit_seconds": t4 - t3,
           "rule_precision": [c.rule_precision for c in result.clusters],
           "rule_recall": [c.rule_recall for c in result.clusters],
           "names": [c.names["en"] for c in result.clusters]}, open(sys.argv[3], "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", default="rfm,value,engagement")
    args = parser.parse_args()
    ensure_workspace()
    target = OUT / "clustering.json"
    seconds, peak = measure(python(RUN, str(WS), args.features, str(target)))
    data = json.loads(target.read_text())
    total = data["features_seconds"] + data["cluster_seconds"]
    data.update(process_seconds=round(seconds, 1), peak_rss_mb=round(peak),
                total_seconds=round(total, 1),
                ratio_cluster_over_baseline_fit=round(
                    data["cluster_seconds"] / data["baseline_fit_seconds"], 1))
    report("clustering", [data])


if __name__ == "__main__":
    main()
