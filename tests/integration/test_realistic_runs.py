"""Realistic run lengths and TRs from the command line: the --min-dof rule, a band-pass above Nyquist, int16 data,
and confounds with fMRIPrep < 1.4 names (issue 14, sections 1 and 4)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.core.centrality import r_threshold_for_p
from clbp_bidsapp.testing.synthetic import make_dataset
from tests.integration.common import run_app

LABEL = "01"
RUN = f"sub-{LABEL}_task-rest"
# the fastest graph: ALFF/fALFF only (the DOF rule and the planning do not depend on the stages)
ONLY_ALFF = ("--skip", "tsnr", "reho", "vmhc", "dc", "seedfc", "connectome", "graph", "dualreg", "report")


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """The real command line. No --min-dof 0 here: the runs below are sized for what the DOF rule must decide."""
    return run_app(*args)


def dataset(root: Path, *, n_volumes: int, tr: float) -> Path:
    """One participant on the 4 mm grid, no motion spikes (so the DOF figures are the run length's)."""
    make_dataset(root, n_patients=1, n_controls=0, n_volumes=n_volumes, tr=tr, high_motion=False, seed=3)
    return root


def qc_row(out: Path) -> dict:
    (path,) = (out / f"sub-{LABEL}" / "func").glob("*desc-denoising_qc.tsv")
    assert path.with_suffix(".json").is_file()  # the column descriptions, for skipped runs too
    return pd.read_csv(path, sep="\t").iloc[0].to_dict()


def sidecar(out: Path, pattern: str) -> dict:
    (path,) = (out / f"sub-{LABEL}" / "func").glob(pattern)
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("tr", "n_volumes", "extra"),
    [(2.0, 62, ()), (2.0, 90, ()), (3.0, 60, ()), (0.8, 90, ("--min-time", "60"))],
    ids=["tr2-62vol", "tr2-90vol", "tr3-60vol", "tr0.8-90vol"],
)
def test_short_runs_are_refused_by_the_dof_rule(tmp_path, tr, n_volumes, extra):
    root = dataset(tmp_path / "bids", n_volumes=n_volumes, tr=tr)
    out = tmp_path / "out"
    result = cli(root, out, "participant", *extra, *ONLY_ALFF, "-w", tmp_path / "work")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    qc = qc_row(out)
    assert not qc["used"] and 0 < qc["dof_bandpass"] < 10
    assert f"skipped {RUN}: its band-passed series keeps {qc['dof_bandpass']:g} effective degrees of freedom, " \
           "fewer than --min-dof 10 (lower --min-dof" in result.stderr  # fmt: skip
    assert qc["n_retained"] == n_volumes and qc["dof_unfiltered"] == pytest.approx(n_volumes - 26, abs=0.01)
    assert not list(out.rglob("*_boldmap.nii.gz"))  # nothing computed from numerical residue


def test_a_150_volume_int16_run_passes_and_records_its_dof(tmp_path):
    root = dataset(tmp_path / "bids", n_volumes=150, tr=2.0)
    (bold_path,) = root.rglob("*desc-preproc_bold.nii.gz")
    img = nb.load(bold_path)
    data = img.get_fdata(dtype=np.float32)
    scaled = nb.Nifti1Image(np.round(data / 0.25).astype(np.int16), img.affine, img.header)  # fMRIPrep-like int16
    scaled.header.set_data_dtype(np.int16)
    scaled.header.set_slope_inter(0.25, 0)
    nb.save(scaled, bold_path)
    assert nb.load(bold_path).get_data_dtype() == np.int16
    out = tmp_path / "out"
    result = cli(root, out, "participant", "--skip", "tsnr", "vmhc", "seedfc", "connectome", "graph", "dualreg",
                 "--dc-threshold-p", "0.05", "--dc-resolution", "8", "-w", tmp_path / "work")  # fmt: skip
    assert result.returncode == 0, result.stderr
    qc = qc_row(out)
    assert qc["used"] and 15 < qc["dof_bandpass"] < 25 and qc["dof_unfiltered"] == pytest.approx(124, abs=0.01)
    for pattern in ("*res-4_stat-reho_boldmap.json", "*stat-falff_desc-z_boldmap.json"):
        denoising = sidecar(out, pattern)["Denoising"]
        assert denoising["EffectiveDegreesOfFreedomBandPassed"] == pytest.approx(qc["dof_bandpass"], abs=0.01)
        assert denoising["EffectiveDegreesOfFreedomUnfiltered"] == pytest.approx(124, abs=0.01)
        assert denoising["MinimumEffectiveDegreesOfFreedom"] == 10
    # degree centrality with the DOF-matched threshold: the r used is this run's, and says how it was chosen
    dc = sidecar(out, "*res-4_stat-dc_desc-weighted_boldmap.json")
    assert dc["ThresholdP"] == 0.05 and dc["ThresholdDegreesOfFreedom"] == pytest.approx(qc["dof_bandpass"])
    assert dc["Threshold"] == pytest.approx(r_threshold_for_p(0.05, dof=qc["dof_bandpass"]), abs=1e-4)
    assert dc["ThresholdType"].startswith("DOF-matched")
    report = (out / f"sub-{LABEL}.html").read_text()
    assert "dof_bandpass" in report and f"{qc['dof_bandpass']:g}" in report


def test_a_tr_7_run_is_refused_then_runs_in_the_band_it_can_sample(tmp_path):
    root = dataset(tmp_path / "bids", n_volumes=60, tr=7.0)  # 420 s; Nyquist 0.071 Hz < 0.08 Hz
    out = tmp_path / "out"
    refused = cli(root, out, "participant", *ONLY_ALFF, "-w", tmp_path / "work")
    assert refused.returncode == 3, refused.stderr
    assert "Traceback" not in refused.stderr
    (failed,) = [line for line in refused.stderr.splitlines() if f"FAILED  sub-{LABEL}:" in line]
    assert f"{RUN}_desc-confounds_timeseries.tsv: TR 7 s" in failed  # names the run
    assert "TR 7 s samples frequencies up to 0.0714 Hz (Nyquist)" in refused.stderr
    assert "--band-pass 0.01 HIGH with HIGH below 0.0714 Hz" in refused.stderr
    ran = cli(root, out, "participant", "--band-pass", "0.01", "0.06", "--min-dof", "0", *ONLY_ALFF,
              "-w", tmp_path / "work")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    falff = sidecar(out, "*res-4_stat-falff_boldmap.json")
    assert falff["Band"] == [0.01, 0.06] and falff["Denoising"]["BandPass"] == [0.01, 0.06]
    (falff_map,) = (out / f"sub-{LABEL}" / "func").glob("*res-4_stat-falff_boldmap.nii.gz")
    values = np.asarray(nb.load(falff_map).dataobj)
    values = values[values != 0]
    # the band holds part of the spectrum, not all of it (the high-pass-only defect gave ~0.91 everywhere)
    assert 0.3 < np.median(values) < 0.85


LEGACY = {"trans_x": "X", "trans_y": "Y", "trans_z": "Z", "rot_x": "RotX", "rot_y": "RotY", "rot_z": "RotZ",
          "framewise_displacement": "FramewiseDisplacement", "std_dvars": "stdDVARS", "white_matter": "WhiteMatter",
          "csf": "CSF", "global_signal": "GlobalSignal"}  # fmt: skip


def test_confounds_with_fmriprep_1_3_names_give_the_same_maps(tmp_path):
    """fMRIPrep 1.3's file name and column names, no JSON: the same maps as the current names, and a note."""
    root = dataset(tmp_path / "bids", n_volumes=150, tr=2.0)
    old_root = tmp_path / "old"
    dataset(old_root, n_volumes=150, tr=2.0)  # the same seed: identical files
    (confounds,) = old_root.rglob("*desc-confounds_timeseries.tsv")
    table = pd.read_csv(confounds, sep="\t")
    table = table[list(LEGACY)].rename(columns=LEGACY)  # fMRIPrep 1.3 wrote no derivatives or squares
    confounds.with_suffix(".json").unlink()  # nor a JSON
    confounds.unlink()  # and named the file desc-confounds_regressors.tsv (fMRIPrep 1.2-20.1)
    old_name = confounds.with_name(confounds.name.replace("_timeseries.tsv", "_regressors.tsv"))
    table.to_csv(old_name, sep="\t", index=False, na_rep="n/a", float_format="%.8g")
    outs = {}
    for name, folder in (("current", root), ("legacy", old_root)):
        outs[name] = tmp_path / f"out-{name}"
        result = cli(folder, outs[name], "participant", "--strategy", "36P", *ONLY_ALFF, "-w", tmp_path / f"w-{name}")
        assert result.returncode == 0, result.stderr
    qc = qc_row(outs["legacy"])
    assert qc["legacy_confound_names"] and not qc_row(outs["current"])["legacy_confound_names"]
    assert qc["dof_bandpass"] == pytest.approx(qc_row(outs["current"])["dof_bandpass"], abs=0.01)
    note = sidecar(outs["legacy"], "*res-4_stat-alff_boldmap.json")["Denoising"]["LegacyConfoundNames"]
    assert "RotX -> rot_x" in note and "WhiteMatter -> white_matter" in note
    maps = [next((o / f"sub-{LABEL}" / "func").glob("*res-4_stat-alff_boldmap.nii.gz")) for o in outs.values()]
    current, legacy = (np.asarray(nb.load(m).dataobj) for m in maps)
    np.testing.assert_allclose(legacy, current, rtol=1e-4, atol=1e-4 * np.abs(current).max())
