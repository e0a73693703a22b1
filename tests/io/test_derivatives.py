import json
import os
from pathlib import Path

import pytest

from clbp_bidsapp.errors import OutputError
from clbp_bidsapp.io import derivatives


def test_derivative_name_orders_entities():
    name = derivatives.derivative_name(
        "sub-01_ses-A_task-rest_run-1",
        suffix="boldmap",
        extension=".nii.gz",
        stat="alff",
        space="MNI152NLin2009cAsym",
        res="2",
        desc="smooth",
    )
    assert name == "sub-01_ses-A_task-rest_run-1_space-MNI152NLin2009cAsym_res-2_stat-alff_desc-smooth_boldmap.nii.gz"


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    derivatives.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), derivatives.atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_output_inside_input_is_refused(tmp_path):
    (tmp_path / "bids").mkdir()
    with pytest.raises(OutputError, match="inside the input dataset"):
        derivatives.check_output_dir(
            tmp_path / "bids" / "sub-01" / "clbp", raw_dir=tmp_path / "bids", derivative_inputs=[]
        )


@pytest.mark.parametrize(
    ("where", "refused"),
    [
        ("bids", "is the input dataset"),
        ("bids/sub-01", "is inside the input dataset"),
        ("bids/derivatives", "is inside the input dataset"),  # only derivatives/<name>
        ("bids/derivatives/fmriprep", "is the input dataset"),
        ("bids/derivatives/fmriprep/clbp", "is inside the input dataset"),
        ("bids/derivatives/clbp", None),  # where BIDS, fMRIPrep and XCP-D put derivatives
        ("bids/derivatives/xcpd/clbp", None),
        ("fmriprep-elsewhere", "is the input dataset"),
        (".", "holds the input dataset"),
        ("out", None),
        ("link-into-raw", "is inside the input dataset"),  # a symbolic link does not lead around the rule
    ],
)
def test_input_overlap_is_the_rule_for_every_written_folder(tmp_path, where, refused):
    bids = tmp_path / "bids"
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    (bids / "sub-01").mkdir()
    (tmp_path / "fmriprep-elsewhere").mkdir()
    (tmp_path / "link-into-raw").symlink_to(bids / "sub-01")
    inputs = [bids / "derivatives" / "fmriprep", tmp_path / "fmriprep-elsewhere"]
    overlap = derivatives.input_overlap(tmp_path / where, raw_dir=bids, derivative_inputs=inputs)
    if refused is None:
        assert overlap is None
    else:
        assert overlap is not None and overlap.startswith(refused)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_output_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputError, match="cannot write"):
        derivatives.check_output_dir(locked / "out", raw_dir=tmp_path / "bids", derivative_inputs=[])


def test_unwritable_output_is_refused_even_as_root(tmp_path):
    # a regular file where the output folder should be cannot be written by anyone
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        derivatives.check_output_dir(blocker / "out", raw_dir=tmp_path / "bids", derivative_inputs=[])


def test_dataset_description_records_container(monkeypatch):
    monkeypatch.setenv("CLBP_CONTAINER_TYPE", "docker")
    monkeypatch.setenv("CLBP_CONTAINER_TAG", "clbp-bidsapp:0.1.0")
    desc = derivatives.dataset_description(
        source_description={"Name": "study"}, source_url="file:///data", config_hash="abc"
    )
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "clbp-bidsapp:0.1.0"}
    assert desc["SourceDatasets"] == [{"URL": "file:///data", "Name": "study"}]
    assert desc["ConfigHash"] == "abc"
    assert Path(desc["SourceDatasets"][0]["URL"][7:]).is_absolute()


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """Outputs are readable by the group under the usual umask (mkstemp alone would leave them 0600)."""
    import os
    import stat

    from clbp_bidsapp.io import derivatives

    path = derivatives.write_text(tmp_path / "x.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
