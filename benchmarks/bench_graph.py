"""Graph stage on a 300-node connectome: total time, where it goes, and ratios to references measured in one run.

    .venv/bin/python benchmarks/bench_graph.py

- The matrix: Pearson correlations of 300 regions x 240 volumes with 10 planted networks (generated in code).
- Total: ``graph_measures`` over the default 36 sparsities (0.05-0.40) with the default 10 random networks per
  threshold, and without modularity (Louvain, the one networkx step).
- Where the time goes, per stage summed over the 36 thresholds.
- Ratios: the total against one scipy ``csgraph.shortest_path`` (unweighted, all pairs) of the 0.40 graph, and
  the speed-up over networkx computing the same measures (clustering, global and local efficiency, all-pairs
  shortest paths for nodal efficiency, betweenness; one ``nx.random_reference`` network with its clustering and
  efficiency), both timed at the 0.10 and 0.40 thresholds.
CPU times (``time.process_time``) are reported beside wall times: BLAS is single-threaded inside the kernel, so
they are robust to other jobs sharing the cores.
"""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
from scipy.sparse.csgraph import shortest_path
from threadpoolctl import threadpool_limits

from clbp_bidsapp.core import graph


def connectome(n_nodes: int = 300, n_volumes: int = 240, n_networks: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    network = rng.integers(0, n_networks, n_nodes)
    series = rng.standard_normal((n_volumes, n_nodes)) + 0.8 * rng.standard_normal((n_volumes, n_networks))[:, network]
    series += 0.3 * rng.standard_normal((n_volumes, 1))  # global signal: some positive edges between networks
    return np.corrcoef(series.T)


def timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = function(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def stages(matrix: np.ndarray, sparsities, n_random: int = 10) -> dict[str, float]:
    """CPU seconds per stage over all thresholds (same calls as graph_measures makes)."""
    totals = dict.fromkeys(("threshold", "clustering+paths+betweenness", "local efficiency", "louvain"), 0.0)
    totals |= {"random rewiring": 0.0, "random C and L": 0.0}
    sub, _ = graph._check_matrix(matrix)
    rows, cols = graph._ranked_edges(sub)
    n = sub.shape[0]
    rng = np.random.default_rng(0)
    for s in sparsities:
        t = time.process_time()
        k = graph.n_edges_for(n, s)
        adj = np.zeros((n, n), dtype=bool)
        adj[rows[:k], cols[:k]] = True
        adj |= adj.T
        t1 = time.process_time()
        graph._clustering(adj)
        dist = graph._bfs(adj)
        graph._betweenness(adj, dist)
        t2 = time.process_time()
        graph._local_efficiency(adj)
        t3 = time.process_time()
        graph.modularity(adj, seed=0)
        t4 = time.process_time()
        nets = graph.randomize_degree_preserving(adj, n_networks=n_random, rng=rng)
        t5 = time.process_time()
        graph._clustering(nets)
        graph._inverse_distance_sums(nets)
        t6 = time.process_time()
        for name, dt in zip(totals, (t1 - t, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            totals[name] += dt
    return totals


def networkx_reference(adj: np.ndarray) -> float:
    """CPU seconds for networkx to compute the same measures of one graph and one random network's C and E."""
    g = nx.from_numpy_array(adj.astype(int))
    t = time.process_time()
    nx.average_clustering(g)
    nx.global_efficiency(g)
    nx.local_efficiency(g)
    dict(nx.all_pairs_shortest_path_length(g))
    nx.betweenness_centrality(g)
    r = nx.random_reference(g, niter=5, connectivity=False, seed=0)
    nx.average_clustering(r)
    nx.global_efficiency(r)
    return time.process_time() - t


def ours_reference(adj: np.ndarray) -> float:
    """CPU seconds for the same work with this module (no modularity; one random network)."""
    t = time.process_time()
    graph.binary_measures(adj, compute_modularity=False)
    nets = graph.randomize_degree_preserving(adj, n_networks=1, rng=np.random.default_rng(0))
    graph._clustering(nets)
    graph._inverse_distance_sums(nets)
    return time.process_time() - t


def main() -> None:
    matrix = connectome()
    sparsities = graph.DEFAULT_SPARSITIES
    print(f"300-node connectome, {len(sparsities)} sparsities {sparsities[0]}-{sparsities[-1]}, 10 random networks")

    wall, cpu, result = timed(graph.graph_measures, matrix)
    wall_nomod, cpu_nomod, _ = timed(graph.graph_measures, matrix, compute_modularity=False)
    print(f"graph_measures: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"  without modularity: {wall_nomod:.2f} s wall, {cpu_nomod:.2f} s CPU")
    table = result.global_table
    print(
        "  sigma at 0.05/0.20/0.40: "
        + " / ".join(f"{table.loc[s, 'sigma']:.2f}" for s in (0.05, 0.2, 0.4))
        + f"; modularity at 0.10: {table.loc[0.1, 'modularity']:.3f}"
    )

    with threadpool_limits(limits=1, user_api="blas"):
        parts = stages(matrix, sparsities)
    total = sum(parts.values())
    print("where the CPU time goes (stages timed separately, summed over thresholds):")
    for name, seconds in parts.items():
        print(f"  {name:30s} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")

    sub, _ = graph._check_matrix(matrix)
    dense = graph.proportional_threshold(sub, sparsity=0.4).astype(float)
    with threadpool_limits(limits=1, user_api="blas"):
        reps = 20
        t = time.process_time()
        for _ in range(reps):
            shortest_path(dense, unweighted=True, directed=False)
        apsp = (time.process_time() - t) / reps
    print(f"one csgraph all-pairs shortest path (0.40 graph): {1000 * apsp:.1f} ms CPU")
    print(f"RATIO graph stage / one csgraph APSP: {cpu / apsp:.0f}")

    for s in (0.1, 0.4):
        adj = graph.proportional_threshold(sub, sparsity=s)
        with threadpool_limits(limits=1, user_api="blas"):
            ours = ours_reference(adj)
        theirs = networkx_reference(adj)
        print(
            f"RATIO networkx / this module at sparsity {s:.2f} (same measures, 1 random network): "
            f"{theirs / ours:.0f}x  ({theirs:.2f} s vs {ours:.3f} s CPU)"
        )


if __name__ == "__main__":
    main()
