"""Machine learning at the group level: CLBP-versus-control classification and pain prediction.

Feature sets, assembled from the participant derivatives (found with pybids, runs averaged):

- ``roi``: mean of each local map (ALFF, fALFF, ReHo, weighted DC; the standardised maps the voxelwise GLM uses)
  per region of ``--ml-atlas`` (default Harvard-Oxford), on the voxels every participant covers;
- ``edges``: upper triangle of each connectome atlas's runs-averaged Fisher-z Pearson matrix (regions covered in
  every participant);
- ``graph``: area under the density curve of each global graph measure, every atlas;
- ``dualreg``: strength of each dual-regression network: the participant's map averaged over the reference
  network's template (Seitzman ROIs with a Gaussian profile), weighted by the template;
- ``combined``: all of the above side by side, for the participants who have them all.

Each set is classified (patients = 1) with every model of ``settings.models`` by nested repeated k-fold
(:func:`clbp_bidsapp.core.ml.nested_cv`), and with leave-one-site-out when there are at least two sites; pain
(``settings.clinical_target``) is predicted within patients with ``settings.regression_models``. Covariates are the
group design's (age, sex, mean FD; categorical ones one-hot coded); site enters through ComBat inside the folds.

The headline is pre-declared: ``settings.primary_model`` on ``settings.primary_feature_set`` (and the first
regression model on that set). With ``permutation_scope = "primary"`` only those get a permutation p; with
``"shown"`` every k-fold model x feature set does, and each p is taken against the maximum score over all of them
in each permutation (max-statistic, :func:`core.ml.max_statistic_p`), so it holds for "the best of" them. Labels
are permuted within the exchangeability blocks of ``--permute-within`` (:func:`group.design.permutation_blocks`).

Outputs in ``group/`` (see docs/machine-learning.md): ``desc-ml_summary.json`` (every feature set x model: the
mean scores under their usual names, CIs, permutation ``p_value``), ``desc-ml_scores.tsv`` (per fold),
``desc-ml_repeats.tsv``, ``desc-ml_null.tsv``, ``desc-ml_roc.tsv``, ``desc-ml_features.tsv`` (most informative
regions/edges) and ``features-roi_model-<primary>_desc-mlweights_boldmap.nii.gz`` (ROI weights, one volume per metric).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clbp_bidsapp import registry
from clbp_bidsapp.config import GroupSettings, MLSettings
from clbp_bidsapp.core import connectivity, exchangeability
from clbp_bidsapp.core import ml as core_ml
from clbp_bidsapp.core.nbs import edge_indices
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.group.connectomes import files_by_atlas, fisher_z_matrix, global_auc, usable_regions
from clbp_bidsapp.group.design import permutation_blocks
from clbp_bidsapp.group.maps import find_maps, load_group_maps
from clbp_bidsapp.group.voxelwise import MAP_QUERIES, model_columns
from clbp_bidsapp.io import atlases, derivatives, images

LOGGER = logging.getLogger("clbp_bidsapp.group")
ROI_METRICS = registry.ML_ROI_METRICS
MIN_PER_CLASS = 4  # fewer participants in a class: classification not attempted
MIN_REGRESSION = 8  # fewer patients with the clinical target: regression not attempted


@dataclass
class FeatureSet:
    """One feature matrix: rows = participants (sorted labels), columns = named features."""

    name: str
    description: str
    participants: list[str]
    values: np.ndarray  # (participants, features)
    columns: pd.DataFrame  # one row per feature: feature, kind, region_a, region_b, metric, atlas
    roi: dict | None = None  # for ROI sets: metric -> (mask, affine, membership rows per region, regions)


@dataclass(frozen=True)
class MLResult:
    feature_set: str
    model: str
    task: str  # classification / regression
    scheme: str  # kfold / loso
    summary: dict
    notes: list[str] = field(default_factory=list)


# -- feature assembly ----------------------------------------------------------------------------------------------


def roi_features(layout, participants: list[str], *, atlas: str) -> FeatureSet | None:
    """Mean of each local map per atlas region (regions with no voxel in the common mask are left out)."""
    blocks, columns, roi_info, kept = [], [], {}, None
    for metric in ROI_METRICS:
        stat, desc = MAP_QUERIES[metric]
        maps = find_maps(layout, stat=stat, desc=desc, participants=participants)
        if not maps:
            continue
        group = load_group_maps(maps, metric=metric)
        regions = atlases.atlas_regions(atlas, group.mask, group.affine)
        counts = regions.in_mask_voxels
        use = np.flatnonzero(counts > 0)
        if use.size == 0:
            continue
        membership = regions.membership[use]
        means = connectivity.region_means(group.data, membership)  # (participants, regions)
        blocks.append(pd.DataFrame(means, index=group.participants))
        columns += [
            {
                "feature": f"{metric}:{regions.labels[i]}",
                "kind": "roi",
                "metric": metric,
                "atlas": atlas,
                "region_a": regions.labels[i],
                "region_b": "n/a",
            }
            for i in use
        ]
        roi_info[metric] = {"mask": group.mask, "affine": group.affine, "membership": membership}
    if not blocks:
        return None
    kept = sorted(set.intersection(*[set(b.index) for b in blocks]))
    values = np.hstack([b.loc[kept].to_numpy() for b in blocks])
    return FeatureSet(
        "roi",
        f"mean {', '.join(registry.local_metric(m).label for m in roi_info)} (standardised maps) per {atlas} region",
        kept,
        values,
        pd.DataFrame(columns),
        roi=roi_info,
    )


def edge_features(layout, participants: list[str]) -> list[FeatureSet]:
    """Fisher-z edges (upper triangle) of every connectome atlas, regions covered in everyone."""
    sets = []
    files = files_by_atlas(layout, set(participants), stat="pearsoncorrelation", suffix="relmat")
    for atlas in sorted(files):
        labels = sorted(files[atlas])
        matrices = {label: fisher_z_matrix(files[atlas][label]) for label in labels}
        regions, _ = usable_regions(matrices)
        if len(regions) < 3:
            continue
        rows, cols = edge_indices(len(regions))
        values = np.stack([matrices[label].loc[regions, regions].to_numpy()[rows, cols] for label in labels])
        names = np.asarray(regions)
        columns = pd.DataFrame(
            {
                "feature": [f"{atlas}:{a}--{b}" for a, b in zip(names[rows], names[cols], strict=True)],
                "kind": "edge",
                "metric": "fisherz",
                "atlas": atlas,
                "region_a": names[rows],
                "region_b": names[cols],
            }
        )
        name = "edges" if len(files) == 1 else f"edges{atlas}"
        sets.append(
            FeatureSet(
                name, f"Fisher-z edges of the {atlas} connectome ({len(regions)} regions)", labels, values, columns
            )
        )
    return sets


def graph_features(layout, participants: list[str]) -> FeatureSet | None:
    """Global graph-measure AUCs of every atlas (measures n/a in anyone left out)."""
    files = files_by_atlas(layout, set(participants), stat="graph", suffix="measures")
    frames = []
    for atlas in sorted(files):
        table = pd.concat({label: global_auc(paths) for label, paths in sorted(files[atlas].items())}, axis=1).T
        table.columns = [f"{atlas}:{c}" for c in table.columns]
        frames.append(table)
    if not frames:
        return None
    data = pd.concat(frames, axis=1, join="inner").astype(np.float64)
    data = data.loc[:, np.isfinite(data.to_numpy()).all(axis=0)].sort_index()
    if data.shape[1] == 0:
        return None
    columns = pd.DataFrame(
        {
            "feature": data.columns,
            "kind": "graph",
            "metric": [c.split(":", 1)[1] for c in data.columns],
            "atlas": [c.split(":", 1)[0] for c in data.columns],
            "region_a": "n/a",
            "region_b": "n/a",
        }
    )
    return FeatureSet(
        "graph",
        "area under the density curve of the global graph measures",
        list(data.index.astype(str)),
        data.to_numpy(),
        columns,
    )


def dualreg_features(layout, participants: list[str]) -> FeatureSet | None:
    """Template-weighted mean of each dual-regression network map (Seitzman networks only)."""
    import json

    files = {}
    for label in participants:
        found = layout.get(
            subject=label, desc="dualreg", suffix="components", extension=".nii.gz", return_type="filename"
        )
        if found:
            files[label] = sorted(Path(f) for f in found)
    if not files:
        return None
    sidecar = Path(str(next(iter(files.values()))[0]).removesuffix(".nii.gz") + ".json")
    names = json.loads(sidecar.read_text()).get("ComponentNames", []) if sidecar.is_file() else []
    known = [n for n in names if n in atlases.REFERENCE_NETWORKS]
    if not known:
        return None
    rows, labels = [], []
    template_cache: dict = {}
    for label in sorted(files):
        per_run = []
        for path in files[label]:
            values = []
            for network in known:
                data, affine = images.load_volume(path, index=names.index(network))
                mask = np.isfinite(data) & (data != 0)
                key = (mask.tobytes(), affine.tobytes())
                if key not in template_cache:
                    template_cache.clear()
                    template_cache[key] = atlases.network_templates(mask, affine, known)[1]
                weights = template_cache[key][known.index(network)]
                total = weights.sum()
                values.append(float(weights @ data[mask] / total) if total > 0 else np.nan)
            per_run.append(values)
        rows.append(np.mean(per_run, axis=0))
        labels.append(label)
    values = np.array(rows)
    ok = np.isfinite(values).all(axis=0)
    columns = pd.DataFrame(
        {
            "feature": [f"dualreg:{n}" for n, k in zip(known, ok, strict=True) if k],
            "kind": "network",
            "metric": "dualreg",
            "atlas": "seitzman300",
            "region_a": [n for n, k in zip(known, ok, strict=True) if k],
            "region_b": "n/a",
        }
    )
    if not ok.any():
        return None
    return FeatureSet(
        "dualreg",
        "dual-regression network strength (template-weighted mean of each network map)",
        labels,
        values[:, ok],
        columns,
    )


def cbf_features(layout, participants: list[str], *, atlas: str) -> FeatureSet | None:
    """Mean relative CBF per region of ``atlas`` (the participant level's CBF region tables, CBF runs averaged).

    Only usable CBF maps count (the quality rule of the CBF group analyses); regions without CBF in anyone are left
    out. None when no participant has a CBF region table of ``atlas`` (no ASLPrep input, or ``atlas`` not among
    the participant level's ``--atlases``).
    """
    from clbp_bidsapp.group.perfusion import cbf_quality

    quality = cbf_quality(layout, participants).set_index("participant_id")
    rows = {}
    for label in participants:
        if label not in quality.index or not quality.loc[label, "cbf_usable"]:
            continue
        files = layout.get(subject=label, atlas=atlas, stat="cbf", suffix="regions", extension=".tsv",
                           return_type="filename")  # fmt: skip
        if files:
            tables = [pd.read_csv(f, sep="\t", na_values=["n/a"]).set_index("region")["rcbf"] for f in sorted(files)]
            rows[label] = pd.concat(tables, axis=1).mean(axis=1)
    if not rows:
        return None
    data = pd.DataFrame(rows).T.sort_index()
    data = data.loc[:, np.isfinite(data.to_numpy(dtype=np.float64)).all(axis=0)]
    if data.shape[1] == 0:
        return None
    columns = pd.DataFrame({"feature": [f"rcbf:{r}" for r in data.columns], "kind": "roi", "metric": "rcbf",
                            "atlas": atlas, "region_a": list(data.columns), "region_b": "n/a"})  # fmt: skip
    return FeatureSet("cbf", f"mean relative CBF (CBF / mean grey-matter CBF) per {atlas} region",
                      list(data.index.astype(str)), data.to_numpy(dtype=np.float64), columns)  # fmt: skip


def combine(sets: list[FeatureSet]) -> FeatureSet | None:
    """All sets side by side for the participants present in every set."""
    if len(sets) < 2:
        return None
    common = sorted(set.intersection(*[set(s.participants) for s in sets]))
    if not common:
        return None
    blocks = [s.values[[s.participants.index(p) for p in common]] for s in sets]
    return FeatureSet(
        "combined",
        "all feature sets concatenated: " + ", ".join(s.name for s in sets),
        common,
        np.hstack(blocks),
        pd.concat([s.columns for s in sets], ignore_index=True),
    )


# how each registered feature set (registry.ML_FEATURE_SET_KINDS) is built; "combined" joins the others
FEATURE_BUILDERS = {
    "roi": lambda layout, participants, settings: roi_features(layout, participants, atlas=settings.atlas),
    "edges": lambda layout, participants, settings: edge_features(layout, participants),
    "graph": lambda layout, participants, settings: graph_features(layout, participants),
    "dualreg": lambda layout, participants, settings: dualreg_features(layout, participants),
    "cbf": lambda layout, participants, settings: cbf_features(layout, participants, atlas=settings.atlas),
}


def assemble_feature_sets(
    output_dir: Path, participants: list[str], settings: MLSettings, *, layout=None
) -> list[FeatureSet]:
    """The feature sets of ``settings.feature_sets`` that the participant level's outputs allow.

    ``layout`` is the output layout to read (default: every file of ``output_dir``).
    """
    from clbp_bidsapp.io.bids import build_output_layout

    layout = build_output_layout(output_dir) if layout is None else layout
    wanted = set(settings.feature_sets)
    sets: list[FeatureSet] = []
    for kind in registry.ML_FEATURE_SET_KINDS:  # "combined" last: it joins the others
        if kind.name not in wanted:
            continue
        found = (
            combine(sets) if kind.name == "combined" else FEATURE_BUILDERS[kind.name](layout, participants, settings)
        )
        sets += found if isinstance(found, list) else [found] if found is not None else []
    return sets


# -- design ---------------------------------------------------------------------------------------------------------


def covariate_matrix(table: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Numeric covariates as they are; categorical ones one-hot coded (first level dropped)."""
    blocks, out_names = [], []
    for name in names:
        column = table[name]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all():
            blocks.append(numeric.to_numpy(dtype=np.float64)[:, None])
            out_names.append(name)
        else:
            levels = sorted(column.astype(str).unique())
            for level in levels[1:]:
                blocks.append((column.astype(str) == level).to_numpy(dtype=np.float64)[:, None])
                out_names.append(f"{name}_{level}")
    if not blocks:
        return np.zeros((len(table), 0)), []
    return np.hstack(blocks), out_names


# -- running ---------------------------------------------------------------------------------------------------------


@dataclass
class PermutationTest:
    """One permutation-tested result: its summary and its null, to be corrected with the others of its task."""

    feature_set: str
    model: str
    participants: tuple[str, ...]
    summary: dict  # the core result's summary (p_value is rewritten)
    entry: dict  # its entry in desc-ml_summary.json (p_value is rewritten)
    null: np.ndarray


def primary_feature_set(names: list[str], settings: MLSettings) -> str | None:
    """The pre-declared headline feature set among ``names`` (``edges``: the first connectome atlas's)."""
    wanted = settings.primary_feature_set
    for name in names:
        if name == wanted or (wanted == "edges" and name.startswith("edges")):
            return name
    return None


def family_correct(tests: list[PermutationTest], *, primary: tuple[str | None, str]) -> list[str]:
    """Rewrite each test's ``p_value`` as the max-statistic p over the tests on the same participants as the
    primary one (or the first), keeping the single-test p as ``p_value_uncorrected``; returns notes.

    The nulls of tests on the same participants come from the same label permutations (same seed and blocks), so
    the maximum score over them per permutation is the null of "the best of" these pipelines. A test on other
    participants cannot be paired: its p is withheld (``p_value`` None) and a note says so.
    """
    if not tests:
        return []
    ordered = sorted(tests, key=lambda t: (t.feature_set, t.model) != primary)
    reference = ordered[0].participants
    members = [t for t in ordered if t.participants == reference]
    family_p = core_ml.max_statistic_p([t.summary["permutation_observed"] for t in members], [t.null for t in members])
    names = [f"{t.model} on {t.feature_set}" for t in members]
    notes = []
    for test in ordered:
        single = test.summary["p_value"]
        p = family_p[members.index(test)] if test in members else None
        for target in (test.summary, test.entry):
            target["p_value_uncorrected"] = single
            target["p_value"] = p
            target["permutation_family"] = names if test in members else []
        if test not in members:
            notes.append(
                f"{test.model} on {test.feature_set}: participants differ from {names[0]}'s, so its permutations "
                f"cannot be paired with the family; its p is not reported (single-test p {single:.3g})"
            )
    return notes


def run_ml(
    included: pd.DataFrame,
    *,
    output_dir: Path,
    settings: MLSettings,
    group: GroupSettings,
    seed: int,
    layout=None,
) -> list[MLResult]:
    """Classify patients vs controls (and predict pain within patients) on every feature set; write ``group/``.

    ``included`` is the group design table (one row per included participant). Returns one result per feature
    set x model x scheme x task.
    """
    folder = output_dir / "group"
    table = included.copy()
    table["participant_id"] = table["participant_id"].astype(str)
    covariates, _, notes = model_columns(table, group)
    complete = table[covariates].notna().all(axis=1) if covariates else pd.Series(True, index=table.index)
    for pid in table.loc[~complete, "participant_id"]:
        notes.append(f"sub-{pid} has a missing covariate; left out of the machine learning")
    table = table[complete].set_index("participant_id")
    sets = assemble_feature_sets(output_dir, sorted(table.index), settings, layout=layout)
    if not sets:
        raise InputError(
            "no participant-level features found for the machine learning (ROI maps, connectomes, "
            "graph measures or dual regression); run those participant stages or --skip ml"
        )
    results: list[MLResult] = []
    fold_tables, repeat_tables, null_rows, roc_tables, feature_tables = [], [], [], [], []
    summary: dict = {"classification": {}, "regression": {}, "feature_sets": {}}
    sites_present = "site" in table.columns and table["site"].nunique() > 1
    harmonize = {"auto": "auto", "combat": True, "none": False}[settings.harmonise]

    def progress(message: str) -> None:
        LOGGER.debug("ml: %s", message)

    cv_options = {  # the same validation settings for every feature set, model and task
        "harmonize": harmonize,
        "n_splits": settings.n_splits,
        "n_repeats": settings.n_repeats,
        "inner_splits": settings.inner_splits,
        "k_best": settings.k_best,
        "seed": seed,
        "progress": progress,
    }

    primary_set = primary_feature_set([fs.name for fs in sets], settings)
    tested: dict[str, list[PermutationTest]] = {"classification": [], "regression": []}

    def permuted(fs: FeatureSet, model: str, task: str) -> bool:
        first = settings.primary_model if task == "classification" else settings.regression_models[0]
        return settings.n_permutations > 0 and (
            settings.permutation_scope == "shown" or (fs.name == primary_set and model == first)
        )

    for fs in sets:
        rows = table.loc[fs.participants]
        y_all = (rows[group.group_column].astype(str) == group.patient_label).to_numpy().astype(int)
        cov, cov_names = covariate_matrix(rows, covariates)
        sites = rows["site"].astype(str).to_numpy() if sites_present else None
        blocks = permutation_blocks(rows, group)[1]
        info = {
            "description": fs.description,
            "n_features": int(fs.values.shape[1]),
            "participants": list(fs.participants),
            "covariates": cov_names,
        }
        summary["feature_sets"][fs.name] = info
        counts = np.bincount(y_all, minlength=2)
        schemes = ["kfold"] + (["loso"] if sites_present and settings.leave_site_out else [])
        if counts.min() < MIN_PER_CLASS:
            notes.append(
                f"{fs.name}: {counts[1]} patients and {counts[0]} controls; classification needs "
                f"{MIN_PER_CLASS} per group"
            )
        else:
            summary["classification"][fs.name] = {}
            for model in settings.models:
                entry = summary["classification"][fs.name][model] = {}
                for scheme in schemes:
                    n_perm = (
                        settings.n_permutations if scheme == "kfold" and permuted(fs, model, "classification") else 0
                    )
                    try:
                        result = core_ml.nested_cv(
                            fs.values,
                            y_all,
                            model=model,
                            task="classification",
                            sites=sites,
                            covariates=cov,
                            scheme=scheme,
                            n_permutations=n_perm,
                            blocks=blocks,
                            **cv_options,
                        )
                    except ValueError as exc:  # e.g. a site too small for ComBat in some fold
                        notes.append(f"{fs.name}: {model} ({scheme}) not possible: {exc}")
                        continue
                    _collect(
                        result,
                        fs,
                        "classification",
                        fold_tables,
                        repeat_tables,
                        null_rows,
                        roc_tables,
                        feature_tables,
                        settings.n_top_features,
                    )
                    target = entry if scheme == "kfold" else entry.setdefault("leave_site_out", {})
                    target.update(_clean(result.summary))
                    results.append(MLResult(fs.name, model, "classification", scheme, result.summary, result.notes))
                    if result.null is not None:
                        tested["classification"].append(
                            PermutationTest(fs.name, model, tuple(fs.participants), result.summary, entry, result.null)
                        )
                    if fs.roi is not None and model == settings.primary_model and scheme == "kfold":
                        _write_roi_weights(folder, fs, result.importance, model)
        # pain prediction within patients
        target_col = settings.clinical_target
        if target_col and target_col in rows.columns and settings.regression_models:
            patients = rows[(y_all == 1) & pd.to_numeric(rows[target_col], errors="coerce").notna().to_numpy()]
            if len(patients) < MIN_REGRESSION:
                notes.append(
                    f"{fs.name}: {len(patients)} patients with {target_col}; pain prediction needs {MIN_REGRESSION}"
                )
                continue
            idx = [fs.participants.index(p) for p in patients.index]
            yr = pd.to_numeric(patients[target_col]).to_numpy(dtype=np.float64)
            pcov, _ = covariate_matrix(patients, covariates)
            psites = patients["site"].astype(str).to_numpy() if sites_present else None
            pblocks = permutation_blocks(patients, group)[1]
            summary["regression"].setdefault(fs.name, {})
            for model in settings.regression_models:
                n_perm = settings.n_permutations if permuted(fs, model, "regression") else 0
                try:
                    result = core_ml.nested_cv(
                        fs.values[idx],
                        yr,
                        model=model,
                        task="regression",
                        sites=psites,
                        covariates=pcov,
                        scheme="kfold",
                        n_permutations=n_perm,
                        blocks=pblocks,
                        **cv_options,
                    )
                except ValueError as exc:
                    notes.append(f"{fs.name}: pain prediction with {model} not possible ({exc})")
                    continue
                _collect(
                    result,
                    fs,
                    "regression",
                    fold_tables,
                    repeat_tables,
                    null_rows,
                    roc_tables,
                    feature_tables,
                    settings.n_top_features,
                )
                entry = summary["regression"][fs.name][model] = {"target": target_col, **_clean(result.summary)}
                results.append(MLResult(fs.name, model, "regression", "kfold", result.summary, result.notes))
                if result.null is not None:
                    tested["regression"].append(
                        PermutationTest(fs.name, model, tuple(patients.index), result.summary, entry, result.null)
                    )

    if primary_set is None:
        notes.append(f"primary feature set {settings.primary_feature_set} not available; no headline result")
    first_regression = settings.regression_models[0] if settings.regression_models else ""
    notes += family_correct(tested["classification"], primary=(primary_set, settings.primary_model))
    notes += family_correct(tested["regression"], primary=(primary_set, first_regression))

    summary.update(
        {
            "Description": f"cross-validated classification of {group.patient_label} (positive class) versus "
            f"{group.control_label}, and prediction of {settings.clinical_target} within {group.patient_label}",
            "Method": "scikit-learn pipelines with ComBat (when several sites), covariate regression, variance filter, "
            "scaling and univariate selection fitted inside every training fold; nested repeated stratified k-fold "
            "(inner grid search); leave-one-site-out with several sites; permutation test rerunning the whole nested "
            "procedure on permuted labels",
            "Settings": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(settings).items()},
            "Covariates": covariates,
            "PrimaryModel": settings.primary_model,
            "PrimaryFeatureSet": primary_set,
            "PrimaryRegressionModel": first_regression or None,
            "PermutationScope": settings.permutation_scope,
            "PermutationBlocks": exchangeability.describe(*permutation_blocks(table, group)),
            "RandomSeed": seed,
            "Notes": notes,
        }
    )
    derivatives.write_json(folder / "desc-ml_summary.json", summary)
    derivatives.write_tsv(folder / "desc-ml_scores.tsv", _concat(fold_tables))
    derivatives.write_tsv(folder / "desc-ml_repeats.tsv", _concat(repeat_tables))
    derivatives.write_tsv(
        folder / "desc-ml_null.tsv",
        pd.DataFrame(null_rows, columns=["feature_set", "model", "task", "scheme", "permutation", "statistic"]),
    )
    derivatives.write_tsv(folder / "desc-ml_roc.tsv", _concat(roc_tables))
    derivatives.write_tsv(folder / "desc-ml_features.tsv", _concat(feature_tables))
    derivatives.write_tsv(folder / "desc-ml_summary.tsv", summary_table(summary))
    return results


def _clean(summary: dict) -> dict:
    """JSON-safe summary (NaN -> None)."""

    def fix(v):
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return {k: fix(v) for k, v in summary.items()}


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _collect(result, fs: FeatureSet, task, fold_tables, repeat_tables, null_rows, roc_tables, feature_tables, n_top):
    keys = {"feature_set": fs.name, "model": result.model, "task": task, "scheme": result.scheme}
    fold_tables.append(result.folds.assign(**keys)[[*keys, *result.folds.columns]])
    repeat_tables.append(result.repeats.assign(**keys)[[*keys, *result.repeats.columns]])
    if result.null is not None:
        null_rows += [[fs.name, result.model, task, result.scheme, i + 1, float(v)] for i, v in enumerate(result.null)]
    if result.roc is not None:
        roc_tables.append(result.roc.assign(**keys)[[*keys, *result.roc.columns]])
    if result.scheme == "kfold":
        top = result.importance.head(n_top).copy()
        top.insert(0, "rank", np.arange(1, len(top) + 1))
        named = fs.columns.iloc[top["feature"].to_numpy()].reset_index(drop=True)
        top = pd.concat([top.drop(columns="feature").reset_index(drop=True), named], axis=1)
        feature_tables.append(top.assign(**keys)[[*keys, *top.columns]])


def summary_table(summary: dict) -> pd.DataFrame:
    """One row per task x feature set x model x scheme with the mean scores, CIs and p-value."""
    rows = []
    for task in ("classification", "regression"):
        metrics = core_ml.CLASSIFICATION_METRICS if task == "classification" else core_ml.REGRESSION_METRICS
        for fs, models in summary.get(task, {}).items():
            for model, entry in models.items():
                for scheme, values in (("kfold", entry), ("loso", entry.get("leave_site_out"))):
                    if not values:
                        continue
                    row = {"task": task, "feature_set": fs, "model": model, "scheme": scheme}
                    for m in metrics:
                        ci = values.get(f"{m}_ci") or [None, None]
                        row.update({m: values.get(m), f"{m}_ci_low": ci[0], f"{m}_ci_high": ci[1]})
                    row["p_value"] = values.get("p_value")
                    row["p_value_uncorrected"] = values.get("p_value_uncorrected")
                    heads = (summary.get("PrimaryModel"), summary.get("PrimaryRegressionModel"))
                    row["primary"] = scheme == "kfold" and fs == summary.get("PrimaryFeatureSet") and model in heads
                    rows.append(row)
    return pd.DataFrame(rows)


def _write_roi_weights(folder: Path, fs: FeatureSet, importance: pd.DataFrame, model: str) -> None:
    """4-D NIfTI: for each local metric, every region's voxels carry the mean weight of that region's feature."""
    weights = np.zeros(len(fs.columns))
    weights[importance["feature"].to_numpy()] = importance["mean_weight"].to_numpy()
    volumes, affine, metrics = [], None, []
    first_mask = None
    for metric, info in fs.roi.items():
        cols = (fs.columns["metric"] == metric).to_numpy()
        w = weights[cols]
        membership = info["membership"]
        per_voxel = np.asarray(membership.T @ w).reshape(-1)
        hits = np.asarray(membership.sum(axis=0)).reshape(-1)
        per_voxel = np.where(hits > 0, per_voxel / np.maximum(hits, 1), 0.0)
        if first_mask is None:
            first_mask, affine = info["mask"], info["affine"]
        if info["mask"].shape != first_mask.shape:
            continue
        volumes.append(images.unmask(per_voxel.astype(np.float32), info["mask"]))
        metrics.append(metric)
    if not volumes:
        return
    img = images.make_image(np.stack(volumes, axis=-1), affine)
    stem = f"features-roi_model-{model.replace('_', '')}_desc-mlweights_boldmap"
    derivatives.write_nifti(folder / f"{stem}.nii.gz", img)
    derivatives.write_json(
        folder / f"{stem}.json",
        {
            "Description": f"mean {model} weight (standardised features, zero where not selected) of each region's "
            "ROI-mean feature across the outer folds, painted on the region's voxels; one volume per metric",
            "Volumes": metrics,
        },
    )


def describe(results: list[MLResult], settings: MLSettings) -> str:
    """One line for stderr: the pre-declared primary model on the primary feature set, with its permutation p."""
    kfold = [r for r in results if r.task == "classification" and r.scheme == "kfold"]
    if not kfold:
        return "no classification run (too few participants per group)"
    names = list(dict.fromkeys(r.feature_set for r in kfold))
    primary_set = primary_feature_set(names, settings)
    found = [r for r in kfold if r.feature_set == primary_set and r.model == settings.primary_model]
    if not found:
        return (
            f"{len(results)} cross-validated models; the primary {settings.primary_model} on "
            f"{settings.primary_feature_set} was not run (feature sets: {', '.join(names)})"
        )
    summary = found[0].summary
    p, family = summary.get("p_value"), summary.get("permutation_family") or []
    if p is None:
        p_text = ", no permutation test"
    elif len(family) > 1:
        p_text = f", permutation p = {p:.3g} (corrected for the best of {len(family)} tested pipelines)"
    else:
        p_text = f", permutation p = {p:.3g}"
    return (
        f"{len(results)} cross-validated models; primary {settings.primary_model} on {primary_set}: balanced "
        f"accuracy {summary.get('balanced_accuracy') or float('nan'):.2f}{p_text}"
    )
