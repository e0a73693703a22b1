"""Issue #18 audit: an fMRIPrep/XCP-D user's usual command line and folder layout, run for real.

One participant run (module-scoped) with the command line such a user types, output in ``BIDS_DIR/derivatives/
clbp``, is checked for what a downstream tool needs: every sidecar's ``Units`` where the value has one, every TSV
column described, ``DatasetLinks`` for every ``bids:<name>:`` URI, the upstream pipeline in ``GeneratedBy``. The
options of fMRIPrep/XCP-D this app has no use for are ignored with a note or refused with the reason, and every
spelling in docs/usage.md's side-by-side table is an option of the app with the meaning of its row.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.common import assert_user_error, run_app, tree_digest, with_min_dof

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "usage.md"
# ALFF, tSNR, one seed and one atlas (no band-pass: 30 volumes): maps, time series, regions, matrices, denoised BOLD
STAGES = ("--min-time", "20", "--no-band-pass", "--save-denoised", "--seeds", "pcc", "--atlases", "harvardoxford",
          "--skip", "reho", "vmhc", "dc", "graph", "dualreg", "report")  # fmt: skip


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return run_app(*with_min_dof(args))


@pytest.fixture(scope="module")
def usual_run(base, tmp_path_factory):
    """``clbp-bidsapp /data/bids /data/bids/derivatives/clbp participant --participant-label 01 --nthreads 2
    --omp-nthreads 1 --mem 8000 -w /scratch/work --notrack --skip_bids_validation --fs-license-file FILE``."""
    root = tmp_path_factory.mktemp("usual")
    bids = root / "bids"
    shutil.copytree(base.root, bids)
    before = tree_digest(bids)
    out, work = bids / "derivatives" / "clbp", root / "scratch" / "work"
    result = cli(bids, out, "participant", "--participant-label", "01", "--nthreads", "2", "--omp-nthreads", "1",
                 "--mem", "8000", "-w", work, "--notrack", "--skip_bids_validation",
                 "--fs-license-file", root / "license.txt", *STAGES)  # fmt: skip
    assert result.returncode == 0, result.stderr
    after = tree_digest(bids)
    assert {k: v for k, v in after.items() if not k.startswith("derivatives/clbp/")} == before  # input unchanged
    return bids, out, work, result


def sidecars(out: Path) -> list[Path]:
    return sorted(p for p in (out / "sub-01").rglob("*.json"))


def test_the_usual_command_line_runs_with_its_meaning(usual_run):
    bids, out, work, result = usual_run
    assert f"note: --fs-license-file {bids.parent / 'license.txt'} ignored: this app runs no FreeSurfer tool" in (
        " ".join(result.stderr.split())
    )
    assert "1 participant(s) succeeded, 0 failed" in result.stderr
    (config,) = (out / "logs").glob("config-*.toml")
    text = config.read_text()
    for line in ("mem_gb = 8.0", "nprocs = 2", "omp_nthreads = 1", "skip_bids_validation = true"):
        assert line in text.splitlines(), line
    assert f'work_dir = "{work}"' in text and (work / "clbp_wf").is_dir()
    # alff and falff (raw, desc-z, desc-m), tsnr, mean, pcc seed FC (unsmoothed, smoothed)
    assert len(list((out / "sub-01" / "func").glob("*_boldmap.nii.gz"))) == 10


# values with a unit, by file kind: BOLD-scale values are "arbitrary" (docs/outputs.md, "Units")
def expected_units(name: str) -> str | None:
    if name.endswith(("_timeseries.json", "_bold.json")) or re.search(r"_stat-(alff|mean)_boldmap\.json$", name):
        return "arbitrary"
    return None  # fALFF, tSNR, Fisher z, z/m-standardised maps, correlation matrices, tables: per column


def test_every_map_and_series_sidecar_has_units_where_the_value_has_one(usual_run):
    _, out, _, _ = usual_run
    found = {p.name: json.loads(p.read_text()).get("Units") for p in sidecars(out)}
    assert found == {name: expected_units(name) for name in found}
    with_units = sorted(name for name, units in found.items() if units)
    # 10 maps, QC, regions, series and 2 matrices of the atlas, regions and series of the seed, 2 denoised BOLD
    assert len(found) == 19, sorted(found)
    assert len(with_units) == 6, with_units  # raw ALFF, mean, atlas series, seed series, denoised BOLD


# TSV columns that have a unit, wherever they appear
COLUMN_UNITS = {"x": "mm", "y": "mm", "z": "mm", "retained_seconds": "s", "mean_fd": "mm", "max_fd": "mm"}


def test_every_column_of_the_tables_is_described_with_its_units(usual_run):
    """A table whose columns are fixed (QC, regions) describes each column in its sidecar, as BIDS asks of a TSV,
    with ``Units`` for the coordinates in mm and the times; region-by-column tables (time series, matrices) are
    one column per region, named in the regions table."""
    _, out, _, _ = usual_run
    tables = sorted(p for p in (out / "sub-01").rglob("*.tsv") if p.name.endswith(("_qc.tsv", "_regions.tsv")))
    assert len(tables) == 3, tables  # QC, atlas regions, seed regions
    for table in tables:
        with table.open() as handle:
            columns = next(csv.reader(handle, delimiter="\t"))
        sidecar = json.loads(table.with_suffix(".json").read_text())
        undescribed = [c for c in columns if "Description" not in sidecar.get(c, {})]
        assert undescribed == [], (table.name, undescribed)
        assert {c: sidecar[c].get("Units") for c in columns if c in COLUMN_UNITS} == {
            c: COLUMN_UNITS[c] for c in columns if c in COLUMN_UNITS
        }, table.name


def test_every_bids_uri_is_linked_and_the_upstream_pipeline_recorded(usual_run):
    bids, out, _, _ = usual_run
    description = json.loads((out / "dataset_description.json").read_text())
    used = set()
    for path in sidecars(out):
        used |= set(re.findall(r'"bids:([^:"]*):', path.read_text()))
    assert used == {"fmriprep"}
    links = description["DatasetLinks"]
    assert set(links) >= used
    fmriprep = bids / "derivatives" / "fmriprep"
    assert links["fmriprep"] == fmriprep.as_uri()
    upstream = json.loads((fmriprep / "dataset_description.json").read_text())["GeneratedBy"][0]
    (entry,) = [g for g in description["GeneratedBy"] if g["Name"] == upstream["Name"]]
    assert entry["Version"] == upstream["Version"] and description["GeneratedBy"][0]["Name"] == "clbp-bidsapp"
    assert {s["URL"] for s in description["SourceDatasets"]} == {bids.as_uri(), fmriprep.as_uri()}
    source = json.loads(next((out / "sub-01" / "func").glob("*_stat-alff_boldmap.json")).read_text())["Sources"]
    for uri in source:  # each Source resolves, through DatasetLinks, to an existing input file
        name, relative = uri.removeprefix("bids:").split(":", 1)
        assert (Path(links[name].removeprefix("file://")) / relative).is_file(), uri


def test_the_output_in_derivatives_passes_the_validator_without_a_missing_field(usual_run):
    """bids-validator-deno on the output (with its .bidsignore): no error, and no REQUIRED or RECOMMENDED sidecar
    field missing (the denoised BOLD lacked Description; SpatialReference is left: the spaces are TemplateFlow's)."""
    _, out, _, _ = usual_run
    exe = shutil.which("bids-validator-deno") or str(Path(sys.executable).parent / "bids-validator-deno")
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    done = subprocess.run([exe, str(out), "--format", "json"], capture_output=True, text=True, timeout=300)
    issues = json.loads(done.stdout)["issues"]["issues"]
    assert [i for i in issues if i["severity"] == "error"] == []
    missing = sorted({(Path(i["location"]).name.split("_res-4_")[-1], i.get("subCode")) for i in issues
                      if i["code"].startswith("SIDECAR_KEY")})  # fmt: skip
    assert missing == [("desc-denoisedUnfiltered_bold.nii.gz", "SpatialReference"),
                       ("desc-denoised_bold.nii.gz", "SpatialReference")]  # fmt: skip


# -- options of fMRIPrep and XCP-D that the app has no use for ------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "fragments"),
    [
        (["--output-spaces", "MNI152NLin6Asym:res-2", "T1w"], ["--output-spaces", "pass --space TEMPLATE[:res-N]"]),
        (["--cifti-output", "91k"], ["--cifti-output", "volumetric (NIfTI) series only"]),
        (["--file-format", "cifti"], ["--file-format", "volumetric (NIfTI) series only"]),
    ],
    ids=["output-spaces", "cifti-output", "file-format-cifti"],
)
def test_other_tools_options_this_app_cannot_honour_are_refused_with_the_reason(base, tmp_path, words, fragments):
    out = tmp_path / "out"
    result = cli(base.root, out, "participant", "--participant-label", "01", *words)
    assert_user_error(result, 2, *fragments, max_lines=1)
    assert not out.exists()  # refused before anything is written


# -- the side-by-side table of docs/usage.md ------------------------------------------------------------------------


def table_rows(heading: str) -> list[list[str]]:
    """The option spellings of the first column of each row of the table under ``heading`` in docs/usage.md."""
    text = DOCS.read_text()
    section = text[text.index(heading) :]
    rows, started = [], False
    for line in section.splitlines()[1:]:
        if line.startswith("| this app |"):
            started = True
        elif started and line.startswith("| ---"):
            continue
        elif started and line.startswith("|"):
            rows.append(re.findall(r"`(-{1,2}[A-Za-z][\w-]*)", line.split("|")[1]))
        elif started:
            break
    return rows


def test_every_spelling_in_the_side_by_side_table_is_an_option_with_the_meaning_of_its_row(base, tmp_path):
    """Each spelling is an option of the app, and all spellings of a row set the same setting."""
    from clbp_bidsapp.cli.parser import build_parser

    parser = build_parser()
    by_option = {option: action for action in parser._actions for option in action.option_strings}
    rows = table_rows("### Options spelled as in fMRIPrep and XCP-D")
    assert len(rows) >= 25 and all(rows), rows
    for row in rows:
        assert [o for o in row if o not in by_option] == [], row
        parsed = []
        for option in row:
            action = by_option[option]
            words = [] if action.nargs == 0 else ["1"] * (action.nargs if isinstance(action.nargs, int) else 1)
            namespace = vars(parser.parse_args([str(base.root), str(tmp_path / "out"), "participant", option, *words]))
            parsed.append(set(namespace) - {"bids_dir", "output_dir", "analysis_level"})
        assert len(parsed[0]) == 1 and all(p == parsed[0] for p in parsed), (row, parsed)  # one setting per row


def test_every_option_of_the_other_tools_table_is_ignored_or_refused(base, tmp_path):
    """Each row of the second table: an ignored option runs with a note naming it; a refused one stops with the
    row's reason."""
    from clbp_bidsapp.cli.run import parse_settings
    from clbp_bidsapp.errors import UserError

    text = DOCS.read_text()
    table = text[text.index("| fMRIPrep / XCP-D option | here | why |") :].split("\n\n")[0].splitlines()[2:]
    assert len(table) == 7, table
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        for token in re.findall(r"`(-{1,2}[\w-]+)(?: (nifti|cifti))?", cells[0]):
            option, value = token[0], token[1] or "x"
            argv = [str(base.root), str(tmp_path / "out"), "participant", option, value]
            if cells[1].startswith("ignored"):
                _, extras = parse_settings(argv)
                assert [note for note in extras["notes"] if f"note: {option} {value} ignored: " in note], option
            else:
                with pytest.raises(UserError) as refused:
                    parse_settings(argv)
                reason = cells[1].removeprefix("refused: `").split("`")[0].removeprefix("… ")
                assert option in str(refused.value) and reason in str(refused.value), (option, str(refused.value))


# -- messy datasets: what tests/integration/test_messy_datasets.py does not run from the command line ---------------


@pytest.mark.parametrize(
    ("name", "level"), [("participants.tsv", "group"), ("dataset_description.json", "participant")]
)
def test_an_unfetched_datalad_file_of_the_raw_dataset_says_run_datalad_get(dataset, tmp_path, name, level):
    """The group level's participants.tsv and the raw dataset's description, left as git-annex links: named with
    the command that fetches them (they were "participants.tsv not found" and "not a BIDS dataset")."""
    path = dataset / name
    path.unlink()
    path.symlink_to(f".git/annex/objects/Xq/9z/MD5E-s8--0a1b{path.suffix}/MD5E-s8--0a1b{path.suffix}")
    result = cli(dataset, tmp_path / "out", level)
    assert_user_error(result, 2, f"{path} is not fetched", f"run `datalad get {path}`")


FMRIPREP_STEM = "sub-01_task-rest_space-MNI152NLin2009cAsym_res-4"


def _more_variants(root: Path) -> None:
    """Beside sub-01's run: rec-, dir- and cohort- variants of it (each with its mask), tedana's desc-optcom
    series, and the same run in a second template space (MNI152NLin6Asym), as fMRIPrep writes several spaces."""
    func = root / "derivatives" / "fmriprep" / "sub-01" / "func"
    for path in sorted(func.iterdir()):  # fMRIPrep writes the confounds once per acquisition, without space-
        for old, new in (
            ("_task-rest_", "_task-rest_rec-moco_"),
            ("_task-rest_", "_task-rest_dir-PA_"),
            ("_res-4_", "_cohort-1_res-4_"),
            ("_space-MNI152NLin2009cAsym_", "_space-MNI152NLin6Asym_"),
        ):
            if old in path.name:
                shutil.copyfile(path, func / path.name.replace(old, new))  # fmt: skip
        if "_desc-preproc_bold" in path.name:
            shutil.copyfile(path, func / path.name.replace("desc-preproc", "desc-optcom"))


def test_rec_dir_cohort_and_optcom_variants_pick_one_say_which_and_other_spaces_are_not_variants(dataset, tmp_path):
    _more_variants(dataset)
    cheap = ("--min-time", "20", "--no-band-pass", "--skip", "tsnr", "reho", "vmhc", "dc", "seedfc", "connectome",
             "graph", "dualreg", "report")  # fmt: skip
    out = tmp_path / "out"
    result = cli(dataset, out, "participant", "--participant-label", "01", "-w", tmp_path / "work", *cheap)
    assert result.returncode == 0, result.stderr
    err = " ".join(result.stderr.split())
    assert f"skipped 4 other variant(s) of sub-01_task-rest: analysing {FMRIPREP_STEM}_desc-preproc_bold.nii.gz" in err
    for other in (
        "rec-moco_space-MNI152NLin2009cAsym_res-4_desc-preproc",
        "dir-PA_space-MNI152NLin2009cAsym_res-4",
        "space-MNI152NLin2009cAsym_cohort-1_res-4_desc-preproc",
        "space-MNI152NLin2009cAsym_res-4_desc-optcom_bold",
    ):
        assert f"sub-01_task-rest_{other}" in err, other  # fmt: skip
    # another space is another analysis (--space), named as such, not a variant of this one
    assert (
        "MNI152NLin6Asym_res-4_desc-preproc_bold.nii.gz: space-MNI152NLin6Asym, not --space MNI152NLin2009cAsym" in err
    )
    written = sorted(p.name for p in (out / "sub-01" / "func").glob("*_boldmap.nii.gz"))
    assert written and all(name.startswith(f"{FMRIPREP_STEM}_stat-") for name in written), written

    # the filter the message suggests picks the next variant (it suggested {"desc": "preproc"}: the same file)
    hint = re.search(r"--bids-filter-file with e\.g\. (\{.*?\}\})", err).group(1)
    assert json.loads(hint) == {"bold": {"cohort": "1"}}
    filters = tmp_path / "filters.json"
    filters.write_text(hint)
    chosen = cli(dataset, tmp_path / "cohort", "participant", "--participant-label", "01", "-w",
                 tmp_path / "work-cohort", "--bids-filter-file", filters, *cheap)  # fmt: skip
    assert chosen.returncode == 0, chosen.stderr
    # a cohort is a template of its own: it stays in the names (it was dropped, as if the default cohort)
    written = sorted(p.name for p in (tmp_path / "cohort" / "sub-01" / "func").glob("*_boldmap.nii.gz"))
    stem = "sub-01_task-rest_space-MNI152NLin2009cAsym_cohort-1_res-4_stat-"
    assert written and all(name.startswith(stem) for name in written), written
