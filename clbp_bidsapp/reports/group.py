"""Group-level HTML report (``OUTPUT_DIR/group.html``), written from the files already in ``OUTPUT_DIR/group/``.

The report is self-contained (inline CSS, figures as PNG data URIs, one inline script that sorts tables, no
network) and deterministic: the same group outputs and arguments give the same bytes (PNGs carry no date or
software metadata). It reads only the documented group outputs (docs/outputs.md, docs/group-statistics.md), found
by their names, and shows each section only when its files exist:

0. First figure (above the table of contents): glass brains of the FWE-significant voxels of every map x
   contrast, one grey tile for each without any.
1. Design: participants per group, group means of the design table, QC summary, exclusions with reasons.
2. Voxelwise results: one summary table of every ``<map>_contrast-<contrast>_stat-t_statmap.nii.gz``, then
   thresholded maps and cluster tables of the significant ones (plus a few unthresholded-at-FWE others).
3. Clinical correlations: ROI tables (``desc-roi_stats``) and, when per-participant ROI values exist
   (``desc-roivalues_stats``), scatter plots of the regions with FWE p < 0.05.
4. Connectomes: t matrix heatmap, NBS components (Zalesky et al. 2010), top edges, graph measures.
5. Methods summary: the settings, the software version and the run information.
"""

from __future__ import annotations

import html as html_lib
import io
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clbp_bidsapp import registry
from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import derivatives, images
from clbp_bidsapp.reports import group_figures, html
from clbp_bidsapp.reports.cbf import cbf_section

os.environ.setdefault("MPLBACKEND", "Agg")
LOGGER = logging.getLogger(__name__)

NEGATIVE_BOLD = (
    "A negative BOLD-derived difference is not evidence of reduced neural activity: "
    "BOLD signal changes can oppose changes in oxygen metabolism."
)
ALPHA = 0.05
MAP_ORDER = registry.GROUP_METRICS
FIGURE_DPI = 72
MAX_SIGNIFICANT_FIGURES = 60  # ~50 kB per map figure: 60 + 6 others stay under ~5 MB with the tables
MAX_CLUSTER_ROWS = 20
MAX_EDGE_ROWS = 20
MAX_NODES_CHARS = 240
MAX_DESIGN_PANELS = 5
MAX_VIEWERS = 20  # interactive viewers (~0.6-2 MB each) for the first significant maps of the overview

_STATMAP = re.compile(r"^(?P<map>[^_]+)_contrast-(?P<contrast>[^_]+)_stat-t_statmap\.nii\.gz$")
_ROISTATS = re.compile(r"^(?P<map>[^_]+)_contrast-(?P<contrast>[^_]+)_desc-roi_stats\.tsv$")
_RELMAT = re.compile(r"^atlas-(?P<atlas>[^_]+)_contrast-(?P<contrast>[^_]+)_stat-t_relmat\.tsv$")


def write_group_report(
    output_dir: Path,
    *,
    settings_summary: Mapping[str, object],
    run_info: Mapping[str, object] | None = None,
    max_other_figures: int = 6,
    group: GroupSettings | None = None,
) -> Path:
    """Write ``output_dir/group.html`` from the group outputs in ``output_dir/group/``.

    Parameters
    ----------
    output_dir
        The app's output folder; only files under ``output_dir/group/`` are read.
    settings_summary
        Settings shown in the methods summary (name -> value), e.g. from the group settings.
    run_info
        Optional extra facts (run id, config hash, command line...). Anything time-dependent placed here makes
        reruns differ; keep it to one clearly named field (e.g. ``generated``) if you include a time.
    max_other_figures
        Figures for maps without any significant result: at most this many (those with the largest max |t|),
        so a report with ~30 maps stays a few MB.
    group
        The group design (``--group-column``, ``--patient-label``, ``--control-label``): the column of the design
        tables holding the groups, and the group contrast ``<patient>vs<control>`` shown first.

    Returns
    -------
    Path
        The report, written atomically.
    """
    output_dir = Path(output_dir)
    group_dir = output_dir / "group"
    group = group or GroupSettings()
    column, contrast = group.group_column, f"{group.patient_label}vs{group.control_label}"
    sections: list[tuple[str, str, str]] = []  # (anchor, title, body)
    maps = _collect_maps(group_dir, contrast) if group_dir.is_dir() else []
    for anchor, title, builder in (
        ("design", "Design", lambda d: _design_section(d, column=column)),
        ("voxelwise", "Voxelwise results",
         lambda _: _voxelwise_section(maps, max_other_figures=max_other_figures, contrast=contrast)),
        ("clinical", "Clinical correlations", lambda d: _clinical_section(d, group_contrast=contrast)),
        ("connectomes", "Connectomes", lambda d: _connectome_section(d, group_contrast=contrast)),
        ("literature", "Literature concordance", _concordance_section),
        ("cbf", "BOLD and CBF", cbf_section),
        ("ml", "Machine learning", _ml_section),
    ):  # fmt: skip
        body = builder(group_dir) if group_dir.is_dir() else ""
        if body:
            sections.append((anchor, title, body))
    sections.append(("methods", "Methods summary", _methods_section(settings_summary, run_info)))

    parts = []
    if not group_dir.is_dir():
        parts.append(f"<p class='warn'>No group outputs found in {_esc(str(group_dir))}.</p>")
    if maps:
        parts.append(_overview(maps, output_dir=output_dir))
    toc = "".join(f"<li><a href='#{a}'>{_esc(t)}</a></li>" for a, t, _ in sections)
    parts.append(f"<ul>{toc}</ul>")
    parts += [f"<h2 id='{a}'>{_esc(t)}</h2>{body}" for a, t, body in sections]
    text = html.page("clbp-bidsapp group report", parts, footer=f"clbp-bidsapp {__version__}")
    return derivatives.write_text(output_dir / "group.html", text)


# ----------------------------------------------------------------------------------------------------- design
def _design_section(group_dir: Path, *, column: str) -> str:
    parts = []
    design = _read_tsv(group_dir / "desc-design_participants.tsv")
    if design is not None:
        parts.append("<h3>Included participants</h3>")
        if column in design.columns and len(design):
            parts.append(
                _image(
                    _design_figure(design, column),
                    "design: participants per group and covariates by group",
                    "Participants per group, and each numeric covariate of the design by group (one dot per "
                    "participant, line: group median).",
                )
            )
            counts = design[column].astype(str).value_counts().sort_index()
            parts.append(html.table({str(k): int(v) for k, v in counts.items()} | {"total": len(design)}))
            parts.append("<h3>Group means (SD) of the design table</h3>")
            parts.append(_table(_design_summary(design, column)))
        else:
            parts.append(f"<p>{len(design)} participants (no <code>{_esc(column)}</code> column).</p>")
    qc = _read_tsv(group_dir / "desc-qc_summary.tsv")
    if qc is not None and len(qc):
        parts.append("<h3>QC summary (desc-qc_summary.tsv)</h3>")
        if design is not None and column in design.columns and len(design):
            # the QC summary holds the same per-group means (SD) as the table above: do not repeat them
            variables = [c[: -len("_mean")] for c in qc.columns if c.endswith("_mean")]
            parts.append(
                f"<p>Per-group mean and SD of {len(variables)} variables (included in the table above): "
                f"{_esc(', '.join(variables))}.</p>"
            )
        else:
            parts.append(_table(_transpose_summary(qc, column)))
    excluded = _read_tsv(group_dir / "desc-excluded_participants.tsv")
    if excluded is not None:
        parts.append("<h3>Excluded participants</h3>")
        if len(excluded):
            parts.append(_table(excluded))
        else:
            parts.append("<p>No participant was excluded.</p>")
    return "".join(parts)


def _design_figure(design: pd.DataFrame, column_of_groups: str) -> bytes:
    """Bar chart of group sizes, then one strip plot per numeric covariate (at most MAX_DESIGN_PANELS) by group."""
    import matplotlib.pyplot as plt

    groups = sorted(design[column_of_groups].astype(str).unique())
    labels = design[column_of_groups].astype(str)
    numeric = _design_panels(design, column_of_groups)
    fig, axes = plt.subplots(1, 1 + len(numeric), figsize=(1.9 * (1 + len(numeric)), 2.2), squeeze=False)
    counts = [int((labels == g).sum()) for g in groups]
    axes[0, 0].bar(range(len(groups)), counts, color="tab:grey")
    axes[0, 0].set_title("participants", fontsize=9)
    for ax, column in zip(axes[0, 1:], numeric, strict=True):
        for i, g in enumerate(groups):
            values = pd.to_numeric(design.loc[labels == g, column], errors="coerce").dropna().to_numpy(float)
            offsets = np.linspace(-0.15, 0.15, values.size) if values.size > 1 else np.zeros(values.size)
            ax.scatter(i + offsets, values, s=10, alpha=0.7)
            if values.size:
                ax.hlines(np.median(values), i - 0.3, i + 0.3, color="k", lw=1.2)
        ax.set_title(column, fontsize=9)
    for ax in axes[0]:
        ax.set_xticks(range(len(groups)), groups, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlim(-0.6, len(groups) - 0.4)
    fig.tight_layout()
    return _png(fig)


def _design_panels(design: pd.DataFrame, column_of_groups: str) -> list[str]:
    """The covariates drawn by group: numeric, not constant, in table order, at most MAX_DESIGN_PANELS."""
    return [
        c
        for c in design.columns
        if c not in ("participant_id", column_of_groups)
        and pd.api.types.is_numeric_dtype(design[c])
        and design[c].nunique() > 1
    ][:MAX_DESIGN_PANELS]


def _design_summary(design: pd.DataFrame, column_of_groups: str) -> pd.DataFrame:
    """Rows = variables, columns = groups; numeric columns as mean (SD), sex as counts."""
    group_of = design[column_of_groups].astype(str)
    groups = sorted(group_of.unique())
    rows = []
    for column in design.columns:
        if column in ("participant_id", column_of_groups):
            continue
        values = design[column]
        row: dict[str, object] = {"variable": column}
        if column == "sex" or not pd.api.types.is_numeric_dtype(values):
            if column != "sex" and values.nunique() > 6:
                continue
            for g in groups:
                counts = values[group_of == g].astype(str).value_counts().sort_index()
                row[g] = ", ".join(f"{k}: {v}" for k, v in counts.items())
        else:
            for g in groups:
                sub = pd.to_numeric(values[group_of == g], errors="coerce").dropna()
                row[g] = _mean_sd(sub)
        rows.append(row)
    return pd.DataFrame(rows)


def _transpose_summary(qc: pd.DataFrame, column: str) -> pd.DataFrame:
    """``desc-qc_summary.tsv`` (one row per group, ``<var>_mean``/``<var>_std`` columns) as variable x group."""
    if column not in qc.columns:
        return qc
    groups = [str(g) for g in qc[column]]
    variables = []
    for column in qc.columns:
        if column.endswith("_mean"):
            variables.append(column[: -len("_mean")])
    rows = []
    if "n" in qc.columns:
        rows.append({"variable": "n"} | {g: _fmt(v) for g, v in zip(groups, qc["n"], strict=True)})
    for var in variables:
        row: dict[str, object] = {"variable": var}
        for i, g in enumerate(groups):
            mean = qc[f"{var}_mean"].iloc[i]
            sd = qc[f"{var}_std"].iloc[i] if f"{var}_std" in qc.columns else float("nan")
            row[g] = "n/a" if _isnan(mean) else (f"{_fmt(mean)} ({_fmt(sd)})" if not _isnan(sd) else _fmt(mean))
        rows.append(row)
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------------------------- voxelwise
@dataclass
class _MapResult:
    name: str
    contrast: str
    prefix: Path  # group_dir / "<map>_contrast-<contrast>_"
    sidecar: dict
    n_fwe: int | None
    n_tfce: int | None
    clusters: pd.DataFrame | None
    n_sig_clusters: int | None
    max_abs_t: float
    error: str | None = None
    affine: np.ndarray | None = None

    @property
    def significant(self) -> bool:
        return self.error is None and any(n for n in (self.n_fwe, self.n_tfce, self.n_sig_clusters) if n)

    def file(self, suffix: str) -> Path:
        return self.prefix.parent / f"{self.prefix.name}{suffix}"


def _map_sort_key(name: str, contrast: str, group_contrast: str) -> tuple:
    base = name.split("-", 1)[0]
    order = MAP_ORDER.index(base) if base in MAP_ORDER else len(MAP_ORDER)
    return (contrast != group_contrast, contrast, order, name)


def _collect_maps(group_dir: Path, group_contrast: str) -> list[_MapResult]:
    found = []
    for path in group_dir.glob("*_contrast-*_stat-t_statmap.nii.gz"):
        match = _STATMAP.match(path.name)
        if match:
            found.append((match["map"], match["contrast"]))
    results = []
    for name, contrast in sorted(found, key=lambda mc: _map_sort_key(*mc, group_contrast)):
        prefix = group_dir / f"{name}_contrast-{contrast}_"
        sidecar = _read_json(Path(f"{prefix}stat-t_statmap.json"))
        clusters = _read_tsv(Path(f"{prefix}desc-clusters_table.tsv"))
        try:
            t_map, t_affine = images.load_volume(Path(f"{prefix}stat-t_statmap.nii.gz"))
            n_fwe = _count_nonzero(Path(f"{prefix}stat-t_desc-fwe05_statmap.nii.gz"))
            n_tfce = _count_nonzero(Path(f"{prefix}stat-t_desc-tfcefwe05_statmap.nii.gz"))
        except InputError as exc:  # a damaged map must not stop the report: say so in the summary
            results.append(_MapResult(name, contrast, prefix, sidecar, None, None, clusters, None, 0.0, str(exc)))
            continue
        n_sig = None
        if clusters is not None and "p_fwe_cluster" in clusters.columns:
            n_sig = int((pd.to_numeric(clusters["p_fwe_cluster"], errors="coerce") < ALPHA).sum())
        finite = np.abs(t_map[np.isfinite(t_map)])
        results.append(
            _MapResult(
                name=name,
                contrast=contrast,
                prefix=prefix,
                sidecar=sidecar,
                n_fwe=n_fwe,
                n_tfce=n_tfce,
                clusters=clusters,
                n_sig_clusters=n_sig,
                max_abs_t=float(finite.max()) if finite.size else 0.0,
                affine=t_affine,
            )
        )
    return results


def _overview(maps: Sequence[_MapResult], *, output_dir: Path) -> str:
    """The first figure: a glass brain of the FWE-significant voxels of every significant map x contrast (in the
    documented order), then one grey tile per map x contrast without any, so the effects are found at a glance."""
    tiles, n_drawn = [], 0
    for m in sorted(maps, key=lambda m: not m.significant):  # stable: documented order within each kind
        label = f"{m.name}, {m.contrast}"
        if m.error:
            tiles.append(f"<div class='tile empty'>{_esc(label)}: unreadable</div>")
            continue
        volume = _significant_t(m) if m.significant else None
        if volume is None or not np.any(volume):
            tiles.append(f"<div class='tile empty'>{_esc(label)}: no FWE cluster</div>")
            continue
        if n_drawn >= MAX_SIGNIFICANT_FIGURES:
            tiles.append(f"<div class='tile'>{_esc(label)}: {_esc(_sig_text(m))} (figure left out)</div>")
            continue
        n_drawn += 1
        family = m.file("stat-t_desc-familyfwe05_statmap.nii.gz")
        family_t = images.load_volume(family)[0] if family.is_file() else None
        png = group_figures.glass_brain_figure(volume, m.affine, family=family_t)
        link = ""
        if n_drawn <= MAX_VIEWERS:
            viewer = _write_viewer(
                volume, m.affine, output_dir / "group" / "viewer" / f"{m.prefix.name}desc-fwe.html", title=label
            )
            link = f" <a href='{_esc(viewer.relative_to(output_dir).as_posix())}'>interactive viewer</a>"
        tiles.append(
            f"<div class='tile'>{html.image(png, f'{label}: FWE-significant t')}"
            f"<b>{_esc(label)}</b>: {_esc(_sig_text(m))}; "
            f"{_esc(group_figures.family_text(m.sidecar, _family_voxels(m)))}{link}</div>"
        )
    none = "" if n_drawn else f"<p><b>No map or contrast has a voxel with FWE p &lt; {ALPHA}.</b></p>"
    return none + (
        "<figure id='overview' style='margin:0'><figcaption>Where the effects are: t of the voxels with FWE p &lt; "
        f"{ALPHA} (TFCE, max-t or cluster extent; red: positive, blue: negative) for every map and contrast; "
        "black outline: voxels that also survive the FWE across the primary family (<code>--primary-maps</code>); "
        "grey: no FWE-significant voxel. Details in <a href='#voxelwise'>Voxelwise results</a>.</figcaption>"
        f"<div class='tiles'>{''.join(tiles)}</div></figure>"
    )


def _write_viewer(volume: np.ndarray, affine: np.ndarray, path: Path, *, title: str) -> Path:
    """nilearn's ``view_img`` page of the FWE-significant t over the MNI template, made offline and deterministic:
    its scripts and images are inline; the favicon link (the one network reference) is removed and the random
    element id replaced by one derived from the file name."""
    import hashlib
    import warnings

    from nilearn import plotting

    img = images.make_image(volume.astype(np.float32), affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nilearn/numpy warnings about masked arrays in the colour scaling
        page = plotting.view_img(img, threshold=1e-6, symmetric_cmap=True, cmap="RdBu_r", title=title)
    text = re.sub(r"<link rel=\"icon\"[^>]*/>", "", page.get_standalone())
    stable = hashlib.sha1(path.name.encode()).hexdigest()[:32]
    for random_id in set(re.findall(r"(?<=viewer-)[0-9a-f]{32}", text)):
        text = text.replace(random_id, stable)
    return derivatives.write_text(path, text)


def _sig_text(m: _MapResult) -> str:
    counts = [f"{m.n_sig_clusters} cluster(s)"] if m.n_sig_clusters else []
    for n, what in ((m.n_tfce, "TFCE"), (m.n_fwe, "max-t")):
        if n:
            counts.append(f"{n} vox {what}")
    return ", ".join(counts) + f"; max |t| {m.max_abs_t:.3g}"


def _significant_t(m: _MapResult) -> np.ndarray | None:
    """t where any FWE correction (TFCE, max-t voxel, cluster extent) gives p < ALPHA; None if no t map."""
    t_map, _ = images.load_volume(m.file("stat-t_statmap.nii.gz"))
    keep = np.zeros(t_map.shape, dtype=bool)
    for suffix in ("stat-t_desc-tfcefwe05_statmap.nii.gz", "stat-t_desc-fwe05_statmap.nii.gz"):
        if m.file(suffix).is_file():
            keep |= np.nan_to_num(images.load_volume(m.file(suffix))[0]) != 0
    cluster_logp = m.file("stat-logp_desc-clusterfwe_statmap.nii.gz")
    if cluster_logp.is_file():
        keep |= np.abs(np.nan_to_num(images.load_volume(cluster_logp)[0])) > -math.log10(ALPHA)
    return np.where(keep, np.nan_to_num(t_map), 0.0)


def _voxelwise_section(maps: Sequence[_MapResult], *, max_other_figures: int, contrast: str) -> str:
    if not maps:
        return ""
    parts = [
        f"<p>Two-sided GLM t maps: <code>{_esc(contrast)}</code> is patients minus controls; a clinical contrast (e.g. "
        "<code>painvas</code>) is the correlation with that column within patients (positive: the map increases "
        f"with the score). Significance: FWE p &lt; {ALPHA} (max-t over voxels, TFCE, or cluster extent) within "
        "each map; the maps of the primary family (column <i>family</i>) are also max-t FWE-corrected across the "
        "family (column <i>voxels family FWE</i>), every other map and contrast is exploratory.</p>",
        "<h3>Summary of all maps</h3>",
        "<p class='muted'>Significant rows first (highlighted); click a column header to sort.</p>",
        _summary_table(maps),
        _negative_bold_note(),
    ]
    for m in maps:
        if m.error:
            parts.append(f"<p class='warn'>{_esc(m.name)}, contrast {_esc(m.contrast)}: {_esc(m.error)}</p>")
    others = sorted(
        (m for m in maps if not m.significant and not m.error),
        key=lambda m: (-m.max_abs_t, _map_sort_key(m.name, m.contrast, contrast)),
    )
    shown_others = {id(m) for m in others[: max(0, max_other_figures)]}
    n_figures = n_views = 0
    for m in maps:
        if not (m.significant or id(m) in shown_others):
            continue
        title = f"{m.name}, contrast {m.contrast}"
        parts.append(f"<h3>{_esc(title)}{'' if m.significant else ' (no significant result)'}</h3>")
        if m.sidecar.get("Description"):
            parts.append(f"<p class='muted'>{_esc(str(m.sidecar['Description']))}</p>")
        if not m.significant or n_figures < MAX_SIGNIFICANT_FIGURES:
            parts.append(_map_figure(m, title))
            n_figures += m.significant
            if m.significant and m.clusters is not None:
                budget = min(group_figures.MAX_CLUSTER_VIEWS, group_figures.MAX_CLUSTER_VIEWS_TOTAL - n_views)
                views = group_figures.cluster_views(_significant_t(m), m.affine, _sorted_clusters(m.clusters),
                                                    title=title, max_views=budget)  # fmt: skip
                n_views += views.count("<div class='cluster'>")
                parts.append(views)
        else:
            parts.append(f"<p class='muted'>Figure left out: more than {MAX_SIGNIFICANT_FIGURES} significant maps.</p>")
        if m.clusters is not None:
            parts.append(_cluster_table(m.clusters, significant=m.significant))
            parts.append(_negative_bold_note())
    n_hidden = len(others) - len(shown_others)
    if n_hidden > 0:
        parts.append(
            f"<p class='muted'>{n_hidden} further map(s) without significant result are listed in the summary "
            "only (no figure, to keep this page small).</p>"
        )
    return "".join(parts)


def _summary_table(maps: Sequence[_MapResult]) -> str:
    ordered = sorted(maps, key=lambda m: not m.significant)  # stable: documented order within each kind
    rows = [{k: _cell(v) for k, v in _summary_row(m).items()} for m in ordered]
    classes = ["sig" if m.significant else "" for m in ordered]
    return f"<div class='scroll'>{html.table(rows, table_id='summary', sortable=True, row_classes=classes)}</div>"


def _family_voxels(m: _MapResult) -> int | None:
    """Voxels of a primary map with max-t FWE p < ALPHA across the primary family (None: not in the family)."""
    path = m.file("stat-t_desc-familyfwe05_statmap.nii.gz")
    if m.error or not path.is_file():
        return None
    return int(np.count_nonzero(np.nan_to_num(images.load_volume(path)[0])))


def _summary_row(m: _MapResult) -> dict[str, object]:
    best = "none"
    if m.clusters is not None and len(m.clusters):
        row = _sorted_clusters(m.clusters).iloc[0]
        label = row.get("harvard_oxford", "")
        if "aal" in row.index and isinstance(row.get("aal"), str):
            label = f"{label} / {row['aal']}"
        best = (
            f"{row.get('sign', '')} {_int(row.get('voxels'))} vox at ({_coord(row)}), "
            f"t = {_fmt(row.get('peak_t'))}, p = {_fmt(row.get('p_fwe_cluster'))}, {label}"
        )
    if m.error:
        best = f"unreadable: {m.error}"
    participants = m.sidecar.get("Participants", "n/a")
    if isinstance(participants, list):
        participants = len(participants)
    return {
        "map": m.name,
        "contrast": m.contrast,
        "family": "primary" if m.sidecar.get("Family") else "exploratory",
        "participants": participants,
        "max |t|": m.max_abs_t,
        "voxels max-t FWE<0.05": _na(m.n_fwe),
        "voxels family FWE<0.05": _na(_family_voxels(m)),
        "voxels TFCE FWE<0.05": _na(m.n_tfce),
        "clusters FWE<0.05": _na(m.n_sig_clusters),
        "best cluster (sign, size, peak MNI, peak t, cluster FWE p, HO / AAL label)": best,
    }


def _map_figure(m: _MapResult, title: str) -> str:
    """Thresholded t map: TFCE FWE, else voxel FWE, else |t| above the cluster-forming t (uncorrected)."""
    for suffix, what in (
        ("stat-t_desc-tfcefwe05_statmap.nii.gz", "t where TFCE FWE p < 0.05"),
        ("stat-t_desc-fwe05_statmap.nii.gz", "t where voxel (max-t) FWE p < 0.05"),
    ):
        path = m.file(suffix)
        if path.exists() and _count_nonzero(path):
            volume, affine = images.load_volume(path)
            return _image(_stat_figure(volume, affine, title=title, threshold=None), f"{title}: {what}", what)
    volume, affine = images.load_volume(m.file("stat-t_statmap.nii.gz"))
    threshold = m.sidecar.get("ClusterFormingT")
    where = "the cluster-forming threshold"
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        threshold, where = 3.0, "a nominal threshold (cluster-forming t not recorded)"
    threshold = float(threshold)
    if not np.any(np.abs(np.nan_to_num(volume)) > threshold):
        return f"<p class='muted'>No voxel with |t| &gt; {threshold:.3g} ({_esc(where)}).</p>"
    what = f"uncorrected: |t| > {threshold:.3g} ({where})"
    if m.n_sig_clusters:
        what += "; the clusters with cluster-extent FWE p < 0.05 are listed below"
    return _image(_stat_figure(volume, affine, title=title, threshold=threshold), f"{title}: {what}", what)


def _stat_figure(volume: np.ndarray, affine: np.ndarray, *, title: str, threshold: float | None) -> bytes:
    import matplotlib.pyplot as plt
    from nilearn import plotting

    img = images.make_image(np.nan_to_num(volume).astype(np.float32), affine)
    fig = plt.figure(figsize=(9, 2.0))
    plotting.plot_stat_map(
        img,
        display_mode="z",
        cut_coords=7,
        figure=fig,
        title=title,
        cmap="RdBu_r",
        symmetric_cbar=True,
        threshold=threshold if threshold is not None else 1e-6,
        resampling_interpolation="nearest",
        draw_cross=False,
    )
    return _png(fig)


def _sorted_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    table = clusters.copy()
    keys, ascending = [], []
    if "p_fwe_cluster" in table.columns:
        table["_p"] = pd.to_numeric(table["p_fwe_cluster"], errors="coerce").fillna(np.inf)
        keys.append("_p")
        ascending.append(True)
    if "voxels" in table.columns:
        keys.append("voxels")
        ascending.append(False)
    if "peak_t" in table.columns:
        table["_abs_t"] = pd.to_numeric(table["peak_t"], errors="coerce").abs()
        keys.append("_abs_t")
        ascending.append(False)
    if keys:
        table = table.sort_values(keys, ascending=ascending, kind="mergesort")
    return table.drop(columns=[c for c in ("_p", "_abs_t") if c in table.columns])


def _cluster_table(clusters: pd.DataFrame, *, significant: bool) -> str:
    if not len(clusters):
        return "<p>Cluster table: no cluster above the cluster-forming threshold.</p>"
    table = _sorted_clusters(clusters)
    if {"peak_x", "peak_y", "peak_z"} <= set(table.columns):
        table = table.assign(peak_mni=[_coord(r) for _, r in table.iterrows()])
        table = table.drop(columns=["peak_x", "peak_y", "peak_z"])
        cols = list(table.columns)
        cols.insert(cols.index("peak_t") + 1 if "peak_t" in cols else len(cols) - 1, cols.pop(cols.index("peak_mni")))
        table = table[cols]
    note = "" if significant else " (none significant)"
    head = f"<p>Clusters (desc-clusters_table.tsv){note}, by cluster FWE p:</p>"
    more = ""
    if len(table) > MAX_CLUSTER_ROWS:
        more = f"<p class='muted'>{len(table) - MAX_CLUSTER_ROWS} further clusters in the TSV.</p>"
    return head + _table(table.head(MAX_CLUSTER_ROWS)) + more


# --------------------------------------------------------------------------------------------------- clinical
def _clinical_section(group_dir: Path, *, group_contrast: str) -> str:
    found = []
    for path in group_dir.glob("*_contrast-*_desc-roi_stats.tsv"):
        match = _ROISTATS.match(path.name)
        if match:
            found.append((match["map"], match["contrast"], path))
    if not found:
        return ""
    parts = [
        "<p>Within patients: the mean map value in each seed region against each clinical column, with the "
        "group model's covariates; t, partial r, permutation p, max-t FWE over regions and FDR q.</p>"
    ]
    for name, contrast, path in sorted(found, key=lambda f: (f[1], _map_sort_key(f[0], f[1], group_contrast))):
        table = _read_tsv(path)
        if table is None:
            continue
        parts.append(f"<h3>{_esc(name)}, clinical column {_esc(contrast)}</h3>")
        parts.append(_table(table))
        parts.append(_negative_bold_note())
        p_fwe = pd.to_numeric(table.get("p_fwe", pd.Series(dtype=float)), errors="coerce")
        significant = [str(r) for r, p in zip(table.get("region", []), p_fwe, strict=False) if p < ALPHA]
        if not significant:
            parts.append(f"<p class='muted'>No region with FWE p &lt; {ALPHA}: no scatter plot.</p>")
            continue
        values_path = group_dir / f"{name}_contrast-{contrast}_desc-roivalues_stats.tsv"
        values = _read_tsv(values_path)
        if values is None:
            parts.append(
                f"<p class='muted'>Regions with FWE p &lt; {ALPHA}: {_esc(', '.join(significant))}. Scatter plots "
                f"need the per-participant ROI values ({_esc(values_path.name)}), which this run did not write."
                "</p>"
            )
            continue
        regions = set(table["region"].astype(str))
        score_columns = [c for c in values.columns if c != "participant_id" and c not in regions]
        if not score_columns:
            parts.append(f"<p class='muted'>{_esc(values_path.name)} has no clinical score column.</p>")
            continue
        score = score_columns[0]
        stats = table.set_index(table["region"].astype(str))
        for region in significant:
            if region not in values.columns:
                continue
            row = stats.loc[region]
            fig = _scatter_figure(
                pd.to_numeric(values[score], errors="coerce").to_numpy(float),
                pd.to_numeric(values[region], errors="coerce").to_numpy(float),
                xlabel=score,
                ylabel=f"{name} in {region}",
                title=f"{region}: t = {_fmt(row.get('t'))}, FWE p = {_fmt(row.get('p_fwe'))}",
            )
            parts.append(_image(fig, f"{name} in {region} against {score}", None))
        parts.append(
            "<p class='muted'>Scatter plots show the raw ROI values; the test adjusts for the covariates, so the "
            "line drawn (ordinary least squares of the raw values) is only a guide.</p>"
        )
    return "".join(parts)


def _scatter_figure(x: np.ndarray, y: np.ndarray, *, xlabel: str, ylabel: str, title: str) -> bytes:
    import matplotlib.pyplot as plt

    ok = np.isfinite(x) & np.isfinite(y)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter(x[ok], y[ok], s=18, color="tab:blue")
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        slope, intercept = np.polyfit(x[ok], y[ok], 1)
        xs = np.array([x[ok].min(), x[ok].max()])
        ax.plot(xs, intercept + slope * xs, color="k", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _png(fig)


# ------------------------------------------------------------------------------------------------- connectomes
def _concordance_section(group_dir: Path) -> str:
    table = _read_tsv(group_dir / "desc-concordance_literature.tsv")
    if table is None or table.empty:
        return ""
    columns = ["finding", "map", "contrast", "family", "reported_direction", "region", "status",
               "this_study_peak_mm", "this_study_label", "this_study_p", "citation"]  # fmt: skip
    shown = table[[c for c in columns if c in table.columns]]
    return (
        "<p>Published resting-state findings in chronic back pain (bundled, cited table) next to this study's "
        "significant clusters of the same map and contrast, matched on the peak's Harvard-Oxford label and sign. "
        "The matching is coarse; read it as an aid to the discussion. A finding counts with its map's own FWE p; "
        "only the rows of the primary family (<code>family</code>) belong to the pre-declared hypotheses.</p>"
        + _table(shown)
        + _negative_bold_note()
    )


def _connectome_section(group_dir: Path, *, group_contrast: str) -> str:
    found = []
    for path in group_dir.glob("atlas-*_contrast-*_stat-t_relmat.tsv"):
        match = _RELMAT.match(path.name)
        if match:
            found.append((match["atlas"], match["contrast"], path))
    if not found:
        return ""
    parts = [
        "<p>Edge-wise GLM t of the runs-averaged Fisher-z connectomes (max-t FWE and FDR over edges), the "
        "Network-Based Statistic (Zalesky, Fornito &amp; Bullmore 2010) and graph-measure AUC tests.</p>"
    ]
    for atlas, contrast, path in sorted(found, key=lambda f: (f[1] != group_contrast, f[1], f[0])):
        prefix = group_dir / f"atlas-{atlas}_contrast-{contrast}_"
        title = f"atlas {atlas}, contrast {contrast}"
        parts.append(f"<h3>{_esc(title)}</h3>")
        matrix = _read_tsv(path, index_col=0)
        if matrix is not None and matrix.shape[0]:
            edge_table = _read_tsv(Path(f"{prefix}desc-edges_stats.tsv"))
            parts.append(group_figures.connectome_figures(matrix, edge_table, atlas=atlas, title=title))
        nbs = _read_tsv(Path(f"{prefix}desc-nbs_components.tsv"))
        if nbs is not None:
            parts.append("<h4>NBS components</h4>")
            if len(nbs):
                if "nodes" in nbs.columns:
                    nbs = nbs.assign(nodes=[_truncate(str(v)) for v in nbs["nodes"]])
                parts.append(_table(nbs))
            else:
                parts.append("<p>No supra-threshold component.</p>")
            parts.append(_negative_bold_note())
        edges = _read_tsv(Path(f"{prefix}desc-edges_stats.tsv"))
        if edges is not None:
            parts.append(f"<h4>Top {MAX_EDGE_ROWS} edges by FDR q</h4>")
            keys = [c for c in ("q_fdr", "p_uncorrected") if c in edges.columns]
            if keys:
                edges = edges.assign(**{f"_{k}": pd.to_numeric(edges[k], errors="coerce") for k in keys})
                edges = edges.sort_values([f"_{k}" for k in keys], kind="mergesort").drop(
                    columns=[f"_{k}" for k in keys]
                )
            n_q = int((pd.to_numeric(edges.get("q_fdr", pd.Series(dtype=float)), errors="coerce") < ALPHA).sum())
            n_fwe = int((pd.to_numeric(edges.get("p_fwe", pd.Series(dtype=float)), errors="coerce") < ALPHA).sum())
            parts.append(f"<p>{len(edges)} edges; {n_q} with FDR q &lt; {ALPHA}; {n_fwe} with FWE p &lt; {ALPHA}.</p>")
            parts.append(_table(edges.head(MAX_EDGE_ROWS)))
            parts.append(_negative_bold_note())
        graph = _read_tsv(Path(f"{prefix}desc-graph_stats.tsv"))
        if graph is not None:
            parts.append("<h4>Graph measures (AUC over densities)</h4>")
            parts.append(_table(graph))
        nodal = _read_tsv(Path(f"{prefix}desc-nodal_stats.tsv"))
        if nodal is not None and "q_fdr" in nodal.columns:
            hits = nodal[pd.to_numeric(nodal["q_fdr"], errors="coerce") < ALPHA]
            parts.append(
                f"<h4>Nodal measures</h4><p>{len(nodal)} region x measure tests; "
                f"{len(hits)} with FDR q &lt; {ALPHA}.</p>"
            )
            if len(hits):
                parts.append(_table(hits.head(MAX_EDGE_ROWS)))
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------- methods
def _methods_section(settings_summary: Mapping[str, object], run_info: Mapping[str, object] | None) -> str:
    parts = ["<h3>Settings</h3>", html.table(dict(settings_summary)) if settings_summary else "<p>none</p>"]
    parts.append("<h3>Software</h3>")
    parts.append(html.table({"clbp-bidsapp": __version__}))
    if run_info:
        parts.append("<h3>Run</h3>")
        parts.append(html.table(dict(run_info)))
    return "".join(parts)


# ----------------------------------------------------------------------------------------------------- helpers
# ---------------------------------------------------------------------------------------------- machine learning
ML_SHOWN = (
    "task", "feature_set", "model", "scheme", "balanced_accuracy", "balanced_accuracy_ci_low",
    "balanced_accuracy_ci_high", "roc_auc", "sensitivity", "specificity", "r", "mae", "r2", "p_value",
    "p_value_uncorrected", "primary",
)  # fmt: skip


def _ml_section(group_dir: Path) -> str:
    """Scores table, ROC curves and permutation null of the ML stage (group/desc-ml_*)."""
    summary = _read_tsv(group_dir / "desc-ml_summary.tsv")
    if summary is None or summary.empty:
        return ""
    meta = _read_json(group_dir / "desc-ml_summary.json")
    primary = meta.get("PrimaryModel", "linear_svm")
    parts = [
        "<p>Cross-validated classification of patients versus controls (and prediction of the clinical score within "
        "patients). Everything that learns from data (ComBat with several sites, covariate regression, scaling, "
        "feature selection, the model and its hyper-parameters) is fitted inside each training fold. Scores are "
        "means over the repeats of the outer k-fold; intervals are the 2.5-97.5 percentiles over repeats (split "
        f"variability, not a sampling CI). The pre-declared primary result is {_esc(primary)} on "
        f"{_esc(str(meta.get('PrimaryFeatureSet')))} (column primary). Each permutation reruns the whole nested "
        "procedure on permuted labels; with several results tested, p_value is corrected by the best score over "
        "them per permutation (it holds for the best of them) and p_value_uncorrected is each one alone "
        f"(see docs/machine-learning.md). Permutations: {_esc(str(meta.get('PermutationBlocks', 'free')))}.</p>",
        _table(summary[[c for c in ML_SHOWN if c in summary.columns]]),
    ]
    roc = _read_tsv(group_dir / "desc-ml_roc.tsv")
    if roc is not None and not roc.empty:
        parts.append(_image(_roc_figure(roc, primary), "ROC curves", f"mean ROC over repeats, {primary}, k-fold"))
    null = _read_tsv(group_dir / "desc-ml_null.tsv")
    if null is not None and not null.empty:
        parts.append(_image(_null_figure(null, meta), "permutation null", "permutation null distribution of the "
                            "statistic (line: observed, same splits)"))  # fmt: skip
    features = _read_tsv(group_dir / "desc-ml_features.tsv")
    if features is not None and not features.empty:
        top = features[(features["model"] == primary) & (features["rank"] <= 10)]
        cols = ["feature_set", "rank", "feature", "mean_weight", "selection_frequency", "sign_consistency"]
        parts.append("<h3>Most informative features (primary model)</h3>" + _table(top[cols]))
    parts.append(group_figures.ml_weight_maps(group_dir))
    return "".join(parts)


def _roc_figure(roc: pd.DataFrame, primary: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    chosen = roc[(roc["model"] == primary) & (roc["scheme"] == "kfold")]
    for name, chunk in chosen.groupby("feature_set", sort=True):
        ax.plot(chunk["fpr"], chunk["tpr_mean"], lw=1.4, label=str(name))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{primary}, k-fold: mean ROC over repeats", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _null_figure(null: pd.DataFrame, meta: dict) -> bytes:
    """One histogram per permutation-tested result: its null, the observed score (red) and the p in the legend."""
    import matplotlib.pyplot as plt

    groups = list(null.groupby(["task", "feature_set", "model", "scheme"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), squeeze=False)
    for ax, ((task, fs, model, scheme), chunk) in zip(axes[0], groups, strict=True):
        ax.hist(chunk["statistic"], bins=20, color="lightgrey", edgecolor="grey")
        entry = meta.get(task, {}).get(fs, {}).get(model, {})
        entry = entry.get("leave_site_out", {}) if scheme == "loso" else entry
        observed, p_value = entry.get("permutation_observed"), entry.get("p_value")
        if observed is not None:
            label = f"observed {float(observed):.2f}" + (f", p = {float(p_value):.2g}" if p_value is not None else "")
            ax.axvline(float(observed), color="tab:red", lw=1.5, label=label)
            ax.legend(fontsize=8, loc="upper left")
        ax.set_xlabel(str(entry.get("permutation_statistic", "statistic")).replace("_", " "), fontsize=9)
        ax.set_ylabel("permutations", fontsize=9)
        ax.set_title(f"{task}: {model} on {fs} ({scheme})", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # low DPI keeps a report of ~30 maps small; no date/software metadata so reruns give identical bytes
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _image(png: bytes, alt: str, caption: str | None) -> str:
    text = html.image(png, alt)
    if caption:
        text += f"<p class='muted'>{_esc(caption)}</p>"
    return text


def _negative_bold_note() -> str:
    return f"<p class='muted'>{_esc(NEGATIVE_BOLD)}</p>"


def _read_tsv(path: Path, *, index_col: int | None = None) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(
            path, sep="\t", index_col=index_col, na_values=["n/a"], keep_default_na=False, dtype={"participant_id": str}
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        LOGGER.warning("group report: %s cannot be read as TSV (%s); left out of the report", path, exc)
        return None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _count_nonzero(path: Path) -> int | None:
    if not path.is_file():
        return None
    volume, _ = images.load_volume(path)
    return int(np.count_nonzero(np.nan_to_num(volume)))


def _table(frame: pd.DataFrame) -> str:
    rows = [{str(k): _cell(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    if not rows:
        return "<p class='muted'>none</p>"
    return f"<div class='scroll'>{html.table(rows)}</div>"


def _cell(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{float(value):.4g}"
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def _mean_sd(values: pd.Series) -> str:
    if not len(values):
        return "n/a"
    if len(values) == 1:
        return _fmt(float(values.iloc[0]))
    return f"{_fmt(float(values.mean()))} ({_fmt(float(values.std(ddof=1)))})"


def _coord(row: pd.Series) -> str:
    """Peak MNI coordinate ``x, y, z`` (mm) of a cluster-table row."""
    values = [pd.to_numeric(row.get(k), errors="coerce") for k in ("peak_x", "peak_y", "peak_z")]
    return ", ".join("n/a" if _isnan(v) or v is None else f"{float(v):g}" for v in values)


def _int(value: object) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return str(value)


def _na(value: int | None) -> object:
    return "n/a" if value is None else value


def _isnan(value: object) -> bool:
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _truncate(text: str) -> str:
    if len(text) <= MAX_NODES_CHARS:
        return text
    n = text.count(",") + 1
    return text[:MAX_NODES_CHARS].rsplit(",", 1)[0] + f", ... ({n} regions in the TSV)"


def _esc(text: str) -> str:
    return html_lib.escape(text)
