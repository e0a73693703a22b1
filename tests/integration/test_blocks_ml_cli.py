"""From the command line: a two-site study is permuted within site (voxelwise GLM and ML labels), the ML headline
is the pre-declared primary model and feature set, every shown p holds for the best of the tested pipelines, and
a --permute-within column that does not exist is refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clbp_bidsapp.testing.synthetic import make_dataset
from tests.integration.common import assert_user_error, with_min_dof

pytestmark = pytest.mark.integration


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", *map(str, with_min_dof(args))],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    """ALFF maps of 5 patients and 5 controls at two sites (40 volumes, 4 mm)."""
    root = tmp_path_factory.mktemp("blocks")
    info = make_dataset(root / "bids", n_patients=5, n_controls=5, n_volumes=40, n_sites=2, seed=4)
    out = root / "out"
    skip = ("reho", "vmhc", "dc", "tsnr", "report", "seedfc", "dualreg", "connectome", "graph")
    done = cli(info.root, out, "participant", "--nprocs", "2", "-w", root / "work", "--min-time", "30", "--skip", *skip)
    assert done.returncode == 0, done.stderr
    return info.root, out, root


def test_two_sites_are_permuted_within_site_and_the_ml_headline_is_the_primary(two_sites):
    bids, out, root = two_sites
    done = cli(bids, out, "group", "-w", root / "work", "--skip", "ica", "connectome", "report",
               "--group-metrics", "alff", "--n-permutations", "20", "--no-tfce", "--covariates", "age",
               "--ml-feature-sets", "roi", "--ml-models", "linear_svm", "rbf_svm", "--ml-permutation-scope", "shown",
               "--ml-splits", "3", "--ml-repeats", "1", "--ml-inner-splits", "2", "--ml-k-best", "10",
               "--ml-permutations", "9", "--ml-regression-models", "--ml-harmonize", "none",
               "--no-ml-leave-site-out")  # fmt: skip
    assert done.returncode == 0, done.stderr
    group = out / "group"
    sidecar = json.loads((group / "alff_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
    assert sidecar["PermutationBlocks"].startswith("within site (2 exchangeability blocks"), sidecar
    summary = json.loads((group / "desc-ml_summary.json").read_text())
    assert summary["PermutationBlocks"] == sidecar["PermutationBlocks"]
    assert (summary["PrimaryModel"], summary["PrimaryFeatureSet"]) == ("linear_svm", "roi")
    entries = summary["classification"]["roi"]
    for model in ("linear_svm", "rbf_svm"):
        entry = entries[model]
        assert entry["permutation_family"] == ["linear_svm on roi", "rbf_svm on roi"]
        assert entry["p_value"] >= entry["p_value_uncorrected"]
        assert entry["permutation_observed"] == entry["balanced_accuracy"]  # the p is for the printed score
    headline = f"primary linear_svm on roi: balanced accuracy {entries['linear_svm']['balanced_accuracy']:.2f}"
    assert headline in done.stderr and "best of 2 tested pipelines" in done.stderr, done.stderr


def test_a_permute_within_column_that_does_not_exist_is_refused_up_front(two_sites):
    bids, out, root = two_sites
    done = cli(bids, out, "group", "-w", root / "work", "--permute-within", "scanner")
    assert_user_error(done, 2, "--permute-within scanner", "participants.tsv")
