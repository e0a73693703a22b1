"""Per-participant completion records (io/completion.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from clbp_bidsapp.config import Settings
from clbp_bidsapp.io import completion


def _outputs(root: Path) -> list[Path]:
    files = {
        Path("sub-01/func/sub-01_task-rest_space-MNI_stat-alff_boldmap.nii.gz"): b"\x1f\x8b map bytes",
        Path("sub-01/func/sub-01_task-rest_space-MNI_stat-alff_boldmap.json"): b'{"a": 1}\n',
        Path("sub-01.html"): b"<html></html>",
    }
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return sorted(files)


def test_record_holds_the_agreed_fields_and_the_hash_of_every_output(tmp_path):
    outputs = _outputs(tmp_path)
    settings = Settings()
    finished = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    path = completion.write_record(
        tmp_path,
        "01",
        result_hash=settings.participant_hash(),
        settings=settings.participant_settings(),
        runs=["sub-01_task-rest"],
        skipped_runs=["sub-01_task-rest_run-2"],
        outputs=outputs,
        finished=finished,
    )
    assert path == tmp_path / "logs" / "participants" / "sub-01.json"
    record = json.loads(path.read_text())
    assert set(record) == {
        "participant", "status", "finished", "app_version", "result_hash", "settings", "runs", "skipped_runs",
        "outputs",
    }  # fmt: skip
    assert record["participant"] == "01" and record["status"] == "complete"
    assert record["finished"] == "2026-11-30T06:00:00+00:00"
    assert record["result_hash"] == settings.participant_hash()
    assert record["settings"]["denoise"]["strategy"] == "24P"
    assert record["settings"]["inputs"]["space"] == "MNI152NLin2009cAsym"
    assert "group" not in record["settings"] and "ml" not in record["settings"]
    assert record["runs"] == ["sub-01_task-rest"] and record["skipped_runs"] == ["sub-01_task-rest_run-2"]
    assert record["outputs"] == {str(p): hashlib.sha256((tmp_path / p).read_bytes()).hexdigest() for p in outputs}
    assert completion.read_records(tmp_path) == {"01": record}
    assert completion.verify_outputs(tmp_path, record, wanted=lambda _: True) is None
    assert list((tmp_path / "logs" / "participants").iterdir()) == [path], "no temporary file left"


def test_a_record_is_refused_when_an_output_is_missing(tmp_path):
    outputs = _outputs(tmp_path)
    (tmp_path / outputs[0]).unlink()
    with pytest.raises(FileNotFoundError, match=str(outputs[0]).replace(".", r"\.")):
        completion.write_record(tmp_path, "01", result_hash="x", settings={}, runs=[], skipped_runs=[], outputs=outputs)
    assert not completion.record_path(tmp_path, "01").exists()


def test_missing_outputs_counts_absent_empty_and_non_files(tmp_path):
    outputs = _outputs(tmp_path)
    (tmp_path / outputs[0]).unlink()
    (tmp_path / outputs[1]).write_bytes(b"")
    (tmp_path / outputs[2]).unlink()
    (tmp_path / outputs[2]).mkdir()  # a folder under the final name is not the output
    assert completion.missing_outputs(tmp_path, outputs) == outputs
    assert completion.missing_outputs(tmp_path, []) == []


def test_verify_and_remove(tmp_path):
    outputs = _outputs(tmp_path)
    completion.write_record(tmp_path, "01", result_hash="h", settings={}, runs=[], skipped_runs=[], outputs=outputs)
    record = completion.read_records(tmp_path)["01"]
    (tmp_path / outputs[0]).write_bytes(b"changed")
    (tmp_path / outputs[1]).unlink()
    reason = completion.verify_outputs(tmp_path, record, wanted=lambda _: True)
    assert reason.startswith(f"{outputs[0]} changed after the participant level finished"), reason
    reason = completion.verify_outputs(tmp_path, record, wanted=lambda name: name != str(outputs[0]))
    assert reason.startswith(f"{outputs[1]} is listed in logs/participants/sub-01.json but missing"), reason
    completion.remove_record(tmp_path, "01")
    completion.remove_record(tmp_path, "01")  # removing twice is fine
    assert completion.read_records(tmp_path) == {}


def test_read_records_ignores_broken_and_incomplete_files(tmp_path):
    folder = tmp_path / "logs" / "participants"
    folder.mkdir(parents=True)
    (folder / "sub-01.json").write_text("{not json")
    (folder / "sub-02.json").write_text(json.dumps({"participant": "02", "status": "running"}))
    (folder / "sub-03.json").write_text(
        json.dumps({"participant": "03", "status": "complete", "outputs": {}, "settings": {}, "result_hash": "h"})
    )
    (folder / "sub-04.json").write_text(json.dumps({"participant": "04", "status": "complete"}))  # no outputs
    (folder / "notes.txt").write_text("x")
    assert list(completion.read_records(tmp_path)) == ["03"]
    assert completion.read_records(tmp_path / "nowhere") == {}


def test_settings_differences_name_each_field_old_and_new():
    old = Settings().participant_settings()
    new = Settings().replace({"denoise": {"strategy": "36P", "band_pass": ()}}).participant_settings()
    assert completion.settings_differences(old, new) == [
        "denoise.band_pass: 0.01 0.08 → none",
        "denoise.strategy: 24P → 36P",
    ]
    assert completion.settings_differences(old, old) == []
