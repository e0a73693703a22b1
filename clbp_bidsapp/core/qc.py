"""Quality-control maps of a run: mean and temporal signal-to-noise ratio."""

from __future__ import annotations

import numpy as np

_DVARS_CHUNK = 8192  # voxels per block in standardized_dvars


def temporal_snr(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over time and temporal SNR of each voxel.

    tSNR is the temporal mean divided by the standard deviation of the linearly detrended series (the
    definition used by AFNI's ``3dTstat -tsnr`` after detrending and by Murphy et al. 2007, NeuroImage
    34:565), so slow scanner drift does not lower it. Voxels with zero variance get tSNR 0.

    Parameters
    ----------
    series : (time, voxels) array

    Returns
    -------
    mean, tsnr : (voxels,) float32 arrays
    """
    x = np.asarray(series, dtype=np.float32)
    n = x.shape[0]
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    mean = x.mean(axis=0, dtype=np.float64)
    # centred sums in float64 accumulators, without a float64 copy of the series
    # einsum, not BLAS: a float32 GEMV's summation order depends on the thread count, which would break
    # byte-identical reruns across machines and schedulers
    slope = np.einsum("t,tv->v", t, x, dtype=np.float64) / (t @ t) if n > 1 else np.zeros_like(mean)
    sum_sq = np.einsum("tv,tv->v", x, x, dtype=np.float64)
    residual_ss = sum_sq - n * mean**2 - slope**2 * (t @ t)
    dof = max(n - 2, 1)
    std = np.sqrt(np.clip(residual_ss, 0.0, None) / dof)
    with np.errstate(divide="ignore", invalid="ignore"):
        tsnr = np.where(std > 0, mean / std, 0.0)
    return mean.astype(np.float32), tsnr.astype(np.float32)


def standardized_dvars(series: np.ndarray, *, variance_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """DVARS and standardised DVARS of a run (Power et al. 2012; Nichols 2017, "Notes on creating a standardized
    version of DVARS", arXiv:1704.01469), as fMRIPrep writes them in the ``dvars`` / ``std_dvars`` confounds
    (nipype's ``compute_dvars``).

    The series is scaled to a median of 1000; DVARS is the root mean square over voxels of the backward
    difference. Its expected value under stationarity is the mean over voxels of ``sqrt(2 (1 - ar1)) * sd``, with
    ``sd`` the robust standard deviation (interquartile range / 1.349, lower interpolation as in FSL) and ``ar1``
    the Yule-Walker lag-1 autocorrelation of each voxel; the standardised DVARS is their ratio (about 1 for a
    series without artefacts). Voxels whose robust SD is at most ``variance_tol`` are left out.

    Parameters
    ----------
    series : (time, voxels) array

    Returns
    -------
    std_dvars, dvars : (time,) float64 arrays; the first volume has no predecessor and is NaN.
    """
    data = np.asarray(series)
    n = data.shape[0]
    nan_first = np.full(n, np.nan)
    if n < 2 or data.shape[1] == 0:
        return nan_first.copy(), nan_first.copy()
    median = float(np.median(data))
    scale = 1000.0 / median if median != 0 else 1.0
    sum_sq_diff = np.zeros(n - 1)
    low, high = (n - 1) // 4, (3 * (n - 1)) // 4  # floor((n - 1) q) for q = 0.25, 0.75
    expected_sum, n_kept = 0.0, 0
    for start in range(0, data.shape[1], _DVARS_CHUNK):  # float64 copies of a few thousand voxels at a time
        x = data[:, start : start + _DVARS_CHUNK].astype(np.float64) * scale
        ranked = np.partition(x, [low, high], axis=0)  # = np.percentile(..., method="lower"), one pass for both
        q25, q75 = ranked[low], ranked[high]
        robust_sd = (q75 - q25) / 1.349
        keep = robust_sd > variance_tol
        x, robust_sd = x[:, keep], robust_sd[keep]
        centred = x - x.mean(axis=0)
        power = np.einsum("tv,tv->v", centred, centred)
        lag1 = np.einsum("tv,tv->v", centred[1:], centred[:-1])
        ar1 = np.divide(lag1, power, out=np.zeros_like(lag1), where=power > 0)
        expected_sum += float((np.sqrt(2.0 * (1.0 - ar1)) * robust_sd).sum())
        n_kept += int(keep.sum())
        diff = np.diff(x, axis=0)
        sum_sq_diff += np.einsum("tv,tv->t", diff, diff)
    if n_kept == 0:
        return nan_first.copy(), nan_first.copy()
    dvars = np.sqrt(sum_sq_diff / n_kept)
    expected = expected_sum / n_kept
    std = dvars / expected if expected > 0 else np.full_like(dvars, np.nan)
    return np.concatenate([[np.nan], std]), np.concatenate([[np.nan], dvars])
