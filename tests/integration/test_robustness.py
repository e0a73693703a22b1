"""What a user can get wrong: each mistake gives a short message naming the file or participant, a documented
exit code, no traceback, and leaves the input dataset untouched.

Every case runs the real command line on a copy of a tiny synthetic dataset (2 participants, 30 volumes, 4 mm).
Most cases stop before any graph runs; the few found while loading the BOLD run stop at the first graph node.
The table in docs/usage.md ("What a user can get wrong") lists each case with its test.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from tests.integration.common import assert_user_error, run_app, tree_digest, with_min_dof

pytestmark = pytest.mark.integration

LABEL = "01"  # the participant whose data each case breaks


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return run_app(*with_min_dof(args))


def func_file(root: Path, pattern: str, label: str = LABEL) -> Path:
    return next((root / "derivatives" / "fmriprep" / f"sub-{label}" / "func").glob(pattern))


def bold_of(root: Path) -> Path:
    return func_file(root, "*desc-preproc_bold.nii.gz")


def mask_of(root: Path) -> Path:
    return func_file(root, "*desc-brain_mask.nii.gz")


def confounds_of(root: Path) -> Path:
    return func_file(root, "*desc-confounds_timeseries.tsv")


# -- ways to break a dataset (each returns the name the message must mention) ----------------------------------


def _rewrite_bold(root: Path, change: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> str:
    path = bold_of(root)
    img = nb.load(path)
    mask = np.asanyarray(nb.load(mask_of(root)).dataobj) > 0
    data = change(np.asanyarray(img.dataobj).astype(np.float32), mask)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    nb.save(nb.Nifti1Image(data, img.affine, header), path)
    return path.name


def _poke(value: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def change(data, mask):
        i, j, k = np.argwhere(mask)[len(np.argwhere(mask)) // 2]
        data[i, j, k, 7] = value
        return data

    return change


def bold_3d(root: Path) -> str:
    path = bold_of(root)
    img = nb.load(path)
    nb.save(nb.Nifti1Image(np.asanyarray(img.dataobj)[..., 0], img.affine), path)
    return path.name


def _sidecar(root: Path) -> Path:
    bold = bold_of(root)
    return bold.with_name(bold.name.replace(".nii.gz", ".json"))


def _set_tr(value) -> Callable[[Path], str]:
    def change(root: Path) -> str:
        sidecar = _sidecar(root)
        meta = json.loads(sidecar.read_text())
        if value is None:
            del meta["RepetitionTime"]
        else:
            meta["RepetitionTime"] = value
        sidecar.write_text(json.dumps(meta))
        return bold_of(root).name

    return change


def mask_shape(root: Path) -> str:
    path = mask_of(root)
    img = nb.load(path)
    nb.save(nb.Nifti1Image(np.asanyarray(img.dataobj)[:-1], img.affine, img.header), path)
    return path.name


def mask_affine(root: Path) -> str:
    path = mask_of(root)
    img = nb.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 4.0  # one voxel to the side
    nb.save(nb.Nifti1Image(np.asanyarray(img.dataobj), affine), path)
    return path.name


def no_rest(root: Path) -> str:
    for path in list(bold_of(root).parent.iterdir()):
        path.rename(path.with_name(path.name.replace("task-rest", "task-motor")))
    return "task 'motor' is not resting state"


def no_confounds(root: Path) -> str:
    confounds_of(root).unlink()
    return "desc-confounds_timeseries.tsv, found 0"


def _edit_confounds(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], str]:
    def edit(root: Path) -> str:
        path = confounds_of(root)
        table = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)
        change(table).to_csv(path, sep="\t", index=False, na_rep="n/a")
        return path.name

    return edit


def _text_in_confounds(table: pd.DataFrame) -> pd.DataFrame:
    table = table.astype({"rot_y": object})
    table.loc[4, "rot_y"] = "oops"
    return table


def truncated(path_of: Callable[[Path], Path]) -> Callable[[Path], str]:
    def cut(root: Path) -> str:
        path = path_of(root)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])  # header readable, data not
        return path.name

    return cut


def not_nifti(root: Path) -> str:
    path = bold_of(root)
    path.write_bytes(b"this is not a NIfTI file")
    return path.name


# case id -> (break the dataset, extra arguments, exit code, text the message must contain besides the file)
PARTICIPANT_CASES = {
    "no-resting-state-run": (no_rest, [], 3, "no usable resting-state run"),
    "bold-is-3d": (bold_3d, [], 3, "a BOLD run must be 4-D"),
    "tr-missing": (_set_tr(None), [], 3, "RepetitionTime missing from its JSON sidecar"),
    "tr-zero": (_set_tr(0), [], 3, "RepetitionTime must be > 0 seconds"),
    "tr-not-a-number": (_set_tr("two"), [], 3, "RepetitionTime 'two' is not a number"),
    "tr-disagrees-with-header": (_set_tr(3.0), [], 3, "disagrees with 2.0 s in the NIfTI header"),
    "mask-shape-differs": (mask_shape, [], 3, "does not match the BOLD grid"),
    "mask-affine-differs": (mask_affine, [], 3, "mask affine differs from the BOLD affine"),
    "confounds-missing": (no_confounds, [], 3, "sub-01_task-rest"),
    "confounds-column-missing": (
        _edit_confounds(lambda t: t.drop(columns=["trans_x"])),
        [],
        3,
        "missing confound column(s): trans_x",
    ),
    "confounds-fd-missing": (
        _edit_confounds(lambda t: t.drop(columns=["framewise_displacement"])),
        [],
        3,
        "FD censoring needs the framewise_displacement column",
    ),
    "confounds-not-numbers": (_edit_confounds(_text_in_confounds), [], 3, "column rot_y holds 'oops' on line 6"),
    "confounds-rows-differ": (
        _edit_confounds(lambda t: t.iloc[:-3]),
        [],
        3,
        "27 rows but the BOLD run has 30 volumes",
    ),
    "bold-has-nan": (lambda r: _rewrite_bold(r, _poke(np.nan)), [], 3, "contain NaN or Inf"),
    "bold-has-inf": (lambda r: _rewrite_bold(r, _poke(np.inf)), [], 3, "contain NaN or Inf"),
    "bold-all-zero": (lambda r: _rewrite_bold(r, lambda d, m: np.zeros_like(d)), [], 3, "every in-mask value is zero"),
    "bold-not-nifti": (not_nifti, [], 3, "cannot be read as NIfTI"),
    "bold-truncated": (truncated(bold_of), [], 3, "is truncated or corrupt"),
    "mask-truncated": (truncated(mask_of), [], 3, "re-run fMRIPrep"),
}


@pytest.mark.parametrize("case", sorted(PARTICIPANT_CASES))
def test_broken_participant_data(case, dataset, tmp_path):
    """The broken participant fails with a reason naming its file; nothing is processed (exit 3)."""
    breaker, extra, code, text = PARTICIPANT_CASES[case]
    named = breaker(dataset)
    before = tree_digest(dataset)
    # --min-time 20: the 60 s runs are otherwise (rightly) too short; the breakage must be what stops them.
    # --no-band-pass: 30 volumes with censoring are too few to band-pass, which the plan reports before any load
    result = cli(dataset, tmp_path / "out", "participant", "--participant-label", LABEL, "--min-time", "20",
                 "--no-band-pass", "-w", tmp_path / "work", *extra)  # fmt: skip
    assert_user_error(result, code, f"FAILED  sub-{LABEL}", named, text)
    assert tree_digest(dataset) == before, "the input dataset was written"


def test_too_little_data_after_censoring(dataset, tmp_path):
    """60 s of data is less than the default --min-time of 120 s: the run is recorded in its QC table, not analysed."""
    before = tree_digest(dataset)
    out = tmp_path / "out"
    result = cli(dataset, out, "participant", "--participant-label", LABEL, "-w", tmp_path / "work")
    assert_user_error(result, 3, f"FAILED  sub-{LABEL}", "sub-01_task-rest", "less than --min-time 120 s")
    qc = pd.read_csv(out / f"sub-{LABEL}" / "func" / f"sub-{LABEL}_task-rest_desc-denoising_qc.tsv", sep="\t")
    assert not bool(qc["used"].iloc[0]) and qc["retained_seconds"].iloc[0] < 120
    assert tree_digest(dataset) == before


# -- the command line and the folders ---------------------------------------------------------------------------


def _plain_folder(root: Path) -> Path:
    plain = root.parent / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a BIDS dataset\n")
    return plain


def _no_description(root: Path) -> Path:
    (root / "dataset_description.json").unlink()
    return root


@pytest.mark.parametrize(
    ("make_input", "text"),
    [
        (_plain_folder, "dataset_description.json not found"),
        (_no_description, "dataset_description.json not found"),
    ],
    ids=["not-a-bids-folder", "no-dataset-description"],
)
def test_input_is_not_a_bids_dataset(make_input, text, dataset, tmp_path):
    bids_dir = make_input(dataset)
    before = tree_digest(bids_dir)
    result = cli(bids_dir, tmp_path / "out", "participant")
    assert_user_error(result, 2, text, str(bids_dir), "point BIDS_DIR at the dataset root")
    assert tree_digest(bids_dir) == before
    assert not (tmp_path / "out").exists(), "nothing is written when the arguments are refused"


def test_output_inside_the_input_is_refused(dataset):
    """In the raw part of the dataset (BIDS_DIR/derivatives/<name> is allowed: see test_robustness_paths.py)."""
    before = tree_digest(dataset)
    result = cli(dataset, dataset / "code" / "clbp", "participant")
    assert_user_error(result, 4, "is inside the input dataset", str(dataset), "choose a folder outside it")
    assert tree_digest(dataset) == before
    assert not (dataset / "code" / "clbp").exists()


def _mounted(target: Path, options: str) -> bool:
    """Mount a tmpfs at ``target`` (tests run as root in CI); False where mounting is not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def _unmount(target: Path) -> None:
    subprocess.run(["umount", str(target)], capture_output=True)


def test_unwritable_output_folder_under_a_file(dataset, tmp_path):
    """A path below a regular file cannot be created by anyone, root included (chmod does not stop root)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = cli(dataset, blocker / "out", "participant")
    assert_user_error(result, 4, "cannot write to output folder", str(blocker / "out"), "choose another")


def test_unwritable_output_folder_read_only_mount(dataset, tmp_path):
    """A read-only file system refuses root too: the output folder check says so before anything runs."""
    target = tmp_path / "ro"
    if not _mounted(target, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        result = cli(dataset, target / "out", "participant")
    finally:
        _unmount(target)
    assert_user_error(result, 4, "cannot write to output folder", str(target / "out"), "Read-only file system")


def test_participant_label_not_in_the_dataset(dataset, tmp_path):
    before = tree_digest(dataset)
    result = cli(dataset, tmp_path / "out", "participant", "--participant-label", "07", "-w", tmp_path / "work")
    assert_user_error(result, 3, "FAILED  sub-07: not found in", "(available: 01, 02)")
    assert tree_digest(dataset) == before


@pytest.mark.parametrize("label", ["../x", "sub-01/../02", "01 02"])
def test_participant_label_with_path_characters_is_refused(label, dataset, tmp_path):
    result = cli(dataset, tmp_path / "out", "participant", "--participant-label", label)
    assert_user_error(result, 2, "is not a valid BIDS label (letters and digits only)")
    assert not (tmp_path / "out").exists()


def _seed_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_seeds.tsv"
    path.write_text(text)
    return path


SETTINGS_CASES = {
    "unknown-atlas": (lambda t: ["--atlases", "nosuchatlas"], "atlas nosuchatlas: no such file"),
    "unknown-seed": (lambda t: ["--seeds", "pcc", "nosuchseed"], "'nosuchseed' is neither a seed of the library"),
    "seeds-tsv-missing-columns": (
        lambda t: ["--seeds", _seed_file(t, "name\tx\ty\nfoo\t1\t2\n")],
        "my_seeds.tsv: missing column(s) z, radius",
    ),
    "seeds-tsv-not-numbers": (
        lambda t: ["--seeds", _seed_file(t, "name\tx\ty\tz\tradius\nfoo\t1\tabc\t3\t6\n")],
        "my_seeds.tsv: line 2 (seed 'foo'): x, y, z and radius must be numbers",
    ),
    "seeds-tsv-zero-radius": (
        lambda t: ["--seeds", _seed_file(t, "name\tx\ty\tz\tradius\nfoo\t1\t2\t3\t0\n")],
        "my_seeds.tsv: line 2 (seed 'foo'): coordinates must be finite and radius > 0 mm",
    ),
    "filter-file-not-json": (
        lambda t: ["--bids-filter-file", _write(t / "filters.json", '{"bold": {"acquisition": ')],
        "filters.json is not valid JSON",
    ),
    "filter-file-unknown-query": (
        lambda t: ["--bids-filter-file", _write(t / "filters.json", '{"bolt": {"acquisition": "mb4"}}')],
        "filters.json: unknown query name(s) bolt",
    ),
    "filter-file-missing": (
        lambda t: ["--bids-filter-file", t / "filters.json"],
        "filters.json does not exist",
    ),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(SETTINGS_CASES))
def test_bad_settings_are_refused_before_anything_runs(case, dataset, tmp_path):
    make_args, text = SETTINGS_CASES[case]
    before = tree_digest(dataset)
    result = cli(dataset, tmp_path / "out", "participant", *make_args(tmp_path))
    assert_user_error(result, 2, text, max_lines=1)
    assert tree_digest(dataset) == before
    assert not (tmp_path / "out").exists(), "nothing is written when the arguments are refused"


# -- a full disk ---------------------------------------------------------------------------------------------------


def test_full_disk_leaves_no_partial_file(dataset, tmp_path):
    """Outputs on a 160 kB file system: the run stops with a message naming a file, and every file under a final
    name is complete (no truncated NIfTI/JSON/TSV, no temporary file left behind)."""
    out = tmp_path / "small-disk"
    if not _mounted(out, "size=160k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        before = tree_digest(dataset)
        result = cli(dataset, out, "participant", "--participant-label", LABEL, "--min-time", "20",
                     "--no-band-pass", "--skip", "reho", "vmhc", "dc", "seedfc", "connectome", "graph", "dualreg",
                     "report", "-w", tmp_path / "work")  # fmt: skip
        err = result.stderr
        assert result.returncode in (3, 4), err  # the participant failed (3) or the app's own log could not (4)
        assert "Traceback" not in err + result.stdout, err + result.stdout
        assert "No space left on device" in err and "free space on that disk" in err, err
        leftovers = list(out.rglob(".tmp-*"))
        assert leftovers == [], leftovers
        for path in out.rglob("*"):
            if path.name.endswith(".nii.gz"):
                assert np.isfinite(np.asanyarray(nb.load(path).dataobj)).all(), path
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".tsv":
                pd.read_csv(path, sep="\t")
        assert tree_digest(dataset) == before
    finally:
        _unmount(out)


def test_atomic_writers_on_a_full_disk(tmp_path, monkeypatch):
    """In process, without a mount: a write that fails with ENOSPC half-way becomes an OutputError naming the
    final file, the previous version of the file stays intact and no temporary file is left."""
    from clbp_bidsapp.errors import ExitCode, OutputError
    from clbp_bidsapp.io import derivatives

    target = tmp_path / "sub-01_stat-alff_boldmap.json"
    derivatives.write_json(target, {"old": True})
    real_write_text = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OutputError) as caught:
        derivatives.write_json(target, {"new": "x" * 1000})
    monkeypatch.undo()
    assert str(target) in str(caught.value) and "No space left on device" in str(caught.value)
    assert caught.value.exit_code == ExitCode.OUTPUT_NOT_WRITABLE
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]

    def nifti_full(img, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(derivatives.nb, "save", nifti_full)
    fresh = tmp_path / "sub-01_stat-reho_boldmap.nii.gz"
    with pytest.raises(OutputError, match=r"sub-01_stat-reho_boldmap\.nii\.gz"):
        derivatives.write_nifti(fresh, nb.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


# -- the group level -----------------------------------------------------------------------------------------------


def _read_only_view(source: Path, target: Path) -> bool:
    """Bind-mount ``source`` read-only at ``target`` (root only); True if writing there is refused even to root."""
    target.mkdir(parents=True)
    if not shutil.which("mount"):
        return False
    bind = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if bind.returncode != 0:
        return False
    subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], capture_output=True)
    try:
        (target / ".probe").write_text("x")
    except OSError as exc:
        return exc.errno == errno.EROFS
    (target / ".probe").unlink()
    _unmount(target)
    return False


@pytest.fixture(scope="module")
def processed(base, tmp_path_factory):
    """Participant outputs of both participants (the minimum of stages), shared by the group-level cases.

    The input is a read-only bind mount of the dataset where the system allows it, so a write to the input
    would fail the run even as root (and the files are hashed before and after in any case)."""
    folder = tmp_path_factory.mktemp("processed")
    out = folder / "out"
    view = folder / "read-only-input"
    read_only = _read_only_view(base.root, view)
    bids_dir = view if read_only else base.root
    before = tree_digest(base.root)
    try:
        result = cli(bids_dir, out, "participant", "--min-time", "20", "--no-band-pass", "--skip", "tsnr", "reho",
                     "vmhc", "dc", "seedfc", "connectome", "graph", "dualreg", "report",
                     "-w", folder / "work")  # fmt: skip
    finally:
        if read_only:
            _unmount(view)
    assert result.returncode == 0, result.stderr
    assert "2 participant(s) succeeded, 0 failed" in result.stderr
    assert tree_digest(base.root) == before
    return out


def _participants(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "participants.tsv"
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        change(table).to_csv(path, sep="\t", index=False)

    return edit


GROUP_CASES = {
    "no-group-column": (
        _participants(lambda t: t.drop(columns=["group"])),
        [],
        2,
        "has no column 'group'; add it or name the diagnosis column with --group-column",
    ),
    "only-one-group": (
        _participants(lambda t: t.assign(group="CLBP")),
        [],
        3,
        "0 usable participant(s) with group=HC",
    ),
    "too-few-participants": (
        lambda root: None,
        [],
        3,
        "1 usable participant(s) with group=CLBP",
    ),
    "no-participants-table": (
        lambda root: (root / "participants.tsv").unlink(),
        [],
        2,
        "participants.tsv not found",
    ),
}


@pytest.mark.parametrize("case", sorted(GROUP_CASES))
def test_group_level_design_errors(case, dataset, processed, tmp_path):
    """participants.tsv problems stop the group level before any statistics, naming the table."""
    change, extra, code, text = GROUP_CASES[case]
    change(dataset)
    out = tmp_path / "out"
    shutil.copytree(processed, out, ignore=shutil.ignore_patterns("work"))
    before = tree_digest(dataset)
    result = cli(dataset, out, "group", "--covariates", *extra)
    fragments = [text] if case == "no-participants-table" else [text, str(dataset / "participants.tsv")]
    assert_user_error(result, code, *fragments, max_lines=2)
    assert tree_digest(dataset) == before


def test_group_level_without_participant_outputs(dataset, tmp_path):
    result = cli(dataset, tmp_path / "out", "group")
    assert_user_error(result, 3, "no participant-level outputs in", "run the participant level first", max_lines=1)


# -- one participant's failure never stops the others --------------------------------------------------------------


def test_one_failure_is_listed_and_the_other_participant_finishes(base, tmp_path):
    """sub-01's confounds are broken, sub-02 is fine: sub-02 finishes, the summary lists both, exit code 1."""
    root = tmp_path / "bids"
    shutil.copytree(base.root, root)
    _edit_confounds(lambda t: t.iloc[:-3])(root)
    before = tree_digest(root)
    out = tmp_path / "out"
    result = cli(root, out, "participant", "--min-time", "20", "--no-band-pass", "--skip", "tsnr", "reho", "vmhc",
                 "dc", "seedfc", "connectome", "graph", "dualreg", "report", "-w", tmp_path / "work")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "finished: 1 participant(s) succeeded, 1 failed" in result.stderr
    assert "ok      sub-02" in result.stderr
    assert (
        "FAILED  sub-01: " in result.stderr
        and "confounds_timeseries.tsv: the confounds table has 27 rows" in result.stderr
    )
    assert any((out / "sub-02" / "func").glob("*_stat-alff_boldmap.nii.gz"))
    assert not (out / "sub-01").exists() or not any((out / "sub-01").rglob("*_boldmap.nii.gz"))
    assert tree_digest(root) == before
