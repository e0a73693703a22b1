"""ASLPrep input discovery (pybids), QC table reading and the resampling of CBF maps to the BOLD grid."""

from __future__ import annotations

import shutil

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import aslprep
from clbp_bidsapp.testing.synthetic import ASLPREP_VERSION, SPACE, write_aslprep


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("aslprep") / "aslprep"
    write_aslprep(root, groups={"01": "CLBP", "02": "HC"}, voxel_size=4, seed=1)
    perf = root / "sub-02" / "perf"
    plain = perf / f"sub-02_space-{SPACE}_res-4_cbf.nii.gz"
    shutil.copy(plain, perf / f"sub-02_space-{SPACE}_res-4_desc-basil_cbf.nii.gz")  # a BASIL map next to the mean
    return root


def _find(tree, participant, *, space=SPACE, variant="mean"):
    layout = aslprep.build_layout(tree)
    return aslprep.find_cbf(layout, participant=participant, space=space, variant=variant,
                            version=aslprep.aslprep_version(tree))  # fmt: skip


def test_finds_the_mean_cbf_map_its_mask_qc_table_and_version(tree):
    (found,) = _find(tree, "01")
    assert found.cbf.name == f"sub-01_space-{SPACE}_res-4_cbf.nii.gz"
    assert found.mask.name == f"sub-01_space-{SPACE}_res-4_desc-brain_mask.nii.gz"
    assert found.qc.name == "sub-01_desc-qualitycontrol_cbf.tsv"
    assert found.source_name == "sub-01"
    assert found.aslprep_version == ASLPREP_VERSION


def test_the_variant_flag_chooses_the_file(tree):
    (mean,) = _find(tree, "02")
    (basil,) = _find(tree, "02", variant="basil")
    assert "desc-" not in mean.cbf.name
    assert basil.cbf.name.endswith("_desc-basil_cbf.nii.gz")
    assert _find(tree, "01", variant="basil") == []  # no BASIL map: no CBF for this participant
    assert _find(tree, "03") == []  # no CBF at all: BOLD only


def test_cbf_only_in_another_space_is_refused_naming_the_file_and_both_spaces(tree):
    with pytest.raises(InputError) as caught:
        _find(tree, "01", space="MNI152NLin6Asym")
    message = str(caught.value)
    assert f"sub-01_space-{SPACE}_res-4_cbf.nii.gz" in message
    assert f"space-{SPACE}" in message and "MNI152NLin6Asym" in message
    with pytest.raises(InputError, match="native"):
        _find(tree, "01", space="native")


def test_quality_columns_follow_the_variant(tmp_path):
    path = tmp_path / "qc.tsv"
    pd.DataFrame({"mean_fd": [0.2], "qei_cbf": [0.8], "qei_cbf_basil": [0.55]}).to_csv(path, sep="\t", index=False)
    assert aslprep.read_quality(path, "mean") == {"qei": 0.8, "mean_fd": 0.2}
    assert aslprep.read_quality(path, "basil")["qei"] == 0.55
    assert aslprep.read_quality(path, "scrub")["qei"] is None  # column absent
    assert aslprep.read_quality(None, "mean") == {"qei": None, "mean_fd": None}
    path.write_text("")  # empty: not a table
    with pytest.raises(InputError, match=r"qc\.tsv"):
        aslprep.read_quality(path, "mean")


def _linear(affine, shape):
    """A linear function of world coordinates sampled on a grid (trilinear interpolation reproduces it)."""
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = nb.affines.apply_affine(affine, ijk)
    return (40 + 0.5 * xyz[:, 0] - 0.25 * xyz[:, 1] + 0.1 * xyz[:, 2]).reshape(shape)


def test_same_grid_is_not_resampled_and_values_outside_the_cbf_mask_are_nan(tmp_path):
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -20
    data = _linear(affine, (11, 12, 10))
    nb.save(nb.Nifti1Image(data.astype(np.float32), affine), tmp_path / "cbf.nii.gz")
    cbf_mask = np.ones(data.shape, dtype=np.uint8)
    cbf_mask[0] = 0
    nb.save(nb.Nifti1Image(cbf_mask, affine), tmp_path / "mask.nii.gz")
    target = np.ones(data.shape, dtype=bool)
    target[:, :, 0] = False
    values, resampled = aslprep.load_on_grid(tmp_path / "cbf.nii.gz", tmp_path / "mask.nii.gz",
                                             target_mask=target, target_affine=affine)  # fmt: skip
    assert not resampled
    assert np.isnan(values[0]).all() and np.isnan(values[:, :, 0]).all()
    assert np.allclose(values[1:, :, 1:], data[1:, :, 1:].astype(np.float32))


@pytest.mark.parametrize("flip", [False, True], ids=["RAS", "LAS"])
def test_another_resolution_is_resampled_to_the_bold_grid(tmp_path, flip):
    """A 2 mm CBF map (RAS or LAS) onto a 4 mm BOLD grid: a linear field is reproduced inside the field of view."""
    fine = np.diag([2.0, 2.0, 2.0, 1.0])
    fine[:3, 3] = -30
    shape = (31, 31, 31)
    if flip:  # LAS: the first axis runs right to left
        fine[0, 0], fine[0, 3] = -2.0, 30.0
    nb.save(nb.Nifti1Image(_linear(fine, shape).astype(np.float32), fine), tmp_path / "cbf.nii.gz")
    coarse = np.diag([4.0, 4.0, 4.0, 1.0])
    coarse[:3, 3] = -24
    target = np.ones((13, 13, 13), dtype=bool)
    values, resampled = aslprep.load_on_grid(tmp_path / "cbf.nii.gz", None, target_mask=target,
                                             target_affine=coarse)  # fmt: skip
    assert resampled
    assert values.shape == target.shape
    assert np.allclose(values, _linear(coarse, target.shape), atol=1e-3)
    assert aslprep.describe_grid(shape, fine) == "31x31x31 at 2x2x2 mm"


def test_a_4d_cbf_series_is_refused(tmp_path):
    nb.save(nb.Nifti1Image(np.ones((3, 3, 3, 2), dtype=np.float32), np.eye(4)), tmp_path / "cbf.nii.gz")
    with pytest.raises(InputError, match="3-D mean CBF"):
        aslprep.load_on_grid(tmp_path / "cbf.nii.gz", None, target_mask=np.ones((3, 3, 3), bool),
                             target_affine=np.eye(4))  # fmt: skip


def test_version_is_unknown_without_a_generated_by_entry(tmp_path):
    (tmp_path / "dataset_description.json").write_text('{"Name": "x"}')
    assert aslprep.aslprep_version(tmp_path) == "unknown"
    assert aslprep.resolve_aslprep_dir(None) is None
    with pytest.raises(InputError, match="--aslprep-dir"):
        aslprep.resolve_aslprep_dir(tmp_path / "missing")
