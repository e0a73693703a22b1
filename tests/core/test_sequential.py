"""Sequential (Besag-Clifford) stopping of uncorrected permutation p (core/sequential.py, core/stats.py)."""

from __future__ import annotations

import numpy as np
import pytest

from clbp_bidsapp.core import sequential
from clbp_bidsapp.core.stats import Design, FreedmanLaneT, permutation_stream, permutation_test


def _reference(observed: np.ndarray, null: np.ndarray, h: int, minimum: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Straightforward Besag-Clifford: walk the permutations one by one, per voxel; stop at the first L >= minimum
    with at least h exceedances, p = count / L."""
    n_perm, voxels = null.shape
    p, stopped = np.empty(voxels), np.zeros(voxels, dtype=int)
    for v in range(voxels):
        count = 0
        for k in range(n_perm):
            count += null[k, v] >= observed[v] - 1e-12
            if count >= h and k + 1 >= minimum:
                stopped[v] = k + 1
                break
        p[v] = count / stopped[v] if stopped[v] else count / n_perm
    return p, stopped


def test_counter_stops_at_h_exactly_where_a_one_by_one_walk_stops():
    rng = np.random.default_rng(3)
    observed = np.r_[rng.uniform(0, 3, 40), 10.0]  # the last voxel is never reached by the null
    null = np.abs(rng.standard_normal((300, observed.size)))
    null[0] = observed  # the identity permutation reproduces the observed statistic
    counter = sequential.SequentialCounter(observed, h=7)
    for start in range(0, 300, 64):  # blocks that do not divide the total
        counter.update(null[start : start + 64], start=start)
    p_ref, stopped_ref = _reference(observed, null, 7)
    assert np.array_equal(counter.stopped_at, stopped_ref)
    np.testing.assert_allclose(counter.p_values(), p_ref)
    assert counter.exceed.max() == 7  # counting stops at h
    assert counter.stopped_at[-1] == 0 and counter.p_values()[-1] == pytest.approx(1 / 300)
    assert (counter.stopped_at[:-1] > 0).sum() > 30


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    n, voxels = 16, 300
    group = np.r_[np.ones(8), np.zeros(8)]
    matrix = np.column_stack([group, np.ones(n), rng.standard_normal(n)])
    data = rng.standard_normal((n, voxels))
    data[:, :30] += 1.6 * group[:, None] * np.linspace(0.3, 1.5, 30)  # graded effects: p from ~0.1 down to ~1e-4
    return data, Design(matrix, ["g", "i", "c"], 0)


def test_sequential_p_equals_the_exhaustive_p_where_p_is_small_and_fwe_is_unchanged(planted):
    data, design = planted
    h, total, fwe_perms = 20, 4000, 400
    exhaustive = permutation_test(data, design, n_permutations=total, seed=5, block=100)
    fast = permutation_test(data, design, n_permutations=fwe_perms, seed=5, block=100, sequential_h=h,
                            max_permutations=total)  # fmt: skip
    plain = permutation_test(data, design, n_permutations=fwe_perms, seed=5, block=100)
    # the FWE null is the first fwe_perms permutations of the same stream, untouched by the sequential mode
    assert np.array_equal(fast.max_null, plain.max_null)
    assert np.array_equal(fast.p_fwe, plain.p_fwe)
    never_stopped = fast.uncorrected_permutations == total
    # small p (fewer than h exceedances in all permutations): the same permutations, the same count, the same p
    assert never_stopped.sum() >= 5
    assert np.array_equal(fast.p_uncorrected[never_stopped], exhaustive.p_uncorrected[never_stopped])
    assert fast.p_uncorrected[never_stopped].max() < h / total
    # voxels that reached h within the full count of the first fwe_perms: their empirical p over those
    at_first = fast.uncorrected_permutations == fwe_perms
    assert np.array_equal(fast.p_uncorrected[at_first], plain.p_uncorrected[at_first])
    # voxels carried on and stopped later: p = h / L, where the exhaustive count reached h
    later = ~never_stopped & ~at_first
    assert later.sum() >= 3
    np.testing.assert_allclose(fast.p_uncorrected[later], h / fast.uncorrected_permutations[later])
    small = exhaustive.p_uncorrected < 0.1
    assert np.abs(np.log10(fast.p_uncorrected[small]) - np.log10(exhaustive.p_uncorrected[small])).max() < 0.5
    # the saving: the voxels with large p stopped early
    assert fast.uncorrected_permutations.mean() < total / 5


def test_sequential_counts_match_a_straightforward_walk_over_the_same_permutations(planted):
    data, design = planted
    h, total = 10, 600
    fast = permutation_test(data, design, n_permutations=200, seed=2, block=64, sequential_h=h, max_permutations=total)
    t_stats = FreedmanLaneT(data, design)
    null = np.abs(np.concatenate([t_stats(perms) for perms in permutation_stream(16, total, seed=2, block=64)]))
    p_ref, stopped_ref = _reference(null[0], null, h, minimum=200)
    np.testing.assert_allclose(fast.p_uncorrected, p_ref, rtol=1e-12)
    assert np.array_equal(fast.uncorrected_permutations, np.where(stopped_ref > 0, stopped_ref, total))


def test_h_below_one_is_refused():
    with pytest.raises(ValueError, match="h must be at least 1"):
        sequential.SequentialCounter(np.zeros(3), h=0)
