"""Regional homogeneity (Zang et al. 2004): Kendall's coefficient of concordance W of each voxel's time
series with those of its in-mask neighbours (itself included).

For a voxel with K in-mask neighbours (itself included) over n time points, with ranks r_ij (ties averaged,
as ``scipy.stats.rankdata(method="average")``), R_i = sum_j r_ij and
``W = 12 * sum_i (R_i - K (n + 1) / 2)^2 / (K^2 (n^3 - n))`` — the uncorrected W used by REST/DPABI (no tie
correction term; ties are rare in floating-point BOLD series). Neighbourhoods: 7 (faces), 19 (faces and
edges) or 27 (the 3x3x3 cube); voxels at the mask edge use the neighbours they have (their own K).

Speed: ranks come from one argsort per voxel block, tie groups are averaged with vectorised run-length
arithmetic, and neighbourhood rank sums are separable box sums on the grid (a 27-cube is three 1-D sums; 19 is
the cube minus its 8 corners; 7 is the centre plus the 6 face neighbours), in time blocks to bound memory.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURHOODS = (7, 19, 27)


def rank_series(series: np.ndarray, *, block: int = 16384) -> np.ndarray:
    """Ranks (1..n) of each column along time, ties averaged; float32 (time, voxels).

    Works on contiguous (voxels, time) blocks so numpy's vectorised argsort runs along contiguous rows; only
    the rows that contain ties go through the (slower) tie-averaging arithmetic.
    """
    x = np.asarray(series)
    n, v = x.shape
    ranks = np.empty((n, v), dtype=np.float32)
    positions = np.arange(1, n + 1, dtype=np.float32)
    for start in range(0, v, block):
        rows = np.ascontiguousarray(x[:, start : start + block].T)  # (voxels, time)
        order = np.argsort(rows, axis=1)
        ordered = np.take_along_axis(rows, order, axis=1)
        tied = ordered[:, 1:] == ordered[:, :-1]
        values = np.broadcast_to(positions, rows.shape).copy()
        with_ties = np.flatnonzero(tied.any(axis=1))
        if with_ties.size:
            values[with_ties] = _average_tied_positions(tied[with_ties])
        block_ranks = np.empty(rows.shape, dtype=np.float32)
        np.put_along_axis(block_ranks, order, values, axis=1)
        ranks[:, start : start + block] = block_ranks.T
    return ranks


def _average_tied_positions(tied: np.ndarray) -> np.ndarray:
    """Average rank of each sorted position, given which neighbours in sorted order are equal."""
    rows, n_minus_1 = tied.shape
    n = n_minus_1 + 1
    index = np.broadcast_to(np.arange(n), (rows, n))
    starts_group = np.ones((rows, n), dtype=bool)
    starts_group[:, 1:] = ~tied
    ends_group = np.ones((rows, n), dtype=bool)
    ends_group[:, :-1] = ~tied
    first = np.maximum.accumulate(np.where(starts_group, index, 0), axis=1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends_group, index, n), axis=1), axis=1), axis=1)
    return ((first + last) / 2.0 + 1.0).astype(np.float32)


def _shift_sum(volume: np.ndarray, offsets: list[tuple[int, int, int]]) -> np.ndarray:
    """Sum of ``volume`` shifted by each (dx, dy, dz) offset over its last three axes (zero padded)."""
    out = np.zeros_like(volume)
    nx, ny, nz = volume.shape[-3:]
    for dx, dy, dz in offsets:
        dst = tuple(slice(max(-d, 0), s - max(d, 0)) for d, s in zip((dx, dy, dz), (nx, ny, nz), strict=True))
        src = tuple(slice(max(d, 0), s - max(-d, 0)) for d, s in zip((dx, dy, dz), (nx, ny, nz), strict=True))
        out[(Ellipsis, *dst)] += volume[(Ellipsis, *src)]
    return out


def _box3(volume: np.ndarray) -> np.ndarray:
    """3x3x3 box sum over the last three axes, as three separable 1-D sums."""
    out = volume
    for axis in (-3, -2, -1):
        padded = out.copy()
        lower = [slice(None)] * out.ndim
        upper = [slice(None)] * out.ndim
        lower[axis], upper[axis] = slice(1, None), slice(None, -1)
        padded[tuple(lower)] += out[tuple(upper)]
        padded[tuple(upper)] += out[tuple(lower)]
        out = padded
    return out


def neighbourhood_sum(volume: np.ndarray, *, neighbourhood: int) -> np.ndarray:
    """Sum over the 7-, 19- or 27-voxel neighbourhood (centre included) over the last three axes."""
    if neighbourhood == 27:
        return _box3(volume)
    faces = [(0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    if neighbourhood == 7:
        return _shift_sum(volume, faces)
    if neighbourhood == 19:
        corners = [(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
        return _box3(volume) - _shift_sum(volume, corners)
    raise ValueError(f"neighbourhood must be one of {NEIGHBOURHOODS}, got {neighbourhood}")


def reho(series: np.ndarray, *, mask: np.ndarray, neighbourhood: int = 27, time_block: int = 16) -> np.ndarray:
    """Kendall's W ReHo of each in-mask voxel.

    Parameters
    ----------
    series : (time, voxels) in the C order of ``np.flatnonzero(mask)`` (i.e. ``data[mask]``)
    mask : 3-D bool array with ``mask.sum() == voxels``
    neighbourhood : 7, 19 or 27

    Returns
    -------
    (voxels,) float32 in [0, 1]; 0 for constant voxels' neighbourhoods only if every member is constant.
    """
    if neighbourhood not in NEIGHBOURHOODS:
        raise ValueError(f"neighbourhood must be one of {NEIGHBOURHOODS}, got {neighbourhood}")
    mask = np.asarray(mask, dtype=bool)
    n = series.shape[0]
    if series.shape[1] != mask.sum():
        raise ValueError(f"series has {series.shape[1]} voxels, mask has {int(mask.sum())}")
    # work inside the mask's bounding box (plus one voxel) to save memory and time
    nz = np.argwhere(mask)
    lo, hi = np.maximum(nz.min(0) - 1, 0), np.minimum(nz.max(0) + 2, mask.shape)
    box = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    count = neighbourhood_sum(box.astype(np.float32), neighbourhood=neighbourhood)[box]
    ranks = rank_series(series)
    centred_sum_sq = np.zeros(int(mask.sum()), dtype=np.float64)
    grid = np.zeros((min(time_block, n), *box.shape), dtype=np.float32)
    for start in range(0, n, time_block):
        stop = min(start + time_block, n)
        grid[: stop - start][:, box] = ranks[start:stop]
        summed = neighbourhood_sum(grid[: stop - start], neighbourhood=neighbourhood)[:, box]
        summed -= count * np.float32((n + 1) / 2.0)
        centred_sum_sq += np.einsum("tv,tv->v", summed, summed, dtype=np.float64)
    w = 12.0 * centred_sum_sq / (count.astype(np.float64) ** 2 * (n**3 - n))
    return w.astype(np.float32)
