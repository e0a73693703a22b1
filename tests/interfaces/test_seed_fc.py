"""Seed FC validity comes from the data: a seed over in-mask voxels without signal is invalid (issue #19.9)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.interfaces.connectivity import SeedFC
from clbp_bidsapp.io import atlases, images


def _seed_rows(names):
    table = atlases.select_seeds(list(names))
    return table.astype(str).to_dict("records")


@pytest.fixture
def grid(tmp_path):
    """A whole-grid brain mask on a 4 mm MNI grid (every voxel in the mask), 40 volumes of noise."""
    affine = np.array([[4.0, 0, 0, -90], [0, 4, 0, -126], [0, 0, 4, -72], [0, 0, 0, 1]])
    mask = np.ones((46, 55, 46), dtype=bool)
    series = np.random.default_rng(3).normal(size=(40, int(mask.sum()))).astype(np.float32)
    return mask, affine, series


def _run(tmp_path, mask, affine, series, names=("pcc", "thalamusL")):
    tmp_path.mkdir(parents=True, exist_ok=True)
    grid_path = images.save_grid(tmp_path / "grid.npz", mask, affine)
    series_path = images.save_series(tmp_path / "series.npy", series)
    node = SeedFC(series=str(series_path), grid=str(grid_path), seeds=_seed_rows(names), min_coverage=0.5, fwhm=0.0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    outputs = node.run(cwd=str(run_dir)).outputs
    metas = [json.loads(Path(p).read_text())["Seed"] for p in outputs.metadata]
    return outputs, metas


def test_seed_without_signal_is_invalid_and_its_map_is_nan(tmp_path, grid):
    mask, affine, series = grid
    regions = atlases.seed_regions(atlases.select_seeds(["pcc", "thalamusL"]), mask, affine)
    pcc_voxels = regions.membership[0].indices
    series = series.copy()
    series[:, pcc_voxels] = 0.0  # in the mask, no signal (e.g. signal dropout or a zero-filled region)
    outputs, metas = _run(tmp_path, mask, affine, series)
    pcc, thalamus = metas
    assert pcc["VoxelsInMask"] == len(pcc_voxels) and pcc["VoxelsWithSignal"] == 0
    assert pcc["Coverage"] == 0.0 and pcc["Valid"] is False
    assert thalamus["Coverage"] == 1.0 and thalamus["Valid"] is True
    pcc_map = np.asarray(nb.load(outputs.fcz_smoothed[0]).dataobj)
    assert np.isnan(pcc_map[mask]).all()
    assert np.isfinite(np.asarray(nb.load(outputs.fcz[1]).dataobj)[mask]).all()
    regions_table = pd.read_csv(outputs.regions, sep="\t")
    assert list(regions_table["used"]) == [False, True]
    assert list(regions_table["signal_voxels"]) == [0, len(regions.membership[1].indices)]


def test_seed_coverage_is_the_fraction_with_signal(tmp_path, grid):
    """Zeroing 60 % of a seed's voxels leaves coverage 0.4 < 0.5: invalid; zeroing 40 % leaves 0.6: valid."""
    mask, affine, series = grid
    regions = atlases.seed_regions(atlases.select_seeds(["pcc", "thalamusL"]), mask, affine)
    pcc_voxels = regions.membership[0].indices
    n = len(pcc_voxels)
    for fraction, valid in ((0.6, False), (0.4, True)):
        broken = series.copy()
        dead = pcc_voxels[: round(fraction * n)]
        broken[:, dead] = 0.0
        _, (pcc, _) = _run(tmp_path / f"f{fraction}", mask, affine, broken)
        assert pcc["Coverage"] == pytest.approx((n - len(dead)) / n, abs=1e-4)
        assert pcc["Valid"] is valid
