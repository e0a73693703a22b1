"""Group statistics against plain OLS, nilearn's permuted_ols and scipy's FDR; planted effects and null data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from clbp_bidsapp.core.stats import (
    DesignError,
    design_matrix,
    fdr_bh,
    ols_t,
    permutation_test,
    regression_design,
)


def _table(n_patients=10, n_controls=10, seed=0):
    rng = np.random.default_rng(seed)
    n = n_patients + n_controls
    return pd.DataFrame({
        "group": ["CLBP"] * n_patients + ["HC"] * n_controls,
        "age": rng.integers(20, 65, n),
        "sex": rng.choice(["M", "F"], n),
        "mean_fd": rng.uniform(0.05, 0.3, n),
        "site": rng.choice(["a", "b"], n),
    })  # fmt: skip


def _design(table, **kwargs):
    return design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC", **kwargs)


def test_permutation_t_equals_ordinary_least_squares():
    table = _table()
    design = _design(table, covariates=["age", "sex", "mean_fd"], factors=["site"])
    rng = np.random.default_rng(1)
    data = rng.standard_normal((20, 50)) + 0.02 * table["age"].to_numpy()[:, None]
    result = permutation_test(data, design, n_permutations=50, seed=0)
    contrast = np.zeros(design.matrix.shape[1])
    contrast[design.tested] = 1
    np.testing.assert_allclose(result.t, ols_t(data, design.matrix, contrast), rtol=1e-8)
    # and OLS against scipy's two-sample t test when there are no covariates
    simple = _design(table)
    t_ref = stats.ttest_ind(data[:10], data[10:]).statistic
    np.testing.assert_allclose(ols_t(data, simple.matrix, np.array([1.0, 0.0])), t_ref, rtol=1e-8)


def test_p_values_agree_with_nilearn_permuted_ols():
    from nilearn.mass_univariate import permuted_ols

    table = _table(8, 8, seed=2)
    design = _design(table, covariates=["age"])
    rng = np.random.default_rng(3)
    data = rng.standard_normal((16, 30))
    data[:8, :5] += 1.2
    ours = permutation_test(data, design, n_permutations=2000, seed=0)
    ref = permuted_ols(design.matrix[:, :1], data, confounding_vars=design.matrix[:, 2:], model_intercept=True,
                       n_perm=2000, two_sided_test=True, random_state=0, output_type="dict", verbose=0)  # fmt: skip
    np.testing.assert_allclose(ours.t, ref["t"][0], rtol=1e-6)
    p_ref = 10 ** -ref["logp_max_t"][0]
    mc_error = 3 * np.sqrt(0.25 / 2000) + 0.01
    assert np.abs(ours.p_fwe - p_ref).max() < mc_error


def test_planted_effect_is_found_and_null_data_stay_below_alpha():
    mask = np.zeros((8, 9, 10), dtype=bool)
    mask[1:7, 1:8, 1:9] = True
    v = int(mask.sum())
    table = _table(10, 10, seed=4)
    design = _design(table, covariates=["age"])
    rng = np.random.default_rng(5)
    data = rng.standard_normal((20, v))
    blob = np.zeros(mask.shape, dtype=bool)
    blob[2:5, 3:6, 3:6] = True
    effect = blob[mask]
    data[:10, effect] += 2.5
    result = permutation_test(data, design, n_permutations=500, seed=0, mask=mask, cluster_threshold=3.0)
    assert (result.p_fwe[effect] < 0.05).mean() > 0.4  # residual permutation keeps the effect in the null
    assert (result.p_fwe[~effect] < 0.05).mean() < 0.01
    assert result.cluster_p_fwe.min() < 0.05
    # family-wise error on null data: at most ~5% of datasets have any FWE-significant voxel
    false_positives = 0
    for seed in range(30):
        null = np.random.default_rng(100 + seed).standard_normal((20, v))
        if (permutation_test(null, design, n_permutations=200, seed=seed).p_fwe < 0.05).any():
            false_positives += 1
    assert false_positives <= 5  # expected 1.5; P(>5) < 0.5 % under a binomial(30, 0.05)


def test_fdr_matches_scipy():
    p = np.random.default_rng(6).uniform(size=200) ** 3
    np.testing.assert_allclose(fdr_bh(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12)


def test_design_errors():
    table = _table()
    table.loc[3, "age"] = np.nan
    with pytest.raises(DesignError, match="covariate age is missing"):
        _design(table, covariates=["age"])
    table = _table()
    table["age"] = 40
    with pytest.raises(DesignError, match="covariate age is constant"):
        _design(table, covariates=["age"])
    with pytest.raises(DesignError, match=r"4 regressors .* for 4 participants"):
        _design(_table(2, 2), covariates=["age", "mean_fd"])


def test_regression_design_tests_a_clinical_score_like_ordinary_regression():
    """Pain score within patients: t equals scipy's linregress without covariates and OLS with them."""
    table = _table(16, 0, seed=3)
    rng = np.random.default_rng(3)
    table["pain_vas"] = rng.uniform(3, 8, 16)
    data = 0.8 * table["pain_vas"].to_numpy()[:, None] + rng.standard_normal((16, 30))
    design = regression_design(table, tested="pain_vas")
    assert design.names == ["pain_vas", "intercept"] and design.tested == 0
    result = permutation_test(data, design, n_permutations=200, seed=0)
    for v in (0, 7, 29):
        fit = stats.linregress(table["pain_vas"], data[:, v])
        assert result.t[v] == pytest.approx(fit.slope / fit.stderr, rel=1e-8)
    with_covariates = regression_design(table, tested="pain_vas", covariates=["age", "sex"])
    contrast = np.eye(with_covariates.matrix.shape[1])[0]
    t = permutation_test(data, with_covariates, n_permutations=10, seed=0).t
    np.testing.assert_allclose(t, ols_t(data, with_covariates.matrix, contrast), rtol=1e-8)
    assert (result.p_fwe < 0.05).sum() > 10, "a strong planted slope is found"
    table.loc[2, "pain_vas"] = np.nan
    with pytest.raises(DesignError, match="pain_vas is missing"):
        regression_design(table, tested="pain_vas")


def _tfce_problem(seed=7):
    mask = np.zeros((12, 14, 10), dtype=bool)
    mask[1:11, 1:13, 1:9] = True
    mask[6, 3:9, :] = False  # a wall with the blob on one side
    table = _table(10, 10, seed=seed)
    design = _design(table, covariates=["age"])
    rng = np.random.default_rng(seed)
    volumes = ndimage.gaussian_filter(rng.standard_normal((20, *mask.shape)), (0, 1, 1, 1))
    data = volumes[:, mask] / volumes[:, mask].std()
    blob = np.zeros(mask.shape, dtype=bool)
    blob[2:5, 3:7, 3:6] = True
    data[:10, blob[mask]] += 2.5
    return mask, design, data, blob[mask]


def test_tfce_fwe_agrees_with_nilearn_permuted_ols():
    import nibabel as nib
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    mask, design, data, effect = _tfce_problem()
    n_perm = 500
    ours = permutation_test(data, design, n_permutations=n_perm, seed=0, mask=mask, tfce=True)
    masker = NiftiMasker(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4))).fit()
    ref = permuted_ols(design.matrix[:, :1], data, confounding_vars=design.matrix[:, 2:], model_intercept=True,
                       n_perm=n_perm, two_sided_test=True, random_state=0, masker=masker, tfce=True,
                       output_type="dict", verbose=0)  # fmt: skip
    np.testing.assert_allclose(ours.t, ref["t"][0], rtol=1e-6)
    np.testing.assert_allclose(ours.tfce, ref["tfce"][0], rtol=1e-6)  # same scores from the same t map
    p_ref = 10 ** -ref["logp_max_tfce"][0]
    assert (p_ref[effect] < 0.05).mean() > 0.5  # the comparison is not between two maps of ones
    mc_error = 3 * np.sqrt(0.25 / n_perm) + 0.01
    assert np.abs(ours.p_tfce_fwe - p_ref).max() < mc_error
    # the null maxima come from the same distribution (both are dominated by the planted blob)
    assert stats.ks_2samp(ours.max_tfce_null[1:], ref["h0_max_tfce"][0]).pvalue > 0.001


def test_tfce_p_values_follow_the_max_statistic_convention():
    from clbp_bidsapp.core.tfce import tfce

    mask, design, data, effect = _tfce_problem(seed=8)
    results = {}
    for two_sided in (True, False):
        results[two_sided] = result = permutation_test(data, design, n_permutations=120, seed=1, mask=mask, tfce=True,
                                  two_sided=two_sided, block=50)  # fmt: skip
        np.testing.assert_allclose(result.tfce, tfce(result.t, mask, two_sided=two_sided), rtol=1e-12)
        assert result.max_tfce_null[0] == pytest.approx(np.abs(result.tfce).max(), rel=1e-12)  # identity first
        manual = (result.max_tfce_null[None, :] >= np.abs(result.tfce)[:, None] * (1 - 1e-9)).mean(axis=1)
        np.testing.assert_array_equal(result.p_tfce_fwe, manual)
        assert result.p_tfce_fwe.min() >= 1 / 120
        assert (result.p_tfce_fwe[effect] < 0.05).mean() > 0.5
        assert result.p_fwe is not None and result.cluster_p_fwe is None  # the other outputs are unchanged
    plain = permutation_test(data, design, n_permutations=120, seed=1, mask=mask, block=50)
    assert plain.tfce is None and plain.p_tfce_fwe is None and plain.max_tfce_null is None
    np.testing.assert_array_equal(plain.p_fwe, results[True].p_fwe)  # TFCE changes nothing else
    np.testing.assert_array_equal(plain.max_null, results[True].max_null)
    with pytest.raises(ValueError, match="mask"):
        permutation_test(data, design, n_permutations=10, tfce=True)


def test_tfce_null_data_family_wise_error():
    # TFCE FWE on smooth null data: at most 2 of 12 datasets may have any p < 0.05 (expected 0.6;
    # P(> 2) = 2 % under a binomial(12, 0.05)); fails if the observed map were compared with a too small null
    mask, design, _, _ = _tfce_problem()
    hits = 0
    for seed in range(12):
        rng = np.random.default_rng(200 + seed)
        volumes = ndimage.gaussian_filter(rng.standard_normal((20, *mask.shape)), (0, 1, 1, 1))
        result = permutation_test(volumes[:, mask], design, n_permutations=100, seed=seed, mask=mask, tfce=True)
        hits += bool((result.p_tfce_fwe < 0.05).any())
    assert hits <= 2
