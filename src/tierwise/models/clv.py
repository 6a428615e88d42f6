"""Customer-lifetime-value models fitted by maximum likelihood on numpy and scipy.

Non-contractual, continuous time: BG/NBD (Fader, Hardie & Lee 2005) and Pareto/NBD
(Schmittlein, Morrison & Colombo 1987; likelihood as in Fader & Hardie 2005). Spend:
Gamma-Gamma (Fader, Hardie & Lee 2005). Discrete time: BG/BB (Fader, Hardie & Berger
2010). Contractual: shifted-beta-geometric (Fader & Hardie 2007).

Every fit works on sufficient statistics compressed to unique rows with weights, so a
million customers usually collapse to some tens of thousands of rows. Parameters are
optimised on the log scale (they must be positive) with L-BFGS-B.

>>> import numpy as np
>>> data = Summary.compress(np.array([0, 2, 2]), np.array([0., 5., 5.]), np.array([9., 9., 9.]))
>>> len(data.x), data.weights.tolist()
(2, [1.0, 2.0])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tierwise.errors import TierwiseError


class _OnFirstUse:
    """A module imported when one of its names is first read: scipy takes 0.4 s to
    import, and most commands that load this module (an import, a query) fit nothing."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


optimize = _OnFirstUse("scipy.optimize")
special = _OnFirstUse("scipy.special")

Array = np.ndarray


@dataclass(frozen=True)
class Summary:
    """Per-customer (or per unique row) repeat count x, recency t_x and age T."""

    x: Array
    t_x: Array
    T: Array
    weights: Array
    #: From ``compress``: the row of each customer given, so that ``per_row[rows]`` is
    #: one value per customer, in their order.
    rows: Array | None = field(default=None, compare=False)

    @classmethod
    def compress(cls, x: Array, t_x: Array, T: Array) -> Summary:
        columns = [np.asarray(v, float) for v in (x, t_x, T)]
        firsts, inverse = _unique_rows(columns)
        counts = np.bincount(inverse, minlength=len(firsts)).astype(float)
        return cls(columns[0][firsts], columns[1][firsts], columns[2][firsts], counts,
                   inverse)

    @property
    def customers(self) -> int:
        return int(self.weights.sum())

    # Expensive terms depend on (x, T) or (x, t_x) only, and those pairs are far fewer than
    # the (x, t_x, T) rows: the likelihoods evaluate them once per pair.
    @cached_property
    def x_T(self) -> tuple[Array, Array, Array]:
        return _pairs(self.x, self.T)

    @cached_property
    def x_tx(self) -> tuple[Array, Array, Array]:
        return _pairs(self.x, self.t_x)

    @cached_property
    def x_values(self) -> tuple[Array, Array]:
        """The distinct repeat counts, and each row's index among them."""
        values, index = np.unique(self.x, return_inverse=True)
        return values, index

    def subsample(self, customers: int, seed: int = 0) -> Summary:
        """A random sample of ``customers`` customers (with replacement), compressed."""
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(customers, self.weights / self.weights.sum())
        keep = counts > 0
        return Summary(self.x[keep], self.t_x[keep], self.T[keep], counts[keep].astype(float))


def _unique_rows(columns: list[Array]) -> tuple[Array, Array]:
    """Index of one row per distinct combination (sorted), and each row's combination.

    A lexsort and one pass: several times faster than ``np.unique(..., axis=0)``.
    """
    order = np.lexsort(columns[::-1])
    changed = np.zeros(len(order), dtype=bool)
    if len(order):
        changed[0] = True
        for c in columns:
            sorted_c = c[order]
            changed[1:] |= sorted_c[1:] != sorted_c[:-1]
    group = np.cumsum(changed) - 1
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = group
    return order[changed], inverse


def _pairs(a: Array, b: Array) -> tuple[Array, Array, Array]:
    """Unique (a, b) pairs as two arrays, and the index mapping each row to its pair."""
    firsts, inverse = _unique_rows([a, b])
    return a[firsts], b[firsts], inverse


@dataclass
class Fitted:
    """A fitted model: its parameters, log-likelihood and the data size it saw."""

    model: str
    params: dict[str, float]
    log_likelihood: float
    customers: int
    converged: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "params": self.params,
                "log_likelihood": self.log_likelihood, "customers": self.customers,
                "converged": self.converged}


#: Above this many unique rows a fit first runs on a sample, then refines on all rows.
WARM_START_ROWS = 50_000


def _fit(neg_ll: Callable[[Array], Any], start: Array, names: list[str], model: str,
         customers: int, jac: bool = False) -> Fitted:
    """Minimise the negative log-likelihood over log-parameters.

    With ``jac`` the objective returns (value, gradient) and no finite differences are
    needed.
    """
    def run(x0: Array) -> Any:
        # L-BFGS-B's few small BLAS calls per step wake OpenBLAS's worker threads, which
        # then spin between steps: 1.6 s of a second core during a million-customer fit
        # that another query running beside it (``tierwise compute``) needs. Scoped to the
        # optimiser (process-wide while it runs); scipy must be loaded for the limit to
        # reach its copy of OpenBLAS.
        from threadpoolctl import threadpool_limits

        minimize = optimize.minimize
        with threadpool_limits(1, user_api="blas"):
            return minimize(neg_ll, x0, method="L-BFGS-B", jac=jac,
                            options={"maxiter": 2000, "ftol": 1e-12, "gtol": 1e-8})

    best = run(np.log(start))
    converged = bool(best.success)
    if not converged and np.isfinite(best.fun):
        # A line search that gives up on a flat likelihood usually finishes from where it
        # stopped; a restart that no longer improves means we are at the optimum.
        again = run(best.x)
        converged = bool(again.success) or abs(again.fun - best.fun) <= 1e-10 * abs(best.fun)
        best = again if again.fun <= best.fun else best
    if not converged or not np.isfinite(best.fun):
        for scale in (0.3, 3.0):  # other starting points guard against poor local optima
            result = run(np.log(start * scale))
            if np.isfinite(result.fun) and (not np.isfinite(best.fun) or result.fun < best.fun):
                best, converged = result, bool(result.success)
    if not np.isfinite(best.fun) or best.fun >= 1e300:
        raise TierwiseError(f"{model}: the likelihood could not be evaluated on this data",
                            zh=f"{model}：无法在这份数据上计算似然")
    params = dict(zip(names, np.exp(best.x).tolist(), strict=True))
    return Fitted(model, params, float(-best.fun), customers, converged)


def _safe(fn: Callable[[Array], Array | float]) -> Callable[[Array], float]:
    def wrapped(log_params: Array) -> float:
        with np.errstate(all="ignore"):
            value = float(fn(np.exp(log_params)))
        return value if np.isfinite(value) else 1e300
    return wrapped


# -- BG/NBD --------------------------------------------------------------------------------
def _bgnbd_objective(d: Summary) -> Callable[[Array], tuple[float, Array]]:
    """Negative log-likelihood and its gradient in log-parameters (analytic)."""
    x, t_x, T, w = d.x, d.t_x, d.T, d.weights
    repeat = x > 0
    xm1 = np.where(repeat, x - 1, 0.0)

    def objective(log_params: Array) -> tuple[float, Array]:
        with np.errstate(all="ignore"):
            r, alpha, a, b = np.exp(log_params)
            a3 = -(r + x) * np.log(alpha + T)
            a4 = np.where(repeat, np.log(a) - np.log(b + xm1) - (r + x) * np.log(alpha + t_x),
                          -np.inf)
            top = np.maximum(a3, a4)
            mix = np.log(np.exp(a3 - top) + np.exp(a4 - top)) + top
            w3 = np.exp(a3 - mix)  # share of the "still alive" term
            w4 = 1.0 - w3
            ll = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
                  + special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b)
                  - special.gammaln(a + b + x) + mix)
            d_r = (special.digamma(r + x) - special.digamma(r) + np.log(alpha)
                   - w3 * np.log(alpha + T) - w4 * np.log(alpha + t_x))
            d_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
            psi_ab = special.digamma(a + b) - special.digamma(a + b + x)
            d_a = psi_ab + w4 / a
            d_b = (psi_ab + special.digamma(b + x) - special.digamma(b)
                   - w4 / np.where(repeat, b + xm1, 1.0))
            value = -float(np.sum(w * ll))
            grad = -np.array([np.sum(w * d_r) * r, np.sum(w * d_alpha) * alpha,
                              np.sum(w * d_a) * a, np.sum(w * d_b) * b])
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros(4)
        return value, grad

    return objective


def fit_bgnbd(d: Summary) -> Fitted:
    """BG/NBD: Poisson purchases at rate λ ~ Gamma(r, α); after each purchase the customer
    drops out with probability p ~ Beta(a, b)."""
    start = np.array([1.0, float(np.mean(d.T)) or 1.0, 1.0, 1.0])
    if len(d.x) > WARM_START_ROWS:
        start = np.array(list(fit_bgnbd(d.subsample(WARM_START_ROWS)).params.values()))
    return _fit(_bgnbd_objective(d), start, ["r", "alpha", "a", "b"], "bgnbd", d.customers,
                jac=True)


def bgnbd_p_alive(p: dict[str, float], x: Array, t_x: Array, T: Array) -> Array:
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    x = np.asarray(x, float)
    with np.errstate(all="ignore"):
        log_ratio = (np.log(a) - np.log(np.maximum(b + x - 1, 1e-300))
                     + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
    return np.where(x > 0, 1.0 / (1.0 + np.exp(log_ratio)), 1.0)


def bgnbd_expected(p: dict[str, float], t: float, x: Array, t_x: Array, T: Array) -> Array:
    """Expected purchases in the next ``t`` time units, given each customer's history."""
    r, alpha, a, b = p["r"], p["alpha"], p["a"], p["b"]
    x = np.asarray(x, float)
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    numerator = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    numerator *= (a + b + x - 1) / (a - 1)
    with np.errstate(all="ignore"):
        odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-300)
                        * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return numerator / (1 + odds)


# -- Pareto/NBD ----------------------------------------------------------------------------
def _log_hyp_term(r: float, alpha: float, s: float, beta: float, x: Array,
                  t: Array) -> Array:
    """log[2F1(r+s+x, ·; r+s+x+1; z) / (max(α, β) + t)^(r+s+x)], one A0 term."""
    rsx = r + s + x
    second: Array | float
    if alpha >= beta:
        big, second, shift = alpha, s + 1, alpha - beta
    else:
        big, second, shift = beta, r + x, beta - alpha
    return (np.log(special.hyp2f1(rsx, second, rsx + 1, shift / (big + t)))
            - rsx * np.log(big + t))


def _pareto_parts(r: float, alpha: float, s: float, beta: float, x_T: tuple[Array, Array],
                  x_tx: tuple[Array, Array]) -> tuple[Array, Array, Array]:
    """The Pareto/NBD likelihood split into terms of (x, T) and of (x, t_x), per pair.

    With a = r + x, a customer's likelihood (Fader & Hardie 2005, eq. 22) is the head times
    L = A + s·[J(t_x) − J(T)], where A = (α+T)^−a (β+T)^−s is "alive at T" and
    J(t) = ∫_t^∞ (α+τ)^−a (β+τ)^−(s+1) dτ, so s·J(t) = s/(r+s+x) · A0-term(t). Grouped as
    L = [A − s·J(T)] + s·J(t_x) — the first depends on (x, T), the second on (x, t_x),
    and both are ≥ 0 (A ≥ s·J(T): take (α+τ)^−a ≤ (α+T)^−a out of the integral) — a
    row's log L is one ``logaddexp`` of two looked-up numbers. Returns log A and
    log[A − s·J(T)] per (x, T) pair, and log[s·J(t_x)] per (x, t_x) pair.
    """
    x2, T2 = x_T
    x1, tx1 = x_tx
    log_alive = -(r + x2) * np.log(alpha + T2) - s * np.log(beta + T2)
    log_k2 = np.log(s) - np.log(r + s + x2)
    # rounding can put s·J(T) a hair above A: the difference is then 0, not negative
    gap = np.minimum(log_k2 + _log_hyp_term(r, alpha, s, beta, x2, T2) - log_alive, 0.0)
    log_rest = log_alive + np.log1p(-np.exp(gap))
    log_dead = np.log(s) - np.log(r + s + x1) + _log_hyp_term(r, alpha, s, beta, x1, tx1)
    return log_alive, log_rest, log_dead


def pareto_log_likelihood(params: Array, d: Summary) -> Array:
    """Each row's log-likelihood; the expensive terms are computed once per (x, T) and
    (x, t_x) pair (``_pareto_parts``)."""
    r, alpha, s, beta = params
    xs, x_index = d.x_values
    head = (special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
            + s * np.log(beta))
    x2, T2, index2 = d.x_T
    x1, tx1, index1 = d.x_tx
    _, log_rest, log_dead = _pareto_parts(r, alpha, s, beta, (x2, T2), (x1, tx1))
    return head[x_index] + np.logaddexp(log_rest[index2], log_dead[index1])


def fit_pareto_nbd(d: Summary) -> Fitted:
    """Pareto/NBD: Poisson purchases at rate λ ~ Gamma(r, α) while alive; lifetimes are
    exponential with rate μ ~ Gamma(s, β)."""
    neg = _safe(lambda p: -np.sum(d.weights * pareto_log_likelihood(p, d)))
    scale = float(np.mean(d.T) or 1.0)
    start = np.array([1.0, scale, 1.0, scale])
    if len(d.x) > WARM_START_ROWS:
        start = np.array(list(fit_pareto_nbd(d.subsample(WARM_START_ROWS)).params.values()))
    return _fit(neg, start, ["r", "alpha", "s", "beta"], "pareto_nbd", d.customers)


def pareto_p_alive(p: dict[str, float], x: Array, t_x: Array, T: Array) -> Array:
    """P(alive at T | x, t_x, T) = A / L (see ``_pareto_parts``), computed once per
    distinct (x, T) and (x, t_x) pair."""
    x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
    return _pareto_alive(p, x, t_x, T, _pairs(x, T), _pairs(x, t_x))


def pareto_p_alive_rows(p: dict[str, float], d: Summary) -> Array:
    """``pareto_p_alive`` of each row of ``d`` (its pairs are already known)."""
    return _pareto_alive(p, d.x, d.t_x, d.T, d.x_T, d.x_tx)


def _pareto_alive(p: dict[str, float], x: Array, t_x: Array, T: Array,
                  x_T: tuple[Array, Array, Array], x_tx: tuple[Array, Array, Array]
                  ) -> Array:
    r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
    x2, T2, index2 = x_T
    x1, tx1, index1 = x_tx
    with np.errstate(all="ignore"):
        log_alive, log_rest, log_dead = _pareto_parts(r, alpha, s, beta, (x2, T2),
                                                      (x1, tx1))
        alive = np.exp(log_alive[index2] - np.logaddexp(log_rest[index2], log_dead[index1]))
    # no time between the last purchase and T: nothing says the customer has left
    return np.where(t_x < T, np.minimum(alive, 1.0), 1.0)


def pareto_expected(p: dict[str, float], t: float, x: Array, t_x: Array, T: Array,
                    alive: Array | None = None) -> Array:
    """Expected purchases in the next ``t``; pass ``alive`` (P(alive)) to reuse it."""
    r, alpha, s, beta = p["r"], p["alpha"], p["s"], p["beta"]
    x = np.asarray(x, float)
    if alive is None:
        alive = pareto_p_alive(p, x, t_x, T)
    if abs(s - 1) < 1e-9:  # the limit s → 1
        horizon = np.log((beta + T + t) / (beta + T)) * (beta + T)
    else:
        horizon = (beta + T) / (s - 1) * (1 - ((beta + T) / (beta + T + t)) ** (s - 1))
    return (r + x) / (alpha + T) * horizon * alive


# -- Gamma-Gamma ---------------------------------------------------------------------------
def fit_gamma_gamma(x: Array, m_x: Array, weights: Array | None = None) -> Fitted:
    """Gamma-Gamma spend model on customers with x ≥ 1 repeat purchases of mean value m_x."""
    x = np.asarray(x, float)
    m_x = np.asarray(m_x, float)
    keep = (x > 0) & (m_x > 0)
    x, m_x = x[keep], m_x[keep]
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)[keep]
    if len(x) < 3:
        raise TierwiseError("gamma_gamma needs at least 3 customers with repeat purchases",
                            zh="gamma_gamma 至少需要 3 位有复购的客户")

    # Only log(γ + m_x·x) depends on both a row and a parameter; every other term is a
    # function of x (a few hundred distinct values) or a constant of the data, so each
    # evaluation is two passes over the rows and the rest per distinct x.
    xs, x_index = np.unique(x, return_inverse=True)
    log_xs = np.log(xs)
    w_x = np.bincount(x_index, w, len(xs))  # weight per distinct x
    mx = m_x * x
    log_m = np.log(m_x)
    sum_x_log_m = float(np.sum(w * x * log_m))  # Σ w·x·log m
    sum_log_m = float(np.sum(w * log_m))

    def objective(log_params: Array) -> tuple[float, Array]:
        """Negative log-likelihood and its analytic gradient in log-parameters."""
        with np.errstate(all="ignore"):
            p, q, gamma = np.exp(log_params)
            px = p * xs
            total = gamma + mx
            by_x_log = np.bincount(x_index, w * np.log(total), len(xs))  # Σ w·log(γ+mx)
            by_x_inv = np.bincount(x_index, w / total, len(xs))  # Σ w/(γ+mx)
            ll = (np.sum(w_x * (special.gammaln(px + q) - special.gammaln(px)
                                - special.gammaln(q) + q * np.log(gamma) + px * log_xs))
                  - np.sum((px + q) * by_x_log) + p * sum_x_log_m - sum_log_m)
            psi = special.digamma(px + q)
            d_p = (np.sum(xs * (w_x * (psi - special.digamma(px) + log_xs) - by_x_log))
                   + sum_x_log_m)
            d_q = (np.sum(w_x * (psi - special.digamma(q) + np.log(gamma)))
                   - np.sum(by_x_log))
            d_gamma = float(np.sum(w_x)) * q / gamma - np.sum((px + q) * by_x_inv)
            value = -float(ll)
            grad = -np.array([d_p * p, d_q * q, d_gamma * gamma])
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros(3)
        return value, grad

    start = np.array([1.0, 1.0, float(np.mean(m_x))])
    if len(x) > WARM_START_ROWS:
        pick = np.random.default_rng(0).choice(len(x), WARM_START_ROWS, replace=False)
        sample = fit_gamma_gamma(x[pick], m_x[pick], w[pick])
        start = np.array(list(sample.params.values()))
    return _fit(objective, start, ["p", "q", "gamma"], "gamma_gamma", int(w.sum()), jac=True)


def gamma_gamma_expected_spend(p: dict[str, float], x: Array, m_x: Array,
                               fallback: float | None = None) -> Array:
    """E[mean spend | x, m_x]; customers without repeat purchases get the population mean.

    The population mean p·γ/(q − 1) exists only for q > 1 (spend with a lighter tail than
    a power law of index 1); otherwise ``fallback`` (e.g. the observed mean) is used.
    """
    pp, q, gamma = p["p"], p["q"], p["gamma"]
    x = np.asarray(x, float)
    m_x = np.nan_to_num(np.asarray(m_x, float))
    with np.errstate(all="ignore"):
        conditional = (gamma + m_x * x) * pp / (pp * x + q - 1)
    population = pp * gamma / (q - 1) if q > 1 else fallback
    if population is None:
        population = float("nan")
    return np.where((x > 0) & (conditional > 0), conditional, population)


# -- BG/BB ---------------------------------------------------------------------------------
def _betaln(a: Array | float, b: Array | float) -> Array:
    return special.betaln(a, b)


def bgbb_log_likelihood(params: Array, x: Array, t_x: Array, n: Array) -> Array:
    alpha, beta, gamma, delta = params
    base_ab, base_gd = _betaln(alpha, beta), _betaln(gamma, delta)
    alive = (_betaln(alpha + x, beta + n - x) - base_ab
             + _betaln(gamma, delta + n) - base_gd)
    total = alive.copy()
    longest = int(np.max(n - t_x)) if len(n) else 0
    for i in range(longest):
        use = i < n - t_x
        term = (_betaln(alpha + x, beta + t_x - x + i) - base_ab
                + _betaln(gamma + 1, delta + t_x + i) - base_gd)
        total = np.where(use, np.logaddexp(total, term), total)
    return total


def fit_bgbb(x: Array, t_x: Array, n: Array, weights: Array | None = None) -> Fitted:
    """BG/BB: in each of n discrete periods an alive customer transacts with probability
    p ~ Beta(α, β) and, before the next period, dies with probability θ ~ Beta(γ, δ)."""
    x, t_x, n = (np.asarray(v, float) for v in (x, t_x, n))
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    neg = _safe(lambda p: -np.sum(w * bgbb_log_likelihood(p, x, t_x, n)))
    return _fit(neg, np.array([1.0, 1.0, 1.0, 1.0]), ["alpha", "beta", "gamma", "delta"],
                "bgbb", int(w.sum()))


def bgbb_p_alive(p: dict[str, float], x: Array, t_x: Array, n: Array) -> Array:
    """Probability of being alive at the start of period n + 1."""
    alpha, beta, gamma, delta = p["alpha"], p["beta"], p["gamma"], p["delta"]
    x, t_x, n = (np.asarray(v, float) for v in (x, t_x, n))
    ll = bgbb_log_likelihood(np.array([alpha, beta, gamma, delta]), x, t_x, n)
    alive = (_betaln(alpha + x, beta + n - x) - _betaln(alpha, beta)
             + _betaln(gamma, delta + n + 1) - _betaln(gamma, delta))
    return np.exp(alive - ll)


def bgbb_expected(p: dict[str, float], periods: int, x: Array, t_x: Array, n: Array) -> Array:
    """Expected transactions in the next ``periods`` periods."""
    alpha, beta, gamma, delta = p["alpha"], p["beta"], p["gamma"], p["delta"]
    x, t_x, n = (np.asarray(v, float) for v in (x, t_x, n))
    ll = bgbb_log_likelihood(np.array([alpha, beta, gamma, delta]), x, t_x, n)
    if abs(gamma - 1) < 1e-9:
        gamma += 1e-9  # the formula's removable singularity at γ = 1
    lead = (_betaln(alpha + x + 1, beta + n - x) - _betaln(alpha, beta)
            + special.gammaln(gamma + delta) - special.gammaln(1 + delta))
    span = (np.exp(special.gammaln(1 + delta + n) - special.gammaln(gamma + delta + n))
            - np.exp(special.gammaln(1 + delta + n + periods)
                     - special.gammaln(gamma + delta + n + periods)))
    # δ/(γ − 1) and the span have the same sign for any γ ≠ 1, so the product is positive.
    return np.exp(lead - ll) * delta / (gamma - 1) * span


# -- shifted beta-geometric ----------------------------------------------------------------
def fit_sbg(active: Array) -> Fitted:
    """sBG on a cohort's survivors per period: ``active[0]`` at the start, then after each
    renewal. Each customer churns at each renewal with probability θ ~ Beta(α, β)."""
    active = np.asarray(active, float)
    if len(active) < 3 or np.any(np.diff(active) > 0):
        raise TierwiseError("sbg needs at least 3 non-increasing survivor counts",
                            zh="sbg 至少需要 3 个不增的存续人数")
    periods = np.arange(1, len(active))
    lost = active[:-1] - active[1:]

    def neg(params: Array) -> float:
        alpha, beta = params
        log_pt = _betaln(alpha + 1, beta + periods - 1) - _betaln(alpha, beta)
        log_survive = _betaln(alpha, beta + periods[-1]) - _betaln(alpha, beta)
        return -(np.sum(lost * log_pt) + active[-1] * log_survive)

    return _fit(_safe(neg), np.array([1.0, 1.0]), ["alpha", "beta"], "sbg",
                int(active[0]))


def sbg_survival(p: dict[str, float], periods: Array) -> Array:
    """Share of a cohort still active after each number of periods."""
    alpha, beta = p["alpha"], p["beta"]
    t = np.asarray(periods, float)
    return np.exp(_betaln(alpha, beta + t) - _betaln(alpha, beta))


def sbg_retention(p: dict[str, float], periods: Array) -> Array:
    """Retention rate from period t-1 to t: (β + t - 1) / (α + β + t - 1)."""
    t = np.asarray(periods, float)
    return (p["beta"] + t - 1) / (p["alpha"] + p["beta"] + t - 1)


# -- value ---------------------------------------------------------------------------------
def discounted_value(expected_by_period: Callable[[float], Array], spend: Array,
                     periods: int, period_length: float, margin: float,
                     discount_rate: float) -> Array:
    """Σ_k margin × spend × E[purchases in period k] / (1 + d)^k over ``periods`` periods.

    ``expected_by_period(t)`` gives cumulative expected purchases by time t (model units);
    ``discount_rate`` is per period.
    """
    total = np.zeros_like(np.asarray(spend, float))
    previous = expected_by_period(0.0)
    for k in range(1, periods + 1):
        current = expected_by_period(k * period_length)
        total += (current - previous) / (1 + discount_rate) ** k
        previous = current
    return margin * np.asarray(spend, float) * total


MODELS = ("bgnbd", "pareto_nbd", "gamma_gamma", "bgbb", "sbg")
