"""Run discovery with pybids on several layouts."""

import json
import shutil

import pytest

from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import bids
from clbp_bidsapp.testing.synthetic import make_dataset


def _collect(info, **kwargs):
    layout = bids.build_layout(info.fmriprep_dir)
    kwargs.setdefault("space", info.space)
    return bids.collect_runs(layout, **kwargs)


def test_one_run_per_participant(small_dataset):
    found = _collect(small_dataset)
    assert sorted(found.runs) == sorted(small_dataset.participants)
    assert not found.failed
    run = found.runs[small_dataset.participants[0]][0]
    assert run.source_name == f"sub-{run.participant}_task-rest"
    assert run.tr == pytest.approx(small_dataset.tr)
    assert run.bold.name.endswith("desc-preproc_bold.nii.gz")
    assert run.mask.name.endswith("desc-brain_mask.nii.gz")
    assert run.confounds.name == f"sub-{run.participant}_task-rest_desc-confounds_timeseries.tsv"
    assert set(run.probsegs) == {"GM", "WM", "CSF"}


def test_sessions_and_runs_are_matched_by_entities(tmp_path):
    info = make_dataset(
        tmp_path / "bids",
        n_patients=1,
        n_controls=1,
        voxel_size=4,
        n_volumes=30,
        sessions=("A", "B"),
        n_runs=2,
        seed=1,
    )
    found = _collect(info)
    for label, runs in found.runs.items():
        assert len(runs) == 4
        for run in runs:
            ents = run.entities
            # every file belongs to the same run: never another run's confounds or mask
            for path in (run.bold, run.mask, run.confounds):
                assert f"ses-{ents['session']}" in path.name
                assert f"run-{ents['run']}" in path.name
            assert run.source_name == f"sub-{label}_ses-{ents['session']}_task-rest_run-{ents['run']}"
    only_a = _collect(info, sessions=["A"])
    assert all(r.session == "A" for runs in only_a.runs.values() for r in runs)


def test_missing_confounds_skips_the_run_with_a_reason(tmp_path):
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, seed=2)
    label = info.participants[0]
    for f in (info.fmriprep_dir / f"sub-{label}" / "func").glob("*confounds_timeseries*"):
        f.unlink()
    found = _collect(info)
    assert label in found.failed
    assert "confounds_timeseries" in found.failed[label]
    assert info.participants[1] in found.runs


def test_wrong_space_and_unknown_participant(small_dataset):
    found = _collect(small_dataset, space="MNI152NLin6Asym", participants=["01", "zz"])
    assert "not found" in found.failed["zz"]
    assert "space" in found.failed["01"]


def test_bold_native_runs_have_no_space_entity(tmp_path):
    """fMRIPrep's BOLD-native outputs carry no space-: --space native selects them (their mask too, no anatomical
    probsegs, which are on the T1w grid); with another --space the reason no longer says 'space native is not'."""
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=0, n_volumes=30, space="native")
    found = _collect(info, space="native")
    run = found.runs["01"][0]
    assert run.space == "native" and run.space_entities == {}
    assert run.bold.name == "sub-01_task-rest_desc-preproc_bold.nii.gz"
    assert run.mask.name == "sub-01_task-rest_desc-brain_mask.nii.gz" and run.probsegs == {}
    other = _collect(info, space="MNI152NLin2009cAsym")
    assert "no space- entity (--space native), not --space MNI152NLin2009cAsym" in other.failed["01"]


def test_missing_tr_is_a_clear_error(tmp_path):
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, seed=4)
    label = info.participants[0]
    sidecar = next((info.fmriprep_dir / f"sub-{label}" / "func").glob("*desc-preproc_bold.json"))
    meta = json.loads(sidecar.read_text())
    del meta["RepetitionTime"]
    sidecar.write_text(json.dumps(meta))
    found = _collect(info)
    assert "RepetitionTime missing" in found.failed[label]


def test_bids_dir_can_be_the_fmriprep_dataset(tmp_path):
    info = make_dataset(tmp_path / "bids", n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, seed=5)
    assert bids.resolve_fmriprep_dir(info.fmriprep_dir, None) == info.fmriprep_dir
    assert bids.resolve_fmriprep_dir(info.root, None) == info.fmriprep_dir
    # participants.tsv is found through SourceDatasets or next to the derivatives
    assert bids.find_participants_table(info.fmriprep_dir, info.fmriprep_dir) == info.root / "participants.tsv"
    moved = tmp_path / "elsewhere" / "fmriprep"
    shutil.copytree(info.fmriprep_dir, moved)
    assert bids.find_participants_table(moved, moved) is None


def test_labels_are_normalised_and_path_like_labels_refused():
    assert bids.normalise_labels(["sub-01", "02"], "sub-") == (["01", "02"], [])
    clean, errors = bids.normalise_labels(["../x", "a b"], "sub-")
    assert clean == [] and len(errors) == 2


def test_filter_file_errors(tmp_path):
    bad = tmp_path / "f.json"
    bad.write_text('{"bolt": {"acquisition": "x"}}')
    with pytest.raises(InputError, match="unknown query name"):
        bids.parse_filter_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="must map query names"):
        bids.parse_filter_file(bad)
