"""The option space of both levels (issue #20): every drawn command line works or is refused before the work.

Most drawn command lines are checked in-process up to the end of validation (``cli.run.parse_settings``): a
refusal is a documented exit code with one ``clbp-bidsapp: error:`` line per problem; an accepted command line
gives settings whose late steps work (the methods text and citation files render, the saved config replays to
the same settings). A handful run end to end on a tiny dataset (2 + 2 participants, 4 mm, 30 volumes) and must
satisfy :func:`clbp_bidsapp.testing.option_space.problems`. The longer sweep is benchmarks/sweep_options.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clbp_bidsapp.cli.parser import build_parser
from clbp_bidsapp.cli.run import parse_settings
from clbp_bidsapp.config import Settings
from clbp_bidsapp.errors import ExitCode, UserError
from clbp_bidsapp.reports.methods import group_methods, participant_methods, write_citation_files
from clbp_bidsapp.testing import option_space
from clbp_bidsapp.testing.option_space import ERROR_PREFIX, FAST_GROUP, FAST_PARTICIPANT, LEVELS, Paths

pytestmark = pytest.mark.integration

PARTICIPANT_EXTRA: tuple[str, ...] = ("--min-dof", "0")  # tiny runs, not about the DOF rule
VALIDATION = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
END_TO_END = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip


def command(bids: Path, out: Path, level: str, *options: str, extra: bool = True) -> list[str]:
    """The argument list of every call in this file (in-process and subprocess); ``extra=False``: exactly the
    options given (a replayed config file must not be overridden by PARTICIPANT_EXTRA)."""
    extra = PARTICIPANT_EXTRA if level == "participant" and extra else ()
    return [str(bids), str(out), level, *extra, *map(str, options)]


def cli(bids: Path, out: Path, level: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", *command(bids, out, level, *options)],
        capture_output=True,
        text=True,
        timeout=900,
    )


def validate(bids: Path, out: Path, level: str, *options: str, extra: bool = True) -> tuple[int, str, Settings | None]:
    """parse_settings in-process: (exit code, stderr, settings or None). Any other exception is a defect."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            found, _ = parse_settings(command(bids, out, level, *options, extra=extra))
        except UserError as exc:
            return int(exc.exit_code), err.getvalue() + ERROR_PREFIX + str(exc) + "\n", None
    return 0, err.getvalue(), found


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The tiny dataset, its participant-level outputs, and a scratch folder for the files options name.

    The participant level runs with logs/CITATION.md made a folder, so its methods-text step fails after every
    map is written: the run must say so on one line, exit 5, and still write the manifest of its results.
    """
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("space")
    info = make_dataset(root / "bids", n_patients=2, n_controls=2, voxel_size=4, n_volumes=30, tr=2.0, seed=7)
    scratch = root / "scratch"
    option_space.write_scratch_files(scratch)
    processed = root / "processed"
    (processed / "logs" / "CITATION.md").mkdir(parents=True)
    result = cli(info.root, processed, "participant", *FAST_PARTICIPANT, "-w", root / "work")
    (processed / "logs" / "CITATION.md").rmdir()
    return {"bids": info.root, "processed": processed, "scratch": scratch, "participant_result": result}


def paths_of(space) -> Paths:
    return Paths(bids=space["bids"], scratch=space["scratch"])


def drawn_options(space, max_options: int = 6):
    """Options of both levels, drawn from the parser's own actions."""
    return option_space.option_words(build_parser(), CHECKS, paths_of(space), max_options=max_options)


def fresh(space) -> Path:
    return space["scratch"] / f"out-{uuid.uuid4().hex[:8]}"


def output_for(space, level: str) -> Path:
    """Group validation reads the participant outputs (QC columns); participant validation gets a new folder."""
    return space["processed"] if level == "group" else fresh(space)


def same_settings(a: Settings, b: Settings) -> bool:
    """Equal, with NaN equal to NaN (a float option accepts 'nan')."""

    def plain(s: Settings):
        return json.loads(json.dumps(s.to_dict(), default=str).replace("NaN", '"nan"'))

    return plain(a) == plain(b)


def check_accepted(found: Settings, space, level: str) -> None:
    """An accepted command line: the late steps that depend only on the settings work, and it replays."""
    text = participant_methods(found) if level == "participant" else group_methods(found)
    assert text and "[@" in text
    logs_of = fresh(space)
    md, bib = write_citation_files(logs_of, found, level=level)
    assert md.read_text().count("## References") == 1 and bib.is_file()
    replay = space["scratch"] / f"replay-{uuid.uuid4().hex[:8]}.toml"
    replay.write_text(found.to_toml())
    code, err, again = validate(
        found.execution.bids_dir, found.execution.output_dir, level, "--config-file", replay, extra=False
    )
    assert code == 0, err
    assert same_settings(found, again)


def check_refused(code: int, err: str, out: Path, existed: bool) -> None:
    assert not option_space.refusal_problems(code, err), (code, err)
    assert code in (ExitCode.USAGE, ExitCode.OUTPUT_NOT_WRITABLE), (code, err)
    if not existed and code == ExitCode.USAGE:
        assert not out.exists(), f"refused arguments left {out} behind"


# -- in-process: every drawn command line up to the end of validation -----------------------------------------------


@VALIDATION
@given(data=st.data(), level=st.sampled_from(LEVELS))
def test_drawn_command_lines_are_accepted_whole_or_refused_in_one_line_each(space, data, level):
    words = data.draw(drawn_options(space), label="options")
    out = output_for(space, level)
    existed = out.exists()
    code, err, found = validate(space["bids"], out, level, *words)
    event(f"{level}: exit {code}")
    if found is None:
        check_refused(code, err, out, existed)
    else:
        assert "Traceback" not in err
        check_accepted(found, space, level)


@VALIDATION
@given(overrides=option_space.config_overrides(), level=st.sampled_from(LEVELS))
def test_config_files_written_from_drawn_settings(space, overrides, level):
    """Settings the command line cannot give (empty lists, 0, negatives) arrive through a --config-file."""
    drawn = Settings().replace(overrides)
    config = space["scratch"] / f"config-{uuid.uuid4().hex[:8]}.toml"
    config.write_text(drawn.to_toml())
    out = output_for(space, level)
    existed = out.exists()
    code, err, found = validate(space["bids"], out, level, "--config-file", config)
    event(f"{level}: exit {code}")
    if found is None:
        check_refused(code, err, out, existed)
    else:
        check_accepted(found, space, level)


def test_every_option_of_the_parser_is_drawn(space):
    """The draw walks build_parser(): a new option is in the space without editing the test."""
    seen: set[str] = set()

    @settings(max_examples=1000, derandomize=True, database=None)
    @given(words=drawn_options(space))
    def collect(words):
        seen.update(w for w in words if w.startswith("-"))

    collect()
    actions = option_space.option_actions(build_parser())
    missing = [a.option_strings[0] for a in actions if not seen & set(a.option_strings)]
    assert not missing, f"options never drawn: {missing}"


# -- end to end: a handful of drawn group-level command lines on the participant outputs ---------------------------


@END_TO_END
@given(data=st.data())
def test_drawn_group_runs_finish_or_stop_before_the_work(space, data):
    words = data.draw(drawn_options(space, 4), label="options")
    out = fresh(space)
    shutil.copytree(space["processed"], out, ignore=shutil.ignore_patterns("work"))
    before = option_space.count_heavy(out, "group")
    result = cli(space["bids"], out, "group", *FAST_GROUP, *words)
    assert not option_space.problems(result, level="group", output_dir=out, heavy_before=before), result.stderr
    shutil.rmtree(out)


# -- the cases the property found, one regression test each -------------------------------------------------------


def test_participant_level_late_step_failure_exits_5_with_results_kept(space):
    result = space["participant_result"]
    processed = space["processed"]
    assert result.returncode == ExitCode.REPORT_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(failed) == 1 and "the methods text (logs/CITATION.md) failed after the results were written" in failed[0]
    assert "finished: 4 participant(s) succeeded, 0 failed" in result.stderr
    recorded = json.loads((processed / "logs" / "manifest.json").read_text())["Outputs"]
    maps = sorted(str(p.relative_to(processed)) for p in processed.glob("sub-*/func/*_boldmap.nii.gz"))
    assert maps and set(maps) <= set(recorded)  # the late failure did not stop the manifest of the results


def test_empty_clinical_columns_run_the_group_level_to_the_end(space):
    """Issue #20: `--clinical-columns` (empty: no clinical correlations) died in the methods text with exit 1."""
    out = fresh(space)
    shutil.copytree(space["processed"], out, ignore=shutil.ignore_patterns("work"))
    result = cli(space["bids"], out, "group", *FAST_GROUP, "--clinical-columns")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert any((out / "group").glob("alff_contrast-CLBPvsHC_stat-t_statmap.nii.gz"))
    assert not any((out / "group").glob("*_contrast-pain_vas_*"))  # no clinical correlation was run
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "CLBP and HC participants were compared" in methods and "correlated with" not in methods
    assert (
        "group/alff_contrast-CLBPvsHC_stat-t_statmap.nii.gz"
        in json.loads((out / "logs" / "manifest.json").read_text())["Outputs"]
    )


def test_group_level_late_step_failure_exits_5_with_results_kept(space):
    out = fresh(space)
    shutil.copytree(space["processed"], out, ignore=shutil.ignore_patterns("work"))
    (out / "group.html").mkdir()  # the report cannot be written there; every result before it is
    result = cli(space["bids"], out, "group", *FAST_GROUP, "--skip", "connectome", "ml")
    assert result.returncode == ExitCode.REPORT_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(failed) == 1 and failed[0].startswith(f"{ERROR_PREFIX}the group report failed after the results")
    assert str(out / "group") in failed[0]
    assert (out / "logs" / "CITATION.md").is_file()  # the steps after the failed one still ran
    recorded = json.loads((out / "logs" / "manifest.json").read_text())["Outputs"]
    assert "group/alff_contrast-CLBPvsHC_stat-t_statmap.nii.gz" in recorded


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (("--clinical-columns", "pain_vs"), "--clinical-columns: column(s) pain_vs not in"),
        (("--covariates", "age", "mean_fdd"), "--covariates: column(s) mean_fdd not in"),
        (("--patient-label", "clbp"), "--patient-label clbp: no participant has group=clbp in"),
        (("--control-label", "CLBP"), "--patient-label and --control-label are both CLBP"),
        (("--ml-target", "vas"), "--ml-target: column(s) vas not in"),
    ],
    ids=["clinical-column", "covariate", "patient-label", "same-labels", "ml-target"],
)
def test_what_the_late_steps_need_is_checked_with_the_arguments(space, options, fragment):
    out = fresh(space)
    shutil.copytree(space["processed"], out, ignore=shutil.ignore_patterns("work"))
    code, err, found = validate(space["bids"], out, "group", *options)
    assert found is None and code == ExitCode.USAGE, err
    assert fragment in err and len(err.splitlines()) == 1
    if "both" not in fragment:
        assert str(space["bids"] / "participants.tsv") in err  # names the table that lacks the column or label
    assert not (out / "group").exists()


def test_default_columns_stay_used_when_present(space):
    """Defaults keep their meaning: pain_duration_months may be absent, the default labels are a data question."""
    code, err, found = validate(space["bids"], space["processed"], "group")
    assert code == 0 and found is not None, err
    code, err, found = validate(space["bids"], space["processed"], "group", "--clinical-columns", "age")
    assert code == 0 and found.group.clinical_columns == ("age",), err


@pytest.mark.parametrize("option", ["--fd-thresh", "--dc-threshold", "--smoothing-fwhm", "--min-time", "--mem-gb"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused(space, option, value):
    """float() accepts 'nan' and 'inf': --fd-thresh nan censored nothing and --dc-threshold nan gave empty maps."""
    out = fresh(space)
    code, err, found = validate(space["bids"], out, "participant", option, value)
    assert found is None and code == ExitCode.USAGE, err
    assert err.startswith(f"{ERROR_PREFIX}{option}: expected a number") and err.endswith(f", got {value}\n"), err
    assert not out.exists()


def test_a_negative_random_seed_is_refused(space):
    """Found by benchmarks/sweep_options.py (seed 2): `--random-seed -1` was accepted, then the group level died
    in its first permutation test with numpy's `ValueError: expected non-negative integer` and a traceback."""
    out = fresh(space)
    code, err, found = validate(space["bids"], out, "group", "--random-seed", "-1")
    assert found is None and code == ExitCode.USAGE, err
    assert err == f"{ERROR_PREFIX}--random-seed: expected an integer in [0, 4294967295], got -1\n"
    assert validate(space["bids"], out, "group", "--random-seed", "0")[2].execution.random_seed == 0


CHECKS = option_space.setting_checks(build_parser())


def _refused_value(dest: str) -> object | None:
    """A boundary value (0 or -1) that the setting's Check refuses for ``dest``, as a settings value."""
    check = CHECKS[dest]
    section, key = dest.split(".")
    current = getattr(getattr(Settings(), section), key)
    if check.kind not in ("int", "float"):
        return None
    for number in (0, -1):
        value = tuple([number] * len(current)) if isinstance(current, tuple) else number
        if check.problem(value) is not None:
            return value
    return None


@pytest.mark.parametrize("dest", [d for d in CHECKS if _refused_value(d) is not None])
def test_a_value_refused_on_the_command_line_is_refused_in_a_config_file(space, dest):
    section, key = dest.split(".")
    value = _refused_value(dest)
    config = space["scratch"] / f"config-{uuid.uuid4().hex[:8]}.toml"
    config.write_text(Settings().replace({section: {key: value}}).to_toml())
    code, _, found = validate(space["bids"], fresh(space), "participant", "--config-file", config)
    assert found is None and code == ExitCode.USAGE, f"{dest} = {value!r} accepted from a config file"
