"""Standardisation and smoothing of maps for group analysis, and grid coarsening for degree centrality.

- z map: (value - mean) / SD over the brain mask (C-PAC/DPABI "z" maps);
- m map: value / mean over the brain mask (DPABI "m" maps, e.g. mALFF);
- smoothing: Gaussian of the given FWHM (sigma = FWHM / (2 sqrt(2 ln 2)) per axis in voxels), normalised by the
  smoothed mask so that values from outside the brain (zeros) do not pull edge voxels down.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def zscore_map(values: np.ndarray) -> np.ndarray:
    """(values - mean) / SD over finite entries (NaN stay NaN); a constant map gives zeros."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    sd = v[finite].std()
    out = (v - v[finite].mean()) / (sd if sd > 0 else 1.0)
    return out.astype(np.float32)


def mean_divide_map(values: np.ndarray) -> np.ndarray:
    """values / mean over finite entries (DPABI's m maps)."""
    v = np.asarray(values, dtype=np.float64)
    mean = v[np.isfinite(v)].mean()
    return (v / (mean if mean != 0 else 1.0)).astype(np.float32)


def smooth_volume(volume: np.ndarray, *, mask: np.ndarray, fwhm_mm: float, voxel_size_mm) -> np.ndarray:
    """Gaussian smoothing within ``mask`` (normalised convolution); zeros outside the mask."""
    mask = np.asarray(mask, dtype=bool)
    data = np.where(mask, np.nan_to_num(np.asarray(volume, dtype=np.float64)), 0.0)
    if fwhm_mm <= 0:
        return data.astype(np.float32)
    sigma = [fwhm_mm * FWHM_TO_SIGMA / float(s) for s in voxel_size_mm]
    num = ndimage.gaussian_filter(data, sigma, mode="constant")
    den = ndimage.gaussian_filter(mask.astype(np.float64), sigma, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(mask & (den > 0), num / den, 0.0)
    return out.astype(np.float32)


def smooth_series(
    series: np.ndarray, *, mask: np.ndarray, fwhm_mm: float, voxel_size_mm, time_block: int = 24
) -> np.ndarray:
    """Smooth every volume of a (time, voxels) series within the mask (as :func:`smooth_volume`).

    Works on the mask's bounding box (plus the kernel's reach) and on blocks of volumes at once.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.array(series, dtype=np.float32)
    if fwhm_mm <= 0:
        return out
    sigma = [fwhm_mm * FWHM_TO_SIGMA / float(s) for s in voxel_size_mm]
    reach = [int(4.0 * s + 0.5) + 1 for s in sigma]  # scipy's default truncate=4.0
    nz = np.argwhere(mask)
    lo = np.maximum(nz.min(0) - reach, 0)
    hi = np.minimum(nz.max(0) + 1 + np.array(reach), mask.shape)
    box = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    normaliser = ndimage.gaussian_filter(box.astype(np.float32), sigma, mode="constant")[box]
    block = np.zeros((min(time_block, out.shape[0]), *box.shape), dtype=np.float32)
    for start in range(0, out.shape[0], time_block):
        stop = min(start + time_block, out.shape[0])
        chunk = block[: stop - start]
        chunk[:, box] = out[start:stop]
        smoothed = ndimage.gaussian_filter(chunk, [0.0, *sigma], mode="constant")
        out[start:stop] = smoothed[:, box] / normaliser
    return out


def coarse_labels(mask: np.ndarray, *, factor: int) -> tuple[np.ndarray, int]:
    """Label each in-mask voxel (C order) with the coarse voxel (``factor``^3 block) it falls in."""
    ijk = np.argwhere(np.asarray(mask, dtype=bool)) // factor
    _, labels = np.unique(ijk, axis=0, return_inverse=True)
    labels = labels.ravel()
    return labels, int(labels.max()) + 1


def block_average(series: np.ndarray, labels: np.ndarray, n_blocks: int) -> np.ndarray:
    """Mean series of each coarse block: (time, voxels) -> (time, blocks)."""
    counts = np.bincount(labels, minlength=n_blocks).astype(np.float64)
    out = np.zeros((series.shape[0], n_blocks), dtype=np.float64)
    for t in range(series.shape[0]):
        out[t] = np.bincount(labels, weights=series[t], minlength=n_blocks)
    return (out / counts).astype(np.float32)
