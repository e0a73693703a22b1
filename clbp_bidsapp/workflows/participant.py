"""Participant-level nipype graphs: one workflow per participant, one sub-workflow per run."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp import messages, registry
from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.config import ConnectivitySettings, DenoiseSettings, MetricSettings, Settings
from clbp_bidsapp.core.denoise import DEFAULT_BAND
from clbp_bidsapp.interfaces.denoise import Denoise
from clbp_bidsapp.interfaces.io import DerivativeSink, LoadRun, SeriesToNifti
from clbp_bidsapp.interfaces.metrics import ALFF, VMHC, DegreeCentrality, ReHo, Standardize
from clbp_bidsapp.interfaces.qc import TemporalSNR
from clbp_bidsapp.interfaces.report import ParticipantReport, RunReport
from clbp_bidsapp.io import grey_matter, spaces
from clbp_bidsapp.io.bids import RunInputs
from clbp_bidsapp.workflows.connectivity import add_connectivity
from clbp_bidsapp.workflows.utils import listify


def node_name(text: str) -> str:
    """A nipype-safe identifier from BIDS text (``sub-01_task-rest`` -> ``sub_01_task_rest``)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", text)


def init_participant_wf(
    *,
    participant: str,
    runs: Sequence[RunInputs],
    output_dir: Path,
    fmriprep_dir: Path,
    denoise: DenoiseSettings,
    metrics: MetricSettings,
    connectivity: ConnectivitySettings | None = None,
    random_seed: int = 0,
    skip: Collection[str] = (),
    name: str | None = None,
    extra_wfs: Sequence[pe.Workflow] = (),
) -> pe.Workflow:
    """Build the graph of one participant.

    Parameters
    ----------
    participant : label without ``sub-``
    runs : the participant's runs, found by :func:`clbp_bidsapp.io.bids.collect_runs`
    output_dir : derivatives root
    fmriprep_dir : fMRIPrep derivatives root (for the ``Sources`` of sidecars)
    denoise : denoising settings
    metrics : local-metric settings
    connectivity : seed FC, connectome, graph and dual-regression settings (default: the defaults)
    random_seed : seed of everything random (graph random networks)
    skip : names of optional stages not to run (see :mod:`clbp_bidsapp.stages`)
    extra_wfs : more graphs of the participant (e.g. :func:`clbp_bidsapp.workflows.perfusion.init_cbf_wf`)

    Inputs / Outputs
    ----------------
    None: every run's inputs are set from ``runs`` and every output is written by a derivative sink.
    """
    workflow = pe.Workflow(name=name or f"sub_{node_name(participant)}_wf")
    run_wfs = [
        init_run_wf(
            run=run,
            output_dir=output_dir,
            fmriprep_dir=fmriprep_dir,
            denoise=denoise,
            metrics=metrics,
            connectivity=connectivity,
            random_seed=random_seed,
            skip=skip,
            name=f"{node_name(run.source_name.removeprefix(f'sub-{participant}_'))}_wf",
        )
        for run in runs
    ]
    workflow.add_nodes([*run_wfs, *extra_wfs])
    if "report" not in skip and run_wfs:  # a participant with CBF only has no BOLD report
        gather = pe.Node(niu.Merge(len(run_wfs)), name="gather_report_fragments")
        report = pe.Node(
            ParticipantReport(
                participant=participant,
                output_dir=str(output_dir),
                settings_summary={
                    "strategy": denoise.strategy,
                    "FD threshold (mm)": denoise.fd_thresh,
                    "band-pass (Hz)": " - ".join(map(str, denoise.band_pass)) or "none",
                    "minimum retained time (s)": denoise.min_time,
                    "minimum effective DOF": denoise.min_dof,
                },
            ),
            name="report",
        )
        for index, run_wf in enumerate(run_wfs, start=1):
            workflow.connect(run_wf, "outputnode.report_fragment", gather, f"in{index}")
        workflow.connect(gather, "out", report, "fragments")
    for node in publishing_nodes(workflow):
        node.overwrite = True  # never taken from the cache: re-writes outputs deleted since the last run
    return workflow


def publishing_nodes(workflow: pe.Workflow) -> list[pe.Node]:
    """The nodes that write under the output folder (their interface has ``published_files()``)."""
    nodes = (workflow.get_node(name) for name in workflow.list_node_names())
    return [node for node in nodes if callable(getattr(node.interface, "published_files", None))]


def promised_outputs(workflow: pe.Workflow, output_dir: Path) -> list[Path]:
    """Every file a participant graph writes, relative to ``output_dir``, from its publishing nodes' inputs.

    Computed from the graph itself (the same nodes that write the files), so the list cannot drift from what
    is written; the runner checks that each exists when the participant finishes.
    """
    root = Path(output_dir)
    files = {path.relative_to(root) for node in publishing_nodes(workflow) for path in node.interface.published_files()}
    return sorted(files)


def init_run_wf(
    *,
    run: RunInputs,
    output_dir: Path,
    fmriprep_dir: Path,
    denoise: DenoiseSettings,
    metrics: MetricSettings,
    connectivity: ConnectivitySettings | None = None,
    random_seed: int = 0,
    skip: Collection[str] = (),
    name: str = "run_wf",
) -> pe.Workflow:
    """Build the graph of one run: load once, QC maps, denoise, metrics, sinks.

    Inputs (``inputnode``)
    ----------------------
    bold, mask, confounds, confounds_json : the run's fMRIPrep files (set from ``run``)

    Outputs
    -------
    Files under ``output_dir`` named after ``run.source_name`` (see docs/outputs.md).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=["bold", "mask", "confounds", "confounds_json"]),
        name="inputnode",
    )
    inputnode.inputs.bold = str(run.bold)
    inputnode.inputs.mask = str(run.mask)
    inputnode.inputs.confounds = str(run.confounds)
    if run.confounds_json is not None:
        inputnode.inputs.confounds_json = str(run.confounds_json)

    load = pe.Node(LoadRun(), name="load")
    workflow.connect([(inputnode, load, [("bold", "bold"), ("mask", "mask")])])

    sources = [_bids_uri(run.bold, fmriprep_dir), _bids_uri(run.mask, fmriprep_dir)]

    def sink(node_label: str, *, suffix: str, extension: str = ".nii.gz", metadata=None, **ents):
        node = pe.Node(
            DerivativeSink(
                output_dir=str(output_dir),
                source_name=run.source_name,
                subject=run.participant,
                session=run.session,
                entities={**run.space_entities, **ents},
                suffix=suffix,
                extension=extension,
                metadata={"Sources": sources, "SoftwareVersion": __version__, **(metadata or {})},
            ),
            name=f"ds_{node_label}",
            run_without_submitting=True,
        )
        return node

    denoise_node = pe.Node(
        Denoise(tr=run.tr, settings=_plain(denoise), where=run.source_name),
        name="denoise",
        mem_gb=_series_gb(run) * 3,
    )
    ds_qc = sink("qc", suffix="qc", extension=".tsv", desc="denoising", metadata=QC_COLUMNS)
    ds_qc.inputs.entities = {"desc": "denoising"}  # QC does not depend on the output space
    workflow.connect([
        (load, denoise_node, [("series", "series")]),
        (inputnode, denoise_node, [("confounds", "confounds"), ("confounds_json", "confounds_json")]),
        (denoise_node, ds_qc, [("qc", "in_file")]),
    ])  # fmt: skip
    if denoise.save_denoised:
        for output, desc in (("filtered", "denoised"), ("unfiltered", "denoisedUnfiltered")):
            to_nifti = pe.Node(SeriesToNifti(tr=run.tr), name=f"{output}_to_nifti")
            ds_series = sink(desc, suffix="bold", desc=desc)
            workflow.connect([
                (denoise_node, to_nifti, [(output, "series")]),
                (load, to_nifti, [("grid", "grid")]),
                (to_nifti, ds_series, [("out_file", "in_file")]),
                (denoise_node, ds_series, [(("provenance", listify), "metadata_files")]),
            ])  # fmt: skip

    outputnode = pe.Node(niu.IdentityInterface(fields=["report_fragment"]), name="outputnode")
    report_maps = []  # (node, output field, title) shown as mosaics in the report

    if "tsnr" not in skip:
        tsnr = pe.Node(TemporalSNR(), name="tsnr")
        ds_mean = sink(
            "mean",
            suffix="boldmap",
            stat="mean",
            metadata={"Description": "temporal mean of the preprocessed BOLD in the brain mask"},
        )
        ds_tsnr = sink(
            "tsnr",
            suffix="boldmap",
            stat="tsnr",
            metadata={
                "Description": "temporal SNR: mean / standard deviation of the linearly "
                "detrended preprocessed BOLD (Murphy 2007)"
            },
        )
        workflow.connect([
            (load, tsnr, [("series", "series"), ("grid", "grid")]),
            (tsnr, ds_mean, [("mean", "in_file")]),
            (tsnr, ds_tsnr, [("tsnr", "in_file")]),
        ])  # fmt: skip
        report_maps.append((tsnr, "tsnr", "temporal SNR"))

    report_maps += _add_local_metrics(
        workflow, run=run, load=load, denoise_node=denoise_node, sink=sink, denoise=denoise, metrics=metrics,
        skip=skip,
    )  # fmt: skip
    connectivity_report = add_connectivity(
        workflow, load=load, denoise_node=denoise_node, sink=sink, settings=connectivity or ConnectivitySettings(),
        smoothing_fwhm=metrics.smoothing_fwhm, random_seed=random_seed, skip=skip,
    )  # fmt: skip

    if "report" not in skip:
        run_report = pe.Node(
            RunReport(
                source_name=run.source_name,
                tr=run.tr,
                fd_thresh=denoise.fd_thresh,
                mni_background=spaces.lookup(run.space).mni_aligned,
                min_seconds=denoise.min_time,
            ),
            name="run_report",
        )
        run_report.inputs.map_titles = [title for _, _, title in report_maps]
        run_report.inputs.tissue_maps = {label: str(path) for label, path in run.probsegs.items()}
        workflow.connect([
            (load, run_report, [("series", "series"), ("grid", "grid")]),
            (inputnode, run_report, [("confounds", "confounds")]),
            (denoise_node, run_report, [("filtered", "cleaned"), ("sample_mask", "sample_mask"),
                                        ("qc", "qc")]),
            (run_report, outputnode, [("out_fragment", "report_fragment")]),
        ])  # fmt: skip
        run_report.inputs.fc_titles = connectivity_report["fc_titles"]
        run_report.inputs.atlas_names = connectivity_report["atlas_names"]
        if connectivity_report["graphs"] and len(connectivity_report["graphs"]) != len(connectivity_report["relmats"]):
            connectivity_report["graphs"] = []  # graphs are shown next to their connectome only when all exist
        for field in ("fc_maps", "relmats", "regions", "graphs"):
            sources = connectivity_report[field]
            if sources:
                merge = pe.Node(niu.Merge(len(sources)), name=f"report_{field}", run_without_submitting=True)
                for index, (node, output) in enumerate(sources, start=1):
                    workflow.connect(node, output, merge, f"in{index}")
                workflow.connect(merge, "out", run_report, field)
        if report_maps:
            maps = pe.Node(niu.Merge(len(report_maps)), name="report_maps")
            for index, (node, field, _) in enumerate(report_maps, start=1):
                workflow.connect(node, field, maps, f"in{index}")
            workflow.connect(maps, "out", run_report, "maps")
    return workflow


DEFAULT_ALFF_BAND = DEFAULT_BAND  # used for ALFF when --no-band-pass is given

METRIC_DESCRIPTIONS = {metric.name: metric.description for metric in registry.LOCAL_METRICS}


def _add_local_metrics(workflow, *, run, load, denoise_node, sink, denoise, metrics, skip) -> list:
    """ALFF/fALFF, ReHo, VMHC and degree centrality with their standardised maps; returns report maps."""
    report_maps = []
    band = tuple(denoise.band_pass) or DEFAULT_ALFF_BAND
    fwhm = metrics.smoothing_fwhm

    def publish(node, field, *, stat, desc=None, grid_from=None, extra_meta=None, meta_file=None):
        """Write the raw map and its z and m standardised (and smoothed) versions, with their sidecars."""
        smooth = registry.local_metric(stat).smoothed
        grid_node, grid_field = grid_from or (load, "grid")
        base_meta = {"Description": METRIC_DESCRIPTIONS[stat], **(extra_meta or {})}
        label = f"{stat}_{desc}" if desc else stat
        std = pe.Node(Standardize(fwhm=fwhm if smooth else 0.0), name=f"standardize_{label}")
        workflow.connect([(node, std, [(field, "in_file")]), (grid_node, std, [(grid_field, "grid")])])
        # every sidecar also records how the series was denoised (and what the metric node reports)
        sidecar_files = pe.Node(niu.Merge(2 if meta_file else 1), name=f"sidecar_{label}", run_without_submitting=True)
        workflow.connect(denoise_node, "provenance", sidecar_files, "in1")
        if meta_file:
            workflow.connect(meta_file[0], meta_file[1], sidecar_files, "in2")
        raw = sink(label, suffix="boldmap", stat=stat, desc=desc, metadata=base_meta)
        workflow.connect([(node, raw, [(field, "in_file")]), (sidecar_files, raw, [("out", "metadata_files")])])
        for key, tag, what in (
            ("z_file", "Z", "z-scored within the mask"),
            ("m_file", "M", "divided by the mask mean"),
        ):
            meta = {**base_meta, "Standardization": what, "SmoothingFWHM": fwhm if smooth else 0.0}
            ds = sink(f"{label}_{tag.lower()}", suffix="boldmap", stat=stat,
                      desc=f"{desc}{tag}" if desc else tag.lower(), metadata=meta)  # fmt: skip
            workflow.connect([(std, ds, [(key, "in_file")]), (sidecar_files, ds, [("out", "metadata_files")])])
        return std

    if "alff" not in skip:
        alff = pe.Node(ALFF(tr=run.tr, band=band), name="alff")
        workflow.connect([
            (denoise_node, alff, [("unfiltered", "series"), ("sample_mask", "sample_mask")]),
            (load, alff, [("grid", "grid")]),
        ])  # fmt: skip
        for stat in (metric.name for metric in registry.metrics_of_stage("alff")):
            std = publish(alff, stat, stat=stat, extra_meta={"Band": list(band)}, meta_file=(alff, "metadata"))
        report_maps.append((std, "z_file", registry.local_metric("falff").report_label))
    if "reho" not in skip:
        reho_node = pe.Node(ReHo(neighbourhood=metrics.reho_neighbourhood), name="reho")
        workflow.connect([(denoise_node, reho_node, [("filtered", "series")]), (load, reho_node, [("grid", "grid")])])
        std = publish(
            reho_node,
            "out_file",
            stat="reho",
            extra_meta={"Neighbourhood": metrics.reho_neighbourhood, "Band": list(denoise.band_pass)},
        )
        report_maps.append((std, "z_file", registry.local_metric("reho").report_label))
    if "vmhc" not in skip:
        vmhc_node = pe.Node(VMHC(fwhm=fwhm), name="vmhc")
        workflow.connect([(denoise_node, vmhc_node, [("filtered", "series")]), (load, vmhc_node, [("grid", "grid")])])
        space = spaces.lookup(run.space)
        std = publish(
            vmhc_node,
            "out_file",
            stat="vmhc",
            grid_from=(vmhc_node, "grid"),
            meta_file=(vmhc_node, "metadata"),
            extra_meta={
                "SeriesSmoothingFWHM": fwhm,
                "MirrorPlane": "x = 0 (world mm)",
                "MirrorTemplate": space.name,
                "MirrorTemplateSymmetric": space.symmetric,
                "MirrorNote": space.mirror_note,
            },
        )
        report_maps.append((std, "z_file", registry.local_metric("vmhc").report_label))
    if "dc" not in skip:
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
        fallback = grey_matter.fallback_message(
            has_probseg="GM" in run.probsegs, space=run.space, where=run.source_name
        )
        if fallback:
            messages.say(fallback)
        workflow.connect([(denoise_node, dc, [("filtered", "series"), ("qc", "qc")]), (load, dc, [("grid", "grid")])])
        for kind in registry.local_metric("dc").variants:
            std = publish(
                dc,
                kind,
                stat="dc",
                desc=kind,
                grid_from=(dc, "grid"),
                meta_file=(dc, "metadata"),
                extra_meta={"Degree": kind},  # the threshold comes with the node's metadata
            )
        report_maps.append((std, "z_file", registry.local_metric("dc").report_label))
    return report_maps


QC_COLUMNS = {
    "n_volumes": {"Description": "volumes of the run"},
    "n_dummy": {"Description": "initial non-steady-state volumes dropped (--dummy-scans)"},
    "n_censored": {
        "Description": "volumes after the dummy scans censored for motion (FD/DVARS above threshold and, with "
        "--censor-neighbours, their neighbours); dummy scans are not counted"
    },
    "fraction_censored": {"Description": "n_censored / (n_volumes - n_dummy)"},
    "n_retained": {"Description": "volumes analysed: n_volumes - n_dummy - n_censored"},
    "retained_seconds": {"Description": "retained volumes times the repetition time", "Units": "s"},
    "mean_fd": {"Description": "mean framewise displacement (Power 2012) after the dummy scans", "Units": "mm"},
    "max_fd": {"Description": "maximum framewise displacement after the dummy scans", "Units": "mm"},
    "dof_lost": {
        "Description": "nominal degrees of freedom removed by the regression: numerical rank of the confound "
        "regressors + mean + linear trend (the band-pass is not counted: see dof_bandpass)"
    },
    "dof_unfiltered": {
        "Description": "effective degrees of freedom tr(C)^2/tr(C^2) (C = A A^T, A the linear map from the "
        "retained raw series to the denoised series) of the unfiltered series used by "
        + "/".join(m.label for m in registry.metrics_on("unfiltered"))
        + "; equals n_retained - dof_lost"
    },
    "dof_bandpass": {
        "Description": "effective degrees of freedom tr(C)^2/tr(C^2) of the band-passed series used by "
        + ", ".join(m.label for m in registry.metrics_on("filtered"))
        + " and connectivity (n/a without band-pass); compared with --min-dof"
    },
    "used": {
        "Description": "whether the run was analysed: retained_seconds >= --min-time and dof_bandpass (dof_unfiltered "
        "without band-pass) >= --min-dof"
    },
    "legacy_confound_names": {
        "Description": "whether the confounds had fMRIPrep < 1.4 column names (X, RotX, FramewiseDisplacement, "
        "aCompCor00...), mapped to current names (see the maps' Denoising.LegacyConfoundNames)"
    },
}


def _plain(denoise: DenoiseSettings) -> dict:
    return Settings(denoise=denoise).to_dict()["denoise"]


def _series_gb(run: RunInputs) -> float:
    """Approximate float32 size of the run's in-mask series, for the scheduler's memory budget."""
    return max(run.bold.stat().st_size * 3 / 1e9, 0.1)


def _bids_uri(path: Path, dataset_root: Path) -> str:
    """The BIDS URI ``bids:fmriprep:<relative path>`` of an input (absolute path outside the root)."""
    try:
        return f"bids:fmriprep:{Path(path).resolve().relative_to(Path(dataset_root).resolve())}"
    except ValueError:
        return str(path)
