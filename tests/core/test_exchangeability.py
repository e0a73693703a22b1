"""Exchangeability blocks (within-site permutation, FSL randomise -e): rows never leave their block, one block is
today's free stream byte for byte, and a site-confounded null is not made significant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core.exchangeability import block_codes, log_rearrangements, permute_within
from clbp_bidsapp.core.nbs import network_based_statistic
from clbp_bidsapp.core.stats import design_matrix, min_permutation_p, permutation_stream, permutation_test
from clbp_bidsapp.group.design import permutation_blocks

SITES = np.repeat(["b", "a", "c"], [7, 9, 5])  # uneven, unsorted labels


def test_rows_never_move_across_blocks():
    for perms in permutation_stream(SITES.size, 300, seed=5, block=64, blocks=SITES):
        for order in perms:
            np.testing.assert_array_equal(SITES[order], SITES)
            assert sorted(order) == list(range(SITES.size))
    moved = np.concatenate(list(permutation_stream(SITES.size, 50, seed=5, block=64, blocks=SITES)))[1:]
    assert (moved != np.arange(SITES.size)).any(axis=1).all()  # and they do move within blocks


def test_one_block_is_the_free_stream_byte_for_byte():
    n = 23
    free = np.concatenate(list(permutation_stream(n, 200, seed=11, block=32)))
    one = np.concatenate(list(permutation_stream(n, 200, seed=11, block=32, blocks=np.zeros(n))))
    assert free.tobytes() == one.tobytes()
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert permute_within(rng_a, n, None).tobytes() == rng_b.permutation(n).tobytes()
    assert block_codes(["x"] * 5) is None and block_codes(None) is None
    np.testing.assert_array_equal(block_codes(["s2", "s1", "s2"]), [1, 0, 1])


def test_fewer_rearrangements_within_blocks_raise_the_p_floor():
    tested = np.array([1, 1, 0, 0, 1, 0])
    assert np.exp(log_rearrangements(tested)) == pytest.approx(20)  # 6! / (3! 3!)
    blocks = np.array([0, 0, 0, 1, 1, 1])  # (3 choose 2) x (3 choose 1) = 9
    assert min_permutation_p(tested, blocks) == pytest.approx(1 / 9)
    assert min_permutation_p(tested) == pytest.approx(1 / 20)


def _site_confounded_null(seed=0, columns=400):
    """Site a: 10 patients, 2 controls; site b: 2 patients, 10 controls; the site shifts every column by 2 SD
    and the group does nothing; the design (group + intercept) does not model the site."""
    rng = np.random.default_rng(seed)
    site = np.repeat(["a", "b"], 12)
    group = np.array(["CLBP"] * 10 + ["HC"] * 2 + ["CLBP"] * 2 + ["HC"] * 10)
    data = rng.standard_normal((24, columns)) + 2.0 * (site == "a")[:, None]
    design = design_matrix(pd.DataFrame({"group": group}), group_column="group", patient_label="CLBP",
                           control_label="HC")  # fmt: skip
    return data, design, site


def test_a_site_confound_is_not_made_significant_by_within_site_permutation():
    """Every column is an independent null dataset for the group (the difference is the site's). Free
    permutation treats the site shift as a group effect; within-site permutation keeps it in every
    rearrangement, so its false-positive rate stays near the nominal 5 %."""
    data, design, site = _site_confounded_null()
    free = permutation_test(data, design, n_permutations=200, seed=1)
    within = permutation_test(data, design, n_permutations=200, seed=1, blocks=site)
    free_rate, within_rate = (free.p_uncorrected < 0.05).mean(), (within.p_uncorrected < 0.05).mean()
    print(f"false-positive rate at p < 0.05: free {free_rate:.3f}, within site {within_rate:.3f}")
    assert free_rate > 0.5
    assert within_rate < 0.1
    np.testing.assert_array_equal(free.t, within.t)  # the observed statistic does not change


def test_nbs_uses_the_same_within_block_stream():
    data, design, site = _site_confounded_null(columns=10)  # 10 edges of 5 nodes
    result = network_based_statistic(data, design, 5, threshold=2.0, n_permutations=50, seed=2, blocks=site)
    direct = permutation_test(data, design, n_permutations=50, seed=2, blocks=site, block=128)
    np.testing.assert_allclose(result.t, direct.t)
    free = network_based_statistic(data, design, 5, threshold=2.0, n_permutations=50, seed=2)
    assert free.components[0].p_fwe < result.components[0].p_fwe  # the confound survives only free permutation


def test_permutation_blocks_follow_the_setting_and_the_rows():
    table = pd.DataFrame({"site": ["x", "y", "x", "y"], "scanner": ["p", "p", "p", "p"]})
    column, blocks = permutation_blocks(table, GroupSettings())
    assert column == "site" and list(blocks) == [0, 1, 0, 1]
    assert permutation_blocks(table.iloc[[0, 2]], GroupSettings()) == (None, None)  # one site among these rows
    assert permutation_blocks(table, GroupSettings(permute_within="none")) == (None, None)
    assert permutation_blocks(table, GroupSettings(permute_within="scanner")) == (None, None)
    assert permutation_blocks(table.drop(columns="site"), GroupSettings()) == (None, None)
