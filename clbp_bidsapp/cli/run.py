"""``clbp-bidsapp``: parse -> validate everything at once -> write the config -> dispatch."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clbp_bidsapp.cli import messages
from clbp_bidsapp.cli.parser import CONVERTERS, build_parser
from clbp_bidsapp.config import Settings
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
    _configure_logging(settings.execution.verbosity)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]
    output_dir = settings.execution.output_dir
    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    from clbp_bidsapp.io.derivatives import write_text

    write_text(logs / f"config-{run_id}.toml", settings.to_toml())
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
        except Exception as exc:  # TOMLDecodeError, ValueError, TypeError
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
        except (argparse.ArgumentTypeError, ValueError) as exc:
            errors.append(f"--{key.replace('_', '-')}: {exc}")
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
    errors.extend(_check_settings(settings))
    if settings.execution.analysis_level == "group" and settings.execution.bids_dir.is_dir():
        errors.extend(_check_group_design(settings))
    output_errors: list[str] = []
    source = None
    try:
        source = _check_paths(settings, errors, output_errors)
    except UserError as exc:  # pragma: no cover - _check_paths collects instead of raising
        errors.append(str(exc))
    if errors or output_errors:
        all_errors = errors + output_errors
        code = ExitCode.USAGE if errors else ExitCode.OUTPUT_NOT_WRITABLE
        messages.errors(all_errors[:-1])
        raise UserError(all_errors[-1], exit_code=code)
    extras["source"] = source
    return settings, extras


def _absolute_paths(settings: Settings) -> Settings:
    """Folders as absolute paths: graph nodes run in their own working folders, so relative paths would move."""
    ex, inputs = settings.execution, settings.inputs

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(os.path.abspath(path))

    return settings.replace({
        "execution": {
            "bids_dir": absolute(ex.bids_dir),
            "output_dir": absolute(ex.output_dir),
            "work_dir": absolute(ex.work_dir),
            "bids_database_dir": absolute(ex.bids_database_dir),
        },
        "inputs": {"fmriprep_dir": absolute(inputs.fmriprep_dir)},
    })  # fmt: skip


def _convert(dest: str, raw: Any) -> Any:
    converter = CONVERTERS.get(dest)
    if isinstance(raw, list):
        return tuple(converter(v) for v in raw) if converter else tuple(raw)
    return converter(raw) if converter and not isinstance(raw, bool | int | tuple) else raw


def _labels(overrides: dict, key: str, prefix: str, errors: list[str]) -> None:
    from clbp_bidsapp.io.bids import normalise_labels

    raw = overrides.get("inputs", {}).get(key)
    if raw is None:
        return
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
    errors = []
    level = settings.execution.analysis_level
    valid = PARTICIPANT_STAGES if level == "participant" else GROUP_STAGES
    unknown = [s for s in settings.execution.skip if s not in valid]
    if unknown:
        errors.append(f"--skip: unknown {level}-level stage(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    band = settings.denoise.band_pass
    if band and (len(band) != 2 or not 0 < band[0] < band[1]):
        errors.append(f"--band-pass {' '.join(map(str, band))}: need 0 < LOW < HIGH (Hz)")
    if settings.denoise.dummy_scans != "auto" and not str(settings.denoise.dummy_scans).isdigit():
        errors.append(f"--dummy-scans {settings.denoise.dummy_scans}: expected 'auto' or a number")
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
    errors = []
    low, high, step = (list(con.graph_sparsity) + [0, 0, 0])[:3]
    if len(con.graph_sparsity) != 3 or not (0 < low <= high <= 1 and step > 0):
        errors.append("--graph-sparsity: need 0 < LOW <= HIGH <= 1 and STEP > 0, e.g. 0.05 0.40 0.01")
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


def _check_paths(settings: Settings, errors: list[str], output_errors: list[str]):
    """Check input and output folders; return the raw dataset description (or None)."""
    from clbp_bidsapp.io import bids, derivatives

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
    inputs = [bids_dir]
    try:
        fmriprep = bids.resolve_fmriprep_dir(bids_dir, settings.inputs.fmriprep_dir)
        inputs.append(fmriprep)
    except InputError as exc:
        errors.append(str(exc))
    created = not ex.output_dir.exists()
    try:
        derivatives.check_output_dir(ex.output_dir, inputs)
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


def _configure_logging(verbosity: int) -> None:
    """The app's own log level; nipype's is set by the graph runner from the same verbosity."""
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.getLogger("clbp_bidsapp").setLevel(level)
