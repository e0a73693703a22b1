"""Per-participant completion records: ``OUTPUT_DIR/logs/participants/sub-<label>.json``.

A record says that a participant finished the participant level with every promised output on disk. It is
removed when the participant's processing starts and written last, atomically, only after its outputs were
verified; so an interrupted or failed run leaves no record, and a record never describes outputs that are not
there. The group level uses only participants with a complete record, and the participant level refuses to mix
settings in one folder by comparing ``result_hash`` with the records already there.

Record content (docs/outputs.md)::

    {"participant": "01", "status": "complete", "finished": "2026-11-30T06:10:00+00:00",
     "app_version": "...", "result_hash": "<Settings.participant_hash()>",
     "settings": {"denoise": {...}, "metrics": {...}, ...}, "runs": ["sub-01_task-rest"],
     "skipped_runs": [], "outputs": {"sub-01/func/...nii.gz": "<sha256>", ...}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.io import derivatives
from clbp_bidsapp.io.manifest import sha256

RECORD_DIR = Path("logs") / "participants"
COMPLETE = "complete"


def record_path(output_dir: Path, participant: str) -> Path:
    return output_dir / RECORD_DIR / f"sub-{participant}.json"


def remove_record(output_dir: Path, participant: str) -> None:
    """Forget that ``participant`` was complete (called when its processing starts)."""
    record_path(output_dir, participant).unlink(missing_ok=True)


def missing_outputs(output_dir: Path, promised: Iterable[Path]) -> list[Path]:
    """The promised outputs (relative to ``output_dir``) that are not a non-empty regular file."""
    missing = []
    for relative in promised:
        path = output_dir / relative
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(Path(relative))
    return missing


def write_record(
    output_dir: Path,
    participant: str,
    *,
    result_hash: str,
    settings: Mapping[str, Any],
    runs: Sequence[str],
    skipped_runs: Sequence[str],
    outputs: Iterable[Path],
    finished: datetime | None = None,
) -> Path:
    """Hash every output (relative paths) and write the record atomically; raise if an output is missing."""
    outputs = sorted({Path(p) for p in outputs})
    missing = missing_outputs(output_dir, outputs)
    if missing:
        raise FileNotFoundError(f"{output_dir / missing[0]} is missing; a completion record needs every output")
    record = {
        "participant": participant,
        "status": COMPLETE,
        "finished": (finished or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "app_version": __version__,
        "result_hash": result_hash,
        "settings": dict(settings),
        "runs": list(runs),
        "skipped_runs": list(skipped_runs),
        "outputs": {str(p): sha256(output_dir / p) for p in outputs},
    }
    return derivatives.write_json(record_path(output_dir, participant), record)


def read_records(output_dir: Path) -> dict[str, dict[str, Any]]:
    """Every complete record in ``output_dir`` by participant label (unreadable or other files are ignored)."""
    records = {}
    folder = output_dir / RECORD_DIR
    for path in sorted(folder.glob("sub-*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        label = path.name.removeprefix("sub-").removesuffix(".json")
        if isinstance(check_record(record, label), dict):
            records[label] = record
    return records


def record_name(label: str) -> str:
    """The record's path as the messages show it (relative to the output folder)."""
    return f"{RECORD_DIR.as_posix()}/sub-{label}.json"


def load_record(output_dir: Path, label: str) -> dict[str, Any] | str:
    """The parsed completion record of ``label``, or why there is no usable one."""
    path = record_path(output_dir, label)
    if not path.is_file():
        return f"participant level did not complete (no {record_name(label)})"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{record_name(label)} is not readable JSON ({exc}); rerun the participant level"
    return check_record(record, label)


def check_record(record: Any, label: str) -> dict[str, Any] | str:
    """The record when it says the participant completed; otherwise the reason it cannot be used."""
    name = record_name(label)
    if not isinstance(record, dict):
        return f"{name} is not a completion record; rerun the participant level"
    if str(record.get("participant", "")).removeprefix("sub-") != label:
        return f"{name} names participant {record.get('participant')!r}, not {label}; rerun the participant level"
    if record.get("status") != "complete":
        return f"participant level did not complete ({name} has status {record.get('status')!r})"
    for key, kind in (("outputs", dict), ("settings", dict), ("result_hash", str)):
        if not isinstance(record.get(key), kind):
            return f"{name} has no valid '{key}'; rerun the participant level"
    return record


def verify_outputs(output_dir: Path, record: Mapping[str, Any], *, wanted: Callable[[str], bool]) -> str | None:
    """The reason the record's outputs cannot be trusted (a listed file missing or changed), or None.

    Only files that ``wanted`` accepts (the ones the group level may read) are hashed.
    """
    for relative, digest in sorted(record["outputs"].items()):
        if not wanted(relative):
            continue
        path = output_dir / relative
        if not path.is_file():
            name = record_name(record_label(record))
            return f"{relative} is listed in {name} but missing; rerun the participant level"
        if sha256(path) != digest:
            return (
                f"{relative} changed after the participant level finished (SHA-256 differs from "
                f"{record_name(record_label(record))}); rerun the participant level"
            )
    return None


def record_label(record: Mapping[str, Any]) -> str:
    return str(record["participant"]).removeprefix("sub-")


def settings_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``section.field: old → new`` for every setting that differs between two ``settings`` dicts."""
    differences = []
    for section in sorted(set(old) | set(new)):
        before, after = old.get(section, {}), new.get(section, {})
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                differences.append(f"{section}.{key}: {_show(before.get(key))} → {_show(after.get(key))}")
    return differences


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return json.dumps(value) if isinstance(value, dict) else str(value)
