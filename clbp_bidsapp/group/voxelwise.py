"""Voxelwise group statistics: CLBP versus controls, and correlations with clinical scores within patients.

Maps compared (``--group-metrics``): the smoothed z maps of ALFF, fALFF, ReHo, VMHC and weighted degree
centrality; every seed's smoothed Fisher-z FC map (``fcz-<seed>``); and the dual-regression maps of the networks
of interest (``dualreg-<network>``, smoothed here with ``--smoothing-fwhm``). Runs are averaged per participant.

For every map: a GLM with the tested column, intercept, covariates (default age, sex, mean FD) and site as a
factor when it has several levels, on the voxels every participant covers; a Freedman-Lane permutation test
(``--n-permutations``, seeded by ``--random-seed``) with max-t FWE, TFCE FWE (Smith & Nichols 2009; E 0.5,
H 2, 100 steps, 6-connectivity as nilearn), cluster-extent FWE at ``--cluster-forming-p`` (26-connectivity) and
Benjamini-Hochberg FDR. Within patients, each clinical column (``--clinical-columns``) is tested the same way,
voxelwise and in the seed regions. Outputs go to ``group/`` (see docs/outputs.md).

A negative BOLD-derived difference is not evidence of reduced neural activity: BOLD amplitude and oxygen
metabolism can change in opposite directions. The report says so next to every table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sstats

from clbp_bidsapp import registry
from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core import connectivity, exchangeability, multiplicity, sequential
from clbp_bidsapp.core import tail as gpd_tail
from clbp_bidsapp.core.stats import (
    PERMUTATIONS_PER_CHUNK,
    Design,
    DesignError,
    permutation_test,
    regression_design,
)
from clbp_bidsapp.errors import ExitCode, InputError
from clbp_bidsapp.group import budget, fanout
from clbp_bidsapp.group.design import group_design, permutation_blocks
from clbp_bidsapp.group.inclusion import Outcome
from clbp_bidsapp.group.maps import GroupMaps, find_maps, load_group_maps
from clbp_bidsapp.io import atlases, derivatives, images

LOGGER = logging.getLogger("clbp_bidsapp.group")
ALPHA = 0.05
MIN_CLINICAL_DOF = 4  # residual degrees of freedom below which a within-patient correlation is not attempted
# which standardised map each local metric is compared on, and how the report describes it (from the registry)
MAP_QUERIES = {metric.name: (metric.name, metric.group_desc) for metric in registry.LOCAL_METRICS}
LOCAL_DESCRIPTIONS = {metric.name: metric.group_description for metric in registry.LOCAL_METRICS}


@dataclass(frozen=True)
class MapSet:
    """One kind of participant map to analyse: its file-name label and every participant's run files."""

    label: str  # alff, fcz-pcc, dualreg-DefaultMode, ...
    description: str
    maps: dict[str, list[Path]]
    volume: int | None = None  # volume of 4-D files (dual-regression component)
    smoothing_fwhm: float = 0.0  # smoothing applied when loading (dual-regression maps)
    excluded: dict[str, str] = field(default_factory=dict)  # participant -> why not used (e.g. CBF quality)
    covariates: pd.DataFrame | None = None  # participant_id + covariates of this map only (e.g. global CBF)
    table: pd.DataFrame | None = None  # the participants' rows when not the BOLD design's (CBF-only participants)
    interpretation: str = "A negative BOLD-derived difference is not evidence of reduced neural activity."


@dataclass(frozen=True)
class FamilyMember:
    """What the across-family FWE needs of one map's test: its z-transformed statistics and max-statistic null."""

    z: np.ndarray  # (voxels,) |t| as a normal deviate (core.multiplicity.t_to_z)
    null_max_z: np.ndarray  # (n_perm,) the maximum |t| of each permutation, as z
    participants: tuple[str, ...]  # rows of the design, in the order the permutations rearrange
    p_floor: float
    t: np.ndarray
    cluster_labels: np.ndarray | None
    grid: tuple[np.ndarray, np.ndarray]
    prefix: str


@dataclass(frozen=True)
class MetricResult:
    metric: str
    contrast: str
    n_participants: int
    n_fwe_voxels: int
    n_tfce_voxels: int | None
    clusters: pd.DataFrame
    roi_table: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)
    family: str = "exploratory"  # primary: the group contrast of a --primary-maps map
    member: FamilyMember | None = None
    n_family_fwe_voxels: int | None = None


def model_columns(design_table: pd.DataFrame, settings: GroupSettings) -> tuple[list[str], list[str], list[str]]:
    """Covariates and factors that the table supports, and notes about those left out."""
    notes, covariates = [], []
    for name in settings.covariates:
        if name not in design_table.columns:
            notes.append(f"covariate {name} is not in participants.tsv or the QC tables; not modelled")
        elif design_table[name].isna().all():
            notes.append(f"covariate {name} has no values; not modelled")
        else:
            covariates.append(name)
    factors = []
    if "site" in design_table.columns and design_table["site"].nunique() > 1:
        factors.append("site")
    return covariates, factors, notes


def collect_map_sets(
    layout, *, settings: GroupSettings, participants: list[str], smoothing_fwhm: float
) -> list[MapSet]:
    """The participant maps of every ``settings.metrics`` entry that the participant level wrote."""
    sets = []
    for metric in settings.metrics:
        if metric in MAP_QUERIES:
            stat, desc = MAP_QUERIES[metric]
            maps = find_maps(layout, stat=stat, desc=desc, participants=participants)
            if maps:
                sets.append(MapSet(metric, LOCAL_DESCRIPTIONS[metric], maps))
            else:
                LOGGER.warning("no %s maps found; skipped (was the %s stage skipped?)", metric, metric)
        elif metric == "fcz":
            descs = layout.get(return_type="id", target="desc", stat="fcz", suffix="boldmap", extension=".nii.gz")
            seeds = sorted(d.removesuffix("Smoothed") for d in descs if d.endswith("Smoothed"))
            for seed in seeds:
                maps = find_maps(layout, stat="fcz", desc=f"{seed}Smoothed", participants=participants)
                sets.append(MapSet(f"fcz-{seed}", f"seed-based FC of {seed} (Fisher z, smoothed)", maps))
            if not seeds:
                LOGGER.warning("no seed FC maps found; skipped (was the seedfc stage skipped?)")
        elif metric == "dualreg":
            sets += _dual_regression_sets(layout, settings=settings, participants=participants, fwhm=smoothing_fwhm)
    return sets


def _dual_regression_sets(layout, *, settings: GroupSettings, participants: list[str], fwhm: float) -> list[MapSet]:
    files = {}
    for label in participants:
        found = layout.get(subject=label, desc="dualreg", suffix="components", extension=".nii.gz",
                           return_type="filename")  # fmt: skip
        if found:
            files[label] = sorted(Path(f) for f in found)
    if not files:
        LOGGER.warning("no dual-regression maps found; skipped (was the dualreg stage skipped?)")
        return []
    first = next(iter(files.values()))[0]
    sidecar = Path(str(first).removesuffix(".nii.gz") + ".json")
    names = json.loads(sidecar.read_text()).get("ComponentNames", []) if sidecar.is_file() else []
    sets = []
    for network in settings.networks:
        if network not in names:
            LOGGER.warning("network %s is not among the dual-regression components (%s)", network, ", ".join(names))
            continue
        description = f"dual-regression map of the {network} network (variance-normalised, smoothed {fwhm:g} mm)"
        sets.append(MapSet(f"dualreg-{network}", description, files, volume=names.index(network),
                           smoothing_fwhm=fwhm))  # fmt: skip
    return sets


def run_voxelwise(
    included: pd.DataFrame,
    *,
    output_dir: Path,
    settings: GroupSettings,
    seed: int,
    smoothing_fwhm: float = 6.0,
    extra_map_sets: Sequence[MapSet] = (),
    layout=None,
    outcome: Outcome | None = None,
    fan: fanout.Executor | None = None,
) -> list[MetricResult]:
    """Compare groups, and correlate with clinical columns within patients, on every available map.

    ``extra_map_sets`` are analysed too (e.g. the group-ICA dual-regression maps, which live under ``group/``
    where the derivatives layout does not look). ``layout`` is the output layout to read (default: every file
    of ``output_dir``; the group runner passes only the complete, selected participant outputs). ``outcome``
    receives, per map, the participants left out of it (no map, an invalid seed, no valid voxel) and the maps
    not analysed (fewer than ``settings.min_per_group`` per group, or no estimable design), which the others
    survive; without it, those raise :class:`InputError` as before. ``fan`` runs the permutation tests (default:
    here, one after the other; ``group/fanout.py``); the outputs are the same whatever it is.
    """
    from clbp_bidsapp.io.bids import build_output_layout

    layout = build_output_layout(output_dir) if layout is None else layout
    covariates, factors, notes = model_columns(included, settings)
    for note in notes:
        LOGGER.warning(note)
    clinical = clinical_columns(included, settings)
    fan = fanout.Serial() if fan is None else fan
    pending = []  # per map x contrast: gives its MetricResult once its permutations are done
    folder = output_dir / "group"
    map_sets = collect_map_sets(
        layout, settings=settings, participants=list(included["participant_id"]), smoothing_fwhm=smoothing_fwhm
    )
    if outcome is not None:
        found = {map_set.label.split("-")[0] for map_set in map_sets}
        for metric in settings.metrics:
            if metric not in found:
                outcome.not_run(metric, f"no {metric} maps among the included participants' outputs")
    for map_set in [*map_sets, *extra_map_sets]:
        maps, invalid = valid_maps({pid: p for pid, p in map_set.maps.items() if pid not in map_set.excluded})
        rows = map_set.table if map_set.table is not None else included
        table = rows[rows["participant_id"].isin(maps)].reset_index(drop=True)
        left_out = {pid: f"no {map_set.label} map" for pid in rows["participant_id"] if pid not in map_set.maps}
        left_out |= invalid | {pid: why for pid, why in map_set.excluded.items() if pid in map_set.maps}
        extra = [] if map_set.covariates is None else [c for c in map_set.covariates if c != "participant_id"]
        if extra:
            table = table.merge(map_set.covariates, on="participant_id", how="left")
        try:
            group_maps = load_group_maps(
                {pid: maps[pid] for pid in table["participant_id"]},
                metric=map_set.label,
                volume=map_set.volume,
                smoothing_fwhm=map_set.smoothing_fwhm,
            )
        except InputError as exc:
            if outcome is None:
                raise
            outcome.exclude(left_out, map_set.label)
            outcome.not_run(map_set.label, str(exc))
            continue
        for pid, why in group_maps.dropped.items():
            LOGGER.warning("%s: sub-%s left out (%s)", map_set.label, pid, why)
        left_out |= group_maps.dropped
        table = table[table["participant_id"].isin(group_maps.participants)].reset_index(drop=True)
        if outcome is not None:
            outcome.exclude(left_out, map_set.label)
            if not outcome.enough(map_set.label, table):
                continue
        try:
            design = group_design(table, settings, covariates=[*covariates, *extra], factors=factors)
        except DesignError as exc:
            if outcome is None:
                message = f"group design for {map_set.label}: {exc}"
                raise InputError(message, exit_code=ExitCode.NOTHING_PROCESSED) from None
            outcome.not_run(map_set.label, f"group design: {exc}")
            continue
        contrast = f"{settings.patient_label}vs{settings.control_label}"
        tested = (
            f"two-sided GLM t of {settings.patient_label} minus {settings.control_label} on the participants' "
            f"{map_set.description}, runs averaged"
        )
        family = "primary" if map_set.label in settings.primary_maps else "exploratory"
        pending.append(_submit_test(map_set, group_maps, table, design, contrast, tested, folder,
                              settings=settings, seed=seed, notes=notes, fan=fan, family=family))  # fmt: skip
        if outcome is not None:
            outcome.ran(map_set.label)
        if budget.clinical_for(settings, map_set.label):
            pending += _clinical(map_set, group_maps, table, clinical, folder, settings=settings, seed=seed, fan=fan)
    results = [finish() for finish in pending]
    return family_fwe(results, folder, settings=settings)


def family_fwe(results: list[MetricResult], folder: Path, *, settings: GroupSettings) -> list[MetricResult]:
    """FWE across the primary family (max over its maps of the z-transformed max-t, per permutation).

    Writes each primary map's ``stat-logp_desc-familyfwe`` and ``stat-t_desc-familyfwe05`` maps, the family p of
    every cluster's peak (``p_fwe_peak_family``) and a ``Family`` entry in its sidecar, and ``desc-family_table.tsv``
    listing every map x contrast with its family (primary/exploratory) and both FWE counts.
    """
    primary = [r for r in results if r.family == "primary" and r.member is not None]
    primary_ids = {id(r) for r in primary}
    out = []
    if primary:
        null = multiplicity.family_null([r.member.null_max_z for r in primary])
        floor = max(r.member.p_floor for r in primary)
        reference = primary[0].member.participants
        shared = all(r.member.participants == reference for r in primary)
        fits = {}
    for result in results:
        if id(result) not in primary_ids:
            out.append(result)
            continue
        member = result.member
        if settings.permutation_tail == "gpd":
            p, fit = gpd_tail.tail_p(member.z, null, p_floor=floor)
            fits[result.metric] = fit.threshold is not None
        else:
            p = np.maximum(gpd_tail.empirical_p(member.z, null), floor)
        sign = np.sign(member.t)
        files = dict(result.files)
        for name, values in {
            "stat-logp_desc-familyfwe_statmap": -np.log10(np.clip(p, floor, 1.0)) * sign,
            "stat-t_desc-familyfwe05_statmap": np.where(p < ALPHA, member.t, 0.0),
        }.items():
            path = folder / f"{member.prefix}_{name}.nii.gz"
            with derivatives.atomic_path(path) as tmp:
                images.save_map(tmp, values, member.grid)
            files[name] = path
        clusters = result.clusters.copy()
        if len(clusters) and member.cluster_labels is not None:
            clusters["p_fwe_peak_family"] = [float(p[member.cluster_labels == c].min()) for c in clusters["cluster"]]
            files["clusters"] = derivatives.write_tsv(folder / f"{member.prefix}_desc-clusters_table.tsv", clusters)
        sidecar = folder / f"{member.prefix}_stat-t_statmap.json"
        meta = json.loads(sidecar.read_text())
        meta["Family"] = {
            "Name": "primary",
            "Maps": [f"{r.metric} ({r.contrast})" for r in primary],
            "Statistic": "maximum over the family's maps of |t| converted to z with each map's degrees of freedom",
            "SameParticipants": shared,
            "Note": "p of stat-logp_desc-fwe is within this map; stat-logp_desc-familyfwe is across the family"
            + ("" if shared else "; the maps have different participants, so their permutations are not paired "
               "and the family p is conservative (maps treated as independent)"),
        }  # fmt: skip
        derivatives.write_json(sidecar, meta)
        out.append(dataclasses.replace(result, clusters=clusters, files=files,
                                       n_family_fwe_voxels=int((p < ALPHA).sum())))  # fmt: skip
    if out:
        table = pd.DataFrame(
            [
                {
                    "map": r.metric,
                    "contrast": r.contrast,
                    "family": r.family,
                    "participants": r.n_participants,
                    "voxels_fwe_within_map": r.n_fwe_voxels,
                    "voxels_fwe_family": r.n_family_fwe_voxels if r.family == "primary" else np.nan,
                }
                for r in out
            ]
        )
        derivatives.write_tsv(folder / "desc-family_table.tsv", table)
    missing = sorted(set(settings.primary_maps) - {r.metric for r in primary})
    if missing:
        LOGGER.warning("--primary-maps: %s not analysed in this run; the primary family is %s", ", ".join(missing),
                       ", ".join(r.metric for r in primary) or "empty")  # fmt: skip
    return out


def valid_maps(maps: dict[str, list[Path]]) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """The maps whose sidecar does not mark them invalid (``"Seed": {"Valid": false}``), and who has none left.

    A participant with several runs keeps the valid runs; one whose every run is invalid is left out, with the
    seed's coverage by voxels with signal as the reason.
    """
    kept: dict[str, list[Path]] = {}
    dropped: dict[str, str] = {}
    for pid, paths in maps.items():
        good, why = [], []
        for path in paths:
            seed = _sidecar(path).get("Seed")
            if isinstance(seed, dict) and seed.get("Valid") is False:
                why.append(
                    f"seed {seed.get('Name', '?')} invalid in {path.name} (coverage by in-mask voxels with signal "
                    f"{seed.get('Coverage', 'n/a')})"
                )
            else:
                good.append(path)
        if good:
            kept[pid] = good
        else:
            dropped[pid] = "; ".join(why)
    return kept, dropped


def _sidecar(path: Path) -> dict:
    sidecar = Path(str(path).removesuffix(".nii.gz") + ".json")
    try:
        data = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def clinical_columns(included: pd.DataFrame, settings: GroupSettings) -> list[str]:
    """Clinical columns present in the table with numeric values for patients."""
    patients = included[included[settings.group_column].astype(str) == settings.patient_label]
    present = []
    for name in settings.clinical_columns:
        if name not in included.columns:
            LOGGER.info("clinical column %s is not in participants.tsv; not tested", name)
            continue
        if pd.to_numeric(patients[name], errors="coerce").notna().sum() < 4:
            LOGGER.warning("clinical column %s has fewer than 4 numeric patient values; not tested", name)
            continue
        present.append(name)
    return present


def _clinical(map_set, group_maps: GroupMaps, table, columns, folder, *, settings, seed, fan):
    """Within patients, test each clinical column voxelwise and in the seed regions (pending MetricResults)."""
    results = []
    is_patient = (table[settings.group_column].astype(str) == settings.patient_label).to_numpy()
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        use = is_patient & values.notna().to_numpy()
        sub_table = table[use].reset_index(drop=True)
        sub_maps = GroupMaps(
            metric=group_maps.metric, participants=list(sub_table["participant_id"]), data=group_maps.data[use],
            mask=group_maps.mask, affine=group_maps.affine,
        )  # fmt: skip
        covariates, factors, notes = model_columns(sub_table, settings)
        try:
            design = regression_design(sub_table, tested=column, covariates=covariates, factors=factors)
        except DesignError as exc:
            LOGGER.warning("%s ~ %s within %s: not tested (%s)", map_set.label, column, settings.patient_label, exc)
            continue
        n, p = design.matrix.shape
        if n - p < MIN_CLINICAL_DOF:
            LOGGER.warning(
                "%s ~ %s: not tested: %d patients for %d regressors (%s) leave fewer than %d degrees of freedom; "
                "use fewer --covariates or more patients", map_set.label, column, n, p, ", ".join(design.names),
                MIN_CLINICAL_DOF,
            )  # fmt: skip
            continue
        tested = (
            f"two-sided GLM t of {column} within {settings.patient_label} on the participants' "
            f"{map_set.description}, runs averaged (positive: the map increases with {column})"
        )
        finish = _submit_test(map_set, sub_maps, sub_table, design, _safe(column), tested, folder,
                              settings=settings, seed=seed, notes=notes, fan=fan)  # fmt: skip
        roi = roi_statistics(sub_maps, design, settings=settings, seed=seed,
                             blocks=permutation_blocks(sub_table, settings)[1])  # fmt: skip
        prefix = f"{map_set.label}_contrast-{_safe(column)}"
        files = {"roi": derivatives.write_tsv(folder / f"{prefix}_desc-roi_stats.tsv", roi)}
        names, values = roi_values(sub_maps)
        per_participant = pd.DataFrame(values, columns=names)
        per_participant.insert(0, column, sub_table[column].to_numpy())
        per_participant.insert(0, "participant_id", sub_table["participant_id"].to_numpy())
        files["roi_values"] = derivatives.write_tsv(folder / f"{prefix}_desc-roivalues_stats.tsv", per_participant)
        results.append(functools.partial(_with_roi, finish, roi, files))
    return results


def _with_roi(finish, roi: pd.DataFrame, files: dict[str, Path]) -> MetricResult:
    result = finish()
    return dataclasses.replace(result, roi_table=roi, files={**result.files, **files})


def roi_values(group_maps: GroupMaps) -> tuple[list[str], np.ndarray]:
    """Names of the default seed regions inside the group mask and each participant's mean map value in them."""
    seeds = atlases.select_seeds(atlases.default_seeds())
    regions = atlases.seed_regions(seeds, group_maps.mask, group_maps.affine)
    usable = regions.in_mask_voxels > 0
    values = connectivity.region_means(group_maps.data, regions.membership)  # (participants, regions)
    return list(np.array(regions.labels)[usable]), values[:, usable]


def roi_statistics(
    group_maps: GroupMaps, design: Design, *, settings: GroupSettings, seed: int, blocks: np.ndarray | None = None
) -> pd.DataFrame:
    """The tested column against each seed region's mean map value: t, partial r, permutation p, FWE, FDR.

    Regions are the library's default seeds on the group grid; FWE is the max-t over regions; ``blocks``: the
    exchangeability blocks of the rows (:func:`group.design.permutation_blocks`).
    """
    names, values = roi_values(group_maps)
    result = permutation_test(values, design, n_permutations=settings.n_permutations, seed=seed, blocks=blocks)
    dof = design.matrix.shape[0] - design.matrix.shape[1]
    table = pd.DataFrame({
        "region": names,
        "t": result.t,
        "partial_r": result.t / np.sqrt(result.t**2 + dof),
        "p_uncorrected": result.p_uncorrected,
        "p_fwe": result.p_fwe,
        "q_fdr": result.q_fdr,
    })  # fmt: skip
    return table


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


def _infer(map_set, group_maps, table, design: Design, contrast, tested, folder: Path, *, settings, seed, notes):
    """Permutation inference on one map set and one design, here; write every output map, table and sidecar."""
    return _submit_test(map_set, group_maps, table, design, contrast, tested, folder, settings=settings, seed=seed,
                        notes=notes, fan=fanout.Serial())()  # fmt: skip


def _submit_test(map_set, group_maps, table, design: Design, contrast, tested, folder, *, settings, seed, notes, fan,
                 family="exploratory"):  # fmt: skip
    """Submit the permutation test of one map set and design to ``fan``; return what writes its outputs."""
    n, p = design.matrix.shape
    cluster_t = float(sstats.t.isf(settings.cluster_forming_p / 2, n - p))
    block_column, blocks = permutation_blocks(table, settings)
    pending = fan.submit(
        group_maps.data,
        design,
        label=f"{map_set.label} ({contrast}) permutations",
        n_permutations=settings.n_permutations,
        seed=seed,
        mask=group_maps.mask,
        cluster_threshold=cluster_t,
        tfce=budget.tfce_for(settings, map_set.label, contrast),
        tail=settings.permutation_tail,
        sequential_h=settings.sequential_h,
        max_permutations=settings.uncorrected_permutations,
        blocks=blocks,
    )
    grid_only = dataclasses.replace(group_maps, data=group_maps.data[:, :0])  # not every map's data until the end
    return functools.partial(_write_outputs, pending, map_set, grid_only, table, design, contrast, tested, folder,
                             settings=settings, seed=seed, notes=notes, cluster_t=cluster_t, family=family,
                             block_column=block_column, blocks=blocks)  # fmt: skip


def _write_outputs(pending, map_set, group_maps, table, design: Design, contrast, tested, folder: Path, *, settings,
                   seed, notes, cluster_t, family, block_column, blocks) -> MetricResult:  # fmt: skip
    """Every output map, table and sidecar of one map set and design, once its permutations are done."""
    result = pending()
    n, p = design.matrix.shape
    grid = (group_maps.mask, group_maps.affine)
    prefix = f"{map_set.label}_contrast-{contrast}"
    floor = result.p_floor

    def neg_log10(p):
        return -np.log10(np.clip(p, floor, 1.0))

    sign = np.sign(result.t)
    cluster_p_map = np.ones_like(result.t)
    if result.cluster_labels is not None and result.cluster_p_fwe is not None:
        has = result.cluster_labels > 0
        cluster_p_map[has] = result.cluster_p_fwe[result.cluster_labels[has] - 1]
    outputs = {
        "stat-t_statmap": result.t,
        "stat-logp_desc-uncorrected_statmap": neg_log10(result.p_uncorrected) * sign,
        "stat-logp_desc-fwe_statmap": neg_log10(result.p_fwe) * sign,
        "stat-logq_desc-fdr_statmap": neg_log10(result.q_fdr) * sign,
        "stat-logp_desc-clusterfwe_statmap": neg_log10(cluster_p_map) * sign,
        "stat-t_desc-fwe05_statmap": np.where(result.p_fwe < ALPHA, result.t, 0.0),
    }
    if result.p_tfce_fwe is not None:
        outputs["stat-tfce_statmap"] = result.tfce
        outputs["stat-logp_desc-tfcefwe_statmap"] = neg_log10(result.p_tfce_fwe) * sign
        outputs["stat-t_desc-tfcefwe05_statmap"] = np.where(result.p_tfce_fwe < ALPHA, result.t, 0.0)
    files = {}
    for name, values in outputs.items():
        path = folder / f"{prefix}_{name}.nii.gz"
        with derivatives.atomic_path(path) as tmp:
            images.save_map(tmp, values, grid)
        files[name] = path
    clusters = cluster_table(result, group_maps.mask, group_maps.affine)
    files["clusters"] = derivatives.write_tsv(folder / f"{prefix}_desc-clusters_table.tsv", clusters)
    design_table = pd.DataFrame(design.matrix, columns=design.names)
    design_table.insert(0, "participant_id", table["participant_id"].to_numpy())
    files["design"] = derivatives.write_tsv(folder / f"{prefix}_desc-design_design.tsv", design_table)
    derivatives.write_json(
        folder / f"{prefix}_stat-t_statmap.json",
        {
            "Description": tested,
            "Map": map_set.label,
            "Regressors": design.names,
            "Tested": design.names[design.tested],
            "Participants": int(n),
            "ParticipantsLeftOut": group_maps.dropped,
            "Permutations": settings.n_permutations,
            "PermutationStream": f"chunks of {PERMUTATIONS_PER_CHUNK} orderings from numpy default_rng([RandomSeed, "
            "chunk]), the first ordering the identity; the same for any --nprocs or SLURM fan-out",
            "PermutationScheme": "Freedman-Lane (residuals of the nuisance model permuted)",
            "PermutationBlocks": exchangeability.describe(block_column, blocks),
            "FWEPValues": tail_description(result),
            "UncorrectedPValues": sequential.describe(result.sequential_h, result.uncorrected_permutations),
            "ClusterFormingP": settings.cluster_forming_p,
            "ClusterFormingT": cluster_t,
            "ClusterConnectivity": 26,
            "TFCE": {"E": 0.5, "H": 2.0, "Steps": 100, "Connectivity": 6} if result.tfce is not None else None,
            "GroupMaskVoxels": int(group_maps.mask.sum()),
            "RandomSeed": seed,
            "Notes": notes,
            "Interpretation": map_set.interpretation,
        },
    )
    n_tfce = int((result.p_tfce_fwe < ALPHA).sum()) if result.p_tfce_fwe is not None else None
    member = FamilyMember(
        z=multiplicity.t_to_z(result.t, n - p),
        null_max_z=multiplicity.t_to_z(result.max_null, n - p),
        participants=tuple(table["participant_id"]),
        p_floor=result.p_floor,
        t=result.t,
        cluster_labels=result.cluster_labels,
        grid=grid,
        prefix=prefix,
    )
    return MetricResult(map_set.label, contrast, int(n), int((result.p_fwe < ALPHA).sum()), n_tfce, clusters,
                        None, files, family=family, member=member)  # fmt: skip


def tail_description(result) -> dict:
    """How the FWE p-values were obtained: empirical, or the GPD tail fit of each max-statistic null."""
    if result.tail_fits is None:
        return {"Method": "empirical (fraction of permutations whose maximum reaches the value)",
                "MinimumP": result.p_floor}  # fmt: skip
    fits = {
        name: {
            "Fitted": fit.threshold is not None,
            "Threshold": fit.threshold,
            "Shape": fit.shape,
            "Scale": fit.scale,
            "ExceedanceFraction": fit.exceedance_fraction,
            "AndersonDarlingP": fit.anderson_darling_p,
        }
        for name, fit in result.tail_fits.items()
    }
    return {
        "Method": "generalised Pareto tail approximation where the empirical p < 0.1 and the fit passes an "
        "Anderson-Darling test at 0.05 (Winkler et al. 2016); empirical otherwise",
        "MinimumP": result.p_floor,
        "TailFits": fits,
    }


def cluster_table(result, mask: np.ndarray, affine: np.ndarray) -> pd.DataFrame:
    """One row per cluster: size, peak t and MNI coordinate, cluster FWE p, atlas labels of the peak."""
    columns = ["cluster", "sign", "voxels", "volume_mm3", "peak_t", "peak_x", "peak_y", "peak_z", "p_fwe_cluster",
               "p_fwe_peak", "p_tfce_fwe_peak", "harvard_oxford", "aal", "harvard_oxford_overlap"]  # fmt: skip
    if result.cluster_labels is None or result.cluster_p_fwe is None or not result.cluster_labels.any():
        return pd.DataFrame(columns=columns)
    ijk = np.argwhere(mask)
    voxel_volume = float(abs(np.linalg.det(affine[:3, :3])))
    overlap = atlases.region_overlap(mask, affine)
    rows = []
    for label in range(1, int(result.cluster_labels.max()) + 1):
        members = np.flatnonzero(result.cluster_labels == label)
        if members.size == 0:
            continue
        peak = members[np.argmax(np.abs(result.t[members]))]
        xyz = affine[:3, :3] @ ijk[peak] + affine[:3, 3]
        rows.append(
            {
                "cluster": label,
                "sign": "+" if result.t[peak] > 0 else "-",
                "voxels": int(members.size),
                "volume_mm3": round(members.size * voxel_volume, 1),
                "peak_t": float(result.t[peak]),
                "peak_x": float(xyz[0]),
                "peak_y": float(xyz[1]),
                "peak_z": float(xyz[2]),
                "p_fwe_cluster": float(result.cluster_p_fwe[label - 1]),
                "p_fwe_peak": float(result.p_fwe[peak]),
                "p_tfce_fwe_peak": float(result.p_tfce_fwe[peak]) if result.p_tfce_fwe is not None else np.nan,
                "harvard_oxford": atlases.label_at(xyz, "harvard_oxford"),
                "aal": atlases.label_at(xyz, "aal"),
                "harvard_oxford_overlap": overlap(members),
            }
        )
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["p_fwe_cluster", "voxels"], ascending=[True, False]).reset_index(drop=True)
