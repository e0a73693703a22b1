"""Group level on simulated data: planted CLBP effects are found where they were planted; null data give nothing.

8 patients and 6 controls (4 mm, 100 volumes). The generator plants higher insula ALFF in patients, scaled by
each patient's pain (so ALFF also correlates with pain within patients), and mPFC-insula coupling.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("effects", [True, False], ids=["planted", "null"])
def test_planted_effects_are_recovered_only_when_planted(tmp_path, effects):
    info = make_dataset(tmp_path / "bids", n_patients=8, n_controls=6, n_volumes=100, effects=effects, seed=11)
    out = tmp_path / "out"
    _run(info.root, out, tmp_path / "work", "participant", "--nprocs", "2", "--seeds", "insulaAntL",
         "--skip", "reho", "vmhc", "dc", "tsnr", "report", "graph", "dualreg", "connectome")  # fmt: skip
    _run(info.root, out, tmp_path / "work", "group", "--group-metrics", "alff", "fcz", "--n-permutations", "500",
         "--covariates", "age", "mean_fd", "--skip", "connectome")  # fmt: skip
    group = out / "group"
    insula = next(e for e in PLANTED_EFFECTS if e.metric == "alff")
    clusters = pd.read_csv(group / "alff_contrast-CLBPvsHC_desc-clusters_table.tsv", sep="\t")
    significant = clusters[clusters["p_fwe_cluster"] < 0.05]
    tfce_inside, tfce_outside = _in_sphere(group / "alff_contrast-CLBPvsHC_stat-logp_desc-tfcefwe_statmap.nii.gz",
                                           insula.centre_mm, insula.radius_mm + 6)  # fmt: skip
    roi = pd.read_csv(group / "alff_contrast-painvas_desc-roi_stats.tsv", sep="\t").set_index("region")
    if effects:
        # group difference: cluster-extent FWE overlapping the planted sphere, TFCE FWE inside it
        assert len(significant), clusters.head()
        best = significant.iloc[0]
        peak = np.array([best["peak_x"], best["peak_y"], best["peak_z"]])
        assert best["sign"] == "+"
        assert np.linalg.norm(peak - np.array(insula.centre_mm)) <= insula.radius_mm + 6
        cluster_inside, _ = _in_sphere(group / "alff_contrast-CLBPvsHC_stat-logp_desc-clusterfwe_statmap.nii.gz",
                                       insula.centre_mm, insula.radius_mm)  # fmt: skip
        assert cluster_inside.max() > ALPHA_LOG, "the significant cluster overlaps the planted sphere"
        assert best["harvard_oxford"] != "unlabelled"
        assert tfce_inside.max() > ALPHA_LOG
        assert (tfce_outside > ALPHA_LOG).sum() < (tfce_inside > ALPHA_LOG).sum()
        # clinical correlation within patients: insula ALFF rises with pain
        assert roi.loc["insulaAntL", "t"] > 0 and roi.loc["insulaAntL", "p_uncorrected"] < 0.05, roi
        # mPFC-insula coupling: the insula seed's FC with mPFC is higher in patients
        fc = next(e for e in PLANTED_EFFECTS if e.metric == "fc")
        t_mpfc, _ = _in_sphere(group / "fcz-insulaAntL_contrast-CLBPvsHC_stat-t_statmap.nii.gz", fc.centre_mm, 10)
        assert t_mpfc.mean() > 1.0
    else:
        assert significant.empty, significant
        assert max(np.abs(tfce_inside).max(), np.abs(tfce_outside).max()) < ALPHA_LOG
        assert (roi["p_fwe"] >= 0.05).all(), roi
    design = pd.read_csv(group / "alff_contrast-CLBPvsHC_desc-design_design.tsv", sep="\t")
    assert list(design.columns) == ["participant_id", "group", "intercept", "age", "mean_fd"]
    clinical_design = pd.read_csv(group / "alff_contrast-painvas_desc-design_design.tsv", sep="\t")
    assert list(clinical_design.columns) == ["participant_id", "pain_vas", "intercept", "age", "mean_fd"]
    assert len(clinical_design) == 8
