"""Leak-free machine learning: nested cross-validation, leave-one-site-out and permutation tests (scikit-learn).

Everything that learns from data is a step of one scikit-learn ``Pipeline`` fitted on the training rows of each
fold only (Varoquaux et al. 2017; Poldrack, Huckins & Varoquaux 2020 on leakage in neuroimaging ML):

1. ``ComBatTransformer`` (:mod:`clbp_bidsapp.core.combat`; Johnson 2007, Fortin 2018) when harmonisation is on;
2. ``CovariateRegressor``: OLS removal of the covariates (age, sex, mean FD) fitted on the training rows;
3. ``VarianceThreshold`` (drops features constant in the training rows), ``StandardScaler``;
4. ``KBest``: univariate selection (ANOVA F / correlation F) of the ``k`` best training features, ``k`` tuned in
   the inner CV among ``k_best`` (a few strong features among many noisy ones need a small ``k``: a linear SVM
   on all 339 ROI features of the synthetic planted dataset reaches a balanced accuracy of 0.67, with k = 10
   0.83);
5. the model (linear SVM, RBF SVM, L2 logistic, elastic-net logistic, random forest; linear SVR, ridge).

The covariates and the site travel with the rows in the leading columns of ``X`` (:func:`core.combat.with_metadata`),
so the whole chain is one estimator that ``GridSearchCV`` can tune (inner CV) and that the outer CV and the
permutation test refit from scratch on every training fold.

Validation: repeated stratified k-fold (strata = label x site when there are several sites) with an inner
stratified k-fold grid search; or leave-one-site-out (ComBat then harmonises the held-out site with its own
label-free location/scale, see :mod:`core.combat`). Metrics are computed per repeat on the pooled out-of-fold
predictions; the reported value is the mean over repeats and the interval the 2.5-97.5 percentiles over repeats
(variability due to the split, not a sampling confidence interval).

Permutation test (Ojala & Garriga 2010): the statistic is the reported score itself (mean over the repeats of the
balanced accuracy, or of Pearson r, of the pooled out-of-fold predictions). For each permutation of the labels
(within exchangeability ``blocks``, e.g. sites, when given) the *whole* nested procedure is run again on the
permuted labels: the outer and inner splits are drawn from them with the same seeds, and the inner grid search
(hyper-parameters and ``k``), the label-free steps, the selection and the model are all refitted; so the null is
that of the very pipeline whose score is reported, and ``p = (1 + #{null >= observed}) / (1 + n_permutations)``
is exact for it. The inner grid search is a plain loop equal to ``GridSearchCV`` (same candidates in the same
order, same scoring, first best kept) that fits the label-free steps once per inner split instead of once per
candidate, which is what makes permuting the full pipeline affordable. Permutation orderings come from
``numpy.random.default_rng([seed, 1])``, so two calls with the same participants, blocks and seed permute
identically: :func:`max_statistic_p` uses that to correct over several models or feature sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from scipy import stats as sstats
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectorMixin, VarianceThreshold, f_classif, f_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import KFold, ParameterGrid, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

from clbp_bidsapp.core.combat import ComBatTransformer, CovariateRegressor, with_metadata
from clbp_bidsapp.core.exchangeability import block_codes, permute_within

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")
REGRESSION_METRICS = ("r", "mae", "r2")
ROC_GRID = np.linspace(0.0, 1.0, 101)


def _classifiers(seed: int) -> dict[str, tuple[BaseEstimator, dict[str, list]]]:
    return {
        "linear_svm": (SVC(kernel="linear", C=0.1, class_weight="balanced"), {"C": [0.01, 0.1, 1.0]}),
        "rbf_svm": (SVC(kernel="rbf", C=1.0, gamma="scale", class_weight="balanced"), {"C": [0.1, 1.0, 10.0]}),
        "logistic_l2": (
            LogisticRegression(C=0.1, l1_ratio=0.0, class_weight="balanced", max_iter=2000),
            {"C": [0.01, 0.1, 1.0]},
        ),
        "logistic_enet": (
            LogisticRegression(
                C=0.1, l1_ratio=0.5, solver="saga", class_weight="balanced", max_iter=2000, tol=1e-3, random_state=seed
            ),
            {"C": [0.1, 1.0], "l1_ratio": [0.2, 0.8]},
        ),
        "random_forest": (
            RandomForestClassifier(n_estimators=200, class_weight="balanced", random_state=seed, n_jobs=1),
            {"min_samples_leaf": [1, 3]},
        ),
    }


def _regressors(seed: int) -> dict[str, tuple[BaseEstimator, dict[str, list]]]:
    return {
        "svr": (SVR(kernel="linear", C=0.1), {"C": [0.01, 0.1, 1.0]}),
        "ridge": (Ridge(alpha=10.0), {"alpha": [1.0, 10.0, 100.0]}),
    }


CLASSIFIERS = tuple(_classifiers(0))
REGRESSORS = tuple(_regressors(0))


class KBest(SelectorMixin, BaseEstimator):
    """The ``k`` features with the largest univariate F (``f_classif`` or ``f_regression``) on the training rows.

    Like ``SelectKBest`` but ``k`` larger than the number of features keeps them all (silently), ties are broken
    by feature order, and NaN scores (constant features) rank last.
    """

    def __init__(self, k: int = 1000, task: str = "classification") -> None:
        self.k = k
        self.task = task

    def fit(self, X, y):
        func = f_classif if self.task == "classification" else f_regression
        with np.errstate(divide="ignore", invalid="ignore"):
            scores, _ = func(X, y)
        scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
        self.order_ = np.argsort(-scores, kind="stable")
        self.scores_, self.mask_ = scores, self.support_for(self.k)
        self.n_features_in_ = X.shape[1]
        return self

    def support_for(self, k: int) -> np.ndarray:
        """The mask of the ``k`` best features of the last fit (what a fit with ``k`` would keep)."""
        mask = np.zeros(self.order_.size, dtype=bool)
        mask[self.order_[: min(k, self.order_.size)]] = True
        return mask

    def _get_support_mask(self):
        return self.mask_


def build_pipeline(
    model: str,
    *,
    n_meta: int = 1,
    harmonize: bool = False,
    unseen_site: str = "error",
    k_best: int | Sequence[int] | None = 1000,
    task: str = "classification",
    seed: int = 0,
) -> tuple[Pipeline, dict[str, list]]:
    """The leak-free pipeline of ``model`` and its hyper-parameter grid (names prefixed with the step).

    ``X`` given to the pipeline is ``[site code, covariates..., features...]`` with ``n_meta = 1 + covariates``.
    ``k_best``: features kept by the selection step; several values are tuned by the grid (``select__k``) and the
    pipeline's own (untuned) value is the smallest; ``None``, 0 or ``()``: no selection.
    """
    zoo = _classifiers(seed) if task == "classification" else _regressors(seed)
    if model not in zoo:
        raise ValueError(f"unknown {task} model {model!r}; choose from {', '.join(zoo)}")
    estimator, grid = zoo[model]
    steps: list[tuple[str, Any]] = []
    if harmonize:
        steps.append(("combat", ComBatTransformer(n_meta=n_meta, unseen=unseen_site)))
    steps += [
        ("covariates", CovariateRegressor(n_meta=n_meta)),
        ("variance", VarianceThreshold()),
        ("scale", StandardScaler()),
    ]
    candidates = sorted({int(k) for k in ([k_best] if isinstance(k_best, int) else k_best or ()) if int(k) > 0})
    if candidates:
        steps.append(("select", KBest(k=candidates[0], task=task)))
    steps.append(("model", estimator))
    search = {f"model__{k}": v for k, v in grid.items()}
    if len(candidates) > 1:
        search["select__k"] = candidates
    return Pipeline(steps), search


@dataclass(frozen=True)
class Split:
    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray
    label: str = ""  # held-out site for leave-one-site-out


def kfold_splits(
    y: np.ndarray, *, strata: np.ndarray | None, n_splits: int, n_repeats: int, seed: int, task: str = "classification"
) -> list[Split]:
    """Repeated (stratified) k-fold; ``n_splits`` is lowered to the smallest stratum size when needed."""
    n = len(y)
    if task == "classification":
        strata = np.asarray(y) if strata is None else np.asarray(strata)
        smallest = int(np.unique(strata, return_counts=True)[1].min())
        k = max(2, min(n_splits, smallest)) if smallest >= 2 else max(2, min(n_splits, n // 2))
        if smallest < 2:
            strata = np.asarray(y)
            k = max(2, min(k, int(np.unique(y, return_counts=True)[1].min())))
        cv = RepeatedStratifiedKFold(n_splits=k, n_repeats=n_repeats, random_state=seed)
        it = cv.split(np.zeros(n), strata)
    else:
        k = max(2, min(n_splits, n // 2))
        it = RepeatedKFold(n_splits=k, n_repeats=n_repeats, random_state=seed).split(np.zeros(n))
    return [Split(i // k, i % k, train, test) for i, (train, test) in enumerate(it)]


def site_splits(sites: np.ndarray) -> list[Split]:
    """Leave-one-site-out: one fold per site (sorted), a single repeat."""
    sites = np.asarray(sites)
    return [
        Split(0, i, np.flatnonzero(sites != s), np.flatnonzero(sites == s), label=str(s))
        for i, s in enumerate(np.unique(sites))
    ]


def _inner_cv(task: str, n_splits: int, seed: int):
    if task == "classification":
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _scores(estimator, X) -> np.ndarray:
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype=np.float64)


def fit_predict(
    pipeline: Pipeline,
    grid: dict[str, list],
    X: np.ndarray,
    y: np.ndarray,
    split: Split,
    *,
    task: str,
    inner_splits: int,
    inner_sites: np.ndarray | None,
    search: bool,
    seed: int,
) -> tuple[Pipeline, np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit on ``split.train`` (inner grid search when ``search``) and predict ``split.test``.

    Returns the fitted pipeline, the predictions, the continuous scores (decision values) and the chosen
    hyper-parameters.
    """
    train, test = split.train, split.test
    estimator = clone(pipeline)
    params: dict[str, Any] = {}
    n_combinations = int(np.prod([len(v) for v in grid.values()])) if grid else 1
    if search and n_combinations > 1:
        ytr = y[train]
        if task == "classification":
            strata = (
                ytr
                if inner_sites is None
                else np.array([f"{a}|{b}" for a, b in zip(ytr, inner_sites[train], strict=True)])
            )
            smallest = int(np.unique(strata, return_counts=True)[1].min())
            if smallest < 2:
                strata, smallest = ytr, int(np.unique(ytr, return_counts=True)[1].min())
            k = max(2, min(inner_splits, smallest))
            cv = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(train, strata))
        else:
            k = max(2, min(inner_splits, len(train) // 2))
            cv = list(_inner_cv(task, k, seed).split(train))
        best = grid_search(estimator, grid, X[train], ytr, cv, task=task)
        estimator = clone(pipeline).set_params(**best).fit(X[train], ytr)
        params = {k.removeprefix("model__"): v for k, v in best.items()}
    else:
        estimator.fit(X[train], y[train])
    predictions = estimator.predict(X[test])
    scores = _scores(estimator, X[test]) if task == "classification" else np.asarray(predictions, dtype=np.float64)
    return estimator, predictions, scores, params


LABEL_FREE_STEPS = ("combat", "covariates", "variance", "scale")  # leading steps whose fit ignores y


def grid_search(pipeline: Pipeline, grid: dict[str, list], X, y, cv, *, task: str) -> dict[str, Any]:
    """The best candidate of ``grid``, exactly as ``GridSearchCV(pipeline, grid, cv=cv, scoring=...)`` picks it.

    Scoring is ROC AUC of the decision values (classification) or negative mean absolute error (regression);
    candidates are tried in ``ParameterGrid`` order and the first with the highest mean inner score wins, as in
    scikit-learn. The leading label-free steps (ComBat, covariates, variance filter, scaling: their fit ignores
    ``y`` and no candidate changes them) are fitted once per inner split instead of once per candidate, and the
    selection's ranking once per inner split for every ``k``.
    """
    names = [name for name, _ in pipeline.steps]
    steps_ok = names[-1] == "model" and set(names[:-1]) <= {*LABEL_FREE_STEPS, "select"}
    if not steps_ok or {key.split("__")[0] for key in grid} - {"model", "select"}:
        raise ValueError(f"grid_search needs label-free steps, an optional selection and the model, not {names}")
    prefix = Pipeline([step for step in pipeline.steps if step[0] in LABEL_FREE_STEPS])
    selector = pipeline.named_steps.get("select")
    model = pipeline.named_steps["model"]
    candidates = list(ParameterGrid(grid))
    scores = np.empty((len(candidates), len(cv)))
    for j, (train, test) in enumerate(cv):
        if len(prefix.steps):
            fitted = clone(prefix).fit(X[train])
            z_train, z_test = fitted.transform(X[train]), fitted.transform(X[test])
        else:
            z_train, z_test = X[train], X[test]
        ranked = clone(selector).fit(z_train, y[train]) if selector is not None else None
        for i, params in enumerate(candidates):
            columns = slice(None)
            if ranked is not None:
                columns = ranked.support_for(params.get("select__k", selector.k))
            model_params = {k.removeprefix("model__"): v for k, v in params.items() if k.startswith("model__")}
            fitted_model = clone(model).set_params(**model_params).fit(z_train[:, columns], y[train])
            if task == "classification":
                scores[i, j] = roc_auc_score(y[test], _scores(fitted_model, z_test[:, columns]))
            else:
                scores[i, j] = -mean_absolute_error(y[test], fitted_model.predict(z_test[:, columns]))
    means = scores.mean(axis=1)
    return candidates[int(np.argmax(means))]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, ROC AUC, sensitivity (patients = 1) and specificity."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    pos, neg = y_true == 1, y_true == 0
    both = pos.any() and neg.any()
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(y_true, scores)) if both else float("nan"),
        "sensitivity": float((y_pred[pos] == 1).mean()) if pos.any() else float("nan"),
        "specificity": float((y_pred[neg] == 0).mean()) if neg.any() else float("nan"),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Pearson r, mean absolute error and R² (1 - SS_res / SS_tot) of the predictions."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    constant = np.ptp(y_pred) == 0 or np.ptp(y_true) == 0
    r = float("nan") if constant else float(sstats.pearsonr(y_true, y_pred)[0])
    return {"r": r, "mae": float(mean_absolute_error(y_true, y_pred)), "r2": float(r2_score(y_true, y_pred))}


def _weights(estimator: Pipeline, n_features: int, n_meta: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight, selected) over the original features: the model's coefficients (linear models) or impurity
    importances (forest) mapped back through the variance and selection masks; zeros where not selected."""
    support = np.ones(n_features, dtype=bool)
    for name in ("variance", "select"):
        if name in estimator.named_steps:
            idx = np.flatnonzero(support)
            support = np.zeros(n_features, dtype=bool)
            support[idx[estimator.named_steps[name].get_support()]] = True
    model = estimator.named_steps["model"]
    weights = np.zeros(n_features)
    coef = getattr(model, "coef_", None) if getattr(model, "kernel", "linear") == "linear" else None
    if coef is not None:
        weights[support] = np.asarray(coef, dtype=np.float64).reshape(-1)
    elif hasattr(model, "feature_importances_"):
        weights[support] = model.feature_importances_
    return weights, support


@dataclass
class CVResult:
    """Outcome of :func:`nested_cv` for one model and one validation scheme."""

    model: str
    task: str
    scheme: str  # "kfold" or "loso"
    folds: pd.DataFrame  # one row per outer fold: repeat, fold, held_out, n_train, n_test, metrics, params
    repeats: pd.DataFrame  # one row per repeat: metrics on the pooled out-of-fold predictions
    predictions: pd.DataFrame  # repeat, fold, row, y_true, y_pred, score
    importance: pd.DataFrame  # feature, mean_weight, mean_abs_weight, selection_frequency, sign_consistency
    roc: pd.DataFrame | None  # fpr, tpr_mean, tpr_low, tpr_high (classification)
    summary: dict[str, Any]  # metric -> mean; metric_ci -> [low, high]; metric_sd; p_value; ...
    null: np.ndarray | None = None  # permutation null distribution of the statistic
    harmonized: bool = False
    notes: list[str] = field(default_factory=list)


def nested_cv(
    features: np.ndarray,
    y: np.ndarray,
    *,
    model: str,
    task: str = "classification",
    sites: np.ndarray | None = None,
    covariates: np.ndarray | None = None,
    harmonize: bool | str = "auto",
    scheme: str = "kfold",
    n_splits: int = 10,
    n_repeats: int = 10,
    inner_splits: int = 5,
    k_best: int | Sequence[int] | None = 1000,
    n_permutations: int = 0,
    blocks: np.ndarray | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> CVResult:
    """Nested cross-validation of one model on ``features`` (participants, features) and labels ``y``.

    Parameters
    ----------
    y : labels 0/1 (1 = patient) for classification; a continuous score for regression.
    sites : site label per row (optional). Several sites: outer/inner folds are stratified by label x site, and
        ComBat runs inside the pipeline when ``harmonize`` is True or "auto".
    covariates : (participants, covariates) removed inside the folds (and preserved by ComBat).
    scheme : "kfold" (repeated stratified k-fold) or "loso" (leave one site out; needs >= 2 sites).
    k_best : univariate selection inside the folds (None: none); several values are tuned in the inner CV.
    n_permutations : permutation test of the reported score (0: none): the whole nested procedure is rerun on
        each permutation of the labels (:func:`permutation_null`); statistic = mean balanced accuracy
        (classification) or mean Pearson r (regression) over the repeats, as reported.
    blocks : exchangeability block per row (e.g. the site): labels are permuted only within blocks; None: freely.
    seed : seeds the splits, the permutations and the stochastic models; the result is deterministic.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError("features must be (participants, features) with one label per participant")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    options = {k: v for k, v in locals().items() if k not in ("x", "y", "features")}
    # checked once here: scikit-learn's per-fit input and parameter validation is most of the cost of the
    # thousands of small fits of a nested permutation test
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return _nested_cv(x, y, **options)


def _nested_cv(
    x: np.ndarray,
    y: np.ndarray,
    *,
    model,
    task,
    sites,
    covariates,
    harmonize,
    scheme,
    n_splits,
    n_repeats,
    inner_splits,
    k_best,
    n_permutations,
    blocks,
    seed,
    progress,
) -> CVResult:
    if task == "classification":
        if set(np.unique(y).tolist()) - {0, 1} or len(np.unique(y)) < 2:
            raise ValueError("classification labels must be 0 and 1, both present")
        y = y.astype(int)
    else:
        y = y.astype(np.float64)
    site_arr = np.zeros(len(y), dtype=int) if sites is None else np.asarray(sites)
    n_sites = len(np.unique(site_arr))
    harmonized = bool(n_sites > 1 and (harmonize is True or harmonize == "auto"))
    cov = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    X = with_metadata(x, site_arr, cov)
    n_meta = X.shape[1] - x.shape[1]
    notes = []
    if scheme == "loso":
        if n_sites < 2:
            raise ValueError("leave-one-site-out needs at least two sites")
        splits = site_splits(site_arr)
        unseen = "self"
        notes.append(
            "leave-one-site-out: ComBat harmonises each held-out site with its own label-free location/scale"
            if harmonized
            else "leave-one-site-out without harmonisation"
        )
    elif scheme == "kfold":
        splits = outer_splits(y, site_arr, task=task, n_splits=n_splits, n_repeats=n_repeats, seed=seed)
        unseen = "error"
    else:
        raise ValueError("scheme must be 'kfold' or 'loso'")
    inner_sites = site_arr if task == "classification" and n_sites > 1 else None
    pipeline, grid = build_pipeline(
        model, n_meta=n_meta, harmonize=harmonized, unseen_site=unseen, k_best=k_best, task=task, seed=seed
    )
    metric_fn = _metric_fn(task)

    fold_rows, pred_rows = [], []
    weights, selected = [], []
    for split in splits:
        fitted, pred, score, params = fit_predict(
            pipeline,
            grid,
            X,
            y,
            split,
            task=task,
            inner_splits=inner_splits,
            inner_sites=inner_sites,
            search=True,
            seed=seed,
        )
        w, s = _weights(fitted, x.shape[1], n_meta)
        weights.append(w)
        selected.append(s)
        row = {
            "repeat": split.repeat,
            "fold": split.fold,
            "held_out": split.label or "n/a",
            "n_train": len(split.train),
            "n_test": len(split.test),
        }
        row.update(metric_fn(y[split.test], pred, score))
        row["params"] = ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "default"
        fold_rows.append(row)
        for i, p, sc in zip(split.test, pred, score, strict=True):
            pred_rows.append(
                {"repeat": split.repeat, "fold": split.fold, "row": int(i), "y_true": y[i], "y_pred": p, "score": sc}
            )
        if progress is not None:
            progress(f"{model} {scheme} repeat {split.repeat} fold {split.fold}")
    predictions = pd.DataFrame(pred_rows)
    repeats = _per_repeat(predictions, metric_fn)
    summary = _summarise(repeats, task)
    summary.update(
        {
            "n_participants": len(y),
            "n_features": int(x.shape[1]),
            "n_folds": len(splits),
            "n_repeats": int(predictions["repeat"].nunique()),
            "harmonized": harmonized,
        }
    )
    if task == "classification":
        summary["n_patients"] = int((y == 1).sum())
        summary["n_controls"] = int((y == 0).sum())
    importance = _importance(np.array(weights), np.array(selected))
    roc = _roc(predictions) if task == "classification" else None

    null = None
    summary["p_value"] = None
    if n_permutations > 0:
        observed = statistic(predictions, task)

        def rerun(y_perm: np.ndarray) -> list[Split]:
            if scheme == "loso":
                return splits
            return outer_splits(y_perm, site_arr, task=task, n_splits=n_splits, n_repeats=n_repeats, seed=seed)

        null = permutation_null(
            pipeline,
            grid,
            X,
            y,
            rerun,
            task=task,
            orderings=label_permutations(len(y), n_permutations, seed=seed, blocks=blocks),
            inner_splits=inner_splits,
            inner_sites=inner_sites,
            seed=seed,
            progress=progress,
        )
        summary["p_value"] = permutation_p(observed, null)
        summary["permutation_statistic"] = "balanced_accuracy" if task == "classification" else "r"
        summary["permutation_observed"] = float(observed)
        summary["n_permutations"] = int(n_permutations)
        summary["permutation_blocks"] = int(np.unique(blocks).size) if block_codes(blocks) is not None else 1
    return CVResult(
        model=model,
        task=task,
        scheme=scheme,
        folds=pd.DataFrame(fold_rows),
        repeats=repeats,
        predictions=predictions,
        importance=importance,
        roc=roc,
        summary=summary,
        null=null,
        harmonized=harmonized,
        notes=notes,
    )


def _metric_fn(task: str):
    if task == "classification":
        return classification_metrics
    return lambda t, p, s: regression_metrics(t, p)


def _per_repeat(predictions: pd.DataFrame, metric_fn) -> pd.DataFrame:
    rows = []
    for repeat, chunk in predictions.groupby("repeat", sort=True):
        row = {"repeat": int(repeat)}
        row.update(metric_fn(chunk["y_true"].to_numpy(), chunk["y_pred"].to_numpy(), chunk["score"].to_numpy()))
        rows.append(row)
    return pd.DataFrame(rows)


def _summarise(repeats: pd.DataFrame, task: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS:
        values = repeats[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            out[name], out[f"{name}_sd"], out[f"{name}_ci"] = None, None, [None, None]
            continue
        out[name] = float(values.mean())
        out[f"{name}_sd"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[f"{name}_ci"] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
    return out


def _importance(weights: np.ndarray, selected: np.ndarray) -> pd.DataFrame:
    mean = weights.mean(axis=0)
    sign = np.sign(mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        agree = ((np.sign(weights) == sign) & selected).sum(axis=0) / np.maximum(selected.sum(axis=0), 1)
    table = pd.DataFrame(
        {
            "feature": np.arange(weights.shape[1]),
            "mean_weight": mean,
            "mean_abs_weight": np.abs(weights).mean(axis=0),
            "selection_frequency": selected.mean(axis=0),
            "sign_consistency": agree,
        }
    )
    order = np.lexsort(
        (table["feature"].to_numpy(), -table["selection_frequency"].to_numpy(), -table["mean_abs_weight"].to_numpy())
    )
    return table.iloc[order].reset_index(drop=True)


def _roc(predictions: pd.DataFrame) -> pd.DataFrame:
    curves = []
    for _, chunk in predictions.groupby("repeat", sort=True):
        yt = chunk["y_true"].to_numpy()
        if len(np.unique(yt)) < 2:
            continue
        fpr, tpr, _ = roc_curve(yt, chunk["score"].to_numpy())
        curves.append(np.interp(ROC_GRID, fpr, tpr))
    curves_arr = np.array(curves) if curves else np.full((1, ROC_GRID.size), np.nan)
    curves_arr[:, 0] = 0.0
    return pd.DataFrame(
        {
            "fpr": ROC_GRID,
            "tpr_mean": curves_arr.mean(axis=0),
            "tpr_low": np.percentile(curves_arr, 2.5, axis=0),
            "tpr_high": np.percentile(curves_arr, 97.5, axis=0),
        }
    )


def outer_splits(
    y: np.ndarray, sites: np.ndarray, *, task: str, n_splits: int, n_repeats: int, seed: int
) -> list[Split]:
    """The repeated k-fold outer splits of labels ``y``: stratified by label x site with several sites."""
    strata = None
    if task == "classification" and len(np.unique(sites)) > 1:
        strata = np.array([f"{a}|{b}" for a, b in zip(y, sites, strict=True)])
    return kfold_splits(y, strata=strata, n_splits=n_splits, n_repeats=n_repeats, seed=seed, task=task)


def statistic(predictions: pd.DataFrame, task: str) -> float:
    """The permutation-tested score: the mean over repeats of the balanced accuracy (classification) or Pearson r
    (regression; a repeat with constant predictions counts as r = 0) of the pooled out-of-fold predictions.

    For classification this is the reported ``balanced_accuracy``."""
    values = []
    for _, chunk in predictions.groupby("repeat", sort=True):
        truth, pred = chunk["y_true"].to_numpy(), chunk["y_pred"].to_numpy()
        if task == "classification":
            values.append(balanced_accuracy_score(truth, pred))
        else:
            r = regression_metrics(truth, pred)["r"]
            values.append(r if np.isfinite(r) else 0.0)
    return float(np.mean(values))


def label_permutations(n: int, n_permutations: int, *, seed: int, blocks: np.ndarray | None = None) -> np.ndarray:
    """(n_permutations, n) row orderings from ``default_rng([seed, 1])``, within ``blocks`` when given.

    The same ``n``, ``seed`` and ``blocks`` give the same orderings, so tests of several models or feature sets on
    the same participants are paired permutation by permutation (needed by :func:`max_statistic_p`).
    """
    rng = np.random.default_rng([seed, 1])
    codes = block_codes(blocks)
    return np.array([permute_within(rng, n, codes) for _ in range(n_permutations)], dtype=np.int64).reshape(
        n_permutations, n
    )


def permutation_null(
    pipeline,
    grid,
    X,
    y,
    splits_of: Callable[[np.ndarray], Sequence[Split]],
    *,
    task,
    orderings: np.ndarray,
    inner_splits,
    inner_sites,
    seed,
    progress=None,
) -> np.ndarray:
    """The statistic of the full nested procedure rerun on ``y[ordering]`` for every ordering.

    ``splits_of(labels)`` draws the outer splits from the (permuted) labels exactly as for the observed ones; each
    outer fold repeats the inner grid search (:func:`fit_predict` with ``search=True``).
    """
    null = np.empty(len(orderings))
    for i, order in enumerate(orderings):
        y_perm = y[order]
        rows = []
        for split in splits_of(y_perm):
            _, pred, _, _ = fit_predict(pipeline, grid, X, y_perm, split, task=task, inner_splits=inner_splits,
                                        inner_sites=inner_sites, search=True, seed=seed)  # fmt: skip
            rows += [{"repeat": split.repeat, "y_true": t, "y_pred": p} for t, p in zip(y_perm[split.test], pred,
                                                                                       strict=True)]  # fmt: skip
        null[i] = statistic(pd.DataFrame(rows), task)
        if progress is not None and (i + 1) % 10 == 0:
            progress(f"permutation {i + 1}/{len(orderings)}")
    return null


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #{null >= observed}) / (1 + number of permutations)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))


def max_statistic_p(observed: Sequence[float], nulls: Sequence[np.ndarray]) -> list[float]:
    """p of each observed score against the maximum over all tests of each permutation's score (max-statistic,
    as PALM corrects across contrasts): the p holds for "the best of" the tests. The nulls must come from the
    same label permutations (same participants, seed and blocks)."""
    family = np.max(np.vstack([np.asarray(n, dtype=np.float64) for n in nulls]), axis=0)
    return [permutation_p(value, family) for value in observed]
