import numpy as np
import pytest

from clbp_bidsapp.core.standardize import (
    block_average,
    coarse_labels,
    mean_divide_map,
    smooth_volume,
    zscore_map,
)


def test_z_and_m_maps():
    values = np.array([1.0, 2.0, 3.0, np.nan, 6.0])
    z = zscore_map(values)
    finite = values[np.isfinite(values)]
    np.testing.assert_allclose(z[[0, 1, 2, 4]], (finite - finite.mean()) / finite.std(), rtol=1e-6)
    assert np.isnan(z[3])
    np.testing.assert_allclose(mean_divide_map(values)[[0, 4]], [1 / 3, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(zscore_map(np.full(4, 2.0)), 0)


def test_smoothing_keeps_a_constant_map_constant_up_to_the_edges():
    mask = np.zeros((11, 12, 13), bool)
    mask[2:9, 3:10, 2:11] = True
    volume = np.where(mask, 5.0, 0.0)
    smooth = smooth_volume(volume, mask=mask, fwhm_mm=6, voxel_size_mm=(2, 2, 2))
    np.testing.assert_allclose(smooth[mask], 5.0, rtol=1e-5)  # no bleed of outside zeros
    assert (smooth[~mask] == 0).all()


def test_smoothing_fwhm_in_mm():
    volume = np.zeros((41, 41, 41))
    volume[20, 20, 20] = 1.0
    mask = np.ones_like(volume, bool)
    smooth = smooth_volume(volume, mask=mask, fwhm_mm=8, voxel_size_mm=(2, 2, 2))
    profile = smooth[:, 20, 20].astype(float)
    d = np.arange(41) - 20
    sigma_voxels = np.sqrt((d**2 * profile).sum() / profile.sum())
    assert 2 * np.sqrt(2 * np.log(2)) * sigma_voxels * 2.0 == pytest.approx(8.0, rel=0.02)


def test_block_average():
    mask = np.ones((4, 4, 2), bool)
    labels, n_blocks = coarse_labels(mask, factor=2)
    assert n_blocks == 4
    series = np.arange(32, dtype=float)[None, :].repeat(3, 0)
    means = block_average(series, labels, n_blocks)
    for b in range(n_blocks):
        np.testing.assert_allclose(means[:, b], series[:, labels == b].mean(1))


def test_smooth_series_equals_smoothing_each_volume():
    from clbp_bidsapp.core.standardize import smooth_series

    rng = np.random.default_rng(0)
    mask = rng.random((9, 10, 11)) > 0.3
    series = rng.standard_normal((5, int(mask.sum()))).astype(np.float32)
    smoothed = smooth_series(series, mask=mask, fwhm_mm=5, voxel_size_mm=(2, 2, 3))
    for t in range(5):
        volume = np.zeros(mask.shape)
        volume[mask] = series[t]
        expected = smooth_volume(volume, mask=mask, fwhm_mm=5, voxel_size_mm=(2, 2, 3))[mask]
        np.testing.assert_allclose(smoothed[t], expected, rtol=1e-4, atol=1e-5)
