"""Paths the app writes, files it reads, settings it replays (issue 19): the real command line on a tiny dataset.

Never lose data: ``--clean-workdir`` removes only what the app created; the working folder, the pybids database
folder and the output folder are refused in the input (raw dataset outside ``derivatives/``, fMRIPrep
derivatives); the output folder may be ``BIDS_DIR/derivatives/<name>``. Relative user files are found from any
folder; config files are type- and range-checked. The table "What a user can get wrong" in docs/usage.md lists
each case with its test.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.integration import common
from tests.integration.common import run_app, with_min_dof

pytestmark = pytest.mark.integration

# the fastest complete participant run: one participant, unfiltered maps only
FAST = ("--participant-label", "01", "--min-time", "20", "--no-band-pass", "--skip", "tsnr", "reho", "vmhc", "dc",
        "seedfc", "connectome", "graph", "dualreg", "report")  # fmt: skip


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Every command-line call of this file goes through here."""
    return run_app(*with_min_dof(args), cwd=cwd)


def tree_digest(root: Path, *, skip: Path | None = None) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (except under ``skip``), and every folder and link by name."""
    digest = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        key = str(path.relative_to(root))
        if path.is_symlink():
            digest[key] = "link:" + str(path.readlink())
        elif path.is_file():
            digest[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[key] = "folder"
    return digest


def assert_user_error(result: subprocess.CompletedProcess, code: int, *fragments: str, max_lines: int = 1) -> None:
    """The shared check, with one line of message by default (each case here has one problem)."""
    common.assert_user_error(result, code, *fragments, max_lines=max_lines)


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert "ok      sub-01" in result.stderr, result.stderr


# -- 1. --clean-workdir deletes only what the app created ----------------------------------------------------------


def test_work_dir_on_the_dataset_is_refused_and_nothing_is_deleted(dataset, tmp_path):
    """Before: ``-w BIDS_DIR --clean-workdir`` deleted the whole raw + fMRIPrep dataset and exited 0."""
    before = tree_digest(dataset)
    result = cli(dataset, tmp_path / "out", "participant", *FAST, "-w", dataset, "--clean-workdir")
    assert_user_error(result, 2, f"--work-dir {dataset} is the input dataset", "the input is never written")
    assert tree_digest(dataset) == before
    assert not (tmp_path / "out").exists(), "nothing is written when the arguments are refused"


def test_clean_workdir_in_a_shared_folder_keeps_everything_else(dataset, tmp_path):
    """A shared scratch folder with another project's files (and a link to a folder outside it): the run uses
    ``<scratch>/clbp_wf`` and a marker file; --clean-workdir removes just those, the rest survives."""
    scratch = tmp_path / "scratch"
    (scratch / "other-project").mkdir(parents=True)
    (scratch / "other-project" / "results.txt").write_text("keep me")
    (scratch / "notes.txt").write_text("keep me too")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.txt").write_text("not yours")
    (scratch / "link").symlink_to(elsewhere)
    before = tree_digest(scratch)
    out = tmp_path / "out"

    kept = cli(dataset, out, "participant", *FAST, "-w", scratch)
    assert_succeeded(kept)
    assert (scratch / "clbp_wf" / "sub_01_wf").is_dir(), "the app's graph lives in <work>/clbp_wf"
    assert (scratch / ".clbp-bidsapp-work.json").is_file()

    cleaned = cli(dataset, out, "participant", *FAST, "-w", scratch, "--clean-workdir")
    assert_succeeded(cleaned)
    assert tree_digest(scratch) == before, "only the app's own folder and marker were removed"
    assert (elsewhere / "data.txt").read_text() == "not yours"


def test_clean_workdir_removes_the_default_work_folder(dataset, tmp_path):
    """The default OUTPUT_DIR/work is the app's own: after a clean it is gone, every output stays."""
    out = tmp_path / "out"
    result = cli(dataset, out, "participant", *FAST, "--clean-workdir")
    assert_succeeded(result)
    assert not (out / "work").exists()
    assert any((out / "sub-01" / "func").glob("*_stat-alff_boldmap.nii.gz"))


@pytest.mark.parametrize("where", ["output", "parent-of-output", "inside-output"])
def test_work_dir_on_the_output_folder_is_refused(where, dataset, tmp_path):
    out = tmp_path / "results" / "out"
    out.mkdir(parents=True)
    (out / "previous-result.txt").write_text("a result")
    work = {"output": out, "parent-of-output": out.parent, "inside-output": out / "scratch"}[where]
    text = {"output": "is the output folder", "parent-of-output": "holds the output folder",
            "inside-output": "is inside the output folder"}[where]  # fmt: skip
    result = cli(dataset, out, "participant", *FAST, "-w", work, "--clean-workdir")
    assert_user_error(result, 2, f"--work-dir {work} {text}", "use OUTPUT_DIR/work (the default)")
    assert sorted(p.name for p in out.iterdir()) == ["previous-result.txt"]


# -- 2. nothing is written into the input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "where", "text"),
    [
        ("-w", "code/work", "is inside the input dataset"),
        ("-w", "derivatives/fmriprep/work", "is inside the input dataset"),
        ("-w", "", "is the input dataset"),
        ("--bids-database-dir", "code/db", "is inside the input dataset"),
        ("--bids-database-dir", "derivatives/fmriprep/.db", "is inside the input dataset"),
    ],
)
def test_folders_inside_the_input_are_refused(option, where, text, dataset, tmp_path):
    """Before: -w and --bids-database-dir inside the input were accepted and written to."""
    folder = dataset / where if where else dataset
    before = tree_digest(dataset)
    result = cli(dataset, tmp_path / "out", "participant", *FAST, option, folder)
    flag = "--work-dir" if option == "-w" else option
    assert_user_error(result, 2, f"{flag} {folder} {text}", "the input is never written")
    assert tree_digest(dataset) == before


@pytest.mark.parametrize("option", ["-w", "--bids-database-dir"])
def test_a_file_where_a_folder_is_needed(option, dataset, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep")
    result = cli(dataset, tmp_path / "out", "participant", *FAST, option, blocker)
    flag = "--work-dir" if option == "-w" else option
    assert_user_error(result, 2, f"{flag} {blocker} is a file, not a folder")
    assert blocker.read_text() == "keep"


# -- 3. BIDS_DIR/derivatives/<name> is a good output folder ----------------------------------------------------------


def test_output_in_the_datasets_derivatives_folder(dataset):
    """Where BIDS, fMRIPrep and XCP-D put derivatives: allowed (it was refused with exit 4). The raw and fMRIPrep
    files are unchanged, and a second run finds the same single run (the outputs are not indexed as inputs)."""
    out = dataset / "derivatives" / "clbp"
    before = tree_digest(dataset)
    first = cli(dataset, out, "participant", *FAST)
    assert_succeeded(first)
    assert "found 1 resting-state run(s) of 1 participant(s)" in first.stderr
    assert tree_digest(dataset, skip=out) == before
    maps = sorted(p.name for p in (out / "sub-01" / "func").glob("*_boldmap.nii.gz"))
    assert maps, first.stderr

    second = cli(dataset, out, "participant", *FAST)
    assert_succeeded(second)
    assert "found 1 resting-state run(s) of 1 participant(s)" in second.stderr
    assert sorted(p.name for p in (out / "sub-01" / "func").glob("*_boldmap.nii.gz")) == maps
    assert tree_digest(dataset, skip=out) == before


@pytest.mark.parametrize(
    ("where", "text"),
    [("sub-01/clbp", "is inside the input dataset"), ("derivatives", "is inside the input dataset"),
     ("derivatives/fmriprep/clbp", "is inside the input dataset")],
)  # fmt: skip
def test_output_in_the_raw_part_or_in_fmriprep_is_refused(where, text, dataset):
    before = tree_digest(dataset)
    result = cli(dataset, dataset / where, "participant")
    assert_user_error(result, 4, f"output folder {dataset / where} {text}", "BIDS_DIR/derivatives/<name>")
    assert tree_digest(dataset) == before


# -- relative paths, config files, labels ----------------------------------------------------------------------------


def test_relative_user_files_are_found_from_the_graph(dataset, tmp_path):
    """A strategy file given by a relative name: before, the check passed and the denoising node (which runs in
    its own folder) failed with "no such file"."""
    from clbp_bidsapp.io.strategies import _bundled

    here = tmp_path / "study"
    here.mkdir()
    (here / "my_strategy.yml").write_text(_bundled()["24P"].replace("name: 24P", "name: my24P"))
    out = tmp_path / "out"
    result = cli(dataset, out, "participant", *FAST, "--strategy", "my_strategy.yml", cwd=here)
    assert_succeeded(result)
    config = next((out / "logs").glob("config-*.toml")).read_text()
    assert f'strategy = "{here / "my_strategy.yml"}"' in config, "the saved config replays from anywhere"


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


CONFIG_CASES = {
    "label-string": ('[inputs]\nparticipant_label = "01"\n',
                     "[inputs] participant_label: expected a list of texts, each a BIDS label (letters and digits), "
                     "got '01'"),
    "nprocs-text": ('[execution]\nnprocs = "two"\n', "[execution] nprocs: expected an integer >= 1, got 'two'"),
    "ml-permutations-negative": ("[ml]\nn_permutations = -5\n",
                                 "[ml] n_permutations: expected an integer >= 0, got -5"),
    "cluster-p-7": ("[group]\ncluster_forming_p = 7\n",
                    "[group] cluster_forming_p: expected a number in (0, 1), got 7"),
    "fd-negative": ("[denoise]\nfd_thresh = -1\n", "[denoise] fd_thresh: expected a number >= 0, got -1"),
    "reho-8": ("[metrics]\nreho_neighbourhood = 8\n", "[metrics] reho_neighbourhood: expected one of 7, 19, 27, got 8"),
    "band-reversed": ("[denoise]\nband_pass = [0.1, 0.01]\n", "[denoise] band_pass [0.1, 0.01]: need LOW < HIGH"),
    "flag-true-for-number": ("[execution]\nomp_nthreads = true\n", "[execution] omp_nthreads: expected an integer"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_file_values_are_checked(case, dataset, tmp_path):
    """A replayed --config-file skipped every check: a string became two labels, "two" processes failed inside
    every participant, out-of-range values ran."""
    text, message = CONFIG_CASES[case]
    config = _config(tmp_path, text)
    result = cli(dataset, tmp_path / "out", "participant", "--config-file", config)
    assert_user_error(result, 2, f"--config-file {config}: {message}")
    assert not (tmp_path / "out").exists()


def test_every_config_problem_is_listed_at_once(dataset, tmp_path):
    config = _config(tmp_path, '[execution]\nnprocs = "two"\n[denoise]\nfd_thresh = -1\n[ml]\nn_permutations = -5\n')
    result = cli(dataset, tmp_path / "out", "participant", "--config-file", config)
    fragments = [CONFIG_CASES[case][1] for case in ("nprocs-text", "fd-negative", "ml-permutations-negative")]
    assert_user_error(result, 2, *fragments, max_lines=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ml-permutations", "many"], "--ml-permutations: expected an integer >= 0, got 'many'"),
        (["--ml-permutations", "-5"], "--ml-permutations: expected an integer >= 0, got -5"),
        (["--reho-neighbourhood", "8"], "--reho-neighbourhood: expected one of 7, 19, 27, got 8"),
        (["--cluster-forming-p", "7"], "--cluster-forming-p: expected a number in (0, 1), got 7"),
        (["--n-cpus", "0"], "--nprocs: expected an integer >= 1, got 0"),
    ],
)
def test_flag_messages_name_the_real_flag(args, message, dataset, tmp_path):
    """Before: ``--ml-permutations many`` printed ``--n-permutations: expected an integer``, another real flag."""
    result = cli(dataset, tmp_path / "out", "participant", *args)
    assert_user_error(result, 2, message)


def test_label_with_an_invisible_character_is_shown(dataset, tmp_path):
    """A label list saved on Windows ends in '\\r': the message shows it instead of an invisible character."""
    result = cli(dataset, tmp_path / "out", "participant", "--participant-label", "01\r")
    assert_user_error(result, 2, r"'sub-01\r' is not a valid BIDS label")
