"""Participant report figures and run section (issue 21): verdict line, mask outline on the mean BOLD, maps whose
out-of-brain zeros are transparent, native-space runs drawn without the MNI template."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_mni152_brain_mask
from PIL import Image

from clbp_bidsapp.interfaces.report import ParticipantReport, RunReport
from clbp_bidsapp.io import images
from clbp_bidsapp.reports import figures

N_VOLUMES, TR = 60, 2.0


def _pngs(text: str) -> list[Image.Image]:
    sources = re.findall(r"src=\"data:image/png;base64,([^\"]+)\"", text)
    return [Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB") for s in sources]


def _coloured_fraction(png: bytes) -> float:
    """Share of pixels with a saturated colour: the template and the background are grey, the overlay is not."""
    hsv = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").convert("HSV"), dtype=float)
    return float(((hsv[..., 1] > 80) & (hsv[..., 2] > 40)).mean())


def test_verdict_used_with_dof():
    qc = {"used": True, "retained_seconds": 104.0, "n_retained": 52, "n_volumes": 60, "max_fd": 0.61}
    used, line = figures.verdict(qc | {"dof_bandpass": 17.3}, min_seconds=120)
    assert used and line == "Used: 104 s retained (52 of 60 volumes), effective DOF 17.3, max FD 0.61 mm."
    assert "DOF" not in figures.verdict(qc)[1]  # the column is optional (older QC tables)


def test_verdict_skipped_names_the_reason():
    qc = {"used": False, "retained_seconds": 40.0, "n_retained": 20, "n_volumes": 60, "max_fd": float("nan")}
    used, line = figures.verdict(qc, min_seconds=120)
    assert not used
    assert line.startswith("Skipped: too little time left after censoring (minimum 120 s, --min-time)")
    assert "40 s retained (20 of 60 volumes)" in line and "max FD n/a mm" in line


@pytest.fixture(scope="module")
def sphere_map(tmp_path_factory) -> Path:
    """z values in -2..2 inside a 10 mm sphere, 0 everywhere else (as written outside the brain mask)."""
    mask_img = load_mni152_brain_mask(resolution=4)
    ijk = np.indices(mask_img.shape).reshape(3, -1).T
    xyz = nb.affines.apply_affine(mask_img.affine, ijk)
    inside = (np.linalg.norm(xyz - (20, -20, 10), axis=1) <= 10).reshape(mask_img.shape)
    volume = np.zeros(mask_img.shape, np.float32)
    volume[inside] = np.random.default_rng(0).uniform(-2, 2, int(inside.sum()))
    path = tmp_path_factory.mktemp("maps") / "sphere.nii.gz"
    nb.save(nb.Nifti1Image(volume, mask_img.affine), path)
    return path


def test_map_background_is_transparent(sphere_map):
    # before issue 21 the zeros were coloured as a value (~60% of the mosaic coloured); now only the sphere is
    png = figures.mosaic_figure(sphere_map, title="z", mni_background=True)
    assert 0 < _coloured_fraction(png) < 0.05


def _run_inputs(tmp: Path, *, space_mni: bool, qc_extra: dict | None = None) -> dict:
    mask_img = load_mni152_brain_mask(resolution=4)
    mask = np.asarray(mask_img.dataobj) > 0
    affine = mask_img.affine if space_mni else np.diag([3.0, -3.0, 3.5, 1.0])  # native: LAS, other voxel size
    rng = np.random.default_rng(0)
    n_vox = int(mask.sum())
    series = (1000 + rng.normal(0, 10, (N_VOLUMES, n_vox))).astype(np.float32)
    fd = np.abs(rng.normal(0.15, 0.1, N_VOLUMES))
    fd[[10, 11, 40]] = 0.9
    sample_mask = fd <= 0.5
    images.save_series(tmp / "series.npy", series)
    images.save_series(tmp / "cleaned.npy", series[sample_mask] - 1000)
    np.save(tmp / "sample_mask.npy", sample_mask)
    images.save_grid(tmp / "grid.npz", mask, affine)
    pd.DataFrame({"framewise_displacement": fd}).to_csv(tmp / "confounds.tsv", sep="\t", index=False)
    qc = {
        "n_volumes": N_VOLUMES,
        "n_retained": int(sample_mask.sum()),
        "retained_seconds": float(sample_mask.sum() * TR),
        "max_fd": float(fd.max()),
        "used": True,
    } | (qc_extra or {})
    pd.DataFrame([qc]).to_csv(tmp / "qc.tsv", sep="\t", index=False)
    reho = tmp / "reho.nii.gz"
    values = rng.normal(0, 1, n_vox).astype(np.float32)
    values[: n_vox // 2] = 0  # the lower half of the brain is 0: the background must show there
    images.save_map(reho, values, (mask, affine))
    return {
        "source_name": "sub-01_task-rest",
        "series": str(tmp / "series.npy"),
        "cleaned": str(tmp / "cleaned.npy"),
        "sample_mask": str(tmp / "sample_mask.npy"),
        "confounds": str(tmp / "confounds.tsv"),
        "qc": str(tmp / "qc.tsv"),
        "grid": str(tmp / "grid.npz"),
        "tr": TR,
        "fd_thresh": 0.5,
        "min_seconds": 100.0,
        "maps": [str(reho)],
        "map_titles": ["ReHo (z)"],
        "mni_background": space_mni,
    }


def make_participant_report(tmp: Path, *, space_mni: bool = True, qc_extra: dict | None = None) -> Path:
    """``tmp/out/sub-01.html`` from one synthetic run (4 mm MNI grid, or a native LAS grid)."""
    work = tmp / "work"
    work.mkdir(parents=True, exist_ok=True)
    fragment = RunReport(**_run_inputs(work, space_mni=space_mni, qc_extra=qc_extra)).run(cwd=str(work))
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    result = ParticipantReport(participant="01", fragments=[fragment.outputs.out_fragment], output_dir=str(out)).run(
        cwd=str(work)
    )
    return Path(result.outputs.out_report)


@pytest.mark.parametrize("space_mni", [True, False])
def test_run_section_verdict_first_then_figures(tmp_path, space_mni):
    text = make_participant_report(tmp_path, space_mni=space_mni, qc_extra={"dof_bandpass": 23.5}).read_text()
    section = text[text.index("<h2>sub-01_task-rest</h2>") :]
    verdict = re.search(r"<p class='verdict'>([^<]*)</p>", section)
    assert verdict and section.index(verdict.group(0)) < section.index("<img")  # the verdict comes first
    assert verdict.group(1) == "Used: 114 s retained (57 of 60 volumes), effective DOF 23.5, max FD 0.9 mm."
    assert "brain mask outline on the mean BOLD" in section
    pngs = _pngs(section)
    assert len(pngs) == 4  # mask on mean BOLD, motion, carpet, ReHo
    assert all(min(p.size) > 50 for p in pngs)


def test_skipped_run_is_flagged(tmp_path):
    text = make_participant_report(tmp_path, qc_extra={"used": False}).read_text()
    assert "<p class='verdict skipped'>Skipped: too little time left after censoring (minimum 100 s" in text


def _grey_fraction(png: bytes) -> float:
    """Share of mid-grey unsaturated pixels: the template (or a mean BOLD) behind the map."""
    hsv = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").convert("HSV"), dtype=float)
    return float(((hsv[..., 1] < 30) & (hsv[..., 2] > 60) & (hsv[..., 2] < 230)).mean())


def test_native_map_is_not_drawn_over_the_template(sphere_map):
    over_mni = figures.mosaic_figure(sphere_map, title="z", mni_background=True)
    native = figures.mosaic_figure(sphere_map, title="z", mni_background=False)
    assert _grey_fraction(over_mni) > 0.05
    assert _grey_fraction(native) < 0.01


def test_native_run_maps_over_its_mean_bold(tmp_path):
    """A native-space run's maps are drawn over the run's own mean BOLD (not nothing, not the MNI template)."""
    text = make_participant_report(tmp_path, space_mni=False).read_text()
    map_png = base64.b64decode(re.findall(r"src=\"data:image/png;base64,([^\"]+)\"", text)[-1])
    assert _grey_fraction(map_png) > 0.05  # the mean BOLD shows where the map is 0
    assert "cyan: MNI template brain" not in text


def test_design_picture_panels():
    from clbp_bidsapp.reports.group import MAX_DESIGN_PANELS, _design_figure, _design_panels

    design = pd.DataFrame(
        {
            "participant_id": ["01", "02", "03", "04"],
            "group": ["CLBP", "CLBP", "HC", "HC"],
            "sex": ["M", "F", "F", "M"],  # not numeric: in the table, not drawn
            "site": [1, 1, 1, 1],  # constant: nothing to compare
            "age": [30, 41, 35, 50],
            **{f"score{i}": [1.0, 2.0, 3.0, float(i)] for i in range(6)},
        }
    )
    panels = _design_panels(design, "group")
    assert panels == ["age", "score0", "score1", "score2", "score3"] and len(panels) == MAX_DESIGN_PANELS
    narrow = Image.open(io.BytesIO(_design_figure(design[["participant_id", "group", "age"]], "group")))
    wide = Image.open(io.BytesIO(_design_figure(design, "group")))
    assert wide.size[0] > 2.5 * narrow.size[0]  # one panel per covariate next to the group sizes


def test_table_headers_wrap_after_underscores_and_stay_escaped():
    from clbp_bidsapp.reports import html

    text = html.table([{"balanced_accuracy_ci_low": 0.8, "a<b": 1}])
    assert "<th>balanced_<wbr>accuracy_<wbr>ci_<wbr>low</th>" in text
    assert "<th>a&lt;b</th>" in text
