"""The nipype interfaces on small arrays in tmp_path: each writes what its core kernel computes, on its grid.

The grid is 7 x 8 x 9 voxels of 3 mm, LAS (x runs from +9 to -9 mm, so the column at x = 0 is on the midline),
with an irregular mask; series are 40 volumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.config import DenoiseSettings, Settings
from clbp_bidsapp.core import alff, centrality, denoise, reho, standardize, vmhc
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import images

SHAPE = (7, 8, 9)
N_TIME = 40
AFFINE = np.array([[-3.0, 0, 0, 9.0], [0, 3.0, 0, -12.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """An irregular mask (a ball, symmetric in x) with its .npz and a (time, voxels) series .npy."""
    folder = tmp_path_factory.mktemp("interfaces")
    i, j, k = np.indices(SHAPE)
    mask = ((i - 3) ** 2 / 9 + (j - 3.5) ** 2 / 12 + (k - 4) ** 2 / 16) <= 1.0
    mask[3, 0:3, :] = False  # a notch off the midline's lower part
    rng = np.random.default_rng(11)
    shared = rng.normal(size=(N_TIME, 1))
    series = (0.6 * shared + rng.normal(size=(N_TIME, int(mask.sum())))).astype(np.float32)
    return {
        "mask": mask,
        "series": series,
        "grid": images.save_grid(folder / "grid.npz", mask, AFFINE),
        "series_file": images.save_series(folder / "series.npy", series),
    }


def _masked(path: str, mask: np.ndarray) -> np.ndarray:
    volume, affine = images.load_volume(Path(path))
    assert volume.shape == mask.shape and np.allclose(affine, AFFINE)
    return volume[mask]


@pytest.mark.parametrize("censored", [(), (12, 13, 30)])
def test_alff_writes_the_kernel_values_and_names_its_spectrum_method(grid, tmp_path, censored):
    from clbp_bidsapp.interfaces.metrics import ALFF

    sample_mask = np.ones(N_TIME, bool)
    sample_mask[list(censored)] = False
    retained = grid["series"][sample_mask]
    series_file = images.save_series(tmp_path / "retained.npy", retained)
    mask_file = images.save_array(tmp_path / "sample_mask.npy", sample_mask)
    result = ALFF(series=str(series_file), grid=str(grid["grid"]), sample_mask=str(mask_file), tr=2.0,
                  band=(0.01, 0.08)).run(cwd=str(tmp_path))  # fmt: skip
    expected_alff, expected_falff = alff.alff_falff(retained, tr=2.0, band=(0.01, 0.08), sample_mask=sample_mask)
    np.testing.assert_allclose(_masked(result.outputs.alff, grid["mask"]), expected_alff, rtol=1e-5)
    np.testing.assert_allclose(_masked(result.outputs.falff, grid["mask"]), expected_falff, rtol=1e-5)
    method = json.loads(Path(result.outputs.metadata).read_text())["SpectrumMethod"]
    assert method == ("FFT" if not censored else "Lomb-Scargle periodogram of the retained volumes")


def test_reho_writes_kendalls_w_of_the_kernel(grid, tmp_path):
    from clbp_bidsapp.interfaces.metrics import ReHo

    result = ReHo(series=str(grid["series_file"]), grid=str(grid["grid"]), neighbourhood=7).run(cwd=str(tmp_path))
    values = _masked(result.outputs.out_file, grid["mask"])
    np.testing.assert_allclose(values, reho.reho(grid["series"], mask=grid["mask"], neighbourhood=7), rtol=1e-5)
    assert values.min() > 0 and values.max() <= 1


def test_vmhc_leaves_the_midline_out_and_is_symmetric(grid, tmp_path):
    from clbp_bidsapp.interfaces.metrics import VMHC

    result = VMHC(series=str(grid["series_file"]), grid=str(grid["grid"]), fwhm=0.0).run(cwd=str(tmp_path))
    mask = grid["mask"]
    volume, _ = images.load_volume(Path(result.outputs.out_file))
    assert not volume[3].any()  # x = 0: its own mirror, not analysed
    np.testing.assert_allclose(volume, volume[::-1], rtol=1e-6)  # r(v, mirror v) = r(mirror v, v)
    expected = vmhc.vmhc(grid["series"], mask=mask, affine=AFFINE)
    analysed = np.isfinite(expected)
    np.testing.assert_allclose(volume[mask][analysed], expected[analysed], rtol=1e-5)
    meta = json.loads(Path(result.outputs.metadata).read_text())
    assert meta["VoxelsOnMidline"] == int(mask[3].sum())
    assert meta["VoxelsAnalysed"] == int(analysed.sum()) == int(np.count_nonzero(volume))
    vmhc_mask, _ = images.load_grid(Path(result.outputs.grid))
    assert not vmhc_mask[3].any() and (vmhc_mask <= mask).all()


def test_degree_centrality_in_grey_matter_with_a_dof_matched_threshold(grid, tmp_path):
    from clbp_bidsapp.interfaces.metrics import DegreeCentrality

    mask = grid["mask"]
    gm = np.zeros(SHAPE, np.float32)
    gm[:, :, 3:] = 0.8  # grey matter: the upper two thirds
    gm_file = tmp_path / "gm.nii.gz"
    images.make_image(gm, AFFINE).to_filename(gm_file)
    qc_file = tmp_path / "qc.tsv"
    pd.DataFrame([{"dof_bandpass": 25.0, "dof_unfiltered": 30.0}]).to_csv(qc_file, sep="\t", index=False)
    result = DegreeCentrality(series=str(grid["series_file"]), grid=str(grid["grid"]), gm_probseg=str(gm_file),
                              threshold_p=0.05, qc=str(qc_file)).run(cwd=str(tmp_path))  # fmt: skip
    in_gm = (mask & (gm > 0.2))[mask]
    r = centrality.r_threshold_for_p(0.05, dof=25.0)
    binarized, weighted = centrality.degree_centrality(grid["series"][:, in_gm], threshold=r)
    dc_mask = mask & (gm > 0.2)
    np.testing.assert_allclose(_masked(result.outputs.binarized, dc_mask), binarized, rtol=1e-5)
    np.testing.assert_allclose(_masked(result.outputs.weighted, dc_mask), weighted, rtol=1e-5)
    assert not images.load_volume(Path(result.outputs.weighted))[0][mask & ~dc_mask].any()
    meta = json.loads(Path(result.outputs.metadata).read_text())
    assert meta["Threshold"] == pytest.approx(r, abs=1e-4) and meta["ThresholdDegreesOfFreedom"] == 25.0


def test_degree_centrality_refuses_a_grey_matter_map_on_another_grid(grid, tmp_path):
    from clbp_bidsapp.interfaces.metrics import DegreeCentrality

    other = tmp_path / "gm_other.nii.gz"
    images.make_image(np.ones((6, 8, 9), np.float32), AFFINE).to_filename(other)
    with pytest.raises(InputError, match=r"gm_other\.nii\.gz: grid differs from the BOLD grid"):
        DegreeCentrality(series=str(grid["series_file"]), grid=str(grid["grid"]), gm_probseg=str(other)).run(
            cwd=str(tmp_path)
        )


@pytest.mark.parametrize("fwhm", [0.0, 6.0])
def test_standardize_gives_z_and_m_maps_within_the_mask(grid, tmp_path, fwhm):
    from clbp_bidsapp.interfaces.metrics import Standardize

    mask = grid["mask"]
    values = np.linspace(1.0, 3.0, int(mask.sum()))
    raw = images.save_map(tmp_path / "raw.nii.gz", values, (mask, AFFINE))
    result = Standardize(in_file=str(raw), grid=str(grid["grid"]), fwhm=fwhm).run(cwd=str(tmp_path))
    z = _masked(result.outputs.z_file, mask)
    m = _masked(result.outputs.m_file, mask)
    z_expected = standardize.zscore_map(values)
    if fwhm == 0:
        np.testing.assert_allclose(z, z_expected, atol=1e-5)
        np.testing.assert_allclose(m, values / values.mean(), rtol=1e-5)
        assert z.mean() == pytest.approx(0, abs=1e-5) and z.std() == pytest.approx(1, abs=1e-4)
    else:  # smoothing shrinks the spread but keeps the order of the ramp's ends
        assert z.std() < z_expected.std() and z[-1] > z[0]
    assert not images.load_volume(Path(result.outputs.z_file))[0][~mask].any()


def test_denoise_writes_its_series_mask_qc_and_provenance_through_io(grid, tmp_path):
    from clbp_bidsapp.interfaces.denoise import Denoise

    rng = np.random.default_rng(5)
    n = N_TIME
    table = pd.DataFrame({name: rng.normal(0, 0.01, n) for name in ("trans_x", "trans_y", "trans_z",
                                                                    "rot_x", "rot_y", "rot_z")})  # fmt: skip
    table["framewise_displacement"] = np.r_[np.nan, np.full(n - 1, 0.1)]
    table.loc[20, "framewise_displacement"] = 2.0  # censored with --fd-thresh 0.5
    confounds = tmp_path / "confounds.tsv"
    table.to_csv(confounds, sep="\t", index=False, na_rep="n/a")
    settings = DenoiseSettings(strategy="none", band_pass=(), fd_thresh=0.5, censor_neighbours=False, min_time=0,
                               min_dof=0)  # fmt: skip
    plain = Settings(denoise=settings).to_dict()["denoise"]
    result = Denoise(series=str(grid["series_file"]), confounds=str(confounds), tr=2.0, settings=plain,
                     where="sub-01_task-rest").run(cwd=str(tmp_path))  # fmt: skip
    sample_mask = np.load(result.outputs.sample_mask)
    assert sample_mask.dtype == bool and sample_mask.sum() == n - 1 and not sample_mask[20]
    expected = denoise.denoise(grid["series"], confounds=None, sample_mask=sample_mask, tr=2.0, band=None)
    np.testing.assert_allclose(images.load_series(Path(result.outputs.unfiltered)), expected.unfiltered, atol=1e-5)
    assert result.outputs.filtered == result.outputs.unfiltered  # no band-pass: one series
    qc = pd.read_csv(result.outputs.qc, sep="\t", na_values=["n/a"]).iloc[0]
    assert qc["n_censored"] == 1 and qc["n_retained"] == n - 1 and bool(qc["used"]) is True
    provenance = json.loads(Path(result.outputs.provenance).read_text())["Denoising"]
    assert provenance["CensoredVolumes"] == 1 and provenance["BandPass"] is None
