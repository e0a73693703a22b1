"""Group level on simulated data: planted CLBP effects are found where they were planted; null data give nothing.

12 patients and 10 controls (4 mm, 150 volumes). The generator plants higher right anterior insula ALFF in
patients, scaled by each patient's pain (so ALFF also correlates with pain within patients), higher
parahippocampal ReHo and stronger mPFC-insula coupling; each must reach voxelwise FWE p < 0.05 where it was
planted, and nothing may in the null dataset (same generator and seed, no effects). The false-positive rate
over many null datasets is measured in benchmarks/bench_fwe_calibration.py. The cross-validated classifier (ROI
means, linear SVM, in-fold selection) must beat chance on planted data only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.testing.synthetic import PLANTED_EFFECTS, make_dataset

pytestmark = pytest.mark.integration
ALPHA_LOG = -np.log10(0.05)


def _run(root, out, work, *args):
    # the tiny test runs (30-80 volumes) keep too few effective DOF for the default --min-dof: not what is tested here
    if "participant" in args:
        args = (*args, "--min-dof", "0")
    done = subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", str(root), str(out), *args, "-w", str(work)],
                          capture_output=True, text=True, timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def _in_sphere(path, centre, radius):
    img = nb.load(path)
    data = np.asanyarray(img.dataobj)
    ijk = np.argwhere(data != 0)
    xyz = nb.affines.apply_affine(img.affine, ijk)
    inside = ((xyz - np.asarray(centre)) ** 2).sum(axis=1) <= radius**2
    return data[tuple(ijk[inside].T)], data[tuple(ijk[~inside].T)]


def _significant(path, effect):
    """-log10 FWE p inside the planted sphere (4 mm margin: one voxel) and everywhere else."""
    return _in_sphere(path, effect.centre_mm, effect.radius_mm + 4)


@pytest.mark.parametrize("effects", [True, False], ids=["planted", "null"])
def test_planted_effects_are_recovered_only_when_planted(tmp_path, effects):
    info = make_dataset(tmp_path / "bids", n_patients=12, n_controls=10, n_volumes=150, effects=effects, seed=11)
    out = tmp_path / "out"
    _run(info.root, out, tmp_path / "work", "participant", "--nprocs", "2", "--seeds", "insulaAntR",
         "--skip", "vmhc", "dc", "tsnr", "report", "graph", "dualreg", "connectome")  # fmt: skip
    _run(info.root, out, tmp_path / "work", "group", "--group-metrics", "alff", "reho", "fcz",
         "--n-permutations", "500", "--covariates", "age", "mean_fd", "--clinical-columns", "pain_vas",
         "--skip", "connectome", "report", "--ml-feature-sets", "roi", "--ml-models", "linear_svm",
         "--ml-regression-models", "ridge", "--ml-splits", "5", "--ml-repeats", "2",
         "--ml-k-best", "10", "--ml-permutations", "99")  # fmt: skip
    group = out / "group"
    by_metric = {e.metric: e for e in PLANTED_EFFECTS}
    maps = {"alff": "alff", "reho": "reho", "fc": "fcz-insulaAntR"}  # planted effect -> group map
    clusters = pd.read_csv(group / "alff_contrast-CLBPvsHC_desc-clusters_table.tsv", sep="\t")
    significant = clusters[clusters["p_fwe_cluster"] < 0.05]
    roi = pd.read_csv(group / "alff_contrast-painvas_desc-roi_stats.tsv", sep="\t").set_index("region")
    concordance = pd.read_csv(group / "desc-concordance_literature.tsv", sep="\t").set_index("finding")
    classifier = json.loads((group / "desc-ml_summary.json").read_text())["classification"]["roi"]["linear_svm"]
    if effects:
        for metric, name in maps.items():  # every planted effect: voxelwise (max-t) FWE inside its sphere
            inside, outside = _significant(group / f"{name}_contrast-CLBPvsHC_stat-logp_desc-fwe_statmap.nii.gz",
                                           by_metric[metric])  # fmt: skip
            assert inside.max() > ALPHA_LOG, f"{metric}: no FWE-significant voxel where it was planted"
            assert (outside > ALPHA_LOG).sum() < (inside > ALPHA_LOG).sum(), metric
            t_inside, _ = _significant(group / f"{name}_contrast-CLBPvsHC_stat-t_statmap.nii.gz", by_metric[metric])
            assert t_inside.max() > 0, f"{metric}: planted as an increase"
        insula = by_metric["alff"]
        # insula ALFF also with cluster-extent FWE and TFCE FWE, labelled, and matched to the literature
        assert len(significant), clusters.head()
        best = significant.iloc[0]
        peak = np.array([best["peak_x"], best["peak_y"], best["peak_z"]])
        assert best["sign"] == "+"
        assert np.linalg.norm(peak - np.array(insula.centre_mm)) <= insula.radius_mm + 6
        assert best["harvard_oxford"].startswith("Right_"), best
        tfce_inside, tfce_outside = _significant(
            group / "alff_contrast-CLBPvsHC_stat-logp_desc-tfcefwe_statmap.nii.gz", insula
        )
        assert tfce_inside.max() > ALPHA_LOG
        assert (tfce_outside > ALPHA_LOG).sum() < (tfce_inside > ALPHA_LOG).sum()
        assert concordance.loc["zhou2018_alff_ains", "status"] == "found, same direction", concordance
        # the cross-validated classifier on ROI means separates the groups, on the planted regions. Its p is for
        # the whole nested pipeline (every permutation reruns the splits and the tuning, so the tuning's optimism is
        # in the null too): 0.08 with 99 permutations for this 12 vs 10 design (balanced accuracy 0.72), where the
        # simplified permutation of earlier versions said 0.005 -- hence 0.1 here, and the null case's p > 0.05
        assert classifier["p_value"] < 0.1 and classifier["roc_auc"] > 0.75, classifier
        assert classifier["balanced_accuracy"] > 0.65, classifier
        features = pd.read_csv(group / "desc-ml_features.tsv", sep="\t")
        top = features[(features["model"] == "linear_svm") & (features["rank"] <= 3)]["feature"]
        assert set(top) & {"alff:RightInsularCortex", "alff:RightFrontalOperculumCortex"}, top
        # clinical correlation within patients: insula ALFF rises with pain
        assert roi.loc["insulaAntR", "t"] > 0 and roi.loc["insulaAntR", "p_uncorrected"] < 0.05, roi
    else:
        for name in maps.values():
            for correction in ("fwe", "tfcefwe", "clusterfwe"):
                path = group / f"{name}_contrast-CLBPvsHC_stat-logp_desc-{correction}_statmap.nii.gz"
                values = np.abs(np.asanyarray(nb.load(path).dataobj))
                assert values.max() < ALPHA_LOG, f"{path.name}: FWE-significant voxels in null data"
        assert significant.empty, significant
        assert (roi["p_fwe"] >= 0.05).all(), roi
        assert not concordance["status"].str.startswith("found").any(), concordance
        assert classifier["p_value"] > 0.05, classifier  # at chance
    design = pd.read_csv(group / "alff_contrast-CLBPvsHC_desc-design_design.tsv", sep="\t")
    assert list(design.columns) == ["participant_id", "group", "intercept", "age", "mean_fd"]
    clinical_design = pd.read_csv(group / "alff_contrast-painvas_desc-design_design.tsv", sep="\t")
    assert list(clinical_design.columns) == ["participant_id", "pain_vas", "intercept", "age", "mean_fd"]
