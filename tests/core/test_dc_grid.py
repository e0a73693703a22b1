"""Where degree centrality is computed: the grey-matter mask and the coarse grid (core.centrality)."""

from __future__ import annotations

import numpy as np
import pytest

from clbp_bidsapp.core import centrality


def test_the_analysis_mask_is_grey_matter_within_the_brain():
    mask = np.zeros((3, 4, 5), bool)
    mask[1:, 1:, 1:] = True
    gm = np.zeros(mask.shape)
    gm[..., 3:] = 0.5
    gm[2, 2, 3] = 0.2  # not above the threshold
    dc_mask = centrality.analysis_mask(mask, gm)
    assert dc_mask.sum() == mask[..., 3:].sum() - 1 and not (dc_mask & ~mask).any()
    assert (centrality.analysis_mask(mask) == mask).all()


@pytest.mark.parametrize(
    ("resolution", "voxel", "factor"),
    [(0.0, (2, 2, 2), 1), (4.0, (2, 2, 2), 2), (6.0, (2, 2, 2), 3), (5.0, (3, 3, 4), 2), (1.0, (2, 2, 2), 1)],
)
def test_the_coarse_factor_rounds_the_requested_resolution_to_whole_voxels(resolution, voxel, factor):
    assert centrality.coarse_factor(resolution, voxel) == factor


def test_on_the_coarse_grid_every_voxel_takes_its_blocks_degree():
    rng = np.random.default_rng(4)
    mask = np.ones((4, 4, 2), bool)  # blocks of 2x2x2: 4 blocks of 8 voxels
    block_signals = rng.normal(size=(50, 4))
    block_signals[:, 1] = block_signals[:, 0] + 0.1 * rng.normal(size=50)  # blocks 0 and 1 correlated
    ijk = np.argwhere(mask) // 2
    block_of_voxel = np.unique(ijk, axis=0, return_inverse=True)[1].ravel()
    series = block_signals[:, block_of_voxel] + 0.01 * rng.normal(size=(50, mask.sum()))
    binarized, weighted = centrality.degree_centrality_on_grid(series, mask=mask, factor=2, threshold=0.5)
    expected_b, expected_w = centrality.degree_centrality(block_signals, threshold=0.5)
    np.testing.assert_allclose(binarized, expected_b[block_of_voxel])
    np.testing.assert_allclose(weighted, expected_w[block_of_voxel], atol=0.01)
    assert binarized[block_of_voxel == 0].min() == 1 and binarized[block_of_voxel == 2].max() == 0
    same = centrality.degree_centrality_on_grid(series, mask=mask, factor=1, threshold=0.5)
    np.testing.assert_array_equal(same[0], centrality.degree_centrality(series, threshold=0.5)[0])
