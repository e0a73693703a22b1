"""Functional connectivity kernels: region means, seed maps, connectomes and dual regression.

All series are (time, voxels). Correlations are Pearson; Fisher's z is ``arctanh(r)`` with r clipped to
|r| <= 1 - 1e-7 so that a region's correlation with itself stays finite.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.covariance import LedoitWolf

R_CLIP = 1.0 - 1e-7


def region_means(series: np.ndarray, membership: sparse.spmatrix) -> np.ndarray:
    """(time, regions) weighted mean of each region's voxels; NaN for a region without voxels."""
    membership = sparse.csr_matrix(membership, dtype=np.float64)
    weights = np.asarray(membership.sum(axis=1)).ravel()
    sums = np.asarray(membership @ np.asarray(series, dtype=np.float64).T).T  # (time, regions)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = sums / weights
    means[:, weights == 0] = np.nan
    return means


def signal_voxels(series: np.ndarray, membership: sparse.spmatrix) -> np.ndarray:
    """Number of each region's voxels whose series is finite and not constant over time (voxels with signal)."""
    series = np.asarray(series)
    high, low = series.max(axis=0), series.min(axis=0)
    varying = np.isfinite(high) & np.isfinite(low) & (high > low)
    members = sparse.csr_matrix(membership, dtype=np.float64)
    return np.asarray((members != 0).astype(np.int64) @ varying.astype(np.int64)).ravel()


def has_signal(series: np.ndarray) -> np.ndarray:
    """Which columns of (time, columns) are finite everywhere and not constant."""
    series = np.asarray(series, dtype=np.float64)
    finite = np.all(np.isfinite(series), axis=0)
    safe = np.where(np.isfinite(series), series, 0.0)
    return finite & (safe.max(axis=0) > safe.min(axis=0))


def _standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit norm (zero columns stay zero); and which columns are constant."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    constant = ~(norm > 0)
    return centred / np.where(constant, 1.0, norm), constant


def seed_correlation(series: np.ndarray, seeds: np.ndarray, *, block: int = 65536) -> np.ndarray:
    """(seeds, voxels) Pearson r of each seed series (time, seeds) with every voxel (float32).

    Constant voxels get r = 0; a NaN seed series (no voxels) gives a NaN row.
    """
    seeds = np.asarray(seeds, dtype=np.float64)
    valid = np.all(np.isfinite(seeds), axis=0)
    seed_std, seed_constant = _standardised(np.where(np.isfinite(seeds), seeds, 0.0))
    n_voxels = series.shape[1]
    r = np.empty((seeds.shape[1], n_voxels), dtype=np.float32)
    for start in range(0, n_voxels, block):
        chunk, _ = _standardised(series[:, start : start + block])
        r[:, start : start + block] = seed_std.T @ chunk
    r[~valid | seed_constant] = np.nan
    return r


def fisher_z(r: np.ndarray) -> np.ndarray:
    """arctanh of r clipped to ±(1 - 1e-7); NaN stays NaN."""
    return np.arctanh(np.clip(r, -R_CLIP, R_CLIP))


def correlation_matrix(timeseries: np.ndarray) -> np.ndarray:
    """(regions, regions) Pearson correlation; rows and columns of NaN or constant regions are NaN."""
    valid = np.all(np.isfinite(timeseries), axis=0)
    standardised, constant = _standardised(np.where(np.isfinite(timeseries), timeseries, 0.0))
    valid &= ~constant
    matrix = standardised.T @ standardised
    np.fill_diagonal(matrix, 1.0)
    matrix[~valid, :] = np.nan
    matrix[:, ~valid] = np.nan
    return matrix


def partial_correlation(timeseries: np.ndarray) -> np.ndarray:
    """(regions, regions) partial correlation from the Ledoit-Wolf shrunk covariance of the series.

    This is what ``nilearn.connectome.ConnectivityMeasure(kind="partial correlation")`` computes with its
    default estimator; regions that are NaN or constant are left out of the inverse and given NaN rows.
    """
    valid = np.all(np.isfinite(timeseries), axis=0)
    x = np.asarray(timeseries, dtype=np.float64)[:, valid] if valid.any() else np.zeros((len(timeseries), 0))
    std = x.std(axis=0)
    keep = std > 0
    valid[np.flatnonzero(valid)[~keep]] = False
    x = x[:, keep]
    out = np.full((timeseries.shape[1], timeseries.shape[1]), np.nan)
    if x.shape[1] == 0:
        return out
    precision = np.linalg.inv(LedoitWolf(store_precision=False).fit(x).covariance_)
    scale = np.sqrt(np.diag(precision))
    partial = -precision / np.outer(scale, scale)
    np.fill_diagonal(partial, 1.0)
    out[np.ix_(valid, valid)] = partial
    return out


def dual_regression(
    series: np.ndarray, spatial_maps: np.ndarray, *, normalise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Dual regression (Beckmann 2009; Nickerson 2017) of (time, voxels) data on (components, voxels) maps.

    Stage 1 regresses the spatially demeaned maps on each spatially demeaned volume, giving one time series per
    component (time, components). Stage 2 regresses the temporally demeaned data on those series, demeaned and,
    when ``normalise`` (FSL ``dual_regression``'s recommended ``des_norm=1``), scaled to unit variance, giving
    subject-specific maps (components, voxels) that reflect both the shape and the amplitude of each network.
    """
    timecourses, normalised, unnormalised = dual_regression_maps(series, spatial_maps)
    return timecourses, normalised if normalise else unnormalised


def dual_regression_maps(series: np.ndarray, spatial_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage-1 series and the stage-2 maps with and without variance normalisation, in one pass (see
    :func:`dual_regression`).

    Both stages are least squares with few regressors, computed as ``pinv(design) @ data``. The demeaning of the
    data is applied to the (small) products instead of to a copy of the data: ``pinv(X) (Y - m 1^T)`` =
    ``pinv(X) Y - (pinv(X) 1) m^T``. Scaling a stage-2 regressor by 1/s scales its map by s, so the
    unnormalised maps are the normalised ones divided by the series' SDs (no second regression).
    """
    y = np.asarray(series)
    maps = np.asarray(spatial_maps, dtype=np.float64)
    design1 = (maps - maps.mean(axis=1, keepdims=True)).T  # (voxels, components)
    pinv1 = np.linalg.pinv(design1)  # (components, voxels)
    volume_means = y.mean(axis=1, dtype=np.float64)  # (time,)
    timecourses = y @ pinv1.T - np.outer(volume_means, pinv1.sum(axis=1))  # (time, components)
    design2 = timecourses - timecourses.mean(axis=0)
    scale = design2.std(axis=0, ddof=1)
    scale = np.where(scale > 0, scale, 1.0)
    pinv2 = np.linalg.pinv(design2 / scale)  # (components, time)
    voxel_means = y.mean(axis=0, dtype=np.float64)  # (voxels,)
    normalised = pinv2 @ y - np.outer(pinv2.sum(axis=1), voxel_means)  # (components, voxels)
    unnormalised = normalised / scale[:, None]
    return timecourses, normalised.astype(np.float32), unnormalised.astype(np.float32)
