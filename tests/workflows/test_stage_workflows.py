"""Each stage sub-workflow on its own (built, not run): its contract, and the run workflow composed of them.

A stage builder's ``inputnode``/``outputnode`` fields must be those its docstring lists; built with only its
``inputnode`` connected, every node of the stage must have each mandatory input set or connected (so a stage needs
nothing but what it declares); the run workflow must hold one ``<stage>_wf`` per stage not skipped.
"""

from __future__ import annotations

import inspect
import re

import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp import registry
from clbp_bidsapp.config import Settings
from clbp_bidsapp.workflows.denoising import init_denoise_wf
from clbp_bidsapp.workflows.execution import describe_crash
from clbp_bidsapp.workflows.participant import (
    builder_arguments,
    init_run_wf,
    stage_builder,
    stage_inputs,
    stage_outputs,
)
from clbp_bidsapp.workflows.report import init_run_report_wf

BUILT_STAGES = [stage for stage in registry.PARTICIPANT_STAGES if stage.workflow]
BUILDERS = {"denoise": init_denoise_wf, "report": init_run_report_wf} | {
    stage.name: stage_builder(stage.workflow) for stage in BUILT_STAGES
}


@pytest.fixture(scope="module")
def arguments(one_participant, tmp_path_factory):
    data, runs = one_participant
    settings = Settings()
    return {
        "run": runs[0],
        "output_dir": tmp_path_factory.mktemp("out"),
        "fmriprep_dir": data.fmriprep_dir,
        "denoise": settings.denoise,
        "metrics": settings.metrics,
        "connectivity": settings.connectivity,
        "random_seed": 0,
    }


def _documented_fields(builder, section: str) -> list[str]:
    """The fields listed under ``Inputs (``inputnode``)`` or ``Outputs (``outputnode``)`` of the docstring."""
    doc = inspect.getdoc(builder)
    match = re.search(rf"^\w+ \(``{section}``\)\n-+\n(.*?)(?:\n\n|\Z)", doc, re.MULTILINE | re.DOTALL)
    assert match, f"{builder.__name__}: no {section} section in the docstring"
    fields = []
    for line in match.group(1).splitlines():
        if not line.startswith(" ") and " : " in line:
            fields += [name.strip() for name in line.split(" : ")[0].split(",")]
    return fields


def _unsatisfied(workflow: pe.Workflow) -> list[str]:
    """``node.input`` of every mandatory input that is neither set nor connected, in the flattened graph."""
    flat = workflow._create_flat_graph()
    connected = {(target, field) for _, target, data in flat.edges(data=True) for _, field in data["connect"]}
    missing = []
    for node in flat.nodes():
        for field in node.inputs.traits(mandatory=True):
            value = getattr(node.inputs, field)
            if (node, field) not in connected and not (value is not None and str(value) != "<undefined>"):
                missing.append(f"{node.fullname}.{field}")
    return missing


@pytest.mark.parametrize("stage", list(BUILDERS))
def test_stage_contract_matches_its_docstring(arguments, stage):
    builder = BUILDERS[stage]
    stage_wf = builder(**builder_arguments(builder, arguments))
    assert stage_inputs(stage_wf) == _documented_fields(builder, "inputnode")
    assert stage_outputs(stage_wf) == _documented_fields(builder, "outputnode")
    assert stage_wf.name == f"{stage}_wf"  # its default name is the one init_run_wf gives (crash messages)


@pytest.mark.parametrize("stage", list(BUILDERS))
def test_stage_builds_with_only_its_inputs_connected(arguments, stage):
    """Every node's mandatory inputs come from the stage's settings or its inputnode, and it fills its outputs."""
    builder = BUILDERS[stage]
    stage_wf = builder(**builder_arguments(builder, arguments))
    parent = pe.Workflow(name="parent")
    upstream = pe.Node(niu.IdentityInterface(fields=stage_inputs(stage_wf)), name="upstream")
    for field in stage_inputs(stage_wf):
        parent.connect(upstream, field, stage_wf, f"inputnode.{field}")
    unsatisfied = [name for name in _unsatisfied(parent) if ".upstream." not in f".{name}"]
    assert unsatisfied == [], unsatisfied
    filled = {
        f for _, target, d in stage_wf._graph.edges(data=True) if target.name == "outputnode" for _, f in d["connect"]
    }
    assert filled == set(stage_outputs(stage_wf)), stage


def _sub_workflows(workflow: pe.Workflow) -> set[str]:
    return {node.name for node in workflow._graph.nodes() if isinstance(node, pe.Workflow)}


ALL_STAGES = {"denoise_wf", "report_wf", *(f"{stage.name}_wf" for stage in BUILT_STAGES)}


@pytest.mark.parametrize(
    ("skip", "absent"),
    [
        ((), set()),
        *[((stage.name,), {f"{stage.name}_wf"}) for stage in BUILT_STAGES if stage.name != "connectome"],
        (("connectome",), {"connectome_wf", "graph_wf"}),  # graph measures need the connectome
        (("report",), {"report_wf"}),
        (("cbf",), set()),  # built per ASL run by workflows/perfusion.py, never inside the run's graph
        (("alff", "reho", "vmhc", "dc", "tsnr"), {"alff_wf", "reho_wf", "vmhc_wf", "dc_wf", "tsnr_wf"}),
        (("seedfc", "connectome", "dualreg", "report"), {"seedfc_wf", "connectome_wf", "graph_wf", "dualreg_wf",
                                                         "report_wf"}),
    ],
)  # fmt: skip
def test_run_wf_composes_one_sub_workflow_per_stage_not_skipped(arguments, skip, absent):
    run_wf = init_run_wf(**builder_arguments(init_run_wf, arguments), skip=skip)
    assert _sub_workflows(run_wf) == ALL_STAGES - absent
    assert _unsatisfied(run_wf) == []  # every stage's inputnode is fed by the denoising or an earlier stage
    graph = run_wf.get_node("graph_wf")
    if graph is not None:  # its matrices come from the connectome stage
        sources = {s.name for s, t, _ in run_wf._graph.edges(data=True) if t is graph}
        assert sources == {"connectome_wf", "denoise_wf"}


def test_stage_inputs_come_from_the_stage_that_gives_them(arguments):
    run_wf = init_run_wf(**builder_arguments(init_run_wf, arguments))
    givers = {}
    for source, target, data in run_wf._graph.edges(data=True):
        for source_field, target_field in data["connect"]:
            givers[(target.name, target_field)] = (source.name, source_field)
    assert givers[("alff_wf", "inputnode.unfiltered")] == ("denoise_wf", "outputnode.unfiltered")
    assert givers[("dc_wf", "inputnode.qc")] == ("denoise_wf", "outputnode.qc")
    assert givers[("graph_wf", "inputnode.relmats")] == ("connectome_wf", "outputnode.relmats")
    assert givers[("report_wf", "inputnode.fc_maps")] == ("seedfc_wf", "outputnode.fc_maps")
    assert givers[("report_wf", "inputnode.confounds")] == ("inputnode", "confounds")
    assert givers[("report_wf", "inputnode.maps")] == ("report_maps", "out")
    maps = run_wf.get_node("report_maps")
    shown = sorted(int(f[2:]) for s, t, d in run_wf._graph.edges(data=True) if t is maps for _, f in d["connect"])
    assert shown == [1, 2, 3, 4, 5]  # tsnr and the four local-metric stages


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("clbp_wf.sub_01_wf.task_rest_wf.alff_wf.ds_alff", "node ds_alff of stage alff failed: disk"),
        ("clbp_wf.sub_01_wf.task_rest_wf.denoise_wf.load", "node load of stage denoising failed: disk"),
        ("clbp_wf.sub_01_wf.cbf_sub_01_wf.cbf_maps", "node cbf_maps failed: disk"),
    ],
)
def test_a_crash_names_the_stage_a_user_knows(tmp_path, node, expected):
    crash = tmp_path / "crash-x.txt"
    crash.write_text(f"Node: {node}\nWorking directory: /w\n\nTraceback:\nOSError: disk\n")
    assert describe_crash(crash, {"sub_01_wf": "01"}) == ("01", expected)
