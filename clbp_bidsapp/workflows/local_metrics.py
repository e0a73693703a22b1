"""The local-metric stages of a run: one sub-workflow per ``--skip`` stage of :data:`registry.LOCAL_METRICS`.

Each stage computes its maps from the denoised series its registry records name (``series``), then writes every
map raw and standardised (z within the mask and divided by the mask mean; smoothed when the record says so), each
with a sidecar that records how the series was denoised and what the metric node reports. Each builder's
``inputnode`` fields are outputs of :func:`clbp_bidsapp.workflows.denoising.init_denoise_wf` (the run workflow
connects them by name); its ``outputnode`` has the ``report_map`` shown in the run report.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp import messages, registry
from clbp_bidsapp.config import DenoiseSettings, MetricSettings
from clbp_bidsapp.core.denoise import DEFAULT_BAND
from clbp_bidsapp.interfaces.metrics import ALFF, VMHC, DegreeCentrality, ReHo, Standardize
from clbp_bidsapp.io import grey_matter, spaces
from clbp_bidsapp.io.bids import RunInputs
from clbp_bidsapp.workflows.common import init_ds_node, init_stage_wf

DEFAULT_ALFF_BAND = DEFAULT_BAND  # used for ALFF when --no-band-pass is given

METRIC_DESCRIPTIONS = {metric.name: metric.description for metric in registry.LOCAL_METRICS}


def init_alff_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, denoise: DenoiseSettings, metrics: MetricSettings,
    name: str = "alff_wf",
) -> pe.Workflow:  # fmt: skip
    """Stage ``alff``: ALFF and fALFF in the band-pass band (0.01-0.1 Hz without band-pass).

    Inputs (``inputnode``)
    ----------------------
    unfiltered, sample_mask, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    report_map : the standardised fALFF map shown in the run report
    """
    band = tuple(denoise.band_pass) or DEFAULT_ALFF_BAND
    workflow, inputnode, outputnode = init_stage_wf(
        name, ["unfiltered", "sample_mask", "grid", "provenance"], ["report_map"]
    )
    alff = pe.Node(ALFF(tr=run.tr, band=band), name="alff")
    workflow.connect([
        (inputnode, alff, [("unfiltered", "series"), ("sample_mask", "sample_mask"), ("grid", "grid")]),
    ])  # fmt: skip
    common = _publish_args(
        inputnode, run=run, output_dir=output_dir, fmriprep_dir=fmriprep_dir, fwhm=metrics.smoothing_fwhm
    )
    for stat in (metric.name for metric in registry.metrics_of_stage("alff")):
        std = _publish(
            workflow, alff, stat, **common, stat=stat, extra_meta={"Band": list(band)}, meta_file=(alff, "metadata")
        )
    workflow.connect(std, "z_file", outputnode, "report_map")
    return workflow


def init_reho_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, denoise: DenoiseSettings, metrics: MetricSettings,
    name: str = "reho_wf",
) -> pe.Workflow:  # fmt: skip
    """Stage ``reho``: regional homogeneity of the band-passed series.

    Inputs (``inputnode``)
    ----------------------
    filtered, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    report_map : the standardised ReHo map shown in the run report
    """
    workflow, inputnode, outputnode = init_stage_wf(name, ["filtered", "grid", "provenance"], ["report_map"])
    reho = pe.Node(ReHo(neighbourhood=metrics.reho_neighbourhood), name="reho")
    workflow.connect([(inputnode, reho, [("filtered", "series"), ("grid", "grid")])])
    common = _publish_args(
        inputnode, run=run, output_dir=output_dir, fmriprep_dir=fmriprep_dir, fwhm=metrics.smoothing_fwhm
    )
    std = _publish(
        workflow,
        reho,
        "out_file",
        **common,
        stat="reho",
        extra_meta={"Neighbourhood": metrics.reho_neighbourhood, "Band": list(denoise.band_pass)},
    )
    workflow.connect(std, "z_file", outputnode, "report_map")
    return workflow


def init_vmhc_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, metrics: MetricSettings, name: str = "vmhc_wf"
) -> pe.Workflow:
    """Stage ``vmhc``: voxel-mirrored homotopic connectivity of the band-passed series, smoothed first.

    Inputs (``inputnode``)
    ----------------------
    filtered, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`

    Outputs (``outputnode``)
    ------------------------
    report_map : the standardised VMHC map shown in the run report
    """
    fwhm = metrics.smoothing_fwhm
    workflow, inputnode, outputnode = init_stage_wf(name, ["filtered", "grid", "provenance"], ["report_map"])
    vmhc = pe.Node(VMHC(fwhm=fwhm), name="vmhc")
    workflow.connect([(inputnode, vmhc, [("filtered", "series"), ("grid", "grid")])])
    space = spaces.lookup(run.space)
    common = _publish_args(inputnode, run=run, output_dir=output_dir, fmriprep_dir=fmriprep_dir, fwhm=fwhm)
    std = _publish(
        workflow,
        vmhc,
        "out_file",
        **common,
        stat="vmhc",
        grid_from=(vmhc, "grid"),
        meta_file=(vmhc, "metadata"),
        extra_meta={
            "SeriesSmoothingFWHM": fwhm,
            "MirrorPlane": "x = 0 (world mm)",
            "MirrorTemplate": space.name,
            "MirrorTemplateSymmetric": space.symmetric,
            "MirrorNote": space.mirror_note,
        },
    )
    workflow.connect(std, "z_file", outputnode, "report_map")
    return workflow


def init_dc_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, metrics: MetricSettings, name: str = "dc_wf"
) -> pe.Workflow:
    """Stage ``dc``: binarised and weighted degree centrality within grey matter, on the band-passed series.

    Inputs (``inputnode``)
    ----------------------
    filtered, qc, grid, provenance : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf` (``qc`` gives
    the effective DOF of a p-value threshold)

    Outputs (``outputnode``)
    ------------------------
    report_map : the standardised weighted-degree map shown in the run report
    """
    workflow, inputnode, outputnode = init_stage_wf(name, ["filtered", "qc", "grid", "provenance"], ["report_map"])
    dc = pe.Node(
        DegreeCentrality(
            threshold=metrics.dc_threshold,
            threshold_p=metrics.dc_threshold_p or 0.0,
            resolution=metrics.dc_resolution or 0.0,
            space=run.space,
            max_nodes=metrics.dc_max_nodes,
        ),
        name="dc",
    )
    if "GM" in run.probsegs:
        dc.inputs.gm_probseg = str(run.probsegs["GM"])
    fallback = grey_matter.fallback_message(has_probseg="GM" in run.probsegs, space=run.space, where=run.source_name)
    if fallback:
        messages.say(fallback)
    workflow.connect([(inputnode, dc, [("filtered", "series"), ("qc", "qc"), ("grid", "grid")])])
    common = _publish_args(
        inputnode, run=run, output_dir=output_dir, fmriprep_dir=fmriprep_dir, fwhm=metrics.smoothing_fwhm
    )
    for kind in registry.local_metric("dc").variants:
        std = _publish(
            workflow,
            dc,
            kind,
            **common,
            stat="dc",
            desc=kind,
            grid_from=(dc, "grid"),
            meta_file=(dc, "metadata"),
            extra_meta={"Degree": kind},  # the threshold comes with the node's metadata
        )
    workflow.connect(std, "z_file", outputnode, "report_map")
    return workflow


def report_title(stage: str) -> str:
    """Caption of the map a local-metric stage shows in the run report (its last metric's standardised map)."""
    return registry.metrics_of_stage(stage)[-1].report_label


def _publish_args(inputnode, *, run, output_dir, fmriprep_dir, fwhm) -> dict:
    """The arguments :func:`_publish` takes from the stage: where the series come from, the run's sink, the FWHM."""
    sink = {"run": run, "output_dir": output_dir, "fmriprep_dir": fmriprep_dir, "suffix": "boldmap"}
    return {"inputnode": inputnode, "sink": sink, "fwhm": fwhm}


def _publish(
    workflow, node, field, *, inputnode, sink, fwhm, stat, desc=None, grid_from=None, extra_meta=None, meta_file=None
) -> pe.Node:
    """Write ``node.field`` as the raw map of ``stat`` and its z and m standardised (and smoothed) versions, with
    their sidecars (``sink``: the arguments of :func:`init_ds_node` for the run); return the standardisation node."""
    smooth = registry.local_metric(stat).smoothed
    grid_node, grid_field = grid_from or (inputnode, "grid")
    base_meta = {"Description": METRIC_DESCRIPTIONS[stat], **(extra_meta or {})}
    label = f"{stat}_{desc}" if desc else stat
    std = pe.Node(Standardize(fwhm=fwhm if smooth else 0.0), name=f"standardize_{label}")
    workflow.connect([(node, std, [(field, "in_file")]), (grid_node, std, [(grid_field, "grid")])])
    # every sidecar also records how the series was denoised (and what the metric node reports)
    sidecar_files = pe.Node(niu.Merge(2 if meta_file else 1), name=f"sidecar_{label}", run_without_submitting=True)
    workflow.connect(inputnode, "provenance", sidecar_files, "in1")
    if meta_file:
        workflow.connect(meta_file[0], meta_file[1], sidecar_files, "in2")
    raw = init_ds_node(**sink, label=label, stat=stat, desc=desc, metadata=base_meta)
    workflow.connect([(node, raw, [(field, "in_file")]), (sidecar_files, raw, [("out", "metadata_files")])])
    for key, tag, what in (
        ("z_file", "Z", "z-scored within the mask"),
        ("m_file", "M", "divided by the mask mean"),
    ):
        meta = {**base_meta, "Standardization": what, "SmoothingFWHM": fwhm if smooth else 0.0}
        ds = init_ds_node(**sink, label=f"{label}_{tag.lower()}", stat=stat,
                          desc=f"{desc}{tag}" if desc else tag.lower(), metadata=meta)  # fmt: skip
        workflow.connect([(std, ds, [(key, "in_file")]), (sidecar_files, ds, [("out", "metadata_files")])])
    return std
