"""The run's part of stage ``report``: a fragment of the participant's HTML report (QC plots and stage maps)."""

from __future__ import annotations

from collections.abc import Sequence

from nipype.pipeline import engine as pe

from clbp_bidsapp.config import DenoiseSettings
from clbp_bidsapp.interfaces.report import RunReport
from clbp_bidsapp.io import spaces
from clbp_bidsapp.io.bids import RunInputs
from clbp_bidsapp.workflows.common import init_stage_wf

REPORT_INPUTS = ("series", "grid", "filtered", "sample_mask", "qc", "confounds")
SHOWN_INPUTS = ("maps", "fc_maps", "relmats", "regions", "graphs")


def init_run_report_wf(
    *,
    run: RunInputs,
    denoise: DenoiseSettings,
    map_titles: Sequence[str] = (),
    fc_titles: Sequence[str] = (),
    atlas_names: Sequence[str] = (),
    name: str = "report_wf",
) -> pe.Workflow:
    """The run's report fragment: carpet and motion plots of the denoising, then what the other stages made.

    Inputs (``inputnode``)
    ----------------------
    series, grid, filtered, sample_mask, qc : see :func:`~clbp_bidsapp.workflows.denoising.init_denoise_wf`
    confounds : the run's fMRIPrep confounds table
    maps : the stages' report maps, one per title of ``map_titles`` (may be left unconnected)
    fc_maps : seed FC maps, one per title of ``fc_titles`` (may be left unconnected)
    relmats, regions : connectome matrices and regions, one per name of ``atlas_names`` (may be left unconnected)
    graphs : global graph measures, one per name of ``atlas_names`` (may be left unconnected)

    Outputs (``outputnode``)
    ------------------------
    report_fragment : the run's HTML fragment, gathered by the participant's report
    """
    workflow, inputnode, outputnode = init_stage_wf(name, [*REPORT_INPUTS, *SHOWN_INPUTS], ["report_fragment"])
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
    run_report.inputs.map_titles = list(map_titles)
    run_report.inputs.fc_titles = list(fc_titles)
    run_report.inputs.atlas_names = list(atlas_names)
    run_report.inputs.tissue_maps = {label: str(path) for label, path in run.probsegs.items()}
    workflow.connect([
        (inputnode, run_report, [("series", "series"), ("grid", "grid"), ("confounds", "confounds"),
                                 ("filtered", "cleaned"), ("sample_mask", "sample_mask"), ("qc", "qc"),
                                 *((field, field) for field in SHOWN_INPUTS)]),
        (run_report, outputnode, [("out_fragment", "report_fragment")]),
    ])  # fmt: skip
    return workflow
