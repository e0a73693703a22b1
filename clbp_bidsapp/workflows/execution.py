"""Run participant graphs with a nipype plugin and attribute failures to participants.

All participants go into one top-level workflow so that MultiProc/SLURM can run them side by side. A failing
node does not stop the other branches (unless ``stop_on_first_crash``); afterwards the text crash files tell
which participant failed, in which node, and with which message.

A full or read-only disk ends the whole run at once (:class:`clbp_bidsapp.errors.OutputError`, exit 4): every
other node would fail the same way. nipype's MultiProc plugin hangs forever when a node cannot even save its
result file (its worker raises while reporting the failure, the pool's callback swallows that exception and the
scheduler waits for a result that never comes); :class:`SafeMultiProcPlugin` runs each node in a worker that
always returns a result and records any exception of the pool itself as the node's failure.
"""

from __future__ import annotations

import contextlib
import gc
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from traceback import format_exception
from typing import Any

from nipype.pipeline import engine as pe
from nipype.pipeline.plugins.multiproc import MultiProcPlugin

from clbp_bidsapp import registry
from clbp_bidsapp.config import ExecutionSettings
from clbp_bidsapp.errors import OutputError
from clbp_bidsapp.io.derivatives import FULL_OR_READ_ONLY

_NODE_RE = re.compile(r"^Node:\s*(\S+)", re.MULTILINE)


@dataclass
class GraphOutcome:
    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_graph(
    participant_wfs: Mapping[str, pe.Workflow],
    *,
    execution: ExecutionSettings,
    work_dir: Path,
    crash_dir: Path,
) -> GraphOutcome:
    """Run every participant's workflow; return who succeeded and why the others failed."""
    outcome = GraphOutcome()
    if not participant_wfs:
        return outcome
    _set_nipype_logging(execution.verbosity)
    top = pe.Workflow(name="clbp_wf", base_dir=str(work_dir))
    top.add_nodes(list(participant_wfs.values()))
    crash_dir.mkdir(parents=True, exist_ok=True)
    top.config["execution"].update(
        {
            "crashdump_dir": str(crash_dir),
            "crashfile_format": "txt",
            "stop_on_first_crash": execution.stop_on_first_crash,
            "remove_unnecessary_outputs": False,
            "use_relative_paths": False,
            "poll_sleep_duration": 0.1 if execution.plugin in ("Linear", "MultiProc") else 2,
        }
    )
    top.config["monitoring"] = {"enabled": False}
    before = set(crash_dir.glob("crash-*.txt"))
    graph_error: str | None = None
    plugin: str | MultiProcPlugin = execution.plugin
    if execution.plugin == "MultiProc":
        plugin = SafeMultiProcPlugin(plugin_args=plugin_args(execution))
    gc.freeze()  # nipype's MultiProc calls gc.collect() around every node: skip the long-lived objects (~0.2 s each)
    try:
        top.run(plugin=plugin, plugin_args=plugin_args(execution))
    except DiskFailure as exc:
        raise OutputError(str(exc)) from None
    except Exception as exc:  # nipype raises RuntimeError after running what it could
        text = "".join(format_exception(exc))
        reason = disk_failure(text)
        if reason is not None:  # e.g. the crash file itself could not be written
            raise OutputError(reason) from None
        graph_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    finally:
        gc.unfreeze()
    crashes = sorted(set(crash_dir.glob("crash-*.txt")) - before)
    for crash in crashes:  # plugins without the fail-fast check (Linear, SLURM) leave the reason in a crash file
        reason = disk_failure(crash.read_text(errors="replace"))
        if reason is not None:
            raise OutputError(reason)
    names = {wf.name: label for label, wf in participant_wfs.items()}
    for crash in crashes:
        label, message = describe_crash(crash, names)
        if label is not None and label not in outcome.failed:
            outcome.failed[label] = f"{message} (details: {crash})"
    for label in participant_wfs:
        if label in outcome.failed:
            continue
        if graph_error is not None and execution.stop_on_first_crash:
            outcome.failed[label] = f"not finished: the run stopped at the first crash ({graph_error})"
        else:
            outcome.succeeded.append(label)
    if graph_error is not None and not outcome.failed:
        # A failure that produced no crash file (e.g. the scheduler itself): blame everybody.
        for label in outcome.succeeded:
            outcome.failed[label] = graph_error
        outcome.succeeded = []
    return outcome


def _set_nipype_logging(verbosity: int) -> None:
    """nipype is silent by default, logs from -v (INFO) and -vv (DEBUG).

    Silent: a failing node's traceback would otherwise reach the terminal; the closing summary names the
    participant, node and message, and the full report is in the crash file.
    """
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    level = "CRITICAL" if verbosity == 0 else "INFO" if verbosity == 1 else "DEBUG"
    for key in ("workflow_level", "interface_level", "utils_level"):
        nipype_config.set("logging", key, level)
    nipype_logging.update_logging(nipype_config)


def plugin_args(execution: ExecutionSettings) -> dict[str, Any]:
    args: dict[str, Any] = dict(execution.plugin_args)
    if execution.plugin == "MultiProc":
        args.setdefault("n_procs", execution.nprocs)
        if execution.mem_gb:
            args.setdefault("memory_gb", execution.mem_gb)
        args.setdefault("raise_insufficient", False)
    return args


def describe_crash(crash: Path, wf_names: Mapping[str, str]) -> tuple[str | None, str]:
    """(participant, "node <name>: <exception message>") from a nipype text crash file."""
    text = crash.read_text(errors="replace")
    node_match = _NODE_RE.search(text)
    node = node_match.group(1) if node_match else "unknown node"
    participant = None
    for part in node.split("."):
        if part in wf_names:
            participant = wf_names[part]
            break
    stage = next((STAGE_OF_WF[part] for part in node.split(".")[:-1] if part in STAGE_OF_WF), None)
    where = f"node {node.split('.')[-1]}" + (f" of stage {stage}" if stage else "")
    return participant, f"{where} failed: {_last_exception_line(text)}"


# the stage sub-workflows of a run (workflows/participant.init_run_wf names them <stage>_wf) -> what a user calls them
STAGE_OF_WF = {
    "denoise_wf": "denoising",
    "report_wf": "report",
    **{f"{stage.name}_wf": stage.name for stage in registry.PARTICIPANT_STAGES if stage.workflow},
}


def _last_exception_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*:", line) or line.startswith(
            ("InputError", "ConfoundError", "ParticipantError")
        ):
            # strip the exception class ("clbp_bidsapp.errors.InputError: msg" -> "msg")
            return line.split(":", 1)[1].strip() or line
    return lines[-1] if lines else "unknown error"


# -- a full or read-only disk, and a MultiProc plugin that cannot hang -------------------------------------------

_OUTPUT_ERROR_RE = re.compile(r"OutputError: (cannot write [^\n]*)")
_ERRNO_RE = re.compile(r"\[Errno (\d+)\] ([^\n:]+?)(?:: '([^'\n]*)')?(?: -> '[^'\n]*')?\s*$", re.MULTILINE)


class DiskFailure(RuntimeError):
    """A node could not write to the work or output folder because the disk is full or read-only."""


def disk_failure(text: str, *, folder: str | None = None) -> str | None:
    """One-line reason when a node's traceback ``text`` shows a full or read-only disk, else None.

    ``folder`` (the failing node's working folder) is named when the error names no file.

    Recognises the app's own :class:`OutputError` (``cannot write <file> (<reason>); ...``) and any
    ``OSError`` with a full/read-only errno raised by nipype or a library (``[Errno 28] No space left on
    device: '<file>'``).
    """
    found = _OUTPUT_ERROR_RE.findall(text)
    if found:
        return found[-1].strip()
    for match in reversed(list(_ERRNO_RE.finditer(text))):
        number, reason, filename = match.groups()
        if int(number) in FULL_OR_READ_ONLY:
            where = filename or (f"in {folder}" if folder else "the work or output folder")
            return (
                f"cannot write {where} ({reason.strip()}); free space on that disk or choose another output "
                "folder or work folder (-w), then rerun (finished outputs are kept)"
            )
    return None


def run_node_safely(node: pe.Node, updatehash: bool, taskid: int) -> dict[str, Any]:
    """nipype's MultiProc ``run_node`` that never raises (a raise here hangs the plugin)."""
    result: dict[str, Any] = {"result": None, "traceback": None, "taskid": taskid}
    try:
        result["result"] = node.run(updatehash=updatehash)
    except BaseException:  # the worker reports everything; the scheduler decides
        result["traceback"] = format_exception(*sys.exc_info())
        try:
            result["result"] = node.result
        except BaseException:  # no result file: the disk may be full (nipype's own run_node raises here)
            result["result"] = None
    return result


class SafeMultiProcPlugin(MultiProcPlugin):
    """MultiProc that turns every failure of a node or of the pool into a node failure, never a hang.

    - each node runs in :func:`run_node_safely`, which returns a traceback instead of raising;
    - a future that ends with an exception (a worker killed by the OOM killer: ``BrokenProcessPool``) is
      recorded as that node's failure instead of being lost in the pool's callback;
    - a failure caused by a full or read-only disk stops the run at once (:class:`DiskFailure`), before
      nipype tries to write a crash file on the same disk;
    - on any exception the pool is shut down and its workers are ended, so the process can exit.
    """

    def _submit_job(self, node, updatehash=False):
        self._taskid += 1
        if getattr(node.interface, "terminal_output", "") == "stream":
            node.interface.terminal_output = "allatonce"
        future = self.pool.submit(run_node_safely, node, updatehash, self._taskid)
        taskid = self._taskid
        future.add_done_callback(lambda done: self._record(done, taskid))
        self._task_obj[taskid] = future
        return taskid

    def _record(self, future, taskid: int) -> None:
        try:
            self._taskresult[taskid] = future.result()
        except BaseException as exc:  # the pool failed, not the node (e.g. its worker was killed)
            reason = f"RuntimeError: the worker process running this node ended abruptly ({exc}); "
            reason += "the machine may be out of memory (see --mem-gb and --nprocs)\n"
            self._taskresult[taskid] = {
                "result": None,
                "traceback": [*format_exception(type(exc), exc, exc.__traceback__), reason],
                "taskid": taskid,
            }

    def _clean_queue(self, jobid, graph, result=None):
        text = "".join(result["traceback"]) if result and result.get("traceback") else ""
        if not text:
            text = "".join(format_exception(*sys.exc_info())) if sys.exc_info()[0] else ""
        try:
            folder = self.procs[jobid].output_dir()
        except Exception:  # naming the folder is a courtesy, never a second failure
            folder = None
        reason = disk_failure(text, folder=folder)
        if reason is not None:
            raise DiskFailure(reason)
        return super()._clean_queue(jobid, graph, result=result)

    def run(self, graph, config, updatehash=False):
        try:
            return super().run(graph, config, updatehash=updatehash)
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the failure that stopped the run is the news
                self._stop_workers()
            raise

    def _stop_workers(self) -> None:
        processes = list((getattr(self.pool, "_processes", None) or {}).values())  # our own children
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()  # ignores a worker that ended meanwhile (os.kill raised ESRCH there)
