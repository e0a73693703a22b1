"""Shared by every stage sub-workflow of a run: its workflow with ``inputnode``/``outputnode``, and the derivative
sink of the run's outputs (fMRIPrep's ``init_ds_*`` role)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.interfaces.io import DerivativeSink
from clbp_bidsapp.io.bids import RunInputs


def init_stage_wf(name: str, inputs: list[str], outputs: list[str]) -> tuple[pe.Workflow, pe.Node, pe.Node]:
    """(workflow, inputnode, outputnode) of a stage: ``inputs`` are what it consumes, ``outputs`` what it gives."""
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=list(inputs)), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(outputs)), name="outputnode")
    return workflow, inputnode, outputnode


def init_ds_node(
    run: RunInputs,
    *,
    output_dir: Path,
    fmriprep_dir: Path,
    label: str,
    suffix: str,
    extension: str = ".nii.gz",
    metadata: dict | None = None,
    in_space: bool = True,
    **entities,
) -> pe.Node:
    """A :class:`DerivativeSink` node ``ds_<label>`` that writes one output of ``run`` under ``output_dir``.

    The file is named after ``run.source_name`` with the run's space entities (unless ``in_space`` is False: QC
    tables do not depend on the output space), then ``entities``, ``suffix`` and ``extension``. Its sidecar holds
    ``metadata`` after the run's ``Sources`` (BIDS URIs of the BOLD and mask read) and ``SoftwareVersion``; connect
    ``metadata_files``/``metadata_file`` to add what the computing nodes record. Connect ``in_file`` to the result.
    """
    sources = [bids_uri(run.bold, fmriprep_dir), bids_uri(run.mask, fmriprep_dir)]
    return pe.Node(
        DerivativeSink(
            output_dir=str(output_dir),
            source_name=run.source_name,
            subject=run.participant,
            session=run.session,
            entities={**run.space_entities, **entities} if in_space else entities,
            suffix=suffix,
            extension=extension,
            metadata={"Sources": sources, "SoftwareVersion": __version__, **(metadata or {})},
        ),
        name=f"ds_{label}",
        run_without_submitting=True,
    )


def bids_uri(path: Path, dataset_root: Path) -> str:
    """The BIDS URI ``bids:fmriprep:<relative path>`` of an input (absolute path outside the root)."""
    try:
        return f"bids:fmriprep:{Path(path).resolve().relative_to(Path(dataset_root).resolve())}"
    except ValueError:
        return str(path)
