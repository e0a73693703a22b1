"""Bundled atlases, seeds and reference networks: offline, labels line up, coverage is honest."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nilearn import datasets, image
from nilearn.maskers import NiftiLabelsMasker, NiftiSpheresMasker

from clbp_bidsapp.config import DEFAULT_SEEDS
from clbp_bidsapp.core import connectivity
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import atlases


@pytest.fixture(scope="module")
def grid():
    """The 4 mm MNI brain mask bundled with nilearn (real-shaped, no download)."""
    img = datasets.load_mni152_brain_mask(resolution=4)
    return np.asarray(img.dataobj) > 0, img.affine


@pytest.mark.parametrize("name", sorted(atlases.ATLASES))
def test_every_bundled_atlas_resolves_offline_with_named_regions(name, grid, monkeypatch):
    monkeypatch.setenv("CLBP_CACHE_DIR", "/nonexistent/readonly")  # a cache that cannot be written is harmless
    mask, affine = grid
    regions = atlases.atlas_regions(name, mask, affine)
    expected = {"aal": 120, "harvardoxford": 113, "seitzman300": 300, "power264": 264, "dosenbach160": 160}[name]
    assert len(regions.labels) == expected == regions.membership.shape[0]
    assert len(set(regions.labels)) == expected, "region names must be unique"
    assert regions.membership.shape[1] == mask.sum()
    assert (regions.in_mask_voxels > 0).mean() > 0.9
    assert np.all(regions.coverage <= 1.0)


@pytest.mark.parametrize(
    ("coordinate", "expected"),
    [((-38, -16, 8), "LeftInsularCortex"), ((-10, -19, 6), "LeftThalamus"), ((24, -4, -18), "RightAmygdala")],
)
def test_harvard_oxford_labels_line_up_with_anatomy(coordinate, expected, grid):
    mask, affine = grid
    regions = atlases.atlas_regions("harvardoxford", mask, affine)
    world = atlases._grid_coordinates(mask.shape, affine)[mask.reshape(-1)]
    nearest = int(np.argmin(((world - np.array(coordinate)) ** 2).sum(axis=1)))
    owner = np.flatnonzero(regions.membership[:, nearest].toarray().ravel())
    assert [regions.labels[i] for i in owner] == [expected]


def test_label_resampling_equals_nilearn_nearest(grid):
    mask, affine = grid
    labels, label_affine, _ = atlases.label_image("aal")
    ours = atlases.resample_labels(labels, label_affine, mask.shape, affine)
    theirs = image.resample_to_img(
        nb.Nifti1Image(labels.astype(np.int32), label_affine),
        nb.Nifti1Image(mask.astype(np.uint8), affine),
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    agree = ours == np.asarray(theirs.dataobj)
    # voxel centres that fall exactly half-way between atlas voxels may round either way
    assert agree.mean() > 0.995


def test_region_means_equal_nilearn_labels_masker(grid):
    mask, affine = grid
    rng = np.random.default_rng(0)
    series = rng.normal(size=(20, int(mask.sum())))
    regions = atlases.atlas_regions("aal", mask, affine)
    ours = connectivity.region_means(series, regions.membership)
    on_grid = np.zeros(mask.shape, dtype=np.int32)
    labels, label_affine, names = atlases.label_image("aal")
    on_grid = atlases.resample_labels(labels, label_affine, mask.shape, affine) * mask
    bold = np.zeros((*mask.shape, 20))
    bold[mask] = series.T
    masker = NiftiLabelsMasker(nb.Nifti1Image(on_grid, affine), strategy="mean", keep_masked_labels=False)
    theirs = masker.fit_transform(nb.Nifti1Image(bold, affine))
    present = [i for i, v in enumerate(sorted(names)) if (on_grid == v).any()]
    np.testing.assert_allclose(ours[:, present], theirs, atol=1e-10)


def test_sphere_means_equal_nilearn_spheres_masker(grid):
    mask, affine = grid
    rng = np.random.default_rng(1)
    series = rng.normal(size=(15, int(mask.sum())))
    centres = np.array([[-5.0, -49, 40], [-1, 47, -4], [40, -20, 50]])
    regions = atlases.regions_from_spheres("x", centres, [6, 6, 8], ["a", "b", "c"], ["n"] * 3, mask, affine)
    bold = np.zeros((*mask.shape, 15))
    bold[mask] = series.T
    masker = NiftiSpheresMasker(centres, radius=8, allow_overlap=True)
    theirs = masker.fit_transform(nb.Nifti1Image(bold, affine))
    ours = connectivity.region_means(series, regions.membership)
    np.testing.assert_allclose(ours[:, 2], theirs[:, 2], atol=1e-10)


def test_coverage_counts_voxels_outside_the_brain_mask(grid):
    mask, affine = grid
    partial_mask = mask.copy()
    partial_mask[: mask.shape[0] // 2] = False  # lose the right hemisphere (x < 0 on this grid is on the left)
    regions = atlases.regions_from_spheres(
        "x", np.array([[0.0, -20, 20]]), [10.0], ["midline"], ["n"], partial_mask, affine
    )
    assert 0.3 < regions.coverage[0] < 0.7
    assert regions.grid_voxels[0] > regions.in_mask_voxels[0] > 0


def test_seed_library_is_complete_and_every_seed_lands_in_the_brain(grid):
    mask, affine = grid
    library = atlases.seed_library()
    assert set(DEFAULT_SEEDS) == set(atlases.default_seeds()), "config.DEFAULT_SEEDS must match seeds.tsv"
    assert library["source"].str.len().min() > 10, "every seed cites where it comes from"
    for required in (
        "insulaAntL",
        "insulaPostR",
        "dacc",
        "mpfc",
        "pcc",
        "thalamusL",
        "vta",
        "naccR",
        "habenulaL",
        "pag",
        "dlpfcL",
        "s1TrunkL",
        "m1L",
        "sma",
        "amygdalaL",
        "hippocampusL",
        "parahippocampalL",
    ):
        assert required in set(library["name"]), required  # fmt: skip
    regions = atlases.seed_regions(atlases.select_seeds(library["name"]), mask, affine)
    assert np.all(regions.in_mask_voxels >= 1)
    thalamus = regions.labels.index("thalamusL")
    assert regions.centres_mm[thalamus][0] < -5  # left


def test_user_seed_file_and_bad_names(tmp_path):
    user = tmp_path / "seeds.tsv"
    pd.DataFrame({"name": ["myseed"], "x": [0], "y": [-52], "z": [26], "radius": [6]}).to_csv(
        user, sep="\t", index=False
    )
    table = atlases.select_seeds(["pcc", str(user)])
    assert list(table["name"]) == ["pcc", "myseed"]
    with pytest.raises(InputError, match="'nope' is neither"):
        atlases.select_seeds(["pcc", "nope"])
    with pytest.raises(InputError, match="given twice"):
        atlases.select_seeds(["pcc", "pcc"])


def test_user_atlas_with_its_table(tmp_path, grid):
    mask, affine = grid
    labels = np.zeros(mask.shape, dtype=np.int16)
    labels[10:14, 10:14, 10:14] = 3
    labels[20:22, 20:22, 20:22] = 7
    path = tmp_path / "atlas-mine_dseg.nii.gz"
    nb.save(nb.Nifti1Image(labels, affine), path)
    with pytest.raises(InputError, match=r"atlas-mine_dseg\.tsv"):
        atlases.atlas_regions(str(path), mask, affine)
    pd.DataFrame({"index": [3, 7], "name": ["left blob", "right"], "network": ["a", "b"]}).to_csv(
        tmp_path / "atlas-mine_dseg.tsv", sep="\t", index=False
    )
    regions = atlases.atlas_regions(str(path), mask, affine)
    assert regions.name == "mine"
    assert regions.labels == ("leftblob", "right")
    assert regions.networks == ("a", "b")
    assert list(regions.grid_voxels) == [64, 8]


def test_network_templates_cover_the_default_mode_network(grid):
    mask, affine = grid
    names, maps = atlases.network_templates(mask, affine)
    assert "DefaultMode" in names and maps.shape == (len(names), mask.sum())
    world = atlases._grid_coordinates(mask.shape, affine)[mask.reshape(-1)]
    pcc = int(np.argmin(((world - np.array([-5, -52, 28])) ** 2).sum(axis=1)))
    assert names[int(np.argmax(maps[:, pcc]))] in ("DefaultMode", "ParietoMedial")
    assert maps.max() <= 1.0 and maps.min() >= 0


def test_region_overlap_describes_a_cluster_by_its_atlas_regions(grid):
    mask, affine = grid
    world = atlases._grid_coordinates(mask.shape, affine)[mask.reshape(-1)]
    thalamus = np.flatnonzero(((world - np.array([-11.0, -18, 7])) ** 2).sum(axis=1) <= 5.0**2)
    text = atlases.region_overlap(mask, affine)(thalamus)
    first, share = text.split(";")[0].rsplit(" ", 1)
    assert first == "Left_Thalamus" and int(share.rstrip("%")) >= 50
