"""Threshold-free cluster enhancement (TFCE; Smith & Nichols 2009), computed as nilearn 0.14 computes it.

For a statistic map and thresholds ``h_1 < ... < h_K`` the TFCE score of a voxel ``v`` is

    TFCE(v) = sum over k with h_k <= stat(v) of  extent_k(v)^E * h_k^H,

where ``extent_k(v)`` is the number of voxels in the connected component of ``{stat >= h_k}`` that holds ``v``.
The step rule and the scaling follow ``nilearn.mass_univariate._utils.calculate_tfce`` (itself following
fslmaths): with ``dh="auto"`` there are 100 steps, ``h_k = linspace(0, max, 101)[1:]`` with ``max`` the largest
|stat| (two-sided) or the largest stat (one-sided; the zeros outside the mask count, as in nilearn's volume);
with a float ``dh`` there are ``round(max / dh)`` steps, clipped to 10..1000; the partial scores are NOT
multiplied by ``dh``. Two-sided, the positive and negative tails are enhanced separately on the same thresholds
and the negative tail is returned negative. ``permuted_ols`` uses face connectivity (6), which is the default here.

Speed: nilearn labels the whole volume once per step (100 ``ndimage.label`` calls per map and tail). Here the
map is quantised to the step index each voxel reaches, neighbours in the same tail are joined at the lower of their
two levels, and one pass over the joins from the top level down (Kruskal order, vectorised per level with a
union-find) builds the merge tree of the super-level sets for both tails and a whole batch of maps at once. Each
tree node is a component over a range of steps, so its contribution is ``size^E`` times a difference of the
cumulative ``h^H``, and a voxel's score is the sum over its ancestors. The work grows with the number of voxels and
neighbour pairs, not with steps x volume. Results equal nilearn's to rounding (summation order differs).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_CONNECTIVITY_RANK = {6: 1, 18: 2, 26: 3}


def tfce(
    stat: np.ndarray,
    mask: np.ndarray,
    *,
    two_sided: bool = True,
    e: float = 0.5,
    h: float = 2.0,
    dh: float | str = "auto",
    connectivity: int = 6,
) -> np.ndarray:
    """TFCE scores (Smith & Nichols 2009) of the masked map ``stat`` (voxels,), as nilearn's ``calculate_tfce``.

    Parameters
    ----------
    stat : (voxels,) finite values of the in-mask voxels, in ``mask`` order (C order of the volume).
    mask : 3-D bool array with ``mask.sum() == stat.size``.
    two_sided : enhance the positive and the negative tail separately (negative scores for the negative tail);
        one-sided, only the positive tail.
    e, h : extent and height exponents (0.5 and 2, as in Smith & Nichols 2009 and nilearn).
    dh : ``"auto"`` (100 steps, as fslmaths and nilearn) or the step height (steps clipped to 10..1000).
    connectivity : 6 (faces, nilearn's ``permuted_ols`` and FSL's default), 18 or 26 (faces, edges, corners).

    Returns
    -------
    (voxels,) TFCE scores.
    """
    graph = TfceGraph(mask, connectivity=connectivity)
    return graph.scores(np.asarray(stat, dtype=np.float64)[None, :], two_sided=two_sided, e=e, h=h, dh=dh)[0]


def thresholds(values: np.ndarray, *, two_sided: bool, dh: float | str, pad_zero: bool) -> np.ndarray:
    """TFCE thresholds of one map, as nilearn's ``_return_score_threshs`` (``pad_zero``: the volume has zeros)."""
    max_score = np.max(np.abs(values)) if two_sided else np.max(values)
    if pad_zero:
        max_score = max(max_score, 0.0)
    n_steps = 100 if dh == "auto" else round(max_score / dh)
    n_steps = min(max(n_steps, 10), 1000)
    return np.linspace(0, max_score, n_steps + 1)[1:]


class TfceGraph:
    """Neighbour pairs of the in-mask voxels, built once for a mask and reused for many maps."""

    def __init__(self, mask: np.ndarray, *, connectivity: int = 6) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 3:
            raise ValueError("mask must be 3-D")
        if connectivity not in _CONNECTIVITY_RANK:
            raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity}")
        self.mask = mask
        self.n_voxels = int(mask.sum())
        self.pad_zero = not mask.all()
        self.structure = ndimage.generate_binary_structure(3, _CONNECTIVITY_RANK[connectivity])
        index = np.full(mask.shape, -1, dtype=np.int64)
        index[mask] = np.arange(self.n_voxels)
        firsts, seconds = [], []
        for offset in np.argwhere(self.structure) - 1:
            if tuple(offset) <= (0, 0, 0):  # each unordered pair once (forward offsets only)
                continue
            src = tuple(slice(max(0, -o), s - max(0, o)) for o, s in zip(offset, mask.shape, strict=True))
            dst = tuple(slice(max(0, o), s - max(0, -o)) for o, s in zip(offset, mask.shape, strict=True))
            a, b = index[src], index[dst]
            both = (a >= 0) & (b >= 0)
            firsts.append(a[both])
            seconds.append(b[both])
        self.first = np.concatenate(firsts)
        self.second = np.concatenate(seconds)

    def scores(
        self,
        stats: np.ndarray,
        *,
        two_sided: bool = True,
        e: float = 0.5,
        h: float = 2.0,
        dh: float | str = "auto",
    ) -> np.ndarray:
        """TFCE scores of a batch of masked maps ``stats`` (maps, voxels) -> (maps, voxels)."""
        stats = np.asarray(stats, dtype=np.float64)
        if stats.ndim != 2 or stats.shape[1] != self.n_voxels:
            raise ValueError(f"stats must be (maps, {self.n_voxels}), got {stats.shape}")
        if not np.isfinite(stats).all():
            raise ValueError("TFCE needs finite statistics")
        if dh != "auto" and not (isinstance(dh, int | float) and not isinstance(dh, bool) and dh > 0):
            raise ValueError(f"dh must be 'auto' or a positive number, not {dh!r}")
        n_maps = stats.shape[0]
        out = np.zeros_like(stats)
        levels = np.zeros(stats.shape, dtype=np.int64)  # number of steps a voxel survives, in its own tail
        sign = np.where(stats > 0, 1, -1).astype(np.int8)
        steps = [thresholds(row, two_sided=two_sided, dh=dh, pad_zero=self.pad_zero) for row in stats]
        cumulative = np.zeros((n_maps, max(s.size for s in steps) + 1))
        for m, (row, heights) in enumerate(zip(stats, steps, strict=True)):
            if heights[-1] <= 0:  # degenerate map (all zero, or one-sided without a positive value)
                out[m] = _tfce_by_steps(row, self.mask, self.structure, heights, two_sided, e, h)
                continue
            levels[m] = np.searchsorted(heights, np.abs(row) if two_sided else row, side="right")
            if not two_sided:
                levels[m][row <= 0] = 0
            partial = np.cumsum(heights**h)
            cumulative[m, 1 : partial.size + 1] = partial
            cumulative[m, partial.size + 1 :] = partial[-1]
        if levels.any():
            out += _merge_tree_scores(levels, sign, self.first, self.second, cumulative, e)
        return out


def _merge_tree_scores(
    levels: np.ndarray,
    sign: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    cumulative: np.ndarray,
    e: float,
) -> np.ndarray:
    """TFCE of quantised maps from the merge tree of their super-level sets.

    ``levels`` (maps, voxels): the number of thresholds each voxel reaches in its tail (``sign``); ``first`` /
    ``second``: neighbour pairs; ``cumulative[m, k]``: sum of ``h_j^H`` for j <= k (``cumulative[:, 0] = 0``).

    Neighbours in the same tail are joined at level ``min(level_a, level_b)``. Processing the levels from the top
    (Kruskal order) builds a tree whose leaves are voxels and whose inner nodes are the components formed at a
    level; a node of ``size`` voxels formed at level ``k`` and absorbed at level ``k_parent`` is the component of
    its voxels for thresholds ``k_parent < j <= k`` and adds ``size^E (cumulative[k] - cumulative[k_parent])``
    to each of them. A voxel's TFCE is the sum over its ancestors, summed by pointer jumping.
    """
    n_maps, n_vox = levels.shape
    flat_levels = levels.ravel()
    active = np.flatnonzero(flat_levels)
    n = active.size
    leaf_of = np.full(flat_levels.size, -1, dtype=np.int64)
    leaf_of[active] = np.arange(n)
    joined = np.minimum(levels[:, first], levels[:, second])
    joined[sign[:, first] != sign[:, second]] = 0
    edge_map, edge = np.nonzero(joined)
    joined = joined[edge_map, edge]
    ends_a = leaf_of[first[edge] + edge_map * n_vox]
    ends_b = leaf_of[second[edge] + edge_map * n_vox]
    # orient every join from its lower voxel (level == join level: still a lone leaf when the join is processed)
    swap = flat_levels[active[ends_a]] > joined
    ends_a[swap], ends_b[swap] = ends_b[swap], ends_a[swap]
    upper_above = flat_levels[active[ends_b]] > joined  # the upper voxel may already be in a component
    order = np.argsort(-joined.astype(np.int16), kind="stable")  # levels <= 1000: radix sort, top level first
    ends_a, ends_b, upper_above = ends_a[order], ends_b[order], upper_above[order]
    top = int(flat_levels.max())
    bounds = np.concatenate([[0], np.cumsum(np.bincount(joined, minlength=top + 1)[:0:-1])])  # levels top..1

    capacity = 2 * n
    rep = np.arange(capacity)  # union-find pointer towards the current root
    parent = np.full(capacity, -1)
    level = np.zeros(capacity, dtype=np.int64)
    level[:n] = flat_levels[active]
    size = np.zeros(capacity)
    size[:n] = 1.0
    some_leaf = np.arange(capacity)  # a voxel under each node (gives its map and tail)
    local = np.zeros(capacity, dtype=np.int64)
    n_nodes = n

    def find(x: np.ndarray) -> np.ndarray:
        root = rep[x]
        todo = np.arange(x.size)
        current = root
        while True:
            up = rep[current]
            moving = up != current
            if not moving.any():
                break
            todo, current, up = todo[moving], current[moving], up[moving]
            grand = rep[up]
            rep[current] = grand  # path halving
            current = grand
            root[todo] = current
        rep[x] = root
        return root

    for i, k in enumerate(range(top, 0, -1)):
        lo, hi = bounds[i], bounds[i + 1]
        if lo == hi:
            continue
        root_a, root_b = ends_a[lo:hi], ends_b[lo:hi].copy()
        above = upper_above[lo:hi]
        root_b[above] = find(root_b[above])
        differ = root_a != root_b
        if not differ.any():
            continue
        roots = np.concatenate([root_a[differ], root_b[differ]])
        m = roots.size
        local[roots] = np.arange(m)  # one position per distinct root (the last one written)
        position = local[roots]
        component = _components(position[: m // 2], position[m // 2 :], m)
        distinct = position == np.arange(m)
        nodes, component = roots[distinct], component[position[distinct]]
        used = np.zeros(m, dtype=bool)
        used[component] = True
        component = (np.cumsum(used) - 1)[component]
        n_new = int(used.sum())
        new = n_nodes + component
        parent[nodes] = new
        rep[nodes] = new
        level[n_nodes : n_nodes + n_new] = k
        size[n_nodes : n_nodes + n_new] = np.bincount(component, weights=size[nodes], minlength=n_new)
        some_leaf[new] = some_leaf[nodes]
        n_nodes += n_new

    parent, level, size = parent[:n_nodes], level[:n_nodes], size[:n_nodes]
    voxel = active[some_leaf[:n_nodes]]
    map_of = voxel // n_vox
    parent_level = np.where(parent >= 0, level[np.maximum(parent, 0)], 0)
    total = sign.ravel()[voxel] * size**e * (cumulative[map_of, level] - cumulative[map_of, parent_level])
    # sum over ancestors (Wyllie's pointer jumping: each round doubles the summed path)
    pointer = parent
    pending = np.flatnonzero(pointer >= 0)
    while pending.size:
        up = pointer[pending]
        total[pending] = total[pending] + total[up]
        pointer[pending] = pointer[up]
        pending = pending[pointer[pending] >= 0]
    out = np.zeros(flat_levels.size)
    out[active] = total[:n]
    return out.reshape(n_maps, n_vox)


def _components(a: np.ndarray, b: np.ndarray, m: int) -> np.ndarray:
    """Connected components of the graph on 0..m-1 with edges a-b: the smallest node of each, per node.

    Min-label hooking with pointer jumping (Shiloach & Vishkin 1982): each round hooks the larger current label of
    every unsatisfied edge onto the smaller one and then compresses the labels to roots.
    """
    label = np.arange(m)
    while True:
        label_a, label_b = label[a], label[b]
        pending = label_a != label_b
        if not pending.any():
            return label
        a, b, label_a, label_b = a[pending], b[pending], label_a[pending], label_b[pending]
        np.minimum.at(label, np.maximum(label_a, label_b), np.minimum(label_a, label_b))
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped


def _tfce_by_steps(
    values: np.ndarray,
    mask: np.ndarray,
    structure: np.ndarray,
    steps: np.ndarray,
    two_sided: bool,
    e: float,
    h: float,
) -> np.ndarray:
    """nilearn's loop (label the volume at every step), for the degenerate maps the fast path does not cover."""
    result = np.zeros(mask.shape)
    for sign in (-1, 1) if two_sided else (1,):
        volume = np.zeros(mask.shape)
        volume[mask] = sign * values
        for step in steps:
            volume[volume < step] = 0
            labels, _ = ndimage.label(volume, structure)
            counts = np.bincount(labels.ravel())
            scores = sign * counts.astype(np.float64) ** e * step**h
            scores[0] = 0
            result += scores[labels]
    return result[mask]
