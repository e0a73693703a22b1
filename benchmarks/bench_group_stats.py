"""Permutation GLM versus nilearn.mass_univariate.permuted_ols on the same data, design and permutations.

    .venv/bin/python benchmarks/bench_group_stats.py [N_PERM] [--tfce-permutations N] [--skip-max-t] [--skip-tfce]

20 patients vs 20 controls with age and mean FD as covariates, on nilearn's 4 mm MNI brain mask (~29k voxels).
Two comparisons, each in one process (n_jobs=1):

1. max-t FWE without TFCE (N_PERM permutations, default 1000) on white-noise data with a planted effect;
2. TFCE (``permuted_ols(tfce=True)``: E = 0.5, H = 2, 100 steps, 6-connectivity) with its max-TFCE FWE p
   (``--tfce-permutations``, default 200: nilearn needs ~0.3 s per permutation) on spatially smooth data
   (Gaussian, sigma = 1 voxel, as smoothed participant maps are) with a planted blob.

Prints the time ratios, the largest t and TFCE differences, and the largest FWE p difference next to the
Monte-Carlo standard error of a p near 0.05 (the two tools draw different permutations, and nilearn permutes the
design rows where we use Freedman-Lane, so p agree within Monte-Carlo error rather than exactly). FWE p is a
monotone function of the voxel's statistic through the null distribution of the maximum, so the largest difference
over all voxels is the largest gap between two empirical distributions of n_perm draws: its 95% bound is the
two-sample Kolmogorov-Smirnov one, 1.36 sqrt(2 / n_perm), also printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from nilearn import datasets
from nilearn.maskers import NiftiMasker
from nilearn.mass_univariate import permuted_ols
from scipy import ndimage

from clbp_bidsapp.core.stats import Design, permutation_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n_perm", nargs="?", type=int, default=1000, help="permutations for max-t (default 1000)")
    parser.add_argument("--tfce-permutations", type=int, default=200, help="permutations for TFCE (default 200)")
    parser.add_argument("--skip-max-t", action="store_true")
    parser.add_argument("--skip-tfce", action="store_true")
    args = parser.parse_args()

    mask_img = datasets.load_mni152_brain_mask(resolution=4)
    mask = np.asanyarray(mask_img.dataobj) > 0
    v = int(mask.sum())
    rng = np.random.default_rng(0)
    group = np.r_[np.ones(20), np.zeros(20)]
    covariates = np.column_stack([rng.uniform(20, 65, 40), rng.uniform(0.05, 0.3, 40)])
    covariates -= covariates.mean(0)
    design = Design(matrix=np.column_stack([group, np.ones(40), covariates]), names=["g", "i", "age", "fd"], tested=0)

    if not args.skip_max_t:
        n_perm = args.n_perm
        data = rng.standard_normal((40, v))
        data[:20, : v // 50] += 0.8
        start = time.perf_counter()
        ours = permutation_test(data, design, n_permutations=n_perm, seed=0)
        ours_time = time.perf_counter() - start
        start = time.perf_counter()
        ref = permuted_ols(group[:, None], data, confounding_vars=covariates, model_intercept=True, n_perm=n_perm,
                           two_sided_test=True, random_state=0, n_jobs=1, output_type="dict", verbose=0)  # fmt: skip
        ref_time = time.perf_counter() - start
        p_ref = 10 ** -ref["logp_max_t"][0]
        print(f"{v} voxels, 40 participants, {n_perm} permutations, max-t FWE, one process")
        print(f"ours {ours_time:.2f} s, nilearn permuted_ols {ref_time:.2f} s: {ref_time / ours_time:.1f} x faster")
        print(
            f"max |t difference| {np.abs(ours.t - ref['t'][0]).max():.2e}; max |FWE p difference| "
            f"{np.abs(ours.p_fwe - p_ref).max():.3f} (Monte-Carlo SE at p = 0.05: {np.sqrt(0.05 * 0.95 / n_perm):.3f}; "
            f"95% bound of the largest gap between two null distributions of {n_perm}: {_ks_bound(n_perm):.3f})"
        )

    if not args.skip_tfce:
        n_perm = args.tfce_permutations
        volumes = ndimage.gaussian_filter(rng.standard_normal((40, *mask.shape)), (0, 1, 1, 1))
        data = volumes[:, mask] / volumes[:, mask].std()
        blob = np.zeros(mask.shape, dtype=bool)
        blob[20:27, 30:37, 20:27] = True
        effect = blob[mask]
        data[:20, effect] += 0.8
        masker = NiftiMasker(mask_img).fit()
        start = time.perf_counter()
        ours = permutation_test(data, design, n_permutations=n_perm, seed=0, mask=mask, tfce=True)
        ours_time = time.perf_counter() - start
        start = time.perf_counter()
        ref = permuted_ols(group[:, None], data, confounding_vars=covariates, model_intercept=True, n_perm=n_perm,
                           two_sided_test=True, random_state=0, n_jobs=1, masker=masker, tfce=True,
                           output_type="dict", verbose=0)  # fmt: skip
        ref_time = time.perf_counter() - start
        p_ref = 10 ** -ref["logp_max_tfce"][0]
        tfce_ref = ref["tfce"][0]
        print(f"\n{v} voxels, 40 participants, {n_perm} permutations, TFCE with max-TFCE FWE, one process")
        print(f"ours {ours_time:.2f} s, nilearn permuted_ols(tfce=True) {ref_time:.2f} s: "
              f"{ref_time / ours_time:.1f} x faster")  # fmt: skip
        print(
            f"max |t difference| {np.abs(ours.t - ref['t'][0]).max():.2e}; max relative |TFCE difference| "
            f"{np.abs(ours.tfce - tfce_ref).max() / np.abs(tfce_ref).max():.2e}"
        )
        print(
            f"max |FWE-TFCE p difference| {np.abs(ours.p_tfce_fwe - p_ref).max():.3f} "
            f"(Monte-Carlo SE at p = 0.05: {np.sqrt(0.05 * 0.95 / n_perm):.3f}, at p = 0.5: "
            f"{np.sqrt(0.25 / n_perm):.3f}; 95% bound of the largest gap: {_ks_bound(n_perm):.3f})"
        )
        print(
            f"planted voxels with FWE-TFCE p < 0.05: ours {(ours.p_tfce_fwe[effect] < 0.05).mean():.0%}, "
            f"nilearn {(p_ref[effect] < 0.05).mean():.0%}"
        )


def _ks_bound(n: int) -> float:
    """95% bound of the largest gap between two empirical distribution functions of n draws each (Smirnov)."""
    return 1.36 * np.sqrt(2 / n)


if __name__ == "__main__":
    main()
