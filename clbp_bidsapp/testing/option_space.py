"""The command line's option space as hypothesis strategies, and the property every command line must satisfy.

Shared by tests/cli/test_option_space.py (a few hundred drawn command lines, in CI) and
benchmarks/sweep_options.py (the longer sweep). The options are read from the actions of the parser they pass in
(``cli.parser.build_parser()``; this package does not import ``cli``), so an option added to the parser is drawn
without touching this file: its values come from :data:`VALUES` when listed there, else from the kind of its
setting's :class:`~clbp_bidsapp.config.Check` (numbers: :data:`BY_KIND`, valid, boundary and wrong), else from
:data:`GENERIC`. Values mix valid ones, boundaries and mistakes a user makes.

The property (:func:`problems`): a command line exits 0 with its outputs, or exits with a documented code whose
stderr is one ``clbp-bidsapp: error:`` line per problem (or the per-participant summary), refused before any
heavy work; never a traceback, never an undocumented code, never a crash after the results are written.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from hypothesis import strategies as st

from clbp_bidsapp.config import Check, Settings
from clbp_bidsapp.errors import ExitCode
from clbp_bidsapp.stages import GROUP_STAGES, PARTICIPANT_STAGES

LEVELS = ("participant", "group")
# fast paths of the end-to-end runs on the tiny dataset; drawn options come after them and win
FAST_PARTICIPANT = ("--min-time", "20", "--no-band-pass", "--skip", "dc", "graph", "tsnr", "report",
                    "--seeds", "pcc", "mpfc", "--atlases", "harvardoxford")  # fmt: skip
FAST_GROUP = ("--covariates", "--n-permutations", "5", "--no-tfce", "--ml-splits", "2", "--ml-repeats", "1",
              "--ml-inner-splits", "2", "--ml-permutations", "0", "--ml-models", "linear_svm",
              "--ml-k-best", "0")  # fmt: skip
ERROR_PREFIX = "clbp-bidsapp: error: "

# Values of number settings: valid, boundary and wrong for every range a Check declares. "nan"/"inf" are what
# float() accepts and a user may type.
BY_KIND = {
    "int": ("0", "1", "2", "3", "-1", "1.5", "x"),
    "float": ("0", "0.01", "0.05", "0.5", "1", "1.5", "3", "-1", "x", "nan", "inf"),
}
# Values by destination, for options without a converter (placeholders: {bids}, {scratch}; see Paths).
VALUES: dict[str, tuple[str, ...]] = {
    "inputs.participant_label": ("01", "sub-02", "03", "07", "../x"),
    "inputs.session_id": ("1", "ses-a", "a/b"),
    "inputs.task_id": ("rest", "motor"),
    "inputs.task_pattern": ("rest", "res", "zzz", ""),
    "bids_filter_file": ("{scratch}/filter-ok.json", "{scratch}/filter-bad.json", "{scratch}/missing.json"),
    "inputs.space": ("MNI152NLin2009cAsym", "MNI152NLin2009cAsym:res-4", "MNI152NLin6Asym", "MNI:x", "a b"),
    "inputs.fmriprep_dir": ("{bids}/derivatives/fmriprep", "{scratch}/missing"),
    "execution.bids_database_dir": ("{scratch}/pybids-db",),
    "denoise.dummy_scans": ("auto", "0", "3", "-1", "x"),
    "denoise.strategy": ("24P", "36P", "acompcor", "none", "nosuch", "{scratch}/missing.yml"),
    "connectivity.seeds": ("pcc", "mpfc", "insulaAntR", "nosuchseed", "{scratch}/missing.tsv"),
    "connectivity.atlases": ("harvardoxford", "aal", "power264", "nosuchatlas"),
    "connectivity.networks": ("seitzman", "{scratch}/missing.nii.gz"),
    "group.group_column": ("group", "diagnosis", "age"),
    "group.patient_label": ("CLBP", "clbp", "HC"),
    "group.control_label": ("HC", "control", "CLBP"),
    "group.covariates": ("age", "sex", "mean_fd", "site", "n_runs", "nosuch"),
    "group.clinical_columns": ("pain_vas", "pain_duration_months", "age", "nosuch"),
    "group.networks": ("DefaultMode", "Salience", "Visual", "Nosuch"),
    "group.permute_within": ("site", "none", "sex", "nosuch"),
    "ml.atlas": ("harvardoxford", "aal", "nosuchatlas"),
    "ml.clinical_target": ("pain_vas", "age", "nosuch", ""),
    "execution.work_dir": ("{scratch}/work",),
    "plugin_args": ("{}", '{"n_procs": 1}', "[1]", "x"),
    "config_file": ("{scratch}/missing.toml", "{scratch}/not-toml.toml"),
    "execution.skip": tuple(dict.fromkeys([*PARTICIPANT_STAGES, *GROUP_STAGES, "nosuch"])),
}
GENERIC = ("0", "1", "-1", "x", "")  # an option nobody listed yet still gets these


@dataclass(frozen=True)
class Paths:
    """Where placeholders point: the BIDS dataset and a scratch folder holding the small files options name."""

    bids: Path
    scratch: Path

    def fill(self, value: str) -> str:
        return value.replace("{bids}", str(self.bids)).replace("{scratch}", str(self.scratch))


def write_scratch_files(scratch: Path) -> None:
    """The files that VALUES name: a valid and a malformed filter file, a file that is not TOML."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "filter-ok.json").write_text('{"bold": {"task": "rest"}}\n')
    (scratch / "filter-bad.json").write_text('{"bold": \n')
    (scratch / "not-toml.toml").write_text("this is = = not toml\n")


Checks = Mapping[str, Check]  # destination -> the Check of its setting (config.field_check)


def option_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every optional argument of the parser except --help and --version."""
    skip = (argparse._HelpAction, argparse._VersionAction)
    return [a for a in parser._actions if a.option_strings and not isinstance(a, skip)]


def setting_checks(parser: argparse.ArgumentParser) -> dict[str, Check]:
    """The Check of every setting an option of ``parser`` sets (options without a setting are left out)."""
    from clbp_bidsapp.config import field_check

    checks = {}
    for action in option_actions(parser):
        if "." in action.dest:
            try:
                checks[action.dest] = field_check(action.dest)
            except (AttributeError, StopIteration):
                continue
    return checks


def values_for(action: argparse.Action, checks: Checks) -> tuple[str, ...]:
    if action.choices is not None:
        return (*map(str, action.choices), "nosuch")
    if action.dest in VALUES:
        return VALUES[action.dest]
    check = checks.get(action.dest)
    if check is not None and check.kind in BY_KIND:
        return BY_KIND[check.kind]
    return GENERIC


def arguments(action: argparse.Action, paths: Paths, checks: Checks) -> st.SearchStrategy[list[str]]:
    """The words of one option on the command line (flag and values), drawn."""
    flag = st.sampled_from(action.option_strings)
    if action.nargs == 0:  # store_true / store_false / store_const / count
        times = st.integers(1, 2) if isinstance(action, argparse._CountAction) else st.just(1)
        return st.tuples(flag, times).map(lambda ft: [ft[0]] * ft[1])
    value = st.sampled_from(values_for(action, checks)).map(paths.fill)
    if action.nargs in (None, "?"):
        values = value.map(lambda v: [v])
    elif isinstance(action.nargs, int):
        values = st.lists(value, min_size=action.nargs, max_size=action.nargs)
    else:  # "*" (empty lists included: the documented way to turn a list off) or "+"
        values = st.lists(value, min_size=0 if action.nargs == "*" else 1, max_size=3)
    return st.tuples(flag, values).map(lambda fv: [fv[0], *fv[1]])


@st.composite
def option_words(
    draw, parser: argparse.ArgumentParser, checks: Checks, paths: Paths, *, max_options: int = 6
) -> list[str]:
    """A drawn set of options (any level's; those of the other level must be accepted and ignored)."""
    actions: Sequence[argparse.Action] = option_actions(parser)
    chosen = draw(st.lists(st.sampled_from(actions), max_size=max_options, unique_by=lambda a: a.dest))
    words: list[str] = []
    for action in chosen:
        words += draw(arguments(action, paths, checks))
    return words


# -- settings drawn field by field (for --config-file), including values the command line cannot give ----------

_FIELD_VALUES: dict[str, st.SearchStrategy] = {
    "execution.skip": st.lists(st.sampled_from(VALUES["execution.skip"][:-1]), max_size=3, unique=True),
    "group.clinical_columns": st.lists(st.sampled_from(VALUES["group.clinical_columns"]), max_size=2, unique=True),
    "group.covariates": st.lists(st.sampled_from(VALUES["group.covariates"][:-1]), max_size=2, unique=True),
    "connectivity.seeds": st.lists(st.sampled_from(VALUES["connectivity.seeds"][:3]), max_size=2, unique=True),
    "connectivity.atlases": st.lists(st.sampled_from(VALUES["connectivity.atlases"][:3]), max_size=2, unique=True),
}
_FIXED = {"bids_dir", "output_dir", "analysis_level", "work_dir", "bids_database_dir", "fmriprep_dir",
          "bids_filters", "plugin_args", "plugin", "nprocs", "omp_nthreads", "mem_gb"}  # fmt: skip


@st.composite
def config_overrides(draw, *, max_fields: int = 4) -> dict[str, dict]:
    """A few settings changed to drawn values (TOML-level: empty lists, 0, negatives), as a replace() mapping."""
    default = Settings()
    candidates = [
        (section.name, f.name)
        for section in fields(default)
        for f in fields(getattr(default, section.name))
        if f.name not in _FIXED
    ]
    chosen = draw(st.lists(st.sampled_from(candidates), max_size=max_fields, unique=True))
    overrides: dict[str, dict] = {}
    for section, name in chosen:
        current = getattr(getattr(default, section), name)
        strategy = _FIELD_VALUES.get(f"{section}.{name}")
        if strategy is None:
            strategy = _field_strategy(f"{section}.{name}", current)
        value = draw(strategy)
        overrides.setdefault(section, {})[name] = tuple(value) if isinstance(value, list) else value
    return overrides


def _field_strategy(key: str, current: object) -> st.SearchStrategy:
    """Values of one settings field by its type; text fields take the command line's values of that setting."""
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return st.sampled_from([0, 1, 2, -1])
    if isinstance(current, float) or (current is None and key in _OPTIONAL_NUMBERS):
        return st.sampled_from([0.0, 0.5, 1.0, -1.0, None] if current is None else [0.0, 0.5, 1.0, -1.0])
    if isinstance(current, tuple):
        return st.sampled_from([(), current[:1], current])
    text = [v for v in VALUES.get(key, ()) if "{" not in v]
    return st.sampled_from([current, *text]) if text else st.just(current)


_OPTIONAL_NUMBERS = {"denoise.dvars_thresh", "metrics.dc_resolution"}


# -- the property -------------------------------------------------------------------------------------------------

DOCUMENTED = {int(code) for code in ExitCode}
HEAVY_GROUP_OUTPUTS = ("*_statmap.nii.gz", "*_relmat.tsv", "desc-ml_*")


def refusal_problems(code: int, stderr: str) -> list[str]:
    """A refusal: documented code, one ``clbp-bidsapp: error:`` line per problem, no traceback."""
    problems = []
    if code not in DOCUMENTED:
        problems.append(f"exit code {code} is not documented (clbp_bidsapp/errors.py ExitCode)")
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        problems.append("refused without a message")
    odd = [line for line in lines if not line.startswith(ERROR_PREFIX)]
    if odd:
        problems.append(f"refusal has lines that are not one-line errors: {odd[:2]}")
    return problems


def problems(result: subprocess.CompletedProcess, *, level: str, output_dir: Path, heavy_before: int) -> list[str]:
    """What is wrong with one finished command line (empty: the property holds)."""
    code, err = result.returncode, result.stderr + result.stdout
    found = []
    if code not in DOCUMENTED:
        found.append(f"exit code {code} is not documented")
    if "Traceback" in err:
        found.append("traceback: " + err[err.index("Traceback") :][-300:].replace("\n", " | "))
    heavy_after = count_heavy(output_dir, level)
    if code == ExitCode.OK:
        found += [f"exit 0 without {name}" for name in expected_outputs(output_dir, level) if not name[1]]
    elif code == ExitCode.REPORT_FAILED:
        if "failed after the results were written" not in err:
            found.append("exit 5 without saying which late step failed")
    elif code in (ExitCode.USAGE, ExitCode.OUTPUT_NOT_WRITABLE):
        found += refusal_problems(code, result.stderr)
        if heavy_after > heavy_before:
            found.append(f"refused (exit {code}) after heavy work: {heavy_after - heavy_before} new result file(s)")
    elif code in (ExitCode.SOME_FAILED, ExitCode.NOTHING_PROCESSED):
        if level == "group" and heavy_after > heavy_before:
            found.append(f"group level stopped (exit {code}) after {heavy_after - heavy_before} result file(s)")
        if level == "participant" and "FAILED" not in err and ERROR_PREFIX not in err:
            found.append(f"exit {code} without naming what failed")
    return found


def count_heavy(output_dir: Path, level: str) -> int:
    """Result files of the heavy work: group statistics, or participant maps."""
    if not output_dir.is_dir():
        return 0
    if level == "group":
        return sum(len(list((output_dir / "group").glob(p))) for p in HEAVY_GROUP_OUTPUTS)
    return len(list(output_dir.glob("sub-*/**/*_boldmap.nii.gz")))


def expected_outputs(output_dir: Path, level: str) -> list[tuple[str, bool]]:
    """(name, present) of what a successful run writes at each level."""
    names = ["logs/manifest.json", "logs/CITATION.md", "dataset_description.json"]
    if level == "group":
        names.append("group/desc-design_participants.tsv")
    found = [(name, (output_dir / name).is_file()) for name in names]
    if level == "participant":
        found.append(("sub-*/ outputs", any(output_dir.glob("sub-*/**/*_qc.tsv"))))
    return found
