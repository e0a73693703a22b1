"""Group ML helpers: covariate coding, combined feature sets, the flat summary table, ROI weight maps."""

from __future__ import annotations

import json

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import sparse

from clbp_bidsapp.config import MLSettings
from clbp_bidsapp.group import ml as gml


def test_covariate_matrix_codes_categorical_columns():
    table = pd.DataFrame({"age": [30, 40, 50], "sex": ["M", "F", "M"], "site": ["b", "a", "c"]})
    values, names = gml.covariate_matrix(table, ["age", "sex", "site"])
    assert names == ["age", "sex_M", "site_b", "site_c"]
    np.testing.assert_array_equal(values, [[30, 1, 1, 0], [40, 0, 0, 0], [50, 1, 0, 1]])


def _set(name, participants, n):
    values = np.arange(len(participants) * n, dtype=float).reshape(len(participants), n)
    columns = pd.DataFrame(
        {
            "feature": [f"{name}{i}" for i in range(n)],
            "kind": "roi",
            "metric": "alff",
            "atlas": "a",
            "region_a": [f"r{i}" for i in range(n)],
            "region_b": "n/a",
        }
    )
    return gml.FeatureSet(name, name, participants, values, columns)


def test_combine_keeps_common_participants_in_order():
    a = _set("a", ["01", "02", "03"], 2)
    b = _set("b", ["02", "03", "04"], 3)
    both = gml.combine([a, b])
    assert both.participants == ["02", "03"]
    np.testing.assert_array_equal(both.values, np.hstack([a.values[1:], b.values[:2]]))
    assert list(both.columns["feature"]) == ["a0", "a1", "b0", "b1", "b2"]
    assert gml.combine([a]) is None


def test_summary_table_flattens_every_model_and_scheme():
    scores = {"balanced_accuracy": 0.7, "balanced_accuracy_ci": [0.6, 0.8], "roc_auc": 0.75, "p_value": 0.01}
    summary = {
        "classification": {"roi": {"linear_svm": {**scores, "leave_site_out": {**scores, "p_value": None}}}},
        "regression": {"roi": {"ridge": {"r": 0.3, "r_ci": [0.1, 0.5], "mae": 1.0, "p_value": 0.2}}},
    }
    table = gml.summary_table(summary)
    assert list(table["scheme"]) == ["kfold", "loso", "kfold"]
    assert table.loc[0, "balanced_accuracy_ci_low"] == 0.6 and table.loc[0, "p_value"] == 0.01
    assert table.loc[2, "r"] == 0.3 and table.loc[2, "task"] == "regression"


def test_roi_weights_are_painted_on_each_region(tmp_path):
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[1:, 1:3, 1:4] = True  # 12 voxels
    membership = sparse.csr_matrix(np.r_[[np.r_[np.ones(6), np.zeros(6)]], [np.r_[np.zeros(6), np.ones(6)]]])
    fs = _set("roi", ["01", "02"], 2)
    fs.roi = {"alff": {"mask": mask, "affine": np.eye(4), "membership": membership}}
    importance = pd.DataFrame({"feature": [1, 0], "mean_weight": [-0.5, 0.25]})
    gml._write_roi_weights(tmp_path, fs, importance, "linear_svm")
    img = nb.load(tmp_path / "features-roi_model-linearsvm_desc-mlweights_boldmap.nii.gz")
    data = np.asarray(img.dataobj)[..., 0]
    inside = data[mask]
    np.testing.assert_allclose(inside[:6], 0.25)
    np.testing.assert_allclose(inside[6:], -0.5)
    assert (data[~mask] == 0).all()
    sidecar = json.loads((tmp_path / "features-roi_model-linearsvm_desc-mlweights_boldmap.json").read_text())
    assert sidecar["Volumes"] == ["alff"]


def test_defaults_follow_the_issue():
    """Pre-declared headline (linear SVM on the ROI set), sized for ~5 min at 24 participants
    (benchmarks/bench_ml.py)."""
    s = MLSettings()
    assert (s.n_splits, s.n_repeats, s.n_permutations, s.harmonise, s.clinical_target) == (
        5,
        2,
        100,
        "auto",
        "pain_vas",
    )
    assert (s.primary_model, s.primary_feature_set, s.permutation_scope) == ("linear_svm", "roi", "primary")
    assert s.models == ("linear_svm",) and s.regression_models == ("ridge",)
