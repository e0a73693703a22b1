"""Graph measures against networkx/scipy on known graphs; thresholding, rewiring, small-worldness, NaN nodes, AUC."""

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scipy.sparse.csgraph import shortest_path

from clbp_bidsapp.core import graph
from clbp_bidsapp.core.graph import (
    DEFAULT_SPARSITIES,
    GLOBAL_MEASURES,
    NODAL_MEASURES,
    binary_measures,
    graph_measures,
    n_edges_for,
    proportional_threshold,
    randomize_degree_preserving,
)


def two_components() -> nx.Graph:
    g = nx.disjoint_union(nx.cycle_graph(9), nx.complete_graph(5))
    g.add_edge(9, 0)  # joins K5 to the ring: remove it to make two components again
    g.remove_edge(9, 0)
    g.add_edges_from([(14, 15), (15, 16), (16, 14), (16, 17)])  # a third small piece with a pendant node
    g.add_node(18)  # isolated node
    return g


KNOWN = {
    "ring lattice": nx.watts_strogatz_graph(23, 4, 0.0, seed=0),
    "complete": nx.complete_graph(7),
    "erdos-renyi": nx.erdos_renyi_graph(41, 0.15, seed=3),
    "watts-strogatz": nx.watts_strogatz_graph(37, 6, 0.2, seed=1),
    "components": two_components(),
}


def adjacency(g: nx.Graph) -> np.ndarray:
    return nx.to_numpy_array(g, nodelist=range(g.number_of_nodes())).astype(bool)


def nodal_efficiency(g: nx.Graph) -> np.ndarray:
    """Mean of 1 / d(i, j) over the other nodes (Achard & Bullmore 2007), from networkx's BFS distances."""
    n = g.number_of_nodes()
    out = np.zeros(n)
    for i, lengths in nx.all_pairs_shortest_path_length(g):
        out[i] = sum(1 / d for j, d in lengths.items() if j != i) / (n - 1)
    return out


@pytest.mark.parametrize("name", list(KNOWN))
def test_measures_equal_networkx(name):
    g = KNOWN[name]
    n = g.number_of_nodes()
    adj = adjacency(g)
    before = adj.copy()
    glob, nodal = binary_measures(adj, seed=5)
    np.testing.assert_array_equal(adj, before)
    nodes = range(n)
    np.testing.assert_array_equal(nodal["degree"], [g.degree(i) for i in nodes])
    np.testing.assert_allclose(nodal["clustering"], [nx.clustering(g, i) for i in nodes], rtol=1e-12)
    bc = nx.betweenness_centrality(g, normalized=True)
    np.testing.assert_allclose(nodal["betweenness"], [bc[i] for i in nodes], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(nodal["efficiency"], nodal_efficiency(g), rtol=1e-12)
    local = [nx.global_efficiency(g.subgraph(list(g[i]))) for i in nodes]
    np.testing.assert_allclose(nodal["local_efficiency"], local, rtol=1e-12)
    assert glob["clustering"] == pytest.approx(nx.average_clustering(g), rel=1e-12)
    assert glob["global_efficiency"] == pytest.approx(nx.global_efficiency(g), rel=1e-12)
    assert glob["local_efficiency"] == pytest.approx(nx.local_efficiency(g), rel=1e-12)
    assert glob["path_length"] == pytest.approx(1 / nx.global_efficiency(g), rel=1e-12)
    largest = g.subgraph(max(nx.connected_components(g), key=len))
    assert glob["path_length_lcc"] == pytest.approx(nx.average_shortest_path_length(largest), rel=1e-12)
    assert glob["lcc_fraction"] == largest.number_of_nodes() / n
    communities = nx.community.louvain_communities(g, seed=5)
    assert glob["modularity"] == pytest.approx(nx.community.modularity(g, communities), rel=1e-12)


def test_known_values_of_simple_graphs():
    glob, nodal = binary_measures(adjacency(nx.complete_graph(7)))
    assert glob["clustering"] == 1 and glob["path_length"] == 1 and glob["global_efficiency"] == 1
    np.testing.assert_array_equal(nodal["betweenness"], 0)
    # star: the hub lies on every shortest path between leaves, leaves have no triangles
    glob, nodal = binary_measures(adjacency(nx.star_graph(6)))
    assert nodal["betweenness"][0] == 1 and glob["clustering"] == 0
    assert glob["path_length_lcc"] == pytest.approx((6 * 1 * 2 + 30 * 2) / 42)


def test_bfs_distances_equal_scipy_csgraph():
    g = two_components()
    g.add_edges_from(nx.erdos_renyi_graph(19, 0.12, seed=2).edges)
    adj = adjacency(g)
    expected = shortest_path(adj.astype(float), unweighted=True, directed=False)
    np.testing.assert_array_equal(graph._bfs(adj), expected)


def test_threshold_keeps_the_strongest_positive_edges():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 17))
    m = np.corrcoef(x.T)
    before = m.copy()
    possible = 17 * 16 // 2
    for sparsity in (0.05, 0.1, 0.23, 0.4):
        adj = proportional_threshold(m, sparsity=sparsity)
        k = math.ceil(sparsity * possible - 1e-9)
        assert np.triu(adj, 1).sum() == k == n_edges_for(17, sparsity)
        assert np.array_equal(adj, adj.T) and not adj.diagonal().any()
        upper = np.triu(np.ones_like(adj), 1)
        kept, dropped = m[adj & upper], m[~adj & upper]
        assert kept.min() > dropped.max() and kept.min() > 0
    np.testing.assert_array_equal(m, before)
    # float-rounded sparsities from np.arange keep the intended count
    assert n_edges_for(300, np.arange(0.05, 0.405, 0.01)[1]) == math.ceil(0.06 * 44850)
    assert len(DEFAULT_SPARSITIES) == 36 and DEFAULT_SPARSITIES[0] == 0.05 and DEFAULT_SPARSITIES[-1] == 0.4


def test_threshold_positive_only_and_ties_by_position():
    m = np.full((5, 5), -0.3)
    m[0, 1] = m[1, 0] = 0.5
    m[2, 3] = m[3, 2] = 0.5
    m[1, 4] = m[4, 1] = 0.5
    # three tied positive edges; sparsity 0.2 of 10 -> 2 edges: the first two in row-major order
    adj = proportional_threshold(m, sparsity=0.2)
    assert {tuple(e) for e in np.argwhere(np.triu(adj))} == {(0, 1), (1, 4)}
    # more edges asked than positive weights: only the positive ones
    assert np.triu(proportional_threshold(m, sparsity=0.9)).sum() == 3


def test_rewiring_preserves_degrees_and_randomises():
    g = nx.watts_strogatz_graph(60, 6, 0.0, seed=0)
    adj = adjacency(g)
    nets = randomize_degree_preserving(adj, n_networks=4, rng=np.random.default_rng(1))
    assert nets.shape == (4, 60, 60)
    for net in nets:
        assert np.array_equal(net, net.T) and not net.diagonal().any()
        np.testing.assert_array_equal(net.sum(axis=1), adj.sum(axis=1))
        assert (net & ~adj).sum() > 0.5 * adj.sum()  # most edges moved
        # clustering falls from the lattice's 0.6 to the random level (about k / n)
        assert nx.average_clustering(nx.from_numpy_array(net.astype(int))) < 0.2
    assert not np.array_equal(nets[0], nets[1])
    again = randomize_degree_preserving(adj, n_networks=4, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(nets, again)
    # irregular degrees (a star plus a ring) are preserved too
    h = nx.compose(nx.star_graph(12), nx.cycle_graph(13))
    a = adjacency(h)
    for net in randomize_degree_preserving(a, n_networks=3, swaps_per_edge=20, rng=np.random.default_rng(2)):
        np.testing.assert_array_equal(net.sum(axis=1), a.sum(axis=1))


def matrix_of(g: nx.Graph) -> tuple[np.ndarray, float]:
    """A weight matrix whose positive entries are exactly g's edges, and the sparsity that keeps them all."""
    n = g.number_of_nodes()
    m = np.where(adjacency(g), 1.0, -0.1)
    np.fill_diagonal(m, 1)
    return m, g.number_of_edges() / (n * (n - 1) / 2)


def test_small_world_sigma():
    ws, s_ws = matrix_of(nx.watts_strogatz_graph(100, 6, 0.1, seed=0))
    # dense enough (mean degree 20) that the graph's own clustering is not dominated by a few triangles
    er, s_er = matrix_of(nx.gnm_random_graph(100, 1000, seed=0))
    small = graph_measures(ws, sparsities=[s_ws], n_random=10, seed=0).global_table.iloc[0]
    rand = graph_measures(er, sparsities=[s_er], n_random=10, seed=0).global_table.iloc[0]
    assert small["n_edges"] == 300 and rand["n_edges"] == 1000
    assert small["sigma"] > 3 and small["gamma"] > 3 and small["lambda"] < 1.5
    assert 0.8 < rand["sigma"] < 1.2
    assert small["sigma"] == pytest.approx(small["gamma"] / small["lambda"])


def correlated(n_nodes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((80, n_nodes)) + rng.standard_normal((80, 4))[:, np.arange(n_nodes) % 4]
    return np.corrcoef(x.T)


def test_nan_nodes_are_dropped():
    m = correlated(23, 0)
    with_nan = m.copy()
    for i in (4, 17):
        with_nan[i, :] = with_nan[:, i] = np.nan
    before = with_nan.copy()
    sparsities = [0.1, 0.2, 0.3]
    got = graph_measures(with_nan, sparsities=sparsities, n_random=2, seed=3)
    np.testing.assert_array_equal(with_nan, before)
    keep = np.setdiff1d(np.arange(23), [4, 17])
    ref = graph_measures(m[np.ix_(keep, keep)], sparsities=sparsities, n_random=2, seed=3)
    np.testing.assert_array_equal(got.kept, np.isin(np.arange(23), keep))
    assert (got.global_table["n_nodes"] == 21).all()
    pd.testing.assert_frame_equal(got.global_table, ref.global_table)
    assert got.nodal.loc[got.nodal["node"].isin([4, 17]), list(NODAL_MEASURES)].isna().all().all()
    kept_rows = got.nodal[got.nodal["node"].isin(keep)].reset_index(drop=True)
    np.testing.assert_array_equal(kept_rows[list(NODAL_MEASURES)], ref.nodal[list(NODAL_MEASURES)])
    assert got.auc_nodal.loc[[4, 17]].isna().all().all()


def test_invalid_matrices_are_refused():
    m = correlated(9, 1)
    asym = m.copy()
    asym[0, 1] += 0.5
    with pytest.raises(ValueError, match="symmetric"):
        graph_measures(asym)
    scattered = m.copy()
    scattered[2, 5] = scattered[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        graph_measures(scattered)
    with pytest.raises(ValueError, match="sparsities"):
        graph_measures(m, sparsities=[0.0, 0.1])


def test_deterministic_with_seed_and_auc_is_trapezoid():
    m = correlated(31, 2)
    sparsities = np.arange(0.05, 0.405, 0.05)
    a = graph_measures(m, sparsities=sparsities, n_random=3, seed=7)
    b = graph_measures(m, sparsities=sparsities, n_random=3, seed=7)
    c = graph_measures(m, sparsities=sparsities, n_random=3, seed=8)
    pd.testing.assert_frame_equal(a.global_table, b.global_table, check_exact=True)
    pd.testing.assert_frame_equal(a.nodal, b.nodal, check_exact=True)
    assert a.auc_global == b.auc_global
    assert not np.array_equal(a.global_table["clustering_rand"], c.global_table["clustering_rand"])
    # random networks at a threshold do not depend on which other thresholds are asked for
    single = graph_measures(m, sparsities=[sparsities[2]], n_random=3, seed=7).global_table
    pd.testing.assert_frame_equal(single, a.global_table.iloc[[2]], check_exact=True)

    # thresholds in any order give the same rows (the Louvain graph is rebuilt when the threshold goes down)
    backwards = graph_measures(m, sparsities=sparsities[::-1], n_random=3, seed=7).global_table
    pd.testing.assert_frame_equal(backwards.iloc[::-1], a.global_table, check_exact=True)
    plain = graph_measures(m, sparsities=sparsities, n_random=3, seed=7, compute_modularity=False).global_table
    assert plain["modularity"].isna().all()
    pd.testing.assert_frame_equal(plain.drop(columns="modularity"), a.global_table.drop(columns="modularity"))

    assert list(a.global_table.index) == list(sparsities)
    assert set(GLOBAL_MEASURES) <= set(a.global_table.columns) and set(a.auc_global) == set(GLOBAL_MEASURES)
    for name in GLOBAL_MEASURES:
        assert a.auc_global[name] == pytest.approx(np.trapezoid(a.global_table[name], x=sparsities), nan_ok=True)
    assert len(a.nodal) == 31 * sparsities.size
    for name in NODAL_MEASURES:
        curves = a.nodal.pivot(index="sparsity", columns="node", values=name)
        np.testing.assert_allclose(a.auc_nodal[name], np.trapezoid(curves.to_numpy(), x=sparsities, axis=0))
    # every global measure is finite on this connected modular graph, and the measures move with density
    table = a.global_table
    assert np.isfinite(table[list(GLOBAL_MEASURES)].to_numpy()).all()
    assert table["global_efficiency"].is_monotonic_increasing and table["n_edges"].is_monotonic_increasing


@pytest.mark.parametrize("n_valid", [0, 1, 2])
def test_fewer_than_three_regions_with_data_give_nan_measures(n_valid):
    """A connectome where no region (or one or two) reached the coverage threshold: n/a, never a crash
    (this raised 'attempt to get argmax of an empty sequence' and failed the whole participant)."""
    rng = np.random.default_rng(0)
    series = rng.standard_normal((50, 6))
    matrix = np.corrcoef(series.T)
    invalid = np.arange(6) >= n_valid
    matrix[invalid, :] = np.nan
    matrix[:, invalid] = np.nan
    result = graph.graph_measures(matrix, sparsities=[0.1, 0.2, 0.3], n_random=2)
    assert result.computed is False
    assert result.global_table.index.tolist() == [0.1, 0.2, 0.3]
    assert (result.global_table["n_nodes"] == (n_valid if n_valid > 1 else 0)).all()
    assert result.global_table[list(graph.GLOBAL_MEASURES)].isna().all().all()
    assert all(math.isnan(v) for v in result.auc_global.values())
    assert result.nodal[list(graph.NODAL_MEASURES)].isna().all().all() and len(result.nodal) == 18
    assert result.auc_nodal.isna().all().all() and len(result.auc_nodal) == 6


def test_three_regions_are_enough():
    matrix = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.4], [0.2, 0.4, 1.0]])
    result = graph.graph_measures(matrix, sparsities=[1.0], n_random=0)
    assert result.computed is True
    assert result.global_table.loc[1.0, "clustering"] == 1.0  # the triangle
