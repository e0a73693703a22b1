"""Accelerated permutation inference (the defaults) against exhaustive 10 000 permutations.

    .venv/bin/python benchmarks/bench_accelerated.py [--null-datasets 200] [--tfce]

Data: 12 vs 12 participants with three covariates (the default design), smooth Gaussian maps (sigma 1.5 voxels)
on an 18 x 20 x 16 box (5 760 voxels), as smoothed participant maps are.

Accelerated = the group level's defaults: ``--n-permutations`` (500) for the maximum-statistic nulls with the
GPD tail for FWE p < 0.1 (Winkler et al. 2016, method iii), and sequential stopping of the uncorrected p at
``--sequential-h`` (100) exceedances, voxels below it carried on to ``--uncorrected-permutations`` (10 000).
Exhaustive = 10 000 permutations, every voxel counted in each, empirical p.

1. On null data and on data with planted effects (spheres of 1.5 and 2.5 SD, and a second at 0.6 of that): the
   largest |log10 p_accelerated
   - log10 p_exhaustive| over voxels with exhaustive p < 0.1, for the uncorrected p and the max-t FWE p (and the
   TFCE FWE p with ``--tfce``; TFCE adds ~10x to the exhaustive time), and the time of each and the speed-up.
   Where the exhaustive p rests on fewer than 10 permutations (p < 0.001) it is itself uncertain by a factor of
   about 2 (0.3 in log10), so the maximum is also shown over p >= 0.001.
2. The null FWE rate of the accelerated max-t FWE p over ``--null-datasets`` null datasets: the fraction of
   datasets with any voxel at FWE p < 0.05 (must be <= 0.05 within its binomial 95 % interval).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage
from threadpoolctl import threadpool_limits

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core.stats import Design, permutation_test

SHAPE = (18, 20, 16)
N = 24
EXHAUSTIVE = 10_000


def dataset(seed: int, effect: float) -> tuple[np.ndarray, Design, np.ndarray]:
    rng = np.random.default_rng(seed)
    volumes = ndimage.gaussian_filter(rng.standard_normal((N, *SHAPE)), (0, 1.5, 1.5, 1.5))
    volumes /= volumes.std()
    group = (np.arange(N) < N // 2).astype(float)
    if effect:
        grid = np.indices(SHAPE)
        for centre, size in (((5, 6, 5), effect), ((12, 14, 10), effect * 0.6)):
            sphere = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= 9
            volumes[group == 1] += size * sphere
    covariates = rng.standard_normal((N, 3))
    design = Design(np.column_stack([group, np.ones(N), covariates - covariates.mean(0)]),
                    ["group", "intercept", "age", "sex", "mean_fd"], 0)  # fmt: skip
    mask = np.ones(SHAPE, dtype=bool)
    return volumes.reshape(N, -1), design, mask


def max_log_difference(fast: np.ndarray, reference: np.ndarray, low: float = 0.0) -> tuple[float, int]:
    use = (reference < 0.1) & (reference >= low)
    if not use.any():
        return float("nan"), 0
    return float(np.abs(np.log10(fast[use]) - np.log10(reference[use])).max()), int(use.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--null-datasets", type=int, default=200)
    parser.add_argument("--tfce", action="store_true", help="compare TFCE FWE p too (slow exhaustive run)")
    args = parser.parse_args()
    threadpool_limits(1)  # one BLAS thread: the small blocks of the sequential phase lose with more on a busy machine
    g = GroupSettings()
    fast_options = {"n_permutations": g.n_permutations, "tail": g.permutation_tail, "sequential_h": g.sequential_h,
                    "max_permutations": g.uncorrected_permutations}  # fmt: skip
    print(
        f"accelerated: {g.n_permutations} permutations + {g.permutation_tail} tail for FWE, uncorrected p "
        f"sequential at h = {g.sequential_h} up to {g.uncorrected_permutations}; exhaustive: {EXHAUSTIVE}"
    )
    for name, effect in (("null", 0.0), ("planted 1.5 SD", 1.5), ("planted 2.5 SD", 2.5)):
        data, design, mask = dataset(1, effect)
        common = {"mask": mask, "seed": 7, "tfce": args.tfce}
        start = time.perf_counter()
        fast = permutation_test(data, design, **fast_options, **common)
        fast_time = time.perf_counter() - start
        start = time.perf_counter()
        full = permutation_test(data, design, n_permutations=EXHAUSTIVE, **common)
        full_time = time.perf_counter() - start
        rows = [("uncorrected", fast.p_uncorrected, full.p_uncorrected), ("max-t FWE", fast.p_fwe, full.p_fwe)]
        if args.tfce:
            rows.append(("TFCE FWE", fast.p_tfce_fwe, full.p_tfce_fwe))
        speed_up = full_time / fast_time
        median = np.median(fast.uncorrected_permutations)
        print(
            f"{name}: accelerated {fast_time:.1f} s, exhaustive {full_time:.1f} s, speed-up {speed_up:.1f}x; "
            f"median permutations per voxel for the uncorrected p {median:.0f}"
        )
        for label, p_fast, p_full in rows:
            every, count = max_log_difference(p_fast, p_full)
            resolved, count_resolved = max_log_difference(p_fast, p_full, low=1e-3)
            print(f"  {label}: max |dlog10 p| where p < 0.1: {every:.3f} ({count} voxels; exhaustive p >= 0.001: "
                  f"{resolved:.3f}, {count_resolved} voxels; smallest exhaustive p {p_full.min():.2g})")  # fmt: skip

    if not args.null_datasets:
        return
    hits = 0
    start = time.perf_counter()
    for k in range(args.null_datasets):
        data, design, mask = dataset(1000 + k, 0.0)
        # the FWE p come from the first n_permutations whatever the sequential mode (tests/core/test_sequential.py)
        result = permutation_test(data, design, n_permutations=g.n_permutations, tail=g.permutation_tail, mask=mask,
                                  seed=k)  # fmt: skip
        hits += bool((result.p_fwe < 0.05).any())
    rate = hits / args.null_datasets
    half = 1.96 * np.sqrt(0.05 * 0.95 / args.null_datasets)
    print(
        f"null FWE rate (accelerated max-t FWE p < 0.05 anywhere): {hits}/{args.null_datasets} = {rate:.3f} "
        f"(nominal 0.05, binomial 95 % half-width {half:.3f}); {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
