"""Test helper: participant completion records in the format the participant level writes.

``OUTPUT_DIR/logs/participants/sub-<label>.json`` = {"participant", "status": "complete", "finished", "app_version",
"result_hash", "settings", "runs", "skipped_runs", "outputs": {path relative to OUTPUT_DIR: sha256}}, written last.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from clbp_bidsapp.config import Settings

PARTICIPANT_SECTIONS = ("execution", "inputs", "denoise", "metrics", "connectivity")


def participant_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """The participant level's result-affecting settings, as {section: {field: plain value}}."""
    plain = settings.to_dict()
    return {
        name: {
            f.name: plain[name][f.name]
            for f in fields(getattr(settings, name))
            if f.metadata.get("result", True) and f.name in plain[name]
        }
        for name in PARTICIPANT_SECTIONS
    }


def settings_hash(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_record(output_dir: Path, label: str, settings: Settings | None = None, **changes: Any) -> Path:
    """Record every file under ``sub-<label>/`` as ``label``'s complete participant-level output."""
    values = participant_settings(settings if settings is not None else Settings())
    files = sorted(p for p in (output_dir / f"sub-{label}").rglob("*") if p.is_file())
    record = {
        "participant": label,
        "status": "complete",
        "finished": "2026-11-30T06:00:00+00:00",
        "app_version": "0.1.0",
        "result_hash": settings_hash(values),
        "settings": values,
        "runs": sorted({p.name.split("_desc-denoising_qc")[0] for p in files if "_desc-denoising_qc.tsv" in p.name}),
        "skipped_runs": [],
        "outputs": {p.relative_to(output_dir).as_posix(): sha256(p) for p in files},
    }
    record.update(changes)
    path = output_dir / "logs" / "participants" / f"sub-{label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return path


def write_records(output_dir: Path, settings: Settings | None = None) -> list[Path]:
    """A record for every participant folder of ``output_dir`` (the participant level ran with ``settings``)."""
    labels = sorted(p.name.removeprefix("sub-") for p in output_dir.glob("sub-*") if p.is_dir())
    return [write_record(output_dir, label, settings) for label in labels]
