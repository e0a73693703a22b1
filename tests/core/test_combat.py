"""ComBat fit/apply against neuroCombat (Fortin 2018) and a direct implementation of the train/apply split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from clbp_bidsapp.core.combat import ComBat, ComBatTransformer, CovariateRegressor, with_metadata


def _data(seed=0, n_per=(12, 15, 10), p=53):
    rng = np.random.default_rng(seed)
    batch = np.repeat(["a", "b", "c"][: len(n_per)], n_per)
    n = batch.size
    age = rng.uniform(20, 60, n).astype(np.float32).astype(np.float64)  # neuroCombat casts covariates to float32
    sex = (rng.random(n) < 0.5).astype(np.float64)
    codes = np.unique(batch, return_inverse=True)[1]
    shift = rng.normal(size=(len(n_per), p)) * 2
    scale = rng.uniform(0.5, 2.0, size=(len(n_per), p))
    x = 5 + 0.03 * age[:, None] + 0.5 * sex[:, None] + shift[codes] + scale[codes] * rng.normal(size=(n, p))
    return x, batch, np.c_[age, sex]


def _neurocombat(x, batch, cov, **kwargs):
    from neuroCombat import neuroCombat

    covars = pd.DataFrame({"site": batch, "age": cov[:, 0], "sex": cov[:, 1]})
    out = neuroCombat(x.T.copy(), covars, "site", continuous_cols=["age", "sex"], **kwargs)  # (features, samples)
    return out["data"].T, out["estimates"]


@pytest.mark.parametrize("eb", [True, False])
def test_fit_transform_equals_neurocombat(eb):
    x, batch, cov = _data()
    ref, est = _neurocombat(x, batch, cov, eb=eb)
    model = ComBat(eb=eb).fit(x, batch, cov)
    ours = model.transform(x, batch, cov)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(model.gamma_star_, est["gamma.star"], atol=1e-8)
    np.testing.assert_allclose(model.var_pooled_, est["var.pooled"].ravel(), rtol=1e-10)
    assert not np.allclose(ours, x)


def test_transform_of_new_rows_uses_the_training_model_only():
    """Apply = standardise with the training grand mean/covariate betas/pooled variance, then remove the training
    sites' EB location/scale; the test rows' own covariates enter (unlike neuroCombatFromTraining)."""
    x, batch, cov = _data(1)
    train = np.arange(x.shape[0]) % 3 != 0
    model = ComBat().fit(x[train], batch[train], cov[train])
    # the training model itself must be what neuroCombat estimates on the training rows
    _, est = _neurocombat(x[train], batch[train], cov[train])
    test = ~train
    new = model.transform(x[test], batch[test], cov[test])
    # straightforward re-implementation from neuroCombat's estimates
    beta_cov = model.covariate_beta_
    mean = est["stand.mean"][:, 0] + cov[test] @ beta_cov
    sd = np.sqrt(est["var.pooled"].ravel())
    codes = np.searchsorted(est["batches"].astype(str), batch[test])
    expected = ((x[test] - mean) / sd - est["gamma.star"][codes]) / np.sqrt(est["delta.star"][codes]) * sd + mean
    np.testing.assert_allclose(new, expected, atol=1e-8)
    # the test rows do not change the model: transforming them twice or in pieces gives the same rows
    np.testing.assert_allclose(model.transform(x[test][:5], batch[test][:5], cov[test][:5]), new[:5])


def test_unseen_site_is_an_error_unless_self_policy():
    x, batch, cov = _data(2)
    keep = batch != "c"
    model = ComBat().fit(x[keep], batch[keep], cov[keep])
    with pytest.raises(ValueError, match="site 'c' was not in the ComBat training data"):
        model.transform(x[~keep], batch[~keep], cov[~keep])
    selfish = ComBat(unseen="self").fit(x[keep], batch[keep], cov[keep])
    out = selfish.transform(x[~keep], batch[~keep], cov[~keep])
    # the new site's location is removed: its mean moves to the training grand mean (+ covariate effects)
    before = np.abs(x[~keep].mean(axis=0) - x[keep].mean(axis=0)).mean()
    after = np.abs(out.mean(axis=0) - x[keep].mean(axis=0)).mean()
    assert after < 0.3 * before
    # seen sites are unaffected by the policy
    np.testing.assert_allclose(
        selfish.transform(x[keep], batch[keep], cov[keep]), model.transform(x[keep], batch[keep], cov[keep])
    )


def test_inputs_are_not_mutated_and_constant_features_pass_through():
    x, batch, cov = _data(3)
    x[:, 4] = 7.0
    copy = x.copy()
    out = ComBat().fit_transform(x, batch, cov)
    np.testing.assert_array_equal(x, copy)
    np.testing.assert_array_equal(out[:, 4], 7.0)
    assert np.isfinite(out).all()


def test_errors():
    x, batch, cov = _data(4)
    with pytest.raises(ValueError, match="at least two samples per site"):
        ComBat().fit(x[:13], batch[:13], cov[:13])
    with pytest.raises(ValueError, match="rank deficient"):
        ComBat().fit(x, batch, np.c_[cov, np.ones(len(x))])
    with pytest.raises(ValueError, match="not fitted"):
        ComBat().transform(x, batch, cov)


def test_sklearn_adapters_in_a_pipeline_match_the_core_object():
    x, batch, cov = _data(5)
    X = with_metadata(x, batch, cov)
    pipe = Pipeline([("combat", ComBatTransformer(n_meta=3)), ("covariates", CovariateRegressor(n_meta=3))])
    train = np.arange(len(x)) % 4 != 0
    pipe.fit(X[train])
    out = pipe.transform(X[~train])
    harmonised = ComBat().fit(x[train], batch[train], cov[train]).transform(x[~train], batch[~train], cov[~train])
    # covariate regression fitted on the (harmonised) training rows, by lstsq
    h_train = ComBat().fit_transform(x[train], batch[train], cov[train])
    design = np.c_[np.ones(train.sum()), cov[train]]
    beta = np.linalg.lstsq(design, h_train, rcond=None)[0][1:]
    expected = harmonised - (cov[~train] - cov[train].mean(axis=0)) @ beta
    np.testing.assert_allclose(out, expected, atol=1e-8)
    assert out.shape == (int((~train).sum()), x.shape[1])
