"""Report figures (matplotlib / nilearn), returned as PNG bytes so reports are self-contained."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")

BACKGROUND = 1e-6  # |value| below this is drawn transparent: the zeros written outside the brain mask


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # no date or software metadata in the PNG: the same inputs give the same bytes
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def motion_figure(fd: np.ndarray | None, sample_mask: np.ndarray, *, tr: float, fd_thresh: float) -> bytes:
    """Framewise displacement over time with censored volumes shaded."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 2.2))
    t = np.arange(sample_mask.size) * tr
    for i in np.flatnonzero(~sample_mask):
        ax.axvspan(t[i] - tr / 2, t[i] + tr / 2, color="tab:red", alpha=0.25, lw=0)
    if fd is not None:
        ax.plot(t, np.nan_to_num(fd), color="k", lw=0.8, label="FD")
        if fd_thresh > 0:
            ax.axhline(fd_thresh, color="tab:red", ls="--", lw=0.8, label=f"threshold {fd_thresh:g} mm")
        ax.set_ylabel("FD (mm)")
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.set_xlabel("time (s); red: censored or dummy volumes")
    ax.set_xlim(t[0] - tr, t[-1] + tr)
    return _png(fig)


def carpet_figure(raw: np.ndarray, cleaned: np.ndarray, sample_mask: np.ndarray, *, seed: int = 0) -> bytes:
    """Carpet plots (Power 2017) of the same voxels before and after denoising, rows z-scored."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    n_vox = raw.shape[1]
    pick = np.sort(rng.choice(n_vox, size=min(n_vox, 1500), replace=False))

    def rows(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x[:, pick], dtype=np.float64)
        sd = x.std(axis=0)
        return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1)).T

    before = rows(raw)
    after = np.full_like(before, np.nan)
    after[:, sample_mask] = rows(cleaned)
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
    for ax, data, title in (
        (axes[0], before, "preprocessed"),
        (axes[1], after, "denoised (censored: blank)"),
    ):
        ax.imshow(data, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
        ax.set_ylabel("voxels")
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_yticks([])
    axes[1].set_xlabel("volume")
    return _png(fig)


def verdict(qc: dict, *, min_seconds: float | None = None) -> tuple[bool, str]:
    """(used, one line) for the top of a run's section: used or skipped and why, from the run's QC numbers."""
    used = bool(qc.get("used", True))
    facts = [f"{_num(qc.get('retained_seconds'))} s retained"]
    if qc.get("n_volumes") is not None:
        facts[0] += f" ({_num(qc.get('n_retained'))} of {_num(qc.get('n_volumes'))} volumes)"
    if "dof_bandpass" in qc:
        facts.append(f"effective DOF {_num(qc['dof_bandpass'])}")
    facts.append(f"max FD {_num(qc.get('max_fd'))} mm")
    if used:
        return True, "Used: " + ", ".join(facts) + "."
    why = "too little time left after censoring"
    if min_seconds is not None:
        why += f" (minimum {min_seconds:g} s, --min-time)"
    return False, f"Skipped: {why}; " + ", ".join(facts) + "."


def _num(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not np.isfinite(number) else f"{number:.3g}" if number % 1 else f"{number:.0f}"


def mask_figure(mean_img, mask_img, *, title: str, mni_outline: bool) -> bytes:
    """The run's mean BOLD inside its brain mask, the mask's outline in red and, for a run in an MNI space, the
    outline of the MNI template's brain (blue, nilearn's bundled mask): a mask or registration that does not
    match the brain shows as red and blue lines apart, signal dropout as dark patches inside the red line."""
    import matplotlib.pyplot as plt
    from nilearn import plotting
    from nilearn.datasets import load_mni152_brain_mask

    fig = plt.figure(figsize=(9, 2.0))
    display = plotting.plot_anat(
        mean_img, display_mode="z", cut_coords=7, figure=fig, title=title, draw_cross=False, annotate=False
    )
    display.add_contours(mask_img, levels=[0.5], colors="r", linewidths=0.8)
    if mni_outline:
        display.add_contours(load_mni152_brain_mask(resolution=2), levels=[0.5], colors="c", linewidths=0.6)
    return _png(fig)


def mosaic_figure(
    map_path: Path, *, title: str, symmetric: bool = False, mni_background: bool = True, native_background=None
) -> bytes:
    """Axial mosaic of a map over the MNI template (nilearn's bundled one, no download), or, when the map is not
    in an MNI space (``mni_background=False``), over ``native_background`` (e.g. the run's mean BOLD) or nothing.
    Voxels equal to 0 (outside the brain mask) are transparent, so the background shows through instead of a
    colour meaning "value 0"."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    fig = plt.figure(figsize=(9, 2.0))
    plotting.plot_stat_map(
        str(map_path),
        display_mode="z",
        cut_coords=7,
        figure=fig,
        title=title,
        **({} if mni_background else {"bg_img": native_background}),  # nilearn's default: the MNI template
        cmap="RdBu_r" if symmetric else "inferno",
        symmetric_cbar=symmetric,
        threshold=BACKGROUND,
        resampling_interpolation="nearest",
        draw_cross=False,
    )
    return _png(fig)


def matrix_figure(matrix: np.ndarray, *, title: str, networks: list[str] | None = None) -> bytes:
    """Heat map of a correlation matrix (symmetric colour scale), regions ordered by network when given."""
    import matplotlib.pyplot as plt

    values = np.asarray(matrix, dtype=float)
    if networks is not None:
        order = np.argsort(np.asarray(networks), kind="stable")
        values = values[np.ix_(order, order)]
    values = values.copy()
    np.fill_diagonal(values, np.nan)
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    fig, ax = plt.subplots(figsize=(5.2, 4.5))
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, label="r")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)
