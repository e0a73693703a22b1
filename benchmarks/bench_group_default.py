"""The DEFAULT group level on a 24-participant study at 4 mm: wall time, share of each stage, and projections.

    .venv/bin/python benchmarks/bench_group_default.py [--root DIR] [--volumes 40] [--skip-run] [--project]

1. writes the synthetic study (``testing/synthetic.make_dataset``: 12 CLBP, 12 HC, 4 mm, ``--volumes`` volumes)
   under ``--root`` (default /tmp/bench-group-default), unless it is already there;
2. runs the participant level once, cheaply but with the default map set (short runs, ``--min-dof 0``,
   ``--save-denoised`` for the group ICA, no HTML report), unless its outputs are already there;
3. runs ``clbp-bidsapp BIDS OUT group`` with no option at all (the defaults), and prints its wall time, the plan
   and estimate lines the group level printed before the work, and each stage's wall time and share
   (the group level's own ``group level stages took`` line);
4. ``--project``: measures the per-permutation cost of one voxelwise test (t, max-t, clusters; and TFCE) on
   nilearn's 4 mm and 2 mm MNI brain masks with 24, 100 and 1000 participants (smooth random data, the default
   design: group, intercept, 3 covariates), the extra cost of the sequential uncorrected p (measured once, 24
   participants at 4 mm, 500 permutations with and without), and prints the time the default voxelwise tests
   would take (``--tests``, default 40: the default study's 30 maps x the group contrast + 5 primary maps x 2
   clinical columns).

Figures are seconds of this machine at the time of the run (2 cores); run it alone for clean figures.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

CLI = [sys.executable, "-m", "clbp_bidsapp.cli"]


def run(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(map(str, args))}\n{done.stderr[-3000:]}")
    return elapsed, done.stderr


def study_data(n: int, voxel_size: int):
    """Smooth random maps of ``n`` participants on nilearn's MNI brain mask, and the default design."""
    from nilearn import datasets

    from clbp_bidsapp.core.stats import Design

    mask = np.asanyarray(datasets.load_mni152_brain_mask(resolution=voxel_size).dataobj) > 0
    rng = np.random.default_rng(0)
    data = np.empty((n, int(mask.sum())), dtype=np.float64)
    for row in range(n):  # one smooth volume at a time (memory)
        data[row] = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.0)[mask]
    group = (np.arange(n) < n // 2).astype(float)
    covariates = rng.standard_normal((n, 3))
    design = Design(np.column_stack([group, np.ones(n), covariates - covariates.mean(0)]),
                    ["group", "intercept", "age", "sex", "mean_fd"], 0)  # fmt: skip
    return data, design, mask


def seconds(data, design, mask, **options) -> float:
    """Wall time of one permutation test (clusters at p < 0.001, GPD tail) with ``options``."""
    from scipy import stats

    from clbp_bidsapp.core.stats import permutation_test

    threshold = float(stats.t.isf(0.0005, data.shape[0] - 5))
    block = 128 if data.size < 5e6 else 16
    start = time.perf_counter()
    permutation_test(data, design, mask=mask, cluster_threshold=threshold, block=block, tail="gpd", **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-group-default"))
    parser.add_argument("--volumes", type=int, default=40)
    parser.add_argument("--skip-run", action="store_true", help="only the projection (with --project)")
    parser.add_argument("--participant-only", action="store_true", help="stop after the participant level")
    parser.add_argument("--project", action="store_true", help="measure per-permutation costs and project")
    parser.add_argument("--tests", type=int, default=40, help="voxelwise tests to project (default run: 40)")
    args = parser.parse_args()

    if not args.skip_run:
        from clbp_bidsapp.testing.synthetic import make_dataset

        bids, out, work = args.root / "bids", args.root / "out", args.root / "work"
        if not (bids / "participants.tsv").is_file():
            make_dataset(bids, n_patients=12, n_controls=12, n_volumes=args.volumes, seed=0)
        if not (out / "logs" / "participants").is_dir():
            elapsed, _ = run([bids, out, "participant", "-w", work, "--nprocs", "2", "--min-dof", "0",
                              "--min-time", "20", "--save-denoised", "--skip", "report"])  # fmt: skip
            print(f"participant level (24 participants, {args.volumes} volumes, 4 mm): {elapsed:.0f} s")
        if args.participant_only:
            return
        elapsed, stderr = run([bids, out, "group"])
        print(f"DEFAULT group level, 24 participants at 4 mm, 2 cores: {elapsed:.0f} s ({elapsed / 60:.1f} min)")
        for line in stderr.splitlines():
            if re.search(r"group level plan:|estimate:|group level stages took", line):
                print("  " + line.strip())

    if args.project:
        from clbp_bidsapp.config import GroupSettings

        # the default run's tests: 30 maps x the group contrast + the 5 primary maps x 2 clinical columns = 40,
        # TFCE on the primary maps' group contrast
        defaults = GroupSettings()
        n_tests, n_tfce, n_perm = args.tests, len(defaults.primary_maps), defaults.n_permutations
        print("per-permutation cost of one voxelwise test (s), and the default voxelwise tests projected:")
        # the sequential phase (voxels below h carried on, t only), relative to the n_perm full permutations,
        # measured once on the 24-participant 4 mm study with the defaults; the same fraction elsewhere
        data, design, mask = study_data(24, 4)
        full = seconds(data, design, mask, n_permutations=n_perm)
        with_sequential = seconds(data, design, mask, n_permutations=n_perm, sequential_h=defaults.sequential_h,
                                  max_permutations=defaults.uncorrected_permutations)  # fmt: skip
        extra = max(with_sequential / full - 1, 0.0)
        print(f"  sequential uncorrected p adds {100 * extra:.0f} % to {n_perm} permutations (24 participants, 4 mm)")
        for n, voxel_size in ((24, 4), (100, 2), (1000, 2)):
            data, design, mask = study_data(n, voxel_size)
            k = 32 if n > 100 else 64
            plain = seconds(data, design, mask, n_permutations=k) / k
            tfce = seconds(data, design, mask, n_permutations=16, tfce=True) / 16
            total = n_perm * (n_tests * plain * (1 + extra) + n_tfce * max(tfce - plain, 0))
            print(
                f"  {n} participants at {voxel_size} mm ({mask.sum()} voxels): {plain:.3f} s per permutation, "
                f"{tfce:.3f} s with TFCE; {n_tests} tests x {n_perm} permutations ({n_tfce} with TFCE): "
                f"{total / 60:.0f} min"
            )


if __name__ == "__main__":
    main()
