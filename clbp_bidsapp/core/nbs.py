"""Network-Based Statistic (Zalesky, Fornito & Bullmore 2010) for group differences in ROI connectomes.

Every edge (upper triangle of the region x region matrix, in ``np.triu_indices(n_nodes, k=1)`` order) gets the
GLM t of the tested regressor. Edges with |t| above a primary threshold (t > threshold and, two-sided,
t < -threshold as a separate set) form a graph whose connected components are scored by their *extent* (number
of edges) or *intensity* (sum of |t| - threshold over their edges). The family-wise error of a component is the
fraction of permutations whose largest component (over both tails when two-sided) is at least as large.

Permutations follow Freedman & Lane (1983) exactly as :func:`clbp_bidsapp.core.stats.permutation_test` does
(residuals of the nuisance model permuted, full model refitted, evaluated in closed form for blocks of
permutations) and draw the same permutation stream for the same seed: permutation k of both functions is the same
reordering, and the first one is the identity, so p >= 1 / n_permutations. The components of a whole block of
permutations are found with one :func:`scipy.sparse.csgraph.connected_components` call on the block-diagonal
union of their supra-threshold graphs. The null (the largest component of each permutation) is computed per seeded
chunk of the stream (:func:`nbs_nulls`); the chunks' nulls concatenate (:func:`merge_nbs_nulls`), so
``group/fanout.py`` can compute them in other processes or SLURM jobs and the result is the same to the bit.

Edges must be finite in every participant: the caller drops regions (or edges) that are missing in anyone before
calling (``group/connectomes.py`` drops regions without coverage in any included participant).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from clbp_bidsapp.core.stats import PERMUTATIONS_PER_CHUNK, Design, FreedmanLaneT, chunk_count, permutation_stream

MEASURES = ("extent", "intensity")


@dataclass(frozen=True)
class NBSComponent:
    """One observed supra-threshold component."""

    edges: np.ndarray  # indices into the upper-triangle edge order
    nodes: np.ndarray  # node indices (sorted)
    size: float  # number of edges (extent) or sum of |t| - threshold (intensity)
    sign: int  # +1: t > threshold (patients > controls for the group column), -1: t < -threshold
    p_fwe: float


@dataclass(frozen=True)
class NBSResult:
    t: np.ndarray  # (n_edges,) observed t of the tested regressor
    components: list[NBSComponent]  # sorted by size (largest first)
    edge_component: np.ndarray  # (n_edges,) 1-based index into ``components`` (0 = not supra-threshold)
    null: np.ndarray  # (n_permutations,) largest component size per permutation (identity first)
    threshold: float
    measure: str
    two_sided: bool
    n_permutations: int
    n_nodes: int


@dataclass(frozen=True)
class NBSNulls:
    """The largest component of each permutation of ``chunks``; parts merge exactly (:func:`merge_nbs_nulls`)."""

    chunks: range
    max_null: np.ndarray  # (permutations,) largest component size over the tested signs


def merge_nbs_nulls(parts: Sequence[NBSNulls]) -> NBSNulls:
    """The nulls of consecutive chunk ranges as one (concatenated in chunk order)."""
    parts = sorted(parts, key=lambda part: part.chunks.start)
    for before, after in itertools.pairwise(parts):
        if before.chunks.stop != after.chunks.start:
            raise ValueError(f"chunks {before.chunks} and {after.chunks} are not consecutive")
    return NBSNulls(range(parts[0].chunks.start, parts[-1].chunks.stop), np.concatenate([p.max_null for p in parts]))


def edge_indices(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every edge, in the order used by :func:`network_based_statistic`."""
    return np.triu_indices(n_nodes, k=1)


def block_components(
    t_block: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_nodes: int, *, threshold: float, sign: int, measure: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of ``sign * t > threshold`` in each row of ``t_block`` (permutations, edges).

    Returns the (permutation, edge) position of every supra-threshold edge (a (2, k) array), the label of its
    component (labels are unique across the block) and the size of every label (0 for labels without edges).
    """
    which, edge = np.nonzero(sign * t_block > threshold)
    a = which * n_nodes + rows[edge]
    b = which * n_nodes + cols[edge]
    total = t_block.shape[0] * n_nodes
    graph = sparse.coo_matrix((np.ones(a.size, dtype=np.int8), (a, b)), shape=(total, total)).tocsr()
    n_labels, labels = csgraph.connected_components(graph, directed=False)
    comp = labels[a]
    weights = None if measure == "extent" else sign * t_block[which, edge] - threshold
    sizes = np.bincount(comp, weights=weights, minlength=n_labels)
    return np.stack([which, edge]), comp, sizes.astype(np.float64)


def network_based_statistic(
    edges: np.ndarray,
    design: Design,
    n_nodes: int,
    *,
    threshold: float = 3.0,
    n_permutations: int = 5000,
    seed: int = 0,
    two_sided: bool = True,
    measure: str = "extent",
    block: int = 128,
    blocks: np.ndarray | None = None,
    nulls: NBSNulls | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> NBSResult:
    """Network-Based Statistic (Zalesky, Fornito & Bullmore 2010) of ``design.tested`` on connectome edges.

    Parameters
    ----------
    edges
        (participants, n_edges) edge values (e.g. Fisher z) in ``np.triu_indices(n_nodes, k=1)`` order. Must be
        finite: drop regions or edges missing in any participant before calling.
    design
        GLM design (:func:`core.stats.design_matrix`); the t of column ``design.tested`` is thresholded.
    n_nodes
        Number of regions.
    threshold
        Primary |t| threshold forming supra-threshold edges.
    n_permutations, seed
        Freedman-Lane permutations (the first is the identity), the same stream as
        :func:`core.stats.permutation_test` with the same seed (and ``blocks``).
    blocks
        Exchangeability block of each participant (e.g. the site): permutations stay within blocks; ``None``: free.
    two_sided
        Positive (t > threshold) and negative (t < -threshold) components, scored against one null of the largest
        component over both tails; otherwise positive components only.
    measure
        ``"extent"`` (number of edges) or ``"intensity"`` (sum of |t| - threshold over the component's edges).
    nulls
        The merged :func:`nbs_nulls` of every chunk, computed elsewhere (``group/fanout.py``); the result is then
        identical to computing them here.
    on_progress
        Called with the number of permutations after each block (a progress bar's update).

    Returns
    -------
    NBSResult
        Observed t per edge, the observed components (edges, nodes, size, sign, FWE p) and the null distribution
        of the largest component size.
    """
    y, t_of, rows, cols = _checked(edges, design, n_nodes, measure=measure, n_permutations=n_permutations)
    signs = (1, -1) if two_sided else (1,)
    if nulls is None:
        nulls = _chunk_nulls(t_of, rows, cols, n_nodes, n_permutations=n_permutations, seed=seed,
                             chunks=range(chunk_count(n_permutations)), signs=signs, threshold=threshold,
                             measure=measure, block=block, blocks=blocks, on_progress=on_progress)  # fmt: skip
    if nulls.chunks != range(chunk_count(n_permutations)) or nulls.max_null.size != n_permutations:
        raise ValueError(f"the nulls cover chunks {nulls.chunks}, not all {n_permutations} permutations")
    observed = t_of(np.arange(y.shape[0])[None, :])  # the identity: as core.stats.permutation_test
    components: list[tuple[np.ndarray, np.ndarray, float, int]] = []
    for sign in signs:
        (_, edge), comp, sizes = block_components(observed, rows, cols, n_nodes, threshold=threshold, sign=sign,
                                                  measure=measure)  # fmt: skip
        for label in np.unique(comp):
            members = np.sort(edge[comp == label])
            nodes = np.unique(np.concatenate([rows[members], cols[members]]))
            components.append((members, nodes, float(sizes[label]), sign))
    # the identity permutation reproduces the observed sizes up to rounding (intensity sums floats)
    sorted_null = np.sort(nulls.max_null)
    result_components = []
    for members, nodes, size, sign in sorted(components, key=lambda c: (-c[2], -c[3], int(c[0][0]))):
        bound = size - 1e-9 * max(abs(size), 1.0)
        at_least = n_permutations - np.searchsorted(sorted_null, bound, side="left")
        result_components.append(NBSComponent(members, nodes, size, sign, at_least / n_permutations))
    edge_component = np.zeros(rows.size, dtype=np.int64)
    for index, component in enumerate(result_components, start=1):
        edge_component[component.edges] = index
    return NBSResult(
        t=observed[0],
        components=result_components,
        edge_component=edge_component,
        null=nulls.max_null,
        threshold=float(threshold),
        measure=measure,
        two_sided=two_sided,
        n_permutations=n_permutations,
        n_nodes=n_nodes,
    )


def nbs_nulls(
    edges: np.ndarray,
    design: Design,
    n_nodes: int,
    *,
    chunks: range,
    threshold: float = 3.0,
    n_permutations: int = 5000,
    seed: int = 0,
    two_sided: bool = True,
    measure: str = "extent",
    block: int = 128,
    blocks: np.ndarray | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> NBSNulls:
    """The largest component of the permutations of ``chunks`` only (options as :func:`network_based_statistic`,
    which takes their merge as ``nulls``; ``group/fanout.py`` computes the chunks in other processes or jobs)."""
    _, t_of, rows, cols = _checked(edges, design, n_nodes, measure=measure, n_permutations=n_permutations)
    return _chunk_nulls(t_of, rows, cols, n_nodes, n_permutations=n_permutations, seed=seed, chunks=chunks,
                        signs=(1, -1) if two_sided else (1,), threshold=threshold, measure=measure, block=block,
                        blocks=blocks, on_progress=on_progress)  # fmt: skip


def _checked(edges, design: Design, n_nodes: int, *, measure: str, n_permutations: int):
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, not {measure!r}")
    y = np.asarray(edges, dtype=np.float64)
    rows, cols = edge_indices(n_nodes)
    if y.ndim != 2 or y.shape[1] != rows.size:
        raise ValueError(f"edges must be (participants, {rows.size}) for {n_nodes} nodes, got {y.shape}")
    if y.shape[0] != design.matrix.shape[0]:
        raise ValueError(f"{y.shape[0]} participants in edges but {design.matrix.shape[0]} rows in the design")
    if not np.isfinite(y).all():
        raise ValueError("edges contain NaN or infinite values; drop the regions or edges missing in anyone first")
    if n_permutations < 1:
        raise ValueError("n_permutations must be at least 1")
    return y, FreedmanLaneT(y, design), rows, cols


def _chunk_nulls(
    t_of, rows, cols, n_nodes, *, n_permutations, seed, chunks, signs, threshold, measure, block, blocks, on_progress
) -> NBSNulls:
    """Largest component (over ``signs``) of every permutation of ``chunks``, block by block."""
    first = chunks.start * PERMUTATIONS_PER_CHUNK
    size = min(chunks.stop * PERMUTATIONS_PER_CHUNK, n_permutations) - first
    null = np.zeros(size)
    done = 0
    for perms in permutation_stream(t_of.n, n_permutations, seed=seed, block=block, chunks=chunks, blocks=blocks):
        t_block = t_of(perms)
        for sign in signs:
            (which, _), comp, sizes = block_components(
                t_block, rows, cols, n_nodes, threshold=threshold, sign=sign, measure=measure
            )
            if comp.size == 0:
                continue
            owner = np.zeros(sizes.size, dtype=np.int64)
            owner[comp] = which
            present = np.unique(comp)
            largest = np.zeros(len(perms))
            np.maximum.at(largest, owner[present], sizes[present])
            null[done : done + len(perms)] = np.maximum(null[done : done + len(perms)], largest)
        done += len(perms)
        if on_progress is not None:
            on_progress(len(perms))
    return NBSNulls(chunks, null)
