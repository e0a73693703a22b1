"""Issue #17 item 5: degree centrality without the participant's grey-matter map, from the command line.

A participant with no ``label-GM_probseg`` gets nilearn's bundled MNI152 grey-matter template on the run's grid;
the run's line on stderr and the DC sidecars say so. (The kernel's agreement with a straightforward DC on the
same mask is in tests/io/test_grey_matter.py; the cost figures at 2 mm come from benchmarks/bench_participant.py.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

from clbp_bidsapp.testing.synthetic import make_dataset
from tests.integration.common import run_app, with_min_dof

ONLY_DC = ("--skip", "tsnr", "alff", "reho", "vmhc", "seedfc", "connectome", "graph", "dualreg", "report")


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return run_app(*with_min_dof(args))


@pytest.fixture(scope="module")
def no_gm_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    root = tmp_path_factory.mktemp("nogm")
    make_dataset(root / "bids", n_patients=1, n_controls=0, n_volumes=40, seed=3, high_motion=False)
    for probseg in (root / "bids" / "derivatives" / "fmriprep").rglob("*label-GM_probseg.nii.gz"):
        probseg.unlink()
    out = root / "out"
    result = cli(root / "bids", out, "participant", "-w", root / "work", "--min-time", "0", *ONLY_DC)
    return result, out


def test_without_a_grey_matter_map_dc_uses_the_template_and_says_so(no_gm_run):
    result, out = no_gm_run
    assert result.returncode == 0, result.stderr
    assert "degree centrality uses nilearn's MNI152 grey-matter template" in result.stderr
    sidecars = sorted(out.rglob("*_stat-dc_desc-weighted*_boldmap.json"))
    assert len(sidecars) == 3  # raw, z and m
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        assert meta["MaskSource"] == "template" and "nilearn's MNI152 grey-matter template" in meta["Mask"]
        assert meta["ComputedOnGrid"] == "data grid" and meta["CoarseningFactor"] == 1
    raw = next(p for p in out.rglob("*_stat-dc_desc-weighted_boldmap.nii.gz"))
    dc_map = np.asanyarray(nb.load(raw).dataobj)
    brain = np.asanyarray(nb.load(next((out.parent / "bids").rglob("*func/*desc-brain_mask.nii.gz"))).dataobj) > 0
    # grey matter only: the DC map covers part of the brain mask, not all of it
    assert 0.3 * brain.sum() < (dc_map != 0).sum() < 0.9 * brain.sum()
    assert meta["MaskVoxels"] >= (dc_map != 0).sum()
