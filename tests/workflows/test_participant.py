"""The participant graph's publishing nodes and the outputs it promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from clbp_bidsapp.config import Settings
from clbp_bidsapp.stages import PARTICIPANT_STAGES
from clbp_bidsapp.workflows.participant import init_participant_wf, promised_outputs, publishing_nodes


@pytest.fixture(scope="module")
def runs(one_participant):
    return one_participant


def _workflow(runs, out: Path, skip, settings: Settings | None = None):
    data, run_list = runs
    settings = settings or Settings()
    return init_participant_wf(
        participant="01", runs=run_list, output_dir=out, fmriprep_dir=data.fmriprep_dir, denoise=settings.denoise,
        metrics=settings.metrics, connectivity=settings.connectivity, skip=skip,
    )  # fmt: skip


def test_promised_outputs_follow_the_settings(runs, tmp_path):
    out = tmp_path / "out"
    keep = {"alff", "report"}
    workflow = _workflow(runs, out, skip=tuple(s for s in PARTICIPANT_STAGES if s not in keep))
    prefix = "sub-01/func/sub-01_task-rest"
    space = "space-MNI152NLin2009cAsym_res-4"
    maps = [
        f"{prefix}_{space}_stat-{stat}{desc}_boldmap.{ext}"
        for stat in ("alff", "falff")
        for desc in ("", "_desc-m", "_desc-z")
        for ext in ("json", "nii.gz")
    ]
    expected = sorted(
        Path(p) for p in [
            "sub-01.html", f"{prefix}_desc-denoising_qc.json", f"{prefix}_desc-denoising_qc.tsv", *maps,
        ]
    )  # fmt: skip
    assert promised_outputs(workflow, out) == expected

    saved = _workflow(runs, out, skip=tuple(s for s in PARTICIPANT_STAGES if s != "tsnr"),
                      settings=Settings().replace({"denoise": {"save_denoised": True}}))  # fmt: skip
    names = {p.name for p in promised_outputs(saved, out)}
    assert f"sub-01_task-rest_{space}_desc-denoised_bold.nii.gz" in names
    assert f"sub-01_task-rest_{space}_stat-tsnr_boldmap.nii.gz" in names
    assert "sub-01.html" not in names and not any("alff" in n for n in names)


def test_publishing_nodes_always_run_and_compute_nodes_are_cached(runs, tmp_path):
    workflow = _workflow(runs, tmp_path / "out", skip=("seedfc", "connectome", "graph", "dualreg"))
    publishing = publishing_nodes(workflow)
    assert {type(n.interface).__name__ for n in publishing} == {"DerivativeSink", "ParticipantReport"}
    assert all(node.overwrite is True for node in publishing)
    others = [workflow.get_node(name) for name in workflow.list_node_names()]
    computing = [node for node in others if node not in publishing]
    assert computing and all(node.overwrite is None for node in computing)
    # every publishing node's files are promised, and nothing else
    files = {p for node in publishing for p in node.interface.published_files()}
    assert {tmp_path / "out" / p for p in promised_outputs(workflow, tmp_path / "out")} == files
