"""Network-Based Statistic against a loop implementation (lstsq Freedman-Lane + networkx components)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats

from clbp_bidsapp.core.nbs import network_based_statistic
from clbp_bidsapp.core.stats import design_matrix, ols_t, permutation_stream, permutation_test


def _design(n_patients, n_controls, *, rng, covariates=("age",)):
    n = n_patients + n_controls
    table = pd.DataFrame(
        {
            "group": ["CLBP"] * n_patients + ["HC"] * n_controls,
            "age": rng.normal(45, 10, n),
            "mean_fd": rng.gamma(2, 0.05, n),
        }
    )
    return design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC", covariates=covariates)


def _reference(edges, design, n_nodes, *, threshold, n_permutations, seed, two_sided, measure):
    """Freedman-Lane by lstsq for each permutation, networkx components of the supra-threshold graphs."""
    x = design.matrix
    z = np.delete(x, design.tested, axis=1)
    fitted = z @ np.linalg.lstsq(z, edges, rcond=None)[0]
    residuals = edges - fitted
    contrast = np.eye(x.shape[1])[design.tested]
    rows, cols = np.triu_indices(n_nodes, k=1)
    perms = np.concatenate(list(permutation_stream(len(edges), n_permutations, seed=seed, block=7)))
    null, observed = [], []
    for k, perm in enumerate(perms):
        t = ols_t(fitted + residuals[perm], x, contrast)
        largest = 0.0
        for sign in (1, -1) if two_sided else (1,):
            graph = nx.Graph()
            supra = np.flatnonzero(sign * t > threshold)
            graph.add_edges_from(zip(rows[supra], cols[supra], strict=True))
            for nodes in nx.connected_components(graph):
                members = [e for e in supra if rows[e] in nodes]
                size = len(members) if measure == "extent" else float((sign * t[members] - threshold).sum())
                largest = max(largest, size)
                if k == 0:
                    observed.append((sorted(members), sorted(nodes), size, sign))
        null.append(largest)
    null = np.array(null)
    p = {tuple(m): float((null >= s - 1e-9).mean()) for m, _, s, _ in observed}
    return null, observed, p


def test_t_equals_ols_and_two_sample_t():
    rng = np.random.default_rng(3)
    n_nodes = 9
    edges = rng.standard_normal((23, n_nodes * (n_nodes - 1) // 2))
    design = _design(11, 12, rng=rng, covariates=("age", "mean_fd"))
    result = network_based_statistic(edges, design, n_nodes, n_permutations=5, seed=1)
    np.testing.assert_allclose(result.t, ols_t(edges, design.matrix, np.eye(4)[0]), atol=1e-10)
    np.testing.assert_allclose(result.t, permutation_test(edges, design, n_permutations=5, seed=1).t, atol=1e-12)
    plain = _design(11, 12, rng=rng, covariates=())
    result = network_based_statistic(edges, plain, n_nodes, n_permutations=5)
    expected = sstats.ttest_ind(edges[:11], edges[11:], axis=0).statistic
    np.testing.assert_allclose(result.t, expected, atol=1e-10)


@pytest.mark.parametrize(("measure", "two_sided"), [("extent", True), ("intensity", True), ("extent", False)])
def test_components_and_null_match_loop_implementation(measure, two_sided):
    rng = np.random.default_rng(7)
    n_nodes, n_patients, n_controls = 13, 8, 9
    edges = rng.standard_normal((n_patients + n_controls, n_nodes * (n_nodes - 1) // 2))
    rows, cols = np.triu_indices(n_nodes, k=1)
    planted = np.isin(rows, [0, 2, 5, 7]) & np.isin(cols, [0, 2, 5, 7])
    edges[:n_patients, planted] += 1.2
    design = _design(n_patients, n_controls, rng=rng)
    kwargs = {"threshold": 1.8, "n_permutations": 40, "seed": 5, "two_sided": two_sided, "measure": measure}
    result = network_based_statistic(edges, design, n_nodes, block=16, **kwargs)
    null, observed, p = _reference(edges, design, n_nodes, **kwargs)
    np.testing.assert_allclose(result.null, null, rtol=1e-9, atol=1e-9)
    assert len(result.components) == len(observed) >= (2 if two_sided else 1)
    got = {tuple(c.edges): c for c in result.components}
    for members, nodes, size, sign in observed:
        component = got[tuple(members)]
        assert list(component.nodes) == nodes
        assert component.sign == sign
        assert component.size == pytest.approx(size, rel=1e-9)
        assert component.p_fwe == pytest.approx(p[tuple(members)])
    # components are numbered largest first, and edge_component points at them
    sizes = [c.size for c in result.components]
    assert sizes == sorted(sizes, reverse=True)
    for index, component in enumerate(result.components, start=1):
        assert (np.flatnonzero(result.edge_component == index) == component.edges).all()
    assert (result.edge_component > 0).sum() == sum(c.edges.size for c in result.components)
    # identity first: the largest observed component is the first null value, so p >= 1/n_perm
    assert result.null[0] == pytest.approx(max(sizes))
    assert min(c.p_fwe for c in result.components) >= 1 / 40


def test_planted_clique_is_found_and_nothing_else():
    rng = np.random.default_rng(11)
    n_nodes, n_per_group = 40, 20
    rows, cols = np.triu_indices(n_nodes, k=1)
    clique = [3, 8, 15, 21, 30, 37]
    planted = np.isin(rows, clique) & np.isin(cols, clique)
    edges = rng.standard_normal((2 * n_per_group, rows.size))
    edges[:n_per_group, planted] += 1.0
    design = _design(n_per_group, n_per_group, rng=rng)
    result = network_based_statistic(edges, design, n_nodes, threshold=3.0, n_permutations=1000, seed=0)
    significant = [c for c in result.components if c.p_fwe < 0.05]
    assert len(significant) == 1
    found = significant[0]
    assert found.sign == 1
    assert len(set(found.nodes) & set(clique)) >= 5
    assert planted[found.edges].mean() >= 0.5


def test_null_data_gives_no_significant_component():
    n_nodes = 30
    rows, _ = np.triu_indices(n_nodes, k=1)
    false_positives = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        edges = rng.standard_normal((24, rows.size))
        design = _design(12, 12, rng=rng)
        result = network_based_statistic(edges, design, n_nodes, threshold=3.0, n_permutations=300, seed=seed)
        significant = [c for c in result.components if c.p_fwe < 0.05]
        if seed == 0:
            assert not significant
        false_positives += bool(significant)
    assert false_positives <= 1


def test_intensity_sums_suprathreshold_t():
    rng = np.random.default_rng(2)
    n_nodes = 11
    edges = rng.standard_normal((16, n_nodes * (n_nodes - 1) // 2))
    design = _design(8, 8, rng=rng)
    extent = network_based_statistic(edges, design, n_nodes, threshold=1.5, n_permutations=20, measure="extent")
    intensity = network_based_statistic(edges, design, n_nodes, threshold=1.5, n_permutations=20, measure="intensity")
    assert {tuple(c.edges) for c in extent.components} == {tuple(c.edges) for c in intensity.components}
    for component in intensity.components:
        expected = (np.abs(intensity.t[component.edges]) - 1.5).sum()
        assert component.size == pytest.approx(expected)
        assert (np.sign(intensity.t[component.edges]) == component.sign).all()


def test_refuses_nan_and_bad_arguments():
    rng = np.random.default_rng(0)
    edges = rng.standard_normal((10, 15))
    design = _design(5, 5, rng=rng)
    bad = edges.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        network_based_statistic(bad, design, 6, n_permutations=10)
    with pytest.raises(ValueError, match="measure"):
        network_based_statistic(edges, design, 6, n_permutations=10, measure="mass")
    with pytest.raises(ValueError, match="nodes"):
        network_based_statistic(edges, design, 7, n_permutations=10)
    assert np.isfinite(edges).all()  # input not mutated


def test_no_suprathreshold_edges():
    rng = np.random.default_rng(0)
    edges = rng.standard_normal((10, 15))
    result = network_based_statistic(edges, _design(5, 5, rng=rng), 6, threshold=50.0, n_permutations=10)
    assert result.components == []
    assert (result.null == 0).all()
    assert (result.edge_component == 0).all()
