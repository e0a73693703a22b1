"""Participant-level nipype graphs: one workflow per participant, one sub-workflow per run."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp import registry
from clbp_bidsapp.config import ConnectivitySettings, DenoiseSettings, MetricSettings
from clbp_bidsapp.interfaces.report import ParticipantReport
from clbp_bidsapp.io.bids import RunInputs
from clbp_bidsapp.workflows.connectivity import atlas_labels, seed_report_titles
from clbp_bidsapp.workflows.denoising import DENOISE_INPUTS, DENOISE_OUTPUTS, TSNR_REPORT_TITLE, init_denoise_wf
from clbp_bidsapp.workflows.local_metrics import report_title
from clbp_bidsapp.workflows.report import init_run_report_wf


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
    """Build the graph of one run: the denoising, then one sub-workflow per stage not in ``skip``, then the report.

    The stages are those of :data:`clbp_bidsapp.registry.PARTICIPANT_STAGES` with a builder (``Stage.workflow``),
    in the registry's order; each is named ``<stage>_wf`` and each field of its ``inputnode`` is connected from
    the ``outputnode`` field of the same name of the denoising or of an earlier stage (see ``docs/design.md``).

    Inputs (``inputnode``)
    ----------------------
    bold, mask, confounds, confounds_json : the run's fMRIPrep files (set from ``run``)

    Outputs (``outputnode``)
    ------------------------
    report_fragment : the run's part of the participant report (unset with ``--skip report``). Every file is
    written under ``output_dir``, named after ``run.source_name`` (see docs/outputs.md).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(DENOISE_INPUTS)), name="inputnode")
    for field in DENOISE_INPUTS:
        path = getattr(run, field)
        if path is not None:
            setattr(inputnode.inputs, field, str(path))
    outputnode = pe.Node(niu.IdentityInterface(fields=["report_fragment"]), name="outputnode")
    arguments = {
        "run": run,
        "output_dir": output_dir,
        "fmriprep_dir": fmriprep_dir,
        "denoise": denoise,
        "metrics": metrics,
        "connectivity": connectivity or ConnectivitySettings(),
        "random_seed": random_seed,
    }
    denoise_wf = init_denoise_wf(**builder_arguments(init_denoise_wf, arguments))
    providers = {field: (inputnode, field) for field in DENOISE_INPUTS}
    _connect_inputs(workflow, denoise_wf, providers)
    providers |= {field: (denoise_wf, f"outputnode.{field}") for field in DENOISE_OUTPUTS}
    stage_wfs = {}
    for stage in registry.PARTICIPANT_STAGES:
        if not stage.workflow or {stage.name, *stage.needs} & set(skip):
            continue
        builder = stage_builder(stage.workflow)
        stage_wf = builder(**builder_arguments(builder, arguments), name=f"{stage.name}_wf")
        _connect_inputs(workflow, stage_wf, providers)
        providers |= {field: (stage_wf, f"outputnode.{field}") for field in stage_outputs(stage_wf)}
        stage_wfs[stage.name] = stage_wf
    if "report" not in skip:
        report_wf = _run_report_wf(workflow, stage_wfs, providers, arguments)
        workflow.connect(report_wf, "outputnode.report_fragment", outputnode, "report_fragment")
    return workflow


def stage_inputs(stage_wf: pe.Workflow) -> list[str]:
    """The fields of a stage sub-workflow's ``inputnode``: what it consumes."""
    return list(stage_wf.get_node("inputnode").interface._fields)


def stage_outputs(stage_wf: pe.Workflow) -> list[str]:
    """The fields of a stage sub-workflow's ``outputnode``: what it gives the later stages and the report."""
    return list(stage_wf.get_node("outputnode").interface._fields)


def stage_builder(target: str) -> Callable[..., pe.Workflow]:
    """The ``init_*_wf`` function named ``module:function`` by a stage record."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def builder_arguments(builder: Callable[..., pe.Workflow], arguments: dict) -> dict:
    """The run's settings that ``builder`` takes (each builder names the ones it needs as keyword arguments)."""
    return {key: value for key, value in arguments.items() if key in inspect.signature(builder).parameters}


def _connect_inputs(workflow: pe.Workflow, stage_wf: pe.Workflow, providers: dict, *, required: bool = True) -> None:
    """Connect each ``inputnode`` field of ``stage_wf`` from its provider (``{field: (node or workflow, port)}``)."""
    for field in stage_inputs(stage_wf):
        if field not in providers:
            if required:
                raise RuntimeError(f"{stage_wf.name} reads {field!r}, which no earlier stage gives")
            continue
        source, port = providers[field]
        workflow.connect(source, port, stage_wf, f"inputnode.{field}")


def _run_report_wf(workflow: pe.Workflow, stage_wfs: dict, providers: dict, arguments: dict) -> pe.Workflow:
    """Add the run report, fed by the denoising and by what the built stages show (``report_map``, ...)."""
    connectivity = arguments["connectivity"]
    shown = [(name, stage_wf) for name, stage_wf in stage_wfs.items() if "report_map" in stage_outputs(stage_wf)]
    report_wf = init_run_report_wf(
        run=arguments["run"],
        denoise=arguments["denoise"],
        map_titles=[TSNR_REPORT_TITLE if name == "tsnr" else report_title(name) for name, _ in shown],
        fc_titles=seed_report_titles(connectivity) if "seedfc" in stage_wfs else [],
        atlas_names=atlas_labels(connectivity) if "connectome" in stage_wfs else [],
    )
    providers = {**providers}
    if shown:
        maps = pe.Node(niu.Merge(len(shown)), name="report_maps")
        for index, (_, stage_wf) in enumerate(shown, start=1):
            workflow.connect(stage_wf, "outputnode.report_map", maps, f"in{index}")
        providers["maps"] = (maps, "out")
    _connect_inputs(workflow, report_wf, providers, required=False)
    return report_wf
