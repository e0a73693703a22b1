"""TFCE against nilearn's calculate_tfce, against the published definition written out, and on hand-computed maps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from clbp_bidsapp.core.tfce import TfceGraph, tfce

SHAPES = [(7, 8, 9), (12, 14, 10), (6, 11, 7)]


def _smooth_map(shape, seed, *, sigma=1.2, scale=4.0):
    rng = np.random.default_rng(seed)
    volume = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return volume / volume.std() * scale / 3


def _holey_mask(shape, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    mask &= rng.uniform(size=shape) > 0.15  # scattered holes
    mask[shape[0] // 2, :, :] = False  # and a slab that cuts the volume in two
    return mask


def _nilearn_tfce(stat, mask, *, two_sided, connectivity=6, dh="auto"):
    from nilearn.mass_univariate._utils import calculate_tfce

    volume = np.zeros(mask.shape)
    volume[mask] = stat
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn warns when it clips the number of steps
        out = calculate_tfce(
            volume[..., None], ndimage.generate_binary_structure(3, rank), dh=dh, two_sided_test=two_sided
        )
    return out[..., 0][mask]


def _definition(stat, mask, *, two_sided, connectivity=6, e=0.5, h=2.0, n_steps=100):
    """Smith & Nichols (2009): sum over thresholds of extent^E * height^H * dh, for each tail separately."""
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    volume = np.zeros(mask.shape)
    volume[mask] = stat
    top = np.abs(stat).max() if two_sided else max(stat.max(), 0.0)
    dh = top / n_steps
    result = np.zeros(mask.shape)
    for sign in (1, -1) if two_sided else (1,):
        for height in np.linspace(0, top, n_steps + 1)[1:]:
            labels, count = ndimage.label(sign * volume >= height, structure)
            for cluster in range(1, count + 1):
                inside = labels == cluster
                result[inside] += sign * inside.sum() ** e * height**h * dh
    return result[mask]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("two_sided", [True, False])
def test_equals_nilearn_calculate_tfce(shape, two_sided):
    for seed in range(3):
        mask = _holey_mask(shape, seed)
        stat = _smooth_map(shape, seed + 10)[mask]
        ours = tfce(stat, mask, two_sided=two_sided)
        ref = _nilearn_tfce(stat, mask, two_sided=two_sided)
        assert np.count_nonzero(ref) > 10  # the maps do have clusters
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("connectivity", [18, 26])
def test_equals_nilearn_with_other_connectivity_and_fixed_step(connectivity):
    mask = _holey_mask((9, 10, 8), 4)
    stat = _smooth_map((9, 10, 8), 5, sigma=0.8)[mask]
    for dh in ("auto", 0.1, 0.01, 5.0):  # 5.0: fewer than 10 steps, clipped to 10 as nilearn does
        ours = tfce(stat, mask, connectivity=connectivity, dh=dh)
        ref = _nilearn_tfce(stat, mask, two_sided=True, connectivity=connectivity, dh=dh)
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-9)
    # and 6-connectivity differs from it (the option is used)
    assert not np.allclose(tfce(stat, mask, connectivity=6), tfce(stat, mask, connectivity=connectivity))


@pytest.mark.parametrize("two_sided", [True, False])
def test_equals_the_published_definition_times_dh(two_sided):
    # nilearn (and fslmaths) leave out the factor dh of Smith & Nichols (2009); with it, the definition is recovered
    shape = (10, 9, 7)
    mask = _holey_mask(shape, 7)
    stat = _smooth_map(shape, 8)[mask]
    top = np.abs(stat).max() if two_sided else stat.max()
    for connectivity in (6, 26):
        ours = tfce(stat, mask, two_sided=two_sided, connectivity=connectivity)
        ref = _definition(stat, mask, two_sided=two_sided, connectivity=connectivity)
        np.testing.assert_allclose(ours * top / 100, ref, rtol=1e-10, atol=1e-9)
    # other exponents
    ours = tfce(stat, mask, two_sided=two_sided, e=1.0, h=1.5)
    ref = _definition(stat, mask, two_sided=two_sided, e=1.0, h=1.5)
    np.testing.assert_allclose(ours * top / 100, ref, rtol=1e-10, atol=1e-9)


def test_isolated_voxel_known_answer():
    mask = np.ones((3, 4, 5), dtype=bool)
    volume = np.zeros(mask.shape)
    volume[1, 2, 3] = 3.0
    scores = tfce(volume[mask], mask)
    # 100 steps of 0.03: the voxel is its own cluster (extent 1) at each; sum_k (0.03 k)^2 = 0.0009 * 338350
    expected = np.zeros(mask.shape)
    expected[1, 2, 3] = 0.0009 * 338350
    np.testing.assert_allclose(scores, expected[mask], rtol=1e-12)
    np.testing.assert_allclose(tfce(-volume[mask], mask), -expected[mask], rtol=1e-12)  # negative tail negative
    assert not tfce(-volume[mask], mask, two_sided=False).any()  # one-sided ignores the negative tail


def test_two_clusters_joined_below_a_saddle_known_answer():
    # a row [2, 0.99, 2] and, apart from it, a pair of 2s and a negative voxel; steps h_k = 0.02 k (k = 1..100)
    mask = np.ones((4, 6, 3), dtype=bool)
    volume = np.zeros(mask.shape)
    volume[0, 0:3, 0] = [2.0, 0.99, 2.0]
    volume[3, 4:6, 2] = 2.0
    volume[3, 0, 2] = -0.51
    scores = tfce(volume[mask], mask).reshape(mask.shape)
    sq = 0.0004  # h_k^2 = 0.0004 k^2
    low, full = sq * 40425, sq * 338350  # sum_{k<=49} k^2 = 40425 (h <= 0.98 < 0.99), sum_{k<=100} k^2 = 338350
    np.testing.assert_allclose(scores[0, 1, 0], np.sqrt(3) * low, rtol=1e-12)  # the saddle: a 3-voxel cluster
    np.testing.assert_allclose(scores[0, 0, 0], np.sqrt(3) * low + (full - low), rtol=1e-12)  # then alone
    np.testing.assert_allclose(scores[0, 2, 0], scores[0, 0, 0], rtol=1e-12)
    np.testing.assert_allclose(scores[3, 4:6, 2], np.sqrt(2) * full, rtol=1e-12)  # a pair at every step
    np.testing.assert_allclose(scores[3, 0, 2], -sq * 5525, rtol=1e-12)  # negative tail, k <= 25: sum k^2 = 5525
    assert np.count_nonzero(scores) == 6


def test_batch_equals_single_maps_and_inputs_are_not_changed():
    shape = (8, 7, 9)
    mask = _holey_mask(shape, 1)
    stats = np.stack([_smooth_map(shape, seed)[mask] for seed in range(5)])
    stats[3] = 0.0  # an empty map
    stats[4] = -np.abs(stats[4])  # one-sided: no positive value at all
    before = stats.copy()
    graph = TfceGraph(mask)
    for two_sided in (True, False):
        batch = graph.scores(stats, two_sided=two_sided)
        singles = np.stack([tfce(row, mask, two_sided=two_sided) for row in stats])
        np.testing.assert_array_equal(batch, singles)
        refs = np.stack([_nilearn_tfce(row, mask, two_sided=two_sided) for row in stats])
        np.testing.assert_allclose(batch, refs, rtol=1e-10, atol=1e-9)
    np.testing.assert_array_equal(stats, before)
    assert not graph.scores(stats[3:4]).any()


def test_rejects_bad_input():
    mask = np.ones((3, 3, 3), dtype=bool)
    with pytest.raises(ValueError, match="finite"):
        tfce(np.r_[np.nan, np.zeros(26)], mask)
    with pytest.raises(ValueError, match="connectivity"):
        tfce(np.zeros(27), mask, connectivity=8)
    with pytest.raises(ValueError, match="dh"):
        tfce(np.zeros(27), mask, dh=0)
    with pytest.raises(ValueError, match="stats must be"):
        tfce(np.zeros(26), mask)
