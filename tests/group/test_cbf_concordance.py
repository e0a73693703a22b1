"""Group-level CBF on simulated data: the planted CBF effects reach FWE where planted, and the BOLD-CBF concordance
marks a BOLD cluster with a CBF change of the same sign concordant and one of the opposite sign discordant; null
data show neither.

The CBF maps are the generator's (``testing.synthetic.cbf_volume``: GM/WM ~60/25 mL/100 g/min, global factor,
smooth and white noise), made relative and smoothed as the participant level does, and tested with the
permutation engine of the voxelwise GLM. The BOLD clusters are the generator's planted spheres (insula ALFF up,
parahippocampal ReHo up), so that this test does not need the BOLD pipeline; the full command-line chain on
planted data is benchmarks/bench_cbf_concordance.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from clbp_bidsapp.core import perfusion, standardize
from clbp_bidsapp.core.stats import design_matrix, permutation_test
from clbp_bidsapp.group.maps import GroupMaps
from clbp_bidsapp.group.perfusion import concordance_tables
from clbp_bidsapp.group.voxelwise import FamilyMember, MetricResult, cluster_table
from clbp_bidsapp.testing import synthetic

N_PER_GROUP = 6
ALPHA_FWE = 0.05


def _relative_smoothed(values: np.ndarray, grid) -> np.ndarray:
    relative = perfusion.relative_cbf(values, reference=perfusion.mean_tissue_cbf(values, grid.gm))
    volume = np.zeros(grid.mask.shape)
    volume[grid.mask] = relative
    return standardize.smooth_volume(volume, mask=grid.mask, fwhm_mm=6.0, voxel_size_mm=(4.0, 4.0, 4.0))[grid.mask]


def _result(metric, t, labels, clusters, grid) -> MetricResult:
    member = FamilyMember(z=t, null_max_z=np.zeros(1), participants=(), p_floor=0.01, t=t, cluster_labels=labels,
                          grid=(grid.mask, grid.affine), prefix=metric)  # fmt: skip
    return MetricResult(metric, "CLBPvsHC", 2 * N_PER_GROUP, 0, None, clusters, member=member)


def _planted_bold(grid) -> list[MetricResult]:
    """ALFF and ReHo results whose one significant cluster (positive) is the generator's planted sphere."""
    results = []
    for effect in synthetic.PLANTED_EFFECTS:
        if effect.name not in synthetic.CBF_EFFECTS:
            continue
        inside = synthetic._sphere(grid.coords, effect.centre_mm, effect.radius_mm)
        t = np.where(inside, 4.0, 0.0)
        clusters = pd.DataFrame([{"cluster": 1, "sign": "+", "voxels": int(inside.sum()), "peak_x": effect.centre_mm[0],
                                  "peak_y": effect.centre_mm[1], "peak_z": effect.centre_mm[2],
                                  "harvard_oxford": effect.name, "p_fwe_cluster": 0.01}])  # fmt: skip
        results.append(_result(effect.metric, t, inside.astype(int), clusters, grid))
    return results


@pytest.fixture(scope="module", params=[True, False], ids=["planted", "null"])
def cbf_study(request):
    effects = request.param
    grid = synthetic._grid(4)
    rng = np.random.default_rng(21)
    groups = ["CLBP"] * N_PER_GROUP + ["HC"] * N_PER_GROUP
    data = np.array([
        _relative_smoothed(synthetic.cbf_volume(rng, grid, voxel_size=4, patient=g == "CLBP", effects=effects), grid)
        for g in groups
    ])  # fmt: skip
    table = pd.DataFrame({"participant_id": [f"{i:02d}" for i in range(1, 13)], "group": groups})
    design = design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC")
    cbf = GroupMaps("rcbf", list(table["participant_id"]), data, grid.mask, grid.affine)
    threshold = float(sstats.t.isf(0.001 / 2, len(groups) - 2))
    test = permutation_test(data, design, n_permutations=200, seed=0, mask=grid.mask, cluster_threshold=threshold)
    clusters = cluster_table(test, grid.mask, grid.affine)
    cbf_result = _result("rcbf", test.t, test.cluster_labels, clusters, grid)
    forward, reverse = concordance_tables(_planted_bold(grid), [cbf_result], cbf=cbf, design=design)
    return effects, grid, test, forward, reverse, data


def _sphere(grid, name, margin=4.0):
    effect = next(e for e in synthetic.PLANTED_EFFECTS if e.name == name)
    return synthetic._sphere(grid.coords, effect.centre_mm, effect.radius_mm + margin)


def test_planted_cbf_effects_reach_fwe_where_planted_only(cbf_study):
    effects, grid, test, _, _, _ = cbf_study
    significant = test.p_fwe < ALPHA_FWE
    planted = _sphere(grid, "insula_alff") | _sphere(grid, "parahippocampal_reho")
    if effects:
        for name, direction in synthetic.CBF_EFFECTS.items():
            inside = _sphere(grid, name)
            assert significant[inside].any(), f"{name}: no FWE-significant CBF voxel where planted"
            assert np.sign(test.t[inside & significant]).tolist() == [1.0 if direction == "+" else -1.0] * int(
                (inside & significant).sum()
            )
        assert not significant[~planted].any(), "FWE-significant CBF voxels away from the planted effects"
    else:
        assert not significant.any()


def test_concordance_marks_the_concordant_and_the_discordant_cluster(cbf_study):
    effects, _, _, forward, reverse, _ = cbf_study
    status = forward.set_index("map")["status"].to_dict()
    if effects:
        assert status == {"alff": "concordant", "reho": "discordant"}
        by_map = forward.set_index("map")
        assert by_map.loc["alff", "cbf_ci_low"] > 0 and by_map.loc["reho", "cbf_ci_high"] < 0
        assert by_map.loc["alff", "cbf_coverage"] == 1.0
        assert set(reverse["status"]) <= {"BOLD counterpart, same sign", "BOLD counterpart, opposite sign",
                                          "no BOLD counterpart"}  # fmt: skip
        assert "BOLD counterpart, same sign" in set(reverse["status"])
        assert "BOLD counterpart, opposite sign" in set(reverse["status"])
    else:
        assert status == {"alff": "no CBF effect", "reho": "no CBF effect"}
        assert reverse.empty or not (reverse["status"] != "no BOLD counterpart").any()


def test_the_cluster_effect_is_the_t_test_of_the_cluster_means(cbf_study):
    """The table's effect, CI and p over a cluster equal a two-sample t-test of the participants' cluster means."""
    _, grid, _, forward, _, data = cbf_study
    row = forward.set_index("map").loc["alff"]
    insula = next(e for e in synthetic.PLANTED_EFFECTS if e.name == "insula_alff")
    means = data[:, synthetic._sphere(grid.coords, insula.centre_mm, insula.radius_mm)].mean(axis=1)
    test = sstats.ttest_ind(means[:N_PER_GROUP], means[N_PER_GROUP:], equal_var=True)
    assert row["cbf_effect"] == pytest.approx(means[:N_PER_GROUP].mean() - means[N_PER_GROUP:].mean(), abs=1e-6)
    assert row["cbf_p"] == pytest.approx(test.pvalue, abs=1e-5)
    assert row["cbf_participants"] == 2 * N_PER_GROUP
    assert row["cbf_ci_low"] < row["cbf_effect"] < row["cbf_ci_high"]
