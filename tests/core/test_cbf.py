"""CBF kernels (core/perfusion.py) against straightforward implementations of their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sstats

from clbp_bidsapp.core import perfusion


@pytest.fixture
def maps():
    rng = np.random.default_rng(5)
    cbf = rng.normal(50, 12, (7, 8, 9))
    cbf[0, 0, :3] = np.nan  # voxels without a CBF value
    gm = rng.uniform(0, 1, (7, 8, 9))
    return cbf, gm


def test_mean_tissue_cbf_is_the_mean_over_grey_matter_voxels_with_values(maps):
    cbf, gm = maps
    values = [cbf[i, j, k] for i in range(7) for j in range(8) for k in range(9)
              if gm[i, j, k] > 0.5 and not np.isnan(cbf[i, j, k])]  # fmt: skip
    assert perfusion.mean_tissue_cbf(cbf, gm) == pytest.approx(sum(values) / len(values), rel=1e-12)
    assert perfusion.mean_tissue_cbf(cbf, gm, threshold=0.9) != pytest.approx(sum(values) / len(values))
    assert np.isnan(perfusion.mean_tissue_cbf(cbf, np.zeros_like(gm)))


def test_relative_cbf_has_grey_matter_mean_one_and_refuses_a_non_positive_reference(maps):
    cbf, gm = maps
    relative = perfusion.relative_cbf(cbf, reference=perfusion.mean_tissue_cbf(cbf, gm))
    assert perfusion.mean_tissue_cbf(relative, gm) == pytest.approx(1.0, rel=1e-12)
    assert np.allclose(relative * perfusion.mean_tissue_cbf(cbf, gm), cbf, equal_nan=True)
    for bad in (0.0, -3.0, float("nan")):
        assert np.isnan(perfusion.relative_cbf(cbf, reference=bad)).all()


@pytest.mark.parametrize(
    ("mean_gm", "qei", "expected"),
    [
        (55.0, 0.8, None),
        (55.0, None, None),  # no QC table: not a reason
        (9.9, 0.8, "outside [10, 150]"),
        (-5.0, 0.8, "outside [10, 150]"),
        (151.0, 0.8, "outside [10, 150]"),
        (55.0, 0.59, "QEI 0.590 below --cbf-min-qei 0.6"),
        (float("nan"), 0.8, "no grey-matter voxel"),
    ],
)
def test_quality_rules(mean_gm, qei, expected):
    problem = perfusion.quality_problem(mean_gm_cbf=mean_gm, qei=qei, gm_range=(10, 150), min_qei=0.6)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem


def test_group_effect_of_a_two_group_design_is_students_t_test():
    rng = np.random.default_rng(2)
    patients, controls = rng.normal(1.2, 0.1, 7), rng.normal(1.0, 0.1, 6)
    values = np.r_[patients, controls]
    design = np.c_[np.r_[np.ones(7), np.zeros(6)], np.ones(13)]
    effect = perfusion.group_effect(values, design, tested=0)
    test = sstats.ttest_ind(patients, controls, equal_var=True)
    pooled = np.sqrt(((patients.var(ddof=1) * 6) + (controls.var(ddof=1) * 5)) / 11)
    assert effect.estimate == pytest.approx(patients.mean() - controls.mean(), rel=1e-10)
    assert effect.t == pytest.approx(test.statistic, rel=1e-10)
    assert effect.p == pytest.approx(test.pvalue, rel=1e-8)
    assert effect.dof == 11
    half = sstats.t.ppf(0.975, 11) * pooled * np.sqrt(1 / 7 + 1 / 6)
    assert (effect.ci_low, effect.ci_high) == pytest.approx((effect.estimate - half, effect.estimate + half))
    assert effect.standardised == pytest.approx((patients.mean() - controls.mean()) / pooled)  # Cohen's d


def test_group_effect_with_a_covariate_matches_the_normal_equations():
    rng = np.random.default_rng(3)
    n = 15
    design = np.c_[np.r_[np.ones(8), np.zeros(7)], np.ones(n), rng.normal(0, 1, n)]
    values = design @ np.array([0.3, 1.0, 0.5]) + rng.normal(0, 0.2, n)
    effect = perfusion.group_effect(values, design, tested=0)
    xtx_inv = np.linalg.inv(design.T @ design)
    beta = xtx_inv @ design.T @ values
    residual = values - design @ beta
    se = np.sqrt(residual @ residual / (n - 3) * xtx_inv[0, 0])
    assert effect.estimate == pytest.approx(beta[0])
    assert effect.se == pytest.approx(se)
    assert effect.p == pytest.approx(2 * sstats.t.sf(abs(beta[0] / se), n - 3))
    with pytest.raises(ValueError, match="no residual degrees of freedom"):
        perfusion.group_effect(values[[0, 8, 9]], design[[0, 8, 9]], tested=0)


@pytest.mark.parametrize(
    ("bold", "cbf", "p", "status"),
    [
        (1, 1, 0.01, "concordant"),
        (-1, -1, 0.01, "concordant"),
        (1, -1, 0.01, "discordant"),
        (-1, 1, 0.049, "discordant"),
        (1, 1, 0.05, "no CBF effect"),
        (1, -1, 0.3, "no CBF effect"),
        (1, 1, float("nan"), "no CBF effect"),
    ],
)
def test_concordance_status(bold, cbf, p, status):
    assert perfusion.concordance(bold, cbf, p) == status


def test_region_means():
    data = np.arange(12, dtype=float).reshape(3, 4)
    assert perfusion.region_means(data, np.array([True, False, True, False])).tolist() == [1.0, 5.0, 9.0]
    assert perfusion.region_means(data, np.array([3])).tolist() == [3.0, 7.0, 11.0]
    with pytest.raises(ValueError):
        perfusion.region_means(data, np.zeros(4, dtype=bool))
