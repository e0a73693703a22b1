"""A tiny synthetic dataset shared by the graph-building tests (built once per session; graphs are not run)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def one_participant(tmp_path_factory):
    """(dataset info, sub-01's runs) of a 4 mm, 30-volume synthetic dataset with one patient."""
    from clbp_bidsapp.io import bids
    from clbp_bidsapp.testing.synthetic import make_dataset

    data = make_dataset(tmp_path_factory.mktemp("wf") / "bids", n_patients=1, n_controls=0, voxel_size=4,
                        n_volumes=30, tr=2.0, seed=7)  # fmt: skip
    layout = bids.build_layout(data.fmriprep_dir, None)
    collection = bids.collect_runs(layout, participants=("01",), sessions=(), tasks=(), task_pattern="rest",
                                   space=data.space, res=None, filters={})  # fmt: skip
    return data, collection.runs["01"]
