"""Group inclusion rules over parsed completion records (pure functions of clbp_bidsapp.group.inclusion)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from clbp_bidsapp.config import GroupSettings, Settings
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.group import inclusion
from clbp_bidsapp.io import completion
from tests.group.records import participant_settings, settings_hash, write_record


def _record(label: str, settings: Settings | None = None) -> dict:
    values = participant_settings(settings or Settings())
    return {"participant": label, "status": "complete", "result_hash": settings_hash(values), "settings": values,
            "outputs": {}}  # fmt: skip


def test_mixed_settings_message_names_counts_and_differences():
    other = Settings().replace({"denoise": {"strategy": "36P", "fd_thresh": 0.2}, "metrics": {"smoothing_fwhm": 0.0}})
    records = {"01": _record("01"), "02": _record("02", other), "03": _record("03"), "04": _record("04")}
    message = inclusion.mixed_settings_message(records)
    assert message is not None and "\n" not in message
    assert "2 different result-affecting settings" in message
    assert "(sub-01, sub-03, sub-04)" in message and "(sub-02)" in message
    assert "denoise.fd_thresh: 0.5 vs 0.2" in message
    assert "denoise.strategy: 24P vs 36P" in message
    assert "metrics.smoothing_fwhm: 6.0 vs 0.0" in message
    assert "execution.random_seed" not in message  # equal in both
    assert inclusion.mixed_settings_message({"01": _record("01"), "02": _record("02")}) is None


def test_apply_participant_settings_replaces_what_the_maps_were_made_with():
    made = Settings().replace({"denoise": {"strategy": "36P"}, "metrics": {"smoothing_fwhm": 4.0}})
    group_command_line = Settings().replace({"metrics": {"smoothing_fwhm": 8.0}, "group": {"n_permutations": 20}})
    applied = inclusion.apply_participant_settings(group_command_line, participant_settings(made))
    assert applied.denoise.strategy == "36P"
    assert applied.metrics.smoothing_fwhm == 4.0
    assert applied.connectivity == made.connectivity
    assert applied.group.n_permutations == 20  # group settings stay the command line's
    flat = {"denoise.strategy": "aCompCor", "metrics.smoothing_fwhm": 0, "unknown.field": 1}
    applied = inclusion.apply_participant_settings(Settings(), flat)
    assert (applied.denoise.strategy, applied.metrics.smoothing_fwhm) == ("aCompCor", 0.0)


def test_selection_by_session_and_task():
    selection = inclusion.Selection(participants=("01",), sessions=("2",), tasks=("rest",))
    assert selection.wants_participant("01") and not selection.wants_participant("02")
    assert selection.wants_file("sub-01/ses-2/func/sub-01_ses-2_task-rest_stat-alff_boldmap.nii.gz")
    assert not selection.wants_file("sub-01/ses-1/func/sub-01_ses-1_task-rest_stat-alff_boldmap.nii.gz")
    assert not selection.wants_file("sub-01/ses-2/func/sub-01_ses-2_task-restb_stat-alff_boldmap.nii.gz")
    assert selection.wants_file("sub-01/anat/sub-01_desc-brain_mask.nii.gz")  # no session entity: kept
    assert inclusion.Selection().describe() == "all participants, sessions and tasks"
    assert selection.describe() == "participants sub-01; sessions ses-2; tasks task-rest"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "running"}, "did not complete (logs/participants/sub-01.json has status 'running')"),
        ({"participant": "02"}, "names participant '02', not 01"),
        ({"outputs": None}, "has no valid 'outputs'"),
    ],
)
def test_check_record_refuses_incomplete_records(change, reason):
    assert reason in completion.check_record({**_record("01"), **change}, "01")


def test_load_and_verify_records(tmp_path):
    assert completion.load_record(tmp_path, "01") == (
        "participant level did not complete (no logs/participants/sub-01.json)"
    )
    folder = tmp_path / "sub-01" / "func"
    folder.mkdir(parents=True)
    (folder / "sub-01_ses-1_task-rest_stat-alff_boldmap.nii.gz").write_bytes(b"one")
    (folder / "sub-01_ses-2_task-rest_stat-alff_boldmap.nii.gz").write_bytes(b"two")
    write_record(tmp_path, "01")
    record = completion.load_record(tmp_path, "01")
    assert isinstance(record, dict)
    assert completion.verify_outputs(tmp_path, record, wanted=lambda _: True) is None
    (folder / "sub-01_ses-2_task-rest_stat-alff_boldmap.nii.gz").write_bytes(b"changed")
    reason = completion.verify_outputs(tmp_path, record, wanted=lambda _: True)
    assert "sub-01/func/sub-01_ses-2_task-rest_stat-alff_boldmap.nii.gz changed" in reason
    ses1 = inclusion.Selection(sessions=("1",))
    assert completion.verify_outputs(tmp_path, record, wanted=ses1.wants_file) is None  # only what is read
    (folder / "sub-01_ses-1_task-rest_stat-alff_boldmap.nii.gz").unlink()
    assert "missing" in completion.verify_outputs(tmp_path, record, wanted=ses1.wants_file)
    (tmp_path / "logs" / "participants" / "sub-01.json").write_text("{not json")
    assert "is not readable JSON" in completion.load_record(tmp_path, "01")
    assert inclusion.allowed_files([json.loads(json.dumps(record))], ses1) == {
        "sub-01/func/sub-01_ses-1_task-rest_stat-alff_boldmap.nii.gz"
    }


def test_participants_table_checks():
    table = pd.DataFrame({"participant_id": ["sub-01", "sub-02", "02", "sub-03", "03"], "group": ["CLBP"] * 5})
    with pytest.raises(InputError, match=r"t.tsv lists sub-02, sub-03 more than once"):
        inclusion.check_participants_table(table, table_name="t.tsv", group_column="group")
    with pytest.raises(InputError, match="has no column 'dx'"):
        inclusion.check_participants_table(table.iloc[:2], table_name="t.tsv", group_column="dx")


def test_group_size_shortfall_and_outcome():
    settings = GroupSettings(min_per_group=2)
    table = pd.DataFrame({"participant_id": ["01", "02", "03"], "group": ["CLBP", "CLBP", "HC"]})
    assert inclusion.group_size_shortfall(table, settings=settings) == (
        "only 1 HC participant(s) usable, fewer than --min-per-group 2"
    )
    assert inclusion.group_size_shortfall(table.iloc[:0], settings=settings).startswith("only 0 CLBP and 0 HC")
    outcome = inclusion.Outcome(exclusions=inclusion.Exclusions(), settings=settings)
    assert not outcome.enough("alff", table)
    assert outcome.enough("reho", pd.concat([table, table.assign(participant_id="04")]))
    assert outcome.skipped == [("alff", "only 1 HC participant(s) usable, fewer than --min-per-group 2")]
    outcome.exclude({"04": "no alff map"}, "alff")
    outcome.exclusions.add("05", "no row in participants.tsv")
    assert outcome.exclusions.table().to_dict("records") == [
        {"participant_id": "05", "analysis": "all", "reason": "no row in participants.tsv"},
        {"participant_id": "04", "analysis": "alff", "reason": "no alff map"},
    ]


def test_build_design_lists_every_dropped_participant():
    """#19.8: no row, no group label, another label, a missing covariate, no used run: each listed with a reason."""
    from clbp_bidsapp.group.design import build_design

    participants = pd.DataFrame({
        "participant_id": ["sub-01", "sub-02", "sub-03", "sub-04", "sub-05", "sub-06"],
        "group": ["CLBP", None, "other", "HC", "HC", "CLBP"],
        "age": [30.0, 31.0, 32.0, None, 40.0, 41.0],
    })  # fmt: skip
    run_qc = pd.DataFrame({
        "participant_id": ["01", "02", "03", "04", "05", "06", "07"],
        "used": [True, True, True, True, True, False, True],
        "mean_fd": [0.1] * 7,
    })  # fmt: skip
    design = build_design(participants, run_qc, settings=GroupSettings(covariates=("age", "mean_fd")),
                          table_name="p.tsv")  # fmt: skip
    assert list(design.included["participant_id"]) == ["01", "05"]
    reasons = design.excluded.set_index("participant_id")["reason"].to_dict()
    assert reasons == {
        "02": "no group label in p.tsv",
        "03": "group is 'other', neither CLBP nor HC",
        "04": "covariate age is missing (n/a) in p.tsv or the QC tables",
        "06": "no usable run (too little data after censoring or too few degrees of freedom)",
        "07": "no row in p.tsv",
    }
    assert set(design.excluded["analysis"]) == {"all"}
