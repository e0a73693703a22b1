"""ComBat site harmonisation as a fit/apply object that can sit inside a scikit-learn Pipeline.

ComBat (Johnson, Li & Rabinovic 2007) removes additive and multiplicative batch (site/scanner) effects with
empirical-Bayes shrinkage of the per-site location and scale across features; Fortin et al. (2017, 2018)
brought it to neuroimaging (the ``neuroCombat`` package). Model, for feature ``g`` of sample ``j`` at site ``i``::

    y_ijg = alpha_g + x_ij' beta_g + gamma_ig + delta_ig * eps_ijg

:class:`ComBat` estimates ``alpha`` (grand mean, site coefficients weighted by site size), ``beta`` (covariate
effects to preserve), the pooled residual variance and the EB-shrunk ``gamma*``/``delta*`` on the rows given to
:meth:`ComBat.fit` only (the training fold) and applies them to any rows with :meth:`ComBat.transform`.
On the same data, ``fit`` + ``transform`` reproduces ``neuroCombat`` 0.2.12 (parametric EB, same convergence
rule as sva's ``it.sol``) to floating-point precision; ``tests/core/test_combat.py`` checks it.

Why our own implementation
--------------------------
- ``neuroCombat`` (0.2.12, the PyPI release) fits and harmonises the same samples in one call. Its
  ``neuroCombatFromTraining`` is marked "under development" and applies the *training* samples' average covariate
  effect (``mod.mean.mean(axis=1)``) to every new sample instead of the new sample's own covariates, so it cannot
  be used to apply a training-fold model to a test fold.
- ``neuroHarmonize`` (2.5.2, checked with ``pip download --no-deps``) has a learn/apply split, but its metadata
  requires ``numpy<2``, ``pandas<3``, ``statsmodels`` and ``neuroCombat==0.2.12``, which conflicts with this
  project's stack (numpy 2.x, pandas 3.x).
- Neither is a scikit-learn transformer, so neither can be cross-validated inside a ``Pipeline``.

Labels never enter ComBat here: the covariates preserved are the nuisance/biological ones the caller passes
(age, sex, mean FD). Passing the diagnosis would require the test rows' labels at ``transform`` time (a leak).

Unseen sites
------------
``transform`` on a site that was not in the training rows raises ``ValueError`` unless ``unseen="self"``:
then the new site's rows are standardised with the training model (grand mean, covariate effects, pooled
variance) and its own location/scale are estimated *from its own feature values* (all of its rows given to that
``transform`` call, at least two; no labels) with the same empirical-Bayes shrinkage. This is the policy of the
leave-one-site-out validation in :mod:`clbp_bidsapp.core.ml`: it is transductive (the test site's rows are
harmonised together) but label-free, so it cannot leak the diagnosis; it assumes the held-out site's group mix
is not extreme (a site of patients only would have its group effect absorbed in its location).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

CONVERGENCE = 1e-4  # sva / neuroCombat it.sol relative-change criterion
MAX_ITERATIONS = 1000


def _as_covariates(covariates, n: int) -> np.ndarray:
    if covariates is None:
        return np.zeros((n, 0))
    c = np.asarray(covariates, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.shape[0] != n:
        raise ValueError(f"covariates have {c.shape[0]} rows, features {n}")
    if not np.isfinite(c).all():
        raise ValueError("covariates contain NaN or infinite values")
    return c


def _priors(gamma_hat: np.ndarray, delta_hat: np.ndarray) -> tuple[float, float, float, float]:
    """Hyper-parameters of one site's priors across features (Johnson 2007): gamma ~ N, delta ~ InvGamma."""
    gamma_bar = float(np.mean(gamma_hat))
    t2 = float(np.var(gamma_hat, ddof=1))
    m = float(np.mean(delta_hat))
    s2 = float(np.var(delta_hat, ddof=1))
    a = (2 * s2 + m**2) / s2
    b = (m * s2 + m**3) / s2
    return gamma_bar, t2, a, b


def _shrink(s: np.ndarray, *, eb: bool) -> tuple[np.ndarray, np.ndarray]:
    """EB-shrunk location and scale of one site's standardised rows ``s`` (rows, features).

    Parametric iteration of sva's ``it.sol`` (posterior mean of gamma given delta, posterior of delta given gamma)
    until the largest relative change is below 1e-4, with sva/neuroCombat's criterion kept as is (relative to the
    signed previous value) so results match the reference implementations.
    """
    n = s.shape[0]
    if n < 2:
        raise ValueError("ComBat needs at least two rows per site to estimate its scale")
    gamma_hat = s.mean(axis=0)
    delta_hat = s.var(axis=0, ddof=1)
    delta_hat = np.where(delta_hat == 0, 1.0, delta_hat)
    if not eb:
        return gamma_hat, delta_hat
    gamma_bar, t2, a, b = _priors(gamma_hat, delta_hat)
    g_old, d_old = gamma_hat.copy(), delta_hat.copy()
    for _ in range(MAX_ITERATIONS):
        g_new = (t2 * n * gamma_hat + d_old * gamma_bar) / (t2 * n + d_old)
        sum2 = ((s - g_new) ** 2).sum(axis=0)
        d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(np.max(np.abs(g_new - g_old) / g_old), np.max(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if change <= CONVERGENCE or not np.isfinite(change):
            break
    return g_old, d_old


class ComBat:
    """ComBat harmonisation (Johnson 2007; Fortin 2017, 2018) with separate fit and apply.

    Parameters
    ----------
    eb : bool
        Empirical-Bayes shrinkage of the site location/scale (True, as ComBat) or plain per-site estimates.
    unseen : {"error", "self"}
        What :meth:`transform` does with a site absent from the training rows (see the module docstring).

    Attributes (after ``fit``)
    --------------------------
    sites_ : ndarray of the training site labels (sorted); grand_mean_ (features,); covariate_beta_
    (covariates, features); var_pooled_ (features,); gamma_star_, delta_star_ (sites, features);
    constant_ (features,) bool, features with zero pooled variance (passed through unchanged).
    """

    def __init__(self, *, eb: bool = True, unseen: str = "error") -> None:
        if unseen not in ("error", "self"):
            raise ValueError("unseen must be 'error' or 'self'")
        self.eb = eb
        self.unseen = unseen

    def fit(self, features: np.ndarray, batch: Sequence, covariates: np.ndarray | None = None) -> ComBat:
        """Learn the ComBat model on ``features`` (samples, features) of sites ``batch`` (samples,)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError("features must be 2-D (samples, features)")
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinite values")
        batch = np.asarray(batch)
        if batch.shape != (x.shape[0],):
            raise ValueError(f"batch has shape {batch.shape}, expected ({x.shape[0]},)")
        c = _as_covariates(covariates, x.shape[0])
        sites, codes, counts = np.unique(batch, return_inverse=True, return_counts=True)
        if (counts < 2).any():
            raise ValueError(
                f"ComBat needs at least two samples per site; site(s) {sites[counts < 2].tolist()} have one"
            )
        onehot = (codes[:, None] == np.arange(len(sites))[None, :]).astype(np.float64)
        design = np.hstack([onehot, c])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError(
                "ComBat design (sites + covariates) is rank deficient; a covariate is constant or confounded with site"
            )
        beta = np.linalg.solve(design.T @ design, design.T @ x)
        grand_mean = (counts / x.shape[0]) @ beta[: len(sites)]
        covariate_beta = beta[len(sites) :]
        var_pooled = ((x - design @ beta) ** 2).mean(axis=0)
        constant = var_pooled <= 1e-12 * np.maximum(1.0, grand_mean**2)
        var_pooled = np.where(constant, 1.0, var_pooled)
        s = (x - grand_mean - c @ covariate_beta) / np.sqrt(var_pooled)
        gamma, delta = [], []
        for k in range(len(sites)):
            g, d = _shrink(s[codes == k][:, ~constant], eb=self.eb)
            gamma.append(_fill(g, constant, 0.0))
            delta.append(_fill(d, constant, 1.0))
        self.sites_ = sites
        self.grand_mean_ = grand_mean
        self.covariate_beta_ = covariate_beta
        self.var_pooled_ = var_pooled
        self.constant_ = constant
        self.gamma_star_ = np.array(gamma)
        self.delta_star_ = np.array(delta)
        return self

    def transform(self, features: np.ndarray, batch: Sequence, covariates: np.ndarray | None = None) -> np.ndarray:
        """Harmonised copy of ``features`` with the model learnt by :meth:`fit`."""
        if not hasattr(self, "sites_"):
            raise ValueError("ComBat is not fitted; call fit first")
        x = np.asarray(features, dtype=np.float64)
        batch = np.asarray(batch)
        if x.ndim != 2 or x.shape[1] != self.grand_mean_.size:
            raise ValueError(f"features must be (samples, {self.grand_mean_.size})")
        c = _as_covariates(covariates, x.shape[0])
        if c.shape[1] != self.covariate_beta_.shape[0]:
            raise ValueError(f"expected {self.covariate_beta_.shape[0]} covariate column(s), got {c.shape[1]}")
        sd = np.sqrt(self.var_pooled_)
        mean = self.grand_mean_ + c @ self.covariate_beta_
        s = (x - mean) / sd
        out = np.empty_like(s)
        known = {site: k for k, site in enumerate(self.sites_.tolist())}
        for site in np.unique(batch).tolist():
            rows = batch == site
            if site in known:
                g, d = self.gamma_star_[known[site]], self.delta_star_[known[site]]
            elif self.unseen == "self":
                g, d = _shrink(s[rows][:, ~self.constant_], eb=self.eb)
                g, d = _fill(g, self.constant_, 0.0), _fill(d, self.constant_, 1.0)
            else:
                raise ValueError(
                    f"site {site!r} was not in the ComBat training data (sites: {self.sites_.tolist()}); "
                    "use unseen='self' to harmonise a new site with its own location/scale"
                )
            out[rows] = (s[rows] - g) / np.sqrt(d)
        result = out * sd + mean
        result[:, self.constant_] = x[:, self.constant_]
        return result

    def fit_transform(self, features, batch, covariates=None) -> np.ndarray:
        return self.fit(features, batch, covariates).transform(features, batch, covariates)


def _fill(values: np.ndarray, constant: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(constant.shape, fill)
    out[~constant] = values
    return out


# -- scikit-learn adapters: metadata travels in the leading columns of X ------------------------------------------


def with_metadata(features: np.ndarray, batch: Sequence | None = None, covariates: np.ndarray | None = None):
    """``X`` for the pipelines: column 0 the site code, then the covariates, then the features.

    Site labels are coded 0, 1, ... in sorted order. ``n_meta`` of the pipeline steps is ``1 + covariates``.
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    codes = np.zeros(n) if batch is None else np.unique(np.asarray(batch), return_inverse=True)[1].astype(np.float64)
    c = _as_covariates(covariates, n)
    return np.hstack([codes[:, None], c, x])


class ComBatTransformer(TransformerMixin, BaseEstimator):
    """:class:`ComBat` on ``X = [site code, covariates..., features...]`` (see :func:`with_metadata`).

    The first ``n_meta`` columns are passed through unchanged (so a later step can use the covariates); only
    the features are harmonised. ``y`` is ignored: labels never enter ComBat.
    """

    def __init__(self, n_meta: int = 1, eb: bool = True, unseen: str = "error") -> None:
        self.n_meta = n_meta
        self.eb = eb
        self.unseen = unseen

    def _split(self, X):
        X = np.asarray(X, dtype=np.float64)
        return X[:, 0], X[:, 1 : self.n_meta], X[:, self.n_meta :]

    def fit(self, X, y=None):
        batch, cov, feats = self._split(X)
        self.combat_ = ComBat(eb=self.eb, unseen=self.unseen).fit(feats, batch, cov)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "combat_")
        batch, cov, feats = self._split(X)
        return np.hstack([np.asarray(X, dtype=np.float64)[:, : self.n_meta], self.combat_.transform(feats, batch, cov)])


class CovariateRegressor(TransformerMixin, BaseEstimator):
    """Remove covariate effects fitted on the training rows (OLS with intercept); drops the metadata columns.

    ``X = [site code, covariates..., features...]``; the output is the features minus ``covariates @ beta``
    with ``beta`` estimated on the rows given to ``fit`` (the training fold), so test rows are adjusted with the
    training model only. With no covariate column (``n_meta == 1``) it only drops the site column.
    """

    def __init__(self, n_meta: int = 1) -> None:
        self.n_meta = n_meta

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        cov, feats = X[:, 1 : self.n_meta], X[:, self.n_meta :]
        if cov.shape[1]:
            design = np.hstack([np.ones((X.shape[0], 1)), cov])
            beta, *_ = np.linalg.lstsq(design, feats, rcond=None)
            self.beta_ = beta[1:]
            self.centre_ = cov.mean(axis=0)
        else:
            self.beta_ = np.zeros((0, feats.shape[1]))
            self.centre_ = np.zeros(0)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "beta_")
        X = np.asarray(X, dtype=np.float64)
        cov, feats = X[:, 1 : self.n_meta], X[:, self.n_meta :]
        return feats - (cov - self.centre_) @ self.beta_
