"""Graph-theory measures of ROI connectomes over a range of proportional thresholds (as GRETNA computes them).

A symmetric ROI-by-ROI connectivity matrix (Pearson r or Fisher z) is binarised at each sparsity of a range by
keeping its strongest positive edges (proportional thresholding; Achard & Bullmore 2007; Wang et al. 2015,
GRETNA). On each binary undirected graph this module computes

- global measures: average clustering coefficient (Watts & Strogatz 1998), characteristic path length (harmonic
  mean of the shortest path lengths, i.e. ``1 / global efficiency``, as GRETNA does for disconnected graphs; the
  arithmetic mean over the largest connected component is reported too), global and local efficiency (Latora &
  Marchiori 2001), modularity of the Louvain partition (Blondel et al. 2008), and small-world measures
  gamma = C / C_rand, lambda = L / L_rand, sigma = gamma / lambda (Humphries et al. 2006) against degree-preserving
  random networks (Maslov & Sneppen 2002);
- nodal measures: degree, betweenness centrality (Freeman 1977, Brandes 2001), nodal efficiency (Achard &
  Bullmore 2007), local clustering coefficient and nodal local efficiency;
- the area under each curve over the sparsity range (trapezoid rule), the threshold-independent summary GRETNA
  reports.

Every measure is the networkx definition (tested against networkx on known graphs); the algorithms are
vectorised in numpy because networkx is pure Python: shortest paths are breadth-first searches run for all
sources at once as 0/1 matrix products (exact integer arithmetic in float32), betweenness is Brandes' dependency
accumulation in the same matrix form, triangles come from ``(A @ A) * A``, local efficiency runs the same search
on all neighbourhood subgraphs stacked in one array, and the random networks of all repetitions are rewired
together (see :func:`randomize_degree_preserving`). Only modularity calls networkx (Louvain).

Random networks only get the two quantities sigma needs (clustering and harmonic path length), each a few
stacked matrix products. On a 300-node connectome over the 36 default thresholds with 10 random networks per
threshold the whole stage takes a few seconds of one core, about a third of it networkx's Louvain
(``benchmarks/bench_graph.py`` prints the split); ``compute_modularity=False`` skips it.

Thresholding: the edges of the valid nodes are ranked by decreasing weight (positive weights only); ties are
broken by position in the upper triangle (row-major, lower indices first), so results are deterministic; the
numbers of edges are ``ceil(sparsity * n (n - 1) / 2)`` with n the nodes kept.

The small-world index omega (Telesford et al. 2011) is not computed: it needs lattice reference networks made
by rewiring towards a ring, which costs as much again as the random networks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

#: GRETNA's default sparsity range: 0.05 to 0.40 in steps of 0.01 (36 thresholds).
DEFAULT_SPARSITIES: tuple[float, ...] = tuple(round(0.05 + 0.01 * i, 2) for i in range(36))

GLOBAL_MEASURES: tuple[str, ...] = (
    "clustering",
    "path_length",
    "path_length_lcc",
    "global_efficiency",
    "local_efficiency",
    "modularity",
    "clustering_rand",
    "path_length_rand",
    "gamma",
    "lambda",
    "sigma",
)
NODAL_MEASURES: tuple[str, ...] = ("degree", "betweenness", "efficiency", "clustering", "local_efficiency")

#: fewest nodes with data for which graph measures are defined (clustering needs triangles: three nodes)
MIN_NODES = 3

# cap on the number of entries of one stack of neighbourhood subgraphs searched together (local efficiency):
# blocks of about 1 MB stay in cache, which measured faster than larger stacks on a 300-node connectome
_LOCAL_BLOCK = 200_000


@dataclass(frozen=True)
class GraphResult:
    """Graph measures of one connectome over a sparsity range.

    Attributes
    ----------
    global_table : DataFrame indexed by ``sparsity`` with the bookkeeping columns ``n_nodes`` (nodes kept),
        ``n_edges`` (edges kept) and ``lcc_fraction`` (share of nodes in the largest connected component),
        then one column per name in :data:`GLOBAL_MEASURES`.
    nodal : long DataFrame, one row per (sparsity, node) with columns ``sparsity``, ``node`` (row index in the
        input matrix) and one column per name in :data:`NODAL_MEASURES`; NaN for dropped nodes.
    auc_global : area under each global measure's curve over the sparsity range (``np.trapezoid``).
    auc_nodal : DataFrame indexed by ``node``, one column per nodal measure: area under each node's curve.
    kept : (n,) bool, the nodes in the graph (False for nodes with an all-NaN row).
    computed : False when fewer than :data:`MIN_NODES` nodes had data: every measure is then NaN (n/a).
    """

    global_table: pd.DataFrame
    nodal: pd.DataFrame
    auc_global: dict[str, float]
    auc_nodal: pd.DataFrame
    kept: np.ndarray = field(repr=False)
    computed: bool = True


# --------------------------------------------------------------------------------------------- thresholding


def kept_nodes(matrix: np.ndarray) -> np.ndarray:
    """Nodes with data: False where every off-diagonal entry of the node's row is NaN (no coverage)."""
    m = np.asarray(matrix, dtype=np.float64)
    off = ~np.eye(m.shape[0], dtype=bool)
    return ~np.all(np.isnan(m) | ~off, axis=1) if m.shape[0] > 1 else np.ones(m.shape[0], dtype=bool)


def _check_matrix(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"connectivity matrix must be square, got shape {m.shape}")
    if not np.allclose(m, m.T, equal_nan=True, rtol=1e-6, atol=1e-8):
        raise ValueError("connectivity matrix is not symmetric")
    kept = kept_nodes(m)
    sub = m[np.ix_(kept, kept)]
    off = ~np.eye(sub.shape[0], dtype=bool)
    if np.isnan(sub[off]).any():
        raise ValueError("connectivity matrix has NaN entries outside whole rows/columns of uncovered regions")
    return sub, kept


def n_edges_for(n_nodes: int, sparsity: float) -> int:
    """Edges kept at a sparsity: ``ceil(sparsity * n (n - 1) / 2)`` as GRETNA (tolerant to float rounding)."""
    possible = n_nodes * (n_nodes - 1) // 2
    return min(possible, max(0, math.ceil(sparsity * possible - 1e-9)))


def _ranked_edges(sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangle positive edges sorted by decreasing weight (ties: row-major order, lower index first)."""
    rows, cols = np.triu_indices(sub.shape[0], k=1)
    w = sub[rows, cols]
    positive = w > 0
    rows, cols, w = rows[positive], cols[positive], w[positive]
    order = np.argsort(-w, kind="stable")
    return rows[order], cols[order]


def proportional_threshold(matrix: np.ndarray, *, sparsity: float) -> np.ndarray:
    """Binary adjacency keeping the strongest positive edges of a symmetric matrix (proportional threshold).

    Keeps the ``ceil(sparsity * n (n - 1) / 2)`` largest positive off-diagonal weights, n counting only the
    nodes with data (rows that are all NaN are dropped and get no edge), as GRETNA's ``gretna_R2b`` with
    type ``'s'``; if the matrix has fewer positive edges, all of them are kept. Ties at the cut are broken by
    position (row-major upper triangle, lower indices first), so the result is deterministic.

    Returns
    -------
    (n, n) bool adjacency of the input's nodes, symmetric, empty diagonal.
    """
    sub, kept = _check_matrix(matrix)
    rows, cols = _ranked_edges(sub)
    k = n_edges_for(sub.shape[0], sparsity)
    index = np.flatnonzero(kept)
    adj = np.zeros((kept.size, kept.size), dtype=bool)
    adj[index[rows[:k]], index[cols[:k]]] = True
    return adj | adj.T


# --------------------------------------------------------------------------------------------- binary kernels


def _bfs(adj: np.ndarray) -> np.ndarray:
    """Shortest path lengths of a binary graph ((n, n) 0/1) by level-synchronous BFS from all sources at once.

    The frontier at distance d is ``(frontier_{d-1} @ A > 0) & ~reached`` (0/1 float32 products are exact).
    Returns float32 distances with ``inf`` for unreachable pairs and 0 on the diagonal.
    """
    a = np.asarray(adj, dtype=np.float32)
    n = a.shape[-1]
    dist = np.full(a.shape, np.inf, dtype=np.float32)
    reached = np.eye(n, dtype=bool) | (a > 0)
    dist[a > 0] = 1
    np.fill_diagonal(dist, 0)
    frontier = a
    d = 1
    while True:
        d += 1
        new = (frontier @ a) > 0
        new &= ~reached
        if not new.any():
            return dist
        dist[new] = d
        reached |= new
        frontier = new.astype(np.float32)


def _inverse_distance_sums(adj: np.ndarray) -> np.ndarray:
    """Row sums of 1 / d(i, j) over j != i for a stack of binary graphs ((b, n, n) 0/1), by BFS levels.

    A graph leaves the stack once a level finds nothing new or every pair of non-isolated nodes is reached
    (isolated nodes, e.g. the padding of stacked neighbourhoods, can never be), so a graph of diameter 2 costs
    one matrix product.
    """
    a = np.asarray(adj, dtype=np.float32)
    n = a.shape[-1]
    degree = a.sum(axis=-1, dtype=np.float64)
    total = degree.copy()  # distance-1 pairs
    # pairs that can never be reached count as reached for the stopping rule
    reached = (a > 0) | np.eye(n, dtype=bool) | (degree == 0)[:, :, None] | (degree == 0)[:, None, :]
    frontier = a
    active = np.flatnonzero(~reached.all(axis=(-2, -1)))
    reached, frontier = reached[active], frontier[active]
    d = 1
    while active.size:
        d += 1
        new = np.matmul(frontier, a[active]) > 0
        new &= ~reached
        counts = new.sum(axis=-1)
        total[active] += counts / d
        reached |= new
        keep = counts.any(axis=-1) & ~reached.all(axis=(-2, -1))
        active, reached, frontier = active[keep], reached[keep], new[keep].astype(np.float32)
    return total


def _clustering(adj: np.ndarray) -> np.ndarray:
    """Local clustering coefficient 2 t_i / (k_i (k_i - 1)) of a stack of binary graphs (0 when k_i < 2)."""
    a = np.asarray(adj, dtype=np.float32)
    twice_triangles = (np.matmul(a, a) * a).sum(axis=-1, dtype=np.float64)
    k = a.sum(axis=-1, dtype=np.float64)
    pairs = k * (k - 1)
    return np.divide(twice_triangles, pairs, out=np.zeros_like(pairs), where=pairs > 0)


def _betweenness(adj: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Normalised betweenness centrality (Brandes 2001) of a binary graph, all sources at once.

    sigma[s, v] counts shortest s-v paths level by level; the dependencies
    delta[s, v] = sum over successors w of v: sigma[s, v] / sigma[s, w] (1 + delta[s, w]) are accumulated from
    the farthest level back. Betweenness is sum_s delta[s, v] over s != v, divided by (n - 1)(n - 2) (networkx's
    normalisation for undirected graphs: both orientations of each pair are counted).
    """
    n = adj.shape[0]
    if n < 3:
        return np.zeros(n)
    a = adj.astype(np.float64)
    finite = np.isfinite(dist)
    depth = int(dist[finite].max()) if finite.any() else 0
    level = np.where(finite, dist, -1).astype(np.int32)
    sigma = np.eye(n)
    for d in range(1, depth + 1):
        previous = np.where(level == d - 1, sigma, 0.0)
        counts = previous @ a
        at = level == d
        sigma[at] = counts[at]
    delta = np.zeros((n, n))
    for d in range(depth, 0, -1):
        coef = np.where(level == d, (1.0 + delta) / np.where(level == d, sigma, 1.0), 0.0)
        # round coef to a power-of-two grid fine enough that every partial sum of ``coef @ a`` is exact
        # (coef >= 0 and a is 0/1, so partial sums never exceed the largest row sum): the product then does not
        # depend on the BLAS summation order, i.e. on the thread count
        largest = float(coef.sum(axis=1).max())
        if largest > 0:
            scale = 2.0 ** (51 - math.ceil(math.log2(largest)))
            coef = np.round(coef * scale) / scale
        contribution = coef @ a
        parent = level == d - 1
        delta[parent] += sigma[parent] * contribution[parent]
    np.fill_diagonal(delta, 0.0)
    return delta.sum(axis=0) / ((n - 1) * (n - 2))


def _local_efficiency(adj: np.ndarray) -> np.ndarray:
    """Nodal local efficiency: global efficiency of the subgraph induced by each node's neighbours.

    Neighbourhood subgraphs are stacked (padded with isolated dummy nodes, which are never reached) and searched
    together (:func:`_inverse_distance_sums`); nodes are processed in blocks of similar degree to bound memory
    and padding. 0 when k_i < 2.
    """
    n = adj.shape[0]
    k = adj.sum(axis=1)
    out = np.zeros(n)
    padded = np.zeros((n + 1, n + 1), dtype=np.float32)
    padded[:n, :n] = adj
    order = np.argsort(k, kind="stable")
    order = order[k[order] >= 2]
    start = 0
    while start < order.size:
        # grow the block while it fits (degrees increase along `order`, so the last node sets the padding)
        stop = start + 1
        while stop < order.size and (stop + 1 - start) * int(k[order[stop]]) ** 2 <= _LOCAL_BLOCK:
            stop += 1
        block = order[start:stop]
        kmax = int(k[block[-1]])
        idx = np.full((block.size, kmax), n, dtype=np.int64)
        for row, node in enumerate(block):
            neighbours = np.flatnonzero(adj[node])
            idx[row, : neighbours.size] = neighbours
        sub = padded[idx[:, :, None], idx[:, None, :]]
        kb = k[block].astype(np.float64)
        out[block] = _inverse_distance_sums(sub).sum(axis=1) / (kb * (kb - 1))
        start = stop
    return out


def binary_measures(
    adj: np.ndarray, *, seed: int = 0, graph: nx.Graph | None = None, compute_modularity: bool = True
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Global and nodal measures of one binary undirected graph (networkx definitions).

    Parameters
    ----------
    adj : (n, n) bool or 0/1 symmetric adjacency, empty diagonal.
    seed : seed of the Louvain community detection (modularity).
    graph : the same graph as a networkx Graph, if already built (see :func:`modularity`).
    compute_modularity : False skips the Louvain partition (the slowest step; modularity is then NaN).

    Returns
    -------
    global : clustering (average over all nodes, 0 for k < 2), path_length (harmonic: 1 / global efficiency),
        path_length_lcc (mean shortest path within the largest connected component), global_efficiency,
        local_efficiency (average), modularity (of ``nx.community.louvain_communities``), lcc_fraction.
    nodal : degree, betweenness (normalised), efficiency (mean of 1 / d over the other nodes), clustering,
        local_efficiency; arrays of length n.
    """
    a = np.asarray(adj).astype(bool)
    n = a.shape[0]
    degree = a.sum(axis=1).astype(np.float64)
    clustering = _clustering(a)
    dist = _bfs(a)
    with np.errstate(divide="ignore"):
        inverse = np.where(np.isfinite(dist) & (dist > 0), 1.0 / dist.astype(np.float64), 0.0)
    efficiency = inverse.sum(axis=1) / (n - 1) if n > 1 else np.zeros(n)
    global_efficiency = float(efficiency.mean()) if n > 1 else float("nan")
    # largest connected component: most reachable nodes; among equal sizes, the one with the lowest node index
    reach = np.isfinite(dist).sum(axis=1)
    root = int(np.argmax(reach))
    members = np.isfinite(dist[root])
    m = int(members.sum())
    path_lcc = float(dist[np.ix_(members, members)].sum(dtype=np.float64) / (m * (m - 1))) if m > 1 else math.nan
    local = _local_efficiency(a)
    globals_ = {
        "clustering": float(clustering.mean()) if n else math.nan,
        "path_length": 1.0 / global_efficiency if global_efficiency > 0 else math.inf,
        "path_length_lcc": path_lcc,
        "global_efficiency": global_efficiency,
        "local_efficiency": float(local.mean()) if n else math.nan,
        "modularity": modularity(a, seed=seed, graph=graph) if compute_modularity else math.nan,
        "lcc_fraction": m / n if n else math.nan,
    }
    nodal = {
        "degree": degree,
        "betweenness": _betweenness(a, dist),
        "efficiency": efficiency,
        "clustering": clustering,
        "local_efficiency": local,
    }
    return globals_, nodal


def modularity(adj: np.ndarray, *, seed: int = 0, graph: nx.Graph | None = None) -> float:
    """Newman (2006) modularity Q of the Louvain partition (Blondel et al. 2008; networkx, seeded).

    ``graph`` may pass the same graph already built as a networkx Graph (nodes 0..n-1); its edge insertion
    order is part of what the seeded Louvain result depends on. NaN for a graph without edges.
    """
    a = np.asarray(adj).astype(bool)
    rows, cols = np.nonzero(np.triu(a, k=1))
    if rows.size == 0:
        return math.nan
    if graph is None:
        graph = nx.Graph()
        graph.add_nodes_from(range(a.shape[0]))
        graph.add_edges_from(zip(rows.tolist(), cols.tolist(), strict=True))
    labels = np.empty(a.shape[0], dtype=np.int64)
    for label, members in enumerate(nx.community.louvain_communities(graph, seed=seed)):
        labels[list(members)] = label
    # Q = sum_c [ L_c / m - (d_c / 2m)^2 ]: edges inside each community and its total degree
    m = rows.size
    inside = np.bincount(labels[rows][labels[rows] == labels[cols]], minlength=labels.max() + 1)
    degree = np.bincount(labels, weights=a.sum(axis=1), minlength=labels.max() + 1)
    return float(np.sum(inside / m - (degree / (2.0 * m)) ** 2))


# --------------------------------------------------------------------------------------------- random networks


def randomize_degree_preserving(
    adj: np.ndarray, *, n_networks: int, swaps_per_edge: int = 5, rng: np.random.Generator
) -> np.ndarray:
    """Degree-preserving random networks by Maslov & Sneppen (2002) edge swaps, all networks rewired together.

    Each round pairs every network's edges by a random permutation and proposes one double-edge swap per pair:
    (a, b), (c, d) -> (a, d), (c, b), with (c, d) flipped at random. A proposal is applied when it creates no
    self-loop, neither new edge already exists, and no other proposal of the round creates the same edge; the
    accepted swaps touch disjoint edges, so they are applied together and degrees are preserved exactly.
    ``swaps_per_edge`` rounds are run, so each edge takes part in about that many proposed swaps (as BCT's
    ``randmio_und(W, ITER)`` rewires each edge "approximately ITER times"). The default 5 is twice what is
    needed on 300-node connectomes at sparsities 0.05-0.40 and on a Watts-Strogatz lattice: the random
    networks' mean clustering and path length stop changing after 2-3 rounds (checked up to 50). The random
    networks' clustering agrees with ``nx.random_reference``'s. Connectedness is not enforced (as BCT's
    ``randmio_und``; the harmonic path length is defined for disconnected graphs).

    Returns
    -------
    (n_networks, n, n) bool adjacency stack.
    """
    a = np.asarray(adj).astype(bool)
    n = a.shape[0]
    rows, cols = np.nonzero(np.triu(a, k=1))
    e = rows.size
    if e < 2 or n_networks == 0:
        return np.repeat(a[None], n_networks, axis=0)
    # edges of all networks in flat arrays (network r owns entries r*e .. r*e+e-1), endpoints lo < hi; int32
    # indices where they fit (half the memory traffic of the gathers and scatters that make up each round)
    itype = np.int32 if n_networks * max(n * n, e) < np.iinfo(np.int32).max else np.int64
    lo = np.tile(rows.astype(itype), n_networks)
    hi = np.tile(cols.astype(itype), n_networks)
    half = e // 2
    base = np.repeat(np.arange(n_networks, dtype=itype) * itype(n * n), half)
    offset = (np.arange(n_networks, dtype=itype) * itype(e))[:, None]
    upper = np.zeros(n_networks * n * n, dtype=bool)  # upper-triangle edge indicator of every network
    upper[np.repeat(np.arange(n_networks, dtype=itype) * itype(n * n), e) + lo * itype(n) + hi] = True
    claim = np.full(n_networks * n * n, -1, dtype=itype)
    proposal = np.arange(n_networks * half, dtype=itype)
    order = np.tile(np.arange(e, dtype=itype), (n_networks, 1))
    n_ = itype(n)
    for _ in range(swaps_per_edge):
        perm = rng.permuted(order, axis=1)
        perm += offset
        i1 = perm[:, 0 : 2 * half : 2].ravel()
        i2 = perm[:, 1 : 2 * half : 2].ravel()
        a_, b_, c_, d_ = lo[i1], hi[i1], lo[i2], hi[i2]
        old1 = base + a_ * n_ + b_
        old2 = base + c_ * n_ + d_
        flip = rng.random(i1.size) < 0.5
        c_, d_ = np.where(flip, d_, c_), np.where(flip, c_, d_)
        # new edges (a, d) and (c, b)
        lo1, hi1 = np.minimum(a_, d_), np.maximum(a_, d_)
        lo2, hi2 = np.minimum(c_, b_), np.maximum(c_, b_)
        new1 = base + lo1 * n_ + hi1
        new2 = base + lo2 * n_ + hi2
        ok = lo1 != hi1
        ok &= lo2 != hi2
        ok &= ~upper[new1]
        ok &= ~upper[new2]
        # one winner per new edge among the proposals of this round
        claim[new1[ok]] = proposal[ok]
        claim[new2[ok]] = proposal[ok]
        ok &= claim[new1] == proposal
        ok &= claim[new2] == proposal
        claim[new1] = -1
        claim[new2] = -1
        upper[old1[ok]] = False
        upper[old2[ok]] = False
        upper[new1[ok]] = True
        upper[new2[ok]] = True
        lo[i1[ok]], hi[i1[ok]] = lo1[ok], hi1[ok]
        lo[i2[ok]], hi[i2[ok]] = lo2[ok], hi2[ok]
    nets = upper.reshape(n_networks, n, n)
    return nets | nets.transpose(0, 2, 1)


def random_reference(
    adj: np.ndarray, *, n_random: int, swaps_per_edge: int = 5, rng: np.random.Generator
) -> tuple[float, float]:
    """Mean clustering and harmonic path length of degree-preserving random versions of a graph.

    Only the two quantities small-worldness needs are computed on the random networks (triangles by a
    stacked matrix product, path lengths by a stacked BFS), which keeps their cost to a few matrix products each.
    """
    nets = randomize_degree_preserving(adj, n_networks=n_random, swaps_per_edge=swaps_per_edge, rng=rng)
    n = nets.shape[-1]
    clustering = _clustering(nets).mean(axis=-1)
    efficiency = _inverse_distance_sums(nets).sum(axis=-1) / (n * (n - 1))
    with np.errstate(divide="ignore"):
        path = np.where(efficiency > 0, 1.0 / efficiency, np.inf)
    return float(clustering.mean()), float(path.mean())


# --------------------------------------------------------------------------------------------- driver


def _threshold_seed(seed: int, n_edges: int) -> np.random.SeedSequence:
    # the random networks at a threshold depend only on (seed, edges kept), not on the other sparsities asked for
    return np.random.SeedSequence([int(seed), int(n_edges)])


def graph_measures(
    matrix: np.ndarray,
    *,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    n_random: int = 10,
    swaps_per_edge: int = 5,
    seed: int = 0,
    compute_modularity: bool = True,
) -> GraphResult:
    """Global and nodal graph measures of a connectome over a proportional-threshold range, and their AUC.

    Parameters
    ----------
    matrix : (n, n) symmetric connectivity (Pearson r or Fisher z; only the order of the weights matters).
        Regions without coverage (all-NaN rows/columns) are dropped from the graph and get NaN nodal values.
    sparsities : fractions of the possible edges to keep (see :func:`proportional_threshold`).
    n_random : degree-preserving random networks per threshold for gamma, lambda and sigma (0: not computed).
    swaps_per_edge : rewiring rounds of each random network (see :func:`randomize_degree_preserving`).
    seed : seeds the random networks (per threshold, from ``(seed, edges kept)``) and the Louvain modularity.
    compute_modularity : False skips Louvain (about half of the run time on a 300-node atlas); modularity is NaN.

    BLAS runs single-threaded inside this function (``threadpoolctl``): the matrix products are small
    (a few hundred rows), gain nothing from threads and lose much when cores are shared; it also makes the
    result independent of the thread count.

    Returns
    -------
    GraphResult ; the same inputs give identical results.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _graph_measures(
            matrix,
            sparsities=sparsities,
            n_random=n_random,
            swaps_per_edge=swaps_per_edge,
            seed=seed,
            compute_modularity=compute_modularity,
        )


def _graph_measures(
    matrix: np.ndarray,
    *,
    sparsities: Sequence[float],
    n_random: int,
    swaps_per_edge: int,
    seed: int,
    compute_modularity: bool,
) -> GraphResult:
    sub, kept = _check_matrix(matrix)
    sparsities = np.asarray(sparsities, dtype=np.float64)
    if sparsities.ndim != 1 or sparsities.size == 0 or np.any((sparsities <= 0) | (sparsities > 1)):
        raise ValueError("sparsities must be a non-empty list of values in (0, 1]")
    n_all, n = kept.size, sub.shape[0]
    if n < MIN_NODES:
        return _not_computed(kept, sparsities)
    rows, cols = _ranked_edges(sub)
    global_rows = []
    nodal_frames = []
    # proportional thresholds are nested: the networkx graph (for Louvain) grows by the edges of the next rank
    nx_graph, in_graph = nx.Graph(), 0
    nx_graph.add_nodes_from(range(n))
    for sparsity in sparsities:
        k = min(n_edges_for(n, float(sparsity)), rows.size)
        adj = np.zeros((n, n), dtype=bool)
        adj[rows[:k], cols[:k]] = True
        adj |= adj.T
        if compute_modularity:
            if k < in_graph:
                nx_graph, in_graph = nx.Graph(), 0
                nx_graph.add_nodes_from(range(n))
            nx_graph.add_edges_from(zip(rows[in_graph:k].tolist(), cols[in_graph:k].tolist(), strict=True))
            in_graph = k
        seq = _threshold_seed(seed, k)
        louvain_seed, random_seed = (int(s) for s in seq.generate_state(2))
        g, nodal = binary_measures(adj, seed=louvain_seed, graph=nx_graph, compute_modularity=compute_modularity)
        c_rand = l_rand = math.nan
        if n_random > 0:
            c_rand, l_rand = random_reference(
                adj, n_random=n_random, swaps_per_edge=swaps_per_edge, rng=np.random.default_rng(random_seed)
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.float64(g["clustering"]) / c_rand
            lam = np.float64(g["path_length"]) / l_rand
            sigma = gamma / lam
        global_rows.append(
            {
                "sparsity": float(sparsity),
                "n_nodes": n,
                "n_edges": k,
                "lcc_fraction": g["lcc_fraction"],
                **{name: g[name] for name in GLOBAL_MEASURES[:6]},
                "clustering_rand": c_rand,
                "path_length_rand": l_rand,
                "gamma": float(gamma),
                "lambda": float(lam),
                "sigma": float(sigma),
            }
        )
        frame = {"sparsity": np.full(n_all, float(sparsity)), "node": np.arange(n_all)}
        for name in NODAL_MEASURES:
            values = np.full(n_all, np.nan)
            values[kept] = nodal[name]
            frame[name] = values
        nodal_frames.append(pd.DataFrame(frame))
    global_table = pd.DataFrame(global_rows).set_index("sparsity")
    nodal_table = pd.concat(nodal_frames, ignore_index=True)
    auc_global = {name: float(np.trapezoid(global_table[name].to_numpy(), x=sparsities)) for name in GLOBAL_MEASURES}
    auc_nodal = pd.DataFrame(
        {
            name: np.trapezoid(nodal_table[name].to_numpy().reshape(sparsities.size, n_all), x=sparsities, axis=0)
            for name in NODAL_MEASURES
        },
        index=pd.Index(np.arange(n_all), name="node"),
    )
    return GraphResult(global_table, nodal_table, auc_global, auc_nodal, kept)


def _not_computed(kept: np.ndarray, sparsities: np.ndarray) -> GraphResult:
    """The result of a connectome with fewer than :data:`MIN_NODES` nodes with data: every measure NaN."""
    n_all, n = kept.size, int(kept.sum())
    global_table = pd.DataFrame(
        {"sparsity": sparsities, "n_nodes": n, "n_edges": 0, "lcc_fraction": math.nan}
        | dict.fromkeys(GLOBAL_MEASURES, math.nan)
    ).set_index("sparsity")
    nodal = pd.DataFrame(
        {"sparsity": np.repeat(sparsities, n_all), "node": np.tile(np.arange(n_all), sparsities.size)}
        | dict.fromkeys(NODAL_MEASURES, math.nan)
    )
    auc_nodal = pd.DataFrame(
        {name: np.full(n_all, np.nan) for name in NODAL_MEASURES}, index=pd.Index(np.arange(n_all), name="node")
    )
    return GraphResult(global_table, nodal, dict.fromkeys(GLOBAL_MEASURES, math.nan), auc_nodal, kept, computed=False)
