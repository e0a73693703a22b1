"""Fixtures shared by the command-line test files."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """2 participants (CLBP sub-01, HC sub-02), 30 volumes of 2 s on the 4 mm grid: tiny, and quick to copy."""
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("tiny") / "bids"
    return make_dataset(root, n_patients=1, n_controls=1, voxel_size=4, n_volumes=30, tr=2.0, seed=7)


@pytest.fixture
def dataset(base, tmp_path):
    """A private copy of the tiny dataset, for a case that breaks or checks it."""
    root = tmp_path / "bids"
    shutil.copytree(base.root, root)
    return root
