"""Connectivity kernels against their definitions and nilearn."""

from __future__ import annotations

import numpy as np
import pytest
from nilearn.connectome import ConnectivityMeasure
from scipy import sparse
from sklearn.covariance import EmpiricalCovariance

from clbp_bidsapp.core import connectivity


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_region_means_are_plain_means_and_nan_without_voxels(rng):
    series = rng.normal(size=(30, 11))
    membership = sparse.csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                                             [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                                             [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]], float))  # fmt: skip
    means = connectivity.region_means(series, membership)
    np.testing.assert_allclose(means[:, 0], series[:, [0, 1, 10]].mean(axis=1))
    np.testing.assert_allclose(means[:, 2], series[:, 2:5].mean(axis=1))
    assert np.isnan(means[:, 1]).all()


def test_seed_correlation_equals_corrcoef_and_fisher_z_is_arctanh(rng):
    series = rng.normal(size=(50, 37)).astype(np.float32)
    series[:, 5] = 3.0  # a constant voxel
    seeds = rng.normal(size=(50, 2))
    seeds[:, 1] = series[:, 9] * 2 + 1  # perfectly correlated with voxel 9
    r = connectivity.seed_correlation(series, seeds, block=8)
    for k in range(2):
        for v in (0, 9, 36):
            np.testing.assert_allclose(r[k, v], np.corrcoef(seeds[:, k], series[:, v])[0, 1], atol=2e-6)
    assert r[0, 5] == 0
    z = connectivity.fisher_z(r)
    np.testing.assert_allclose(z[0, :5], np.arctanh(r[0, :5]), rtol=1e-6)
    assert np.isfinite(z[1, 9]) and z[1, 9] > 7  # r = 1 is clipped, not infinite


def test_nan_seed_gives_nan_row(rng):
    series = rng.normal(size=(20, 6))
    seeds = np.full((20, 1), np.nan)
    assert np.isnan(connectivity.seed_correlation(series, seeds)).all()


def test_correlation_matrix_equals_nilearn_with_nan_regions(rng):
    ts = rng.normal(size=(80, 6)) @ rng.normal(size=(6, 6))
    # Pearson: nilearn with the empirical covariance (its default Ledoit-Wolf estimator shrinks correlations)
    expected = ConnectivityMeasure(cov_estimator=EmpiricalCovariance(), kind="correlation").fit_transform([ts])[0]
    np.testing.assert_allclose(connectivity.correlation_matrix(ts), expected, atol=1e-10)
    ts_nan = np.column_stack([ts, np.full(80, np.nan)])
    matrix = connectivity.correlation_matrix(ts_nan)
    assert np.isnan(matrix[6]).all() and np.isnan(matrix[:, 6]).all()
    np.testing.assert_allclose(matrix[:6, :6], expected, atol=1e-10)


def test_partial_correlation_equals_nilearn(rng):
    ts = rng.normal(size=(120, 8)) @ rng.normal(size=(8, 8))
    expected = ConnectivityMeasure(kind="partial correlation").fit_transform([ts])[0]
    ours = connectivity.partial_correlation(ts)
    np.testing.assert_allclose(ours, expected, atol=1e-10)
    with_nan = connectivity.partial_correlation(np.column_stack([ts[:, :3], np.full(120, np.nan), ts[:, 3:]]))
    assert np.isnan(with_nan[3]).all()
    np.testing.assert_allclose(np.delete(np.delete(with_nan, 3, 0), 3, 1), expected, atol=1e-10)


def test_dual_regression_recovers_planted_maps_and_series(rng):
    n_time, n_voxels, k = 200, 3000, 4
    true_maps = np.zeros((k, n_voxels))
    for c in range(k):  # overlapping Gaussian blobs on a line of voxels
        centre = 400 + 700 * c
        true_maps[c] = np.exp(-((np.arange(n_voxels) - centre) ** 2) / (2 * 150.0**2))
    true_series = rng.normal(size=(n_time, k))
    data = true_series @ true_maps + 0.5 * rng.normal(size=(n_time, n_voxels)) + 100
    template = true_maps + 0.2 * rng.random(true_maps.shape)  # an imperfect group template
    series, maps = connectivity.dual_regression(data, template, normalise=True)
    for c in range(k):
        assert np.corrcoef(series[:, c], true_series[:, c])[0, 1] >= 0.9
        assert np.corrcoef(maps[c], true_maps[c])[0, 1] >= 0.9


def test_dual_regression_stages_are_the_least_squares_definitions(rng):
    data = rng.normal(size=(40, 300))
    maps = rng.normal(size=(3, 300))
    series, beta = connectivity.dual_regression(data, maps, normalise=False)
    # stage 1: for each volume, OLS of the demeaned volume on the demeaned maps
    x1 = (maps - maps.mean(axis=1, keepdims=True)).T
    for t in (0, 17, 39):
        y = data[t] - data[t].mean()
        np.testing.assert_allclose(series[t], np.linalg.pinv(x1) @ y, atol=1e-10)
    # stage 2: OLS of each demeaned voxel on the demeaned stage-1 series
    x2 = series - series.mean(axis=0)
    for v in (0, 150, 299):
        y = data[:, v] - data[:, v].mean()
        np.testing.assert_allclose(beta[:, v], np.linalg.pinv(x2) @ y, rtol=1e-4, atol=1e-6)
    _, beta_norm = connectivity.dual_regression(data, maps, normalise=True)
    np.testing.assert_allclose(beta_norm, beta * x2.std(axis=0, ddof=1)[:, None], rtol=1e-4, atol=1e-6)


def test_signal_voxels_counts_finite_varying_members(rng):
    series = rng.normal(size=(25, 8))
    series[:, 1] = 0.0  # no signal
    series[:, 2] = 4.0  # constant
    series[3, 3] = np.nan  # not finite
    membership = sparse.csr_matrix(np.array([[1, 1, 1, 1, 0, 0, 0, 0],
                                             [0, 0, 0, 0, 1, 1, 0, 0],
                                             [0, 1, 1, 0, 0, 0, 0, 0],
                                             [0, 0, 0, 0, 0, 0, 0, 0]], float))  # fmt: skip
    np.testing.assert_array_equal(connectivity.signal_voxels(series, membership), [1, 2, 0, 0])


def test_has_signal_refuses_constant_and_nan_series(rng):
    series = rng.normal(size=(20, 4))
    series[:, 1] = 0.0
    series[5, 2] = np.nan
    series[:, 3] = np.inf
    np.testing.assert_array_equal(connectivity.has_signal(series), [True, False, False, False])


def test_one_pass_dual_regression_equals_the_two_least_squares_fits(rng):
    """Both stage-2 maps come from one pass; each equals its own lstsq fit of the demeaned data (float32 input)."""
    data = (rng.normal(size=(50, 400)) + 3.0).astype(np.float32)
    maps = rng.normal(size=(4, 400))
    series, normalised, unnormalised = connectivity.dual_regression_maps(data, maps)
    y = data.astype(np.float64)
    x1 = (maps - maps.mean(axis=1, keepdims=True)).T
    want_series = np.linalg.lstsq(x1, (y - y.mean(axis=1, keepdims=True)).T, rcond=None)[0].T
    np.testing.assert_allclose(series, want_series, atol=1e-10)
    x2 = want_series - want_series.mean(axis=0)
    y2 = y - y.mean(axis=0)
    np.testing.assert_allclose(unnormalised, np.linalg.lstsq(x2, y2, rcond=None)[0], rtol=1e-5, atol=1e-6)
    x2n = x2 / x2.std(axis=0, ddof=1)
    np.testing.assert_allclose(normalised, np.linalg.lstsq(x2n, y2, rcond=None)[0], rtol=1e-5, atol=1e-6)
    assert connectivity.dual_regression(data, maps, normalise=False)[1].tobytes() == unnormalised.tobytes()
