"""NIfTI loading: masked series in the mask's C order, whatever the array's memory order."""

import nibabel as nb
import numpy as np
import pytest

from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io.images import _masked_time_series, load_masked_run


@pytest.mark.parametrize("order", ["C", "F"])
def test_masked_series_matches_boolean_indexing(order):
    rng = np.random.default_rng(0)
    data = np.asarray(rng.standard_normal((5, 6, 7, 11)), order=order, dtype=np.float32)
    mask = rng.random((5, 6, 7)) > 0.4
    series = _masked_time_series(data, mask)
    np.testing.assert_array_equal(series, data[mask].T)
    assert series.flags.c_contiguous and series.dtype == np.float32


def _write(path, data):
    nb.save(nb.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_load_errors_name_the_file(tmp_path):
    mask = _write(tmp_path / "mask.nii.gz", np.ones((4, 4, 4), np.uint8))
    bold3d = _write(tmp_path / "bold3d.nii.gz", np.ones((4, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"bold3d\.nii\.gz is 3-D"):
        load_masked_run(bold3d, mask)
    bold = _write(tmp_path / "bold.nii.gz", np.ones((4, 4, 5, 10), np.float32))
    with pytest.raises(InputError, match="does not match the BOLD grid"):
        load_masked_run(bold, mask)
    nan = np.ones((4, 4, 4, 10), np.float32)
    nan[1, 1, 1, 3] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        load_masked_run(_write(tmp_path / "nan.nii.gz", nan), mask)
    with pytest.raises(InputError, match="every in-mask value is zero"):
        load_masked_run(_write(tmp_path / "zero.nii.gz", np.zeros((4, 4, 4, 10), np.float32)), mask)
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="cannot be read as NIfTI"):
        load_masked_run(tmp_path / "broken.nii.gz", mask)


def _reference_series(path, mask):
    """What nibabel's own reader gives: the scaled image's in-mask values as float32 (time, voxels)."""
    return np.asanyarray(nb.load(str(path)).dataobj)[mask].T.astype(np.float32)


@pytest.mark.parametrize(
    ("dtype", "slope", "inter"),
    [(np.float32, None, None), (np.int16, 0.37, 12.5), (np.dtype(">f4"), None, None), (np.uint8, 2.0, -1.0)],
)
@pytest.mark.parametrize("extension", [".nii.gz", ".nii"])
def test_fast_load_equals_nibabel(tmp_path, dtype, slope, inter, extension):
    """The one-call ISA-L inflate (and the scaling of masked values only) gives nibabel's values bit for bit,
    for float, big-endian and scaled integer data (fMRIPrep may write int16 with scl_slope)."""
    rng = np.random.default_rng(1)
    data = rng.integers(0, 200, size=(6, 7, 5, 9)).astype(dtype)
    img = nb.Nifti1Image(data, np.diag([-2.0, 2.0, 2.0, 1.0]))  # LAS, as fMRIPrep's MNI outputs
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    bold = tmp_path / f"bold{extension}"
    nb.save(img, str(bold))
    mask = rng.random((6, 7, 5)) > 0.3
    mask_path = tmp_path / "mask.nii.gz"
    nb.save(nb.Nifti1Image(mask.astype(np.uint8), img.affine), str(mask_path))
    run = load_masked_run(bold, mask_path)
    assert run.series.dtype == np.float32 and run.series.flags.c_contiguous
    np.testing.assert_array_equal(run.series, _reference_series(bold, mask))


def test_truncated_gzip_is_a_user_error(tmp_path):
    mask = _write(tmp_path / "mask.nii.gz", np.ones((4, 4, 4), np.uint8))
    bold = _write(tmp_path / "bold.nii.gz", np.random.default_rng(0).random((4, 4, 4, 30)).astype(np.float32))
    (tmp_path / "cut.nii.gz").write_bytes(bold.read_bytes()[:-200])
    with pytest.raises(InputError, match=r"cut\.nii\.gz is truncated or corrupt"):
        load_masked_run(tmp_path / "cut.nii.gz", mask)


def test_saved_gzip_inflates_to_nibabels_bytes_and_repeats(tmp_path):
    """ISA-L's .nii.gz holds exactly the bytes nibabel writes uncompressed, reads back, and is the same file
    whenever it is written again (zero mtime, no name in the header)."""
    import gzip

    from clbp_bidsapp.io.images import save_nifti

    rng = np.random.default_rng(2)
    img = nb.Nifti1Image(rng.standard_normal((7, 8, 9)).astype(np.float32), np.diag([-2.0, 2.0, 2.0, 1.0]))
    first, second = save_nifti(img, tmp_path / "a.nii.gz"), save_nifti(img, tmp_path / "b.nii.gz")
    nb.save(img, str(tmp_path / "plain.nii"))
    assert gzip.decompress(first.read_bytes()) == (tmp_path / "plain.nii").read_bytes()
    assert first.read_bytes() == second.read_bytes()
    np.testing.assert_array_equal(np.asanyarray(nb.load(str(first)).dataobj), img.get_fdata(dtype=np.float32))
