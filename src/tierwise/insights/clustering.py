"""Clustering customers: choose k, fit, profile, name, and turn clusters into rules.

Features are log-transformed where skewed (``Feature.log``) and standardised. k is chosen by
the silhouette (any method) or the BIC (Gaussian mixtures) on a sample, and the whole curve is
returned so a person can see how clear the choice was. Each cluster is described by how far
its mean lies from the population's (in standard deviations of the transformed feature),
named from its most distinctive features, and approximated by a shallow decision tree whose
positive leaves become a rule in the segment language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.tree import DecisionTreeClassifier

from tierwise.errors import TierwiseError
from tierwise.insights.features import Feature

Algorithm = Literal["kmeans", "minibatch", "gmm"]
Criterion = Literal["silhouette", "bic"]
#: Rows used to choose k and to learn rules (fitting uses every row).
SAMPLE = 20_000
#: Above this many rows "kmeans" switches to MiniBatchKMeans.
MINIBATCH_FROM = 200_000
#: |z| at which a feature counts as distinctive for a cluster.
DISTINCT = 0.5

# (zh-CN, en) words for a cluster whose mean is high / low on a feature.
_WORDS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "recency_days": (("久未购买", "lapsed"), ("近期购买", "recent")),
    "orders_total": (("高频", "frequent"), ("低频", "occasional")),
    "revenue_total": (("高消费", "big spenders"), ("低消费", "small spenders")),
    "average_order": (("大单", "large baskets"), ("小单", "small baskets")),
    "clv": (("高价值", "high value"), ("低价值", "low value")),
    "p_alive": (("活跃", "active"), ("流失风险", "at risk")),
    "events_90d": (("高互动", "engaged"), ("低互动", "quiet")),
    "orders_365d": (("近一年常购", "regular this year"), ("近一年少购", "rare this year")),
}


def transform(values: np.ndarray, features: list[Feature]) -> np.ndarray:
    """log1p on skewed non-negative features, then zero mean and unit variance."""
    x = values.astype(float).copy()
    for j, feature in enumerate(features):
        if feature.log:
            x[:, j] = np.log1p(np.clip(x[:, j], 0, None))
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return (x - x.mean(axis=0)) / std


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size, replace=False)) if n > size else np.arange(n)


def _model(algorithm: Algorithm, k: int, n: int, seed: int) -> Any:
    if algorithm == "gmm":
        return GaussianMixture(k, covariance_type="full", random_state=seed, n_init=2)
    if algorithm == "minibatch" or n > MINIBATCH_FROM:
        return MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096)
    return KMeans(k, random_state=seed, n_init=4)


def choose_k(x: np.ndarray, ks: range, algorithm: Algorithm, seed: int = 7,
             criterion: Criterion = "silhouette") -> tuple[int, list[dict[str, float]]]:
    """The best k and the curve: the silhouette of every k (higher is better) and, for
    Gaussian mixtures, the BIC (lower is better). On features with few distinct values
    (order counts) the BIC keeps falling as mixtures fit the spikes, so the silhouette is
    the default criterion for every algorithm."""
    if criterion == "bic" and algorithm != "gmm":
        raise TierwiseError("the BIC criterion needs the gmm method",
                            zh="BIC 准则需要 gmm 方法")
    rows = x[_sample(len(x), SAMPLE, seed)]
    curve = []
    for k in ks:
        if k >= len(rows):
            break
        model = _model(algorithm, k, len(rows), seed).fit(rows)
        labels = model.predict(rows)
        point = {"k": k, "silhouette": float(silhouette_score(
            rows, labels, sample_size=min(len(rows), 10_000), random_state=seed))
            if len(set(labels)) > 1 else -1.0}
        if algorithm == "gmm":
            point["bic"] = float(model.bic(rows))
        curve.append(point)
    if not curve:
        raise TierwiseError("too few customers to cluster",
                            zh="客户太少，无法聚类")
    if criterion == "bic":
        best = min(curve, key=lambda c: c["bic"])
    else:
        best = max(curve, key=lambda c: c["silhouette"])
    return int(best["k"]), curve


@dataclass
class Cluster:
    cluster: int
    size: int
    share: float
    means: dict[str, float]
    z: dict[str, float]  # mean distance from the population, in standard deviations
    distinctive: list[str]
    names: dict[str, str]
    rule: str | None = None
    rule_precision: float | None = None
    rule_recall: float | None = None


@dataclass
class Clustering:
    algorithm: str
    k: int
    features: list[Feature]
    customer_ids: list[str]
    labels: np.ndarray
    curve: list[dict[str, float]]
    clusters: list[Cluster] = field(default_factory=list)


def fit(values: np.ndarray, features: list[Feature], k: int | None = None,
        algorithm: Algorithm = "kmeans", ks: range = range(2, 9), seed: int = 7,
        customer_ids: list[str] | None = None, rules: bool = True,
        criterion: Criterion = "silhouette") -> Clustering:
    """Cluster the rows of ``values``; k chosen automatically when not given."""
    x = transform(values, features)
    curve: list[dict[str, float]] = []
    if k is None:
        k, curve = choose_k(x, ks, algorithm, seed, criterion)
    if k < 2 or k > len(x):
        raise TierwiseError(f"k must be between 2 and the number of customers ({len(x)})",
                            zh=f"k 应在 2 到客户数（{len(x)}）之间")
    model = _model(algorithm, k, len(x), seed)
    if algorithm == "gmm":
        model.fit(x[_sample(len(x), SAMPLE * 5, seed)])
    else:
        model.fit(x)
    labels = np.asarray(model.predict(x))
    labels = _order_by_size(labels)
    result = Clustering(algorithm, k, features, customer_ids or [str(i) for i in range(len(x))],
                        labels, curve)
    result.clusters = profile(values, x, features, labels)
    if rules:
        for cluster in result.clusters:
            _learn_rule(values, features, labels, cluster, seed)
    return result


def _order_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest: the numbering does not depend on the algorithm's seed."""
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels])


def profile(values: np.ndarray, x: np.ndarray, features: list[Feature],
            labels: np.ndarray) -> list[Cluster]:
    clusters = []
    for c in range(int(labels.max()) + 1):
        inside = labels == c
        z = {f.name: float(x[inside, j].mean()) for j, f in enumerate(features)}
        means = {f.name: float(values[inside, j].mean()) for j, f in enumerate(features)}
        distinctive = [n for n in sorted(z, key=lambda n: -abs(z[n])) if abs(z[n]) >= DISTINCT]
        clusters.append(Cluster(c, int(inside.sum()), float(inside.mean()), means, z,
                                distinctive, _names(features, z, distinctive)))
    return clusters


def _names(features: list[Feature], z: dict[str, float], distinctive: list[str]
           ) -> dict[str, str]:
    by_name = {f.name: f for f in features}
    zh, en = [], []
    for name in distinctive[:2]:
        high = z[name] > 0
        if name in _WORDS:
            words = _WORDS[name][0 if high else 1]
        elif name.startswith("share_"):
            category = name.removeprefix("share_")
            words = ((f"偏好{category}", f"{category} lovers") if high
                     else (f"少买{category}", f"few {category}"))
        else:  # a firmographic indicator: only its presence names a cluster
            label_zh, label_en = by_name[name].labels
            words = (label_zh, label_en) if high else (f"非{label_zh}", f"not {label_en}")
        zh.append(words[0])
        en.append(words[1])
    if not zh:
        return {"zh-CN": "普通客户", "en": "typical customers"}
    return {"zh-CN": "·".join(zh), "en": ", ".join(en)}


def _learn_rule(values: np.ndarray, features: list[Feature], labels: np.ndarray,
                cluster: Cluster, seed: int, depth: int = 3) -> None:
    """A shallow tree for 'in this cluster or not' on the expressible features."""
    usable = [j for j, f in enumerate(features) if f.expression]
    if not usable:
        return
    rows = _sample(len(values), SAMPLE * 5, seed)
    x = values[rows][:, usable]
    y = labels[rows] == cluster.cluster
    if y.all() or not y.any():
        return
    tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=max(10, len(rows) // 200),
                                  class_weight="balanced", random_state=seed).fit(x, y)
    paths = _positive_paths(tree, [features[j] for j in usable])
    if not paths:
        return
    leaves = tree.apply(x)
    chosen = {leaf for leaf, _ in paths}
    selected = np.isin(leaves, list(chosen))
    cluster.rule = " OR ".join(f"({text})" if len(paths) > 1 and " AND " in text else text
                               for _, text in paths)
    cluster.rule_precision = float((selected & y).sum() / max(selected.sum(), 1))
    cluster.rule_recall = float((selected & y).sum() / max(y.sum(), 1))


def _positive_paths(tree: DecisionTreeClassifier, features: list[Feature]
                    ) -> list[tuple[int, str]]:
    t = tree.tree_
    found: list[tuple[int, str]] = []

    def walk(node: int, conditions: list[str]) -> None:
        if t.children_left[node] == -1:
            counts = t.value[node][0]
            if counts[1] > counts[0]:  # the cluster is this leaf's (balanced) majority
                found.append((node, " AND ".join(conditions) or "TRUE"))
            return
        feature = features[t.feature[node]]
        threshold = _round(t.threshold[node], feature)
        walk(t.children_left[node], [*conditions, f"{feature.expression} <= {threshold}"])
        walk(t.children_right[node], [*conditions, f"{feature.expression} > {threshold}"])

    walk(0, [])
    return [p for p in found if p[1] != "TRUE"]


def _round(value: float, feature: Feature) -> str:
    if feature.name in ("recency_days", "orders_total", "events_90d", "orders_365d"):
        return str(int(np.floor(value)))
    if abs(value) >= 100:
        return str(round(value))
    return f"{value:.3g}"


def cluster_workspace(ws: Any, groups: list[str], k: int | None = None,
                      algorithm: Algorithm = "kmeans", seed: int = 7,
                      criterion: Criterion = "silhouette") -> Clustering:
    """Cluster the buyers of the latest snapshot on the chosen feature groups."""
    from tierwise.insights.features import customer_features

    matrix = customer_features(ws, groups)
    return fit(matrix.values, matrix.features, k, algorithm, seed=seed,
               customer_ids=matrix.customer_ids, criterion=criterion)


def save_as_segments(ws: Any, result: Clustering, prefix: str, note: str | None = None
                     ) -> list[str]:
    """Each cluster with a rule becomes a dynamic segment ``<prefix>_<n>`` (a new version)."""
    from tierwise.definitions.segment_fields import validate
    from tierwise.definitions.segment_parser import parse
    from tierwise.segments import catalog as defs

    keys = []
    for cluster in result.clusters:
        if cluster.rule is None:
            continue
        validate(parse(cluster.rule))
        definition = defs.SegmentDefinition(
            key=f"{prefix}_{cluster.cluster}", names=cluster.names, rule=cluster.rule,
            tags=["cluster"],
            description=(f"{result.algorithm} cluster {cluster.cluster} of {result.k} "
                         f"({cluster.share:.1%} of buyers); rule precision "
                         f"{cluster.rule_precision:.2f}, recall {cluster.rule_recall:.2f}"))
        defs.write_file(ws, definition)
        defs.save(ws, definition, note or "from clustering")
        keys.append(definition.key)
    return keys
