"""GraphMeasures on a connectome with no region (or two) above the coverage threshold: n/a tables and a
sidecar that says why, instead of a crash that failed the participant."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.core.graph import GLOBAL_MEASURES, MIN_NODES
from clbp_bidsapp.interfaces.connectivity import GraphMeasures


@pytest.mark.parametrize("n_valid", [0, 2])
def test_graph_interface_writes_na_tables(tmp_path, n_valid):
    names = [f"r{i}" for i in range(5)]
    matrix = np.full((5, 5), np.nan)
    matrix[:n_valid, :n_valid] = 0.3
    np.fill_diagonal(matrix, 1.0)
    matrix[n_valid:, :] = np.nan
    matrix[:, n_valid:] = np.nan
    relmat = tmp_path / "relmat.tsv"
    pd.DataFrame(matrix, index=pd.Index(names, name="region"), columns=names).to_csv(relmat, sep="\t", na_rep="n/a")
    regions = tmp_path / "regions.tsv"
    pd.DataFrame({"region": names, "network": "x"}).to_csv(regions, sep="\t", index=False)
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        out = GraphMeasures(relmat=str(relmat), regions=str(regions), sparsity=[0.1, 0.3, 0.1], n_random=2).run()
    finally:
        os.chdir(previous)
    table = pd.read_csv(out.outputs.global_measures, sep="\t", na_values="n/a", dtype={"sparsity": str})
    assert table["sparsity"].tolist() == ["0.1", "0.2", "0.3", "auc"]
    assert table[list(GLOBAL_MEASURES)].isna().all().all()
    nodal = pd.read_csv(out.outputs.nodal_measures, sep="\t", na_values="n/a", dtype={"sparsity": str})
    assert set(nodal.loc[nodal["sparsity"] == "auc", "region"]) == set(names)
    meta = json.loads(Path(out.outputs.metadata).read_text())
    assert meta["Computed"] is False and meta["RegionsWithData"] == n_valid
    assert f"only {n_valid} region(s)" in meta["NotComputed"] and str(MIN_NODES) in meta["NotComputed"]
