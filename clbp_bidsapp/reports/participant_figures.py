"""Participant report figures of a run's quality: the FD / standardised DVARS trace with censored volumes marked,
and carpet plots ordered by tissue (Power 2017; as fMRIPrep's and nilearn's ``plot_carpet``) before and after
denoising. Figures are PNG bytes without metadata (the same inputs give the same bytes)."""

from __future__ import annotations

import numpy as np

from clbp_bidsapp.reports.figures import _png

TISSUES = ("GM", "WM", "CSF")  # carpet order, top to bottom; voxels in none of them come last ("other")
TISSUE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#999999")  # GM, WM, CSF, other
MAX_CARPET_ROWS = 1500


def censored_spans(sample_mask: np.ndarray, *, tr: float) -> list[tuple[float, float]]:
    """Time spans (s) to shade: one per run of consecutive censored (or dummy) volumes, each volume drawn as
    ``[t - tr/2, t + tr/2]`` around its acquisition time ``t = index * tr``."""
    censored = ~np.asarray(sample_mask, dtype=bool)
    edges = np.diff(np.concatenate([[0], censored.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [((a - 0.5) * tr, (b - 0.5) * tr) for a, b in zip(starts, stops, strict=True)]


def _trace_figure(
    fd: np.ndarray | None,
    std_dvars: np.ndarray | None,
    sample_mask: np.ndarray,
    *,
    tr: float,
    fd_thresh: float,
):
    import matplotlib.pyplot as plt

    traces = [(fd, "FD (mm)", fd_thresh if fd_thresh > 0 else None)]
    if std_dvars is not None:
        traces.append((std_dvars, "std DVARS", None))
    fig, axes = plt.subplots(len(traces), 1, figsize=(9, 1.5 + 1.1 * len(traces)), sharex=True, squeeze=False)
    t = np.arange(sample_mask.size) * tr
    spans = censored_spans(sample_mask, tr=tr)
    for ax, (values, label, threshold) in zip(axes[:, 0], traces, strict=True):
        for start, stop in spans:
            ax.axvspan(start, stop, color="tab:red", alpha=0.25, lw=0)
        if values is not None:
            ax.plot(t, np.asarray(values, dtype=float), color="k", lw=0.8)  # NaN (first volume): a gap
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", ls="--", lw=0.8, label=f"threshold {threshold:g} mm")
            ax.legend(loc="upper right", fontsize=7, frameon=False)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel(f"time (s); red: {len(np.flatnonzero(~sample_mask))} censored or dummy volumes")
    axes[-1, 0].set_xlim(t[0] - tr, t[-1] + tr)
    return fig


def trace_figure(
    fd: np.ndarray | None,
    std_dvars: np.ndarray | None,
    sample_mask: np.ndarray,
    *,
    tr: float,
    fd_thresh: float,
) -> bytes:
    """Framewise displacement and standardised DVARS over time, censored volumes shaded red, FD threshold dashed."""
    return _png(_trace_figure(fd, std_dvars, sample_mask, tr=tr, fd_thresh=fd_thresh))


def tissue_labels(probabilities: np.ndarray) -> np.ndarray:
    """Index into :data:`TISSUES` of each voxel's most probable tissue; ``len(TISSUES)`` ("other") where every
    probability is 0 (or not finite).

    Parameters
    ----------
    probabilities : (voxels, tissues) array, columns in :data:`TISSUES` order
    """
    p = np.nan_to_num(np.asarray(probabilities, dtype=float))
    labels = np.argmax(p, axis=1)
    return np.where(p.max(axis=1) > 0, labels, len(TISSUES))


def carpet_order(labels: np.ndarray, *, max_rows: int = MAX_CARPET_ROWS, seed: int = 0) -> np.ndarray:
    """Voxels shown as carpet rows: at most ``max_rows`` drawn at random (seeded, so every tissue keeps its share),
    ordered by tissue label, then by voxel index within a tissue."""
    labels = np.asarray(labels)
    n = labels.size
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_rows), replace=False))
    return pick[np.argsort(labels[pick], kind="stable")]


def _carpet_rows(series: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """(rows, time): each chosen voxel's series, linearly detrended and z-scored (constant rows: 0)."""
    x = np.asarray(series[:, voxels], dtype=np.float64)
    n = x.shape[0]
    if n > 1:
        t = np.arange(n) - (n - 1) / 2
        x = x - x.mean(axis=0) - np.outer(t, (t @ (x - x.mean(axis=0))) / (t @ t))
    sd = x.std(axis=0)
    return (x / np.where(sd > 0, sd, 1)).T


def _carpet_figure(raw: np.ndarray, cleaned: np.ndarray | None, sample_mask: np.ndarray, labels: np.ndarray | None):
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    tissue = np.zeros(raw.shape[1], dtype=int) if labels is None else np.asarray(labels)
    order = carpet_order(tissue)
    panels = [(_carpet_rows(raw, order), "preprocessed")]
    if cleaned is not None:
        after = np.full((order.size, sample_mask.size), np.nan)
        after[:, sample_mask] = _carpet_rows(cleaned, order)
        panels.append((after, "denoised (censored volumes: blank)"))
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(9, 2.3 * len(panels)), sharey=True, squeeze=False,
        gridspec_kw={"width_ratios": [1, 40], "wspace": 0.01, "hspace": 0.25},
    )  # fmt: skip
    for (side, ax), (data, title) in zip(axes, panels, strict=True):
        ax.imshow(data, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_yticks([])
        ax.tick_params(labelbottom=ax is axes[-1, 1], labelsize=7)
        side.imshow(
            tissue[order][:, None], aspect="auto", interpolation="nearest",
            cmap=ListedColormap(TISSUE_COLOURS), vmin=-0.5, vmax=len(TISSUE_COLOURS) - 0.5,
        )  # fmt: skip
        side.set_xticks([])
        side.set_yticks([])
        if labels is not None:
            positions = [np.flatnonzero(tissue[order] == k) for k in range(len(TISSUES) + 1)]
            ticks = [(p.mean(), name) for p, name in zip(positions, (*TISSUES, "other"), strict=True) if p.size]
            side.set_yticks([y for y, _ in ticks], [name for _, name in ticks], fontsize=7)
    axes[-1, 1].set_xlabel("volume")
    return fig


def carpet_figure(
    raw: np.ndarray, cleaned: np.ndarray | None, sample_mask: np.ndarray, *, labels: np.ndarray | None = None
) -> bytes:
    """Carpet plots of the same voxels before and after denoising (rows: voxels grouped GM, WM, CSF, other when
    ``labels`` from :func:`tissue_labels` are given, with a coloured tissue band on the left; columns: volumes)."""
    return _png(_carpet_figure(raw, cleaned, sample_mask, labels))
