"""Template spaces from the command line (issue 14, sections 2-4).

- a BOLD-native run (no ``space-`` entity, ``--space native``): the space-free stages run, the MNI stages are
  skipped with one message, user atlases in that space still give connectomes, sidecars and methods say so;
- VMHC on the 2 mm MNI grid with a voxel column at x = 0: the midline is not analysed, the z-map is mean 0, SD 1;
- a connectome whose regions all fall outside the brain mask: graph measures n/a, a summary line, the rest goes on;
- an MNI152NLin2009cSym run: VMHC's sidecar and the methods text name the symmetric template and say the map
  itself was not smoothed;
- a grid that is not the named template, and MNI stages asked for by name in a native run: refused.

Every CLI call goes through :func:`cli` (one place to add flags for all participant-level calls).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.testing.synthetic import make_dataset
from tests.integration.common import assert_user_error, run_app, with_min_dof

pytestmark = pytest.mark.integration

# every MNI-only stage, for runs that only test something else
FAST = ("--skip", "dc", "tsnr", "report", "seedfc", "connectome", "graph", "dualreg")


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return run_app(*with_min_dof(args), timeout=900)


def _user_atlas(path: Path, labels: np.ndarray, affine: np.ndarray, n: int) -> Path:
    nb.save(nb.Nifti1Image(labels.astype(np.int16), affine), str(path))
    table = pd.DataFrame({"index": range(1, n + 1), "name": [f"r{i}" for i in range(1, n + 1)]})
    table.to_csv(str(path).removesuffix(".nii.gz") + ".tsv", sep="\t", index=False)
    return path


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return make_dataset(
        tmp_path_factory.mktemp("native") / "bids", n_patients=1, n_controls=0, n_volumes=80, space="native", seed=5
    )


def test_native_run_skips_mni_stages_once_and_keeps_user_atlases(native, tmp_path):
    func = native.fmriprep_dir / "sub-01" / "func"
    mask_img = nb.load(str(func / "sub-01_task-rest_desc-brain_mask.nii.gz"))
    mask = np.asanyarray(mask_img.dataobj) > 0
    # six slabs of the brain along y (a parcellation in this space), and one atlas entirely outside the mask
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    slabs = np.zeros(mask.shape, int)
    for index, chunk in enumerate(np.array_split(ys, 6), start=1):
        slabs[:, chunk, :] = index
    slabs[~mask] = 0
    outside = np.zeros(mask.shape, int)
    outside[:2, :2, :2] = 1
    outside[-2:, -2:, -2:] = 2
    assert not mask[outside > 0].any()
    inside_atlas = _user_atlas(tmp_path / "atlas-slabs_dseg.nii.gz", slabs, mask_img.affine, 6)
    outside_atlas = _user_atlas(tmp_path / "atlas-corners_dseg.nii.gz", outside, mask_img.affine, 2)
    out = tmp_path / "out"
    result = cli(native.root, out, "participant", "--space", "native", "--atlases", inside_atlas, outside_atlas,
                 "--skip", "dc", "tsnr")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    notes = [line for line in result.stderr.splitlines() if "not run" in line]
    assert len(notes) == 1, result.stderr  # said once
    for stage in ("seedfc", "vmhc", "dualreg"):
        assert stage in notes[0]
    assert "connectome" not in notes[0]  # user atlases in this space still run
    produced = sorted(p.name for p in (out / "sub-01" / "func").iterdir())
    assert "sub-01_task-rest_stat-alff_boldmap.nii.gz" in produced  # no space- entity, as the input
    assert "sub-01_task-rest_stat-reho_desc-z_boldmap.nii.gz" in produced
    assert not [n for n in produced if "space-" in n or "vmhc" in n or "stat-fcz" in n or "dualreg" in n]
    assert "sub-01_task-rest_atlas-slabs_stat-pearsoncorrelation_relmat.tsv" in produced
    graph = pd.read_csv(out / "sub-01" / "func" / "sub-01_task-rest_atlas-slabs_stat-graph_measures.tsv", sep="\t")
    assert graph["clustering"].notna().all()
    # the empty connectome: n/a graph measures, one summary line, the participant still succeeds
    corners = out / "sub-01" / "func" / "sub-01_task-rest_atlas-corners_stat-graph_measures"
    table = pd.read_csv(f"{corners}.tsv", sep="\t", na_values="n/a")
    assert table["clustering"].isna().all() and (table["n_nodes"].fillna(0) == 0).all()
    sidecar = json.loads(Path(f"{corners}.json").read_text())
    assert sidecar["Computed"] is False and "only 0 region(s)" in sidecar["NotComputed"]
    summary = [line for line in result.stderr.splitlines() if "atlas-corners" in line]
    assert len(summary) == 1 and "graph measures n/a" in summary[0], result.stderr
    assert "ok      sub-01" in result.stderr
    # sidecars and methods claim no MNI coordinate or mirror
    alff_sidecar = (out / "sub-01" / "func" / "sub-01_task-rest_stat-alff_boldmap.json").read_text()
    assert "MNI" not in alff_sidecar
    methods = json.loads((out / "logs" / "methods-participant.json").read_text())["text"]
    assert "homotopic" not in methods and "Seed-based" not in methods and "Dual regression" not in methods
    assert "ALFF" in methods and "analysed in native space, which has no MNI coordinates" in methods


def test_explicit_mni_stages_refused_in_native_space(native, tmp_path):
    result = cli(native.root, tmp_path / "out", "participant", "--space", "native", "--seeds", "pcc",
                 "--atlases", "aal")  # fmt: skip
    assert_user_error(result, 2, "--seeds", "--atlases aal", "--space native")
    assert not (tmp_path / "out").exists()


def test_native_files_with_default_space_say_so(native, tmp_path):
    result = cli(native.root, tmp_path / "out", "participant", *FAST)
    assert result.returncode == 3, result.stderr
    assert "no space- entity (--space native)" in result.stderr
    assert "space native is not" not in result.stderr


def test_symmetric_template_run_names_the_mirror_template(tmp_path):
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=0, n_volumes=80, space="MNI152NLin2009cSym")
    out = tmp_path / "out"
    result = cli(info.root, out, "participant", "--space", "MNI152NLin2009cSym", "--skip", "alff", "reho", *FAST[1:])
    assert result.returncode == 0, result.stderr
    assert "not run" not in result.stderr
    stem = out / "sub-01" / "func" / "sub-01_task-rest_space-MNI152NLin2009cSym_res-4"
    raw = json.loads(Path(f"{stem}_stat-vmhc_boldmap.json").read_text())
    assert raw["MirrorTemplate"] == "MNI152NLin2009cSym" and raw["MirrorTemplateSymmetric"] is True
    assert "homotopic voxel" in raw["MirrorNote"]
    assert raw["SeriesSmoothingFWHM"] == 6.0
    z = json.loads(Path(f"{stem}_stat-vmhc_desc-z_boldmap.json").read_text())
    assert z["SmoothingFWHM"] == 0.0
    assert raw["VoxelsOnMidline"] == 0  # nilearn's 4 mm grid has no x = 0 column
    methods = json.loads((out / "logs" / "methods-participant.json").read_text())["text"]
    assert "MNI152NLin2009cSym (a symmetric template" in methods
    assert "the VMHC map itself was not smoothed" in methods
    assert "smoothed with a 6 mm FWHM Gaussian kernel" not in methods  # VMHC is the only map here


def test_vmhc_from_the_cli_on_the_2mm_mni_grid_with_an_x0_column(tmp_path):
    """nilearn's 2 mm MNI grid (99 x 117 x 95, origin (-98, -134, -72)) has a voxel column at x = 0, as
    TemplateFlow's res-2 grids do: its 4 031 brain voxels were their own mirror (z capped at 7) and pulled every
    other voxel's z-map to mean -0.12, SD 0.48 (issue 14). About a minute: 40 s of it writing the dataset."""
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=0, voxel_size=2, n_volumes=64, seed=7,
                        high_motion=False)  # fmt: skip
    out = tmp_path / "out"
    result = cli(info.root, out, "participant", "--skip", "alff", "reho", *FAST[1:])
    assert result.returncode == 0, result.stderr
    stem = out / "sub-01" / "func" / "sub-01_task-rest_space-MNI152NLin2009cAsym_res-2"
    raw_img = nb.load(f"{stem}_stat-vmhc_boldmap.nii.gz")
    raw = np.asanyarray(raw_img.dataobj)
    z = np.asanyarray(nb.load(f"{stem}_stat-vmhc_desc-z_boldmap.nii.gz").dataobj)
    column = round(float(-raw_img.affine[0, 3] / raw_img.affine[0, 0]))
    assert raw_img.affine[0, 3] + column * raw_img.affine[0, 0] == 0.0
    mask_path = next((info.fmriprep_dir / "sub-01" / "func").glob("*desc-brain_mask.nii.gz"))
    mask = np.asanyarray(nb.load(str(mask_path)).dataobj) > 0
    assert mask[column].sum() == 4031
    assert (raw[column] == 0).all() and (z[column] == 0).all()  # midline not analysed
    analysed = z != 0
    assert analysed.sum() == mask.sum() - 4031
    assert abs(z[analysed].mean()) < 1e-4 and abs(z[analysed].std() - 1.0) < 1e-3
    assert np.abs(raw).max() < 0.99 * 7.0  # no capped voxel
    sidecar = json.loads(Path(f"{stem}_stat-vmhc_boldmap.json").read_text())
    assert sidecar["VoxelsOnMidline"] == 4031 and sidecar["VoxelsWithoutMirror"] == 0
    assert sidecar["MirrorTemplate"] == "MNI152NLin2009cAsym" and not sidecar["MirrorTemplateSymmetric"]


def test_grid_that_is_not_the_named_template_is_refused(tmp_path):
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=0, n_volumes=30)
    func = info.fmriprep_dir / "sub-01" / "func"
    bold = func / "sub-01_task-rest_space-MNI152NLin2009cAsym_res-4_desc-preproc_bold.nii.gz"
    for path in (bold, func / "sub-01_task-rest_space-MNI152NLin2009cAsym_res-4_desc-brain_mask.nii.gz"):
        img = nb.load(str(path))
        affine = img.affine.copy()
        affine[:3, 3] += [30.0, 40.0, 60.0]  # a scanner-space position labelled MNI
        img = nb.Nifti1Image(np.asanyarray(img.dataobj), affine, img.header)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        nb.save(img, str(path))
    result = cli(info.root, tmp_path / "out", "participant", *FAST)
    assert_user_error(result, 3, bold.name, "50x59x48", "not the MNI152NLin2009cAsym template", max_lines=4)
