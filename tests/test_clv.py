"""CLV models against published values (CDNOW sample, donations, sBG cohorts)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import tierwise
from tierwise.demo.load import cdnow_path
from tierwise.ingest.readers import RecordsSource
from tierwise.models import clv, stats

CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=ZoneInfo("UTC"))


@pytest.fixture(scope="module")
def cdnow_sample(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    """Our own summary of the raw CDNOW_sample.txt transactions (2,357 customers)."""
    path = cdnow_path().with_name("CDNOW_sample.txt")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    orders = pa.table({
        "order_id": [str(i) for i in range(len(lines))],
        "customer_id": [f[0] for f in lines],
        "ordered_at": [f[2] for f in lines],
        "amount": [float(f[4]) for f in lines],
    })
    ws = tierwise.init(tmp_path_factory.mktemp("cds") / "ws", timezone="UTC", currency="USD")
    ws.import_source("orders", RecordsSource("CDNOW_sample", orders.column_names,
                                             iter([orders])), unknown_customers="create")
    return stats.customer_stats(ws, CALIBRATION_END, stats.Period(None))


def weeks(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (table["x"].to_numpy().astype(float), table["t_x_days"].to_numpy() / 7,
            table["t_days"].to_numpy() / 7)


def test_the_light_clv_summary_agrees(cdnow_sample: pa.Table, tmp_path_factory):
    ws = tierwise.open(next(tmp_path_factory.getbasetemp().glob("cds*")) / "ws")
    light = stats.clv_summary(ws, CALIBRATION_END)
    for column in ("x", "t_x_days", "t_days", "m_x", "purchase_days"):
        assert light[column].to_pylist() == cdnow_sample[column].to_pylist(), column


def test_summary_of_the_sample(cdnow_sample: pa.Table):
    x, t_x, T = weeks(cdnow_sample)
    assert cdnow_sample.num_rows == 2357
    assert int((x > 0).sum()) == 946
    assert T.max() == pytest.approx(38.857, abs=1e-3)  # 1 Jan → 30 Sep 1997 is 272 days


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow_sample: pa.Table):
    fit = clv.fit_bgnbd(clv.Summary.compress(*weeks(cdnow_sample)))
    p = fit.params
    assert (p["r"], p["alpha"], p["a"], p["b"]) == pytest.approx((0.243, 4.414, 0.793, 2.426),
                                                                 abs=1e-3)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    # The paper's worked example: x = 2, t_x = 30.43, T = 38.86 → 1.226 purchases in 39 weeks.
    expected = clv.bgnbd_expected(p, 39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert expected[0] == pytest.approx(1.226, abs=2e-3)


def test_pareto_nbd_reproduces_fader_hardie_2005(cdnow_sample: pa.Table):
    fit = clv.fit_pareto_nbd(clv.Summary.compress(*weeks(cdnow_sample)))
    p = fit.params
    assert (p["r"], p["alpha"], p["s"], p["beta"]) == pytest.approx(
        (0.553, 10.578, 0.606, 11.669), abs=2e-3)
    assert fit.log_likelihood == pytest.approx(-9595.0, abs=0.05)
    x, t_x, T = weeks(cdnow_sample)
    alive = clv.pareto_p_alive(p, x, t_x, T)
    assert np.all((alive > 0) & (alive <= 1))
    # The longer ago the last purchase, the less likely the customer is alive.
    older = clv.pareto_p_alive(p, np.array([3.0, 3.0]), np.array([35.0, 10.0]),
                               np.array([38.0, 38.0]))
    assert older[0] > older[1]


def test_gamma_gamma_reproduces_fader_hardie_lee_2005(cdnow_sample: pa.Table):
    x = cdnow_sample["x"].to_numpy().astype(float)
    m_x = np.nan_to_num(cdnow_sample["m_x"].to_numpy(zero_copy_only=False).astype(float))
    fit = clv.fit_gamma_gamma(x, m_x)
    assert (fit.params["p"], fit.params["q"], fit.params["gamma"]) == pytest.approx(
        (6.25, 3.74, 15.44), abs=0.01)
    assert fit.customers == 946
    spend = clv.gamma_gamma_expected_spend(fit.params, np.array([0.0, 10.0]),
                                           np.array([0.0, 50.0]))
    population = fit.params["p"] * fit.params["gamma"] / (fit.params["q"] - 1)
    assert spend[0] == pytest.approx(population)
    assert population < spend[1] < 50  # shrunk towards the population mean


def test_bgbb_reproduces_fader_hardie_berger_2010():
    path = cdnow_path().with_name("donations.csv")
    data = pacsv.read_csv(path)
    fit = clv.fit_bgbb(data["frequency"].to_numpy(), data["recency"].to_numpy(),
                       data["periods"].to_numpy(), data["weights"].to_numpy())
    p = fit.params
    assert (p["alpha"], p["beta"], p["gamma"], p["delta"]) == pytest.approx(
        (1.204, 0.750, 0.657, 2.783), abs=1e-3)
    assert fit.log_likelihood == pytest.approx(-33225.6, abs=0.05)
    assert fit.customers == 11104
    alive = clv.bgbb_p_alive(p, np.array([6.0, 0.0]), np.array([6.0, 0.0]), np.array([6, 6]))
    assert alive[0] > 0.9 > alive[1]
    expected = clv.bgbb_expected(p, 5, np.array([6.0, 1.0]), np.array([6.0, 1.0]),
                                 np.array([6, 6]))
    assert expected[0] > expected[1] > 0


def test_sbg_reproduces_fader_hardie_2007():
    regular = clv.fit_sbg([1000, 631, 468, 382, 326, 289, 262, 241])
    high_end = clv.fit_sbg([1000, 869, 743, 653, 593, 551, 517, 491])
    assert (regular.params["alpha"], regular.params["beta"]) == pytest.approx((0.704, 1.182),
                                                                             abs=1e-3)
    assert (high_end.params["alpha"], high_end.params["beta"]) == pytest.approx(
        (0.668, 3.806), abs=1e-3)
    retention = clv.sbg_retention(regular.params, np.arange(1, 13))
    assert np.all(np.diff(retention) > 0)  # survivors are increasingly loyal
    survival = clv.sbg_survival(regular.params, np.array([12]))
    assert 0.15 < survival[0] < 0.2  # the paper's 12-year projection is close to the 173 seen


def test_compression_does_not_change_the_fit(cdnow_sample: pa.Table):
    x, t_x, T = weeks(cdnow_sample)
    raw = clv.Summary(x, t_x, T, np.ones_like(x))
    packed = clv.Summary.compress(x, t_x, T)
    assert len(packed.x) < len(x) / 2
    assert clv.fit_bgnbd(raw).log_likelihood == pytest.approx(
        clv.fit_bgnbd(packed).log_likelihood, abs=1e-6)


def test_bad_inputs_are_clear():
    with pytest.raises(tierwise.TierwiseError, match="at least 3"):
        clv.fit_gamma_gamma(np.array([0.0, 1.0]), np.array([0.0, 5.0]))
    with pytest.raises(tierwise.TierwiseError, match="non-increasing"):
        clv.fit_sbg([100, 120, 90])


def test_discounted_value_sums_periods():
    spend = np.array([10.0])
    value = clv.discounted_value(lambda t: np.array([t]), spend, 3, 1.0, 0.5, 0.0)
    assert value[0] == pytest.approx(0.5 * 10 * 3)
    discounted = clv.discounted_value(lambda t: np.array([t]), spend, 2, 1.0, 1.0, 0.1)
    assert discounted[0] == pytest.approx(10 / 1.1 + 10 / 1.21)




def _pareto_reference(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
                      ) -> np.ndarray:
    """Each customer's Pareto/NBD log-likelihood written as Fader & Hardie (2005, eq. 22)
    state it, one customer at a time."""
    from scipy.special import gammaln, hyp2f1

    r, alpha, s, beta = params
    out = []
    for xi, txi, Ti in zip(x, t_x, T, strict=True):
        a = r + s + xi
        if alpha >= beta:
            big, b, shift = alpha, s + 1, alpha - beta
        else:
            big, b, shift = beta, r + xi, beta - alpha
        a0 = (hyp2f1(a, b, a + 1, shift / (big + txi)) / (big + txi) ** a
              - hyp2f1(a, b, a + 1, shift / (big + Ti)) / (big + Ti) ** a)
        alive = 1 / ((alpha + Ti) ** (r + xi) * (beta + Ti) ** s)
        out.append(gammaln(r + xi) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
                   + np.log(alive + s / a * a0))
    return np.array(out)


@pytest.mark.parametrize("params", [(0.553, 10.578, 0.606, 11.669),  # α < β
                                    (0.8, 30.0, 0.5, 4.0),           # α > β
                                    (2.0, 5.0, 1.0, 5.0)])           # α = β
def test_pareto_likelihood_by_pairs_is_the_published_formula(cdnow_sample: pa.Table,
                                                              params: tuple[float, ...]):
    """The likelihood computed once per (x, T) and (x, t_x) pair and P(alive) agree with
    the paper's formula evaluated customer by customer."""
    x, t_x, T = weeks(cdnow_sample)
    data = clv.Summary.compress(x, t_x, T)
    assert data.rows is not None
    by_pairs = clv.pareto_log_likelihood(np.array(params), data)[data.rows]
    reference = _pareto_reference(np.array(params), x, t_x, T)
    assert by_pairs == pytest.approx(reference, rel=1e-10, abs=1e-10)
    r, alpha, s, beta = params
    named = {"r": r, "alpha": alpha, "s": s, "beta": beta}
    alive = clv.pareto_p_alive(named, x, t_x, T)
    # P(alive) = the "alive at T" term over the whole likelihood
    from scipy.special import gammaln

    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive_term = head - (r + x) * np.log(alpha + T) - s * np.log(beta + T)
    expected = np.where(t_x < T, np.exp(alive_term - reference), 1.0)
    assert alive == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert clv.pareto_p_alive_rows(named, data)[data.rows] == pytest.approx(alive, rel=1e-12)


def test_gamma_gamma_per_distinct_x_is_the_published_likelihood(cdnow_sample: pa.Table):
    """The fit groups customers by x; its log-likelihood at the optimum is the per-customer
    formula's (Fader, Hardie & Lee 2005, eq. 4), and no nearby point does better."""
    from scipy.special import gammaln

    x = cdnow_sample["x"].to_numpy().astype(float)
    m_x = np.nan_to_num(cdnow_sample["m_x"].to_numpy(zero_copy_only=False).astype(float))
    keep = (x > 0) & (m_x > 0)
    xk, mk = x[keep], m_x[keep]

    def reference(p: float, q: float, gamma: float) -> float:
        return float(np.sum(gammaln(p * xk + q) - gammaln(p * xk) - gammaln(q)
                            + q * np.log(gamma) + (p * xk - 1) * np.log(mk)
                            + p * xk * np.log(xk) - (p * xk + q) * np.log(gamma + mk * xk)))

    fit = clv.fit_gamma_gamma(x, m_x)
    best = (fit.params["p"], fit.params["q"], fit.params["gamma"])
    assert fit.log_likelihood == pytest.approx(reference(*best), rel=1e-12)
    for i in range(3):
        for step in (0.99, 1.01):
            moved = list(best)
            moved[i] *= step
            assert reference(*moved) < reference(*best)
