"""The participant graph for each --skip value, built (not run) on a tiny synthetic dataset: nodes and edges.

Each stage's compute node is found by its interface class; every local metric of the registry must have its
compute node fed by the denoised series the registry names, and a standardisation node per map.
"""

from __future__ import annotations

import importlib

import pytest
from nipype.pipeline.engine.utils import _remove_nonjoin_identity_nodes

from clbp_bidsapp import registry
from clbp_bidsapp.config import Settings
from clbp_bidsapp.interfaces.connectivity import Connectome, DualRegression, GraphMeasures, SeedFC
from clbp_bidsapp.interfaces.denoise import Denoise
from clbp_bidsapp.interfaces.io import DerivativeSink
from clbp_bidsapp.interfaces.qc import TemporalSNR
from clbp_bidsapp.interfaces.report import ParticipantReport, RunReport
from clbp_bidsapp.stages import PARTICIPANT_STAGES
from clbp_bidsapp.workflows.participant import init_participant_wf


def _interface(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# the stages of the BOLD graph (cbf's nodes come with --aslprep-dir: tests/integration/test_cbf_cli.py)
BOLD_STAGES = tuple(stage for stage in PARTICIPANT_STAGES if stage != "cbf")
# the interface of each stage's compute node (local-metric stages come from the registry)
STAGE_INTERFACES = {
    "tsnr": {TemporalSNR},
    "seedfc": {SeedFC},
    "connectome": {Connectome},
    "graph": {GraphMeasures},
    "dualreg": {DualRegression},
    "report": {RunReport, ParticipantReport},
    **{m.stage: {_interface(x.interface) for x in registry.metrics_of_stage(m.stage)} for m in registry.LOCAL_METRICS},
}


@pytest.fixture(scope="module")
def dataset(one_participant):
    data, runs = one_participant
    return data, runs[:1]


def _graph(dataset, tmp_path, skip):
    """(nodes by short name, edges as (source, target, source field, target field)) of the flattened graph."""
    data, runs = dataset
    settings = Settings()
    workflow = init_participant_wf(
        participant="01", runs=runs, output_dir=tmp_path / "out", fmriprep_dir=data.fmriprep_dir,
        denoise=settings.denoise, metrics=settings.metrics, connectivity=settings.connectivity, skip=skip,
    )  # fmt: skip
    flat = _remove_nonjoin_identity_nodes(workflow._create_flat_graph())  # the stages' inputnode/outputnode
    nodes = {node.name: node for node in flat.nodes}
    assert len(nodes) == flat.number_of_nodes(), "node names must be unique within one run"
    edges = set()
    for source, target, data_ in flat.edges(data=True):
        for source_field, target_field in data_["connect"]:
            field = source_field if isinstance(source_field, str) else source_field[0]
            edges.add((source.name, target.name, field, target_field))
    return nodes, edges


def _present(nodes) -> set[str]:
    """The stages whose compute node is in the graph."""
    kinds = {type(node.interface) for node in nodes.values()}
    return {stage for stage, interfaces in STAGE_INTERFACES.items() if interfaces & kinds}


def _standardize_name(metric: registry.LocalMetric, variant: str | None) -> str:
    return f"standardize_{metric.name}_{variant}" if variant else f"standardize_{metric.name}"


def test_every_participant_stage_has_a_compute_node():
    assert set(STAGE_INTERFACES) == set(BOLD_STAGES)


@pytest.mark.parametrize("stage", list(BOLD_STAGES))
def test_skipping_one_stage_removes_its_nodes_and_only_those(dataset, tmp_path, stage):
    nodes, edges = _graph(dataset, tmp_path, (stage,))
    removed = {stage, "graph"} if stage == "connectome" else {stage}  # graph measures need the connectome
    assert _present(nodes) == set(BOLD_STAGES) - removed
    denoise = next(name for name, node in nodes.items() if isinstance(node.interface, Denoise))
    for metric in registry.LOCAL_METRICS:
        names = [_standardize_name(metric, v) for v in (metric.variants or (None,))]
        if metric.stage == stage:
            assert not any(name in nodes for name in names)
            continue
        compute = next(n for n, node in nodes.items() if type(node.interface) is _interface(metric.interface))
        assert (denoise, compute, metric.series, "series") in edges, metric.name
        for variant, name in zip(metric.variants or (None,), names, strict=True):
            assert (compute, name, variant or _output_field(metric), "in_file") in edges, name
            smoothing = nodes[name].interface.inputs.fwhm
            assert (smoothing > 0) == metric.smoothed, name


def _output_field(metric: registry.LocalMetric) -> str:
    """The interface output that holds the metric's map ("out_file" when the interface writes one map)."""
    outputs = _interface(metric.interface).output_spec().copyable_trait_names()
    return metric.name if metric.name in outputs else "out_file"


def test_the_report_gathers_every_run_fragment_and_the_metric_maps(dataset, tmp_path):
    nodes, edges = _graph(dataset, tmp_path, ())
    assert ("report_maps", "run_report", "out", "maps") in edges
    shown = [m for m in registry.LOCAL_METRICS if m.name != "alff"]  # one map per stage: fALFF for alff
    report_inputs = {edge[0] for edge in edges if edge[1] == "report_maps"}
    assert report_inputs == {"tsnr"} | {_standardize_name(m, m.variants[-1] if m.variants else None) for m in shown}
    titles = nodes["run_report"].interface.inputs.map_titles
    assert titles == ["temporal SNR", *(m.report_label for m in shown)]
    assert "VMHC (z)" in titles and "fALFF (z, smoothed)" in titles  # smoothing stated as the registry says


@pytest.mark.parametrize(
    "skip",
    [
        ("alff", "reho", "vmhc", "dc"),  # connectivity only
        ("seedfc", "connectome", "graph", "dualreg", "report"),  # local metrics only
        BOLD_STAGES,  # denoising and its QC only
    ],
)
def test_combinations_keep_the_denoising_and_its_qc(dataset, tmp_path, skip):
    nodes, edges = _graph(dataset, tmp_path, skip)
    assert _present(nodes) == set(BOLD_STAGES) - set(skip)
    denoise = next(name for name, node in nodes.items() if isinstance(node.interface, Denoise))
    sinks = {name: node for name, node in nodes.items() if isinstance(node.interface, DerivativeSink)}
    qc_sinks = [name for name, node in sinks.items() if node.interface.inputs.suffix == "qc"]
    assert qc_sinks and all(any(e[0] == denoise and e[1] == name for e in edges) for name in qc_sinks)
    maps = {name for name, node in sinks.items() if node.interface.inputs.suffix == "boldmap"}
    local_skipped = {m.stage for m in registry.LOCAL_METRICS} <= set(skip)
    assert (not maps) == (local_skipped and "tsnr" in skip and "seedfc" in skip)
    assert any(name.startswith("standardize_") for name in nodes) == (not local_skipped)
