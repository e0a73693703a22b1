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
