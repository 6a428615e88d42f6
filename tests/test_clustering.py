"""Clustering: planted groups are recovered, profiles and names make sense, rules parse and
select the cluster, clusters can be saved as segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from tests.test_cli import tw

import tierwise
from tierwise.definitions.segment_parser import parse
from tierwise.insights.clustering import fit, save_as_segments
from tierwise.insights.features import FEATURES


def planted(n_per: int = 1500, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Four kinds of buyers: recent big spenders, lapsed one-timers, regular small
    spenders, and new customers; RFM and value features as a snapshot would hold them."""
    rng = np.random.default_rng(seed)
    groups = [  # recency, orders, revenue, p_alive
        (10, 25, 30_000, 0.95), (400, 1, 150, 0.10), (40, 10, 1_500, 0.80),
        (15, 2, 300, 0.70)]
    rows, truth = [], []
    for g, (recency, orders, revenue, alive) in enumerate(groups):
        r = rng.lognormal(np.log(recency), 0.3, n_per)
        o = np.maximum(1, np.round(rng.lognormal(np.log(orders), 0.2, n_per)))
        m = rng.lognormal(np.log(revenue), 0.3, n_per)
        a = np.clip(rng.normal(alive, 0.05, n_per), 0, 1)
        rows.append(np.column_stack([r, o, m, m / o, m * a, a]))
        truth.extend([g] * n_per)
    return np.vstack(rows), np.array(truth)


FEATURE_LIST = [*FEATURES["rfm"], *FEATURES["value"]]


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch", "gmm"])
def test_planted_groups_are_recovered(algorithm: str) -> None:
    values, truth = planted()
    result = fit(values, FEATURE_LIST, algorithm=algorithm)  # type: ignore[arg-type]
    ari = adjusted_rand_score(truth, result.labels)
    print(f"\n{algorithm}: k={result.k}, ARI {ari:.3f}, curve {result.curve}")
    assert result.k == 4
    assert ari >= 0.8


def test_profiles_names_and_rules() -> None:
    values, truth = planted()
    result = fit(values, FEATURE_LIST, k=4)
    assert sum(c.size for c in result.clusters) == len(values)
    by_name = {c.names["en"]: c for c in result.clusters}
    big = next(c for c in result.clusters if c.z["revenue_total"] > 1)
    assert "big spenders" in big.names["en"] or "frequent" in big.names["en"] \
        or "high value" in big.names["en"]
    assert any("lapsed" in n or "at risk" in n for n in by_name)
    for cluster in result.clusters:
        assert cluster.rule is not None
        parse(cluster.rule)  # valid segment language
        assert cluster.rule_precision is not None and cluster.rule_precision >= 0.8
        assert cluster.rule_recall is not None and cluster.rule_recall >= 0.8


def test_cluster_a_workspace_and_save_segments(tmp_path: Path) -> None:
    from datetime import date

    from tierwise.demo.generator import DemoSpec
    from tierwise.demo.load import load_generated
    from tierwise.segments import membership

    ws = tierwise.init(tmp_path / "ws")
    load_generated(ws, DemoSpec(customers=1500, seed=4, end=date(2026, 6, 30)))
    ws.compute()
    out = tw("clusters", "--features", "rfm,value,engagement,categories,firmographics",
             "-w", str(ws.root))
    assert "silhouette" in out and "cluster 0" in out
    from tierwise.insights.clustering import cluster_workspace

    result = cluster_workspace(ws, ["rfm", "value"], k=3)
    assert any(f.name.startswith("recency") for f in result.features)
    keys = save_as_segments(ws, result, "cl")
    assert keys and all(k.startswith("cl_") for k in keys)
    runs = membership.evaluate_all(ws, keys=keys)
    assert all(r.error is None and r.members for r in runs), runs
    ws.close()
