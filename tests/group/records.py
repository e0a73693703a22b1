"""Test helper: participant completion records written with the participant level's own writer.

Used to make records that the participant level would not write by itself (other settings, a participant whose
outputs were edited by a test); the records of a normal run come from the participant level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clbp_bidsapp.config import Settings
from clbp_bidsapp.io import completion


def participant_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    return settings.participant_settings()


def settings_hash(values: dict[str, Any]) -> str:
    from clbp_bidsapp.config import _hash

    return _hash(values)


def write_record(output_dir: Path, label: str, settings: Settings | None = None, **changes: Any) -> Path:
    """Record every file under ``sub-<label>/`` as ``label``'s complete participant-level output."""
    settings = settings if settings is not None else Settings()
    files = sorted(p.relative_to(output_dir) for p in (output_dir / f"sub-{label}").rglob("*") if p.is_file())
    runs = sorted({p.name.split("_desc-denoising_qc")[0] for p in files if "_desc-denoising_qc.tsv" in p.name})
    path = completion.write_record(
        output_dir,
        label,
        result_hash=settings.participant_hash(),
        settings=settings.participant_settings(),
        runs=runs,
        skipped_runs=[],
        outputs=files,
    )
    if changes:
        import json

        record = json.loads(path.read_text())
        record.update(changes)
        path.write_text(json.dumps(record, indent=2))
    return path
