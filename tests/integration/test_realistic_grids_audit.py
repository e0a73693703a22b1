"""Issue 14, audited from the command line on data shaped like what users bring, where no other test looked:

- a multiband BOLD-native run (TR 0.8 s, 300 volumes = 240 s, XCP-D's default minimum) stored as fMRIPrep and
  scanners store it: int16 with ``scl_slope``, left-to-right (LAS) and oblique. It passes the DOF rule at its
  defaults, and its maps are those of the same values stored as float32 RAS, voxel for voxel (a reader that
  ignored the slope, the TR or the orientation would change them), on the input's own oblique grid;
- nilearn's 3 mm MNI grid (no x = 0 column: x = ..., -2, 1, ... mm), TR 3 s, 100 volumes, stored LAS: VMHC pairs
  each voxel with the voxel nearest to its world mirror (not an index flip), leaves out the midline and the
  voxels whose mirror is a midline voxel, and its z-map is mean 0, SD 1; every denoised map and series sidecar
  carries the run's effective DOF.

The 2 mm grid with an x = 0 column, the 60-90-volume refusals, the 150-volume int16 run, TR 7 s and the old
confound names are in tests/integration/test_spaces.py and test_realistic_runs.py (not repeated here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.testing.synthetic import make_dataset
from tests.integration.common import run_app

pytestmark = pytest.mark.integration

LABEL = "01"
# in a native run the MNI stages are skipped by the app itself; these are the space-free stages not compared here
NATIVE_SKIP = ("--skip", "dc", "tsnr", "report")
# the 3 mm run: VMHC and one seed's FC (the DOF in the series' and seed maps' sidecars), nothing else
MNI_STAGES = ("--seeds", "pcc", "--skip", "alff", "reho", "dc", "tsnr", "report", "connectome", "graph", "dualreg")


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file. No --min-dof 0: these runs are long enough for the default rule."""
    return run_app(*args, timeout=900)


def las_oblique(affine: np.ndarray, n_x: int, *, degrees: float) -> np.ndarray:
    """The affine of the same voxels stored with the first axis flipped (LAS), then rotated about z and x."""
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, n_x - 1
    a, b = np.deg2rad(degrees), np.deg2rad(degrees / 2)
    rz = np.array([[np.cos(a), -np.sin(a), 0, 0], [np.sin(a), np.cos(a), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(b), -np.sin(b), 0], [0, np.sin(b), np.cos(b), 0], [0, 0, 0, 1]])
    return rz @ rx @ affine @ flip


def restore(path: Path, data: np.ndarray, affine: np.ndarray, like: nb.Nifti1Image, *, int16: bool = False):
    """Save ``data`` at ``path`` with ``like``'s header (TR, units) and ``affine`` as both qform and sform;
    ``int16``: as fMRIPrep stores BOLD, int16 with the scl_slope/scl_inter nibabel chooses for the values."""
    header = like.header.copy()
    header.set_data_dtype(np.int16 if int16 else data.dtype)
    img = nb.Nifti1Image(data, affine, header)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nb.save(img, str(path))


def func_dir(out: Path) -> Path:
    return out / f"sub-{LABEL}" / "func"


def qc_row(out: Path) -> dict:
    (path,) = func_dir(out).glob("*desc-denoising_qc.tsv")
    return pd.read_csv(path, sep="\t").iloc[0].to_dict()


def load(out: Path, suffix: str) -> nb.Nifti1Image:
    (path,) = func_dir(out).glob(f"*_{suffix}.nii.gz")
    return nb.load(str(path))


# -- a multiband BOLD-native run: int16 + scl_slope, LAS, oblique, TR 0.8 s ----------------------------------


@pytest.fixture(scope="module")
def multiband(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("multiband")
    info = make_dataset(root / "float", n_patients=1, n_controls=0, n_volumes=300, tr=0.8, space="native",
                        high_motion=False, seed=12)  # fmt: skip
    shutil.copytree(info.root, root / "int16")
    (bold_float,) = info.fmriprep_dir.rglob("*desc-preproc_bold.nii.gz")
    original = nb.load(str(bold_float))
    affine = las_oblique(original.affine, original.shape[0], degrees=14.0)
    for path in (root / "int16" / "derivatives" / "fmriprep").rglob("*.nii.gz"):  # BOLD, mask, probsegs alike
        img = nb.load(str(path))
        data = img.get_fdata(dtype=np.float32) if "desc-preproc_bold" in path.name else np.asanyarray(img.dataobj)
        restore(path, data[::-1].copy(), affine, img, int16="desc-preproc_bold" in path.name)
    (bold_int16,) = (root / "int16").rglob("*desc-preproc_bold.nii.gz")
    stored = nb.load(str(bold_int16))
    assert stored.get_data_dtype() == np.int16 and stored.dataobj.slope != 1.0  # scl_slope in the file
    assert stored.header.get_zooms()[3] == pytest.approx(0.8)
    # the float dataset holds exactly the values the int16 file stands for, stored RAS
    restore(bold_float, stored.get_fdata(dtype=np.float32)[::-1].copy(), original.affine, original)
    outs = {}
    for name in ("float", "int16"):
        outs[name] = root / f"out-{name}"
        result = cli(root / name, outs[name], "participant", "--space", "native", *NATIVE_SKIP, "-w", root / "work")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    return {"outs": outs, "affine": affine}


def test_multiband_run_passes_the_dof_rule_at_its_defaults(multiband):
    """240 s at TR 0.8 s with 24P keeps about 11 effective DOF (docs/denoising.md: 11.1), above --min-dof 10."""
    qc = qc_row(multiband["outs"]["int16"])
    assert qc["used"] and qc["n_retained"] == 300 and qc["retained_seconds"] == pytest.approx(240.0)  # TR 0.8 s read
    assert 10 <= qc["dof_bandpass"] < 13 and qc["dof_unfiltered"] == pytest.approx(300 - 26, abs=0.01)
    assert qc["dof_bandpass"] == qc_row(multiband["outs"]["float"])["dof_bandpass"]  # the operator is data-free
    for sidecar in func_dir(multiband["outs"]["int16"]).glob("*_boldmap.json"):
        denoising = json.loads(sidecar.read_text())["Denoising"]
        assert denoising["EffectiveDegreesOfFreedomBandPassed"] == pytest.approx(qc["dof_bandpass"]), sidecar.name
        assert "MNI" not in sidecar.read_text(), sidecar.name  # a native run claims no template coordinates


@pytest.mark.parametrize("metric", ["stat-alff", "stat-falff", "stat-reho", "stat-alff_desc-z", "stat-reho_desc-z"])
def test_int16_las_oblique_maps_equal_the_float_ras_maps(multiband, metric):
    reference = load(multiband["outs"]["float"], f"{metric}_boldmap")
    realistic = load(multiband["outs"]["int16"], f"{metric}_boldmap")
    np.testing.assert_allclose(realistic.affine, multiband["affine"], atol=1e-5)  # the input's oblique LAS grid
    expected = np.asanyarray(reference.dataobj)
    got = np.asanyarray(realistic.dataobj)[::-1]
    assert (expected != 0).sum() > 20000
    np.testing.assert_array_equal(got != 0, expected != 0)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())


# -- VMHC on nilearn's 3 mm grid stored LAS, TR 3 s ---------------------------------------------------------


@pytest.fixture(scope="module")
def three_mm(tmp_path_factory) -> tuple[Path, nb.Nifti1Image]:
    root = tmp_path_factory.mktemp("threemm")
    info = make_dataset(root / "bids", n_patients=1, n_controls=0, voxel_size=3, n_volumes=100, tr=3.0,
                        high_motion=False, seed=11)  # fmt: skip
    for path in info.fmriprep_dir.rglob("*.nii.gz"):
        img = nb.load(str(path))
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, img.shape[0] - 1
        restore(path, np.asanyarray(img.dataobj)[::-1].copy(), img.affine @ flip, img)  # FSL-style LAS storage
    (mask_path,) = (info.fmriprep_dir / f"sub-{LABEL}" / "func").glob("*desc-brain_mask.nii.gz")
    out = root / "out"
    result = cli(info.root, out, "participant", *MNI_STAGES, "-w", root / "work")
    assert result.returncode == 0, result.stderr
    return out, nb.load(str(mask_path))


def test_vmhc_on_the_3mm_grid_pairs_world_mirrors_and_leaves_the_midline_out(three_mm):
    out, mask_img = three_mm
    assert mask_img.affine[0, 0] < 0  # stored LAS
    raw_img = load(out, "stat-vmhc_boldmap")
    np.testing.assert_allclose(raw_img.affine, mask_img.affine)
    ras = nb.as_closest_canonical(raw_img)
    raw = np.asanyarray(ras.dataobj)
    z = np.asanyarray(nb.as_closest_canonical(load(out, "stat-vmhc_desc-z_boldmap")).dataobj)
    mask = np.asanyarray(nb.as_closest_canonical(mask_img).dataobj) > 0
    x = ras.affine[0, 3] + ras.affine[0, 0] * np.arange(raw.shape[0])
    np.testing.assert_allclose(x[[31, 32, 33, 34]], [-5.0, -2.0, 1.0, 4.0])  # no x = 0 column
    # x = 1 straddles the plane; x = -2's mirror (2 mm) is nearest to that midline voxel: neither is analysed
    assert mask[32:34].sum() > 3000 and (raw[32:34] == 0).all() and (z[32:34] == 0).all()
    # every other voxel i is paired with i' = 65 - i (x' = -x - 1 mm, the nearest to -x), so the map is
    # symmetric under i -> 65 - i; an index flip (i -> 66 - i) or a mirror that ignored the LAS storage is not
    analysed = raw != 0
    expected = np.zeros_like(mask)
    expected[:66] = mask[:66] & mask[65::-1]  # x = 100 (i = 66) has no mirror on the grid
    expected[32:34] = False
    np.testing.assert_array_equal(analysed, expected)
    np.testing.assert_array_equal(raw[:66], raw[65::-1])
    assert abs(z[analysed].mean()) < 1e-4 and abs(z[analysed].std() - 1.0) < 1e-3
    sidecar = json.loads(next(func_dir(out).glob("*stat-vmhc_boldmap.json")).read_text())
    assert sidecar["VoxelsOnMidline"] == mask[33].sum()
    assert sidecar["MaxMirrorOffsetMm"] == pytest.approx(1.0) and sidecar["VoxelsAnalysed"] == analysed.sum()


def test_three_mm_tr3_run_passes_and_every_denoised_output_carries_its_dof(three_mm):
    """100 volumes at TR 3 s (300 s) keep about 19 DOF with 24P (docs/denoising.md): analysed at the defaults.
    Every sidecar of a map or series computed from the denoised data (VMHC, seed FC, seed series) has them."""
    out, _ = three_mm
    qc = qc_row(out)
    assert qc["used"] and qc["retained_seconds"] == pytest.approx(300.0) and 15 < qc["dof_bandpass"] < 25
    sidecars = [p for p in func_dir(out).glob("*.json") if "stat-mean_boldmap" not in p.name and "_qc." not in p.name]
    names = {p.name.split("res-3_")[-1] for p in sidecars}
    assert {"stat-vmhc_boldmap.json", "stat-fcz_desc-pcc_boldmap.json", "stat-mean_desc-seeds_timeseries.json",
            "desc-seeds_regions.json"} <= names, names  # fmt: skip
    for path in sidecars:
        denoising = json.loads(path.read_text()).get("Denoising", {})
        assert denoising.get("EffectiveDegreesOfFreedomBandPassed") == pytest.approx(qc["dof_bandpass"]), path.name
        assert denoising["EffectiveDegreesOfFreedomUnfiltered"] == pytest.approx(qc["dof_unfiltered"]), path.name
