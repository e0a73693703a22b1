"""Template-space registry: known spaces, stages per space, and the template bounding-box check."""

from __future__ import annotations

import numpy as np
import pytest

from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import atlases, spaces


def _affine(voxel, origin, flip_x=False):
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = origin
    if flip_x:
        affine[0, 0] = -voxel
    return affine


def test_registry_entries():
    asym, sym = spaces.lookup("MNI152NLin2009cAsym"), spaces.lookup("MNI152NLin2009cSym")
    assert asym.mni_aligned and not asym.symmetric and "approximately" in asym.mirror_note
    assert sym.mni_aligned and sym.symmetric and "homotopic voxel" in sym.mirror_note
    for name in ("native", "T1w"):
        space = spaces.lookup(name)
        assert space.known and not space.mni_aligned and space.bbox_mm is None
    unknown = spaces.lookup("MyTemplate")
    assert not unknown.known and not unknown.mni_aligned


@pytest.mark.parametrize(
    ("space", "shape", "affine"),
    [
        ("MNI152NLin2009cAsym", (97, 115, 97), _affine(2, (-96, -132, -78))),  # TemplateFlow res-2
        ("MNI152NLin2009cAsym", (193, 229, 193), _affine(1, (-96, -132, -78))),  # res-1
        ("MNI152NLin2009cSym", (65, 77, 65), _affine(3, (-96, -132, -78))),  # fMRIPrep res-native at 3 mm
        ("MNI152NLin2009cAsym", (50, 59, 48), _affine(4, (-98, -134, -72))),  # nilearn's 4 mm MNI grid
        ("MNI152NLin2009cAsym", (99, 117, 95), _affine(2, (-98, -134, -72))),  # nilearn's 2 mm MNI grid
        ("MNI152NLin6Asym", (91, 109, 91), _affine(2, (90, -126, -72), flip_x=True)),  # FSL 2 mm, LAS
        ("MNI152NLin6Asym", (182, 218, 182), _affine(1, (90, -126, -72), flip_x=True)),  # FSL 1 mm, LAS
    ],
)
def test_template_grids_pass(space, shape, affine):
    spaces.check_template_grid("bold.nii.gz", shape, affine, spaces.lookup(space))


def test_native_epi_grid_is_refused_with_file_grid_and_template():
    rotation = np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([3.5, 3.5, 4.0])
    affine[:3, 3] = [-112.0, -95.0, -40.0]
    with pytest.raises(InputError) as info:
        spaces.check_template_grid("sub-01_bold.nii.gz", (64, 64, 36), affine, spaces.lookup("MNI152NLin2009cAsym"))
    message = str(info.value)
    assert "sub-01_bold.nii.gz" in message and "64x64x36" in message and "MNI152NLin2009cAsym" in message
    assert "\n" not in message


def test_shifted_template_grid_is_refused():
    with pytest.raises(InputError, match="not the MNI152NLin2009cAsym template"):
        spaces.check_template_grid(
            "bold.nii.gz", (97, 115, 97), _affine(2, (-96, -132, -48)), spaces.lookup("MNI152NLin2009cAsym")
        )


def test_no_check_without_a_template():
    spaces.check_template_grid("bold.nii.gz", (64, 64, 36), _affine(3.5, (0, 0, 0)), spaces.lookup("T1w"))


def test_stages_per_space():
    bundled = tuple(atlases.ATLASES)
    skipped, kept = spaces.unavailable_stages(
        spaces.lookup("MNI152NLin2009cSym"), atlases=("aal", "my.nii.gz"), bundled_atlases=bundled, networks="seitzman"
    )
    assert skipped == {} and kept == ("aal", "my.nii.gz")
    skipped, kept = spaces.unavailable_stages(
        spaces.lookup("T1w"), atlases=("aal", "my.nii.gz"), bundled_atlases=bundled, networks="seitzman"
    )
    assert set(skipped) == {"seedfc", "vmhc", "dualreg"} and kept == ("my.nii.gz",)
    skipped, kept = spaces.unavailable_stages(
        spaces.lookup("native"), atlases=("aal",), bundled_atlases=bundled, networks="nets.nii.gz"
    )
    assert set(skipped) == {"seedfc", "vmhc", "connectome", "graph"} and kept == ()
    message = spaces.skip_message(spaces.lookup("native"), skipped, ["aal"])
    assert message.startswith("--space native has no MNI coordinates; not run: seedfc") and "\n" not in message
