"""Reruns, completion records, mixed settings and failures inside the engine, through the real command line.

Issue #22: a rerun with the same work folder re-publishes outputs deleted since the last run (from the cache,
without recomputing), and success is judged from the files on disk. Issue #19: a full disk ends the run with
exit 4 and one line (nipype's MultiProc used to sleep forever), and participant settings are never mixed in one
output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.common import with_min_dof

pytestmark = pytest.mark.integration

# 30 volumes of 2 s: ALFF/fALFF and the mean/tSNR maps are enough to exercise caching and publishing.
FAST = ("--min-time", "20", "--no-band-pass", "--skip", "reho", "vmhc", "dc", "seedfc", "connectome", "graph",
        "dualreg")  # fmt: skip
ALFF = "sub-01/func/sub-01_task-rest_space-MNI152NLin2009cAsym_res-4_stat-alff_boldmap.nii.gz"
RECORD = Path("logs/participants/sub-01.json")


def cli(*args: str | Path, python: tuple[str, ...] = ("-m", "clbp_bidsapp.cli"), timeout: float = 600):
    """Every command of this file goes through here (the lead may add participant-level flags).

    The command runs in its own process group; on timeout the whole group is killed (a hanging run's
    MultiProc workers would otherwise outlive it) and the test fails.
    """
    args = with_min_dof(args)
    command = [sys.executable, *python, *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"still running after {timeout:.0f} s (killed): {' '.join(command[-12:])}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def participant(bids: Path, out: Path, work: Path, *extra: str | Path, label: str = "01", **kwargs):
    return cli(bids, out, "participant", "--participant-label", label, "-w", work, *FAST, *extra, **kwargs)


def outputs_digest(out: Path) -> dict[str, str]:
    """SHA-256 of every output (``logs/`` holds per-run files: configs, timestamps)."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] != "logs"
    }


def input_digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def node_results(work: Path) -> dict[str, tuple[int, str]]:
    """(mtime, SHA-256) of every node's nipype result file, by node folder."""
    return {
        str(p.parent.relative_to(work)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(work.rglob("result_*.pklz"))
    }


def is_publishing(node_folder: str) -> bool:
    name = Path(node_folder).name
    return name.startswith("ds_") or name == "report"  # DerivativeSink nodes and the participant report


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "ok      sub-01" in result.stderr, result.stderr


def assert_record_matches_disk(out: Path) -> dict:
    record = json.loads((out / RECORD).read_text())
    assert record["status"] == "complete" and record["participant"] == "01"
    digest = outputs_digest(out)
    assert record["outputs"] == {name: digest[name] for name in record["outputs"]}
    participant_files = {name for name in digest if name.startswith("sub-01")}
    assert set(record["outputs"]) == participant_files, "the record lists exactly the participant's outputs"
    return record


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("rerun") / "bids"
    return make_dataset(root, n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, tr=2.0, seed=7).root


def test_rerun_after_deleting_the_output_folder_publishes_from_the_cache(bids, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    before = input_digest(bids)
    assert_ok(participant(bids, out, work))
    first = outputs_digest(out)
    assert ALFF in first and "sub-01.html" in first
    record = assert_record_matches_disk(out)
    cached = node_results(work)
    assert any(is_publishing(n) for n in cached) and any(not is_publishing(n) for n in cached)

    shutil.rmtree(out)
    assert_ok(participant(bids, out, work))
    assert outputs_digest(out) == first, "the same outputs, byte-identical"
    again = node_results(work)
    assert set(again) == set(cached)
    recomputed = [n for n in cached if not is_publishing(n) and again[n] != cached[n]]
    assert recomputed == [], f"compute nodes ran again: {recomputed}"
    republished = [n for n in cached if is_publishing(n) and again[n][0] != cached[n][0]]
    assert sorted(republished) == sorted(n for n in cached if is_publishing(n)), "every publishing node ran"
    assert assert_record_matches_disk(out)["outputs"] == record["outputs"]
    assert input_digest(bids) == before


def test_a_deleted_map_comes_back_byte_identical(bids, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    assert_ok(participant(bids, out, work, "--skip", "report"))
    first = outputs_digest(out)
    (out / ALFF).unlink()
    assert_ok(participant(bids, out, work, "--skip", "report"))
    assert outputs_digest(out) == first
    assert_record_matches_disk(out)


def test_an_unwritable_output_fails_the_participant_naming_it(bids, tmp_path):
    """A folder where the map's final name should be: even root cannot rename a file onto it."""
    out, work = tmp_path / "out", tmp_path / "work"
    assert_ok(participant(bids, out, work, "--skip", "report"))
    (out / ALFF).unlink()
    (out / ALFF).mkdir()
    result = participant(bids, out, work, "--skip", "report")
    assert result.returncode == 3, result.stderr  # the only participant failed
    assert "Traceback" not in result.stderr, result.stderr
    failed = [line for line in result.stderr.splitlines() if "FAILED  sub-01" in line]
    assert len(failed) == 1 and str(out / ALFF) in failed[0], result.stderr
    assert "node ds_alff of stage alff failed" in failed[0], result.stderr  # the stage a user can --skip
    assert not (out / RECORD).exists(), "the record of the earlier, complete run is gone"


LOSE_A_MAP_AFTER_THE_GRAPH = """
import sys
from pathlib import Path
from clbp_bidsapp.workflows import runner

real = runner.run_graph

def run_graph(workflows, **kwargs):  # the map disappears after it was written (a scratch purge, a user)
    outcome = real(workflows, **kwargs)
    (Path(sys.argv[2]) / "ALFF").unlink()
    return outcome

runner.run_graph = run_graph
from clbp_bidsapp.cli.run import main
main(sys.argv[1:])
"""


def test_success_is_judged_from_the_disk(bids, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    script = LOSE_A_MAP_AFTER_THE_GRAPH.replace("ALFF", ALFF)
    result = participant(bids, out, work, "--skip", "report", python=("-c", script))
    assert result.returncode == 3, result.stderr
    assert f"FAILED  sub-01: output {out / ALFF} missing after the run" in result.stderr, result.stderr
    assert not (out / RECORD).exists()


def test_participants_made_with_other_settings_are_refused(bids, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    assert_ok(participant(bids, out, work, "--skip", "report"))
    configs = sorted((out / "logs").glob("config-*.toml"))
    result = participant(bids, out, work, "--skip", "report", "--strategy", "36P", label="02")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in (
        f"output folder {out} holds 1 participant(s) made with other settings",
        "denoise.strategy: 24P → 36P",
        "use a new output folder",
        f"replay {configs[0]} with --config-file",
    ):
        assert fragment in lines[0], (fragment, lines[0])
    assert sorted((out / "logs").glob("config-*.toml")) == configs, "a refused run writes nothing"
    assert not (out / "sub-02").exists()
    # group-level settings do not make participants differ
    other = participant(bids, out, work, "--skip", "report", "--n-permutations", "10", label="02")
    assert other.returncode == 0, other.stderr


# -- failures inside the engine: a full disk (issue #19, item 3) -----------------------------------------------


def _mounted(target: Path, options: str) -> bool:
    """Mount a tmpfs at ``target`` (tests run as root in CI); False where mounting is not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        return False
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True).returncode
        == 0
    )


def _unmount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True)


def assert_stops_with_exit_4(result: subprocess.CompletedProcess, seconds: float) -> None:
    err = result.stderr
    assert result.returncode == 4, err
    assert "Traceback" not in err + result.stdout, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    assert errors[0].startswith("clbp-bidsapp: error: cannot write "), err
    assert "(No space left on device); free space on that disk" in errors[0], err
    assert seconds < 60, f"{seconds:.0f} s"


@pytest.mark.parametrize("where", ["output-and-work", "work-only"])
def test_a_full_disk_inside_the_engine_stops_within_seconds(where, bids, tmp_path):
    """A 2 MB disk: the first node cannot write its series and result files (nipype used to sleep forever)."""
    small = tmp_path / "small"
    if not _mounted(small, "size=2m"):
        pytest.skip("cannot mount a small tmpfs here; test_a_result_file_that_cannot_be_written forces the same path")
    try:
        out, work = (small / "out", None) if where == "output-and-work" else (tmp_path / "out", small / "work")
        args = [bids, out, "participant", "--participant-label", "01", "--min-time", "20", "--no-band-pass"]
        if work is not None:
            args += ["-w", work]
        start = time.monotonic()
        result = cli(*args, timeout=120)
        assert_stops_with_exit_4(result, time.monotonic() - start)
        assert str(small) in result.stderr, result.stderr
        assert not (out / RECORD).exists()
    finally:
        _unmount(small)


NO_SPACE_FOR_RESULTS = """
import errno, os, sys
from nipype.pipeline.engine import nodes

def no_space(result, cwd, name, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(cwd, f"result_{name}.pklz"))

nodes._save_resultfile = no_space  # every node's result file: what a full work disk does
from clbp_bidsapp.cli.run import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("plugin", ["MultiProc", "Linear"])
def test_a_result_file_that_cannot_be_written_stops_within_seconds(plugin, bids, tmp_path):
    """The same code path without a mount: nipype cannot save a node's result file (ENOSPC)."""
    start = time.monotonic()
    result = participant(bids, tmp_path / "out", tmp_path / "work", "--plugin", plugin,
                         python=("-c", NO_SPACE_FOR_RESULTS), timeout=120)  # fmt: skip
    assert_stops_with_exit_4(result, time.monotonic() - start)
    assert "result_load.pklz" in result.stderr, result.stderr
