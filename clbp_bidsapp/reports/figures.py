"""Report figures (matplotlib / nilearn), returned as PNG bytes so reports are self-contained."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")

BACKGROUND = 1e-6  # |value| below this is drawn transparent: the zeros written outside the brain mask


def _png(fig, *, dpi: int = 90) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # no date or software metadata in the PNG: the same inputs give the same bytes
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


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
