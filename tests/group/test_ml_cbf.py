"""The ``cbf`` ML feature set: mean relative CBF per region, from the participant level's CBF region tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.config import MLSettings
from clbp_bidsapp.group import ml


class FilesLayout:
    """The part of a pybids layout the feature builders use: ``get`` by entities, returning file names."""

    def __init__(self, files):
        self.files = files  # (path, entities)

    def get(self, return_type="filename", **filters):
        assert return_type == "filename"
        found = [str(path) for path, ents in self.files if all(ents.get(k) == v for k, v in filters.items())]
        return sorted(found)


def _write(tmp_path, files, label, name, frame, **entities):
    path = tmp_path / f"sub-{label}_{name}"
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a")
    files.append((path, {"subject": label, "extension": ".tsv", **entities}))


@pytest.fixture
def layout(tmp_path):
    files = []
    regions = ["insula", "thalamus", "precuneus"]
    values = {  # per participant: runs of relative CBF per region
        "01": [[1.1, 0.9, 1.0], [1.3, 0.7, 1.2]],  # two ASL runs: averaged
        "02": [[0.8, 1.0, np.nan]],  # precuneus without CBF: the region is left out for everyone
        "03": [[1.0, 1.0, 1.0]],  # not usable (QEI): left out
    }
    for label, runs in values.items():
        usable = label != "03"
        for run, row in enumerate(runs, start=1):
            table = pd.DataFrame({"region": regions, "cbf": np.array(row) * 60, "rcbf": row, "mask_voxels": 5})
            _write(tmp_path, files, label, f"run-{run}_regions.tsv", table, atlas="harvardoxford", stat="cbf",
                   suffix="regions")  # fmt: skip
            qc = pd.DataFrame([{"cbf_variant": "mean", "mean_gm_cbf": 60.0, "qei": 0.8 if usable else 0.3,
                                "mean_fd": 0.1, "usable": usable, "reason": "" if usable else "QEI"}])  # fmt: skip
            _write(tmp_path, files, label, f"run-{run}_qc.tsv", qc, desc="cbf", suffix="qc")
    return FilesLayout(files)


def test_cbf_features_are_mean_relative_cbf_per_region_of_usable_maps(layout):
    fs = ml.cbf_features(layout, ["01", "02", "03", "04"], atlas="harvardoxford")
    assert fs.name == "cbf" and fs.participants == ["01", "02"]  # 03 not usable, 04 has no CBF
    assert list(fs.columns["feature"]) == ["rcbf:insula", "rcbf:thalamus"]
    assert np.allclose(fs.values, [[1.2, 0.8], [0.8, 1.0]])


def test_the_cbf_set_is_absent_not_an_error_without_cbf(layout):
    assert ml.cbf_features(layout, ["01", "02"], atlas="aal") is None  # no table of that atlas
    assert ml.cbf_features(FilesLayout([]), ["01"], atlas="harvardoxford") is None
    sets = ml.assemble_feature_sets(None, ["01"], MLSettings(feature_sets=("cbf",)), layout=FilesLayout([]))
    assert sets == []
    sets = ml.assemble_feature_sets(None, ["01", "02"], MLSettings(feature_sets=("cbf",)), layout=layout)
    assert [s.name for s in sets] == ["cbf"]
