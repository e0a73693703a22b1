"""The working folder: what may be one, and --clean-workdir removing only what the app created."""

import pytest

from clbp_bidsapp.io import workdir


def _graph(work, *participants):
    graph = work / workdir.GRAPH_FOLDER
    for name in participants:
        (graph / name / "node").mkdir(parents=True)
        (graph / name / "node" / "result.pklz").write_bytes(b"x")
    (graph / "d3.js").write_text("nipype's graph report")
    return graph


def test_clean_removes_the_run_and_the_folder_it_created(tmp_path):
    work = tmp_path / "work"
    workdir.claim(work)
    _graph(work, "sub_01_wf")
    removed = workdir.clean(work, ["sub_01_wf"])
    assert not work.exists()
    assert work in removed


def test_clean_keeps_a_folder_it_did_not_create_and_everything_else(tmp_path):
    work = tmp_path / "scratch"
    work.mkdir()
    (work / "other.txt").write_text("keep")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep")
    workdir.claim(work)
    graph = _graph(work, "sub_01_wf")
    (graph / "sub_01_wf" / "link").symlink_to(outside)  # a link inside the app's folder is removed, not entered
    workdir.clean(work, ["sub_01_wf"])
    assert sorted(p.name for p in work.iterdir()) == ["other.txt"]
    assert (outside / "data.txt").read_text() == "keep"


def test_clean_leaves_another_runs_participants(tmp_path):
    """Two runs of different participants share a working folder: the first to finish removes only its own."""
    work = tmp_path / "work"
    workdir.claim(work)
    graph = _graph(work, "sub_01_wf", "sub_02_wf")
    workdir.clean(work, ["sub_01_wf"])
    assert sorted(p.name for p in graph.iterdir()) == ["d3.js", "sub_02_wf"]
    assert (work / workdir.MARKER).is_file()
    workdir.clean(work, ["sub_02_wf"])
    assert not work.exists()


def test_clean_without_the_marker_removes_nothing(tmp_path):
    work = tmp_path / "work"
    graph = _graph(work, "sub_01_wf")
    assert workdir.clean(work, ["sub_01_wf"]) == []
    assert (graph / "sub_01_wf").is_dir()


def test_clean_does_not_follow_a_linked_graph_folder(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    workdir.claim(work)
    (elsewhere / "sub_01_wf").mkdir(parents=True)
    (work / workdir.GRAPH_FOLDER).symlink_to(elsewhere)
    workdir.clean(work, ["sub_01_wf"])
    assert (elsewhere / "sub_01_wf").is_dir()


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("res/out/work", None),  # the default
        ("res/out/work/deeper", None),
        ("scratch", None),
        ("res/out", "is the output folder"),
        ("res", "holds the output folder"),
        ("res/out/other", "is inside the output folder"),
        ("bids", "is the input dataset"),
        ("bids/derivatives/scratch", None),
        ("a-file", "is a file, not a folder"),
    ],
)
def test_work_dir_rule(tmp_path, where, problem):
    (tmp_path / "bids" / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "a-file").write_text("x")
    found = workdir.work_dir_problem(
        tmp_path / where,
        output_dir=tmp_path / "res" / "out",
        raw_dir=tmp_path / "bids",
        derivative_inputs=[tmp_path / "bids" / "derivatives" / "fmriprep"],
    )
    assert found == problem if problem is None else found.startswith(problem)
