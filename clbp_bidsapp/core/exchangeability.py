"""Exchangeability blocks: permutations that keep every row inside its block (e.g. its site).

When the sites of a study differ (scanner, population, proportion of patients), rows are exchangeable under the
null hypothesis only within a site. Restricting the permutations to within-block shuffles is what FSL randomise
(``-e``, "exchangeability blocks") and PALM (``-eb``, within-block) do (Winkler et al. 2014, 2015).

``blocks`` is one label per row (any hashable values) or ``None`` for free permutation of all rows.
"""

from __future__ import annotations

from math import lgamma

import numpy as np


def block_codes(blocks) -> np.ndarray | None:
    """Integer code per row (0..B-1, in sorted label order), or ``None`` when there is at most one block."""
    if blocks is None:
        return None
    _, codes = np.unique(np.asarray(blocks).astype(str), return_inverse=True)
    return codes if codes.max(initial=0) > 0 else None


def permute_within(rng: np.random.Generator, n: int, blocks: np.ndarray | None) -> np.ndarray:
    """A row ordering of ``0..n-1`` that moves rows only within their block.

    With ``blocks`` None (or a single block) this is ``rng.permutation(n)`` and draws exactly the same numbers;
    otherwise each block, in sorted label order, takes one ``rng.permutation`` of its own rows.
    """
    if blocks is None:
        return rng.permutation(n)
    blocks = np.asarray(blocks)
    if blocks.shape != (n,):
        raise ValueError(f"blocks must give one label per row ({n}), got shape {blocks.shape}")
    order = np.arange(n)
    for label in np.unique(blocks):
        rows = np.flatnonzero(blocks == label)
        order[rows] = rows[rng.permutation(rows.size)]
    return order


def log_rearrangements(values: np.ndarray, blocks: np.ndarray | None = None) -> float:
    """log of the number of distinct rearrangements of ``values`` reachable by (within-block) permutation.

    Per block: m! / product of the tie counts!; blocks multiply.
    """
    values = np.asarray(values)
    labels = np.zeros(values.shape[0], dtype=int) if blocks is None else np.asarray(blocks)
    total = 0.0
    for label in np.unique(labels):
        _, counts = np.unique(values[labels == label], return_counts=True)
        total += lgamma(counts.sum() + 1) - sum(lgamma(c + 1) for c in counts)
    return total


def describe(column: str | None, blocks: np.ndarray | None) -> str:
    """How the rows were permuted, for sidecars and logs."""
    if column is None or blocks is None:
        return "free (all participants exchangeable)"
    n_blocks = int(np.unique(np.asarray(blocks)).size)
    return f"within {column} ({n_blocks} exchangeability blocks, as FSL randomise -e / PALM -eb)"
