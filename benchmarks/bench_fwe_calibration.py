"""Family-wise error calibration of the group permutation test on null data.

    .venv/bin/python benchmarks/bench_fwe_calibration.py [N_DATASETS] [--permutations N] [--tfce]

Each null dataset: 12 "patients" and 12 "controls" with age and mean FD as covariates, spatially smooth Gaussian
maps (sigma 1.5 voxels, as 6 mm-smoothed 4 mm maps) on nilearn's 4 mm MNI brain mask, no group difference. The
group test runs with ``--permutations`` Freedman-Lane permutations (default 500); a dataset is a family-wise
error when any voxel has max-t FWE p < 0.05 (or TFCE FWE p < 0.05, or any cluster-extent FWE p < 0.05 at a
cluster-forming p of 0.001). A calibrated test gives a rate near 0.05; the binomial 95 % interval is printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from nilearn import datasets
from scipy import ndimage
from scipy import stats as sstats

from clbp_bidsapp.core.stats import design_matrix, permutation_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n_datasets", nargs="?", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--tfce", action="store_true", help="also TFCE (about 10x slower)")
    args = parser.parse_args()

    img = datasets.load_mni152_brain_mask(resolution=4)
    mask = np.asarray(img.dataobj) > 0
    rng = np.random.default_rng(2026)
    n = 24
    table = pd.DataFrame({
        "group": ["CLBP"] * 12 + ["HC"] * 12,
        "age": rng.integers(25, 65, n),
        "mean_fd": rng.uniform(0.05, 0.3, n),
    })  # fmt: skip
    design = design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC",
                           covariates=["age", "mean_fd"])  # fmt: skip
    cluster_t = float(sstats.t.isf(0.001 / 2, n - design.matrix.shape[1]))
    errors = {"max-t": 0, "cluster": 0, "tfce": 0}
    start = time.perf_counter()
    for k in range(args.n_datasets):
        volumes = ndimage.gaussian_filter(rng.standard_normal((n, *mask.shape)), (0, 1.5, 1.5, 1.5))
        data = volumes[:, mask]
        result = permutation_test(data, design, n_permutations=args.permutations, seed=k, mask=mask,
                                  cluster_threshold=cluster_t, tfce=args.tfce)  # fmt: skip
        errors["max-t"] += bool((result.p_fwe < 0.05).any())
        errors["cluster"] += bool(result.cluster_p_fwe is not None and (result.cluster_p_fwe < 0.05).any())
        if args.tfce:
            errors["tfce"] += bool((result.p_tfce_fwe < 0.05).any())
    elapsed = time.perf_counter() - start
    print(f"{args.n_datasets} null datasets, {int(mask.sum())} voxels, {args.permutations} permutations, "
          f"{elapsed:.0f} s")  # fmt: skip
    for name, count in errors.items():
        if name == "tfce" and not args.tfce:
            continue
        low, high = sstats.binomtest(count, args.n_datasets).proportion_ci(0.95)
        print(f"  {name:8s} family-wise error rate {count / args.n_datasets:.3f} (95% CI {low:.3f}-{high:.3f})")


if __name__ == "__main__":
    main()
