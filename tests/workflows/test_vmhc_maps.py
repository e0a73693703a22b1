"""VMHC interface + standardisation on a cropped TemplateFlow-like 2 mm MNI grid with a voxel column at x = 0.

Before the fix the midline voxels were their own mirror (r = 1, z capped at 7) and entered the within-brain
z-scoring, so every other voxel's z-map had mean < 0 and SD well below 1, and voxels without a mirror were
written as 0 and z-scored into non-zero fake data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from clbp_bidsapp.core.vmhc import MAX_Z
from clbp_bidsapp.group.maps import load_group_maps
from clbp_bidsapp.interfaces.metrics import VMHC, Standardize
from clbp_bidsapp.io import images

# MNI152NLin2009cAsym res-2: 97 x 115 x 97, origin (-96, -132, -78); x = 0 at i = 48. Cropped in y and z.
SHAPE = (97, 44, 36)
AFFINE = np.array([[2.0, 0, 0, -96.0], [0, 2.0, 0, -132.0], [0, 0, 2.0, -78.0], [0, 0, 0, 1]])


def _run(interface, cwd: Path, **inputs):
    """Run a SimpleInterface in its own folder (its outputs are written to the working directory)."""
    cwd.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return interface(**inputs).run().outputs
    finally:
        os.chdir(previous)


def _dataset(tmp_path: Path, seed: int, mask: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    ijk = np.indices(SHAPE).reshape(3, -1).T
    world = ijk @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    if mask is None:
        inside = ((world - (0.0, -89.0, -43.0)) / (70.0, 42.0, 34.0)) ** 2
        mask = (inside.sum(axis=1) <= 1).reshape(SHAPE)
        mask[:30, :, :20] = False  # a lesion-like cut on the left: those voxels' right mirrors lose their partner
    w = world.reshape(*SHAPE, 3)[mask]
    n = 60
    series = rng.standard_normal((n, int(mask.sum()))).astype(np.float32)
    region = (np.abs(w[:, 0]) > 16) & (np.abs(w[:, 0]) < 40)  # homotopic signal in both hemispheres
    shared = {}
    for v in np.flatnonzero(region):
        key = (round(abs(w[v, 0]), 3), round(w[v, 1], 3), round(w[v, 2], 3))
        shared.setdefault(key, rng.standard_normal(n))
        series[:, v] += shared[key]
    images.save_series(tmp_path / f"series{seed}.npy", series)
    images.save_grid(tmp_path / f"grid{seed}.npz", mask, AFFINE)
    return mask, w, tmp_path / f"series{seed}.npy", tmp_path / f"grid{seed}.npz"


@pytest.mark.parametrize("fwhm", [0.0, 6.0])
def test_vmhc_z_map_on_2mm_grid_with_x0_column(tmp_path, fwhm):
    mask, _, series, grid = _dataset(tmp_path, seed=1)
    out = _run(VMHC, tmp_path / "vmhc", series=str(series), grid=str(grid), fwhm=fwhm)
    vmhc_mask, _ = images.load_grid(Path(out.grid))
    raw, _ = images.load_volume(Path(out.out_file))
    std = _run(Standardize, tmp_path / "std", in_file=out.out_file, grid=out.grid, fwhm=0.0)
    z, _ = images.load_volume(Path(std.z_file))

    midline = np.zeros(SHAPE, bool)
    midline[48] = mask[48]
    assert midline.sum() > 500
    assert not (vmhc_mask & midline).any()  # midline excluded from the analysed mask
    assert (raw[midline] == 0).all() and (z[midline] == 0).all()  # written as non-brain
    no_mirror = mask & ~midline & ~mask[::-1]  # the grid is symmetric about i = 48
    assert no_mirror.sum() > 500
    assert not (vmhc_mask & no_mirror).any() and (z[no_mirror] == 0).all()
    np.testing.assert_array_equal(vmhc_mask, mask & ~midline & ~no_mirror)
    assert np.abs(raw[vmhc_mask]).max() < 0.99 * MAX_Z  # no capped voxel
    analysed = z[vmhc_mask]
    assert abs(analysed.mean()) < 1e-5 and abs(analysed.std() - 1.0) < 1e-3  # every analysed voxel: mean 0, SD 1
    meta = json.loads(Path(out.metadata).read_text())
    assert meta["VoxelsOnMidline"] == midline.sum() and meta["VoxelsWithoutMirror"] == no_mirror.sum()
    assert meta["VoxelsAnalysed"] == vmhc_mask.sum() and meta["MaxMirrorOffsetMm"] == 0.0


def test_group_mask_excludes_midline_and_mirrorless_voxels(tmp_path):
    mask, *_ = _dataset(tmp_path, seed=2)
    maps = {}
    for label, seed in (("01", 2), ("02", 3)):
        _, _, series, grid = _dataset(tmp_path, seed=seed, mask=mask)
        out = _run(VMHC, tmp_path / f"vmhc{label}", series=str(series), grid=str(grid), fwhm=0.0)
        std = _run(Standardize, tmp_path / f"std{label}", in_file=out.out_file, grid=out.grid, fwhm=0.0)
        maps[label] = [Path(std.z_file)]
    group = load_group_maps(maps, metric="vmhc")
    assert not group.mask[48].any()
    assert not (group.mask & mask & ~mask[::-1]).any()
    vmhc_mask, _ = images.load_grid(Path(out.grid))
    np.testing.assert_array_equal(group.mask, vmhc_mask)
    assert nb.load(str(maps["01"][0])).shape == SHAPE
