"""CBF-only and BOLD-only participants through both commands (issue #16).

3 CLBP + 3 HC (4 mm, 40 volumes) with ASLPrep derivatives; sub-02 has no fMRIPrep derivatives at all (CBF only,
on its own grid), sub-05's only BOLD run is censored away (CBF only, on the grid of that run), sub-06 has no ASL
(BOLD only). The group level puts sub-02 and sub-05 in the CBF analyses and not in the BOLD ones, and says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.testing.synthetic import SPACE, make_dataset
from tests.integration.common import with_min_dof

pytestmark = pytest.mark.integration
PERF = f"space-{SPACE}_res-4"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", *map(str, with_min_dof(args))],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def _prepare(root: Path) -> Path:
    info = make_dataset(root, n_patients=3, n_controls=3, n_volumes=40, aslprep=True, seed=7)
    fmriprep = info.root / "derivatives" / "fmriprep"
    shutil.rmtree(fmriprep / "sub-02")  # CBF only: no BOLD derivatives at all
    for confounds in (fmriprep / "sub-05").rglob("*_desc-confounds_timeseries.tsv"):  # every volume censored
        table = pd.read_csv(confounds, sep="\t")
        table["framewise_displacement"] = 3.0
        table.to_csv(confounds, sep="\t", index=False, na_rep="n/a")
    shutil.rmtree(info.root / "derivatives" / "aslprep" / "sub-06")  # BOLD only
    return info.root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cbf-more")
    bids = _prepare(root / "bids")
    out, work = root / "out", root / "work"
    asl = bids / "derivatives" / "aslprep"
    skip = ("tsnr", "reho", "vmhc", "dc", "seedfc", "connectome", "graph", "dualreg", "report")
    participant = cli(bids, out, "participant", "-w", work, "--nprocs", "2", "--min-time", "20", "--aslprep-dir", asl,
                      "--atlases", "harvardoxford", "--skip", *skip)  # fmt: skip
    assert participant.returncode == 0, participant.stdout + participant.stderr
    group = cli(bids, out, "group", "-w", work, "--group-metrics", "alff", "--n-permutations", "10", "--no-tfce",
                "--covariates", "mean_fd", "--clinical-columns", "--skip", "connectome", "ml", "ica")  # fmt: skip
    assert group.returncode == 0, group.stdout + group.stderr
    return bids, out, participant.stdout + participant.stderr, group.stdout + group.stderr


def _perf(out: Path, label: str, name: str) -> Path:
    return out / f"sub-{label}" / "perf" / f"sub-{label}_{name}"


def test_participants_without_a_usable_bold_run_get_their_cbf_maps(run):
    _, out, log, _ = run
    assert "6 participant(s) succeeded, 0 failed" in log
    assert "sub-02 BOLD" in log and "sub-05 BOLD" in log and "(only CBF analysed)" in log
    for label in ("02", "05"):
        assert _perf(out, label, f"{PERF}_stat-rcbf_desc-smoothed_cbfmap.nii.gz").is_file()
        assert not list((out / f"sub-{label}").rglob("*_boldmap.nii.gz"))
        record = json.loads((out / "logs" / "participants" / f"sub-{label}.json").read_text())
        assert record["runs"] == [] and any("/perf/" in o for o in record["outputs"])
    # sub-05 has a (censored) BOLD run: its CBF is on that run's grid, with its grey-matter map as reference
    sidecar = json.loads(_perf(out, "05", f"{PERF}_stat-rcbf_cbfmap.json").read_text())
    assert "fMRIPrep" in sidecar["GreyMatterReference"] and "BOLD run" in sidecar["Description"]


def test_cbf_only_relative_cbf_is_divided_by_the_template_grey_matter_mean(run):
    from nilearn.datasets import load_mni152_gm_template
    from nilearn.image import resample_to_img

    bids, out, _, _ = run
    source = nb.load(bids / "derivatives" / "aslprep" / "sub-02" / "perf" / f"sub-02_{PERF}_cbf.nii.gz")
    absolute = nb.load(_perf(out, "02", f"{PERF}_stat-cbf_cbfmap.nii.gz"))
    relative = np.asanyarray(nb.load(_perf(out, "02", f"{PERF}_stat-rcbf_cbfmap.nii.gz")).dataobj, dtype=np.float64)
    assert absolute.shape == source.shape and np.allclose(absolute.affine, source.affine)  # its own grid
    data = np.asanyarray(absolute.dataobj, dtype=np.float64)
    mask = bids / "derivatives" / "aslprep" / "sub-02" / "perf" / f"sub-02_{PERF}_desc-brain_mask.nii.gz"
    brain = np.asanyarray(nb.load(mask).dataobj) > 0
    gm = np.asanyarray(resample_to_img(load_mni152_gm_template(resolution=1), source, interpolation="linear",
                                       force_resample=True, copy_header=True).dataobj)  # fmt: skip
    reference = data[brain & (gm > 0.5)].mean()
    assert 40 < reference < 80  # grey-matter CBF, not the whole-brain mean
    assert np.allclose(relative[brain], data[brain] / reference, rtol=1e-4)
    sidecar = json.loads(_perf(out, "02", f"{PERF}_stat-rcbf_cbfmap.json").read_text())
    assert "MNI152 grey-matter template" in sidecar["GreyMatterReference"]
    assert "own grid" in sidecar["Description"] and not any("fmriprep" in s for s in sidecar["Sources"])


def test_group_level_analyses_each_modality_with_its_own_participants(run):
    bids, out, _, _ = run
    group = out / "group"
    rcbf = pd.read_csv(group / "rcbf_contrast-CLBPvsHC_desc-design_design.tsv", sep="\t", dtype={"participant_id": str})
    alff = pd.read_csv(group / "alff_contrast-CLBPvsHC_desc-design_design.tsv", sep="\t", dtype={"participant_id": str})
    assert sorted(rcbf["participant_id"]) == ["01", "02", "03", "04", "05"]
    assert sorted(alff["participant_id"]) == ["01", "03", "04", "06"]
    asl = bids / "derivatives" / "aslprep"
    asl_fd = {label: pd.read_csv(asl / f"sub-{label}" / "perf" / f"sub-{label}_desc-qualitycontrol_cbf.tsv",
                                 sep="\t")["mean_fd"].iloc[0] for label in ("02", "05")}  # fmt: skip
    centred = rcbf.set_index("participant_id")["mean_fd"]  # the design's covariates are mean-centred
    assert centred["02"] - centred["05"] == pytest.approx(asl_fd["02"] - asl_fd["05"], abs=1e-5)  # ASL motion
    modalities = pd.read_csv(group / "desc-modalities_participants.tsv", sep="\t", dtype={"participant_id": str})
    modalities = modalities.set_index("participant_id")
    assert modalities["bold"].to_dict() == {"01": True, "02": False, "03": True, "04": True, "05": False, "06": True}
    assert modalities["cbf"].to_dict() == {"01": True, "02": True, "03": True, "04": True, "05": True, "06": False}
    excluded = pd.read_csv(group / "desc-excluded_participants.tsv", sep="\t", dtype=str)
    cbf_only = excluded[excluded["participant_id"].isin(["02", "05"])]
    assert list(cbf_only["analysis"]) == ["bold", "bold"], excluded  # not excluded from every analysis
    assert cbf_only["reason"].str.contains("no usable BOLD run").all()


def test_group_outputs_describe_cbf_as_cbf(run):
    _, out, _, log = run
    group = out / "group"
    for label in ("cbf", "rcbf"):
        sidecar = json.loads((group / f"{label}_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
        assert "cerebral blood flow" in sidecar["Interpretation"] and "BOLD-derived difference" not in sidecar[
            "Interpretation"]  # fmt: skip
    alff = json.loads((group / "alff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
    assert "BOLD-derived difference" in alff["Interpretation"]
    assert "3 maps x 1 contrasts = 3 voxelwise tests" in log  # alff, cbf and rcbf in the plan
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "ASLPrep" in citation and "Absolute and relative CBF maps entered the same voxelwise model" in citation
