"""Fan-out of the connectome tests: the edge-wise test and the NBS in one process and in a pool, same bytes.

    .venv/bin/python benchmarks/bench_connectome_fanout.py [--regions 160] [--participants 100]
                                                           [--permutations 1000] [--processes 1 2]

``--participants`` (half patients, age as covariate) x the edges of ``--regions`` regions (Fisher-z-like values
with a planted 8-region component in the patients); the edge-wise Freedman-Lane test (max-t FWE, FDR) and the
Network-Based Statistic (|t| > 3, extent, two-sided), submitted as the group level submits them
(``group/connectomes.py`` through ``group/fanout.py``). Prints wall times, speed-ups (ratios in one run) and
whether every output array is byte-identical to the single-process one. The pool's workers are started before the
clock starts, as in a group level, where the voxelwise stage has started them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from clbp_bidsapp.core.nbs import edge_indices
from clbp_bidsapp.core.stats import Design
from clbp_bidsapp.group import fanout


def problem(n_regions: int, n: int):
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 65, n)
    group = np.r_[np.ones(n // 2), np.zeros(n - n // 2)]
    design = Design(matrix=np.column_stack([group, np.ones(n), age - age.mean()]), names=["group", "intercept", "age"],
                    tested=0)  # fmt: skip
    rows, cols = edge_indices(n_regions)
    edges = rng.normal(0.3, 0.2, size=(n, rows.size))
    planted = (rows < 8) & (cols < 8)
    edges[: n // 2, planted] += 0.15
    return edges, design


def run(executor, edges, design, n_regions, n_permutations):
    if isinstance(executor, fanout.Pool):  # started and imported once per group level (the voxelwise stage's pool)
        list(executor.pool.map(fanout.split_chunks, [1] * executor.nprocs, [1] * executor.nprocs))
    start = time.perf_counter()
    with executor:
        edge = executor.submit(edges, design, label="edges", n_permutations=n_permutations, seed=1)
        nbs = executor.submit(edges, design, label="NBS", kind="nbs", n_nodes=n_regions, threshold=3.0,
                              n_permutations=n_permutations, seed=1)  # fmt: skip
        results = edge(), nbs()
    return time.perf_counter() - start, results


def same(a, b) -> bool:
    (edge_a, nbs_a), (edge_b, nbs_b) = a, b
    arrays = [(getattr(edge_a, f), getattr(edge_b, f)) for f in ("t", "p_uncorrected", "p_fwe", "q_fdr", "max_null")]
    arrays += [(nbs_a.null, nbs_b.null), (nbs_a.edge_component, nbs_b.edge_component)]
    return all(x.tobytes() == y.tobytes() for x, y in arrays) and [c.p_fwe for c in nbs_a.components] == [
        c.p_fwe for c in nbs_b.components
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=160)
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    edges, design = problem(args.regions, args.participants)
    print(f"{args.participants} participants x {edges.shape[1]} edges ({args.regions} regions), "
          f"{args.permutations} permutations: edge-wise test + NBS")  # fmt: skip
    reference = None
    first = None
    with tempfile.TemporaryDirectory() as work:
        for processes in args.processes:
            executor = fanout.Serial() if processes == 1 else fanout.Pool(Path(work), nprocs=processes)
            seconds, results = run(executor, edges, design, args.regions, args.permutations)
            reference = reference or results
            first = first or seconds
            print(f"{processes} process(es): {seconds:.1f} s, speed-up {first / seconds:.2f}x, identical to the "
                  f"first: {same(results, reference)}; NBS components with FWE p < 0.05: "
                  f"{sum(c.p_fwe < 0.05 for c in results[1].components)}")  # fmt: skip


if __name__ == "__main__":
    main()
