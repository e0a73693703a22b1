"""Degree centrality against the full correlation matrix."""

import numpy as np
import pytest

from clbp_bidsapp.core.centrality import (
    coarse_degree_centrality,
    coarsening_factor,
    degree_centrality,
    rows_per_block,
)


def test_matches_full_correlation_matrix():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((60, 3))
    series = (shared @ rng.standard_normal((3, 301)) + rng.standard_normal((60, 301))).astype(np.float32)
    series[:, 7] = 2.0  # constant voxel
    before = series.copy()
    binarized, weighted = degree_centrality(series, threshold=0.25, block_size=64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(series.T.astype(np.float64))
    r = np.nan_to_num(r)
    np.fill_diagonal(r, 0)
    above = r > 0.25
    near = np.abs(r - 0.25) < 1e-5  # float32 products may fall either side of the threshold
    assert np.all(np.abs(binarized - above.sum(1)) <= near.sum(1))
    np.testing.assert_allclose(weighted, (r * above).sum(1), atol=1e-3 + 0.26 * near.sum(1).max())
    assert binarized[7] == 0 and weighted[7] == 0
    np.testing.assert_array_equal(series, before)


# -- DOF-matched threshold ---------------------------------------------------------------------------------


def test_r_threshold_for_p_is_the_classical_critical_r_for_independent_samples():
    from scipy import stats

    from clbp_bidsapp.core.centrality import r_threshold_for_p

    # n independent samples: the operator's effective DOF is n - 1 (the mean removed), t has n - 2 DOF
    for n, p in ((20, 0.05), (100, 0.001), (12, 0.2)):
        t = stats.t.isf(p, n - 2)
        assert r_threshold_for_p(p, dof=n - 1) == pytest.approx(t / np.sqrt(t**2 + n - 2))
    assert r_threshold_for_p(0.001, dof=18.8) > r_threshold_for_p(0.001, dof=40) > r_threshold_for_p(0.001, dof=200)
    with pytest.raises(ValueError, match="more than 1 effective degree"):
        r_threshold_for_p(0.05, dof=1.0)


def test_dof_matched_threshold_passes_the_same_fraction_of_noise_pairs_whatever_the_confound_model():
    """The issue's figure: with a fixed r > 0.25 the fraction of unrelated pairs counted grows as regressors eat the
    band's DOF; converting one p with each run's effective DOF keeps that fraction at p."""
    from clbp_bidsapp.core.centrality import r_threshold_for_p
    from clbp_bidsapp.core.denoise import denoise

    rng = np.random.default_rng(0)
    n, voxels, p = 150, 300, 0.05
    motion = np.cumsum(rng.normal(0, 0.02, (n, 12)), axis=0)
    deriv = np.vstack([np.zeros(12), np.diff(motion, axis=0)])
    models = {"none": None, "24P": np.hstack([motion[:, :6], deriv[:, :6], motion[:, :6] ** 2, deriv[:, :6] ** 2]),
              "36P": np.hstack([motion, deriv, motion**2])}  # fmt: skip
    fixed, matched = {}, {}
    for name, confounds in models.items():
        noise = rng.standard_normal((n, voxels)).astype(np.float32)
        result = denoise(noise, confounds=confounds, sample_mask=np.ones(n, bool), tr=2.0, band=(0.01, 0.08))
        r = np.corrcoef(result.filtered.T)[np.triu_indices(voxels, 1)]
        fixed[name] = float((r > 0.25).mean())
        matched[name] = float((r > r_threshold_for_p(p, dof=result.dof.bandpass)).mean())
    assert fixed["none"] < fixed["24P"] < fixed["36P"] and fixed["36P"] > 2 * fixed["none"]
    for name, fraction in matched.items():
        assert fraction == pytest.approx(p, abs=0.015), (name, matched, fixed)


# -- bounded memory and cost ---------------------------------------------------------------------------------


def _correlated(n_time: int, n_voxels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n_time, 4))
    return (shared @ rng.standard_normal((4, n_voxels)) + rng.standard_normal((n_time, n_voxels))).astype(np.float32)


def test_blocked_degree_centrality_is_identical_to_unblocked():
    """Same counts; weighted sums equal up to float32 rounding (BLAS may order a block's sums differently)."""
    series = _correlated(50, 257)
    want_b, want_w = degree_centrality(series, threshold=0.25, block_size=257)
    for got_b, got_w in (
        degree_centrality(series, threshold=0.25, block_size=1),
        degree_centrality(series, threshold=0.25, block_size=10),
        degree_centrality(series, threshold=0.25, max_block_bytes=4 * 257 * 33),  # 33 rows per block
    ):
        np.testing.assert_array_equal(got_b, want_b)
        np.testing.assert_allclose(got_w, want_w, rtol=1e-6)


def test_rows_per_block_keeps_each_block_within_the_byte_budget():
    assert rows_per_block(235_375, max_block_bytes=256 * 2**20) == 285  # 2 mm brain mask: 268 MB, not 1.9 GB
    assert rows_per_block(100, max_block_bytes=10**9) == 100
    assert rows_per_block(10**9, max_block_bytes=16) == 1


def test_coarsening_factor_is_the_smallest_that_fits_the_node_bound():
    mask = np.zeros((9, 10, 8), dtype=bool)
    mask[1:8, 2:10, 0:6] = True  # 7 x 8 x 6 = 336 voxels
    assert coarsening_factor(mask, max_nodes=336) == 1
    # factor 2: blocks [0-1],[2-3],..: x 1..7 -> 4 blocks, y 2..9 -> 4, z 0..5 -> 3 = 48 blocks
    assert coarsening_factor(mask, max_nodes=335) == 2
    assert coarsening_factor(mask, max_nodes=48) == 2
    assert coarsening_factor(mask, max_nodes=47) == 3
    assert coarsening_factor(mask, max_nodes=10_000, min_factor=3) == 3  # a requested coarser grid is kept


def test_coarse_degree_centrality_is_the_degree_of_the_block_means():
    mask = np.zeros((6, 5, 4), dtype=bool)
    mask[:, :, :] = True
    mask[0, 0, 0] = mask[5, 4, 3] = False
    series = _correlated(40, int(mask.sum()), seed=3)
    binarized, weighted = coarse_degree_centrality(series, mask=mask, factor=2, threshold=0.3)
    # straightforward: group voxels by their 2x2x2 block, average, full correlation matrix, threshold
    ijk = np.argwhere(mask) // 2
    keys = [tuple(k) for k in ijk]
    blocks = sorted(set(keys))
    means = np.stack([series[:, [i for i, k in enumerate(keys) if k == b]].mean(axis=1) for b in blocks], axis=1)
    r = np.corrcoef(means.T.astype(np.float64))
    np.fill_diagonal(r, 0)
    above = r > 0.3
    want_b, want_w = above.sum(1), (r * above).sum(1)
    index = np.array([blocks.index(k) for k in keys])
    np.testing.assert_array_equal(binarized, want_b[index])
    np.testing.assert_allclose(weighted, want_w[index], atol=1e-4)
    assert len(blocks) == 3 * 3 * 2
