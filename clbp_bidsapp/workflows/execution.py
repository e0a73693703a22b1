"""Run participant graphs with a nipype plugin and attribute failures to participants.

All participants go into one top-level workflow so that MultiProc/SLURM can run them side by side. A failing
node does not stop the other branches (unless ``stop_on_first_crash``); afterwards the text crash files tell
which participant failed, in which node, and with which message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nipype.pipeline import engine as pe

from clbp_bidsapp.config import ExecutionSettings

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
    try:
        top.run(plugin=execution.plugin, plugin_args=plugin_args(execution))
    except Exception as exc:  # nipype raises RuntimeError after running what it could
        graph_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    crashes = sorted(set(crash_dir.glob("crash-*.txt")) - before)
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
    return participant, f"node {node.split('.')[-1]} failed: {_last_exception_line(text)}"


def _last_exception_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*:", line) or line.startswith(
            ("InputError", "ConfoundError", "ParticipantError")
        ):
            # strip the exception class ("clbp_bidsapp.errors.InputError: msg" -> "msg")
            return line.split(":", 1)[1].strip() or line
    return lines[-1] if lines else "unknown error"
