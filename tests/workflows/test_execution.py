"""The graph runner: failures inside nipype end the run (never a hang), a full disk is exit 4."""

from __future__ import annotations

import errno
import os
import signal
from contextlib import contextmanager

import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp.config import ExecutionSettings
from clbp_bidsapp.errors import ExitCode, OutputError
from clbp_bidsapp.workflows.execution import disk_failure, run_graph

DEADLINE = 60  # seconds; a hang fails the test instead of the session


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the test session) when the block takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the plugin hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_disk_failure_reads_the_apps_and_the_systems_messages():
    app = (
        "Traceback...\nclbp_bidsapp.errors.OutputError: cannot write /o/sub-01/x.nii.gz (No space left on device);"
        " free space on that disk or choose another output folder, then rerun (finished outputs are kept)\n"
    )
    assert disk_failure(app).startswith("cannot write /o/sub-01/x.nii.gz (No space left on device); free space")
    system = "OSError: [Errno 28] No space left on device: '/w/clbp_wf/load/result_load.pklz'\n"
    assert disk_failure(system).startswith(
        "cannot write /w/clbp_wf/load/result_load.pklz (No space left on device); free space on that disk"
    )
    read_only = "OSError: [Errno 30] Read-only file system\n"
    assert disk_failure(read_only, folder="/w/node").startswith("cannot write in /w/node (Read-only file system)")
    assert "\n" not in disk_failure(system)
    for other in (
        "IsADirectoryError: [Errno 21] Is a directory: '/tmp/.tmp-x' -> '/o/x.nii.gz'\n",
        "FileNotFoundError: [Errno 2] No such file or directory: '/x'\n",
        "ValueError: 30 volumes are too few\n",
    ):
        assert disk_failure(other) is None, other


def _participant(name: str, function) -> pe.Workflow:
    workflow = pe.Workflow(name=f"sub_{name}_wf")
    node = pe.Node(niu.Function(input_names=["x"], output_names=["y"], function=function), name="compute")
    node.inputs.x = 1
    workflow.add_nodes([node])
    return workflow


def _ok(x):
    return x + 1


def _killed(x):
    import os

    os._exit(1)  # the worker process dies (as under the OOM killer)


def _full_disk(x):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/scratch/series.npy")


def _run(tmp_path, workflows):
    return run_graph(
        workflows,
        execution=ExecutionSettings(plugin="MultiProc", nprocs=1),
        work_dir=tmp_path / "work",
        crash_dir=tmp_path / "crash",
    )


def test_a_node_that_cannot_save_its_result_ends_the_run_instead_of_hanging(tmp_path, monkeypatch):
    """nipype's own MultiProc waits forever here: the worker raises while reporting the failure."""
    from nipype.pipeline.engine import nodes

    def no_space(result, cwd, name, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(cwd, f"result_{name}.pklz"))

    monkeypatch.setattr(nodes, "_save_resultfile", no_space)  # inherited by the forked workers
    with deadline(DEADLINE), pytest.raises(OutputError) as caught:
        _run(tmp_path, {"01": _participant("01", _ok), "02": _participant("02", _ok)})
    assert caught.value.exit_code == ExitCode.OUTPUT_NOT_WRITABLE
    message = str(caught.value)
    assert "result_compute.pklz (No space left on device); free space on that disk" in message, message
    assert "\n" not in message


def test_a_full_disk_inside_a_node_is_exit_4_naming_the_file(tmp_path):
    with deadline(DEADLINE), pytest.raises(OutputError, match=r"cannot write /scratch/series\.npy \(No space left"):
        _run(tmp_path, {"01": _participant("01", _full_disk), "02": _participant("02", _ok)})


def test_a_killed_worker_fails_its_participant_without_hanging(tmp_path):
    with deadline(DEADLINE):
        outcome = _run(tmp_path, {"01": _participant("01", _killed)})
    assert outcome.succeeded == [] and list(outcome.failed) == ["01"], outcome
    assert "the worker process running this node ended abruptly" in outcome.failed["01"], outcome


def test_ordinary_failures_stay_per_participant(tmp_path):
    def broken(x):
        raise ValueError("bad data in this run")

    with deadline(DEADLINE):
        outcome = _run(tmp_path, {"01": _participant("01", broken), "02": _participant("02", _ok)})
    assert outcome.succeeded == ["02"]
    assert "bad data in this run" in outcome.failed["01"]


def test_stopping_a_worker_that_ended_meanwhile_keeps_the_failure_that_stopped_the_run():
    """CI saw ``[Errno 3] No such process`` replace a full-disk exit 4: a worker ended between two checks."""
    import multiprocessing

    from clbp_bidsapp.workflows.execution import SafeMultiProcPlugin

    ended = multiprocessing.get_context("fork").Process(target=int)
    ended.start()
    ended.join()

    class Racing:  # reports alive, as a worker does just before it exits
        pid = ended.pid

        def is_alive(self):
            return True

        def terminate(self):
            ended.terminate()

        def join(self, timeout=None):
            ended.join(timeout)

        def kill(self):
            ended.kill()

    class Pool:
        def __init__(self):
            self._processes = {1: Racing()}

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    plugin = SafeMultiProcPlugin.__new__(SafeMultiProcPlugin)
    plugin.pool = Pool()
    plugin._stop_workers()  # must not raise ProcessLookupError
