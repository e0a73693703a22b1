"""CBF maps of participants without BOLD: the template-grid check at the participant level, one grid at the group."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pytest

from clbp_bidsapp.config import InputSettings
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.group.perfusion import off_grid
from clbp_bidsapp.io import aslprep
from clbp_bidsapp.testing.synthetic import SPACE, write_aslprep
from clbp_bidsapp.workflows import perfusion


def _save(path, shape, zooms):
    affine = np.diag([*zooms, 1.0])
    nb.save(nb.Nifti1Image(np.ones(shape, np.float32), affine), str(path))
    return path


def test_a_cbf_map_off_the_common_grid_is_left_out_with_the_reason(tmp_path):
    maps = {label: [_save(tmp_path / f"sub-{label}.nii.gz", (7, 8, 9), (4, 4, 4))] for label in ("01", "02", "03")}
    maps["04"] = [_save(tmp_path / "sub-04.nii.gz", (14, 16, 18), (2, 2, 2))]
    reasons = off_grid(maps)
    assert list(reasons) == ["04"]
    assert "sub-04.nii.gz is on grid 14x16x18 at 2x2x2 mm, the other CBF maps on 7x8x9 at 4x4x4 mm" in reasons["04"]
    assert off_grid({k: v for k, v in maps.items() if k != "04"}) == {}


@pytest.fixture(scope="module")
def asl(tmp_path_factory):
    root = tmp_path_factory.mktemp("asl") / "aslprep"
    write_aslprep(root, groups={"01": "CLBP", "02": "HC"}, voxel_size=4, seed=2)
    small = root / "sub-02" / "perf" / f"sub-02_space-{SPACE}_res-4_cbf.nii.gz"
    _save(small, (7, 8, 9), (4, 4, 4))  # a grid that is not the template's
    return aslprep.build_layout(root), root, aslprep.aslprep_version(root)


def _wfs(asl, label, tmp_path, skipped):
    inputs = InputSettings(space=SPACE)
    return perfusion.participant_cbf_wfs(asl, label, [], output_dir=tmp_path, fmriprep_dir=tmp_path, inputs=inputs,
                                         smoothing_fwhm=6.0, skipped=skipped)  # fmt: skip


def test_without_bold_the_cbf_map_keeps_its_own_template_grid(asl, tmp_path):
    skipped = []
    (workflow,) = _wfs(asl, "01", tmp_path, skipped)
    maps = workflow.get_node("cbf_maps")
    assert not maps.inputs.bold_mask and maps.inputs.space == SPACE  # own grid, template GM reference
    sink = workflow.get_node("ds_relative")
    assert sink.inputs.entities["space"] == SPACE and sink.inputs.entities["res"] == "4"
    assert skipped == []


def test_without_bold_a_cbf_map_not_on_a_template_grid_is_refused_naming_it(asl, tmp_path):
    with pytest.raises(InputError, match=r"sub-02_space-.*_cbf\.nii\.gz: grid 7x8x9 .* not the MNI152NLin2009cAsym"):
        _wfs(asl, "02", tmp_path, [])
