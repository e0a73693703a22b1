"""Sequential (negative-binomial) stopping of uncorrected permutation p-values (Besag & Clifford 1991).

An uncorrected p near 1 is known after a few permutations; only small p need many. Besag & Clifford's sequential
Monte-Carlo p-value draws permutations until the statistic has been reached ``h`` times (the observed data, the
identity permutation, counts as the first) or ``N`` permutations are drawn:

- stopped at the ``L``-th permutation with ``h`` exceedances: ``p = h / L``;
- never stopped (``g < h`` exceedances in all ``N``): ``p = g / N``, the plain empirical p.

The p-value is valid (P(p <= a) <= a under the null) and, like the empirical p of ``N`` permutations, resolves down
to ``1 / N``, at an expected cost of about ``h / p`` permutations per voxel instead of ``N`` (Winkler et al. 2016,
"Faster permutation inference in brain imaging", NeuroImage 141:502-516, method ii; PALM ``-accel negbin``).

How it fits the voxelwise test here (``core.stats.permutation_test(..., sequential_h=h, max_permutations=N)``):
the maximum-statistic nulls of FWE (max-t, cluster, TFCE) need every voxel in every permutation, so they use the
first ``n_permutations`` permutations (a few hundred to a thousand, their p below 0.1 refined by the GPD tail,
``core/tail.py``). Those are computed for every voxel anyway (and may run in parallel chunks, ``group/fanout.py``),
so every voxel's count runs in full over them: a voxel with ``g >= h`` exceedances by then stops there with
``p = g / n_permutations``, the plain empirical p. Afterwards only the voxels still below ``h`` are carried on,
t only (no clusters, no TFCE), with the same seeded permutation stream, until their ``h``-th exceedance
(``p = h / L``) or ``N``: these are the voxels whose p is small, so the extra work is a small fraction of ``N``
full permutations. This is Besag & Clifford's rule with a minimum of ``n_permutations`` draws: stop at the first
``L >= n_permutations`` with ``g_L >= h`` and report ``g_L / L``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

# relative tolerance: the identity permutation reproduces the observed statistic up to rounding
TOLERANCE = 1e-12


class SequentialCounter:
    """Exceedance counts of each voxel that stop at ``h`` (records where each stopped).

    ``update(stat_block, start)`` takes the statistics of permutations ``start .. start + len(block) - 1``
    (0-based; permutation 0 is the identity) for the voxels listed in ``columns`` (default: all).
    """

    def __init__(self, observed: np.ndarray, *, h: int):
        if h < 1:
            raise ValueError(f"h must be at least 1, not {h}")
        self.observed = np.asarray(observed, dtype=np.float64)
        self.h = int(h)
        self.exceed = np.zeros(self.observed.shape, dtype=np.int64)
        self.stopped_at = np.zeros(self.observed.shape, dtype=np.int64)  # L (1-based count of permutations); 0 = not
        self.drawn = 0  # permutations seen by the voxels not stopped

    @classmethod
    def resume(cls, observed: np.ndarray, exceed: np.ndarray, *, drawn: int, h: int) -> SequentialCounter:
        """A counter after ``drawn`` permutations counted in full (``exceed`` each): the voxels that have reached
        ``h`` stop there (p = exceed / drawn), the others go on counting from permutation ``drawn``."""
        counter = cls(observed, h=h)
        counter.exceed = np.asarray(exceed, dtype=np.int64).copy()
        counter.stopped_at = np.where(counter.exceed >= h, drawn, 0).astype(np.int64)
        counter.drawn = int(drawn)
        return counter

    def active(self) -> np.ndarray:
        """Indices of the voxels still counting."""
        return np.flatnonzero(self.stopped_at == 0)

    def update(self, stat_block: np.ndarray, *, start: int, columns: np.ndarray | None = None) -> None:
        """Count the exceedances of ``stat_block`` (permutations, voxels of ``columns``) in permutation order."""
        columns = np.arange(self.observed.size) if columns is None else np.asarray(columns)
        running = self.stopped_at[columns] == 0
        cols = columns[running]
        hits = stat_block[:, running] >= self.observed[cols] - TOLERANCE
        cumulative = self.exceed[cols] + np.cumsum(hits, axis=0)
        reached = cumulative[-1] >= self.h
        # the permutation at which the h-th exceedance came: first row where the running count reaches h
        first = np.argmax(cumulative >= self.h, axis=0)
        self.exceed[cols] = np.minimum(cumulative[-1], self.h)
        self.stopped_at[cols[reached]] = start + first[reached] + 1
        self.drawn = max(self.drawn, start + stat_block.shape[0])

    def p_values(self) -> np.ndarray:
        """``g / L`` where counting stopped at permutation ``L`` with ``g`` exceedances (``g = h``, or more when
        counting stopped at the end of a full count, :meth:`resume`); ``g / N`` (``N`` drawn) elsewhere."""
        stopped = self.stopped_at > 0
        p = self.exceed / max(self.drawn, 1)
        p[stopped] = self.exceed[stopped] / self.stopped_at[stopped]
        return p

    def counted(self) -> np.ndarray:
        """Permutations each voxel's p rests on (``L`` where stopped, else all drawn)."""
        return np.where(self.stopped_at > 0, self.stopped_at, self.drawn)


def continue_counting(
    counter: SequentialCounter,
    statistic: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
    blocks: Iterator[tuple[int, np.ndarray]],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Carry the voxels still counting through further permutation ``blocks`` of ``(start, orderings)``.

    ``statistic(columns)`` returns a function of orderings giving the (permutations, len(columns)) statistics of
    those voxels; it is rebuilt whenever a tenth of its voxels have stopped, so each block costs in proportion
    to the voxels left (re-fitting the nuisance model of a few columns costs far less than one block).
    Stops early once every voxel has stopped.
    """
    columns = counter.active()
    compute = statistic(columns) if columns.size else None
    for start, perms in blocks:
        if compute is None:
            break
        counter.update(compute(perms), start=start, columns=columns)
        if on_progress is not None:
            on_progress(len(perms))
        still = counter.active()
        if still.size <= 0.9 * columns.size:  # the stopped voxels no longer pay for a matrix product
            columns = still
            compute = statistic(columns) if columns.size else None


def blocks_after(stream: Iterator[np.ndarray], first: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, orderings)`` of a stream of permutation blocks, from permutation index ``first`` on."""
    start = 0
    for perms in stream:
        end = start + len(perms)
        if end > first:
            skip = max(first - start, 0)
            yield start + skip, perms[skip:]
        start = end


def describe(h: int, counted: np.ndarray | None) -> dict:
    """The sidecar entry saying how the uncorrected p-values were obtained."""
    if not h or counted is None:
        return {"Method": "empirical (fraction of all permutations reaching the voxel's statistic)"}
    counted = np.asarray(counted)
    return {
        "Method": "sequential (Besag & Clifford 1991; Winkler et al. 2016): a voxel's count stops at H exceedances, "
        "p = H / L at the L-th permutation; voxels never reaching H keep the empirical p of all permutations",
        "H": int(h),
        "MaximumPermutations": int(counted.max(initial=0)),
        "MedianPermutationsPerVoxel": float(np.median(counted)) if counted.size else 0.0,
    }
