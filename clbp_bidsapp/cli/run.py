"""``clbp-bidsapp``: parse -> validate everything at once -> write the config -> dispatch."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clbp_bidsapp import messages
from clbp_bidsapp.cli.other_tools import ignored_notes
from clbp_bidsapp.cli.parser import build_parser, flag_names
from clbp_bidsapp.config import Settings, SettingsError, field_check
from clbp_bidsapp.errors import ExitCode, InputError, OutputError, UserError
from clbp_bidsapp.stages import GROUP_STAGES, PARTICIPANT_STAGES


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns (and exits with) a documented exit code."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # nipype must not phone home (no network at run time)
    try:
        code = run(argv)
    except UserError as exc:
        messages.error(str(exc))
        code = int(exc.exit_code)
    except KeyboardInterrupt:
        messages.error("interrupted")
        code = int(ExitCode.INTERRUPTED)
    except OSError as exc:  # a full or read-only disk outside the atomic writers (e.g. a folder of the logs)
        from clbp_bidsapp.io.derivatives import FULL_OR_READ_ONLY

        if exc.errno not in FULL_OR_READ_ONLY:
            raise
        messages.error(f"cannot write {exc.filename or 'the output'} ({exc.strerror}); free space or choose another")
        code = int(ExitCode.OUTPUT_NOT_WRITABLE)
    sys.exit(code)


def run(argv: Sequence[str] | None = None) -> int:
    settings, extras = parse_settings(argv)
    logger = messages.configure_logging(settings.execution.verbosity)
    for note in extras["notes"]:
        messages.say(note)
    if settings.execution.analysis_level == "participant":  # before anything is written, even the config log
        from clbp_bidsapp.workflows.runner import refuse_mixed_settings

        refuse_mixed_settings(settings)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]
    output_dir = settings.execution.output_dir
    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    from clbp_bidsapp.io.derivatives import write_text

    write_text(logs / f"config-{run_id}.toml", settings.to_toml())
    logger.info("run %s: settings saved in %s", run_id, logs / f"config-{run_id}.toml")
    logger.debug("result-affecting settings hash %s", settings.result_hash())
    if settings.execution.analysis_level == "participant":
        from clbp_bidsapp.workflows.runner import run_participant_level

        return int(run_participant_level(settings, run_id=run_id, source=extras["source"]))
    from threadpoolctl import threadpool_limits

    from clbp_bidsapp.group.runner import run_group_level

    # --omp-nthreads holds for the group level too: with unlimited BLAS threads on a busy 2-core machine the
    # tangent-space connectomes of the 2 + 2 test dataset took 50 s instead of 10 s (small eigh calls spinning)
    with threadpool_limits(limits=settings.execution.omp_nthreads):
        return int(run_group_level(settings, run_id=run_id, source=extras["source"]))


def parse_settings(argv: Sequence[str] | None) -> tuple[Settings, dict[str, Any]]:
    """Parse and validate the command line; raise one :class:`UserError` listing every problem."""
    parser = build_parser()
    flags = flag_names(parser)
    try:
        namespace, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise UserError(f"{exc} (see clbp-bidsapp --help)") from None
    values = vars(namespace)
    errors: list[str] = [f"unrecognised argument(s): {' '.join(unknown)}"] if unknown else []

    base = Settings()
    config_file = values.pop("config_file", None)
    if config_file is not None:
        try:
            base = Settings.from_toml(Path(config_file).read_text())
        except FileNotFoundError:
            errors.append(f"--config-file {config_file} does not exist")
        except SettingsError as exc:  # every bad key, named as in the file
            errors += [f"--config-file {config_file}: {problem}" for problem in exc.problems]
        except (ValueError, OSError) as exc:  # TOMLDecodeError, UnicodeDecodeError, a folder...
            errors.append(f"--config-file {config_file} is not a valid settings file: {exc}")

    overrides: dict[str, dict[str, Any]] = {
        "execution": {
            "bids_dir": values.pop("bids_dir"),
            "output_dir": values.pop("output_dir"),
            "analysis_level": values.pop("analysis_level"),
        }
    }
    extras: dict[str, Any] = {}
    for dest, raw in values.items():
        if "." not in dest:
            continue
        section, key = dest.split(".", 1)
        try:
            value = _convert(dest, raw)
        except ValueError as exc:
            errors.append(f"{flags[dest]}: {exc}")
            continue
        overrides.setdefault(section, {})[key] = value

    _labels(overrides, "participant_label", "sub-", errors)
    _labels(overrides, "session_id", "ses-", errors)
    _space(overrides, errors)
    if "plugin_args" in values:
        try:
            args = json.loads(values["plugin_args"])
            if not isinstance(args, dict):
                raise ValueError("expected a JSON object")
            overrides["execution"]["plugin_args"] = args
        except ValueError as exc:
            errors.append(f"--plugin-args is not a JSON object: {exc}")
    if "bids_filter_file" in values:
        from clbp_bidsapp.io.bids import parse_filter_file

        try:
            overrides.setdefault("inputs", {})["bids_filters"] = parse_filter_file(Path(values["bids_filter_file"]))
        except InputError as exc:
            errors.append(str(exc))

    settings = _absolute_paths(base.replace(overrides))
    errors.extend(settings.validate(flags))  # the file's values were checked when it was read: these are flags
    errors.extend(_check_settings(settings))
    errors.extend(_check_space_requests(settings, typed=set(values)))
    if settings.execution.analysis_level == "group" and settings.execution.bids_dir.is_dir():
        errors.extend(_check_group_design(settings))
    output_errors: list[str] = []
    source = _check_paths(settings, errors, output_errors)  # collects its problems, never raises
    if errors or output_errors:
        all_errors = errors + output_errors
        code = ExitCode.USAGE if errors else ExitCode.OUTPUT_NOT_WRITABLE
        messages.errors(all_errors[:-1])
        raise UserError(all_errors[-1], exit_code=code)
    extras["source"] = source
    extras["notes"] = ignored_notes(values)
    return settings, extras


def _absolute_paths(settings: Settings) -> Settings:
    """Paths as absolute paths, resolved once against the current folder: graph nodes run in their own working
    folders (and a replayed config from elsewhere), so a relative path would point somewhere else there.

    Values that may be a bundled name or a user file (strategy, networks, atlases, seeds) are made absolute
    when they name an existing path; an unknown name is kept as typed, for its error message.
    """
    ex, inputs, con = settings.execution, settings.inputs, settings.connectivity

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(os.path.abspath(path))

    def user_file(value: str) -> str:
        return os.path.abspath(value) if value and os.path.lexists(value) else value

    from clbp_bidsapp.io import atlases, strategies

    return settings.replace({
        "execution": {
            "bids_dir": absolute(ex.bids_dir),
            "output_dir": absolute(ex.output_dir),
            "work_dir": absolute(ex.work_dir),
            "bids_database_dir": absolute(ex.bids_database_dir),
        },
        "inputs": {"fmriprep_dir": absolute(inputs.fmriprep_dir), "aslprep_dir": absolute(inputs.aslprep_dir)},
        "denoise": {
            "strategy": settings.denoise.strategy
            if settings.denoise.strategy in strategies.list_strategies()
            else user_file(settings.denoise.strategy)
        },
        "connectivity": {
            "networks": con.networks if con.networks == "seitzman" else user_file(con.networks),
            "atlases": tuple(a if a in atlases.ATLASES else user_file(a) for a in con.atlases),
            "seeds": tuple(s if s in set(atlases.seed_library()["name"]) else user_file(s) for s in con.seeds),
        },
    })  # fmt: skip


def _convert(dest: str, raw: Any) -> Any:
    """Command-line words as the setting's type (flags, counts and constants are typed already)."""
    check = field_check(dest)
    if isinstance(raw, list):
        return tuple(check.from_text(v) if isinstance(v, str) else v for v in raw)
    return check.from_text(raw) if isinstance(raw, str) else raw


def _labels(overrides: dict, key: str, prefix: str, errors: list[str]) -> None:
    from clbp_bidsapp.io.bids import normalise_labels

    raw = overrides.get("inputs", {}).get(key)
    if raw is None:
        return
    if key == "participant_label":
        from clbp_bidsapp.io.bids import expand_label_files

        raw, unreadable = expand_label_files(raw)
        errors.extend(unreadable)
    clean, bad = normalise_labels(list(raw), prefix)
    errors.extend(bad)
    overrides["inputs"][key] = tuple(clean)


def _space(overrides: dict, errors: list[str]) -> None:
    raw = overrides.get("inputs", {}).get("space")
    if raw is None:
        return
    name, _, extra = raw.partition(":")
    if not name.isalnum():
        errors.append(f"--space {raw}: expected a template name such as MNI152NLin2009cAsym[:res-2]")
        return
    overrides["inputs"]["space"] = name
    if extra:
        if not extra.startswith("res-") or not extra[4:].isalnum():
            errors.append(f"--space {raw}: the part after ':' must be res-<label>, e.g. :res-2")
            return
        overrides["inputs"]["res"] = extra[4:]


def _check_settings(settings: Settings) -> list[str]:
    """Checks that need the analysis level or the files named (plain ranges: :meth:`Settings.validate`)."""
    errors = []
    level = settings.execution.analysis_level
    valid = PARTICIPANT_STAGES if level == "participant" else GROUP_STAGES
    unknown = [s for s in settings.execution.skip if s not in valid]
    if unknown:
        errors.append(f"--skip: unknown {level}-level stage(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    from clbp_bidsapp.io.strategies import load_strategy

    try:
        load_strategy(settings.denoise.strategy)
    except (ValueError, OSError) as exc:
        errors.append(f"--strategy: {exc}")
    errors += _check_connectivity(settings)
    return errors


def _check_connectivity(settings: Settings) -> list[str]:
    from clbp_bidsapp.io import atlases

    con = settings.connectivity
    errors: list[str] = []
    if settings.execution.analysis_level != "participant":
        return errors
    try:
        atlases.select_seeds(con.seeds)
    except InputError as exc:
        errors.append(str(exc))
    for atlas in con.atlases:
        if atlas not in atlases.ATLASES:
            try:
                atlases.read_user_atlas(Path(atlas))
            except InputError as exc:
                errors.append(f"--atlases: {exc}")
    if con.networks != "seitzman" and not Path(con.networks).is_file():
        errors.append(f"--networks {con.networks}: expected 'seitzman' or the path of a 4-D NIfTI of network maps")
    return errors


def _check_space_requests(settings: Settings, *, typed: set[str]) -> list[str]:
    """Refuse MNI-coordinate stages the user asked for by name when ``--space`` has no MNI coordinates.

    Stages left to their defaults are skipped at run time with one message instead (see ``io/spaces.py``).
    """
    from clbp_bidsapp.io import atlases, spaces

    space = spaces.lookup(settings.inputs.space)
    if settings.execution.analysis_level != "participant" or space.mni_aligned:
        return []
    con, skip = settings.connectivity, set(settings.execution.skip)
    what = spaces.why_not_mni(space)
    errors = []
    if "connectivity.seeds" in typed and con.seeds and "seedfc" not in skip:
        errors.append(f"--seeds: seeds are MNI coordinates but {what}; drop --seeds or use an MNI --space")
    bundled = [a for a in con.atlases if a in atlases.ATLASES]
    if "connectivity.atlases" in typed and bundled and "connectome" not in skip:
        errors.append(
            f"--atlases {' '.join(bundled)}: bundled atlases are in MNI space but {what}; "
            "give dseg files in this space or use an MNI --space"
        )
    if "connectivity.networks" in typed and con.networks == "seitzman" and "dualreg" not in skip:
        errors.append(f"--networks seitzman: the bundled networks are MNI maps but {what}; give a 4-D NIfTI in "
                      "this space or use an MNI --space")  # fmt: skip
    return errors


def _check_paths(settings: Settings, errors: list[str], output_errors: list[str]):
    """Check input and output folders; return the raw dataset description (or None).

    The input is read-only: the output folder, the working folder and the pybids database folder are refused in
    it (:func:`clbp_bidsapp.io.derivatives.input_overlap`); the working folder also may not be or hold the output
    folder (:func:`clbp_bidsapp.io.workdir.work_dir_problem`). Nothing is written before these checks pass.
    """
    from clbp_bidsapp.io import aslprep, bids, derivatives, workdir

    ex = settings.execution
    source = None
    bids_dir = ex.bids_dir
    if not bids_dir.is_dir():
        errors.append(f"BIDS_DIR {bids_dir} does not exist or is not a folder")
        return None
    if not ex.skip_bids_validation:
        try:
            source = bids.read_dataset_description(bids_dir)
        except InputError as exc:
            errors.append(str(exc))
    try:
        bids.resolve_fmriprep_dir(bids_dir, settings.inputs.fmriprep_dir)
    except InputError as exc:
        errors.append(str(exc))
    raw_dir, derivative_inputs = bids.input_folders(bids_dir, settings.inputs.fmriprep_dir)
    try:  # ASLPrep derivatives are input too: never written
        derivative_inputs += [p for p in [aslprep.resolve_aslprep_dir(settings.inputs.aslprep_dir)] if p]
    except InputError as exc:
        errors.append(str(exc))
    if ex.work_dir is not None:
        problem = workdir.work_dir_problem(
            ex.work_dir, output_dir=ex.output_dir, raw_dir=raw_dir, derivative_inputs=derivative_inputs
        )
        if problem:
            errors.append(f"--work-dir {ex.work_dir} {problem}")
    if ex.bids_database_dir is not None:
        overlap = derivatives.input_overlap(ex.bids_database_dir, raw_dir=raw_dir, derivative_inputs=derivative_inputs)
        if ex.bids_database_dir.exists() and not ex.bids_database_dir.is_dir():
            errors.append(f"--bids-database-dir {ex.bids_database_dir} is a file, not a folder; choose a folder")
        elif overlap:
            errors.append(
                f"--bids-database-dir {ex.bids_database_dir} {overlap}; the input is never written: "
                "choose a folder outside it"
            )
    created = not ex.output_dir.exists()
    try:
        derivatives.check_output_dir(ex.output_dir, raw_dir=raw_dir, derivative_inputs=derivative_inputs)
    except OutputError as exc:
        output_errors.append(str(exc))
    if errors and created:  # refused arguments leave nothing behind, not even an empty output folder
        with contextlib.suppress(OSError):
            ex.output_dir.rmdir()
    return source


def _check_group_design(settings: Settings) -> list[str]:
    """What the group level's late steps need from participants.tsv (columns, labels), checked before any work."""
    from clbp_bidsapp.group.preflight import design_problems, qc_value_names
    from clbp_bidsapp.group.runner import read_participants
    from clbp_bidsapp.io import bids

    ex = settings.execution
    try:
        fmriprep_dir = bids.resolve_fmriprep_dir(ex.bids_dir, settings.inputs.fmriprep_dir)
    except InputError:
        return []  # reported by _check_paths
    try:
        table_path = bids.find_participants_table(ex.bids_dir, fmriprep_dir)
        if table_path is None:
            return [
                f"participants.tsv not found next to {ex.bids_dir} or in its SourceDatasets; "
                "the group level needs it (participant_id and the group column)"
            ]
        participants = read_participants(table_path)
    except InputError as exc:
        return [str(exc)]
    qc_values = qc_value_names(ex.output_dir) if ex.output_dir.is_dir() else None
    return design_problems(participants, settings=settings, table_name=str(table_path), qc_values=qc_values)
