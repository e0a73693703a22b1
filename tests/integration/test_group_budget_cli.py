"""The group level says what it will do and how long it should take before the work starts (group/budget.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from clbp_bidsapp.testing.synthetic import make_dataset
from tests.integration.common import with_min_dof


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", *map(str, with_min_dof(args))],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    info = make_dataset(root / "bids", n_patients=3, n_controls=3, n_volumes=40, seed=2, high_motion=False)
    out = root / "out"
    done = cli(info.root, out, "participant", "-w", root / "work", "--nprocs", "2", "--min-time", "30", "--skip",
               "reho", "vmhc", "dc", "seedfc", "connectome", "graph", "dualreg", "tsnr", "report")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return info.root, out


def test_the_plan_and_the_estimate_come_before_the_work_and_count_what_runs(study):
    bids, out = study
    done = cli(bids, out, "group", "--skip", "ica", "connectome", "ml", "report", "--n-permutations", "40",
               "--primary-maps", "alff", "--covariates", "age", "--uncorrected-permutations", "1000")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    plan = next(i for i, line in enumerate(lines) if "group level plan:" in line)
    estimate = next(i for i, line in enumerate(lines) if "estimate: voxelwise tests about" in line)
    results = [i for i, line in enumerate(lines) if re.search(r"clbp-bidsapp: (alff|falff) \(", line)]
    assert plan < estimate < min(results)
    # 2 maps (alff, fALFF) x 1 contrast (3 patients leave no within-patient DOF for the clinical columns)
    assert "2 maps x 1 contrasts = 2 voxelwise tests x 40 permutations (TFCE on 1 (alff)" in lines[plan]
    assert len(results) == 2
    assert re.search(r"\(0\.\d{3} s per permutation, TFCE \+\d+\.\d{3} s; timed on alff, \d+ voxels, 6 participants\)",
                     lines[estimate])  # fmt: skip
    # the whole-run bar closes, and each stage that ran has its wall time and share (the skipped ica does not)
    took = next(line for line in lines if line.startswith("clbp-bidsapp: group level stages took"))
    assert re.match(r"clbp-bidsapp: group level stages took \d+:\d\d: voxelwise \d+:\d\d \(100 %\)$", took), took
    # the sidecars record the sequential uncorrected p, and TFCE only where the plan said
    alff = json.loads((out / "group" / "alff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
    falff = json.loads((out / "group" / "falff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
    assert alff["UncorrectedPValues"]["H"] == 100 and alff["UncorrectedPValues"]["MaximumPermutations"] <= 1000
    assert alff["TFCE"] is not None and falff["TFCE"] is None
    assert (out / "group" / "alff_contrast-CLBPvsHC_stat-logp_desc-tfcefwe_statmap.nii.gz").is_file()
    assert not (out / "group" / "falff_contrast-CLBPvsHC_stat-logp_desc-tfcefwe_statmap.nii.gz").exists()
