"""Group report figures beyond the first screen: glass brains that tell within-map from family FWE, orthogonal views
cut at each significant cluster's peak with its table row beside, connectome plots and matrices of the significant
edges, and the ML weight maps on the brain. Figures are PNG bytes without metadata (reruns give the same bytes);
over the MNI template they use nilearn's bundled copy (no download)."""

from __future__ import annotations

import html as html_lib
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from clbp_bidsapp.io import atlases, images
from clbp_bidsapp.reports import html
from clbp_bidsapp.reports.figures import _png

ALPHA = 0.05
FIGURE_DPI = 72
MAX_CLUSTER_VIEWS = 3  # orthogonal views per map (the clusters with the smallest FWE p)
MAX_CLUSTER_VIEWS_TOTAL = 30  # per report (~35 kB and ~0.7 s CPU each): a study with many significant maps stays small
CLUSTER_P_COLUMNS = ("p_fwe_cluster", "p_fwe_peak", "p_tfce_fwe_peak", "p_fwe_peak_family")
CLUSTER_ROW_FIELDS = (
    "cluster", "sign", "voxels", "peak_t", "p_fwe_cluster", "p_fwe_peak", "p_tfce_fwe_peak", "p_fwe_peak_family",
    "harvard_oxford", "aal",
)  # fmt: skip
MAX_CONNECTOME_EDGES = 200  # drawn on the brain; a larger set is still marked on the matrix


def _png72(fig) -> bytes:
    return _png(fig, dpi=FIGURE_DPI)


# ------------------------------------------------------------------------------------------------ glass brains
def glass_brain_figure(volume: np.ndarray, affine: np.ndarray, *, family: np.ndarray | None = None) -> bytes:
    """Glass brain of the within-map FWE-significant t (red positive, blue negative); the voxels that also survive
    the FWE correction across the primary family (``family``, non-zero where they do) outlined in black."""
    import matplotlib.pyplot as plt
    from nilearn import plotting

    img = images.make_image(volume.astype(np.float32), affine)
    vmax = float(np.abs(volume).max())
    fig = plt.figure(figsize=(4.2, 1.5))
    display = plotting.plot_glass_brain(
        img, display_mode="ortho", figure=fig, plot_abs=False, cmap="RdBu_r", vmin=-vmax, vmax=vmax,
        threshold=1e-6, colorbar=False, annotate=False,
    )  # fmt: skip
    if family is not None and np.any(family):
        outline = images.make_image((np.nan_to_num(family) != 0).astype(np.float32), affine)
        display.add_contours(outline, levels=[0.5], colors="k", linewidths=0.8)
    return _png72(fig)


def family_text(sidecar: Mapping, n_family: int | None) -> str:
    """Which correction a map's significant voxels pass: within the map only (exploratory), or also across the
    primary family (``--primary-maps``), read from the map's sidecar ``Family`` and its familyfwe05 map."""
    if not sidecar.get("Family"):
        return "exploratory: FWE within this map only"
    if not n_family:
        return "primary family: no voxel survives the family-wise FWE"
    return f"primary family: {n_family} vox survive the family-wise FWE (black outline)"


# ----------------------------------------------------------------------------------------------- cluster views
def significant_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    """Rows with any FWE p (cluster extent, peak max-t, peak TFCE, peak across the family) below ALPHA and a
    finite peak coordinate, in the given order."""
    if clusters is None or not len(clusters):
        return pd.DataFrame()
    hit = np.zeros(len(clusters), dtype=bool)
    for column in CLUSTER_P_COLUMNS:
        if column in clusters.columns:
            hit |= (pd.to_numeric(clusters[column], errors="coerce") < ALPHA).to_numpy()
    peaks = clusters.reindex(columns=["peak_x", "peak_y", "peak_z"]).apply(pd.to_numeric, errors="coerce")
    return clusters[hit & np.isfinite(peaks.to_numpy(float)).all(axis=1)]


def _cluster_display(volume: np.ndarray, affine: np.ndarray, peak_mm, *, title: str):
    import matplotlib.pyplot as plt
    from nilearn import plotting

    img = images.make_image(np.nan_to_num(volume).astype(np.float32), affine)
    fig = plt.figure(figsize=(5.4, 1.9))
    display = plotting.plot_stat_map(
        img, display_mode="ortho", cut_coords=tuple(float(c) for c in peak_mm), figure=fig, title=title,
        cmap="RdBu_r", symmetric_cbar=True, threshold=1e-6, resampling_interpolation="nearest", annotate=True,
        draw_cross=True,
    )  # fmt: skip
    return fig, display


def cluster_views(
    volume: np.ndarray, affine: np.ndarray, clusters: pd.DataFrame, *, title: str, max_views: int = MAX_CLUSTER_VIEWS
) -> str:
    """One orthogonal view over the MNI template cut at each significant cluster's peak (at most ``max_views``, in
    table order), its row of the cluster table beside it."""
    rows = significant_clusters(clusters).head(max(0, max_views))
    if not len(rows) or not np.any(np.nan_to_num(volume)):
        return ""
    parts = []
    for _, row in rows.iterrows():
        peak = [float(row[k]) for k in ("peak_x", "peak_y", "peak_z")]
        label = f"{title}, cluster {row.get('cluster', '')} at ({', '.join(f'{c:g}' for c in peak)})"
        fig, _ = _cluster_display(volume, affine, peak, title=f"cluster {row.get('cluster', '')}")
        facts = {k: _cell(row[k]) for k in CLUSTER_ROW_FIELDS if k in row.index}
        facts["peak MNI (mm)"] = ", ".join(f"{c:g}" for c in peak)
        parts.append(
            f"<div class='cluster'>{html.image(_png72(fig), label)}<div class='scroll'>{html.table(facts)}</div></div>"
        )
    return (
        f"<p class='muted'>Significant clusters over the MNI template, cut at each peak (first {MAX_CLUSTER_VIEWS} by "
        "FWE p); t where FWE p &lt; 0.05.</p>" + "".join(parts)
    )


# -------------------------------------------------------------------------------------------------- connectomes
def significant_edges(edges: pd.DataFrame | None, regions: list[str], *, column: str = "p_fwe") -> np.ndarray:
    """(regions, regions) t of the edges with ``column`` < ALPHA (symmetric, 0 elsewhere) from a
    ``desc-edges_stats.tsv`` table."""
    out = np.zeros((len(regions), len(regions)))
    if edges is None or column not in edges.columns:
        return out
    index = {r: i for i, r in enumerate(regions)}
    hits = edges[pd.to_numeric(edges[column], errors="coerce") < ALPHA]
    for a, b, t in zip(hits["region_a"].astype(str), hits["region_b"].astype(str), hits["t"], strict=True):
        if a in index and b in index:
            out[index[a], index[b]] = out[index[b], index[a]] = float(t)
    return out


def _edge_matrix_figure(values: np.ndarray, labels: list[str], marked: np.ndarray, *, title: str):
    import matplotlib.pyplot as plt

    finite = np.abs(values[np.isfinite(values)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    n = values.shape[0]
    fig, ax = plt.subplots(figsize=(6.2, 5.0))
    shown = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    rows, cols = np.nonzero(marked)
    if rows.size:
        ax.scatter(cols, rows, s=max(4.0, 600.0 / n), facecolors="none", edgecolors="k", linewidths=0.8)
    if n <= 40:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=5)
        ax.set_yticks(range(n), labels, fontsize=5)
    else:
        ax.set_xlabel("region index")
        ax.set_ylabel("region index")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_title(title, fontsize=9)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="t")
    return fig


def _connectome_display(adjacency: np.ndarray, coords: np.ndarray, *, title: str):
    import matplotlib.pyplot as plt
    from nilearn import plotting

    vmax = float(np.abs(adjacency).max()) or 1.0
    fig = plt.figure(figsize=(6.4, 2.2))
    display = plotting.plot_connectome(
        adjacency, coords, node_size=6, node_color="grey", edge_cmap="RdBu_r", edge_vmin=-vmax, edge_vmax=vmax,
        display_mode="ortho", figure=fig, title=title, colorbar=True, edge_kwargs={"linewidth": 1.2},
    )  # fmt: skip
    return fig, display


def connectome_figures(matrix: pd.DataFrame, edges: pd.DataFrame | None, *, atlas: str, title: str) -> str:
    """The edge-t matrix with the FWE-significant edges circled, and those edges on a glass brain at the atlas'
    region centres (bundled atlases; a user atlas has no known centres)."""
    regions = [str(r) for r in matrix.index]
    values = matrix.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    significant = significant_edges(edges, regions)
    n_edges = int(np.count_nonzero(np.triu(significant, 1)))
    parts = [
        html.image(_png72(_edge_matrix_figure(values, regions, significant != 0, title=title)), f"{title}: edge t"),
        f"<p class='muted'>{len(regions)} regions; colour: t (symmetric scale); circled: the {n_edges} edge(s) "
        f"with max-t FWE p &lt; {ALPHA}.</p>",
    ]
    centres = atlases.region_centres(atlas)
    if not n_edges:
        return "".join(parts)
    if not all(r in centres for r in regions):
        parts.append(f"<p class='muted'>No brain plot: the centres of atlas {_esc(atlas)}'s regions are not known "
                     "to the group level (user atlas).</p>")  # fmt: skip
        return "".join(parts)
    if n_edges > MAX_CONNECTOME_EDGES:
        parts.append(f"<p class='muted'>{n_edges} significant edges: too many to draw on the brain.</p>")
        return "".join(parts)
    fig, _ = _connectome_display(
        significant, np.array([centres[r] for r in regions]), title=f"{n_edges} edge(s), FWE p < {ALPHA}"
    )
    parts.append(html.image(_png72(fig), f"{title}: significant edges on the brain"))
    parts.append("<p class='muted'>Edges with max-t FWE p &lt; 0.05 between the atlas regions' centres (red: "
                 "higher in the first group of the contrast, blue: lower).</p>")  # fmt: skip
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------------- ML
def ml_weight_maps(group_dir: Path) -> str:
    """Each ``*_desc-mlweights_boldmap.nii.gz`` volume (one per metric, names from its sidecar's ``Volumes``) as
    an axial mosaic over the MNI template."""
    parts = []
    for path in sorted(group_dir.glob("features-*_desc-mlweights_boldmap.nii.gz")):
        try:
            meta = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        except (OSError, ValueError):
            meta = {}
        model = path.name.split("_model-", 1)[1].split("_", 1)[0] if "_model-" in path.name else "model"
        volumes = meta.get("Volumes") or []
        for index, metric in enumerate(volumes):
            volume, affine = images.load_volume(path, index=index)
            if not np.any(np.nan_to_num(volume)):
                continue
            what = f"{model}: mean weight of the {metric} ROI features"
            parts.append(html.image(_weights_figure(volume, affine, title=what), what))
    if not parts:
        return ""
    return (
        "<h3>Model weights on the brain</h3><p class='muted'>Mean weight of each region's standardised feature across "
        "the outer folds, painted on the region's voxels (0, transparent: never selected). Weights of a multivariate "
        "model are not a map of group differences (Haufe et al. 2014).</p>" + "".join(parts)
    )


def _weights_figure(volume: np.ndarray, affine: np.ndarray, *, title: str) -> bytes:
    import matplotlib.pyplot as plt
    from nilearn import plotting

    fig = plt.figure(figsize=(9, 2.0))
    plotting.plot_stat_map(
        images.make_image(np.nan_to_num(volume).astype(np.float32), affine), display_mode="z", cut_coords=7,
        figure=fig, title=title, cmap="RdBu_r", symmetric_cbar=True, threshold=1e-9,
        resampling_interpolation="nearest", draw_cross=False,
    )  # fmt: skip
    return _png72(fig)


def _cell(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{float(value):.4g}"
    if isinstance(value, np.integer):
        return int(value)
    return value


def _esc(text: str) -> str:
    return html_lib.escape(text)
