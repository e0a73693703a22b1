"""Cost of the default ML stage, and null calibration of its permutation p (data generated here).

Part 1 times what ``clbp-bidsapp ... group`` runs by default for a study of ``--participants`` (half patients):
every default feature set (sizes of the default atlases: Harvard-Oxford ROI means of 4 maps, Seitzman-300 and
Harvard-Oxford edges, graph AUCs, dual-regression strengths, all combined) with the default models, the
permutation test of the primary model on the primary feature set (each permutation reruns the whole nested
pipeline), and pain prediction within patients with the default regression model (permutation-tested on the
primary set). Settings are ``MLSettings()``; one site.

Part 2: fraction of null datasets (labels unrelated to 2,000 features) with p <= 0.05 (nominal 0.05).

    .venv/bin/python benchmarks/bench_ml.py [--participants 24] [--seeds 20] [--permutations 99]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from clbp_bidsapp.config import MLSettings
from clbp_bidsapp.core import ml

# feature counts of the default sets (atlases as shipped): 4 maps x 48 cortical + 21 subcortical HO regions,
# Seitzman 300 and Harvard-Oxford (~110 regions) upper triangles, 10 global graph AUCs x 2 atlases, 7 networks
DEFAULT_SETS = {"roi": 4 * 69, "edgesharvardoxford": 110 * 109 // 2, "edgesseitzman300": 300 * 299 // 2,
                "graph": 20, "dualreg": 7}  # fmt: skip


def default_stage(n: int, settings: MLSettings, seed: int = 0) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds per feature set; CPU time is what one core alone would take, on a shared machine."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], [n // 2, n - n // 2])
    sets = {name: rng.normal(size=(n, p)) for name, p in DEFAULT_SETS.items()}
    sets["combined"] = np.hstack(list(sets.values()))
    pain = rng.normal(size=n)
    options = {"n_splits": settings.n_splits, "n_repeats": settings.n_repeats, "inner_splits": settings.inner_splits,
               "k_best": settings.k_best, "seed": seed}  # fmt: skip
    times = {}
    for name, x in sets.items():
        start, cpu = time.perf_counter(), time.process_time()
        for model in settings.models:
            primary = name == settings.primary_feature_set and model == settings.primary_model
            ml.nested_cv(x, y, model=model, n_permutations=settings.n_permutations if primary else 0, **options)
        for model in settings.regression_models:
            primary = name == settings.primary_feature_set and model == settings.regression_models[0]
            ml.nested_cv(x[y == 1], pain[y == 1], model=model, task="regression",
                         n_permutations=settings.n_permutations if primary else 0, **options)  # fmt: skip
        times[name] = (time.perf_counter() - start, time.process_time() - cpu)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--participants", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--permutations", type=int, default=99)
    args = parser.parse_args()
    settings = MLSettings()
    times = default_stage(args.participants, settings)
    print(
        f"default ML stage, {args.participants} participants: models {', '.join(settings.models)}; regression "
        f"{', '.join(settings.regression_models)}; {settings.n_repeats} x {settings.n_splits}-fold, inner "
        f"{settings.inner_splits}-fold, k in {settings.k_best}; {settings.n_permutations} permutations of "
        f"{settings.primary_model} on {settings.primary_feature_set}"
    )
    print(f"  {'feature set':20s} {'wall':>8s} {'CPU':>8s}")
    for name, (wall, cpu) in times.items():
        print(f"  {name:20s} {wall:7.1f}s {cpu:7.1f}s")
    walls, cpus = zip(*times.values(), strict=True)
    print(f"  {'total':20s} {sum(walls):7.1f}s {sum(cpus):7.1f}s")

    n = args.participants
    y = np.repeat([1, 0], [n // 2, n - n // 2])
    if not args.seeds:
        return
    p_values = []
    for seed in range(args.seeds):
        x = np.random.default_rng(1000 + seed).normal(size=(n, 2000))
        result = ml.nested_cv(x, y, model="linear_svm", n_splits=5, n_repeats=1, inner_splits=3, k_best=(10, 100),
                              n_permutations=args.permutations, seed=seed)  # fmt: skip
        p_values.append(result.summary["p_value"])
    p_values = np.array(p_values)
    print(
        f"null calibration over {args.seeds} datasets ({args.permutations} permutations of the full nested "
        f"pipeline): fraction p <= 0.05: {np.mean(p_values <= 0.05):.2f} (nominal 0.05); mean p {p_values.mean():.2f}"
    )


if __name__ == "__main__":
    main()
