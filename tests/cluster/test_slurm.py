"""A real SLURM cluster: participant array job (one participant per task), then the dependent group job.

Skipped with the reason when no cluster answers, but failing when CLBP_REQUIRE_SLURM=1 (CI sets it after
starting a single-node cluster with .ci/slurm-up.sh), so CI can never skip it silently.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def _cluster_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return done.returncode == 0 and ("idle" in done.stdout or "mix" in done.stdout)


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_answers():
        if os.environ.get("CLBP_REQUIRE_SLURM") == "1":
            pytest.fail("CLBP_REQUIRE_SLURM=1 but no SLURM cluster answers (run .ci/slurm-up.sh)")
        pytest.skip("no SLURM cluster answers on this machine (start one with .ci/slurm-up.sh)")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(("logs", "work"))
    }


def test_array_then_group_equals_a_local_run(cluster, small_dataset, tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.setdefault("LOGNAME", "root")
    out = tmp_path / "slurm-out"
    submitted = subprocess.run(
        [
            sys.executable,
            "-m",
            "clbp_bidsapp.cli.slurm",
            str(small_dataset.root),
            str(out),
            "--cpus",
            "1",
            "--mem",
            "2G",
            "--time",
            "00:20:00",
            "--submit",
            "--",
            "--n-permutations",
            "100",
            "--covariates",
            "--min-dof",  # the tiny test runs keep too few effective DOF for the default
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert "participant array job" in submitted.stdout
    deadline = time.time() + 900
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-n", "clbp-participant,clbp-group"], capture_output=True, text=True)
        if not queue.stdout.strip():
            break
        time.sleep(3)
    else:
        pytest.fail("SLURM jobs did not finish within 15 minutes")
    logs = sorted((out / "logs" / "slurm").glob("*.log"))
    assert len(logs) == len(small_dataset.participants) + 1, [p.name for p in logs]
    text = "\n".join(p.read_text() for p in logs)
    assert (out / "group" / "desc-design_participants.tsv").is_file(), text

    local = tmp_path / "local-out"
    for level in ("participant", "group"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "clbp_bidsapp.cli",
                str(small_dataset.root),
                str(local),
                level,
                "-w",
                str(tmp_path / "local-work"),
                "--n-permutations",
                "100",
                "--covariates",
                "--min-dof",
                "0",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr
    assert _digest(out) == _digest(local)


def test_nipype_slurm_plugin_runs_a_participant(cluster, small_dataset, tmp_path):
    """--plugin SLURM submits the participant graph's nodes as jobs; the maps equal a local run's."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.setdefault("LOGNAME", "root")
    common = ["--participant-label", "01", "--min-dof", "0", "--skip", "report", "dc", "vmhc"]  # tiny test runs
    slurm = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", str(small_dataset.root), str(tmp_path / "slurm"), "participant",
         *common, "--plugin", "SLURM", "--plugin-args", '{"sbatch_args": "--mem=1G"}', "-w", str(tmp_path / "w1")],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert slurm.returncode == 0, slurm.stderr
    local = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", str(small_dataset.root), str(tmp_path / "local"), "participant",
         *common, "--plugin", "Linear", "-w", str(tmp_path / "w2")],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    assert _digest(tmp_path / "slurm") == _digest(tmp_path / "local")
