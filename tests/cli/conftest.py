"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def dataset(tmp_path):
    """The smallest folder the parser accepts: a raw dataset with an (empty) fMRIPrep derivatives folder."""
    bids = tmp_path / "bids"
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    (bids / "derivatives" / "fmriprep" / "dataset_description.json").write_text(
        json.dumps({"Name": "f", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    return bids
