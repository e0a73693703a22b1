"""ALFF and fALFF: amplitude of low-frequency fluctuations (Zang et al. 2007) and its fraction (Zou et al. 2008).

Amplitude scaling: the single-sided amplitude spectrum ``2 |X_k| / n`` of the (already detrended, cleaned,
*unfiltered*) series, as DPABI reports it. ALFF is the mean amplitude over the frequencies in the band; fALFF
is the sum of amplitudes in the band divided by the sum over all frequencies above 0 (up to Nyquist).

Censoring: when volumes inside the run were censored the series is no longer evenly sampled, so the
amplitudes come from the Lomb-Scargle periodogram of the retained time points (Lomb 1976; Scargle 1982), at the
frequencies an FFT of the full span would have; its amplitude ``2 sqrt(P / n)`` equals the FFT amplitude above
when nothing is censored (tested). Retained volumes that form one contiguous block (e.g. only dummy scans
removed) use the FFT. Both paths are vectorised over voxels (one FFT, or two matrix products).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft


def is_contiguous(sample_mask: np.ndarray) -> bool:
    kept = np.flatnonzero(sample_mask)
    return kept.size == 0 or kept[-1] - kept[0] + 1 == kept.size


def amplitude_spectrum(series: np.ndarray, *, tr: float) -> tuple[np.ndarray, np.ndarray]:
    """FFT amplitudes ``2 |X_k| / n`` for k >= 1 (frequencies above 0) of evenly sampled (time, voxels) data."""
    n = series.shape[0]
    spectrum = sfft.rfft(np.asarray(series, dtype=np.float32), axis=0, workers=-1)[1:]
    amplitude = np.abs(spectrum)
    amplitude *= np.float32(2.0 / n)
    return sfft.rfftfreq(n, d=tr)[1:], amplitude


def lomb_scargle_amplitude(series: np.ndarray, *, times: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """Lomb-Scargle amplitudes ``2 sqrt(P / n)`` of unevenly sampled (time, voxels) data, vectorised.

    ``P(w) = 1/2 [ (sum x cos w(t-tau))^2 / sum cos^2 w(t-tau) + (sum x sin w(t-tau))^2 / sum sin^2 w(t-tau) ]``
    with ``tan 2 w tau = sum sin 2wt / sum cos 2wt``; the series is centred first.
    """
    x = np.asarray(series, dtype=np.float64)
    x = x - x.mean(axis=0)
    omega = 2 * np.pi * np.asarray(frequencies, dtype=np.float64)[:, None]  # (F, 1)
    t = np.asarray(times, dtype=np.float64)[None, :]  # (1, n)
    tau = np.arctan2(np.sin(2 * omega * t).sum(1), np.cos(2 * omega * t).sum(1))[:, None] / (2 * omega)
    phase = omega * (t - tau)
    cos, sin = np.cos(phase), np.sin(phase)  # (F, n)
    cos_power = (cos**2).sum(1)[:, None]
    sin_power = (sin**2).sum(1)[:, None]
    sin_power[sin_power < 1e-12] = np.inf  # the Nyquist frequency has no sine component
    power = 0.5 * ((cos @ x) ** 2 / cos_power + (sin @ x) ** 2 / sin_power)
    return (2.0 * np.sqrt(power / x.shape[0])).astype(np.float32)


def alff_falff(
    series: np.ndarray,
    *,
    tr: float,
    band: tuple[float, float] = (0.01, 0.08),
    sample_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ALFF and fALFF of every voxel.

    Parameters
    ----------
    series : (retained time points, voxels) unfiltered cleaned series
    tr : repetition time (s)
    band : low-frequency band in Hz
    sample_mask : (all volumes,) bool, True where a volume was retained; None = nothing censored

    Returns
    -------
    alff, falff : (voxels,) float32; constant voxels give 0 (ALFF) and 0 (fALFF)
    """
    low, high = band
    if sample_mask is None or is_contiguous(sample_mask):
        freqs, amplitude = amplitude_spectrum(series, tr=tr)
    else:
        kept = np.flatnonzero(sample_mask)
        span = kept[-1] - kept[0] + 1
        freqs = sfft.rfftfreq(span, d=tr)[1:]
        amplitude = lomb_scargle_amplitude(series, times=(kept - kept[0]) * tr, frequencies=freqs)
    in_band = (freqs >= low) & (freqs <= high)
    if not in_band.any():
        raise ValueError(
            f"no frequency of a {series.shape[0]}-volume run (TR {tr} s) lies in {low}-{high} Hz; "
            "the run is too short for ALFF"
        )
    band_sum = amplitude[in_band].sum(axis=0, dtype=np.float64)
    total = amplitude.sum(axis=0, dtype=np.float64)
    alff = band_sum / in_band.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        falff = np.where(total > 0, band_sum / total, 0.0)
    return alff.astype(np.float32), falff.astype(np.float32)
