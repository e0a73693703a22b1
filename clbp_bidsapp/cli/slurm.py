"""``clbp-bidsapp-slurm``: write (and optionally submit) SLURM scripts for a whole dataset.

The pattern is the one recommended for BIDS Apps on clusters: an array job with one participant per task, then
the group level as a job that depends on the whole array (``afterany``, so the group level runs with whoever
succeeded; failed participants are listed in its exclusions). Each task gets its own working folder, so tasks
never share nipype state. With ``--apptainer IMAGE.sif`` every command runs inside the container with the
dataset bound read-only.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clbp_bidsapp import messages
from clbp_bidsapp.errors import ExitCode, InputError, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clbp-bidsapp-slurm",
        description="Write SLURM array + group job scripts for clbp-bidsapp (one participant per task).",
        epilog="Arguments after '--' are passed to clbp-bidsapp at both levels (e.g. -- --strategy 36P).",
        allow_abbrev=False,
    )
    parser.add_argument("bids_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        metavar="LABEL",
        help="participants, or files listing them one per line (default: every sub-* folder of BIDS_DIR's fMRIPrep "
        "derivatives)",
    )
    parser.add_argument("--fmriprep-dir", type=Path, metavar="FOLDER")
    parser.add_argument(
        "--aslprep-dir",
        type=Path,
        metavar="FOLDER",
        help="ASLPrep derivatives, passed to the participant level (and bound read-only with --apptainer)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        metavar="FOLDER",
        help="parent of the per-task working folders (default: OUTPUT_DIR/work)",
    )
    parser.add_argument(
        "--script-dir", type=Path, metavar="FOLDER", help="where to write the scripts (default: OUTPUT_DIR/logs/slurm)"
    )
    parser.add_argument("--cpus", type=int, default=2, metavar="N", help="CPUs per participant task (default: 2)")
    parser.add_argument("--mem", default="8G", metavar="SIZE", help="memory per participant task (default: 8G)")
    parser.add_argument(
        "--time", default="04:00:00", metavar="HH:MM:SS", help="time limit per task (default: 04:00:00)"
    )
    parser.add_argument(
        "--max-parallel", type=int, default=0, metavar="N", help="at most this many tasks at once (0: no limit)"
    )
    parser.add_argument(
        "--sbatch-args", default="", metavar="OPTIONS", help="extra #SBATCH options, e.g. '--partition=short'"
    )
    parser.add_argument("--apptainer", type=Path, metavar="IMAGE.sif", help="run inside this Apptainer image")
    parser.add_argument("--submit", action="store_true", help="submit the jobs with sbatch and print their ids")
    return parser


def discover_participants(bids_dir: Path, fmriprep_dir: Path | None, aslprep_dir: Path | None = None) -> list[str]:
    """Participants of the fMRIPrep (and ASLPrep: CBF-only participants) derivatives, found with pybids like the app
    itself."""
    from clbp_bidsapp.io import aslprep, bids

    layout = bids.build_layout(bids.resolve_fmriprep_dir(bids_dir, fmriprep_dir))
    found = set(layout.get_subjects())
    if aslprep.resolve_aslprep_dir(aslprep_dir) is not None:
        found |= set(aslprep.build_layout(aslprep_dir).get_subjects())
    labels = sorted(found)
    if not labels:
        raise InputError(f"no participants in {layout.root}; pass --participant-label or --fmriprep-dir")
    return labels


LABEL = object()  # stands for the array task's participant label in a command: written as "$LABEL"
SIMPLE_VALUE = re.compile(r"[A-Za-z0-9:._%+=-]+")  # mem, time: no spaces, quotes or shell characters
PLAIN_PATH = re.compile(r"[A-Za-z0-9_./%+-]+")  # safe in an #SBATCH line, which sbatch parses by its own rules


def sbatch_output(log: str) -> str:
    """``#SBATCH --output=`` for a plain path (so a direct ``sbatch`` rerun logs there too); else nothing: submit.sh
    always passes ``--output`` on sbatch's command line, quoted."""
    return f"#SBATCH --output={log}\n" if PLAIN_PATH.fullmatch(log) else ""


def shell_words(words: Sequence[Any]) -> str:
    """One command line: every word quoted with ``shlex.quote`` (nothing in it is expanded by the shell), except
    :data:`LABEL`, written ``"$LABEL"``; a tuple is one word glued from its parts (``'/work/sub-'"$LABEL"``)."""

    def word(part: Any) -> str:
        if isinstance(part, tuple):
            return "".join(word(p) for p in part)
        return '"$LABEL"' if part is LABEL else shlex.quote(str(part))

    return " ".join(word(w) for w in words)


def app_command(args: argparse.Namespace, level: str, extra: Sequence[Any], work: tuple[Any, ...]) -> list[Any]:
    """The words of one clbp-bidsapp call (inside Apptainer with ``--apptainer``); ``work`` is the ``-w`` value,
    a tuple of parts whose first part is a path inside the folder holding every task's working folder."""
    bids, out = args.bids_dir.resolve(), args.output_dir.resolve()
    app: list[Any] = [str(bids), str(out), level, *extra]
    read_only = [folder.resolve() for folder in (args.fmriprep_dir,) if folder]
    if args.fmriprep_dir:
        app += ["--fmriprep-dir", str(args.fmriprep_dir.resolve())]
    if args.aslprep_dir and level == "participant":  # the group level reads the CBF maps from OUTPUT_DIR
        app += ["--aslprep-dir", str(args.aslprep_dir.resolve())]
        read_only.append(args.aslprep_dir.resolve())
    if args.apptainer:
        folders = [(bids, "ro"), (out, "rw"), *((folder, "ro") for folder in read_only)]
        folders.append((Path(str(work[0])).parent, "rw"))
        prefix: list[Any] = ["apptainer", "run", "--cleanenv", "--containall"]
        for folder, mode in folders:
            prefix += ["-B", f"{apptainer_path(folder)}:{folder}:{mode}"]
        prefix.append(str(args.apptainer.resolve()))
    else:
        prefix = [shutil.which("clbp-bidsapp") or "clbp-bidsapp"]
    return [*prefix, *app, "-w", work]


def apptainer_path(path: Path) -> str:
    """A host path usable in an Apptainer bind (``SRC:DST:ro``), which has no escaping for ``:`` and ``,``."""
    if ":" in str(path) or "," in str(path):
        raise UserError(f"{path}: Apptainer cannot bind a path holding ':' or ','; rename or link the folder")
    return str(path)


def check_values(args: argparse.Namespace, labels: Sequence[str]) -> None:
    """Refuse what would not stay one value in the #SBATCH lines or participants.txt."""
    from clbp_bidsapp.io.bids import LABEL_RE

    bad_labels = [label for label in labels if not LABEL_RE.match(label)]
    if bad_labels:
        shown = ", ".join(repr(label) for label in bad_labels)
        raise UserError(f"--participant-label {shown}: not a valid BIDS label (letters and digits only)")
    for flag, value in (("--mem", args.mem), ("--time", args.time)):
        if not SIMPLE_VALUE.fullmatch(value):
            raise UserError(f"{flag} {value!r}: expected a SLURM value such as 8G or 04:00:00")
    for option in shlex.split(args.sbatch_args):
        if not option.startswith("-") or any(c in option for c in "\n\r#") or not option.isprintable():
            raise UserError(f"--sbatch-args: {option!r} is not an sbatch option such as --partition=short")


def render_scripts(args: argparse.Namespace, labels: Sequence[str], extra: Sequence[str]) -> dict[str, str]:
    """participants.txt, the participant array and group job scripts, and submit.sh.

    Every value from the command line reaches bash through ``shlex.quote`` (see :func:`shell_words`); log paths
    are given to ``sbatch`` on its command line in submit.sh, and in ``#SBATCH`` lines (which sbatch parses by
    its own rules) only when they are plain (:func:`sbatch_output`).
    """
    check_values(args, labels)
    out = args.output_dir.resolve()
    work_root = (args.work_dir or args.output_dir / "work").resolve()
    script_dir = (args.script_dir or args.output_dir / "logs" / "slurm").resolve()
    throttle = f"%{args.max_parallel}" if args.max_parallel > 0 else ""
    sbatch_extra = "".join(f"#SBATCH {opt}\n" for opt in shlex.split(args.sbatch_args))
    participant_cmd = shell_words(
        app_command(
            args,
            "participant",
            [*extra, "--participant-label", LABEL, "--nprocs", str(args.cpus)],
            (f"{work_root}/sub-", LABEL),
        )
    )
    array = f"""#!/bin/bash
#SBATCH --job-name=clbp-participant
#SBATCH --array=1-{len(labels)}{throttle}
#SBATCH --cpus-per-task={args.cpus}
#SBATCH --mem={args.mem}
#SBATCH --time={args.time}
{sbatch_output(f"{script_dir}/participant-%A_%a.log")}{sbatch_extra}set -euo pipefail
export LOGNAME=${{LOGNAME:-$(id -un)}}
LABEL=$(sed -n "${{SLURM_ARRAY_TASK_ID}}p" {shlex.quote(str(script_dir / "participants.txt"))})
echo "clbp-bidsapp participant level: sub-$LABEL (array task $SLURM_ARRAY_TASK_ID)"
{participant_cmd}
"""
    group = f"""#!/bin/bash
#SBATCH --job-name=clbp-group
#SBATCH --cpus-per-task={args.cpus}
#SBATCH --mem={args.mem}
#SBATCH --time={args.time}
{sbatch_output(f"{script_dir}/group-%j.log")}{sbatch_extra}set -euo pipefail
export LOGNAME=${{LOGNAME:-$(id -un)}}
{shell_words(app_command(args, "group", list(extra), (f"{work_root}/group",)))}
"""
    participant_log = shlex.quote(f"--output={script_dir}/participant-%A_%a.log")
    group_log = shlex.quote(f"--output={script_dir}/group-%j.log")
    submit = f"""#!/bin/bash
# Submit the participant array, then the group level once every array task has ended.
set -euo pipefail
ARRAY=$(sbatch --parsable {participant_log} {shlex.quote(str(script_dir / "participant.sbatch"))})
GROUP=$(sbatch --parsable {group_log} --dependency=afterany:$ARRAY {shlex.quote(str(script_dir / "group.sbatch"))})
echo "participant array job $ARRAY; group job $GROUP (outputs in "{shlex.quote(str(out))}")"
"""
    return {
        "participants.txt": "".join(f"{label}\n" for label in labels),
        "participant.sbatch": array,
        "group.sbatch": group,
        "submit.sh": submit,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    try:
        if args.participant_label:
            from clbp_bidsapp.io.bids import expand_label_files

            words, unreadable = expand_label_files(args.participant_label)  # files of labels, as the app reads
            if unreadable:
                raise InputError("; ".join(unreadable))
            labels = [label.removeprefix("sub-") for label in words]
        else:
            labels = discover_participants(args.bids_dir, args.fmriprep_dir, args.aslprep_dir)
        scripts = render_scripts(args, labels, extra)
        script_dir = (args.script_dir or args.output_dir / "logs" / "slurm").resolve()
        script_dir.mkdir(parents=True, exist_ok=True)
        from clbp_bidsapp.io.derivatives import write_text

        for name, text in scripts.items():
            path = write_text(script_dir / name, text)
            if name.endswith((".sh", ".sbatch")):
                path.chmod(0o755)
        print(f"wrote {', '.join(scripts)} to {script_dir} ({len(labels)} participant task(s))")
        if args.submit:
            done = subprocess.run(["bash", str(script_dir / "submit.sh")], capture_output=True, text=True)
            if done.returncode != 0:
                raise UserError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
            print(done.stdout.strip())
        else:
            print(f"submit with: bash {script_dir / 'submit.sh'}")
    except UserError as exc:
        messages.error(str(exc))
        sys.exit(int(exc.exit_code))
    sys.exit(int(ExitCode.OK))


if __name__ == "__main__":
    main()
