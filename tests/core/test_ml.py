"""Leak-free nested CV: chance on null data, above chance on planted effects, a leaking pipeline is caught,
ComBat inside the folds rescues leave-one-site-out, and the building blocks match their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sstats
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from clbp_bidsapp.core import ml
from clbp_bidsapp.core.combat import with_metadata

FAST = {"n_splits": 5, "n_repeats": 1, "inner_splits": 3, "k_best": 100}


def _null(seed, n=30, p=10_000):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)), np.repeat([1, 0], n // 2)


def test_null_labels_stay_at_chance_with_10000_features():
    """30 participants, 10,000 features, labels unrelated: accuracy near 0.5 in 5 seeds, and p > 0.05 in 2 seeds
    with 1,000 features (each permutation reruns the whole nested pipeline; calibration over more seeds:
    benchmarks/bench_ml.py)."""
    accuracies, p_values = [], []
    for seed in range(5):
        x, y = _null(100 + seed)
        result = ml.nested_cv(x, y, model="linear_svm", seed=seed, **FAST)
        accuracies.append(result.summary["balanced_accuracy"])
        if seed < 2:
            tested = ml.nested_cv(x[:, :1000], y, model="linear_svm", n_permutations=19, seed=seed, **FAST)
            p_values.append(tested.summary["p_value"])
    print(
        f"null: balanced accuracy {np.round(accuracies, 2)}, p {np.round(p_values, 2)}; "
        f"fraction p > 0.05: {np.mean(np.array(p_values) > 0.05):.2f}"
    )
    assert all(abs(a - 0.5) < 0.2 for a in accuracies), accuracies
    assert abs(np.mean(accuracies) - 0.5) < 0.1
    assert np.all(np.array(p_values) > 0.05), p_values


def test_planted_effect_is_found():
    x, y = _null(7)
    x[y == 1, :50] += 1.0  # 50 of 2,000 features shifted by one SD in patients
    result = ml.nested_cv(x[:, :2000], y, model="linear_svm", n_permutations=19, seed=0, **FAST)
    assert result.summary["balanced_accuracy"] > 0.75, result.summary
    assert result.summary["roc_auc"] > 0.8
    assert result.summary["p_value"] <= 0.05
    # the informative features are enriched among the most important ones (chance: 50 / 2,000)
    top = result.importance.head(20)
    assert (top["feature"] < 50).sum() >= 5, top
    assert top["selection_frequency"].iloc[0] >= 0.5


def test_a_leaking_pipeline_is_caught_by_the_same_harness():
    """Selection on all data before CV (the classic leak) gives high accuracy and a small p on null data."""
    x, y = _null(100)  # the first null seed above
    leaked = SelectKBest(f_classif, k=100).fit(x, y).transform(x)
    result = ml.nested_cv(leaked, y, model="linear_svm", n_permutations=19, seed=0, **{**FAST, "k_best": None})
    assert result.summary["balanced_accuracy"] > 0.8, result.summary
    assert result.summary["p_value"] <= 0.05


def _sites(seed, *, effect):
    rng = np.random.default_rng(seed)
    n_sites, per_site, p = 3, 16, 200
    sites = np.repeat([f"s{i}" for i in range(n_sites)], per_site)
    y = np.tile(np.repeat([1, 0], per_site // 2), n_sites)
    codes = np.unique(sites, return_inverse=True)[1]
    age = rng.uniform(20, 60, sites.size)
    x = rng.normal(size=(sites.size, p))
    x += rng.normal(scale=3.0, size=(n_sites, p))[codes]  # site location, larger than the group effect
    x *= rng.uniform(0.5, 2.0, size=(n_sites, p))[codes]  # site scale
    x += 0.02 * age[:, None]
    if effect:
        x[y == 1, :30] += 1.0
    return x, y, sites, age[:, None]


def test_combat_inside_the_folds_rescues_leave_one_site_out():
    x, y, sites, age = _sites(1, effect=True)
    kwargs = {
        "model": "linear_svm",
        "sites": sites,
        "covariates": age,
        "scheme": "loso",
        "inner_splits": 3,
        "k_best": 50,
        "seed": 0,
    }
    with_combat = ml.nested_cv(x, y, harmonize=True, **kwargs)
    without = ml.nested_cv(x, y, harmonize=False, **kwargs)
    assert with_combat.harmonized and not without.harmonized
    assert with_combat.summary["balanced_accuracy"] > 0.8, with_combat.summary
    assert with_combat.summary["balanced_accuracy"] > without.summary["balanced_accuracy"] + 0.15, (
        with_combat.summary,
        without.summary,
    )
    assert list(with_combat.folds["held_out"]) == ["s0", "s1", "s2"]
    # null labels: still chance with ComBat (no leak through the unseen-site policy)
    xn, yn, sites_n, age_n = _sites(2, effect=False)
    null = ml.nested_cv(xn, yn, harmonize=True, **{**kwargs, "sites": sites_n, "covariates": age_n}, n_permutations=19)
    assert abs(null.summary["balanced_accuracy"] - 0.5) < 0.2, null.summary
    assert null.summary["p_value"] > 0.05


def test_deterministic_and_inputs_untouched():
    x, y = _null(3, p=300)
    x[y == 1, :5] += 0.8
    copy = x.copy()
    a = ml.nested_cv(x, y, model="linear_svm", n_permutations=3, seed=4, **FAST)
    b = ml.nested_cv(x, y, model="linear_svm", n_permutations=3, seed=4, **FAST)
    np.testing.assert_array_equal(x, copy)
    assert a.summary == b.summary
    np.testing.assert_array_equal(a.null, b.null)
    assert a.folds.equals(b.folds)
    c = ml.nested_cv(x, y, model="linear_svm", n_permutations=3, seed=5, **FAST)
    assert not np.array_equal(a.null, c.null)


@pytest.mark.parametrize("model", ml.CLASSIFIERS)
def test_every_classifier_runs_and_maps_weights(model):
    x, y = _null(5, n=24, p=40)
    x[y == 1, :3] += 1.5
    result = ml.nested_cv(x, y, model=model, n_splits=3, n_repeats=1, inner_splits=2, k_best=10, seed=0)
    assert set(ml.CLASSIFICATION_METRICS) <= set(result.summary)
    assert len(result.folds) == 3 and result.roc.shape == (101, 4)
    assert result.importance["selection_frequency"].max() == 1.0
    if model != "rbf_svm":
        assert set(result.importance.head(3)["feature"]) & {0, 1, 2}


@pytest.mark.parametrize("model", ml.REGRESSORS)
def test_regression_predicts_a_planted_score(model):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 60))
    score = x[:, :3].sum(axis=1) + 0.3 * rng.normal(size=40)
    result = ml.nested_cv(
        x,
        score,
        model=model,
        task="regression",
        n_splits=5,
        n_repeats=2,
        inner_splits=3,
        k_best=20,
        n_permutations=9,
        seed=0,
    )
    assert result.summary["r"] > 0.7 and result.summary["r2"] > 0.3, result.summary
    assert result.summary["p_value"] == pytest.approx(0.1)


def test_metrics_match_their_definitions():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    pred = np.where(rng.random(50) < 0.7, y, 1 - y)
    score = pred + rng.normal(scale=0.5, size=50)
    m = ml.classification_metrics(y, pred, score)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["balanced_accuracy"] == pytest.approx((m["sensitivity"] + m["specificity"]) / 2)
    pos, neg = score[y == 1], score[y == 0]
    auc = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert m["roc_auc"] == pytest.approx(auc)
    t, p = rng.normal(size=30), rng.normal(size=30)
    r = ml.regression_metrics(t, p)
    assert r["r"] == pytest.approx(sstats.pearsonr(t, p)[0])
    assert r["mae"] == pytest.approx(np.abs(t - p).mean())
    assert r["r2"] == pytest.approx(1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum())


def test_kbest_equals_selectkbest_and_clips_k():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 30)), np.repeat([0, 1], 10)
    ours = ml.KBest(k=7).fit(x, y).get_support()
    ref = SelectKBest(f_classif, k=7).fit(x, y).get_support()
    np.testing.assert_array_equal(ours, ref)
    assert ml.KBest(k=100).fit(x, y).get_support().all()


def test_permutations_stay_within_site_and_splits_are_stratified():
    sites = np.repeat(["a", "b", "c"], [6, 8, 10])
    orders = ml.label_permutations(sites.size, 20, seed=3, blocks=sites)
    for order in orders:
        np.testing.assert_array_equal(sites[order], sites)  # no row leaves its site
    assert not (orders == np.arange(sites.size)).all(axis=1).any()
    np.testing.assert_array_equal(orders, ml.label_permutations(sites.size, 20, seed=3, blocks=sites))  # paired
    y2 = np.repeat([1, 0], [13, 11])
    splits = ml.kfold_splits(y2, strata=None, n_splits=10, n_repeats=2, seed=0)
    assert len(splits) == 20 and {s.repeat for s in splits} == {0, 1}
    for repeat in (0, 1):
        test_rows = np.concatenate([s.test for s in splits if s.repeat == repeat])
        assert sorted(test_rows) == list(range(24))  # every participant tested once per repeat
    assert all(abs(y2[s.test].mean() - y2.mean()) < 0.35 for s in splits)


def test_pipeline_contains_every_learning_step():
    pipe, grid = ml.build_pipeline("linear_svm", n_meta=3, harmonize=True, k_best=10)
    assert [name for name, _ in pipe.steps] == ["combat", "covariates", "variance", "scale", "select", "model"]
    assert grid == {"model__C": [0.01, 0.1, 1.0]}
    with pytest.raises(ValueError, match="unknown"):
        ml.build_pipeline("knn")


@pytest.mark.parametrize("model", ["linear_svm", "rbf_svm"])
def test_inner_search_picks_what_gridsearchcv_picks(model):
    """The permutation test's inner search (label-free steps fitted once per inner split, one selector ranking for
    every k) must choose exactly the candidate scikit-learn's GridSearchCV chooses, ComBat and covariates included."""
    rng = np.random.default_rng(4)
    sites = np.repeat(["a", "b"], 12)
    picked = set()
    for trial in range(3):
        x = rng.normal(size=(24, 60)) + np.repeat([[0.0], [2.0]], 12, axis=0)
        y = np.tile(np.repeat([1, 0], 6), 2)
        x[y == 1, :5] += 0.5 * trial
        X = with_metadata(x, sites, rng.normal(size=(24, 1)))
        pipe, grid = ml.build_pipeline(model, n_meta=2, harmonize=True, k_best=(3, 10, 100))
        cv = list(StratifiedKFold(3, shuffle=True, random_state=trial).split(X, y))
        reference = GridSearchCV(pipe, grid, cv=cv, scoring="roc_auc", error_score="raise").fit(X, y)
        ours = ml.grid_search(pipe, grid, X, y, cv, task="classification")
        assert ours == reference.best_params_, trial
        picked.add(tuple(sorted(ours.items())))
    assert len(picked) > 1  # the comparison covers more than one winner


def test_the_p_value_is_for_the_reported_score_and_its_full_nested_pipeline():
    """The permutation statistic is the printed balanced accuracy itself, and each null value is the whole nested
    procedure (splits from the permuted labels, inner search of C and k) rerun on permuted labels."""
    x, y = _null(8, n=20, p=60)
    x[y == 1, :4] += 0.8
    options = {"model": "linear_svm", "n_splits": 4, "n_repeats": 2, "inner_splits": 2, "k_best": (5, 50), "seed": 2}
    result = ml.nested_cv(x, y, n_permutations=3, **options)
    assert result.summary["permutation_observed"] == result.summary["balanced_accuracy"]
    order = ml.label_permutations(len(y), 3, seed=2)
    for i in range(3):
        rerun = ml.nested_cv(x, y[order[i]], **options)
        assert result.null[i] == rerun.summary["balanced_accuracy"]
        assert set(rerun.folds["params"]) - {"default"}  # the permuted runs tuned their hyper-parameters too


def test_best_of_several_pipelines_p_is_never_below_any_single_p():
    """Max-statistic over models / feature sets: paired nulls (same participants and seed), p of each result
    against the maximum per permutation is >= its own p, and equals it for the best-scoring result when the
    others' nulls never exceed its own."""
    x, y = _null(9, n=20, p=40)
    x[y == 1, :3] += 1.0
    options = {"n_splits": 4, "n_repeats": 1, "inner_splits": 2, "k_best": 10, "seed": 1, "n_permutations": 19}
    results = [ml.nested_cv(x, y, model=m, **options) for m in ("linear_svm", "rbf_svm")]
    results.append(ml.nested_cv(x[:, 20:], y, model="linear_svm", **options))  # a second "feature set"
    observed = [r.summary["permutation_observed"] for r in results]
    corrected = ml.max_statistic_p(observed, [r.null for r in results])
    for single, family in zip([r.summary["p_value"] for r in results], corrected, strict=True):
        assert family >= single
    assert any(f > s for s, f in zip([r.summary["p_value"] for r in results], corrected, strict=True))
    family_null = np.max([r.null for r in results], axis=0)
    assert corrected[0] == (1 + np.sum(family_null >= observed[0] - 1e-12)) / 20


def test_number_of_selected_features_is_tuned_in_the_inner_cv():
    pipe, grid = ml.build_pipeline("linear_svm", k_best=(100, 10, 1000, 0))
    assert grid["select__k"] == [10, 100, 1000]  # 0 (no selection) is not a candidate
    assert pipe.named_steps["select"].k == 10  # the untuned pipeline keeps the smallest
    single, grid = ml.build_pipeline("linear_svm", k_best=50)
    assert single.named_steps["select"].k == 50 and "select__k" not in grid
    none, _ = ml.build_pipeline("linear_svm", k_best=())
    assert "select" not in none.named_steps
