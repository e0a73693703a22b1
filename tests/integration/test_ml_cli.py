"""The ML stage from the command line: outputs, summary keys, byte-identical rerun (tiny settings)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.testing.synthetic import make_dataset

pytestmark = pytest.mark.integration
ML_FILES = (
    "desc-ml_summary.json",
    "desc-ml_summary.tsv",
    "desc-ml_scores.tsv",
    "desc-ml_repeats.tsv",
    "desc-ml_null.tsv",
    "desc-ml_roc.tsv",
    "desc-ml_features.tsv",
)
WEIGHTS = "features-roi_model-linearsvm_desc-mlweights_boldmap.nii.gz"


def _run(*args):
    # the tiny test runs (30-80 volumes) keep too few effective DOF for the default --min-dof: not what is tested here
    if "participant" in map(str, args):
        args = (*args, "--min-dof", "0")
    done = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", *map(str, args)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return done


def _digest(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in (*ML_FILES, WEIGHTS)}


def test_ml_stage_writes_summary_and_reruns_identically(tmp_path):
    info = make_dataset(tmp_path / "bids", n_patients=6, n_controls=6, n_volumes=40, seed=3, high_motion=False)
    out = tmp_path / "out"
    _run(
        info.root,
        out,
        "participant",
        "--nprocs",
        "2",
        "-w",
        tmp_path / "work",
        "--seeds",
        "pcc",
        "--atlases",
        "dosenbach160",
        "--min-time",
        "30",
        "--skip",
        "reho",
        "vmhc",
        "dc",
        "tsnr",
        "report",
        "seedfc",
        "dualreg",
    )
    ml_args = [
        "--skip",
        "stats",
        "ica",
        "connectome",
        "--ml-splits",
        "3",
        "--ml-repeats",
        "2",
        "--ml-inner-splits",
        "2",
        "--ml-permutations",
        "9",
        "--ml-models",
        "linear_svm",
        "logistic_l2",
        "--ml-feature-sets",
        "roi",
        "edges",
        "graph",
        "combined",
        "--ml-k-best",
        "50",
        "--ml-regression-models",
        "ridge",
        "--covariates",
        "age",
        "mean_fd",
    ]
    done = _run(info.root, out, "group", "-w", tmp_path / "work", *ml_args)
    assert "machine learning:" in done.stderr, done.stderr
    group = out / "group"
    for name in (*ML_FILES, WEIGHTS):
        assert (group / name).is_file(), name
    summary = json.loads((group / "desc-ml_summary.json").read_text())
    assert set(summary["classification"]) == {"roi", "edges", "graph", "combined"}
    for entry in summary["classification"].values():
        assert set(entry) == {"linear_svm", "logistic_l2"}
        for model, scores in entry.items():
            for key in (
                "accuracy",
                "balanced_accuracy",
                "roc_auc",
                "sensitivity",
                "specificity",
                "p_value",
                "balanced_accuracy_ci",
            ):
                assert key in scores, (model, key)
            assert 0.0 <= scores["balanced_accuracy"] <= 1.0
            assert scores["n_participants"] == 12
        assert entry["logistic_l2"]["p_value"] is None  # only the primary model on the primary set is tested
    primary = summary["classification"]["roi"]["linear_svm"]
    assert primary["p_value"] is not None and 0.1 <= primary["p_value"] <= 1.0
    assert all(summary["classification"][fs]["linear_svm"]["p_value"] is None for fs in ("edges", "graph", "combined"))
    assert summary["feature_sets"]["roi"]["n_features"] > 10
    assert summary["feature_sets"]["combined"]["n_features"] == sum(
        summary["feature_sets"][k]["n_features"] for k in ("roi", "edges", "graph")
    )
    null = pd.read_csv(group / "desc-ml_null.tsv", sep="\t")
    assert len(null) == 9 and null["statistic"].between(0, 1).all()  # the primary pipeline's permutations
    scores = pd.read_csv(group / "desc-ml_scores.tsv", sep="\t")
    assert len(scores) == 4 * 2 * 3 * 2  # sets x models x folds x repeats
    roc = pd.read_csv(group / "desc-ml_roc.tsv", sep="\t")
    assert roc.groupby(["feature_set", "model"]).size().eq(101).all()
    features = pd.read_csv(group / "desc-ml_features.tsv", sep="\t")
    edge_rows = features[features["feature_set"] == "edges"]
    assert (edge_rows["region_b"] != "n/a").all() and (edge_rows["kind"] == "edge").all()
    img = nb.load(group / WEIGHTS)
    assert img.ndim == 4 and img.shape[3] == 2  # alff and falff
    assert np.count_nonzero(np.asarray(img.dataobj)) > 0
    report = (out / "group.html").read_text()
    assert "Machine learning" in report and "permutation null" in report
    first = _digest(group)
    _run(info.root, out, "group", "-w", tmp_path / "work", *ml_args)
    assert _digest(group) == first
