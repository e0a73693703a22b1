"""Voxelwise degree centrality (Buckner et al. 2009; Zuo et al. 2012; as DPABI computes it).

For each voxel, the number of voxels whose Pearson correlation with it exceeds a threshold (binarized degree)
and the sum of those correlations (weighted degree), self-connection excluded. Computed in blocks of rows of
the correlation matrix with float32 matrix products of the unit-norm centred series, so memory stays at
``block x voxels`` and never holds the voxels x voxels matrix.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from clbp_bidsapp.core import standardize


def r_threshold_for_p(p: float, *, dof: float) -> float:
    """The correlation above which r > 0 has one-sided p < ``p``, for series with ``dof`` effective DOF.

    Two independent white-noise series passed through a denoising operator with effective DOF ``dof`` = ν
    (``core.denoise.effective_dof``) have var(r) ~ tr(C^2)/tr(C)^2 = 1/ν; n independent samples have
    var(r) = 1/(n - 1). The run is therefore treated as n = ν + 1 samples: t = r sqrt(ν - 1) / sqrt(1 - r^2)
    with ν - 1 degrees of freedom, so r = t / sqrt(t^2 + ν - 1) with t the upper-``p`` quantile of Student's t.
    A DC threshold chosen this way passes the same fraction ``p`` of unrelated voxel pairs in every run,
    whatever its length, censoring or confound model (a fixed r does not).
    """
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if dof <= 1:
        raise ValueError(f"a p threshold needs more than 1 effective degree of freedom, got {dof:g}")
    t = float(stats.t.isf(p, dof - 1))
    return t / float(np.sqrt(t * t + dof - 1))


def unit_columns(series: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit norm (float32); constant columns become 0."""
    x = np.asarray(series, dtype=np.float32)
    x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    norm = np.sqrt(np.einsum("tv,tv->v", x, x, dtype=np.float64)).astype(np.float32)
    norm[norm == 0] = np.inf
    x /= norm
    return x


def degree_centrality(
    series: np.ndarray, *, threshold: float = 0.25, block_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Binarized and weighted degree of each column of a (time, voxels) array.

    Returns
    -------
    binarized, weighted : (voxels,) float32 — count and sum of correlations r > threshold, self excluded.
    """
    z = unit_columns(series)
    v = z.shape[1]
    binarized = np.zeros(v, dtype=np.float64)
    weighted = np.zeros(v, dtype=np.float64)
    self_r = np.einsum("tv,tv->v", z, z)  # 1 for every non-constant voxel, 0 for constant ones
    for start in range(0, v, block_size):
        stop = min(start + block_size, v)
        excess = z[:, start:stop].T @ z  # (block, voxels) correlations, float32
        # r > t  <=>  r - t > 0: two in-place passes give max(r - t, 0); its sum and non-zero count give
        # both degrees without a boolean temporary the size of the block
        np.subtract(excess, np.float32(threshold), out=excess)
        np.maximum(excess, 0, out=excess)
        count = np.count_nonzero(excess, axis=1)
        binarized[start:stop] = count
        weighted[start:stop] = excess.sum(axis=1, dtype=np.float64) + threshold * count
    # remove the self-connection (r = 1 > threshold) of non-constant voxels
    self_above = self_r > threshold
    binarized -= self_above
    weighted -= np.where(self_above, self_r, 0.0)
    return binarized.astype(np.float32), weighted.astype(np.float32)


GM_THRESHOLD = 0.2  # grey-matter probability above which a voxel enters degree centrality (DPABI's default)


def analysis_mask(mask: np.ndarray, gm_probability: np.ndarray | None = None) -> np.ndarray:
    """The voxels DC is computed in: the brain mask, within grey matter (probability > 0.2) when a map is given."""
    mask = np.asarray(mask, dtype=bool)
    if gm_probability is None:
        return mask.copy()
    return mask & (np.asarray(gm_probability) > GM_THRESHOLD)


def coarse_factor(resolution_mm: float, voxel_size_mm) -> int:
    """Edge, in voxels, of the blocks DC is computed on for a requested resolution (1: the data grid)."""
    if resolution_mm <= 0:
        return 1
    return max(round(resolution_mm / min(voxel_size_mm)), 1)


def degree_centrality_on_grid(
    series: np.ndarray, *, mask: np.ndarray, factor: int = 1, threshold: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Binarized and weighted DC of the (time, in-mask voxels) ``series`` of ``mask``.

    With ``factor`` > 1 the degrees are those of the mean series of ``factor``^3-voxel blocks (C-order block
    labels of ``mask``), and every voxel takes its block's values; ``factor`` 1 is :func:`degree_centrality`.
    """
    if factor <= 1:
        return degree_centrality(series, threshold=threshold)
    labels, n_blocks = standardize.coarse_labels(mask, factor=factor)
    binarized, weighted = degree_centrality(standardize.block_average(series, labels, n_blocks), threshold=threshold)
    return binarized[labels], weighted[labels]
