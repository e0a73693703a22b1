"""Fan-out of the connectome permutation tests (issue #17): the edge tests, the NBS, the tangent-space and
graph-measure tests run through group/fanout.py, and one and two worker processes write the same bytes."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core.nbs import merge_nbs_nulls, nbs_nulls, network_based_statistic
from clbp_bidsapp.core.stats import PERMUTATIONS_PER_CHUNK, Design, chunk_count
from clbp_bidsapp.group import fanout
from clbp_bidsapp.group.connectomes import run_connectome_stats
from clbp_bidsapp.io import derivatives
from tests.group.test_connectomes import PLANTED, REGIONS, _write_participant

N_PERM = 2 * PERMUTATIONS_PER_CHUNK + 37  # three chunks, the last one short


def planted_edges():
    """14 participants x 36 edges of 9 nodes, a planted 4-node component in the patients, a covariate."""
    rng = np.random.default_rng(8)
    n, n_nodes = 14, 9
    group = np.r_[np.ones(7), np.zeros(7)]
    age = rng.normal(size=n)
    design = Design(matrix=np.column_stack([group, np.ones(n), age - age.mean()]), names=["g", "1", "age"], tested=0)
    rows, cols = np.triu_indices(n_nodes, k=1)
    edges = rng.normal(size=(n, rows.size))
    planted = np.isin(rows, [0, 2, 3, 5]) & np.isin(cols, [0, 2, 3, 5])
    edges[:7, planted] += 3.0
    return edges, design, n_nodes


@pytest.fixture(scope="module")
def edges_problem():
    return planted_edges()


@pytest.mark.parametrize("measure", ["extent", "intensity"])
def test_nbs_chunks_merged_equal_one_run(edges_problem, measure):
    edges, design, n_nodes = edges_problem
    options = {"threshold": 2.5, "n_permutations": N_PERM, "seed": 4, "measure": measure}
    single = network_based_statistic(edges, design, n_nodes, **options)
    assert single.components and single.components[0].p_fwe < 0.05  # the planted component is found
    for pieces in (2, 3):
        parts = [nbs_nulls(edges, design, n_nodes, chunks=chunks, **options)
                 for chunks in reversed(fanout.split_chunks(chunk_count(N_PERM), pieces))]  # fmt: skip
        merged = network_based_statistic(edges, design, n_nodes, nulls=merge_nbs_nulls(parts), **options)
        assert merged.null.tobytes() == single.null.tobytes() and merged.t.tobytes() == single.t.tobytes()
        assert [(c.edges.tolist(), c.size, c.p_fwe) for c in merged.components] == [
            (c.edges.tolist(), c.size, c.p_fwe) for c in single.components
        ]
    with pytest.raises(ValueError, match="not consecutive"):
        merge_nbs_nulls([parts[0], parts[2]])
    with pytest.raises(ValueError, match="not all"):
        network_based_statistic(edges, design, n_nodes, nulls=parts[0], **options)


def test_the_nbs_null_is_the_largest_component_of_each_permutation_of_the_shared_stream(edges_problem):
    """Known answer: permutation 0 is the identity, so the first null value is the largest observed component."""
    edges, design, n_nodes = edges_problem
    result = network_based_statistic(edges, design, n_nodes, threshold=2.5, n_permutations=N_PERM, seed=4)
    assert result.null.size == N_PERM
    assert result.null[0] == max(c.size for c in result.components)
    assert result.components[0].p_fwe == np.mean(result.null >= result.components[0].size)


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


def test_one_and_two_processes_write_the_same_connectome_outputs(tmp_path):
    """Edges, NBS, graph and nodal measures of 12 participants with 250 permutations (3 chunks: 2 tasks each)."""
    description = derivatives.dataset_description(source_description={"Name": "toy"}, source_url="file:///toy",
                                                  config_hash="0")  # fmt: skip
    rng = np.random.default_rng(42)
    first = tmp_path / "one"
    derivatives.initialise_output(first, description)
    rows = []
    for i in range(12):
        label = f"{i + 1:02d}"
        _write_participant(first, label, patient=i < 6, rng=rng)
        rows.append({"participant_id": label, "group": "CLBP" if i < 6 else "HC", "age": 30 + (i * 7) % 23})
    included = pd.DataFrame(rows)
    settings = GroupSettings(covariates=("age",), n_permutations=250, nbs_threshold=3.0)
    second = tmp_path / "two"
    shutil.copytree(first, second)
    serial = run_connectome_stats(included, output_dir=first, settings=settings, seed=3, fan=fanout.Serial())
    with fanout.Pool(tmp_path / "work", nprocs=2) as pool:
        pooled = run_connectome_stats(included, output_dir=second, settings=settings, seed=3, fan=pool)
        assert [u.kind for u in pool.units] == ["glm", "nbs", "glm", "glm"]  # edges, NBS, graph, nodal
        assert all(len(unit.tasks) == 2 for unit in pool.units)
    one, two = _digest(first / "group"), _digest(second / "group")
    assert len(one) >= 9 and one == two
    (result,) = serial
    top = result.components.iloc[0]
    assert set(PLANTED) <= set(top["nodes"].split(","))  # the planted NBS component is the largest
    assert len(result.regions) == len(REGIONS) and pooled[0].n_fdr_edges == result.n_fdr_edges
