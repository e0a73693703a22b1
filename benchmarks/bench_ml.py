"""Cost of the ML stage, as ratios measured in one run (data generated here).

Prints: nested CV (k x repeats, inner grid search) over one pipeline fit; one permutation with the cached
label-free steps over one permutation with full refits; null-data calibration (fraction of seeds with p > 0.05).

    .venv/bin/python benchmarks/bench_ml.py [--features 10000] [--participants 30] [--seeds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clbp_bidsapp.core import ml
from clbp_bidsapp.core.combat import with_metadata


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=10_000)
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--permutations", type=int, default=99)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, p = args.participants, args.features
    x = rng.normal(size=(n, p))
    y = np.repeat([1, 0], [n // 2, n - n // 2])
    X = with_metadata(x)
    pipe, grid = ml.build_pipeline("linear_svm", k_best=100)

    t = time.perf_counter()
    for _ in range(5):
        pipe.fit(X, y)
    one_fit = (time.perf_counter() - t) / 5

    t = time.perf_counter()
    ml.nested_cv(x, y, model="linear_svm", n_splits=10, n_repeats=1, inner_splits=5, k_best=100, seed=0)
    nested = time.perf_counter() - t

    splits = ml.kfold_splits(y, strata=None, n_splits=10, n_repeats=1, seed=0)
    kwargs = {"task": "classification", "inner_splits": 5, "inner_sites": None, "search": False, "seed": 0}
    t = time.perf_counter()
    for _ in range(3):
        ml.cv_statistic(pipe, grid, X, rng.permutation(y), splits, **kwargs)
    full = (time.perf_counter() - t) / 3
    suffix, cache = ml._prefix_cache(pipe, X, splits)
    t = time.perf_counter()
    for _ in range(3):
        ml.cv_statistic(suffix, grid, X, rng.permutation(y), splits, **kwargs, cache=cache)
    cached = (time.perf_counter() - t) / 3

    print(f"data: {n} participants x {p} features, linear SVM, k_best 100")
    print(f"one pipeline fit: {one_fit * 1e3:.1f} ms")
    print(f"nested 10-fold x 1 repeat (inner 5-fold x 3 C) / one fit: {nested / one_fit:.0f}x")
    print(f"  -> default 10 x 10 nested CV ~ {10 * nested / one_fit:.0f} fits per model and feature set")
    print(f"one permutation (10 folds): full refit / cached label-free steps: {full / cached:.1f}x")
    print(f"  -> 1000 permutations ~ {1000 * cached:.0f} s per feature set on this machine")

    pvals, accs = [], []
    for seed in range(args.seeds):
        r = np.random.default_rng(1000 + seed)
        xs = r.normal(size=(n, p))
        res = ml.nested_cv(
            xs,
            y,
            model="linear_svm",
            n_splits=5,
            n_repeats=2,
            inner_splits=3,
            k_best=100,
            n_permutations=args.permutations,
            seed=seed,
        )
        pvals.append(res.summary["p_value"])
        accs.append(res.summary["balanced_accuracy"])
    pvals = np.array(pvals)
    print(
        f"null calibration over {args.seeds} seeds: mean balanced accuracy {np.mean(accs):.3f} "
        f"(range {min(accs):.2f}-{max(accs):.2f}); fraction p > 0.05: {np.mean(pvals > 0.05):.2f}; "
        f"fraction p <= 0.05: {np.mean(pvals <= 0.05):.2f} (nominal 0.05)"
    )


if __name__ == "__main__":
    main()
