"""Across-family FWE (PALM -corrmod/-corrcon style) on the shared permutation stream; primary/exploratory maps."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core import multiplicity
from clbp_bidsapp.core.stats import design_matrix
from clbp_bidsapp.group.maps import GroupMaps
from clbp_bidsapp.group.voxelwise import MapSet, _infer, family_fwe

N_PERM = 200


def test_t_to_z_keeps_the_two_sided_p():
    t = np.array([-4.0, -1.0, 0.0, 2.0, 6.0])
    z = multiplicity.t_to_z(t, 12)
    np.testing.assert_allclose(2 * stats.norm.sf(z), 2 * stats.t.sf(np.abs(t), 12))
    assert np.all(np.diff(multiplicity.t_to_z(np.linspace(0, 60, 50), 8)) >= 0)  # monotone, capped, finite
    np.testing.assert_allclose(multiplicity.t_to_z(t, 1e7), np.abs(t), atol=1e-5)


def test_family_null_is_the_max_over_maps_and_needs_equal_lengths():
    np.testing.assert_array_equal(multiplicity.family_null([np.array([1.0, 5.0]), np.array([3.0, 2.0])]), [3, 5])
    with pytest.raises(ValueError, match="different numbers of permutations"):
        multiplicity.family_null([np.zeros(3), np.zeros(4)])


def _table(n_per_group=10):
    ids = [f"{i:02d}" for i in range(2 * n_per_group)]
    return pd.DataFrame({"participant_id": ids, "group": ["CLBP"] * n_per_group + ["HC"] * n_per_group})


def _maps(label, table, rng, effect=0.0):
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[1:7, 1:7, 1:7] = True
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-16, -16, -16]
    data = rng.standard_normal((len(table), int(mask.sum())))
    data[: len(table) // 2, :4] += effect
    return GroupMaps(metric=label, participants=list(table["participant_id"]), data=data, mask=mask, affine=affine)


def _run(tmp_path, labels, *, primary, tail="none", effects=None):
    settings = GroupSettings(covariates=(), n_permutations=N_PERM, tfce=False, primary_maps=tuple(primary),
                             permutation_tail=tail)  # fmt: skip
    table = _table()
    design = design_matrix(table, group_column="group", patient_label="CLBP", control_label="HC")
    rng = np.random.default_rng(4)
    results = []
    for label in labels:
        group_maps = _maps(label, table, rng, effect=(effects or {}).get(label, 0.0))
        result = _infer(MapSet(label, label, {}), group_maps, table, design, "CLBPvsHC", "test", tmp_path,
                        settings=settings, seed=0, notes=[])  # fmt: skip
        if label in settings.primary_maps:
            result = dataclasses.replace(result, family="primary")
        results.append(result)
    return family_fwe(results, tmp_path, settings=settings)


def _logp(tmp_path, label, desc):
    return np.asarray(nb.load(tmp_path / f"{label}_contrast-CLBPvsHC_stat-logp_desc-{desc}_statmap.nii.gz").dataobj)


def test_family_of_one_map_equals_the_within_map_fwe(tmp_path):
    _run(tmp_path, ["alff"], primary=["alff"])
    np.testing.assert_allclose(_logp(tmp_path, "alff", "familyfwe"), _logp(tmp_path, "alff", "fwe"), atol=1e-12)


def test_family_p_is_never_below_the_within_map_p_and_exploratory_maps_are_left_alone(tmp_path):
    results = _run(tmp_path, ["alff", "reho", "fcz-mpfc", "falff"], primary=["alff", "reho", "fcz-mpfc"],
                   effects={"alff": 2.5})  # fmt: skip
    for label in ("alff", "reho", "fcz-mpfc"):
        within, family = np.abs(_logp(tmp_path, label, "fwe")), np.abs(_logp(tmp_path, label, "familyfwe"))
        assert np.all(family <= within + 1e-12), label
        meta = json.loads((tmp_path / f"{label}_contrast-CLBPvsHC_stat-t_statmap.json").read_text())
        assert meta["Family"]["SameParticipants"] is True
        assert len(meta["Family"]["Maps"]) == 3
    # the planted alff voxels survive the family correction (p = 1/200 within the map)
    assert np.abs(_logp(tmp_path, "alff", "familyfwe")).max() > -np.log10(0.05)
    assert not (tmp_path / "falff_contrast-CLBPvsHC_stat-logp_desc-familyfwe_statmap.nii.gz").exists()
    table = pd.read_csv(tmp_path / "desc-family_table.tsv", sep="\t").set_index("map")
    assert table.loc["falff", "family"] == "exploratory" and np.isnan(table.loc["falff", "voxels_fwe_family"])
    assert list(table.loc[["alff", "reho", "fcz-mpfc"], "family"]) == ["primary"] * 3
    by_map = {r.metric: r for r in results}
    assert by_map["alff"].n_family_fwe_voxels == table.loc["alff", "voxels_fwe_family"] >= 1
    clusters = pd.read_csv(tmp_path / "alff_contrast-CLBPvsHC_desc-clusters_table.tsv", sep="\t")
    assert len(clusters) and (clusters["p_fwe_peak_family"] >= clusters["p_fwe_peak"]).all()


def test_family_with_tail_approximation(tmp_path):
    _run(tmp_path, ["alff", "reho"], primary=["alff", "reho"], tail="gpd", effects={"alff": 3.0})
    family = np.abs(_logp(tmp_path, "alff", "familyfwe"))
    assert family.max() > np.log10(N_PERM)  # the tail resolves p below 1/n_perm


def _settings(tmp_path, *flags):
    """Every command line of this file goes through here (the lead may add flags to all of them)."""
    from clbp_bidsapp.cli.run import parse_settings

    bids = tmp_path / "bids"
    (bids / "derivatives" / "fmriprep").mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    (bids / "derivatives" / "fmriprep" / "dataset_description.json").write_text(
        json.dumps({"Name": "f", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tCLBP\nsub-02\tHC\n")
    settings, _ = parse_settings([str(bids), str(tmp_path / "out"), "group", *flags])
    return settings


def test_flags_reach_their_settings(tmp_path):
    default = _settings(tmp_path).group
    assert default.permutation_tail == "gpd"
    assert default.primary_maps == ("alff", "reho", "fcz-insulaAntL", "fcz-insulaAntR", "fcz-mpfc")
    chosen = _settings(tmp_path, "--permutation-tail", "none", "--primary-maps", "alff", "fcz-pcc").group
    assert (chosen.permutation_tail, chosen.primary_maps) == ("none", ("alff", "fcz-pcc"))


def test_unknown_tail_method_is_a_user_error(tmp_path):
    from clbp_bidsapp.errors import UserError

    with pytest.raises((UserError, SystemExit)):
        _settings(tmp_path, "--permutation-tail", "gamma")


def test_primary_map_not_in_the_run_is_named(tmp_path, caplog):
    _run(tmp_path, ["alff"], primary=["alff", "fcz-nosuchseed"])
    assert "--primary-maps: fcz-nosuchseed not analysed in this run; the primary family is alff" in caplog.text
