"""CBF at the group level: the CBF map sets for the voxelwise machinery, and the BOLD-CBF concordance tables.

- :func:`cbf_map_sets`: every included participant's smoothed absolute (``cbf``) and relative (``rcbf``) CBF maps,
  left out of the CBF analyses (with the reason) when the participant level marked them not usable (mean grey-matter
  CBF outside ``--cbf-gm-range``, QEI below ``--cbf-min-qei``); with ``--cbf-global-covariate`` the absolute maps
  get each participant's mean grey-matter CBF as a covariate.
- :func:`write_concordance`: for every BOLD-derived cluster with cluster-extent FWE p < 0.05 (or a peak voxel with
  max-t FWE p < 0.05), the CBF group effect
  (relative CBF; same design) in the same voxels: mean effect, its 95 % confidence interval and p, and whether it
  agrees in sign; and the reverse, for every such CBF cluster, the BOLD maps' t in the same voxels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core import perfusion
from clbp_bidsapp.core.stats import Design, DesignError
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.group.design import group_design
from clbp_bidsapp.group.maps import GroupMaps, load_group_maps
from clbp_bidsapp.group.voxelwise import ALPHA, MapSet, MetricResult, model_columns
from clbp_bidsapp.io import derivatives

LOGGER = logging.getLogger("clbp_bidsapp.group")
CBF_MAPS = {  # group label -> (stat entity, description)
    "cbf": ("cbf", "absolute CBF (mL/100 g/min, smoothed)"),
    "rcbf": ("rcbf", "relative CBF (CBF / mean grey-matter CBF, smoothed)"),
}
CONCORDANCE_MAP = "rcbf"  # the CBF map the BOLD clusters are compared with (global differences removed, as z maps)
CONCORDANCE_FILE = "desc-boldcbf_concordance.tsv"
REVERSE_FILE = "desc-cbfbold_concordance.tsv"
MODALITIES_FILE = "desc-modalities_participants.tsv"
_CBF_READING = (
    "CBF is a closer read-out of local neural activity than BOLD-derived measures, but it is not oxygen metabolism; "
    "see desc-boldcbf_concordance.tsv and docs/cbf.md."
)
INTERPRETATIONS = {  # the group stat maps' sidecar "Interpretation" (the BOLD maps' says BOLD is not activity)
    "cbf": "A difference in absolute resting cerebral blood flow (mL/100 g/min, arterial spin labelling), global "
    "differences included. " + _CBF_READING,
    "rcbf": "A difference in relative resting cerebral blood flow (arterial spin labelling, each map divided by the "
    "participant's mean grey-matter CBF: regional, not global, differences). " + _CBF_READING,
}


def cbf_quality(layout, participants: list[str]) -> pd.DataFrame:
    """One row per participant with CBF: mean GM CBF (mean over their CBF runs), QEI, usable, reason."""
    rows = []
    for label in participants:
        files = layout.get(subject=label, suffix="qc", desc="cbf", extension=".tsv", return_type="filename")
        if not files:
            continue
        table = pd.concat([pd.read_csv(f, sep="\t", na_values=["n/a"]) for f in sorted(files)], ignore_index=True)
        usable = table["usable"].astype(str).str.lower() == "true"
        reasons = "; ".join(str(r) for r in table.loc[~usable, "reason"] if isinstance(r, str) and r)
        rows.append({
            "participant_id": label,
            "global_cbf": float(table.loc[usable, "mean_gm_cbf"].mean()) if usable.any() else np.nan,
            "qei": float(pd.to_numeric(table["qei"], errors="coerce").mean()),
            "asl_mean_fd": float(pd.to_numeric(table.get("mean_fd", pd.Series(dtype=float)), errors="coerce").mean()),
            "cbf_usable": bool(usable.any()),
            "cbf_reason": "" if usable.any() else f"CBF not usable: {reasons}",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["participant_id", "global_cbf", "qei", "asl_mean_fd", "cbf_usable",
                                       "cbf_reason"])  # fmt: skip


CBF_ONLY_ANALYSIS = "bold"  # the exclusion-table analysis of a participant with CBF but no usable BOLD run


def cbf_participants(participants: pd.DataFrame, layout, design, *, settings: GroupSettings) -> pd.DataFrame:
    """The rows of the CBF analyses: the BOLD design's participants, and those with CBF but no usable BOLD run.

    A CBF-only participant (a CBF QC table among the selected outputs, a patient or control label in
    participants.tsv, no analysed BOLD run: no denoising QC table) enters with their participants.tsv values; QC
    covariates they cannot have without BOLD are taken from the ASL run (``mean_fd``: ASLPrep's mean FD) or left
    empty, which leaves them out of the CBF analyses with the reason. Their exclusions from every analysis (no BOLD
    derivatives) become exclusions from the BOLD analyses only (``design.exclusions`` is updated).
    """
    included = design.included
    table = participants.copy()
    table["participant_id"] = table["participant_id"].astype(str).str.strip().str.removeprefix("sub-")
    labels = {settings.patient_label, settings.control_label}
    table = table[table[settings.group_column].astype(str).isin(labels)]
    candidates = [  # not in the BOLD design because they have no analysed BOLD run (not for another reason)
        pid for pid in sorted(set(table["participant_id"]) - set(included["participant_id"]))
        if not layout.get(subject=pid, suffix="qc", desc="denoising", extension=".tsv", return_type="filename")
    ]  # fmt: skip
    quality = cbf_quality(layout, candidates).set_index("participant_id")
    cbf_only = [pid for pid in candidates if pid in quality.index]
    if not cbf_only:
        return included
    rows = table[table["participant_id"].isin(cbf_only)].copy()
    rows["mean_fd"] = rows["participant_id"].map(quality["asl_mean_fd"])
    rows["n_runs"] = 0
    for pid in cbf_only:
        design.exclusions.narrow(pid, CBF_ONLY_ANALYSIS, "no usable BOLD run at the participant level (CBF only)")
    combined = pd.concat([included, rows[[c for c in rows.columns if c in included.columns or c == "mean_fd"]]],
                         ignore_index=True)  # fmt: skip
    return combined.sort_values("participant_id").reset_index(drop=True)


def cbf_map_sets(
    layout, *, participants: list[str], settings: GroupSettings, table: pd.DataFrame | None = None
) -> list[MapSet]:
    """The ``cbf`` and ``rcbf`` map sets of the participants who have CBF maps (none without ASLPrep input).

    ``table``: the rows of the CBF analyses (:func:`cbf_participants`), when they differ from the BOLD design's.
    Maps not on the grid shared by most CBF maps (a CBF-only participant's own grid, see docs/cbf.md) are left out
    with the reason.
    """
    quality = cbf_quality(layout, participants).set_index("participant_id")
    excluded = {pid: str(row["cbf_reason"]) for pid, row in quality.iterrows() if not row["cbf_usable"]}
    if table is not None:
        for pid, row in table.set_index("participant_id").iterrows():
            missing = [name for name in model_columns(table, settings)[0] if pd.isna(row.get(name))]
            if missing and pid not in excluded:
                excluded[pid] = f"covariate {', '.join(missing)} has no value (a participant without BOLD)"
    sets = []
    for label, (stat, description) in CBF_MAPS.items():
        maps = {}
        for pid in participants:
            files = layout.get(subject=pid, stat=stat, desc="smoothed", suffix="cbfmap", extension=".nii.gz",
                               return_type="filename")  # fmt: skip
            if files:
                maps[pid] = sorted(Path(f) for f in files)
        if not maps:
            continue
        for pid, why in off_grid(maps).items():
            excluded.setdefault(pid, why)
        covariates = None
        if label == "cbf" and settings.cbf_global_covariate:
            covariates = quality[["global_cbf"]].reset_index()
            description += ", mean grey-matter CBF as a covariate"
        sets.append(MapSet(label, description, maps, excluded=dict(excluded), covariates=covariates, table=table,
                           interpretation=INTERPRETATIONS[label]))  # fmt: skip
    return sets


def off_grid(maps: dict[str, list[Path]]) -> dict[str, str]:
    """Participants whose CBF map is not on the grid most CBF maps share (ties: the first participant's), and why."""
    from collections import Counter

    from clbp_bidsapp.io.aslprep import describe_grid
    from clbp_bidsapp.io.images import header_grid

    grids = {}
    for pid, paths in maps.items():
        shape, affine = header_grid(paths[0])
        grids[pid] = (tuple(shape), tuple(np.round(np.asarray(affine), 3).ravel()))
    common, _ = Counter(grids.values()).most_common(1)[0]
    where = describe_grid(common[0], np.reshape(common[1], (4, 4)))
    return {
        pid: f"CBF map {maps[pid][0].name} is on grid {describe_grid(grid[0], np.reshape(grid[1], (4, 4)))}, the "
        f"other CBF maps on {where}: rerun ASLPrep with the BOLD's output resolution"
        for pid, grid in grids.items()
        if grid != common
    }


def modalities_table(included: pd.DataFrame, layout, map_sets: list[MapSet]) -> pd.DataFrame:
    """Who contributed to which modality: BOLD (the BOLD design's participants), CBF usable or why not."""
    table = next((m.table for m in map_sets if m.table is not None), None)
    bold = set(included["participant_id"])
    participants = sorted(bold | (set(table["participant_id"]) if table is not None else set()))
    quality = cbf_quality(layout, participants).set_index("participant_id")
    with_cbf = {pid for map_set in map_sets for pid in map_set.maps}
    rows = []
    for pid in participants:
        has = pid in with_cbf
        usable = has and bool(quality.loc[pid, "cbf_usable"]) if pid in quality.index else False
        excluded = next((m.excluded[pid] for m in map_sets if pid in m.excluded), "")
        usable = usable and not excluded
        rows.append({
            "participant_id": pid,
            "bold": pid in bold,
            "cbf": usable,
            "cbf_note": ("" if usable else excluded or quality.loc[pid, "cbf_reason"] if pid in quality.index
                         else "no CBF map (no ASLPrep CBF for this participant)"),
            "global_cbf": quality.loc[pid, "global_cbf"] if pid in quality.index else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def write_concordance(
    results: list[MetricResult], included: pd.DataFrame, *, map_sets: list[MapSet], group_dir: Path,
    settings: GroupSettings, layout,
) -> tuple[Path, pd.DataFrame, pd.DataFrame] | None:  # fmt: skip
    """Write the BOLD-to-CBF and CBF-to-BOLD concordance tables and the modalities table (None without CBF)."""
    cbf_set = next((m for m in map_sets if m.label == CONCORDANCE_MAP), None)
    if cbf_set is None:
        return None
    derivatives.write_tsv(group_dir / MODALITIES_FILE, modalities_table(included, layout, map_sets))
    usable = {pid: paths for pid, paths in cbf_set.maps.items() if pid not in cbf_set.excluded}
    rows = cbf_set.table if cbf_set.table is not None else included
    table = rows[rows["participant_id"].isin(usable)].reset_index(drop=True)
    try:
        cbf = load_group_maps({pid: usable[pid] for pid in table["participant_id"]}, metric=cbf_set.label)
    except InputError as exc:
        LOGGER.warning("BOLD-CBF concordance not computed: %s", exc)
        return None
    order = {pid: i for i, pid in enumerate(cbf.participants)}  # design rows in the order of the CBF data rows
    table = table[table["participant_id"].isin(order)].sort_values("participant_id", key=lambda c: c.map(order))
    table = table.reset_index(drop=True)
    covariates, factors, _ = model_columns(table, settings)
    try:
        design = group_design(table, settings, covariates=covariates, factors=factors)
    except DesignError as exc:
        LOGGER.warning("BOLD-CBF concordance not computed: group design on the CBF participants: %s", exc)
        return None
    contrast = f"{settings.patient_label}vs{settings.control_label}"
    group_results = [r for r in results if r.contrast == contrast and r.member is not None]
    forward, reverse = concordance_tables(
        [r for r in group_results if r.metric not in CBF_MAPS],
        [r for r in group_results if r.metric in CBF_MAPS],
        cbf=cbf,
        design=design,
    )
    path = derivatives.write_tsv(group_dir / CONCORDANCE_FILE, forward)
    derivatives.write_tsv(group_dir / REVERSE_FILE, reverse)
    return path, forward, reverse


FORWARD_COLUMNS = ["map", "cluster", "bold_sign", "voxels", "cbf_coverage", "peak_x", "peak_y", "peak_z",
                   "harvard_oxford", "cbf_effect", "cbf_ci_low", "cbf_ci_high", "cbf_p", "cbf_standardised",
                   "cbf_participants", "cbf_sign", "status"]  # fmt: skip
REVERSE_COLUMNS = ["cbf_map", "cluster", "cbf_sign", "voxels", "peak_x", "peak_y", "peak_z", "harvard_oxford",
                   "bold_counterparts", "status"]  # fmt: skip


def concordance_tables(
    bold: list[MetricResult], cbf_results: list[MetricResult], *, cbf: GroupMaps, design: Design
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(BOLD clusters -> CBF effect in their voxels, CBF clusters -> BOLD maps in their voxels).

    ``bold`` and ``cbf_results`` are group-contrast results with their clusters; ``cbf`` the relative CBF maps of
    the participants of ``design`` (same order), on the BOLD maps' grid.
    """
    forward = pd.DataFrame([row for r in bold for row in _bold_to_cbf(r, cbf, design)], columns=FORWARD_COLUMNS)
    reverse = pd.DataFrame([row for r in cbf_results for row in _cbf_to_bold(r, bold)], columns=REVERSE_COLUMNS)
    return forward, reverse


def _significant_clusters(result: MetricResult) -> pd.DataFrame:
    """Clusters with cluster-extent FWE p < 0.05, or whose peak voxel has max-t FWE p < 0.05 (a small cluster of
    strongly different voxels, which the extent test misses at a few participants per group)."""
    clusters = result.clusters
    if not len(clusters):
        return clusters
    keep = clusters["p_fwe_cluster"] < ALPHA
    if "p_fwe_peak" in clusters.columns:
        keep |= clusters["p_fwe_peak"] < ALPHA
    return clusters[keep]


def _voxels_3d(result: MetricResult, cluster: int) -> np.ndarray:
    mask, _ = result.member.grid
    ijk = np.argwhere(mask)
    return ijk[result.member.cluster_labels == cluster]


def _bold_to_cbf(result: MetricResult, cbf, design) -> list[dict]:
    rows = []
    mask, affine = result.member.grid
    same_grid = mask.shape == cbf.mask.shape and np.allclose(affine, cbf.affine, atol=1e-3)
    index = np.full(cbf.mask.shape, -1)
    index[cbf.mask] = np.arange(int(cbf.mask.sum()))
    for _, cluster in _significant_clusters(result).iterrows():
        ijk = _voxels_3d(result, int(cluster["cluster"]))
        members = index[tuple(ijk.T)] if same_grid else np.array([], dtype=int)
        members = members[members >= 0]
        row = {
            "map": result.metric, "cluster": int(cluster["cluster"]), "bold_sign": cluster["sign"],
            "voxels": len(ijk), "cbf_coverage": round(members.size / max(len(ijk), 1), 3),
            "peak_x": cluster["peak_x"], "peak_y": cluster["peak_y"], "peak_z": cluster["peak_z"],
            "harvard_oxford": cluster["harvard_oxford"], "cbf_participants": len(cbf.participants),
        }  # fmt: skip
        if members.size == 0:
            rows.append({**row, "status": "no CBF coverage" if same_grid else "CBF on another grid"})
            continue
        effect = perfusion.group_effect(perfusion.region_means(cbf.data, members), design.matrix, tested=design.tested)
        sign = 1.0 if cluster["sign"] == "+" else -1.0
        rows.append({
            **row, "cbf_effect": effect.estimate, "cbf_ci_low": effect.ci_low, "cbf_ci_high": effect.ci_high,
            "cbf_p": effect.p, "cbf_standardised": effect.standardised,
            "cbf_sign": "+" if effect.estimate > 0 else "-" if effect.estimate < 0 else "0",
            "status": perfusion.concordance(sign, np.sign(effect.estimate), effect.p, alpha=ALPHA),
        })  # fmt: skip
    return rows


def _cbf_to_bold(result: MetricResult, bold: list[MetricResult]) -> list[dict]:
    rows = []
    for _, cluster in _significant_clusters(result).iterrows():
        ijk = _voxels_3d(result, int(cluster["cluster"]))
        sign = 1.0 if cluster["sign"] == "+" else -1.0
        counterparts, signs = [], []
        for other in bold:
            mask, affine = other.member.grid
            if mask.shape != result.member.grid[0].shape or not np.allclose(affine, result.member.grid[1], atol=1e-3):
                continue
            index = np.full(mask.shape, -1)
            index[mask] = np.arange(int(mask.sum()))
            members = index[tuple(ijk.T)]
            members = members[members >= 0]
            if members.size == 0 or other.member.cluster_labels is None:
                continue
            significant = set(_significant_clusters(other)["cluster"].astype(int))
            hit = [c for c in np.unique(other.member.cluster_labels[members]) if int(c) in significant]
            if hit:
                mean_t = float(other.member.t[members].mean())
                counterparts.append(f"{other.metric} (mean t {mean_t:+.2f})")
                signs.append(np.sign(mean_t))
        if not counterparts:
            status = "no BOLD counterpart"
        elif all(s == sign for s in signs):
            status = "BOLD counterpart, same sign"
        elif all(s == -sign for s in signs):
            status = "BOLD counterpart, opposite sign"
        else:
            status = "BOLD counterparts of both signs"
        rows.append({
            "cbf_map": result.metric, "cluster": int(cluster["cluster"]), "cbf_sign": cluster["sign"],
            "voxels": len(ijk), "peak_x": cluster["peak_x"], "peak_y": cluster["peak_y"], "peak_z": cluster["peak_z"],
            "harvard_oxford": cluster["harvard_oxford"], "bold_counterparts": "; ".join(counterparts),
            "status": status,
        })  # fmt: skip
    return rows


def report_concordance(results, included, *, map_sets, group_dir, settings, layout) -> None:
    """:func:`write_concordance`, and one line saying what it found."""
    from clbp_bidsapp import messages

    written = write_concordance(results, included, map_sets=map_sets, group_dir=group_dir, settings=settings,
                                layout=layout)  # fmt: skip
    if written is None:
        return
    path, forward, reverse = written
    counts = forward["status"].value_counts() if len(forward) else pd.Series(dtype=int)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no significant BOLD cluster"
    lonely = int((reverse["status"] == "no BOLD counterpart").sum()) if len(reverse) else 0
    messages.say(f"BOLD-CBF concordance: {summary}; {len(reverse)} CBF cluster(s), {lonely} without a BOLD "
                 f"counterpart; {path}")  # fmt: skip
