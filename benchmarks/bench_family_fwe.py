"""Across-family FWE on null data, and tail-accelerated versus exhaustive permutation p-values.

    .venv/bin/python benchmarks/bench_family_fwe.py [N_DATASETS] [--permutations N] [--maps M] [--reference N]

Part 1 (issue #14 section 5). Each null dataset: 20 participants (10 "patients", 10 "controls"), M independent
maps (default 5) of spatially smooth Gaussian noise (sigma 1 voxel) on a 10 x 10 x 10 grid, no group difference.
Every map gets the Freedman-Lane max-t test with the same permutations (same seed and participants). A dataset is
a family-wise error when ANY map has a voxel with FWE p < 0.05: with each map corrected on its own (expected
about 1 - 0.95^M, 23 % for 5 maps) and with the family correction of ``core/multiplicity.py`` (max over maps of
the z-transformed max-t per permutation; expected <= 5 %), empirical and with the GPD tail (``core/tail.py``).

Part 2 (issue #17 item 1). One null and one planted dataset (the first map with a group difference of 2.5 SD in
a 3 x 3 x 3 block): FWE p from ``--permutations`` permutations with the GPD tail versus exhaustive
``--reference`` (default 10 000) permutations without it; the max |delta log10 p| over voxels whose reference
p < 0.1, the same for the plain empirical p of the short run, and the speed-up (wall time ratio).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import ndimage

from clbp_bidsapp.core import multiplicity
from clbp_bidsapp.core import tail as gpd_tail
from clbp_bidsapp.core.stats import design_matrix, permutation_test

SHAPE = (10, 10, 10)
ALPHA = 0.05


def _maps(rng, n, n_maps, effect=0.0):
    maps = []
    for m in range(n_maps):
        data = ndimage.gaussian_filter(rng.standard_normal((n, *SHAPE)), sigma=(0, 1, 1, 1))
        data = (data / data.std()).reshape(n, -1)
        if effect and m == 0:
            block = np.zeros(SHAPE, dtype=bool)
            block[4:7, 4:7, 4:7] = True
            data[: n // 2, block.ravel()] += effect
        maps.append(data)
    return maps


def _family_error(results, dof, *, tail):
    z = [multiplicity.t_to_z(r.t, dof) for r in results]
    null = multiplicity.family_null([multiplicity.t_to_z(r.max_null, dof) for r in results])
    floor = results[0].p_floor
    for values in z:
        if tail:
            p, _ = gpd_tail.tail_p(values, null, p_floor=floor)
        else:
            p = gpd_tail.empirical_p(values, null)
        if (p < ALPHA).any():
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n_datasets", nargs="?", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--maps", type=int, default=5)
    parser.add_argument("--reference", type=int, default=10000)
    args = parser.parse_args()
    n = 20
    table = pd.DataFrame({"group": ["CLBP"] * (n // 2) + ["HC"] * (n // 2)})
    design = design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC")
    dof = n - design.matrix.shape[1]
    rng = np.random.default_rng(2026)
    within = family = family_tail = within_tail = 0
    start = time.perf_counter()
    for _ in range(args.n_datasets):
        plain = [permutation_test(d, design, n_permutations=args.permutations, seed=0)
                 for d in _maps(rng, n, args.maps)]  # fmt: skip
        within += any((r.p_fwe < ALPHA).any() for r in plain)
        within_tail += any(
            (gpd_tail.tail_p(np.abs(r.t), r.max_null, p_floor=r.p_floor)[0] < ALPHA).any() for r in plain
        )
        family += _family_error(plain, dof, tail=False)
        family_tail += _family_error(plain, dof, tail=True)
    k = max(args.n_datasets, 1)
    half = 1.96 * np.sqrt(0.05 * 0.95 / k)
    print(f"null datasets: {args.n_datasets}, maps: {args.maps}, permutations: {args.permutations}, "
          f"{time.perf_counter() - start:.0f} s (binomial 95 % half-width at 0.05: {half:.3f})")  # fmt: skip
    print(f"P(any map has an FWE voxel), each map corrected on its own: {within / k:.3f} "
          f"(with GPD tail {within_tail / k:.3f}; expected about {1 - 0.95**args.maps:.3f})")  # fmt: skip
    print(f"P(any map has an FWE voxel), family correction: {family / k:.3f} (with GPD tail {family_tail / k:.3f})")

    for label, effect in (("null", 0.0), ("planted 1.5 SD", 1.5), ("planted 2.5 SD", 2.5)):
        data = _maps(np.random.default_rng(7), n, 1, effect=effect)[0]
        t0 = time.perf_counter()
        reference = permutation_test(data, design, n_permutations=args.reference, seed=1)
        t_ref = time.perf_counter() - t0
        t0 = time.perf_counter()
        fast = permutation_test(data, design, n_permutations=args.permutations, seed=2, tail="gpd")
        t_fast = time.perf_counter() - t0
        short = permutation_test(data, design, n_permutations=args.permutations, seed=2)
        fit = "passed" if fast.tail_fits["maxt"].threshold is not None else "failed: empirical"
        print(f"{label}: {args.permutations} permutations + tail (fit {fit}) vs {args.reference} without: "
              f"speed-up {t_ref / t_fast:.1f}x ({t_ref:.2f} s vs {t_fast:.2f} s)")  # fmt: skip
        # resolved: the reference p rests on at least 10 permutations (below that it is itself a floor)
        resolved = reference.p_fwe >= 10 / args.reference
        for name, use in (("p < 0.1", reference.p_fwe < 0.1), ("10/N <= p < 0.1", (reference.p_fwe < 0.1) & resolved)):
            if not use.any():
                print(f"  reference {name}: no voxel")
                continue
            ref = np.log10(reference.p_fwe[use])
            print(f"  reference {name}: {use.sum()} voxels (min p {reference.p_fwe[use].min():.2g}); "
                  f"max |delta log10 p| GPD tail {np.abs(np.log10(fast.p_fwe[use]) - ref).max():.3f}, plain empirical "
                  f"{np.abs(np.log10(short.p_fwe[use]) - ref).max():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
