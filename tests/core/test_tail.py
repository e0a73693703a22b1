"""GPD tail approximation of max-statistic p-values (core/tail.py)."""

import numpy as np
import pytest
from scipy import stats

from clbp_bidsapp.core.tail import empirical_p, fit_tail, tail_p

EXACT_P = 0.001


def _draw(name: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """``size`` null values of a known distribution and the value whose exact upper-tail probability is 0.001."""
    if name == "normalmax":  # max of 1000 independent N(0,1): P(max > x) = 1 - Phi(x)^1000
        return rng.standard_normal((size, 1000)).max(axis=1), float(stats.norm.isf(1 - (1 - EXACT_P) ** 0.001))
    dist = {"exponential": stats.expon(), "gamma": stats.gamma(3)}[name]
    return dist.rvs(size=size, random_state=rng), float(dist.isf(EXACT_P))


@pytest.mark.parametrize("name", ["normalmax", "exponential", "gamma"])
def test_tail_p_closer_to_exact_than_empirical_with_500_permutations(name):
    """At exact p = 0.001 with 500 null values (identity included), the GPD tail p is the better estimate."""
    rng = np.random.default_rng(7)
    tail_err, emp_err = [], []
    for rep in range(40):
        null, x = _draw(name, rng, 500)
        null[0] = x  # the unpermuted data is one of the permutations
        p, fit = tail_p(np.array([x]), null, p_floor=1e-12, seed=rep)
        assert fit.threshold is not None
        tail_err.append(abs(np.log10(p[0] / EXACT_P)))
        emp_err.append(abs(np.log10(empirical_p(np.array([x]), null)[0] / EXACT_P)))
    # the empirical p can never go below 1/500 = 0.002 (|delta log10 p| >= 0.3); the tail can
    assert min(emp_err) >= np.log10(2) - 1e-9
    assert np.median(tail_err) < np.median(emp_err)
    assert np.percentile(tail_err, 90) < np.percentile(emp_err, 90)
    assert max(tail_err) < 1.0


def test_tail_p_monotone_and_floored():
    rng = np.random.default_rng(3)
    null = rng.gumbel(size=400)
    observed = np.linspace(-2, 40, 500)
    p, fit = tail_p(observed, null, p_floor=1e-6)
    assert fit.threshold is not None
    assert np.all(np.diff(p) <= 1e-15)
    assert p.min() == pytest.approx(1e-6)  # x = 40 is far beyond the tail: the floor, never 0
    below = observed <= fit.threshold
    np.testing.assert_array_equal(p[below], empirical_p(observed[below], null))


def test_fallback_to_empirical_when_no_fit_passes():
    """A null whose tail is two separated spikes is not GPD at any threshold: every p stays empirical."""
    null = np.r_[np.zeros(300), np.full(100, 5.0), np.full(100, 10.0)] + np.linspace(0, 1e-3, 500)
    observed = np.array([4.0, 9.0, 10.0, 20.0])
    p, fit = tail_p(observed, null, p_floor=1 / 500, p_threshold=0.4)
    assert fit.threshold is None
    np.testing.assert_array_equal(p, np.maximum(empirical_p(observed, null), 1 / 500))


def test_too_few_exceedances_falls_back():
    fit = fit_tail(np.arange(50.0), p_threshold=0.1, min_exceedances=20)
    assert fit.threshold is None and fit.attempts == 0


def test_deterministic():
    null = np.random.default_rng(0).standard_normal(300)
    first, _ = tail_p(np.array([2.5, 3.5]), null, p_floor=1e-9, seed=5)
    second, _ = tail_p(np.array([2.5, 3.5]), null, p_floor=1e-9, seed=5)
    np.testing.assert_array_equal(first, second)


def test_engine_tail_option_refines_small_fwe_p_only():
    """With ``tail="gpd"`` a strong planted effect gets p below 1/n_perm; p >= 0.1 stays the empirical p."""
    from clbp_bidsapp.core.stats import Design, min_permutation_p, permutation_test

    rng = np.random.default_rng(0)
    group = np.repeat([1.0, 0.0], 12)
    data = rng.standard_normal((24, 300))
    data[:, :5] += 3.5 * group[:, None]
    design = Design(matrix=np.column_stack([group, np.ones(24)]), names=["group", "intercept"], tested=0)
    plain = permutation_test(data, design, n_permutations=300, seed=1)
    accel = permutation_test(data, design, n_permutations=300, seed=1, tail="gpd")
    strongest = np.isclose(plain.p_fwe, 1 / 300)  # only the identity reaches them
    assert strongest[:5].sum() >= 3
    assert accel.tail_fits["maxt"].threshold is not None
    assert accel.p_fwe[strongest].max() < 1 / 300
    assert accel.p_fwe.min() >= min_permutation_p(group) == pytest.approx(1 / 2704156)  # 24 choose 12
    high = plain.p_fwe >= 0.1
    np.testing.assert_allclose(accel.p_fwe[high], plain.p_fwe[high])
