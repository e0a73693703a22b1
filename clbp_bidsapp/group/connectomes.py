"""CLBP-versus-control statistics on ROI connectomes and graph measures, per atlas.

For every atlas with participant ``stat-pearsoncorrelation_relmat.tsv`` files:

- each participant's correlation matrices are Fisher z transformed (arctanh, |r| clipped to 1 - 1e-7) and
  averaged over runs and sessions; regions that are n/a in any included participant are dropped (listed in the
  JSON sidecar), so every edge is finite in everyone;
- the design is :func:`core.stats.design_matrix` (group, intercept, covariates and factors from
  :func:`group.voxelwise.model_columns`), as for the voxelwise maps;
- edge-wise Freedman-Lane permutation test (:func:`core.stats.permutation_test`) with max-t FWE and
  Benjamini-Hochberg FDR over the edges (upper triangle);
- the Network-Based Statistic (Zalesky, Fornito & Bullmore 2010; :func:`core.nbs.network_based_statistic`) at
  |t| > ``settings.nbs_threshold``, component extent, two-sided;
- the area under the density curve of each global graph measure (one test per measure, FDR across measures) and
  of each nodal measure (FDR across regions x measures), with the same design and permutations.

All tests use ``settings.n_permutations`` permutations drawn from ``seed`` (the same permutation stream for every
test), run by the group level's executor (``group/fanout.py``: here, in ``--nprocs`` worker processes or as SLURM
job arrays, in seeded chunks merged exactly, so the outputs are byte-identical whatever the split). Outputs go to
``<output_dir>/group/atlas-<A>_contrast-<patient>vs<control>_...`` (see docs/outputs.md).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core import connectivity, exchangeability
from clbp_bidsapp.core.nbs import NBSResult, edge_indices
from clbp_bidsapp.core.stats import Design, DesignError
from clbp_bidsapp.errors import ExitCode, InputError
from clbp_bidsapp.group import fanout
from clbp_bidsapp.group.design import group_design, permutation_blocks
from clbp_bidsapp.group.inclusion import Outcome
from clbp_bidsapp.group.voxelwise import model_columns
from clbp_bidsapp.io import derivatives

LOGGER = logging.getLogger("clbp_bidsapp.group")
ALPHA = 0.05
NOT_GLOBAL_MEASURES = ("sparsity", "n_nodes", "n_edges", "lcc_fraction")


@dataclass(frozen=True)
class ConnectomeResult:
    atlas: str
    n_participants: int
    regions: list[str]  # regions tested (in matrix order)
    dropped_regions: list[str]
    n_fdr_edges: int  # edges with q < 0.05
    n_fwe_edges: int  # edges with max-t FWE p < 0.05
    components: pd.DataFrame  # NBS components table
    graph: pd.DataFrame  # global AUC measure table (empty when no graph measures were found)
    nodal: pd.DataFrame  # nodal AUC measure table
    notes: list[str] = field(default_factory=list)


def run_connectome_stats(
    included: pd.DataFrame,
    *,
    output_dir: Path,
    settings: GroupSettings,
    seed: int,
    layout=None,
    outcome: Outcome | None = None,
    fan: fanout.Executor | None = None,
) -> list[ConnectomeResult]:
    """Compare groups on the connectome edges, NBS components and graph measures of every atlas found.

    ``included`` has one row per included participant: ``participant_id`` (without ``sub-``), the group column
    and the covariates (``design.included`` of the group runner). Returns one result per atlas with relmat files.
    ``layout`` is the output layout to read (default: every file of ``output_dir``). With ``outcome``, the
    participants without an atlas's connectome are listed as left out of that atlas, and an atlas that cannot be
    tested (fewer than ``settings.min_per_group`` per group, too few covered regions, no estimable design) is
    recorded as not run while the other atlases go on; without it, those raise :class:`InputError`. ``fan`` runs
    the permutation tests (default: here, one after the other); the outputs are the same whatever it is.
    """
    from clbp_bidsapp.io.bids import build_output_layout

    layout = build_output_layout(output_dir) if layout is None else layout
    fan = fanout.Serial() if fan is None else fan
    covariates, factors, notes = model_columns(included, settings)
    participants = set(included["participant_id"].astype(str))
    relmats = files_by_atlas(layout, participants, stat="pearsoncorrelation", suffix="relmat")
    if not relmats:
        LOGGER.warning("no connectome (relmat) files found; connectome statistics skipped")
        if outcome is not None:
            outcome.not_run("connectome statistics", "no connectome (relmat) files among the included participants")
        return []
    series_files = files_by_atlas(layout, participants, stat="mean", suffix="timeseries")
    graph_files = files_by_atlas(layout, participants, stat="graph", suffix="measures")
    nodal_files = files_by_atlas(layout, participants, stat="nodal", suffix="measures")
    folder = output_dir / "group"
    results = []
    for atlas in sorted(relmats):
        analysis = f"connectome-{atlas}"
        if outcome is not None:
            ids = included["participant_id"].astype(str)
            outcome.exclude({pid: f"no {atlas} connectome" for pid in ids if pid not in relmats[atlas]}, analysis)
            if not outcome.enough(analysis, included[ids.isin(relmats[atlas])]):
                continue
        try:
            results.append(
                _atlas_stats(
                    atlas,
                    included,
                    relmats[atlas],
                    graph_files.get(atlas, {}),
                    nodal_files.get(atlas, {}),
                    series_files.get(atlas, {}),
                    folder=folder,
                    settings=settings,
                    seed=seed,
                    model=(covariates, factors, list(notes)),
                    fan=fan,
                )
            )
        except InputError as exc:
            if outcome is None:
                raise
            outcome.not_run(analysis, str(exc))
        else:
            if outcome is not None:
                outcome.ran(analysis)
    return results


def files_by_atlas(layout, participants: set[str], *, stat: str, suffix: str) -> dict[str, dict[str, list[Path]]]:
    """atlas -> participant -> sorted files (all runs and sessions), found with pybids."""
    found: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for item in layout.get(stat=stat, suffix=suffix, extension=".tsv", return_type="object"):
        ents = item.get_entities()
        subject, atlas = str(ents.get("subject")), ents.get("atlas")
        if atlas is None or subject not in participants:
            continue
        found[str(atlas)][subject].append(Path(item.path))
    return {atlas: {s: sorted(paths) for s, paths in by_sub.items()} for atlas, by_sub in found.items()}


def _read_tsv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not a readable TSV ({exc}); rerun the participant level") from None


def fisher_z_matrix(paths: list[Path]) -> pd.DataFrame:
    """Mean Fisher z (arctanh of r clipped to |r| <= 1 - 1e-7) over a participant's relmat files."""
    frames = []
    for path in paths:
        table = _read_tsv(path, index_col=0)
        table.index = table.index.astype(str)
        if list(table.index) != list(table.columns):
            raise InputError(f"{path}: row and column region names differ; rerun the participant level")
        frames.append(table.astype(np.float64))
    names = list(frames[0].columns)
    for path, frame in zip(paths[1:], frames[1:], strict=True):
        if list(frame.columns) != names:
            raise InputError(f"{path}: regions differ from {paths[0]}; rerun the participant level")
    z = np.mean([connectivity.fisher_z(f.to_numpy()) for f in frames], axis=0)
    return pd.DataFrame(z, index=names, columns=names)


def usable_regions(matrices: dict[str, pd.DataFrame]) -> tuple[list[str], list[str]]:
    """Regions whose edges are finite in every participant, and the others (in atlas order).

    Regions missing from anyone's matrix, or with an n/a row in anyone, are dropped; if isolated n/a edges remain,
    the region with most n/a edges is dropped until none remains.
    """
    first = next(iter(matrices.values()))
    common = [r for r in first.columns if all(r in m.columns for m in matrices.values())]
    dropped = [r for r in first.columns if r not in common]
    stack = np.stack([m.loc[common, common].to_numpy() for m in matrices.values()])
    bad = ~np.isfinite(stack)
    n = len(common)
    off = ~np.eye(n, dtype=bool)
    whole_row = (bad & off).sum(axis=2) >= n - 1  # (participants, regions): no finite edge
    keep = ~whole_row.any(axis=0) if n > 1 else np.ones(n, dtype=bool)
    while keep.sum() > 1:
        idx = np.flatnonzero(keep)
        sub = (bad[:, idx][:, :, idx] & off[np.ix_(idx, idx)]).any(axis=0)
        counts = sub.sum(axis=1)
        if counts.max() == 0:
            break
        keep[idx[np.argmax(counts)]] = False
    dropped += [r for r, k in zip(common, keep, strict=True) if not k]
    return [r for r, k in zip(common, keep, strict=True) if k], dropped


def _design(table: pd.DataFrame, settings: GroupSettings, covariates, factors, what: str) -> Design:
    try:
        return group_design(table, settings, covariates=covariates, factors=factors)
    except DesignError as exc:
        raise InputError(f"group design for {what}: {exc}", exit_code=ExitCode.NOTHING_PROCESSED) from None


def _atlas_stats(
    atlas, included, relmat_files, graph_files, nodal_files, series_files, *, folder: Path, settings, seed, model, fan
) -> ConnectomeResult:
    covariates, factors, notes = model
    patient, control = settings.patient_label, settings.control_label
    prefix = f"atlas-{atlas}_contrast-{patient}vs{control}"
    ids = included["participant_id"].astype(str)
    table = included[ids.isin(relmat_files)].reset_index(drop=True)
    missing = sorted(set(ids) - set(relmat_files))
    if missing:
        notes.append(f"no {atlas} connectome for sub-{', sub-'.join(missing)}; left out of the {atlas} tests")
    labels = list(table["participant_id"].astype(str))
    matrices = {label: fisher_z_matrix(relmat_files[label]) for label in labels}
    regions, dropped = usable_regions(matrices)
    if len(regions) < 3:
        raise InputError(
            f"atlas {atlas}: only {len(regions)} regions are covered in every included participant; "
            "check the brain masks, or rerun the participant level with a lower --min-region-coverage",
            exit_code=ExitCode.NOTHING_PROCESSED,
        )
    if dropped:
        LOGGER.warning("atlas %s: %d regions without coverage in some participant dropped", atlas, len(dropped))
    design = _design(table, settings, covariates, factors, f"the {atlas} connectome")
    blocks = permutation_blocks(table, settings)[1]
    rows, cols = edge_indices(len(regions))
    edges = np.stack([matrices[label].loc[regions, regions].to_numpy()[rows, cols] for label in labels])
    is_patient = design.matrix[:, 0] == 1
    n_perm = settings.n_permutations
    edge_pending = fan.submit(edges, design, label=f"atlas {atlas} edge permutations", n_permutations=n_perm,
                              seed=seed, blocks=blocks)  # fmt: skip
    nbs_pending = fan.submit(edges, design, label=f"atlas {atlas} NBS permutations", kind="nbs",
                             n_nodes=len(regions), threshold=settings.nbs_threshold, n_permutations=n_perm, seed=seed,
                             blocks=blocks)  # fmt: skip
    edge_test, nbs = edge_pending(), nbs_pending()
    floor = 1.0 / n_perm

    def signed_log(p, t):
        return -np.log10(np.clip(p, floor, 1.0)) * np.sign(t)

    for name, values in {
        "stat-t_relmat": edge_test.t,
        "stat-logq_desc-fdr_relmat": signed_log(edge_test.q_fdr, edge_test.t),
        "stat-logp_desc-fwe_relmat": signed_log(edge_test.p_fwe, edge_test.t),
    }.items():
        derivatives.write_tsv(folder / f"{prefix}_{name}.tsv", _square(values, regions), index=True)
    edge_table = pd.DataFrame(
        {
            "region_a": np.asarray(regions)[rows],
            "region_b": np.asarray(regions)[cols],
            "t": edge_test.t,
            "p_uncorrected": edge_test.p_uncorrected,
            "p_fwe": edge_test.p_fwe,
            "q_fdr": edge_test.q_fdr,
            f"mean_z_{patient}": edges[is_patient].mean(axis=0),
            f"mean_z_{control}": edges[~is_patient].mean(axis=0),
            "nbs_component": nbs.edge_component,
        }
    )
    order = np.lexsort((-np.abs(edge_test.t), edge_test.p_uncorrected))
    derivatives.write_tsv(folder / f"{prefix}_desc-edges_stats.tsv", edge_table.iloc[order].reset_index(drop=True))
    components = nbs_component_table(nbs, regions)
    derivatives.write_tsv(folder / f"{prefix}_desc-nbs_components.tsv", components)
    significant = [i for i, c in enumerate(nbs.components, start=1) if c.p_fwe < ALPHA]
    nbs_edges = edge_table[edge_table["nbs_component"].isin(significant)]
    nbs_edges = nbs_edges.merge(
        components[["component", "p_fwe"]].rename(columns={"component": "nbs_component", "p_fwe": "component_p_fwe"}),
        on="nbs_component",
    )
    nbs_edges = nbs_edges[["nbs_component", "component_p_fwe", "region_a", "region_b", "t", f"mean_z_{patient}",
                           f"mean_z_{control}"]].sort_values(["nbs_component", "t"], key=_abs_if_t)  # fmt: skip
    derivatives.write_tsv(folder / f"{prefix}_desc-nbsedges_stats.tsv", nbs_edges.reset_index(drop=True))

    tangent_info = {"Computed": False}
    if labels and all(label in series_files for label in labels):
        tangent = tangent_edges(
            {label: series_files[label] for label in labels}, regions, design, settings=settings, seed=seed,
            blocks=blocks, fan=fan, atlas=atlas,
        )  # fmt: skip
        derivatives.write_tsv(folder / f"{prefix}_stat-t_desc-tangent_relmat.tsv", _square(tangent["t"].to_numpy(),
                              regions), index=True)  # fmt: skip
        tangent.insert(0, "region_b", np.asarray(regions)[cols])
        tangent.insert(0, "region_a", np.asarray(regions)[rows])
        order = np.lexsort((-tangent["t"].abs().to_numpy(), tangent["p_uncorrected"].to_numpy()))
        derivatives.write_tsv(folder / f"{prefix}_desc-tangentedges_stats.tsv", tangent.iloc[order])
        tangent_info = {
            "Computed": True,
            "Method": "tangent-space embedding (Varoquaux 2010) of each participant's Ledoit-Wolf covariance at "
            "the geometric mean of all included participants (nilearn ConnectivityMeasure(kind='tangent'); "
            "unsupervised: group labels are not used), runs z-scored and concatenated",
            "EdgesFDR05": int((tangent["q_fdr"] < ALPHA).sum()),
        }
    else:
        notes.append(f"{atlas}: region series missing for some participant; tangent-space test not computed")

    graph, graph_info = _measure_tests(
        "global", graph_files, included, settings, covariates, factors, seed, patient, control, read=global_auc,
        fan=fan, atlas=atlas,
    )  # fmt: skip
    if graph is not None:
        derivatives.write_tsv(folder / f"{prefix}_desc-graph_stats.tsv", graph)
    nodal, nodal_info = _measure_tests(
        "nodal", nodal_files, included, settings, covariates, factors, seed, patient, control, read=nodal_auc,
        fan=fan, atlas=atlas,
    )  # fmt: skip
    if nodal is not None:
        derivatives.write_tsv(folder / f"{prefix}_desc-nodal_stats.tsv", nodal)
    for info in (graph_info, nodal_info):
        notes.extend(info.pop("Notes", []))

    design_table = pd.DataFrame(design.matrix, columns=design.names)
    design_table.insert(0, "participant_id", labels)
    derivatives.write_tsv(folder / f"{prefix}_desc-design_design.tsv", design_table)
    derivatives.write_json(
        folder / f"{prefix}_stat-t_relmat.json",
        {
            "Description": f"CLBP-versus-control statistics on the {atlas} connectomes: GLM t of {patient} minus "
            f"{control} per edge of the runs-averaged Fisher z (arctanh) Pearson correlation matrices",
            "Atlas": atlas,
            "Regressors": design.names,
            "TestedRegressor": design.names[design.tested],
            "Participants": labels,
            "ParticipantsPerGroup": {patient: int(is_patient.sum()), control: int((~is_patient).sum())},
            "Regions": regions,
            "DroppedRegions": dropped,
            "DroppedRegionsReason": "n/a (no coverage) in at least one included participant",
            "Edges": int(rows.size),
            "Permutations": n_perm,
            "PermutationScheme": "Freedman-Lane (residuals of the nuisance model permuted); identity counted first",
            "PermutationBlocks": exchangeability.describe(settings.permute_within, blocks),
            "EdgeCorrection": "max-t FWE and Benjamini-Hochberg FDR across the edges (two-sided)",
            "NBS": {
                "Method": "Network-Based Statistic (Zalesky, Fornito & Bullmore 2010)",
                "Threshold": settings.nbs_threshold,
                "Measure": nbs.measure,
                "TwoSided": nbs.two_sided,
                "Components": len(nbs.components),
                "SignificantComponents": len(significant),
            },
            "TangentSpace": tangent_info,
            "GraphMeasures": graph_info,
            "NodalMeasures": nodal_info,
            "RandomSeed": seed,
            "Notes": notes,
        },
    )
    return ConnectomeResult(
        atlas=atlas,
        n_participants=len(labels),
        regions=regions,
        dropped_regions=dropped,
        n_fdr_edges=int((edge_test.q_fdr < ALPHA).sum()),
        n_fwe_edges=int((edge_test.p_fwe < ALPHA).sum()),
        components=components,
        graph=graph if graph is not None else pd.DataFrame(),
        nodal=nodal if nodal is not None else pd.DataFrame(),
        notes=notes,
    )


def tangent_edges(
    series_files: dict[str, list[Path]],
    regions: list[str],
    design: Design,
    *,
    settings: GroupSettings,
    seed: int,
    blocks: np.ndarray | None = None,
    fan: fanout.Executor | None = None,
    atlas: str = "",
) -> pd.DataFrame:
    """Edge-wise GLM on tangent-space connectivity: t, permutation p, max-t FWE and FDR per edge.

    Each participant's runs (region series TSVs) are z-scored and concatenated; nilearn's
    ``ConnectivityMeasure(kind="tangent")`` is fitted on all participants in ``series_files`` (in the design's
    order), which uses no group labels, so the test stays a valid permutation test.
    """
    from nilearn.connectome import ConnectivityMeasure

    series = []
    for paths in series_files.values():
        runs = []
        for path in paths:
            values = _read_tsv(path)[regions].to_numpy(dtype=np.float64)
            runs.append((values - values.mean(axis=0)) / values.std(axis=0))
        series.append(np.concatenate(runs))
    tangent = ConnectivityMeasure(kind="tangent", standardize=False).fit_transform(series)
    rows, cols = edge_indices(len(regions))
    edges = tangent[:, rows, cols]
    fan = fanout.Serial() if fan is None else fan
    label = f"atlas {atlas} tangent-space permutations" if atlas else "tangent-space permutations"
    result = fan.submit(edges, design, label=label, n_permutations=settings.n_permutations, seed=seed, blocks=blocks)()
    return pd.DataFrame({
        "t": result.t, "p_uncorrected": result.p_uncorrected, "p_fwe": result.p_fwe, "q_fdr": result.q_fdr,
    })  # fmt: skip


def _abs_if_t(column: pd.Series) -> pd.Series:
    return -column.abs() if column.name == "t" else column


def _square(values: np.ndarray, regions: list[str]) -> pd.DataFrame:
    """Symmetric region x region table of edge values (diagonal n/a), rows named in a ``region`` column."""
    n = len(regions)
    rows, cols = edge_indices(n)
    matrix = np.full((n, n), np.nan)
    matrix[rows, cols] = values
    matrix[cols, rows] = values
    return pd.DataFrame(matrix, index=pd.Index(regions, name="region"), columns=regions)


def nbs_component_table(nbs: NBSResult, regions: list[str]) -> pd.DataFrame:
    """One row per observed NBS component: sign, edges, nodes, size, FWE p and the region names."""
    columns = ["component", "sign", "n_edges", "n_nodes", "size", "p_fwe", "nodes"]
    rows = [
        {
            "component": index,
            "sign": "+" if c.sign > 0 else "-",
            "n_edges": int(c.edges.size),
            "n_nodes": int(c.nodes.size),
            "size": c.size,
            "p_fwe": c.p_fwe,
            "nodes": ",".join(regions[i] for i in c.nodes),
        }
        for index, c in enumerate(nbs.components, start=1)
    ]
    return pd.DataFrame(rows, columns=columns)


def global_auc(paths: list[Path]) -> pd.Series:
    """Mean over runs of the AUC row of the global graph measures (index: measure)."""
    values = []
    for path in paths:
        table = _read_tsv(path, dtype={"sparsity": str})
        auc = table[table["sparsity"] == "auc"]
        if auc.empty:
            raise InputError(f"{path} has no 'auc' row; rerun the participant level")
        row = auc.iloc[0].drop([c for c in NOT_GLOBAL_MEASURES if c in auc.columns])
        values.append(pd.to_numeric(row, errors="coerce"))
    return pd.concat(values, axis=1).mean(axis=1, skipna=False)


def nodal_auc(paths: list[Path]) -> pd.Series:
    """Mean over runs of each region's nodal AUC (index: (region, measure))."""
    values = []
    for path in paths:
        table = _read_tsv(path, dtype={"sparsity": str, "region": str})
        auc = table[table["sparsity"] == "auc"].drop(columns="sparsity").set_index("region")
        values.append(auc.apply(pd.to_numeric, errors="coerce").stack(future_stack=True))
    return pd.concat(values, axis=1).mean(axis=1, skipna=False)


def _measure_tests(kind, files, included, settings, covariates, factors, seed, patient, control, *, read, fan, atlas):
    """Permutation test of every (region,) measure AUC; FDR and max-t FWE across all of them."""
    ids = included["participant_id"].astype(str)
    table = included[ids.isin(files)].reset_index(drop=True)
    if table.empty:
        LOGGER.warning("no %s graph measures found; graph statistics skipped", kind)
        return None, {"Tested": False}
    labels = list(table["participant_id"].astype(str))
    data = pd.concat({label: read(files[label]) for label in labels}, axis=1).T  # participants x measures
    finite = np.isfinite(data.to_numpy(dtype=np.float64)).all(axis=0)
    left_out = [_key(c) for c in data.columns[~finite]]
    data = data.loc[:, finite]
    notes = []
    if left_out:
        notes.append(f"{kind} measures with n/a in some participant not tested: {', '.join(left_out)}")
    if data.shape[1] == 0:
        return None, {"Tested": False, "Notes": notes}
    design = _design(table, settings, covariates, factors, f"{kind} graph measures")
    values = data.to_numpy(dtype=np.float64)
    blocks = permutation_blocks(table, settings)[1]
    result = fan.submit(values, design, label=f"atlas {atlas} {kind} graph-measure permutations",
                        n_permutations=settings.n_permutations, seed=seed, blocks=blocks)()  # fmt: skip
    is_patient = design.matrix[:, 0] == 1
    if kind == "nodal":
        keys = pd.DataFrame(list(data.columns), columns=["region", "measure"])
    else:
        keys = pd.DataFrame({"measure": list(data.columns)})
    out = keys.assign(
        n=len(labels),
        t=result.t,
        p_uncorrected=result.p_uncorrected,
        p_fwe=result.p_fwe,
        q_fdr=result.q_fdr,
        **{f"mean_{patient}": values[is_patient].mean(axis=0), f"mean_{control}": values[~is_patient].mean(axis=0)},
    )
    family = "regions x measures" if kind == "nodal" else "measures"
    info = {
        "Tested": True,
        "Participants": labels,
        "Measures": int(values.shape[1]),
        "Statistic": "area under the curve over the densities (runs averaged)",
        "Correction": f"Benjamini-Hochberg FDR and max-t FWE across {family}",
        "NotTested": left_out,
        "Notes": notes,
    }
    return out, info


def _key(column) -> str:
    return ":".join(map(str, column)) if isinstance(column, tuple) else str(column)
