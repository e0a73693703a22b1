"""CBF from ASLPrep derivatives through both commands, on a small synthetic dataset with every kind of CBF input.

3 CLBP + 4 HC (4 mm, 40 volumes), ASLPrep tree from the generator, then: sub-03's CBF only in another template space
(refused, BOLD still analysed), sub-04's CBF at 2 mm (resampled to the BOLD grid), sub-05's QEI 0.3 (excluded from
the CBF analyses with the reason), sub-06 without ASL (BOLD only). The planted-effect and concordance checks are in
tests/group/test_cbf_concordance.py (in process) and benchmarks/bench_cbf_concordance.py (full chain).
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

from clbp_bidsapp.testing.synthetic import ASLPREP_VERSION, SPACE, make_dataset
from tests.docs.test_docs import DOCS, documented_patterns, undocumented
from tests.integration.common import assert_user_error, with_min_dof

pytestmark = pytest.mark.integration
PERF = f"space-{SPACE}_res-4"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", *map(str, with_min_dof(args))],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def _prepare(root: Path) -> Path:
    from nilearn.image import resample_img

    info = make_dataset(root, n_patients=3, n_controls=4, n_volumes=40, aslprep=True, seed=4)
    asl = info.root / "derivatives" / "aslprep"
    perf3 = asl / "sub-03" / "perf"
    for path in perf3.glob(f"*{PERF}*"):  # sub-03: CBF in another template space only
        path.rename(path.with_name(path.name.replace(f"space-{SPACE}", "space-MNI152NLin6Asym")))
    perf4 = asl / "sub-04" / "perf"
    for kind in ("cbf", "desc-brain_mask"):  # sub-04: CBF at 2 mm
        path = perf4 / f"sub-04_{PERF}_{kind}.nii.gz"
        img = nb.load(path)
        affine = img.affine.copy()
        affine[:3, :3] /= 2
        fine = resample_img(img, target_affine=affine, target_shape=tuple(2 * n for n in img.shape),
                            interpolation="nearest" if "mask" in kind else "continuous", force_resample=True,
                            copy_header=True)  # fmt: skip
        nb.save(fine, perf4 / path.name.replace("res-4", "res-2"))
        path.unlink()
    (perf4 / f"sub-04_{PERF}_cbf.json").unlink()
    qc5 = asl / "sub-05" / "perf" / "sub-05_desc-qualitycontrol_cbf.tsv"
    table = pd.read_csv(qc5, sep="\t")
    table["qei_cbf"] = 0.3
    table.to_csv(qc5, sep="\t", index=False)
    shutil.rmtree(asl / "sub-06")
    return info.root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cbf-cli")
    bids = _prepare(root / "bids")
    out, work = root / "out", root / "work"
    asl = bids / "derivatives" / "aslprep"
    skip = ("tsnr", "reho", "vmhc", "dc", "seedfc", "connectome", "graph", "dualreg", "report")
    participant = cli(bids, out, "participant", "-w", work, "--nprocs", "2", "--min-time", "20", "--aslprep-dir", asl,
                      "--skip", *skip)  # fmt: skip
    assert participant.returncode == 0, participant.stderr
    group = cli(bids, out, "group", "-w", work, "--group-metrics", "alff", "--n-permutations", "10", "--no-tfce",
                "--cbf-global-covariate", "--covariates", "--clinical-columns",
                "--skip", "connectome", "ml", "ica")  # fmt: skip
    assert group.returncode == 0, group.stderr
    return bids, out, participant.stdout + participant.stderr, group.stdout + group.stderr


def _perf(out: Path, label: str, name: str) -> Path:
    return out / f"sub-{label}" / "perf" / f"sub-{label}_{name}"


def test_participant_maps_are_absolute_and_gm_normalised_cbf_with_sidecars(run):
    bids, out, _, _ = run
    asl = bids / "derivatives" / "aslprep" / "sub-01" / "perf"
    source = np.asanyarray(nb.load(asl / f"sub-01_{PERF}_cbf.nii.gz").dataobj)
    absolute = np.asanyarray(nb.load(_perf(out, "01", f"{PERF}_stat-cbf_cbfmap.nii.gz")).dataobj)
    relative = np.asanyarray(nb.load(_perf(out, "01", f"{PERF}_stat-rcbf_cbfmap.nii.gz")).dataobj)
    gm = np.asanyarray(nb.load(bids / "derivatives" / "fmriprep" / "sub-01" / "anat" /
                               f"sub-01_{PERF}_label-GM_probseg.nii.gz").dataobj) > 0.5  # fmt: skip
    inside = absolute != 0
    assert np.allclose(absolute[inside], source[inside], rtol=1e-6)
    assert relative[gm & inside].mean() == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(relative[inside] * source[gm & inside].mean(), source[inside], rtol=1e-4)
    sidecar = json.loads(_perf(out, "01", f"{PERF}_stat-rcbf_desc-smoothed_cbfmap.json").read_text())
    assert sidecar["ASLPrepVersion"] == ASLPREP_VERSION
    assert sidecar["Normalisation"].startswith("divided by the participant's mean grey-matter CBF")
    assert sidecar["SmoothingFWHM"] == 6.0 and sidecar["CBFVariant"] == "mean"
    assert sidecar["Sources"][0] == f"bids:aslprep:sub-01/perf/sub-01_{PERF}_cbf.nii.gz"
    assert json.loads(_perf(out, "01", f"{PERF}_stat-cbf_cbfmap.json").read_text())["Units"] == "mL/100 g/min"


def test_cbf_in_atlas_regions_is_the_mean_over_their_voxels(run):
    from clbp_bidsapp.io import atlases

    _, out, _, _ = run
    img = nb.load(_perf(out, "01", f"{PERF}_stat-cbf_cbfmap.nii.gz"))
    absolute = np.asanyarray(img.dataobj, dtype=np.float64)
    relative = np.asanyarray(nb.load(_perf(out, "01", f"{PERF}_stat-rcbf_cbfmap.nii.gz")).dataobj, dtype=np.float64)
    table = pd.read_csv(_perf(out, "01", f"space-{SPACE}_atlas-harvardoxford_res-4_stat-cbf_regions.tsv"), sep="\t")
    regions = atlases.atlas_regions("harvardoxford", absolute != 0, img.affine)
    members = regions.membership.toarray() > 0
    expected = [absolute[absolute != 0][row].mean() if row.any() else np.nan for row in members]
    assert list(table["region"]) == list(regions.labels)
    assert np.allclose(table["cbf"], expected, rtol=1e-5, equal_nan=True)
    ratio = [relative[absolute != 0][row].mean() if row.any() else np.nan for row in members]
    assert np.allclose(table["rcbf"], ratio, rtol=1e-5, equal_nan=True)
    assert _perf(out, "01", f"space-{SPACE}_atlas-seitzman300_res-4_stat-cbf_regions.tsv").is_file()


def test_each_participant_is_analysed_for_what_they_have(run):
    _, out, log, _ = run
    qc = {label: pd.read_csv(_perf(out, label, "desc-cbf_qc.tsv"), sep="\t").iloc[0] for label in ("01", "04", "05")}
    assert not qc["01"]["resampled"] and qc["01"]["usable"]
    assert qc["04"]["resampled"] and qc["04"]["usable"]  # 2 mm CBF onto the 4 mm BOLD grid
    assert not qc["05"]["usable"] and "QEI 0.300 below --cbf-min-qei 0.6" in qc["05"]["reason"]
    for label in ("03", "06"):  # CBF refused / absent: BOLD outputs only
        assert not (out / f"sub-{label}" / "perf").exists()
        assert any((out / f"sub-{label}" / "func").glob("*_stat-alff_boldmap.nii.gz"))
    assert "sub-03 CBF" in log and "space-MNI152NLin6Asym" in log and f"--space {SPACE}" in log
    assert "7 participant(s) succeeded, 0 failed" in log


def test_group_level_analyses_cbf_with_exclusions_and_writes_the_concordance(run):
    _, out, _, log = run
    group = out / "group"
    design = pd.read_csv(group / "rcbf_contrast-CLBPvsHC_desc-design_design.tsv", sep="\t", dtype=str)
    assert sorted(design["participant_id"]) == ["01", "02", "04", "07"]
    assert "global_cbf" not in design.columns  # relative CBF: the global level is divided out
    absolute_design = pd.read_csv(group / "cbf_contrast-CLBPvsHC_desc-design_design.tsv", sep="\t")
    assert "global_cbf" in absolute_design.columns  # --cbf-global-covariate
    assert (group / "cbf_contrast-CLBPvsHC_stat-t_statmap.nii.gz").is_file()
    excluded = pd.read_csv(group / "desc-excluded_participants.tsv", sep="\t", dtype=str)
    reasons = excluded[(excluded["participant_id"] == "05") & (excluded["analysis"] == "rcbf")]["reason"]
    assert reasons.str.contains("QEI 0.300").any(), excluded
    modalities = pd.read_csv(group / "desc-modalities_participants.tsv", sep="\t", dtype={"participant_id": str})
    modalities = modalities.set_index("participant_id")
    assert modalities["cbf"].to_dict() == {"01": True, "02": True, "03": False, "04": True, "05": False,
                                           "06": False, "07": True}  # fmt: skip
    assert "no CBF map" in modalities.loc["06", "cbf_note"] and "QEI" in modalities.loc["05", "cbf_note"]
    forward = pd.read_csv(group / "desc-boldcbf_concordance.tsv", sep="\t")
    assert {"cbf_effect", "cbf_ci_low", "cbf_ci_high", "cbf_p", "status"} <= set(forward.columns)
    assert "BOLD-CBF concordance" in log
    assert "BOLD and CBF" in (out / "group.html").read_text()


def test_every_cbf_output_is_documented(run):
    _, out, _, _ = run
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0]
                   != "work")  # fmt: skip
    assert any("/perf/" in f for f in files) and "group/desc-cbfbold_concordance.tsv" in files
    missing = undocumented(files, documented_patterns((DOCS / "outputs.md").read_text()))
    assert missing == [], "written but not in docs/outputs.md:\n" + "\n".join(missing)


def test_a_missing_aslprep_folder_is_a_usage_error(tmp_path, run):
    bids, _, _, _ = run
    result = cli(bids, tmp_path / "out", "participant", "--aslprep-dir", tmp_path / "nowhere")
    assert_user_error(result, 2, "--aslprep-dir", "nowhere")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cbf-gm-range", "150", "10"), "--cbf-gm-range [150.0, 10.0]: need LOW < HIGH"),
        (("--cbf-min-qei", "1.5"), "--cbf-min-qei: expected a number in [0, 1], got 1.5"),
        (("--cbf-variant", "bogus"), "invalid choice: 'bogus'"),
    ],
)
def test_cbf_settings_are_checked(tmp_path, args, message):
    from clbp_bidsapp.cli.run import parse_settings
    from clbp_bidsapp.errors import UserError

    fmriprep = tmp_path / "bids" / "derivatives" / "fmriprep"
    fmriprep.mkdir(parents=True)
    for folder in (tmp_path / "bids", fmriprep):
        (folder / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    with pytest.raises(UserError) as caught:
        parse_settings([str(tmp_path / "bids"), str(tmp_path / "out"), "participant", *args])
    assert message in str(caught.value)
