"""Group statistics: GLM design, Freedman-Lane permutation test with max-t FWE and cluster-extent FWE, FDR.

Permutation scheme (Freedman & Lane 1983; the default of FSL randomise, recommended by Winkler et al. 2014):
the data are regressed on the nuisance regressors Z (intercept and covariates); the residuals R are permuted and
added back to the nuisance fit, and the full model is refitted. For the tested column x this reduces to closed
forms that are evaluated for a block of permutations with two matrix products: with x_r the part of x
orthogonal to Z and Q an orthonormal basis of Z,

    b = x_r' P R / x_r'x_r,      RSS = |R|^2 - |Q' P R|^2 - (x_r' P R)^2 / x_r'x_r,
    t = b / sqrt(RSS / (n - p) / x_r'x_r)

so no per-permutation least squares is solved. The unpermuted t equals ordinary least squares (tested against a
straightforward ``lstsq``). FWE p-values come from the maximum |t| (two-sided) or maximum t over the brain in each
permutation; cluster-extent FWE p from the largest supra-threshold cluster; TFCE FWE p (Smith & Nichols 2009, scored
as nilearn's ``permuted_ols(tfce=True)`` does, see ``core/tfce.py``) from the maximum |TFCE| in each permutation;
FDR q from Benjamini-Hochberg on the permutation-uncorrected p.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from clbp_bidsapp.core import sequential
from clbp_bidsapp.core import tail as gpd_tail
from clbp_bidsapp.core.exchangeability import log_rearrangements, permute_within
from clbp_bidsapp.core.tfce import TfceGraph


class DesignError(ValueError):
    """The participants table cannot give the requested design."""


@dataclass(frozen=True)
class Design:
    matrix: np.ndarray  # (participants, regressors): group (patients = 1), intercept, covariates, factors
    names: list[str]
    tested: int  # index of the group column


def design_matrix(
    table: pd.DataFrame,
    *,
    group_column: str,
    patient_label: str,
    control_label: str,
    covariates: Sequence[str] = (),
    factors: Sequence[str] = (),
) -> Design:
    """Two-group design: group (patient 1, control 0), intercept, demeaned covariates, dummy-coded factors."""
    columns: dict[str, np.ndarray] = {}
    group = table[group_column].astype(str)
    if not set(group) <= {patient_label, control_label}:
        raise DesignError(f"{group_column} has values other than {patient_label}/{control_label}")
    columns["group"] = (group == patient_label).to_numpy(float)
    columns["intercept"] = np.ones(len(table))
    return _finish(_add_nuisance(columns, table, covariates, factors))


def regression_design(
    table: pd.DataFrame, *, tested: str, covariates: Sequence[str] = (), factors: Sequence[str] = ()
) -> Design:
    """Design testing a continuous column (e.g. pain intensity): the column (demeaned), intercept, covariates."""
    values = pd.to_numeric(table[tested], errors="coerce")
    if values.isna().any():
        raise DesignError(f"{tested} is missing or not numeric for some participants")
    if np.ptp(values.to_numpy(float)) == 0:
        raise DesignError(f"{tested} is constant in these participants")
    columns = {tested: values.to_numpy(float) - values.mean(), "intercept": np.ones(len(table))}
    return _finish(_add_nuisance(columns, table, covariates, factors))


def _add_nuisance(columns: dict[str, np.ndarray], table: pd.DataFrame, covariates, factors) -> dict[str, np.ndarray]:
    """Demeaned covariates (sex coded 0/1) and dummy-coded factors (first level as reference)."""
    for name in covariates:
        values = pd.to_numeric(table[name], errors="coerce") if name != "sex" else _code_sex(table[name])
        if values.isna().any():
            raise DesignError(f"covariate {name} is missing or not numeric for some participants")
        values = values.to_numpy(float)
        if np.ptp(values) == 0:
            raise DesignError(f"covariate {name} is constant; drop it with --covariates")
        columns[name] = values - values.mean()
    for name in factors:
        levels = sorted(table[name].astype(str).unique())
        for level in levels[1:]:
            columns[f"{name}[{level}]"] = (table[name].astype(str) == level).to_numpy(float)
    return columns


def _finish(columns: dict[str, np.ndarray]) -> Design:
    """The design with the first column tested, after checking it can be estimated."""
    matrix = np.column_stack(list(columns.values()))
    if matrix.shape[0] <= matrix.shape[1]:
        raise DesignError(
            f"{matrix.shape[1]} regressors ({', '.join(columns)}) for {matrix.shape[0]} participants; "
            "use fewer --covariates or more participants"
        )
    if np.linalg.matrix_rank(matrix) < matrix.shape[1]:
        raise DesignError("the design is rank deficient (a covariate is confounded with the tested column or another)")
    return Design(matrix=matrix, names=list(columns), tested=0)


def _code_sex(values: pd.Series) -> pd.Series:
    text = values.astype(str).str.upper().str[0]
    return text.map({"M": 0.0, "F": 1.0})


def ols_t(data: np.ndarray, design: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Ordinary least-squares t statistic of a contrast, for every column of ``data`` (participants, voxels)."""
    beta, _, _, _ = np.linalg.lstsq(design, data, rcond=None)
    residuals = data - design @ beta
    dof = design.shape[0] - np.linalg.matrix_rank(design)
    sigma2 = (residuals**2).sum(axis=0) / dof
    variance = contrast @ np.linalg.pinv(design.T @ design) @ contrast
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma2 > 0, (contrast @ beta) / np.sqrt(sigma2 * variance), 0.0)


@dataclass(frozen=True)
class PermutationResult:
    t: np.ndarray  # (voxels,) observed t
    p_uncorrected: np.ndarray  # permutation p per voxel
    p_fwe: np.ndarray  # max-statistic FWE p
    q_fdr: np.ndarray  # Benjamini-Hochberg q of p_uncorrected
    max_null: np.ndarray  # (n_perm,) max |t| (or max t) per permutation
    cluster_labels: np.ndarray | None  # (voxels,) cluster index (0 = none) at the cluster-forming threshold
    cluster_p_fwe: np.ndarray | None  # (clusters,) cluster-extent FWE p, in label order
    n_permutations: int
    tfce: np.ndarray | None = None  # (voxels,) observed TFCE (signed when two-sided)
    p_tfce_fwe: np.ndarray | None = None  # FWE p of TFCE from the maximum |TFCE| per permutation
    max_tfce_null: np.ndarray | None = None  # (n_perm,) max |TFCE| per permutation
    tail: str = "none"  # FWE p from the empirical null ("none") or its GPD tail where it fits ("gpd")
    p_floor: float = 0.0  # smallest p reported (1/n_perm empirical; 1/distinct rearrangements with the tail)
    tail_fits: dict | None = None  # statistic -> core.tail.TailFit, with ``tail="gpd"``
    sequential_h: int = 0  # uncorrected p: Besag-Clifford stopping at h exceedances (0: every permutation counted)
    uncorrected_permutations: np.ndarray | None = None  # (voxels,) permutations each uncorrected p rests on


class FreedmanLaneT:
    """Closed-form Freedman-Lane t of ``design.tested`` for blocks of permutations (Winkler 2014).

    With Q an orthonormal basis of the nuisance columns Z, x_r the tested column orthogonal to Z and R the
    nuisance residuals of the data: b = x_r' P R / x_r'x_r, RSS = |R|^2 - |Q' P R|^2 - (x_r' P R)^2 / x_r'x_r.
    """

    def __init__(self, data: np.ndarray, design: Design):
        y = np.asarray(data, dtype=np.float64)
        x_full = design.matrix
        self.n, p = x_full.shape
        tested = x_full[:, design.tested]
        nuisance = np.delete(x_full, design.tested, axis=1)
        self.q_basis, _ = np.linalg.qr(nuisance)
        self.x_r = tested - self.q_basis @ (self.q_basis.T @ tested)
        self.xx = self.x_r @ self.x_r
        self.residuals = y - self.q_basis @ (self.q_basis.T @ y)
        self.rss_total = (self.residuals**2).sum(axis=0)
        self.dof = self.n - p

    def __call__(self, perms: np.ndarray) -> np.ndarray:
        """(permutations, columns) t for row orderings ``perms`` (each a permutation of 0..n-1)."""
        n = self.n
        inverse = np.argsort(perms, axis=1)
        a = self.x_r[inverse] @ self.residuals
        qz = self.q_basis[inverse].transpose(0, 2, 1)
        b = (qz.reshape(-1, n) @ self.residuals).reshape(len(perms), -1, self.residuals.shape[1])
        rss = self.rss_total - np.einsum("bqv,bqv->bv", b, b) - a**2 / self.xx
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (a / self.xx) / np.sqrt(np.maximum(rss, 0) / self.dof / self.xx)
        return np.nan_to_num(t)


PERMUTATIONS_PER_CHUNK = 100  # the permutation stream is drawn in seeded chunks of this many (fixed: see below)


def permutation_stream(
    n: int,
    n_permutations: int,
    *,
    seed: int,
    block: int,
    chunks: Sequence[int] | None = None,
    blocks: np.ndarray | None = None,
):
    """Blocks of row orderings, identity first (the observed data).

    Permutation i belongs to chunk ``i // PERMUTATIONS_PER_CHUNK``, whose orderings are drawn from
    ``default_rng([seed, chunk])``, and blocks never straddle two chunks. So the stream depends neither on
    ``block`` nor on how the chunks are shared among processes or SLURM jobs: ``chunks`` (chunk indices, default
    all) yields exactly the blocks that a whole run computes for them (``group/fanout.py``). ``blocks`` (one
    exchangeability-block label per row) keeps every row within its block
    (:func:`core.exchangeability.permute_within`); ``None`` permutes freely.
    """
    for chunk in range(chunk_count(n_permutations)) if chunks is None else chunks:
        first = chunk * PERMUTATIONS_PER_CHUNK
        count = min(PERMUTATIONS_PER_CHUNK, n_permutations - first)
        rng = np.random.default_rng([seed, chunk])
        perms = np.array([permute_within(rng, n, blocks) for _ in range(count)])
        if chunk == 0:
            perms[0] = np.arange(n)
        for start in range(0, count, block):
            yield perms[start : start + block]


def chunk_count(n_permutations: int) -> int:
    """Number of seeded chunks of :func:`permutation_stream` holding ``n_permutations`` permutations."""
    return -(-n_permutations // PERMUTATIONS_PER_CHUNK)


@dataclass(frozen=True)
class PermutationNulls:
    """What the permutations of ``chunks`` contribute to a test; parts merge exactly (:func:`merge_nulls`)."""

    chunks: range
    exceed: np.ndarray  # (voxels,) int64: permutations whose statistic reaches the observed one (counts add)
    max_null: np.ndarray  # (permutations,) max statistic per permutation (nulls concatenate)
    cluster_max: np.ndarray  # (permutations,) largest cluster (zeros without cluster inference)
    max_tfce_null: np.ndarray  # (permutations,) max |TFCE| (zeros without TFCE)


def merge_nulls(parts: Sequence[PermutationNulls]) -> PermutationNulls:
    """The nulls of consecutive chunk ranges as one: counts added, per-permutation maxima concatenated in order."""
    parts = sorted(parts, key=lambda part: part.chunks.start)
    for before, after in itertools.pairwise(parts):
        if before.chunks.stop != after.chunks.start:
            raise ValueError(f"chunks {before.chunks} and {after.chunks} are not consecutive")
    return PermutationNulls(
        chunks=range(parts[0].chunks.start, parts[-1].chunks.stop),
        exceed=np.sum([part.exceed for part in parts], axis=0),
        max_null=np.concatenate([part.max_null for part in parts]),
        cluster_max=np.concatenate([part.cluster_max for part in parts]),
        max_tfce_null=np.concatenate([part.max_tfce_null for part in parts]),
    )


def permutation_nulls(
    data: np.ndarray,
    design: Design,
    *,
    n_permutations: int,
    seed: int,
    chunks: range,
    two_sided: bool = True,
    mask: np.ndarray | None = None,
    cluster_threshold: float | None = None,
    block: int = 128,
    tfce: bool = False,
    tfce_dh: float | str = "auto",
    tfce_connectivity: int = 6,
    tfce_block: int = 16,
    on_progress: Callable[[int], None] | None = None,
    blocks: np.ndarray | None = None,
) -> PermutationNulls:
    """The nulls of the permutations of ``chunks`` only (options as :func:`permutation_test`, which merges them)."""
    t_stats = FreedmanLaneT(data, design)
    observed = t_stats(np.arange(t_stats.n)[None, :])[0]
    if mask is not None and cluster_threshold is not None:
        mask = cropped(mask)  # as permutation_test does: the same labelling in both routes
    graph = TfceGraph(mask, connectivity=tfce_connectivity) if tfce else None
    return _chunk_nulls(t_stats, observed, n_permutations=n_permutations, seed=seed, chunks=chunks,
                        two_sided=two_sided, mask=mask, cluster_threshold=cluster_threshold, block=block,
                        graph=graph, tfce_dh=tfce_dh, tfce_block=tfce_block, on_progress=on_progress,
                        blocks=blocks)  # fmt: skip


def _chunk_nulls(
    t_stats, observed, *, n_permutations, seed, chunks, two_sided, mask, cluster_threshold, block, graph, tfce_dh,
    tfce_block, on_progress, blocks=None,
) -> PermutationNulls:  # fmt: skip
    stat_obs = np.abs(observed) if two_sided else observed
    first = chunks.start * PERMUTATIONS_PER_CHUNK
    size = min(chunks.stop * PERMUTATIONS_PER_CHUNK, n_permutations) - first
    exceed = np.zeros(observed.shape, dtype=np.int64)
    max_null, cluster_max, max_tfce_null = np.empty(size), np.zeros(size), np.zeros(size)
    clusters = mask is not None and cluster_threshold is not None
    done = 0
    for perms in permutation_stream(t_stats.n, n_permutations, seed=seed, block=block, chunks=chunks, blocks=blocks):
        count = len(perms)
        t_block = t_stats(perms)
        stat_block = np.abs(t_block) if two_sided else t_block
        exceed += (stat_block >= stat_obs - 1e-12).sum(axis=0)
        max_null[done : done + count] = stat_block.max(axis=1)
        if clusters:
            for k in range(count):
                _, sizes = _clusters(t_block[k], mask, cluster_threshold, two_sided=two_sided)
                cluster_max[done + k] = sizes.max() if sizes.size else 0
        if graph is not None:
            for start in range(0, count, tfce_block):
                scores = graph.scores(t_block[start : start + tfce_block], two_sided=two_sided, dh=tfce_dh)
                max_tfce_null[done + start : done + start + scores.shape[0]] = np.abs(scores).max(axis=1)
        done += count
        if on_progress is not None:
            on_progress(count)
    return PermutationNulls(chunks, exceed, max_null, cluster_max, max_tfce_null)


def permutation_test(
    data: np.ndarray,
    design: Design,
    *,
    n_permutations: int = 5000,
    seed: int = 0,
    two_sided: bool = True,
    mask: np.ndarray | None = None,
    cluster_threshold: float | None = None,
    block: int = 128,
    tfce: bool = False,
    tfce_dh: float | str = "auto",
    tfce_connectivity: int = 6,
    tfce_block: int = 16,
    on_progress: Callable[[int], None] | None = None,
    tail: str = "none",
    nulls: PermutationNulls | None = None,
    sequential_h: int = 0,
    max_permutations: int | None = None,
    blocks: np.ndarray | None = None,
) -> PermutationResult:
    """Freedman-Lane permutation test of ``design.tested`` for every column of ``data``.

    ``mask`` (3-D bool with ``mask.sum() == voxels``) and ``cluster_threshold`` (|t|) enable cluster-extent
    inference with 26-connectivity. The first permutation is the identity (the observed data), so p >= 1/n_perm.
    ``tfce`` (needs ``mask``) adds threshold-free cluster enhancement (Smith & Nichols 2009) with E = 0.5, H = 2,
    step ``tfce_dh`` and ``tfce_connectivity`` as in nilearn's ``permuted_ols(tfce=True)`` (100 steps, 6-connected)
    and its max-statistic FWE p; ``tfce_block`` maps are enhanced together (memory grows with it).
    ``on_progress(count)`` is called after each block of ``count`` permutations (e.g. a progress bar's update).
    ``tail="gpd"`` replaces the FWE p-values (max-t, cluster extent, TFCE) below 0.1 by the generalised Pareto
    tail of their max-statistic null where it passes the goodness-of-fit check (``core/tail.py``; Winkler et al.
    2016), floored at 1 / the number of distinct rearrangements of the tested column. ``nulls`` are the merged
    :func:`permutation_nulls` of every chunk, computed elsewhere (``group/fanout.py``); the result is then
    identical to computing them here.
    ``sequential_h > 0`` makes the uncorrected p sequential (Besag & Clifford 1991; ``core/sequential.py``): the
    first ``n_permutations`` (which the FWE nulls need in full) count for every voxel, and the voxels with fewer
    than ``h`` exceedances by then are carried on, t only, until their ``h``-th exceedance or ``max_permutations``
    permutations of the same stream.
    ``blocks`` (one label per participant, e.g. the site) restricts the permutations to within each block
    (exchangeability blocks, FSL randomise ``-e``); ``None`` permutes all participants freely.
    """
    if tail not in ("none", "gpd"):
        raise ValueError(f"tail must be 'none' or 'gpd', not {tail!r}")
    if tfce and mask is None:
        raise ValueError("TFCE needs the 3-D mask of the voxels")
    t_stats = FreedmanLaneT(data, design)
    n = t_stats.n
    observed = t_stats(np.arange(n)[None, :])[0]
    stat_obs = np.abs(observed) if two_sided else observed
    labels_obs = cluster_p = None
    if mask is not None and cluster_threshold is not None:
        mask = cropped(mask)  # same voxels in the same order; labelling a smaller box is 2-5x faster
        labels_obs, sizes_obs = _clusters(observed, mask, cluster_threshold, two_sided=two_sided)
    graph = TfceGraph(mask, connectivity=tfce_connectivity) if tfce else None
    if nulls is None:
        nulls = _chunk_nulls(t_stats, observed, n_permutations=n_permutations, seed=seed,
                             chunks=range(chunk_count(n_permutations)), two_sided=two_sided, mask=mask,
                             cluster_threshold=cluster_threshold, block=block, graph=graph, tfce_dh=tfce_dh,
                             tfce_block=tfce_block, on_progress=on_progress, blocks=blocks)  # fmt: skip
    if nulls.chunks != range(chunk_count(n_permutations)) or nulls.max_null.size != n_permutations:
        raise ValueError(f"the nulls cover chunks {nulls.chunks}, not all {n_permutations} permutations")
    exceed, max_null, cluster_max, max_tfce_null = nulls.exceed, nulls.max_null, nulls.cluster_max, nulls.max_tfce_null
    tfce_obs = graph.scores(observed[None, :], two_sided=two_sided, dh=tfce_dh)[0] if graph is not None else None
    p_unc = exceed / n_permutations
    counter = None
    if sequential_h:
        counter = sequential.SequentialCounter.resume(stat_obs, exceed, drawn=n_permutations, h=sequential_h)
        total = max(n_permutations, max_permutations or 0)
        stream = permutation_stream(n, total, seed=seed, block=block, blocks=blocks)
        sequential.continue_counting(counter, lambda cols: _t_of(data[:, cols], design, two_sided),
                                     sequential.blocks_after(stream, n_permutations))  # fmt: skip
        p_unc = counter.p_values()
    at_least = n_permutations - np.searchsorted(np.sort(max_null), stat_obs - 1e-12, side="left")
    p_fwe = at_least / n_permutations
    if labels_obs is not None:
        cluster_p = np.array([(cluster_max >= size).mean() for size in sizes_obs])
    p_tfce = None
    if tfce_obs is not None:
        # relative tolerance: the identity permutation reproduces the observed maximum up to rounding
        bound = np.abs(tfce_obs) * (1 - 1e-10)
        p_tfce = (n_permutations - np.searchsorted(np.sort(max_tfce_null), bound, side="left")) / n_permutations
    floor = 1.0 / (counter.drawn if counter is not None else n_permutations)  # the sequential p go lower
    fits = None
    if tail == "gpd":
        floor = min_permutation_p(design.matrix[:, design.tested], blocks)
        fits = {}
        p_fwe, fits["maxt"] = gpd_tail.tail_p(stat_obs, max_null, p_floor=floor, seed=seed)
        if cluster_p is not None:
            cluster_p, fits["cluster"] = gpd_tail.tail_p(sizes_obs, cluster_max, p_floor=floor, seed=seed)
        if p_tfce is not None:
            p_tfce, fits["tfce"] = gpd_tail.tail_p(np.abs(tfce_obs), max_tfce_null, p_floor=floor, seed=seed)
    return PermutationResult(
        t=observed,
        p_uncorrected=p_unc,
        p_fwe=p_fwe,
        q_fdr=fdr_bh(p_unc),
        max_null=max_null,
        cluster_labels=labels_obs,
        cluster_p_fwe=cluster_p,
        n_permutations=n_permutations,
        tfce=tfce_obs,
        p_tfce_fwe=p_tfce,
        max_tfce_null=max_tfce_null if tfce else None,
        tail=tail,
        p_floor=floor,
        tail_fits=fits,
        sequential_h=sequential_h,
        uncorrected_permutations=counter.counted() if counter is not None else None,
    )


def _t_of(data: np.ndarray, design: Design, two_sided: bool) -> Callable[[np.ndarray], np.ndarray]:
    """The (|t| when two-sided) statistic of ``data``'s columns for blocks of orderings."""
    t_stats = FreedmanLaneT(data, design)
    return lambda perms: np.abs(t_stats(perms)) if two_sided else t_stats(perms)


def min_permutation_p(tested: np.ndarray, blocks: np.ndarray | None = None) -> float:
    """1 / the number of distinct rearrangements of the tested column (n! / product of tie counts!; with
    exchangeability ``blocks``, the product of that count over the blocks).

    No permutation test of this column can give a smaller p: the observed data is one of them. Floored at the
    smallest normal double for large samples.
    """
    return float(max(np.exp(-log_rearrangements(tested, blocks)), np.finfo(float).tiny))


def cropped(mask: np.ndarray) -> np.ndarray:
    """``mask`` cut to the bounding box of its voxels (which keep their C order, so masked vectors still fit)."""
    found = np.argwhere(mask)
    if not found.size:
        return mask
    return mask[tuple(slice(low, high + 1) for low, high in zip(found.min(0), found.max(0), strict=True))]


def _clusters(t: np.ndarray, mask: np.ndarray, threshold: float, *, two_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    """26-connected clusters of t > threshold (and, two-sided, of t < -threshold, labelled separately).

    Returns the label of each voxel (0 = none) and the sizes of clusters 1..k.
    """
    structure = np.ones((3, 3, 3), dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int64)
    sizes: list[np.ndarray] = []
    offset = 0
    for sign in (1, -1) if two_sided else (1,):
        volume = np.zeros(mask.shape, dtype=bool)
        volume[mask] = sign * t > threshold
        found, count = ndimage.label(volume, structure=structure)
        labels[found > 0] = found[found > 0] + offset
        sizes.append(np.bincount(found.ravel(), minlength=count + 1)[1:])
        offset += count
    return labels[mask], np.concatenate(sizes)


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (monotone, capped at 1)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty_like(p)
    q[order] = np.minimum(q_sorted, 1.0)
    return q
