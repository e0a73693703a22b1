"""Where degree centrality is computed (io/grey_matter.py) and what its sidecar says (interfaces DegreeCentrality).

The grid is a 12 x 11 x 10 box of nilearn's 4 mm MNI grid over the left temporal and parietal cortex, so that the
brain mask holds grey and white matter and the straightforward correlation matrix stays small.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from nilearn.datasets import load_mni152_brain_mask
from nilearn.datasets.struct import GM_MNI152_FILE_PATH
from scipy import ndimage

from clbp_bidsapp.core.centrality import coarse_degree_centrality
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.interfaces.metrics import DegreeCentrality
from clbp_bidsapp.io import grey_matter, images

BOX = (slice(6, 18), slice(20, 31), slice(20, 30))
MNI = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def grid() -> tuple[np.ndarray, np.ndarray]:
    img = load_mni152_brain_mask(resolution=4)
    mask = np.asanyarray(img.dataobj)[BOX] > 0
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ [s.start for s in BOX] + img.affine[:3, 3]
    return mask, affine


@pytest.fixture(scope="module")
def series(grid) -> np.ndarray:
    mask, _ = grid
    rng = np.random.default_rng(5)
    shared = rng.standard_normal((48, 3))
    n = int(mask.sum())
    return (shared @ rng.standard_normal((3, n)) + 1.5 * rng.standard_normal((48, n))).astype(np.float32)


def _straightforward_template_gm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The bundled GM template rescaled to 0..1, trilinearly sampled at each voxel centre's world position."""
    template = nb.load(GM_MNI152_FILE_PATH)
    data = np.asanyarray(template.dataobj, dtype=np.float64)
    data /= data.max()
    ijk = np.indices(mask.shape).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:4]
    inv = np.linalg.inv(template.affine)
    tpl_ijk = inv[:3, :3] @ world + inv[:3, 3:4]
    return ndimage.map_coordinates(data, tpl_ijk, order=1, cval=0.0).reshape(mask.shape)


def _straightforward_dc(series: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.corrcoef(series.T.astype(np.float64))
    np.fill_diagonal(r, 0)
    above = r > threshold
    return above.sum(1), (r * above).sum(1)


def test_template_fallback_dc_equals_dc_computed_directly_on_the_template_grey_matter(grid, series):
    mask, affine = grid
    domain = grey_matter.dc_domain(mask, affine, space=MNI)
    assert domain.source == "template" and domain.factor == 1
    gm = _straightforward_template_gm(mask, affine)
    want_mask = mask & (gm.astype(np.float32) > np.float32(0.2))  # float32 maps: compared in float32
    np.testing.assert_array_equal(domain.mask, want_mask)
    assert 0.2 * mask.sum() < want_mask.sum() < 0.9 * mask.sum()  # the box has grey and white matter

    got_b, got_w = coarse_degree_centrality(series[:, domain.mask[mask]], mask=domain.mask, factor=1, threshold=0.2)
    want_b, want_w = _straightforward_dc(series[:, want_mask[mask]], 0.2)
    np.testing.assert_array_equal(got_b, want_b)
    np.testing.assert_allclose(got_w, want_w, rtol=1e-4, atol=1e-4)


def test_the_participant_map_wins_and_must_be_on_the_bold_grid(grid, tmp_path):
    mask, affine = grid
    gm = np.zeros(mask.shape, dtype=np.float32)
    gm[:6] = 0.9  # only the first half of the box
    path = tmp_path / "gm.nii.gz"
    nb.save(nb.Nifti1Image(gm, affine), path)
    domain = grey_matter.dc_domain(mask, affine, space=MNI, gm_probseg=path)
    assert domain.source == "participant"
    np.testing.assert_array_equal(domain.mask, mask & (gm > 0.2))

    shifted = affine.copy()
    shifted[0, 3] += 4
    nb.save(nb.Nifti1Image(gm, shifted), path)
    with pytest.raises(InputError, match=r"gm\.nii\.gz: grid differs from the BOLD grid"):
        grey_matter.dc_domain(mask, affine, space=MNI, gm_probseg=path)

    nb.save(nb.Nifti1Image(np.zeros_like(gm), affine), path)  # a probseg with no grey matter in the brain
    with pytest.raises(InputError, match=r"gm\.nii\.gz: no grey-matter voxel \(probability > 0\.2\) in the brain"):
        grey_matter.dc_domain(mask, affine, space=MNI, gm_probseg=path)


def test_without_template_coordinates_the_brain_mask_is_used_and_the_node_bound_coarsens_it(grid):
    mask, affine = grid
    domain = grey_matter.dc_domain(mask, affine, space="native")
    assert domain.source == "brain-mask" and domain.factor == 1
    np.testing.assert_array_equal(domain.mask, mask)
    bounded = grey_matter.dc_domain(mask, affine, space="native", max_nodes=int(mask.sum()) // 4)
    assert bounded.factor == 2 and bounded.n_nodes <= mask.sum() // 4
    assert grey_matter.dc_domain(mask, affine, space="native", resolution_mm=12).factor == 3
    assert grey_matter.fallback_message(has_probseg=True, space=MNI, where="run") is None
    assert "whole brain mask" in grey_matter.fallback_message(has_probseg=False, space="native", where="run")
    assert "MNI152 grey-matter template" in grey_matter.fallback_message(has_probseg=False, space=MNI, where="run")


@pytest.mark.parametrize(
    ("space", "max_nodes", "source", "grid_text"),
    [(MNI, 100_000, "template", "data grid"), ("native", 100, "brain-mask", "blocks of 3^3 voxels")],
)
def test_the_sidecar_says_which_mask_and_grid_dc_used(grid, series, tmp_path, space, max_nodes, source, grid_text):
    mask, affine = grid
    grid_file = images.save_grid(tmp_path / "grid.npz", mask, affine)
    series_file = images.save_series(tmp_path / "series.npy", series)
    node = DegreeCentrality(series=str(series_file), grid=str(grid_file), space=space, max_nodes=max_nodes)
    result = node.run(cwd=str(tmp_path))
    meta = json.loads(Path(result.outputs.metadata).read_text())
    assert meta["MaskSource"] == source
    assert meta["ComputedOnGrid"].startswith(grid_text)
    assert meta["Nodes"] <= max_nodes and meta["MaxNodes"] == max_nodes
    expected = "nilearn's MNI152 grey-matter template" if source == "template" else "whole brain mask"
    assert expected in meta["Mask"]
    dc_mask, _ = images.load_grid(Path(result.outputs.grid))
    assert meta["MaskVoxels"] == dc_mask.sum() <= mask.sum()
