"""The group level uses only complete, verified, selected participant outputs, and says what it left out.

Issue #19 items 4-9 (group side): a group run that analyses nothing fails (exit 3); inclusion comes from the
participant completion records (``logs/participants/sub-<label>.json``), per map and per analysis, with every
exclusion and its reason in ``group/desc-excluded_participants.tsv`` and ``--min-per-group`` enforced per analysis;
participants made with different result-affecting settings are not compared (exit 2, nothing written);
``--participant-label``/``--session-id``/``--task-id`` select what the group level reads; participants.tsv is
checked before anything is written; invalid seed maps are left out per participant.

The participant level runs once per module (4 participants x 2 sessions, 30 volumes, 4 mm); the completion records
are written by ``tests.group.records`` in the participant level's format. Each test breaks a private copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from clbp_bidsapp.config import Settings
from tests.group.records import write_record
from tests.integration.common import assert_user_error, run_app, with_min_dof

pytestmark = pytest.mark.integration

PARTICIPANT_ARGS = ("--min-time", "0", "--fd-thresh", "0", "--no-band-pass", "--skip", "vmhc", "dc", "tsnr", "report",
                    "graph", "dualreg", "connectome", "--seeds", "pcc")  # fmt: skip
GROUP_ARGS = ("--n-permutations", "20", "--no-tfce", "--covariates", "--group-metrics", "alff",
              "reho", "fcz", "--skip", "ml", "ica", "report", "connectome")  # fmt: skip


SETTING_ROW = "<th>{}</th><td>{}</td>"


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return run_app(*with_min_dof(args))


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """(dataset root, output folder with complete participant outputs and their completion records)."""
    from clbp_bidsapp.testing.synthetic import make_dataset

    base = tmp_path_factory.mktemp("inclusion")
    info = make_dataset(base / "bids", n_patients=2, n_controls=2, voxel_size=4, n_volumes=30, tr=2.0, seed=7,
                        sessions=("1", "2"))  # fmt: skip
    out = base / "out"
    result = cli(info.root, out, "participant", *PARTICIPANT_ARGS, "-w", base / "work")
    assert result.returncode == 0, result.stderr
    # the participant level wrote a completion record for each participant (the group level reads only those)
    assert sorted(p.name for p in (out / "logs" / "participants").glob("sub-*.json")) == [
        f"sub-0{i}.json" for i in range(1, 5)
    ]
    return info.root, out


@pytest.fixture
def copy(processed, tmp_path):
    root, out = processed
    target = tmp_path / "out"
    shutil.copytree(out, target)
    return root, target


def excluded(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "group" / "desc-excluded_participants.tsv", sep="\t", dtype=str, keep_default_na=False)


def design(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "group" / "desc-design_participants.tsv", sep="\t", dtype={"participant_id": str})


def record(out: Path, label: str) -> dict:
    return json.loads((out / "logs" / "participants" / f"sub-{label}.json").read_text())


def alff_files(out: Path, label: str) -> list[Path]:
    return sorted((out / f"sub-{label}").rglob("*_stat-alff_desc-z_boldmap.nii.gz"))


def test_complete_outputs_are_analysed(copy):
    root, out = copy
    result = cli(root, out, "group", *GROUP_ARGS)
    assert result.returncode == 0, result.stderr
    assert list(design(out)["participant_id"]) == ["01", "02", "03", "04"]
    assert list(design(out)["n_runs"]) == [2, 2, 2, 2]  # both sessions
    assert excluded(out).empty
    assert "2 CLBP and 2 HC included, 0 excluded" in result.stderr
    assert "3 analyses run, 0 not run" in result.stderr
    for label in ("alff", "reho", "fcz-pcc"):
        assert (out / "group" / f"{label}_contrast-CLBPvsHC_stat-t_statmap.nii.gz").is_file()


def test_interrupted_participant_level_is_not_a_success(copy):
    """#19.4: no completion record (an interrupted run) -> nothing analysed -> exit 3, one line, no report."""
    root, out = copy
    shutil.rmtree(out / "logs" / "participants")
    result = cli(root, out, "group", *GROUP_ARGS)
    assert_user_error(result, 3, "0 usable participant(s) with group=CLBP", max_lines=1)
    table = excluded(out)
    assert list(table["participant_id"]) == ["01", "02", "03", "04"]
    assert set(table["reason"]) == {
        f"participant level did not complete (no logs/participants/sub-{label}.json)" for label in ("01",)
    } | {f"participant level did not complete (no logs/participants/sub-{label}.json)" for label in ("02", "03", "04")}
    assert not list((out / "group").glob("*_statmap.nii.gz"))


def test_no_requested_map_found_exits_3(copy):
    """#19.4: every requested analysis reported as not run, with its reason; none ran -> exit 3."""
    root, out = copy
    args = ("--n-permutations", "20", "--covariates", "--group-metrics", "vmhc", "dc", "--skip", "ml", "ica",
            "report", "connectome")  # fmt: skip
    result = cli(root, out, "group", *args)
    # nothing can run: no plan, estimate, progress or stage-time line (test_group_runner_more.py counts the lines)
    assert_user_error(
        result, 3, "vmhc not run: no vmhc maps", "dc not run: no dc maps", "no group analysis ran", max_lines=4
    )
    assert "group level plan" not in result.stderr
    assert not (out / "logs" / "methods-group.json").exists()


def test_participant_without_record_is_excluded_and_minimum_enforced(copy):
    """#19.5: a participant without a completion record is excluded with the reason; 2 CLBP vs 1 HC is refused."""
    root, out = copy
    (out / "logs" / "participants" / "sub-04.json").unlink()
    refused = cli(root, out, "group", *GROUP_ARGS)
    assert_user_error(refused, 3, "1 usable participant(s) with group=HC", max_lines=1)
    row = excluded(out).set_index("participant_id").loc["04"]
    assert row["analysis"] == "all"
    assert row["reason"] == "participant level did not complete (no logs/participants/sub-04.json)"

    result = cli(root, out, "group", *GROUP_ARGS, "--min-per-group", "1")
    assert result.returncode == 0, result.stderr
    assert list(design(out)["participant_id"]) == ["01", "02", "03"]
    assert "2 CLBP and 1 HC included, 1 excluded" in result.stderr


def test_changed_output_excludes_the_participant_naming_the_file(copy):
    root, out = copy
    changed = alff_files(out, "02")[0]
    changed.write_bytes(changed.read_bytes()[:-10])  # truncated after the participant level finished
    result = cli(root, out, "group", *GROUP_ARGS, "--min-per-group", "1")
    assert result.returncode == 0, result.stderr
    reason = excluded(out).set_index("participant_id").loc["02", "reason"]
    assert changed.relative_to(out).as_posix() in reason and "changed after the participant level" in reason
    assert "02" not in set(design(out)["participant_id"])


def test_missing_map_kind_excludes_from_that_analysis_only(copy):
    """#19.5: sub-03 without ALFF maps: left out of alff (which, below --min-per-group, is not run), kept elsewhere."""
    root, out = copy
    for path in alff_files(out, "03"):
        path.unlink()
    write_record(out, "03", Settings.from_toml(next((out / "logs").glob("config-*.toml")).read_text()))
    result = cli(root, out, "group", *GROUP_ARGS)
    assert result.returncode == 0, result.stderr
    assert "alff not run: only 1 HC participant(s) usable, fewer than --min-per-group 2" in result.stderr
    assert not (out / "group" / "alff_contrast-CLBPvsHC_stat-t_statmap.nii.gz").exists()
    assert (out / "group" / "reho_contrast-CLBPvsHC_stat-t_statmap.nii.gz").is_file()
    table = excluded(out)
    assert table.to_dict("records") == [{"participant_id": "03", "analysis": "alff", "reason": "no alff map"}]
    assert "2 analyses run, 1 not run" in result.stderr


def test_stale_file_not_in_the_record_is_not_read(copy):
    """A map left by an earlier run (not listed in the record) never enters the group analysis."""
    root, out = copy
    rec = record(out, "03")
    for path in alff_files(out, "03"):
        del rec["outputs"][path.relative_to(out).as_posix()]
    (out / "logs" / "participants" / "sub-03.json").write_text(json.dumps(rec))
    result = cli(root, out, "group", *GROUP_ARGS, "--min-per-group", "1")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((out / "group" / "alff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
    assert sidecar["Participants"] == 3
    assert {"participant_id": "03", "analysis": "alff", "reason": "no alff map"} in excluded(out).to_dict("records")


def test_mixed_settings_are_refused_before_writing(copy):
    """#19.6: two settings variants -> exit 2 naming the counts and the differing settings, nothing written."""
    root, out = copy
    settings = Settings.from_toml(next((out / "logs").glob("config-*.toml")).read_text())
    other = settings.replace({"denoise": {"strategy": "36P"}, "metrics": {"smoothing_fwhm": 0.0}})
    for label in ("03", "04"):
        write_record(out, label, other)
    result = cli(root, out, "group", *GROUP_ARGS)
    assert_user_error(
        result, 2, "2 different result-affecting settings", "(sub-01, sub-02)", "(sub-03, sub-04)",
        "denoise.strategy: 24P vs 36P", "metrics.smoothing_fwhm: 6.0 vs 0.0", "rerun the participant level",
        max_lines=1,
    )  # fmt: skip
    assert not (out / "group").exists()


def test_group_describes_the_participant_settings(copy):
    """#19.6: smoothing and strategy in the group report come from the records, not the group command line."""
    root, out = copy
    args = [a for a in GROUP_ARGS if a != "report"]
    result = cli(root, out, "group", *args, "--smoothing-fwhm", "2", "--strategy", "36P")
    assert result.returncode == 0, result.stderr
    html = (out / "group.html").read_text()
    assert SETTING_ROW.format("denoise.strategy", "24P") in html
    assert SETTING_ROW.format("metrics.smoothing_fwhm", "6") in html
    assert "36P" not in html


def test_session_and_participant_selection(copy):
    """#19.7: --session-id and --participant-label restrict what the group level reads, and it says so."""
    root, out = copy
    result = cli(root, out, "group", *GROUP_ARGS, "--session-id", "2")
    assert result.returncode == 0, result.stderr
    assert "group level reads sessions ses-2" in result.stderr
    assert list(design(out)["n_runs"]) == [1, 1, 1, 1]
    qc = pd.read_csv(out / "sub-01" / "ses-2" / "func" / "sub-01_ses-2_task-rest_desc-denoising_qc.tsv", sep="\t")
    assert design(out).loc[0, "mean_fd"] == pytest.approx(qc.loc[0, "mean_fd"])

    result = cli(root, out, "group", *GROUP_ARGS, "--participant-label", "01", "02", "04", "--min-per-group", "1")
    assert result.returncode == 0, result.stderr
    assert "group level reads participants sub-01, sub-02, sub-04" in result.stderr
    assert list(design(out)["participant_id"]) == ["01", "02", "04"]
    sidecar = json.loads((out / "group" / "alff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
    assert sidecar["Participants"] == 3


def test_task_selection(copy):
    """#19.7: a second task's maps are not averaged in when --task-id names one task."""
    root, out = copy
    for path in sorted((out / "sub-01").rglob("*task-rest*")):
        twin = path.with_name(path.name.replace("task-rest", "task-restb"))
        shutil.copy(path, twin)
    settings = Settings.from_toml(next((out / "logs").glob("config-*.toml")).read_text())
    write_record(out, "01", settings)
    both = cli(root, out, "group", *GROUP_ARGS)
    assert both.returncode == 0, both.stderr
    assert list(design(out)["n_runs"]) == [4, 2, 2, 2]
    one = cli(root, out, "group", *GROUP_ARGS, "--task-id", "rest")
    assert one.returncode == 0, one.stderr
    assert "group level reads tasks task-rest" in one.stderr
    assert list(design(out)["n_runs"]) == [2, 2, 2, 2]


def _edit_participants(root: Path, change) -> Path:
    path = root / "participants.tsv"
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    change(table).to_csv(path, sep="\t", index=False)
    return path


def test_duplicate_participant_row_is_refused_before_writing(copy, tmp_path):
    """#19.8: a duplicate participant_id stops the group level before any output, naming the id and the file."""
    root, out = copy
    bids = tmp_path / "bids"
    shutil.copytree(root, bids)
    path = _edit_participants(bids, lambda t: pd.concat([t, t.iloc[[1]]]))
    result = cli(bids, out, "group", *GROUP_ARGS)
    assert_user_error(result, 2, "sub-02 more than once", str(path), max_lines=1)
    assert not (out / "group").exists()


def test_participant_missing_from_table_is_listed(copy, tmp_path):
    """#19.8: a participant with outputs but no row in participants.tsv, and one without a covariate, are listed.

    Only sub-02 (CLBP) and sub-03 (HC) remain: too few for a model with an intercept and age, so the group level
    stops before any analysis (exit 3, the design named), and the exclusion table says why the others are out.
    """
    root, out = copy
    bids = tmp_path / "bids"
    shutil.copytree(root, bids)
    path = _edit_participants(bids, lambda t: t[t["participant_id"] != "sub-04"].assign(
        age=lambda x: x["age"].where(x["participant_id"] != "sub-01", "n/a")))  # fmt: skip
    args = [a for a in GROUP_ARGS if a != "--covariates"]
    result = cli(bids, out, "group", *args, "--covariates", "age", "--min-per-group", "1")
    assert_user_error(result, 3, "group design: 3 regressors (group, intercept, age) for 2 participants", max_lines=10)
    reasons = excluded(out).set_index("participant_id")["reason"].to_dict()
    assert reasons == {"04": f"no row in {path}", "01": f"covariate age is missing (n/a) in {path} or the QC tables"}
    assert list(design(out)["participant_id"]) == ["02", "03"]

    _edit_participants(bids, lambda t: t.assign(age="40"))
    result = cli(bids, out, "group", *GROUP_ARGS, "--min-per-group", "1")
    assert result.returncode == 0, result.stderr
    assert excluded(out).to_dict("records") == [
        {"participant_id": "04", "analysis": "all", "reason": f"no row in {path}"}
    ]
    assert "2 CLBP and 1 HC included, 1 excluded" in result.stderr


def test_invalid_seed_map_is_left_out_of_that_seed_only(copy):
    """#19.9: a seed map whose sidecar says Valid false is not used; the participant stays in the other maps."""
    root, out = copy
    for sidecar in sorted((out / "sub-02").rglob("*_stat-fcz_desc-pccSmoothed_boldmap.json")):
        meta = json.loads(sidecar.read_text())
        meta["Seed"].update(Coverage=0.0, Valid=False)
        sidecar.write_text(json.dumps(meta))
    write_record(out, "02", Settings.from_toml(next((out / "logs").glob("config-*.toml")).read_text()))
    result = cli(root, out, "group", *GROUP_ARGS, "--min-per-group", "1")
    assert result.returncode == 0, result.stderr
    rows = excluded(out).to_dict("records")
    assert len(rows) == 1 and rows[0]["participant_id"] == "02" and rows[0]["analysis"] == "fcz-pcc"
    assert "seed pcc invalid" in rows[0]["reason"] and "0.0" in rows[0]["reason"]
    assert json.loads((out / "group" / "fcz-pcc_contrast-CLBPvsHC_stat-t_statmap.json").read_text())[
        "Participants"] == 3  # fmt: skip
    assert json.loads((out / "group" / "alff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())["Participants"] == 4
