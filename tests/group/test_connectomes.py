"""Group connectome statistics on a tiny derivatives folder with a planted edge-set difference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.group.connectomes import fisher_z_matrix, run_connectome_stats, usable_regions
from clbp_bidsapp.io import derivatives

REGIONS = [f"Region{i}" for i in range(10)]
PLANTED = ["Region1", "Region3", "Region4", "Region6"]
MISSING = "Region8"  # n/a in one participant
GLOBAL = ["clustering", "path_length", "global_efficiency", "modularity", "sigma"]
NODAL = ["degree", "betweenness", "efficiency", "clustering", "local_efficiency"]
PREFIX = "atlas-toy_contrast-CLBPvsHC"


def _entities(label, run):
    return f"sub-{label}_task-rest_run-{run}_space-MNI152NLin2009cAsym_atlas-toy_res-4"


def _write_participant(out, label, *, patient, rng, runs=1, missing_region=False):
    folder = out / f"sub-{label}" / "func"
    for run in range(1, runs + 1):
        series = rng.standard_normal((150, len(REGIONS))) + rng.standard_normal((150, 1)) * rng.uniform(0.3, 0.8)
        if patient:
            shared = rng.standard_normal(150)
            for name in PLANTED:
                series[:, REGIONS.index(name)] += shared
        corr = np.corrcoef(series, rowvar=False)
        if missing_region:
            index = REGIONS.index(MISSING)
            corr[index, :] = corr[:, index] = np.nan
        relmat = pd.DataFrame(corr, index=pd.Index(REGIONS, name="region"), columns=REGIONS)
        name = _entities(label, run)
        derivatives.write_tsv(folder / f"{name}_stat-pearsoncorrelation_relmat.tsv", relmat, index=True)
        rows = [{"sparsity": f"{d:.4g}", "n_nodes": 10, "n_edges": 5} for d in (0.1, 0.2)]
        rows = [{**r, **{m: rng.uniform() for m in GLOBAL}, "lcc_fraction": 1.0} for r in rows]
        auc = {"sparsity": "auc", "n_nodes": np.nan, "n_edges": np.nan, "lcc_fraction": np.nan}
        auc |= {m: rng.normal(1.0 + (0.6 if patient and m == "modularity" else 0.0), 0.1) for m in GLOBAL}
        derivatives.write_tsv(folder / f"{name}_stat-graph_measures.tsv", pd.DataFrame([*rows, auc]))
        nodal = []
        for sparsity in ("0.1", "0.2", "auc"):
            for region in REGIONS:
                values = {m: rng.uniform() for m in NODAL}
                if missing_region and region == MISSING:
                    values = dict.fromkeys(NODAL, np.nan)
                nodal.append({"region": region, "sparsity": sparsity, **values})
        derivatives.write_tsv(folder / f"{name}_stat-nodal_measures.tsv", pd.DataFrame(nodal))


@pytest.fixture(scope="module")
def derivatives_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("connectomes") / "out"
    description = derivatives.dataset_description(
        source_description={"Name": "toy"}, source_url="file:///toy", config_hash="0"
    )
    derivatives.initialise_output(out, description)
    rng = np.random.default_rng(42)
    rows = []
    for i in range(17):
        label = f"{i + 1:02d}"
        patient = i < 8
        _write_participant(out, label, patient=patient, rng=rng, runs=2 if i == 2 else 1, missing_region=i == 10)
        rows.append({"participant_id": label, "group": "CLBP" if patient else "HC", "age": 30 + (i * 7) % 23})
    included = pd.DataFrame(rows[:16])  # sub-17 has outputs but is not included
    settings = GroupSettings(covariates=("age", "sex"), n_permutations=500, nbs_threshold=3.0)
    results = run_connectome_stats(included, output_dir=out, settings=settings, seed=3)
    return out, included, results


def test_writes_outputs_and_sidecar(derivatives_dir):
    out, included, results = derivatives_dir
    (result,) = results
    assert result.atlas == "toy"
    assert result.n_participants == 16
    assert result.dropped_regions == [MISSING]
    group = out / "group"
    outputs = ["stat-t_relmat.tsv", "stat-logq_desc-fdr_relmat.tsv", "stat-logp_desc-fwe_relmat.tsv",
               "desc-edges_stats.tsv", "desc-nbs_components.tsv", "desc-nbsedges_stats.tsv", "desc-graph_stats.tsv",
               "desc-nodal_stats.tsv", "desc-design_design.tsv", "stat-t_relmat.json"]  # fmt: skip
    for name in outputs:
        assert (group / f"{PREFIX}_{name}").is_file(), name
    sidecar = json.loads((group / f"{PREFIX}_stat-t_relmat.json").read_text())
    assert sidecar["DroppedRegions"] == [MISSING]
    assert sidecar["Participants"] == list(included["participant_id"])
    assert sidecar["Permutations"] == 500
    assert sidecar["RandomSeed"] == 3
    assert sidecar["NBS"]["Threshold"] == 3.0
    assert sidecar["Regressors"] == ["group", "intercept", "age"]
    assert any("sex" in note for note in sidecar["Notes"])  # not in the table: not modelled, said so
    t = pd.read_csv(group / f"{PREFIX}_stat-t_relmat.tsv", sep="\t", index_col="region", na_values="n/a")
    kept = [r for r in REGIONS if r != MISSING]
    assert list(t.index) == list(t.columns) == kept
    np.testing.assert_allclose(t.to_numpy(), t.to_numpy().T, equal_nan=True)
    assert np.isnan(np.diag(t.to_numpy())).all()
    logq = pd.read_csv(group / f"{PREFIX}_stat-logq_desc-fdr_relmat.tsv", sep="\t", index_col="region")
    off = ~np.eye(len(kept), dtype=bool)
    assert (np.sign(logq.to_numpy()[off]) == np.sign(t.to_numpy()[off])).all()


def test_planted_edges_have_smallest_q_and_form_the_nbs_component(derivatives_dir):
    out, _, result = derivatives_dir[0], None, derivatives_dir[2][0]
    edges = pd.read_csv(out / "group" / f"{PREFIX}_desc-edges_stats.tsv", sep="\t")
    assert len(edges) == 9 * 8 // 2
    assert list(edges.columns) == ["region_a", "region_b", "t", "p_uncorrected", "p_fwe", "q_fdr", "mean_z_CLBP",
                                   "mean_z_HC", "nbs_component"]  # fmt: skip
    planted = edges["region_a"].isin(PLANTED) & edges["region_b"].isin(PLANTED)
    assert planted.sum() == 6
    assert (edges.loc[planted, "q_fdr"] < 0.05).all()
    assert edges.loc[planted, "q_fdr"].max() <= edges.loc[~planted, "q_fdr"].min()
    assert edges.loc[planted, "t"].abs().min() > edges.loc[~planted, "t"].abs().max()
    assert (edges.loc[planted, "mean_z_CLBP"] > edges.loc[planted, "mean_z_HC"]).all()
    components = pd.read_csv(out / "group" / f"{PREFIX}_desc-nbs_components.tsv", sep="\t")
    top = components.iloc[0]
    assert top["p_fwe"] < 0.05 and top["sign"] == "+"
    assert set(PLANTED) <= set(top["nodes"].split(","))
    assert (components["p_fwe"].iloc[1:] >= 0.05).all()
    nbs_edges = pd.read_csv(out / "group" / f"{PREFIX}_desc-nbsedges_stats.tsv", sep="\t")
    assert len(nbs_edges) == top["n_edges"]
    assert set(nbs_edges["region_a"]) | set(nbs_edges["region_b"]) == set(top["nodes"].split(","))
    assert result.n_fdr_edges >= 6


def test_graph_and_nodal_tables(derivatives_dir):
    out, _, (result,) = derivatives_dir
    graph = pd.read_csv(out / "group" / f"{PREFIX}_desc-graph_stats.tsv", sep="\t")
    assert list(graph["measure"]) == GLOBAL
    assert list(graph.columns) == ["measure", "n", "t", "p_uncorrected", "p_fwe", "q_fdr", "mean_CLBP", "mean_HC"]
    modularity = graph.set_index("measure").loc["modularity"]
    assert modularity["q_fdr"] < 0.05 and modularity["t"] > 0
    assert (graph.set_index("measure").drop("modularity")["q_fdr"] > 0.05).all()
    nodal = pd.read_csv(out / "group" / f"{PREFIX}_desc-nodal_stats.tsv", sep="\t")
    assert len(nodal) == (len(REGIONS) - 1) * len(NODAL)  # the region missing in one participant is left out
    assert MISSING not in set(nodal["region"])
    assert set(nodal["measure"]) == set(NODAL)
    assert len(result.graph) == len(GLOBAL)


def test_fisher_z_averages_runs(derivatives_dir):
    out = derivatives_dir[0]
    paths = sorted((out / "sub-03" / "func").glob("*_relmat.tsv"))
    assert len(paths) == 2
    runs = [pd.read_csv(p, sep="\t", index_col=0).to_numpy() for p in paths]
    expected = np.arctanh(np.clip(runs[0], -1 + 1e-7, 1 - 1e-7)) + np.arctanh(np.clip(runs[1], -1 + 1e-7, 1 - 1e-7))
    np.testing.assert_allclose(fisher_z_matrix(paths).to_numpy(), expected / 2)


def test_usable_regions_drops_isolated_missing_edges():
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d"]
    good = pd.DataFrame(np.tanh(rng.standard_normal((4, 4))), index=names, columns=names)
    hole = good.copy()
    hole.loc["b", "d"] = hole.loc["d", "b"] = np.nan
    whole = good.copy()
    whole.loc["c", :] = whole.loc[:, "c"] = np.nan
    kept, dropped = usable_regions({"1": good, "2": hole, "3": whole})
    assert "c" in dropped and len(kept) == 2 and len(dropped) == 2
    assert set(kept) in ({"a", "b"}, {"a", "d"})


def test_no_connectomes_returns_nothing(tmp_path):
    derivatives.initialise_output(
        tmp_path, derivatives.dataset_description(source_description={}, source_url="file:///x", config_hash="0")
    )
    included = pd.DataFrame({"participant_id": ["01", "02"], "group": ["CLBP", "HC"]})
    assert run_connectome_stats(included, output_dir=tmp_path, settings=GroupSettings(), seed=0) == []


def test_tangent_space_edges_find_a_planted_coupling(tmp_path):
    """Patients' regions 0 and 1 share a signal: that edge has the largest tangent-space t and FDR q < 0.05."""

    from clbp_bidsapp.core.stats import design_matrix
    from clbp_bidsapp.group.connectomes import tangent_edges

    rng = np.random.default_rng(4)
    regions = [f"r{i}" for i in range(6)]
    files, groups = {}, []
    for k in range(24):
        patient = k < 12
        series = rng.standard_normal((150, 6))
        if patient:
            shared = rng.standard_normal(150)
            series[:, 0] += shared
            series[:, 1] += shared
        path = tmp_path / f"sub-{k:02d}_timeseries.tsv"
        pd.DataFrame(series, columns=regions).to_csv(path, sep="\t", index=False)
        files[f"{k:02d}"] = [path]
        groups.append("CLBP" if patient else "HC")
    table = pd.DataFrame({"participant_id": list(files), "group": groups})
    design = design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC")
    result = tangent_edges(files, regions, design, settings=GroupSettings(n_permutations=500), seed=0)
    assert len(result) == 15
    assert int(np.argmax(result["t"].to_numpy())) == 0  # edge (r0, r1) comes first in upper-triangle order
    assert result["q_fdr"].iloc[0] < 0.05
    assert (result["q_fdr"].iloc[1:] > 0.05).mean() > 0.8
