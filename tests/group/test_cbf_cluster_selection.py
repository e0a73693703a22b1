"""Which clusters the BOLD-CBF concordance tables compare: cluster-extent FWE p < 0.05 or peak max-t FWE p < 0.05."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from clbp_bidsapp.group.perfusion import _significant_clusters


def test_a_small_cluster_with_a_fwe_significant_peak_is_compared():
    clusters = pd.DataFrame({
        "cluster": [1, 2, 3, 4],
        "p_fwe_cluster": [0.01, 0.095, 0.2, 0.04],
        "p_fwe_peak": [0.2, 0.00123, 0.06, 0.5],
    })  # fmt: skip
    # 2 is the full chain's parahippocampal ReHo cluster (benchmarks/bench_cbf_concordance.py): 29 voxels, peak
    # max-t FWE p 0.0012, cluster FWE p 0.095; before, the table left it out and so never said "discordant"
    assert list(_significant_clusters(SimpleNamespace(clusters=clusters))["cluster"]) == [1, 2, 4]
    extent_only = clusters.drop(columns="p_fwe_peak")
    assert list(_significant_clusters(SimpleNamespace(clusters=extent_only))["cluster"]) == [1, 4]
