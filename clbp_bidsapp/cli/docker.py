"""``clbp-bidsapp-docker``: run the container with host paths, like ``fmriprep-docker``.

The app's arguments are read with the app's own parser, so options may come before or after the positionals.
Host folders and files named on the command line are mounted into the container (the input dataset and every
user file read-only) and the arguments rewritten to the container paths. Docker mounts use
``--mount type=bind,source=…,target=…`` (CSV-quoted, so a path with ``:`` or ``,`` works); Apptainer's ``-B``
cannot escape ``:`` or ``,``, so such a path is refused with a message. The container runs as the calling user
(outputs belong to you), with a read-only root file system, a private ``/tmp`` and no network — the same
conditions as Apptainer on a cluster. ``--print-command`` prints the equivalent ``docker run`` (or, with
``--apptainer IMAGE.sif``, ``apptainer run``) command instead of running it, needs no Docker engine and creates
nothing on the host.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from clbp_bidsapp import messages
from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.errors import ExitCode, UserError

DEFAULT_IMAGE = f"clbp-bidsapp:{__version__}"
# Destinations of the app's parser whose value is a host folder, mounted at /mnt/<name>; True: written to.
FOLDER_OPTIONS = {
    "inputs.fmriprep_dir": ("fmriprep_dir", False),
    "inputs.aslprep_dir": ("aslprep_dir", False),
    "execution.work_dir": ("work", True),
    "execution.bids_database_dir": ("bids_database", True),
}
# Destinations whose value is a user file (or a list with files among bundled names): its folder is mounted
# read-only (an atlas NIfTI brings its TSV of the same name) and the value rewritten.
FILE_OPTIONS = ("config_file", "bids_filter_file", "denoise.strategy", "connectivity.networks",
                "connectivity.atlases", "connectivity.seeds")  # fmt: skip
PASS_THROUGH = {"-h", "--help", "--version"}


@dataclass
class Plan:
    """The container invocation: mounts (host, container, read_only) and the app's arguments."""

    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    args: list[str] = field(default_factory=list)

    def mount(self, host: str | Path, container: str, *, read_only: bool) -> str:
        host = str(Path(host).resolve())
        for existing_host, existing_container, _ in self.mounts:
            if existing_host == host:
                return existing_container
        self.mounts.append((host, container, read_only))
        return container

    def mount_file(self, host: str | Path) -> str:
        """Mount the folder of a user file read-only; return the file's container path."""
        path = Path(host).resolve()
        number = 1 + sum(container.startswith("/mnt/in") for _, container, _ in self.mounts)
        folder = self.mount(path.parent, f"/mnt/in{number}", read_only=True)
        return f"{folder}/{path.name}"

    def writable_folders(self) -> list[Path]:
        return [Path(host) for host, _, read_only in self.mounts if not read_only]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clbp-bidsapp-docker",
        description="Run clbp-bidsapp in its container with host paths (input mounted read-only).",
        epilog="Every other argument is passed to clbp-bidsapp (see clbp-bidsapp --help).",
        allow_abbrev=False,  # --im would otherwise take --image, and an app option could be swallowed
    )
    parser.add_argument(
        "--image", default=DEFAULT_IMAGE, metavar="IMAGE", help=f"container image (default: {DEFAULT_IMAGE})"
    )
    parser.add_argument("--print-command", action="store_true", help="print the equivalent command and exit")
    parser.add_argument("--apptainer", metavar="IMAGE.sif", help="with --print-command: an apptainer command")
    return parser


def plan_run(app_args: Sequence[str]) -> Plan:
    """Mount BIDS_DIR (read-only), OUTPUT_DIR, every folder option and every user file; rewrite the arguments.

    The arguments are parsed with the app's parser (any order), then written back option by option with
    container paths; what the app's parser does not know is passed on unchanged, for the app to report.
    """
    from clbp_bidsapp.cli.other_tools import IGNORED_DEST
    from clbp_bidsapp.cli.parser import build_parser as app_parser

    plan = Plan()
    if PASS_THROUGH.intersection(app_args):
        plan.args = list(app_args)
        return plan
    parser = app_parser()
    try:
        namespace, unknown = parser.parse_known_args(list(app_args))
    except argparse.ArgumentError as exc:
        raise UserError(f"{exc} (see clbp-bidsapp --help)") from None
    values = vars(namespace)
    for dest, value in config_file_paths(values.get("config_file")).items():
        values.setdefault(dest, value)  # the command line overrides the file, as in the app
    refuse_writes_into_the_input(values)
    plan.args = [
        plan.mount(values.pop("bids_dir"), "/data", read_only=True),
        plan.mount(values.pop("output_dir"), "/out", read_only=False),
        values.pop("analysis_level"),
    ]
    for option, value in values.pop(IGNORED_DEST, []):  # passed on as typed, for the app's note
        plan.args += [option, str(value)]
    for dest in dict.fromkeys(a.dest for a in parser._actions if a.option_strings and a.dest in values):
        value = values[dest]
        action = _action_of(parser, dest, value)
        plan.args += _words(action, _container_value(plan, dest, value))
    plan.args += unknown
    return plan


def config_file_paths(config_file: str | None) -> dict[str, Any]:
    """Host folders and files a ``--config-file`` names (``[inputs] fmriprep_dir``, ``[denoise] strategy``, ...).

    In the container the file's host paths do not exist; returned as if typed, they are mounted and passed as
    options with container paths (an option on the command line still wins). A file the app cannot read is left
    for the app to report.
    """
    if config_file is None:
        return {}
    try:
        table = tomllib.loads(Path(config_file).read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for dest in (*FOLDER_OPTIONS, *FILE_OPTIONS):
        section, _, key = dest.partition(".")
        value = table.get(section, {}).get(key) if isinstance(table.get(section), dict) else None
        if value is None or value == "":
            continue
        if _names_host_path(dest, value):
            found[dest] = Path(value) if dest in FOLDER_OPTIONS else value
    return found


def _names_host_path(dest: str, value) -> bool:
    """An existing host folder or file only: a file saved by a container run holds container paths (/mnt/work)."""
    if dest in FOLDER_OPTIONS:
        return isinstance(value, str) and Path(value).is_dir()
    return any(isinstance(v, str) and _is_file(v) for v in (value if isinstance(value, list) else [value]))


def refuse_writes_into_the_input(values: dict) -> None:
    """The app's rule on the host paths: in the container the input and a writable folder inside it are separate
    mounts (``/data`` read-only, ``/mnt/work`` writable), so the app itself could no longer see the overlap."""
    from clbp_bidsapp.errors import OutputError
    from clbp_bidsapp.io import bids, derivatives, workdir

    bids_dir = Path(values["bids_dir"])
    raw_dir, derivative_inputs = bids.input_folders(bids_dir, values.get("inputs.fmriprep_dir"))
    output = Path(values["output_dir"])
    rule = {"raw_dir": raw_dir, "derivative_inputs": derivative_inputs}
    overlap = derivatives.input_overlap(output, **rule)
    if overlap:
        raise OutputError(
            f"output folder {output} {overlap}; choose a folder outside it, or BIDS_DIR/derivatives/<name>"
        )
    work = values.get("execution.work_dir")
    if work is not None:
        problem = workdir.work_dir_problem(Path(work), output_dir=output, **rule)
        if problem:
            raise UserError(f"--work-dir {work} {problem}")
    database = values.get("execution.bids_database_dir")
    overlap = derivatives.input_overlap(Path(database), **rule) if database is not None else None
    if overlap:
        raise UserError(f"--bids-database-dir {database} {overlap}; the input is never written: choose another folder")


def _container_value(plan: Plan, dest: str, value):
    if dest in FOLDER_OPTIONS:
        name, writable = FOLDER_OPTIONS[dest]
        return plan.mount(value, f"/mnt/{name}", read_only=not writable)
    if dest not in FILE_OPTIONS:
        return value
    if isinstance(value, list):
        return [plan.mount_file(v) if _is_file(v) else v for v in value]
    return plan.mount_file(value) if _is_file(value) else value


def _is_file(value) -> bool:
    """A user file (bundled names such as ``36P``, ``pcc`` or ``seitzman`` are not files in the current folder)."""
    return Path(value).is_file()


def _action_of(parser: argparse.ArgumentParser, dest: str, value) -> argparse.Action:
    """The option that gave ``value`` (``--no-band-pass`` and ``--band-pass`` share a destination)."""
    actions = [a for a in parser._actions if a.dest == dest and a.option_strings]
    for action in actions:
        if action.nargs == 0 and not isinstance(action, argparse._CountAction) and action.const == value:
            return action
    return next(a for a in actions if a.nargs != 0 or isinstance(a, argparse._CountAction))


def _words(action: argparse.Action, value) -> list[str]:
    """The option and its value(s) as the app's parser reads them back."""
    dashed = [o for o in action.option_strings if o.startswith("--") and "_" not in o]
    option = (dashed or action.option_strings)[0]
    if isinstance(action, argparse._CountAction):
        return [option] * int(value)
    if action.nargs == 0:  # store_true / store_false / store_const
        return [option]
    if isinstance(value, list | tuple):
        return [option, *map(str, value)]
    return [option, str(value)]


def docker_mount(host: str, container: str, read_only: bool) -> str:
    """One ``--mount`` value; docker reads it as CSV, so a field with ``,`` or ``"`` is quoted, quotes doubled."""
    fields = ["type=bind", f"source={host}", f"target={container}"] + (["readonly"] if read_only else [])
    return ",".join('"' + f.replace('"', '""') + '"' if any(c in f for c in ',"\n') else f for f in fields)


def docker_command(plan: Plan, image: str) -> list[str]:
    command = ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none",
               "--user", f"{os.getuid()}:{os.getgid()}"]  # fmt: skip
    for host, container, read_only in plan.mounts:
        command += ["--mount", docker_mount(host, container, read_only)]
    return [*command, image, *plan.args]


def apptainer_command(plan: Plan, sif: str) -> list[str]:
    command = ["apptainer", "run", "--cleanenv", "--containall", "--writable-tmpfs"]
    for host, container, read_only in plan.mounts:
        if ":" in host or "," in host:
            raise UserError(f"{host}: Apptainer's -B cannot bind a path holding ':' or ','; rename or link the folder")
        command += ["-B", f"{host}:{container}{':ro' if read_only else ''}"]
    return [*command, sif, *plan.args]


def run_container(plan: Plan, image: str) -> int:
    """Run with the docker SDK, stream the logs, return the container's exit code."""
    import docker  # imported lazily: the app itself works without the SDK or an engine

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        messages.error(f"no Docker engine answers ({exc}); start Docker or use --print-command")
        return int(ExitCode.USAGE)
    for folder in plan.writable_folders():  # created by you, not by the engine as root
        folder.mkdir(parents=True, exist_ok=True)
    # the API's Mounts take each path as one JSON string: no ':' or ',' parsing
    mounts = [docker.types.Mount(target=c, source=h, type="bind", read_only=ro) for h, c, ro in plan.mounts]
    try:
        container = client.containers.run(
            image, plan.args, mounts=mounts, user=f"{os.getuid()}:{os.getgid()}", network_mode="none",
            read_only=True, tmpfs={"/tmp": ""}, detach=True,
        )  # fmt: skip
    except docker.errors.ImageNotFound:
        messages.error(f"image {image} not found; build it (docker build -t {image} .) or pass --image")
        return int(ExitCode.USAGE)
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


def main(argv: Sequence[str] | None = None) -> None:
    own, app_args = build_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = plan_run(app_args)
        if own.print_command:
            command = apptainer_command(plan, own.apptainer) if own.apptainer else docker_command(plan, own.image)
            print(shlex.join(command))
            sys.exit(0)
    except UserError as exc:
        messages.error(str(exc))
        sys.exit(int(exc.exit_code))
    sys.exit(run_container(plan, own.image))


if __name__ == "__main__":
    main()
