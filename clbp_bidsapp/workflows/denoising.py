"""The first stage of every run: load the run once, regress the confounds out (with censoring), write the QC table.

Every other stage of the run (:func:`clbp_bidsapp.workflows.participant.init_run_wf`) reads the outputs of
:func:`init_denoise_wf`; it is not a ``--skip`` stage.
"""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from clbp_bidsapp import registry
from clbp_bidsapp.config import DenoiseSettings, Settings
from clbp_bidsapp.interfaces.denoise import Denoise
from clbp_bidsapp.interfaces.io import LoadRun, SeriesToNifti
from clbp_bidsapp.interfaces.qc import TemporalSNR
from clbp_bidsapp.io.bids import RunInputs
from clbp_bidsapp.workflows.common import init_ds_node, init_stage_wf
from clbp_bidsapp.workflows.utils import listify

DENOISE_INPUTS = ("bold", "mask", "confounds", "confounds_json")
DENOISE_OUTPUTS = ("series", "grid", "filtered", "unfiltered", "sample_mask", "qc", "provenance")


def init_denoise_wf(
    *, run: RunInputs, output_dir: Path, fmriprep_dir: Path, denoise: DenoiseSettings, name: str = "denoise_wf"
) -> pe.Workflow:
    """Load the run, denoise it, write its QC table (and, with ``--save-denoised``, the denoised series).

    Inputs (``inputnode``)
    ----------------------
    bold, mask, confounds, confounds_json : the run's fMRIPrep files

    Outputs (``outputnode``)
    ------------------------
    series : the preprocessed in-mask series (time, voxels), as loaded
    grid : the run's mask and affine
    filtered : the band-passed denoised series (the unfiltered one without band-pass)
    unfiltered : the denoised series without band-pass
    sample_mask : the retained (uncensored) volumes
    qc : the QC table of the denoising (also written as ``desc-denoising_qc.tsv``)
    provenance : JSON of how the series was denoised, merged into every sidecar of the run
    """
    workflow, inputnode, outputnode = init_stage_wf(name, DENOISE_INPUTS, DENOISE_OUTPUTS)
    load = pe.Node(LoadRun(), name="load")
    denoise_node = pe.Node(
        Denoise(tr=run.tr, settings=_plain(denoise), where=run.source_name),
        name="denoise",
        mem_gb=_series_gb(run) * 3,
    )
    ds_qc = init_ds_node(run, output_dir=output_dir, fmriprep_dir=fmriprep_dir, label="qc", suffix="qc",
                         extension=".tsv", metadata=QC_COLUMNS, in_space=False, desc="denoising")  # fmt: skip
    workflow.connect([
        (inputnode, load, [("bold", "bold"), ("mask", "mask")]),
        (load, denoise_node, [("series", "series")]),
        (inputnode, denoise_node, [("confounds", "confounds"), ("confounds_json", "confounds_json")]),
        (denoise_node, ds_qc, [("qc", "in_file")]),
        (load, outputnode, [("series", "series"), ("grid", "grid")]),
        (denoise_node, outputnode, [(field, field) for field in DENOISE_OUTPUTS[2:]]),
    ])  # fmt: skip
    if denoise.save_denoised:
        for output, desc in (("filtered", "denoised"), ("unfiltered", "denoisedUnfiltered")):
            to_nifti = pe.Node(SeriesToNifti(tr=run.tr), name=f"{output}_to_nifti")
            ds_series = init_ds_node(run, output_dir=output_dir, fmriprep_dir=fmriprep_dir, label=desc,
                                     suffix="bold", desc=desc,
                                     metadata={"Description": SERIES_DESCRIPTION[output]})  # fmt: skip
            workflow.connect([
                (denoise_node, to_nifti, [(output, "series")]),
                (load, to_nifti, [("grid", "grid")]),
                (to_nifti, ds_series, [("out_file", "in_file")]),
                (denoise_node, ds_series, [(("provenance", listify), "metadata_files")]),
            ])  # fmt: skip
    return workflow


def init_tsnr_wf(*, run: RunInputs, output_dir: Path, fmriprep_dir: Path, name: str = "tsnr_wf") -> pe.Workflow:
    """Stage ``tsnr``: the temporal mean and temporal SNR maps of the preprocessed BOLD.

    Inputs (``inputnode``)
    ----------------------
    series, grid : the preprocessed series and its grid (:func:`init_denoise_wf`)

    Outputs (``outputnode``)
    ------------------------
    report_map : the tSNR map shown in the run report
    """
    workflow, inputnode, outputnode = init_stage_wf(name, ["series", "grid"], ["report_map"])
    tsnr = pe.Node(TemporalSNR(), name="tsnr")
    sink = {"run": run, "output_dir": output_dir, "fmriprep_dir": fmriprep_dir, "suffix": "boldmap"}
    ds_mean = init_ds_node(
        **sink,
        label="mean",
        stat="mean",
        metadata={"Description": "temporal mean of the preprocessed BOLD in the brain mask"},
    )
    ds_tsnr = init_ds_node(
        **sink,
        label="tsnr",
        stat="tsnr",
        metadata={
            "Description": "temporal SNR: mean / standard deviation of the linearly "
            "detrended preprocessed BOLD (Murphy 2007)"
        },
    )
    workflow.connect([
        (inputnode, tsnr, [("series", "series"), ("grid", "grid")]),
        (tsnr, ds_mean, [("mean", "in_file")]),
        (tsnr, ds_tsnr, [("tsnr", "in_file")]),
        (tsnr, outputnode, [("tsnr", "report_map")]),
    ])  # fmt: skip
    return workflow


TSNR_REPORT_TITLE = "temporal SNR"

# the Description (RECOMMENDED by BIDS) of the --save-denoised series
SERIES_DESCRIPTION = {
    "filtered": "fMRIPrep's preprocessed BOLD after confound regression and censoring (see Denoising), band-passed "
    "unless --no-band-pass: the series of ReHo, VMHC, degree centrality and connectivity",
    "unfiltered": "fMRIPrep's preprocessed BOLD after confound regression and censoring (see Denoising), not "
    "band-passed: the series of ALFF and fALFF",
}
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
