"""Family-wise error across maps and contrasts on a shared permutation stream (PALM's -corrmod/-corrcon).

Each map's permutation test gives, for permutation k, the maximum |t| over its voxels. The t statistics of
different maps have different degrees of freedom (different participants and covariates), so they are made
comparable first: every |t| is turned into the normal deviate with the same two-sided p,
``z = Phi^-1(1 - p/2)`` with ``p = 2 P(T_dof > |t|)`` (monotone in |t|, so the maximum over voxels of z is z of the
maximum |t|). The family null of permutation k is the maximum over the family's maps of their z-transformed
maxima, and a voxel's family-wise p is the fraction of permutations whose family maximum reaches its z
(Winkler et al. 2016, section on multiple testing; the "max over modalities and contrasts" of PALM).

The dependence between maps is kept only when permutation k rearranges the same participants in the same way in
every map: the engine draws the same orderings for the same seed and participant count, so maps analysed on the
same participants share it. When maps have different participants (per-map exclusions), their k-th
permutations are unrelated and the family null treats them as independent, which for positively dependent maps
gives a stochastically larger maximum (a conservative family p); the caller reports which maps share the stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

Z_CAP = 37.0  # normal deviate of the smallest p a double holds; |t| beyond it all map to the cap


def t_to_z(t: np.ndarray, dof: float) -> np.ndarray:
    """Normal deviate with the same two-sided p as |t| on ``dof`` degrees of freedom (>= 0)."""
    p_half = stats.t.sf(np.abs(np.asarray(t, dtype=np.float64)), dof)
    return np.minimum(stats.norm.isf(np.maximum(p_half, np.finfo(float).tiny)), Z_CAP)


def family_null(null_max_z: Sequence[np.ndarray]) -> np.ndarray:
    """Per permutation, the maximum over the family's maps of their z-transformed maximum statistic."""
    lengths = {len(null) for null in null_max_z}
    if len(lengths) != 1:
        raise ValueError(f"the maps' nulls have different numbers of permutations: {sorted(lengths)}")
    return np.max(np.vstack(null_max_z), axis=0)
