"""The real command line with fMRIPrep/XCP-D habits: -v/-vv show the app's log, the default stays quiet."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.common import run_app

pytestmark = pytest.mark.integration


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here (participant-level flags can be added in one place)."""
    return run_app(*args)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("conventions") / "bids"
    return make_dataset(root, n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, tr=2.0, seed=7).root


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"]], ids=["default", "v", "vv"])
def test_verbosity_shows_the_apps_log_through_one_prefixed_channel(dataset, tmp_path, verbosity):
    # a participant that is not in the dataset: the run stops after discovery, with its summary
    done = cli(dataset, tmp_path / "out", "participant", "--participant-label", "07", *verbosity)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.splitlines()
    assert all(line.startswith("clbp-bidsapp: ") for line in lines), done.stderr
    summary = [line for line in lines if " INFO " not in line and "DEBUG" not in line and "settings saved" not in line]
    assert summary[0].startswith("clbp-bidsapp: found 0 resting-state run(s) of 0 participant(s) in ")
    assert summary[1:] == [
        "clbp-bidsapp: finished: 0 participant(s) succeeded, 1 failed",
        summary[2],
    ] and summary[2].startswith("clbp-bidsapp:   FAILED  sub-07: ")
    saved = [line for line in lines if "settings saved in" in line]
    debug = [line for line in lines if line.startswith("clbp-bidsapp: DEBUG clbp_bidsapp")]
    if not verbosity:
        assert len(lines) == 3 and not saved and not debug  # quiet by default: the summary only
    elif verbosity == ["-v"]:
        assert saved and not debug
    else:
        assert saved and any("result-affecting settings hash" in line for line in debug), done.stderr
