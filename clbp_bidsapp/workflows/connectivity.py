"""The connectivity stages of a run: seed FC maps, atlas connectomes, graph measures, dual regression.

All of it runs on the band-passed denoised series (``filtered``), unsmoothed; seed FC maps are also written
smoothed (``desc-<seed>Smoothed``) for the group level. Each builder's ``inputnode`` fields are outputs of
:func:`clbp_bidsapp.workflows.denoising.init_denoise_wf` (or, for the graph measures, of
:func:`init_connectome_wf`), which the run workflow connects by name; each sidecar also records how the series was
denoised (``provenance``).
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp.config import ConnectivitySettings, MetricSettings
from clbp_bidsapp.interfaces.connectivity import Connectome, DualRegression, GraphMeasures, SeedFC
from clbp_bidsapp.io import atlases
from clbp_bidsapp.io.bids import RunInputs
from clbp_bidsapp.workflows.common import init_ds_node, init_stage_wf
from clbp_bidsapp.workflows.utils import head, listify, pick

FC_DESCRIPTION = (
    "seed-based functional connectivity: Fisher z (arctanh) of the Pearson correlation between the seed's mean "
    "band-passed denoised series and each voxel's"
)
REPORT_SEEDS = 2  # seed FC maps shown in the run report
# the columns of the regions tables (io.atlases.Regions.table), described in their sidecars as BIDS asks of a
# TSV; the centre coordinates are world millimetres, so they carry Units
REGION_COLUMNS = {
    "region": {"Description": "region: atlas label or seed name"},
    "network": {"Description": "network of the region in the atlas or seed library (n/a: none)"},
    **{axis: {"Description": f"{axis} world coordinate of the region's centre: the mean of its voxel centres on "
                             "the BOLD grid, or a sphere's given centre", "Units": "mm"} for axis in "xyz"},
    "grid_voxels": {"Description": "voxels of the region on the BOLD grid"},
    "mask_voxels": {"Description": "voxels of the region inside the brain mask"},
    "coverage": {"Description": "mask_voxels / grid_voxels; regions below --min-region-coverage are not used"},
    "used": {"Description": "whether the region's series is analysed (coverage at least --min-region-coverage); "
                            "an unused region is n/a in the time series and matrices"},
}  # fmt: skip
SEED_REGION_COLUMNS = {
    **REGION_COLUMNS,
    "signal_voxels": {"Description": "voxels of the seed inside the mask with a finite, non-constant series"},
    "signal_coverage": {"Description": "signal_voxels / grid_voxels"},
    "used": {
        "Description": "whether the seed's FC maps are computed (signal_coverage at least "
        "--min-region-coverage and a non-constant mean series); otherwise n/a series and NaN maps"
    },
}
SERIES_INPUTS = ["filtered", "grid", "provenance"]


def init_seedfc_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, connectivity: ConnectivitySettings,
    metrics: MetricSettings, name: str = "seedfc_wf",
) -> pe.Workflow:  # fmt: skip
    """Stage ``seedfc``: the Fisher-z FC map of every ``--seeds`` seed, unsmoothed and smoothed, and the seed series.

    Inputs (``inputnode``)
    ----------------------
    filtered, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    fc_maps : the unsmoothed FC maps of the first seeds, shown in the run report (:func:`seed_report_titles`)
    """
    workflow, inputnode, outputnode = init_stage_wf(name, SERIES_INPUTS, ["fc_maps"])
    if not connectivity.seeds:
        return workflow
    sink = {"run": run, "output_dir": output_dir, "fmriprep_dir": fmriprep_dir}
    seeds = atlases.select_seeds(connectivity.seeds)
    fwhm = metrics.smoothing_fwhm
    seed_fc = pe.Node(
        SeedFC(seeds=seeds.astype(str).to_dict("records"), min_coverage=connectivity.min_region_coverage, fwhm=fwhm),
        name="seed_fc",
    )
    workflow.connect([
        (inputnode, seed_fc, [("filtered", "series"), ("grid", "grid")]),
        (seed_fc, outputnode, [(("fcz", head, REPORT_SEEDS), "fc_maps")]),
    ])  # fmt: skip
    for index, seed in enumerate(seeds["name"]):
        for field, desc, smoothed in (("fcz", seed, 0.0), ("fcz_smoothed", f"{seed}Smoothed", fwhm)):
            ds = init_ds_node(
                **sink,
                label=f"fcz_{desc}",
                suffix="boldmap",
                desc=desc,
                stat="fcz",
                metadata={"Description": FC_DESCRIPTION, "SmoothingFWHM": smoothed},
            )
            workflow.connect([
                (seed_fc, ds, [((field, pick, index), "in_file"), (("metadata", pick, index), "metadata_file")]),
                (inputnode, ds, [(("provenance", listify), "metadata_files")]),
            ])  # fmt: skip
    _publish(
        workflow,
        inputnode,
        seed_fc,
        "timeseries",
        sink,
        label="seed_timeseries",
        suffix="timeseries",
        extension=".tsv",
        desc="seeds",
        stat="mean",
        metadata={"Description": "mean band-passed denoised series of each seed"},
    )
    _publish(
        workflow,
        inputnode,
        seed_fc,
        "regions",
        sink,
        label="seed_regions",
        suffix="regions",
        extension=".tsv",
        desc="seeds",
        metadata={
            "Description": "seed definitions on the BOLD grid with their coverage by the brain mask",
            **SEED_REGION_COLUMNS,
        },
    )
    return workflow


def init_connectome_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, connectivity: ConnectivitySettings,
    name: str = "connectome_wf",
) -> pe.Workflow:  # fmt: skip
    """Stage ``connectome``: region series, Pearson and partial correlation matrices of each ``--atlases`` atlas.

    Inputs (``inputnode``)
    ----------------------
    filtered, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    relmats : the Pearson matrix of each atlas, in the order of :func:`atlas_labels`
    regions : the regions table of each atlas (same order)
    """
    workflow, inputnode, outputnode = init_stage_wf(name, SERIES_INPUTS, ["relmats", "regions"])
    labels = atlas_labels(connectivity)
    if not labels:
        return workflow
    sink = {"run": run, "output_dir": output_dir, "fmriprep_dir": fmriprep_dir}
    gathered = {
        field: pe.Node(niu.Merge(len(labels)), name=f"gather_{field}", run_without_submitting=True)
        for field in ("relmats", "regions")
    }
    for index, (atlas, label) in enumerate(zip(connectivity.atlases, labels, strict=True), start=1):
        node = pe.Node(
            Connectome(atlas=str(atlas), min_coverage=connectivity.min_region_coverage), name=f"connectome_{label}"
        )
        workflow.connect([
            (inputnode, node, [("filtered", "series"), ("grid", "grid")]),
            (node, gathered["relmats"], [("pearson", f"in{index}")]),
            (node, gathered["regions"], [("regions", f"in{index}")]),
        ])  # fmt: skip
        ents = {"atlas": label, "extension": ".tsv"}
        _publish(
            workflow,
            inputnode,
            node,
            "timeseries",
            sink,
            label=f"{label}_timeseries",
            suffix="timeseries",
            stat="mean",
            **ents,
            metadata={"Description": "mean band-passed denoised series of each region"},
        )
        _publish(
            workflow,
            inputnode,
            node,
            "regions",
            sink,
            label=f"{label}_regions",
            suffix="regions",
            **ents,
            metadata={
                "Description": "regions on the BOLD grid with their coverage by the brain mask",
                **REGION_COLUMNS,
            },
        )
        for field, stat in (("pearson", "pearsoncorrelation"), ("partial", "partialcorrelation")):
            ds = _publish(
                workflow,
                inputnode,
                node,
                field,
                sink,
                label=f"{label}_{field}",
                suffix="relmat",
                stat=stat,
                **ents,
                metadata={"Description": f"{field} correlation between region series"},
            )
            workflow.connect(node, "metadata", ds, "metadata_file")
    for field, merge in gathered.items():
        workflow.connect(merge, "out", outputnode, field)
    return workflow


def init_graph_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, connectivity: ConnectivitySettings, random_seed: int,
    name: str = "graph_wf",
) -> pe.Workflow:  # fmt: skip
    """Stage ``graph``: global and nodal graph measures of each connectome over the sparsity range.

    Inputs (``inputnode``)
    ----------------------
    relmats, regions : the Pearson matrices and regions of each atlas (:func:`init_connectome_wf`)
    provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    graphs : the global measures of each atlas, shown in the run report next to its connectome
    """
    workflow, inputnode, outputnode = init_stage_wf(name, ["relmats", "regions", "provenance"], ["graphs"])
    labels = atlas_labels(connectivity)
    if not labels:
        return workflow
    sink = {"run": run, "output_dir": output_dir, "fmriprep_dir": fmriprep_dir}
    gather = pe.Node(niu.Merge(len(labels)), name="gather_graphs", run_without_submitting=True)
    for index, label in enumerate(labels):
        graph = pe.Node(
            GraphMeasures(
                sparsity=list(connectivity.graph_sparsity),
                n_random=connectivity.graph_random_networks,
                random_seed=random_seed,
            ),
            name=f"graph_{label}",
        )
        workflow.connect([
            (inputnode, graph, [(("relmats", pick, index), "relmat"), (("regions", pick, index), "regions")]),
            (graph, gather, [("global_measures", f"in{index + 1}")]),
        ])  # fmt: skip
        ents = {"atlas": label, "extension": ".tsv"}
        ds_global = _publish(
            workflow,
            inputnode,
            graph,
            "global_measures",
            sink,
            label=f"{label}_graph",
            suffix="measures",
            stat="graph",
            **ents,
            metadata={
                "Description": "global graph measures per connection density and their area under the curve (AUC)"
            },
        )
        ds_nodal = _publish(
            workflow,
            inputnode,
            graph,
            "nodal_measures",
            sink,
            label=f"{label}_nodal",
            suffix="measures",
            stat="nodal",
            **ents,
            metadata={"Description": "nodal graph measures per connection density and their AUC"},
        )
        for ds in (ds_global, ds_nodal):  # the sidecars say how (or why not) the measures were computed
            workflow.connect(graph, "metadata", ds, "metadata_file")
    workflow.connect(gather, "out", outputnode, "graphs")
    return workflow


def init_dualreg_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, connectivity: ConnectivitySettings,
    name: str = "dualreg_wf",
) -> pe.Workflow:  # fmt: skip
    """Stage ``dualreg``: dual regression onto the ``--networks`` reference networks.

    Inputs (``inputnode``)
    ----------------------
    filtered, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    components : the stage-2 maps (one volume per reference network, variance-normalised time courses)
    """
    workflow, inputnode, outputnode = init_stage_wf(name, SERIES_INPUTS, ["components"])
    sink = {"run": run, "output_dir": output_dir, "fmriprep_dir": fmriprep_dir}
    dualreg = pe.Node(DualRegression(networks=connectivity.networks), name="dual_regression")
    workflow.connect([
        (inputnode, dualreg, [("filtered", "series"), ("grid", "grid")]),
        (dualreg, outputnode, [("components", "components")]),
    ])  # fmt: skip
    for field, desc, normalised in (
        ("components", "dualreg", True),
        ("components_unnormalised", "dualregUnnormalised", False),
    ):
        ds = _publish(
            workflow,
            inputnode,
            dualreg,
            field,
            sink,
            label=desc,
            suffix="components",
            desc=desc,
            metadata={
                "Description": "dual regression (Beckmann 2009) stage-2 maps, one volume per reference network",
                "VarianceNormalisedTimecourses": normalised,
            },
        )
        workflow.connect(dualreg, "metadata", ds, "metadata_file")
    _publish(
        workflow,
        inputnode,
        dualreg,
        "timeseries",
        sink,
        label="dualreg_timeseries",
        suffix="timeseries",
        extension=".tsv",
        desc="dualreg",
        metadata={"Description": "dual regression stage-1 series, one column per reference network"},
    )
    return workflow


def atlas_labels(connectivity: ConnectivitySettings) -> list[str]:
    """The ``atlas-`` label of each ``--atlases`` entry (bundled name, or the user atlas file's name)."""
    return [atlas if atlas in atlases.ATLASES else atlases.user_atlas_name(atlas) for atlas in connectivity.atlases]


def seed_report_titles(connectivity: ConnectivitySettings) -> list[str]:
    """Captions of the seed FC maps the run report shows (``fc_maps`` of :func:`init_seedfc_wf`)."""
    if not connectivity.seeds:
        return []
    return [f"seed {name}" for name in atlases.select_seeds(connectivity.seeds)["name"][:REPORT_SEEDS]]


def _publish(workflow, inputnode, node, field, sink, *, label, **kw) -> pe.Node:
    """Write ``node.field`` with a sink of the run (``sink``: run, output_dir, fmriprep_dir) and the denoising's
    provenance in its sidecar; return the sink."""
    ds = init_ds_node(**sink, label=label, **kw)
    workflow.connect([(node, ds, [(field, "in_file")]), (inputnode, ds, [(("provenance", listify), "metadata_files")])])
    return ds
