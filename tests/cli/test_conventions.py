"""fMRIPrep/XCP-D command-line habits: no prefix matching, their spellings with their meaning, readable help."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clbp_bidsapp.cli import docker, slurm
from clbp_bidsapp.cli.parser import build_parser, megabytes_to_gigabytes
from clbp_bidsapp.cli.run import parse_settings
from clbp_bidsapp.errors import UserError


@pytest.fixture(autouse=True)
def _restore_the_apps_logger():
    """main() configures the app's logger for its run; leave it as found for the next test in this process."""
    import logging

    logger = logging.getLogger("clbp_bidsapp")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def settings_of(dataset, tmp_path, *options: str):
    settings, _ = parse_settings([str(dataset), str(tmp_path / "out"), "participant", *options])
    return settings


def all_parsers() -> list[argparse.ArgumentParser]:
    from clbp_bidsapp.cli import verify
    from clbp_bidsapp.testing import cli as synth

    return [build_parser(), docker.build_parser(), slurm.build_parser(), verify.build_parser(), synth.build_parser()]


def test_no_parser_of_the_app_matches_option_prefixes():
    assert all(parser.allow_abbrev is False for parser in all_parsers())


def test_a_prefix_of_a_long_option_is_refused_not_guessed(dataset, tmp_path):
    with pytest.raises(UserError) as err:
        settings_of(dataset, tmp_path, "--mem-g", "16")  # was --mem-gb 16 through prefix matching
    assert "--mem-g" in str(err.value)


@pytest.mark.parametrize(
    ("words", "gigabytes"),
    [
        (["--mem", "16000"], 16.0),  # fMRIPrep/XCP-D: MB (was silently --mem-gb 16000)
        (["--mem-mb", "8000"], 8.0),
        (["--mem_mb", "2500"], 2.5),
        (["--mem", "16G"], 16.0),
        (["--mem", "16000MB"], 16.0),
        (["--mem-gb", "12"], 12.0),
    ],
)
def test_memory_in_megabytes_becomes_the_gigabyte_setting(dataset, tmp_path, words, gigabytes):
    assert settings_of(dataset, tmp_path, *words).execution.mem_gb == pytest.approx(gigabytes)


def test_a_bad_memory_size_names_the_flag(dataset, tmp_path):
    with pytest.raises(UserError) as err:
        settings_of(dataset, tmp_path, "--mem", "lots")
    assert "--mem" in str(err.value) and "16000" in str(err.value)
    with pytest.raises(UserError) as err:
        settings_of(dataset, tmp_path, "--mem", "0")
    assert "--mem-gb" in str(err.value)  # the setting's range check, named by the setting's own flag


def test_megabytes_to_gigabytes_is_fmriprep_conversion():
    assert megabytes_to_gigabytes("16000") == 16.0
    assert megabytes_to_gigabytes("512m") == 0.512
    assert megabytes_to_gigabytes("1.5G") == 1.5
    with pytest.raises(ValueError):
        megabytes_to_gigabytes("16 TB")


@pytest.mark.parametrize(
    ("words", "section", "name", "value"),
    [
        (["--nprocs", "3"], "execution", "nprocs", 3),
        (["--nthreads", "3"], "execution", "nprocs", 3),
        (["--n_cpus", "3"], "execution", "nprocs", 3),
        (["--n-cpus", "3"], "execution", "nprocs", 3),
        (["--omp-nthreads", "2"], "execution", "omp_nthreads", 2),
        (["--omp_nthreads", "2"], "execution", "omp_nthreads", 2),
        (["--skip_bids_validation"], "execution", "skip_bids_validation", True),
        (["--skip-bids-validation"], "execution", "skip_bids_validation", True),
        (["--session-label", "ses-1"], "inputs", "session_id", ("1",)),
        (["--session-id", "1"], "inputs", "session_id", ("1",)),
        (["-t", "rest"], "inputs", "task_id", ("rest",)),
        (["--task-id", "rest"], "inputs", "task_id", ("rest",)),
        (["--participant_label", "sub-01"], "inputs", "participant_label", ("01",)),
        (["--participant-label", "01"], "inputs", "participant_label", ("01",)),
        # XCP-D's underscore spellings of options this app shares with it
        (["--mem_gb", "12"], "execution", "mem_gb", 12.0),
        (["--dummy_scans", "3"], "denoise", "dummy_scans", "3"),
        (["--fd_thresh", "0.3"], "denoise", "fd_thresh", 0.3),
        (["--min_time", "120"], "denoise", "min_time", 120.0),
        (["--random_seed", "7"], "execution", "random_seed", 7),
        (["--clean_workdir"], "execution", "clean_workdir", True),
    ],
)
def test_fmriprep_spellings_have_their_meaning(dataset, tmp_path, words, section, name, value):
    assert getattr(getattr(settings_of(dataset, tmp_path, *words), section), name) == value


@pytest.mark.parametrize("option", ["-w", "--work-dir", "--work_dir"])
def test_work_dir_spellings(dataset, tmp_path, option):
    settings = settings_of(dataset, tmp_path, option, str(tmp_path / "work"))
    assert settings.execution.work_dir == tmp_path / "work"


def test_notrack_is_accepted_and_changes_nothing(dataset, tmp_path):
    assert settings_of(dataset, tmp_path, "--notrack") == settings_of(dataset, tmp_path)


def test_docker_wrapper_passes_the_fmriprep_spellings_on_as_the_app_reads_them(tmp_path, dataset):
    plan = docker.plan_run([str(dataset), str(tmp_path / "out"), "participant", "--mem", "16000", "--notrack"])
    assert plan.args[plan.args.index("--mem-gb") + 1] == "16.0"
    assert "--notrack" in plan.args


def test_help_shows_no_internal_setting_names():
    internal = re.compile(r"[A-Z_]+\.[A-Z_]+")
    for parser in all_parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.choices:
                continue
            metavar = action.metavar or formatter._get_default_metavar_for_optional(action)
            for word in metavar if isinstance(metavar, tuple) else (metavar,):
                assert not internal.search(word), (parser.prog, action.option_strings, word)
                if parser.prog == "clbp-bidsapp":
                    assert "." not in word and action.metavar is not None, (action.option_strings, word)
        assert not internal.search(parser.format_help()), parser.prog


# -- a file of participant labels ------------------------------------------------------------------------------
def test_participant_label_file(dataset, tmp_path):
    listing = tmp_path / "clbp.txt"
    listing.write_bytes(b"# patients of site A\r\nsub-01\r\n\r\n02  # second visit pending\r\n   \r\nsub-03\r\n")
    settings = settings_of(dataset, tmp_path, "--participant-label", str(listing), "04")
    assert settings.inputs.participant_label == ("01", "02", "03", "04")


def test_a_label_file_with_a_bad_label_names_it(dataset, tmp_path):
    listing = tmp_path / "labels.txt"
    listing.write_text("sub-01\nsub-../x\n")
    with pytest.raises(UserError) as err:
        settings_of(dataset, tmp_path, "--participant-label", str(listing))
    assert "sub-../x" in str(err.value)


def test_an_empty_label_file_is_refused(dataset, tmp_path):
    listing = tmp_path / "labels.txt"
    listing.write_text("# nobody yet\n\n")
    with pytest.raises(UserError) as err:
        settings_of(dataset, tmp_path, "--participant-label", str(listing))
    assert str(listing) in str(err.value) and "no labels" in str(err.value)


RECIPE = (
    """awk -F'\\t' '{sub(/\\r$/, "")} NR == 1 {for (i = 1; i <= NF; i++) if ($i == "group") c = i; next} """
    """$c == "CLBP" {print $1}'"""
)


@pytest.mark.skipif(shutil.which("awk") is None, reason="no awk")
def test_the_documented_participants_tsv_filter(dataset, tmp_path):
    usage = (Path(__file__).parents[2] / "docs" / "usage.md").read_text()
    assert RECIPE in usage
    (dataset / "participants.tsv").write_bytes(
        b"participant_id\tage\tgroup\r\nsub-01\t40\tCLBP\r\nsub-02\t41\tHC\r\nsub-03\t39\tCLBP\r\n"
    )
    listing = tmp_path / "clbp.txt"
    with listing.open("w") as out:
        subprocess.run(["bash", "-c", f"{RECIPE} {dataset}/participants.tsv"], stdout=out, check=True)
    settings = settings_of(dataset, tmp_path, "--participant-label", str(listing))
    assert settings.inputs.participant_label == ("01", "03")


# -- -v / -vv: the app's log reaches the terminal ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("tiny") / "bids"
    return make_dataset(root, n_patients=1, n_controls=0, voxel_size=4, n_volumes=30, tr=2.0, seed=3).root


@pytest.mark.parametrize("verbosity", [[], ["-vv"]], ids=["default", "vv"])
def test_an_unexpected_error_has_its_traceback_at_vv_only(tiny, tmp_path, capsys, monkeypatch, verbosity):
    from clbp_bidsapp.cli.run import main
    from clbp_bidsapp.workflows import runner

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "check_run", broken)
    with pytest.raises(SystemExit) as exited:
        main([str(tiny), str(tmp_path / "out"), "participant", *verbosity])
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert "FAILED  sub-01: unexpected RuntimeError: boom (please report this, with the -vv log)" in err
    if verbosity:
        assert "clbp-bidsapp: DEBUG clbp_bidsapp: checking the runs of sub-01 failed" in err
        assert "Traceback" in err and 'raise RuntimeError("boom")' in err
    else:
        assert "Traceback" not in err and "DEBUG" not in err


def test_logging_is_configured_once_per_run():
    import logging

    from clbp_bidsapp.messages import configure_logging

    for verbosity in (0, 2, 1):
        logger = configure_logging(verbosity)
    assert logger.level == logging.INFO
    assert sum(type(h).__name__ == "_StderrHandler" for h in logger.handlers) == 1


# -- the group report follows --group-column, --patient-label and --control-label ---------------------------------
def test_group_report_uses_the_group_column_and_labels(tmp_path):
    import nibabel as nb
    import numpy as np
    import pandas as pd

    from clbp_bidsapp.config import GroupSettings
    from clbp_bidsapp.reports.group import write_group_report

    group_dir = tmp_path / "group"
    group_dir.mkdir()
    design = pd.DataFrame({
        "participant_id": ["01", "02", "03", "04", "05"],
        "diagnosis": ["pain", "pain", "pain", "control", "control"],
        "age": [40.0, 42.0, 44.0, 30.0, 32.0],
    })  # fmt: skip
    design.to_csv(group_dir / "desc-design_participants.tsv", sep="\t", index=False)
    pd.DataFrame({"diagnosis": ["control", "pain"], "n": [2, 3], "mean_fd_mean": [0.1, 0.2]}).to_csv(
        group_dir / "desc-qc_summary.tsv", sep="\t", index=False
    )
    rng = np.random.default_rng(0)
    for contrast in ("painvscontrol", "age"):  # "age" sorts first alphabetically; the group contrast must lead
        nb.Nifti1Image(rng.normal(size=(4, 4, 4)).astype("float32"), np.eye(4)).to_filename(
            group_dir / f"alff_contrast-{contrast}_stat-t_statmap.nii.gz"
        )
    group = GroupSettings(group_column="diagnosis", patient_label="pain", control_label="control")
    text = write_group_report(tmp_path, settings_summary={}, group=group).read_text()
    assert "no <code>diagnosis</code> column" not in text and "no <code>group</code> column" not in text
    counts = text[text.index("Included participants") : text.index("Group means")]
    assert "pain" in counts and ">3<" in counts and "control" in counts and ">2<" in counts
    means = text[text.index("Group means") :]
    assert "42" in means and "31" in means  # age: pain 42 (2), control 31 (1.41)
    assert "<code>painvscontrol</code> is patients minus controls" in text and "CLBPvsHC" not in text
    summary = text[text.index("Summary of all maps") :]
    assert summary.index("painvscontrol") < summary.index(">age<")


# -- every flag a message names exists ---------------------------------------------------------------------------
# Options of the external tools the app writes commands for (not options of the app).
EXTERNAL_FLAGS = {
    "sbatch": {
        "--array",
        "--cpus-per-task",
        "--dependency",
        "--job-name",
        "--output",
        "--parsable",
        "--partition",
        "--wait",
    },
    "apptainer run": {"--cleanenv", "--containall", "--writable-tmpfs"},
    "docker run": {"--mount", "--network", "--read-only", "--rm", "--tmpfs", "--user"},
    "pip download": {"--no-deps"},
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]")


def flags_in_string_literals() -> dict[str, set[str]]:
    """Every ``--flag`` in a string literal (messages, help, docstrings) of the package -> the files naming it."""
    import ast

    import clbp_bidsapp

    found: dict[str, set[str]] = {}
    package = Path(clbp_bidsapp.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in FLAG.findall(node.value):
                    found.setdefault(flag, set()).add(str(path.relative_to(package)))
    return found


def test_every_flag_named_in_a_message_exists():
    options = {o for parser in all_parsers() for a in parser._actions for o in a.option_strings}
    external = set().union(*EXTERNAL_FLAGS.values())
    found = flags_in_string_literals()
    assert len(found) > 40  # the scan sees the messages
    unknown = {flag: sorted(files) for flag, files in found.items() if flag not in options | external}
    assert not unknown, f"messages name options that do not exist: {unknown}"


def test_slurm_wrapper_reads_label_files_too(tmp_path, capsys):
    listing = tmp_path / "clbp.txt"
    listing.write_text("# patients\nsub-01\r\n03\n")
    out = tmp_path / "out"
    try:
        slurm.main([str(tmp_path / "bids"), str(out), "--participant-label", str(listing), "sub-05"])
    except SystemExit as exited:
        assert not exited.code, capsys.readouterr().err
    assert (out / "logs" / "slurm" / "participants.txt").read_text() == "01\n03\n05\n"
