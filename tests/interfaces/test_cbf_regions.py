"""CBFRegions: region means over the voxels that have a CBF value, a true 0 inside the brain included."""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.interfaces.perfusion import CBFMaps, CBFRegions

LAS = np.diag([-4.0, 4.0, 4.0, 1.0])  # left-anterior-superior, an uneven 7x8x9 grid
LAS[:3, 3] = [12.0, -16.0, -18.0]


def _save(path, data, dtype=np.float32):
    nb.save(nb.Nifti1Image(np.asarray(data, dtype=dtype), LAS), str(path))
    return str(path)


@pytest.fixture
def cbf_files(tmp_path):
    rng = np.random.default_rng(3)
    shape = (7, 8, 9)
    brain = np.zeros(shape, bool)
    brain[1:6, 1:7, 1:8] = True
    cbf = rng.normal(50.0, 10.0, shape)
    cbf[2, 2, 2] = 0.0  # a true zero inside the brain (e.g. a dark voxel of a noisy map): data, not "no value"
    cbf[3, 3, 3] = -4.0  # negative CBF values are data too
    labels = np.zeros(shape, np.int16)
    labels[1:4, 1:7, 1:8] = 1
    labels[4:6, 1:7, 1:8] = 2
    _save(tmp_path / "atlas-toy_dseg.nii.gz", labels, np.int16)
    pd.DataFrame({"index": [1, 2], "name": ["left", "right"]}).to_csv(tmp_path / "atlas-toy_dseg.tsv", sep="\t",
                                                                       index=False)  # fmt: skip
    files = {
        "cbf": _save(tmp_path / "cbf.nii.gz", np.where(brain, cbf, 0.0)),
        "cbf_mask": _save(tmp_path / "cbfmask.nii.gz", brain, np.uint8),
        "bold_mask": _save(tmp_path / "boldmask.nii.gz", brain, np.uint8),
        "atlas": str(tmp_path / "atlas-toy_dseg.nii.gz"),
    }
    return files, np.where(brain, cbf, np.nan).astype(np.float32).astype(np.float64), labels


def test_region_means_count_a_cbf_of_exactly_zero_inside_the_brain(cbf_files, tmp_path):
    files, cbf, labels = cbf_files
    maps = CBFMaps(cbf=files["cbf"], cbf_mask=files["cbf_mask"], bold_mask=files["bold_mask"], variant="mean",
                   fwhm=0.0, min_qei=0.6, gm_range=(10.0, 150.0))  # fmt: skip
    maps_dir = tmp_path / "maps"
    maps_dir.mkdir()
    out = maps.run(cwd=str(maps_dir)).outputs
    regions_dir = tmp_path / "regions"
    regions_dir.mkdir()
    result = CBFRegions(absolute=out.absolute, relative=out.relative, grid=out.grid, atlas=files["atlas"]).run(
        cwd=str(regions_dir)
    )
    table = pd.read_csv(result.outputs.out_file, sep="\t")
    mean_gm = np.nanmean(cbf)  # no GM map: the whole mask is the reference
    for value, name in ((1, "left"), (2, "right")):
        inside = (labels == value) & np.isfinite(cbf)
        row = table.set_index("region").loc[name]
        assert row["mask_voxels"] == inside.sum()  # the 0 voxel is in region 1 and counted
        assert row["cbf"] == pytest.approx(cbf[inside].mean(), rel=1e-5)
        assert row["rcbf"] == pytest.approx(cbf[inside].mean() / mean_gm, rel=1e-5)
