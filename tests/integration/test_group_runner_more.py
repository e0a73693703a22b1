"""The group runner as a loop over the registered stages, seen from the command line.

- A group level with nothing to run (exit 3) prints only what it read, the reasons and the error: no plan,
  estimate, progress or stage-time line (they came before the reasons, 13 lines for two reasons).
- ``--nprocs 2`` writes byte-identical group outputs to ``--nprocs 1``, the connectome edge, NBS and
  tangent-space tests included (they now go through the fan-out engine too).

The participant level runs once per module: 2 patients + 2 controls, 30 volumes, 4 mm, ALFF and the Dosenbach
connectome only.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.common import assert_user_error, run_app, tree_digest, with_min_dof

pytestmark = pytest.mark.integration

PARTICIPANT_ARGS = ("--min-time", "0", "--fd-thresh", "0", "--no-band-pass", "--atlases", "dosenbach160", "--skip",
                    "reho", "vmhc", "dc", "tsnr", "report", "graph", "dualreg", "seedfc")  # fmt: skip


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return run_app(*with_min_dof(args))


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """(dataset root, output folder of the participant level)."""
    from clbp_bidsapp.testing.synthetic import make_dataset

    base = tmp_path_factory.mktemp("runner")
    info = make_dataset(base / "bids", n_patients=2, n_controls=2, voxel_size=4, n_volumes=30, tr=2.0, seed=7)
    out = base / "out"
    result = cli(info.root, out, "participant", *PARTICIPANT_ARGS, "-w", base / "work")
    assert result.returncode == 0, result.stderr
    return info.root, out


def test_nothing_to_run_prints_only_the_reasons(processed, tmp_path):
    root, out = processed
    target = tmp_path / "out"
    shutil.copytree(out, target)
    result = cli(root, target, "group", "--covariates", "--group-metrics", "vmhc", "dc", "--skip", "ml", "ica",
                 "report", "connectome")  # fmt: skip
    assert_user_error(result, 3, "no group analysis ran", max_lines=4)
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "clbp-bidsapp: group level reads all participants, sessions and tasks",
        "clbp-bidsapp: vmhc not run: no vmhc maps among the included participants' outputs",
        "clbp-bidsapp: dc not run: no dc maps among the included participants' outputs",
    ]
    assert lines[3].startswith("clbp-bidsapp: error: no group analysis ran (2 not run, listed above; exclusions in ")
    assert len(lines) == 4
    assert not list((target / "group").glob("*_statmap.nii.gz"))


def test_two_processes_write_the_same_group_outputs_as_one_connectomes_included(processed, tmp_path):
    root, out = processed
    outputs, stderr = {}, {}
    for nprocs in ("1", "2"):
        target = tmp_path / f"out-{nprocs}"
        shutil.copytree(out, target)
        result = cli(root, target, "group", "--n-permutations", "150", "--covariates", "--group-metrics", "alff",
                     "--skip", "ml", "ica", "report", "--nprocs", nprocs, "-w", tmp_path / f"w-{nprocs}")  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[nprocs], stderr[nprocs] = tree_digest(target / "group"), result.stderr
        assert not list((tmp_path / f"w-{nprocs}").glob("group-fanout-*"))  # temporary unit data removed
    assert "permutations in 2 worker processes" in stderr["2"] and "worker processes" not in stderr["1"]
    for err in stderr.values():  # the registered stages said what they did, and were timed
        assert "clbp-bidsapp: group level plan: 1 maps x 1 contrasts" in err
        assert "connectome tests on 1 atlas(es) x 150 permutations" in err
        assert "clbp-bidsapp: alff (CLBPvsHC): 4 participants" in err
        assert "clbp-bidsapp: connectome dosenbach160: 4 participants" in err
        assert "2 analyses run, 0 not run" in err
        took = next(line for line in err.splitlines() if "group level stages took" in line)
        assert ": voxelwise " in took and ", connectome " in took and "ica" not in took
    prefix = "atlas-dosenbach160_contrast-CLBPvsHC"
    for name in ("stat-t_relmat.tsv", "desc-edges_stats.tsv", "desc-nbs_components.tsv",
                 "stat-t_desc-tangent_relmat.tsv", "stat-t_relmat.json"):  # fmt: skip
        assert f"{prefix}_{name}" in outputs["1"], name
    assert "alff_contrast-CLBPvsHC_stat-t_statmap.nii.gz" in outputs["1"]
    assert outputs["2"] == outputs["1"]
