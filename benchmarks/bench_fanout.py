"""Fan-out of the group permutation tests: one process, a pool of processes and SLURM job arrays, same bytes.

    .venv/bin/python benchmarks/bench_fanout.py [--units 3] [--permutations 300] [--processes 1 2] [--no-tfce]
                                                [--slurm auto|yes|no] [--chunks-per-job 1]

24 participants (12 patients, 12 controls, age as covariate) on nilearn's 4 mm MNI brain mask (~29k voxels),
spatially smooth maps with a planted blob; ``--units`` map x contrast tests, each with ``--permutations``
permutations, max-t, cluster-extent and TFCE FWE and the GPD tail, as the group level runs them
(``group/fanout.py``). Each executor runs the same units; the script checks that every output array is
byte-identical to the single-process one and prints wall times and speed-ups (ratios in one run). SLURM runs when
``sinfo`` answers (``--slurm auto``), with LOGNAME set for sbatch; its time includes queueing and each array task's
Python start-up, which a small test pays and a real study (thousands of permutations per task) does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from nilearn import datasets
from scipy import ndimage, stats

from clbp_bidsapp.core.stats import Design
from clbp_bidsapp.group import fanout

FIELDS = ("t", "p_uncorrected", "p_fwe", "q_fdr", "max_null", "cluster_labels", "cluster_p_fwe", "tfce", "p_tfce_fwe",
          "max_tfce_null")  # fmt: skip


def units(n_units: int):
    mask = np.asanyarray(datasets.load_mni152_brain_mask(resolution=4).dataobj) > 0
    rng = np.random.default_rng(0)
    n = 24
    age = rng.uniform(20, 65, n)
    design = Design(matrix=np.column_stack([np.r_[np.ones(12), np.zeros(12)], np.ones(n), age - age.mean()]),
                    names=["group", "intercept", "age"], tested=0)  # fmt: skip
    centre = np.array(mask.shape) // 2
    blob = np.zeros(mask.shape, dtype=bool)
    blob[tuple(slice(c - 2, c + 2) for c in centre)] = True
    maps = []
    for _ in range(n_units):
        volumes = ndimage.gaussian_filter(rng.standard_normal((n, *mask.shape)), sigma=(0, 1, 1, 1))
        volumes[:12, blob] += 0.4
        maps.append(volumes[:, mask])
    return maps, design, mask


def run(executor, maps, design, mask, options) -> tuple[float, list]:
    start = time.perf_counter()
    with executor:
        pending = [
            executor.submit(data, design, label=f"unit {k}", mask=mask, **options) for k, data in enumerate(maps)
        ]
        results = [finish() for finish in pending]
    return time.perf_counter() - start, results


def identical(a, b) -> bool:
    for name in FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        if (left is None) != (right is None) or (left is not None and left.tobytes() != right.tobytes()):
            return False
    return a.tail_fits == b.tail_fits


def slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return done.returncode == 0 and any(state in done.stdout for state in ("idle", "mix"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=3)
    parser.add_argument("--permutations", type=int, default=300)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-tfce", action="store_true")
    parser.add_argument("--slurm", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--chunks-per-job", type=int, default=1)
    args = parser.parse_args()

    maps, design, mask = units(args.units)
    dof = design.matrix.shape[0] - design.matrix.shape[1]
    options = {"n_permutations": args.permutations, "seed": 0, "tfce": not args.no_tfce, "tail": "gpd",
               "cluster_threshold": float(stats.t.isf(0.001 / 2, dof))}  # fmt: skip
    tfce = "on" if options["tfce"] else "off"
    print(f"{args.units} units x {args.permutations} permutations, {int(mask.sum())} voxels, 24 participants, "
          f"TFCE {tfce}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    rows = []
    reference = None
    for processes in args.processes:
        executor = fanout.Serial() if processes == 1 else fanout.Pool(work, nprocs=processes)
        seconds, results = run(executor, maps, design, mask, options)
        reference = results if reference is None else reference
        rows.append((f"{processes} process(es)", seconds, all(map(identical, results, reference))))
    if args.slurm == "yes" or (args.slurm == "auto" and slurm_answers()):
        os.environ.setdefault("LOGNAME", "root")
        seconds, results = run(fanout.Slurm(work, chunks_per_job=args.chunks_per_job), maps, design, mask, options)
        rows.append(
            (f"SLURM ({args.chunks_per_job} chunk(s) per task)", seconds, all(map(identical, results, reference)))
        )
    shutil.rmtree(work, ignore_errors=True)
    base = rows[0][1]
    print(f"{'executor':<32} {'wall s':>8} {'speed-up':>9}  identical to the first")
    for name, seconds, same in rows:
        print(f"{name:<32} {seconds:8.1f} {base / seconds:9.2f}  {'yes' if same else 'NO'}")
    if not all(same for _, _, same in rows):
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
