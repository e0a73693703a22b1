"""BIDS conventions of the outputs (entity order, dataset links, units) and the pick among variants of a run."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import bids, derivatives, images

# The order of these entities in BIDS 1.10 (schema rules/entities.yaml): space, atlas, seg(mentation), res, den,
# desc. `stat` is not a BIDS entity; XCP-D and BEP012 write it just before desc (`stat-alff_desc-smooth`).
BIDS_ORDER = ["space", "cohort", "atlas", "seg", "res", "den", "stat", "desc"]


def test_output_names_follow_the_bids_entity_order():
    name = derivatives.derivative_name(
        "sub-01_ses-A_task-rest_acq-mb4_run-1",
        suffix="relmat",
        extension=".tsv",
        desc="censored",
        stat="pearsoncorrelation",
        den="91k",
        res="2",
        seg="4S156",
        atlas="Schaefer100",
        space="MNI152NLin2009cAsym",
        cohort="1",
    )
    assert name == (
        "sub-01_ses-A_task-rest_acq-mb4_run-1_space-MNI152NLin2009cAsym_cohort-1_atlas-Schaefer100_seg-4S156_res-2_den-91k"
        "_stat-pearsoncorrelation_desc-censored_relmat.tsv"
    )
    keys = [part.split("-")[0] for part in name.split("_")[5:-1]]
    assert keys == BIDS_ORDER
    # XCP-D's own example names, built with our entity values
    xcpd = "sub-01_task-rest_space-MNI152NLin6Asym_atlas-Gordon_stat-mean_timeseries.tsv"
    assert (
        derivatives.derivative_name(
            "sub-01_task-rest",
            suffix="timeseries",
            extension=".tsv",
            stat="mean",
            atlas="Gordon",
            space="MNI152NLin6Asym",
        )
        == xcpd
    )
    assert (
        derivatives.derivative_name(
            "sub-01_task-rest", suffix="boldmap", extension=".nii.gz", desc="smooth", stat="alff", space="MNI"
        )
        == "sub-01_task-rest_space-MNI_stat-alff_desc-smooth_boldmap.nii.gz"
    )


def test_dataset_description_links_fmriprep_and_records_its_version():
    fmriprep = {
        "Name": "fMRIPrep - study",
        "DatasetDOI": "10.18112/openneuro.ds000001.v1.0.0",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1", "CodeURL": "https://github.com/nipreps/fmriprep"}],
    }
    desc = derivatives.dataset_description(
        source_description={"Name": "study"},
        source_url="file:///data/bids",
        config_hash="0123",
        fmriprep_url="file:///data/bids/derivatives/fmriprep",
        fmriprep_description=fmriprep,
    )
    assert desc["DatasetLinks"] == {"fmriprep": "file:///data/bids/derivatives/fmriprep"}
    assert [s["URL"] for s in desc["SourceDatasets"]] == ["file:///data/bids", "file:///data/bids/derivatives/fmriprep"]
    assert desc["SourceDatasets"][1]["DOI"] == fmriprep["DatasetDOI"]
    names = [(g["Name"], g.get("Version")) for g in desc["GeneratedBy"]]
    assert names == [("clbp-bidsapp", derivatives.__version__), ("fMRIPrep", "23.2.1")]
    assert "file:///data/bids/derivatives/fmriprep" in desc["GeneratedBy"][1]["Description"]


def test_dataset_description_reads_old_fmriprep_pipeline_description_and_bids_dir_as_fmriprep():
    old = {"Name": "fMRIPrep output", "PipelineDescription": {"Name": "fMRIPrep", "Version": "1.5.0"}}
    desc = derivatives.dataset_description(
        source_description=old, source_url="file:///fp", config_hash="0", fmriprep_url="file:///fp",
        fmriprep_description=old,
    )  # fmt: skip
    assert desc["DatasetLinks"] == {"fmriprep": "file:///fp"}
    assert len(desc["SourceDatasets"]) == 1  # BIDS_DIR is the fMRIPrep dataset: listed once
    assert desc["GeneratedBy"][1]["Name"] == "fMRIPrep" and desc["GeneratedBy"][1]["Version"] == "1.5.0"


def test_dataset_description_links_aslprep_when_cbf_is_read():
    """The CBF sidecars' Sources are bids:aslprep: URIs: DatasetLinks defines aslprep, GeneratedBy names ASLPrep."""
    aslprep = {"Name": "ASLPrep", "GeneratedBy": [{"Name": "ASLPrep", "Version": "0.7.5"}]}
    desc = derivatives.dataset_description(
        source_description={}, source_url="file:///b", config_hash="0", fmriprep_url="file:///b/derivatives/fmriprep",
        fmriprep_description={}, linked={"aslprep": ("file:///b/derivatives/aslprep", aslprep)},
    )  # fmt: skip
    assert desc["DatasetLinks"] == {"fmriprep": "file:///b/derivatives/fmriprep",
                                    "aslprep": "file:///b/derivatives/aslprep"}  # fmt: skip
    assert [s["URL"] for s in desc["SourceDatasets"]][-1] == "file:///b/derivatives/aslprep"
    assert ("ASLPrep", "0.7.5") in [(g["Name"], g.get("Version")) for g in desc["GeneratedBy"]]
    assert "'aslprep'" in desc["GeneratedBy"][-1]["Description"]


@pytest.mark.parametrize(
    ("suffix", "entities", "units"),
    [
        ("boldmap", {"stat": "alff"}, "arbitrary"),
        ("boldmap", {"stat": "mean"}, "arbitrary"),
        ("boldmap", {"stat": "alff", "desc": "z"}, None),
        ("boldmap", {"stat": "alff", "desc": "m"}, None),
        ("boldmap", {"stat": "falff"}, None),
        ("boldmap", {"stat": "reho"}, None),
        ("boldmap", {"stat": "tsnr"}, None),
        ("boldmap", {"stat": "fcz", "desc": "pcc"}, None),
        ("timeseries", {"atlas": "x", "stat": "mean"}, "arbitrary"),
        ("components", {"desc": "dualreg"}, "arbitrary"),
        ("bold", {"desc": "denoised"}, "arbitrary"),
        ("relmat", {"atlas": "x", "stat": "pearsoncorrelation"}, None),
    ],
)
def test_units_exist_only_where_the_value_has_one(suffix, entities, units):
    assert derivatives.output_units(suffix, entities) == units


def test_one_line_keeps_every_line_of_a_library_message():
    error = OSError("Expected 10 bytes, got 5 bytes from \n - could the file be damaged?")
    assert images.one_line(error) == "Expected 10 bytes, got 5 bytes from - could the file be damaged?"


def test_a_broken_annex_link_is_named_not_fetched(tmp_path):
    link = tmp_path / "sub-01_bold.nii.gz"
    link.symlink_to(tmp_path / ".git" / "annex" / "objects" / "aa" / "bb" / "KEY" / "KEY")
    with pytest.raises(InputError, match=r"is not fetched .* run `datalad get .*sub-01_bold\.nii\.gz`"):
        images.header_grid(link)
    other = tmp_path / "other.nii.gz"
    other.symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(InputError, match="broken symbolic link"):
        bids.check_fetched(other)


def _run(tmp_path: Path, name: str, *, voxel: float, res: str | None = None, cohort: str | None = None, **ents):
    path = tmp_path / name
    affine = np.diag([voxel, voxel, voxel, 1.0])
    nb.save(nb.Nifti1Image(np.zeros((3, 4, 5, 2), np.float32), affine), path)
    entities = {"subject": "01", "task": "rest", **ents}
    return bids.RunInputs(
        participant="01", entities=entities, source_name=bids.source_name(entities), bold=path, mask=path,
        confounds=path, confounds_json=None, tr=2.0, space="MNIInfant", res=res, cohort=cohort,
    )  # fmt: skip


def test_the_coarsest_resolution_is_picked_and_said(tmp_path):
    fine = _run(tmp_path, "sub-01_task-rest_space-MNIInfant_res-1_desc-preproc_bold.nii.gz", voxel=1.0, res="1")
    coarse = _run(tmp_path, "sub-01_task-rest_space-MNIInfant_res-2_desc-preproc_bold.nii.gz", voxel=2.0, res="2")
    notes: list[tuple[str, str]] = []
    assert bids.choose_variants([fine, coarse], notes) == [coarse]
    (what, why), = notes  # fmt: skip
    assert what == "1 other variant(s) of sub-01_task-rest"
    assert why.startswith(f"analysing {coarse.bold.name} (res-2, the coarsest grid), not {fine.bold.name};")
    assert '{"bold": {"res": "1"}}' in why  # how to pick the other


def test_cohorts_and_acquisitions_are_picked_in_a_fixed_order(tmp_path):
    runs = [
        _run(tmp_path, "sub-01_task-rest_space-MNIInfant_cohort-2_desc-preproc_bold.nii.gz", voxel=2.0, cohort="2"),
        _run(tmp_path, "sub-01_task-rest_space-MNIInfant_cohort-1_desc-preproc_bold.nii.gz", voxel=2.0, cohort="1"),
    ]
    notes: list[tuple[str, str]] = []
    assert bids.choose_variants(runs, notes) == [runs[1]]
    assert bids.choose_variants(runs[::-1], []) == [runs[1]]  # the order found does not matter
    assert "cohort 1" in notes[0][1] and '{"bold": {"cohort": "2"}}' in notes[0][1]
    acq = [
        _run(tmp_path, f"sub-01_task-rest_acq-{a}_desc-preproc_bold.nii.gz", voxel=2.0, acquisition=a)
        for a in ("mb8", "mb4")
    ]
    plain = _run(tmp_path, "sub-01_task-rest_desc-preproc_bold.nii.gz", voxel=2.0)
    assert bids.choose_variants([*acq, plain], []) == [plain]
    assert bids.choose_variants(acq, []) == [acq[1]]
    # different runs of one task are not variants of each other
    runs12 = [_run(tmp_path, f"sub-01_task-rest_run-{r}_desc-preproc_bold.nii.gz", voxel=2.0, run=r) for r in "12"]
    assert bids.choose_variants(runs12, []) == runs12


def test_a_denoised_bold_gets_the_fields_bids_requires():
    fields = derivatives.bids_metadata("bold", {"space": "MNI152NLin2009cAsym", "res": "2", "desc": "denoised"})
    assert fields["SkullStripped"] is True and fields["Units"] == "arbitrary"
    assert list(fields["Resolution"]) == ["2"]
    assert derivatives.bids_metadata("relmat", {"atlas": "x", "stat": "pearsoncorrelation"}) == {}


def test_fmriprep_preproc_comes_before_a_tedana_optcom_copy(tmp_path):
    optcom = _run(tmp_path, "sub-01_task-rest_desc-optcom_bold.nii.gz", voxel=2.0)
    preproc = _run(tmp_path, "sub-01_task-rest_desc-preproc_bold.nii.gz", voxel=2.0)
    echo = _run(tmp_path, "sub-01_task-rest_echo-1_desc-preproc_bold.nii.gz", voxel=2.0, echo="1")
    notes: list[tuple[str, str]] = []
    assert bids.choose_variants([echo, optcom, preproc], notes) == [preproc]
    assert bids.choose_variants([echo, optcom], []) == [optcom]
    assert "(the optimally combined series (no echo- entity))" in notes[0][1]
    assert '{"bold": {"desc": "optcom"}}' in notes[0][1]
