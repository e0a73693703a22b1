"""Voxelwise degree centrality (Buckner et al. 2009; Zuo et al. 2012; as DPABI computes it).

For each voxel, the number of voxels whose Pearson correlation with it exceeds a threshold (binarized degree)
and the sum of those correlations (weighted degree), self-connection excluded. Computed in blocks of rows of
the correlation matrix with float32 matrix products of the unit-norm centred series, so memory stays at
``block x voxels`` (at most ``max_block_bytes``) and never holds the voxels x voxels matrix.

The cost is O(nodes^2 x time), so :func:`coarsening_factor` bounds the number of nodes whatever the input: when
the mask has more than ``max_nodes`` voxels, DC is computed on the mean series of blocks of factor^3 voxels
(:func:`coarse_degree_centrality`), the smallest integer factor that brings the count under the bound.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from clbp_bidsapp.core.standardize import block_average, coarse_labels

MAX_NODES = 60_000  # default bound on DC nodes: ~60 000^2 x 240 products, ~30 s on 2 cores (docs/local-metrics.md)
MAX_BLOCK_BYTES = 256 * 2**20  # float32 correlation rows held at once


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


def rows_per_block(n_voxels: int, *, max_block_bytes: int = MAX_BLOCK_BYTES) -> int:
    """Rows of the correlation matrix computed at once so that a float32 block stays within ``max_block_bytes``."""
    return int(max(1, min(n_voxels, max_block_bytes // (4 * max(n_voxels, 1)))))


def degree_centrality(
    series: np.ndarray,
    *,
    threshold: float = 0.25,
    block_size: int | None = None,
    max_block_bytes: int = MAX_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Binarized and weighted degree of each column of a (time, voxels) array.

    ``block_size`` rows of the correlation matrix are computed at once (default: as many as fit in
    ``max_block_bytes``); the result does not depend on it.

    Returns
    -------
    binarized, weighted : (voxels,) float32 — count and sum of correlations r > threshold, self excluded.
    """
    z = unit_columns(series)
    v = z.shape[1]
    block_size = block_size or rows_per_block(v, max_block_bytes=max_block_bytes)
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


def coarsening_factor(mask: np.ndarray, *, max_nodes: int = MAX_NODES, min_factor: int = 1) -> int:
    """The smallest integer factor >= ``min_factor`` whose blocks of factor^3 voxels of ``mask`` number at most
    ``max_nodes`` (1: the data grid)."""
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    mask = np.asarray(mask, dtype=bool)
    factor = max(int(min_factor), 1)
    while coarse_labels(mask, factor=factor)[1] > max_nodes:
        factor += 1
    return factor


def coarse_degree_centrality(
    series: np.ndarray,
    *,
    mask: np.ndarray,
    factor: int,
    threshold: float = 0.25,
    max_block_bytes: int = MAX_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Degree centrality of the mean series of blocks of ``factor``^3 voxels; each voxel gets its block's values.

    ``series`` is (time, voxels) with voxels in the C order of the 3-D boolean ``mask``; ``factor`` 1 is the
    voxelwise :func:`degree_centrality`.
    """
    if factor <= 1:
        return degree_centrality(series, threshold=threshold, max_block_bytes=max_block_bytes)
    labels, n_blocks = coarse_labels(mask, factor=factor)
    blocks = block_average(series, labels, n_blocks)
    binarized, weighted = degree_centrality(blocks, threshold=threshold, max_block_bytes=max_block_bytes)
    return binarized[labels], weighted[labels]
