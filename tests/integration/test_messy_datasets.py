"""Real datasets are messy: DataLad files not fetched, damaged files, duplicate copies, several variants of one
run (multi-echo, acq-, res-), CIFTI beside volumes. Each case runs the real command line on a copy of a tiny
synthetic dataset and checks the one-line message (naming the file and what to do) or the pick that is made
and said. Rows in docs/usage.md ("What a user can get wrong") point here.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.common import assert_user_error, with_min_dof

pytestmark = pytest.mark.integration

# the cheapest participant run that still reads every input of the run (ALFF only, no band-pass, no report)
CHEAP = ("--min-time", "20", "--no-band-pass", "--skip", "tsnr", "reho", "vmhc", "dc", "seedfc", "connectome",
         "graph", "dualreg", "report")  # fmt: skip
STEM = "sub-01_task-rest_space-MNI152NLin2009cAsym_res-4"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", *map(str, with_min_dof(args))],
        capture_output=True,
        text=True,
        timeout=600,
    )


def participant(root: Path, tmp_path: Path, *extra: str | Path) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    return cli(root, out, "participant", "--participant-label", "01", *CHEAP, "-w", tmp_path / "work", *extra)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("messy") / "bids"
    return make_dataset(root, n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, tr=2.0, seed=7)


@pytest.fixture
def dataset(base, tmp_path) -> Path:
    root = tmp_path / "bids"
    shutil.copytree(base.root, root)
    return root


def func_dir(root: Path) -> Path:
    return root / "derivatives" / "fmriprep" / "sub-01" / "func"


def test_a_datalad_file_not_fetched_says_run_datalad_get(dataset, tmp_path):
    bold = func_dir(dataset) / f"{STEM}_desc-preproc_bold.nii.gz"
    bold.unlink()  # git-annex leaves a link into .git/annex/objects until `datalad get` fetches the content
    bold.symlink_to("../../../.git/annex/objects/Xq/9z/MD5E-s8--0a1b.nii.gz/MD5E-s8--0a1b.nii.gz")
    result = participant(dataset, tmp_path)
    assert_user_error(result, 3, bold.name, "is not fetched", f"run `datalad get {bold}`")


def test_a_truncated_bold_keeps_nibabels_whole_message_and_the_advice(dataset, tmp_path):
    bold = func_dir(dataset) / f"{STEM}_desc-preproc_bold.nii.gz"
    raw = gzip.decompress(bold.read_bytes())
    bold.write_bytes(gzip.compress(raw[: len(raw) // 2], mtime=0))  # a valid gzip of half the image
    result = participant(dataset, tmp_path)
    # nibabel's message spans two lines ("Expected N bytes, got M bytes from \n - could the file be damaged?")
    assert_user_error(result, 3, bold.name, "could the file be damaged?", "re-run fMRIPrep for this run")


def test_a_mask_as_nii_and_nii_gz_copies_is_named_as_such(dataset, tmp_path):
    mask = func_dir(dataset) / f"{STEM}_desc-brain_mask.nii.gz"
    copy = mask.with_name(mask.name.removesuffix(".gz"))
    copy.write_bytes(gzip.decompress(mask.read_bytes()))
    result = participant(dataset, tmp_path)
    assert_user_error(result, 3, f"{copy.name} and {mask.name} are one file as .nii and .nii.gz copies", "delete one")


def _variants(root: Path) -> None:
    """fMRIPrep multi-echo outputs (echo-1, echo-2 beside the combination), an acq-mb8 variant of the same run with
    its own mask and confounds, and a CIFTI series, all for sub-01."""
    func = func_dir(root)
    bold = func / f"{STEM}_desc-preproc_bold.nii.gz"
    for echo in ("1", "2"):
        name = bold.name.replace("_task-rest_", f"_task-rest_echo-{echo}_")
        shutil.copyfile(bold, func / name)
        shutil.copyfile(bold.with_name(bold.name.replace(".nii.gz", ".json")), func / name.replace(".nii.gz", ".json"))
    for path in sorted(func.iterdir()):
        if "_echo-" not in path.name and "_acq-" not in path.name:
            shutil.copyfile(path, func / path.name.replace("_task-rest_", "_task-rest_acq-mb8_"))
    cifti = func / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii"
    cifti.write_bytes(b"\0" * 64)
    cifti.with_name(cifti.name.replace(".dtseries.nii", ".json")).write_text('{"RepetitionTime": 2.0}')


def test_variants_of_a_run_pick_one_say_which_and_a_filter_file_changes_it(dataset, tmp_path):
    _variants(dataset)
    result = participant(dataset, tmp_path / "default")
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "default" / "out" / "sub-01" / "func").glob("*_boldmap.nii.gz"))
    assert written and all(name.startswith(f"{STEM}_stat-") for name in written), written  # the combined echo
    err = " ".join(result.stderr.split())
    assert (
        f"skipped 3 other variant(s) of sub-01_task-rest: analysing {STEM}_desc-preproc_bold.nii.gz "
        "(the optimally combined series (no echo- entity)), not " in err
    )
    assert 'to analyse another, pass --bids-filter-file with e.g. {"bold": {"acquisition": "mb8"}}' in err
    for other in ("acq-mb8_space-MNI152NLin2009cAsym", "echo-1_space-MNI152NLin2009cAsym", "echo-2_space-MNI"):
        assert f"sub-01_task-rest_{other}" in err, other
    assert "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii: CIFTI (grayordinates) ignored" in err
    assert "Traceback" not in result.stderr

    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"acquisition": "mb8"}}))
    chosen = participant(dataset, tmp_path / "filtered", "--bids-filter-file", filters)
    assert chosen.returncode == 0, chosen.stderr
    written = sorted(p.name for p in (tmp_path / "filtered" / "out" / "sub-01" / "func").glob("*_boldmap.nii.gz"))
    assert written and all(name.startswith("sub-01_task-rest_acq-mb8_space-") for name in written), written
    assert "other variant(s)" not in chosen.stderr
