"""plan_denoising: degrees of freedom, --min-dof, the band-pass limit and old fMRIPrep tables, from a table alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clbp_bidsapp.config import DenoiseSettings
from clbp_bidsapp.core.denoise import ConfoundError, denoising_operators, effective_dof
from clbp_bidsapp.denoise_plan import plan_denoising, provenance_metadata

MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def confounds_table(n: int, *, seed: int = 0, spikes: tuple[int, ...] = ()) -> pd.DataFrame:
    """fMRIPrep >= 1.4 motion columns with their expansions (a slow random walk), FD and std DVARS."""
    rng = np.random.default_rng(seed)
    motion = np.cumsum(rng.normal(0, [0.02, 0.02, 0.02, 3e-4, 3e-4, 3e-4], (n, 6)), axis=0)
    cols = {}
    for j, name in enumerate(MOTION):
        values = motion[:, j]
        deriv = np.r_[np.nan, np.diff(values)]
        cols.update({name: values, f"{name}_derivative1": deriv, f"{name}_power2": values**2,
                     f"{name}_derivative1_power2": deriv**2})  # fmt: skip
    fd = np.r_[
        np.nan, np.abs(np.diff(motion[:, :3], axis=0)).sum(1) + 50 * np.abs(np.diff(motion[:, 3:], axis=0)).sum(1)
    ]
    fd[list(spikes)] = 1.0
    cols["framewise_displacement"] = fd
    cols["std_dvars"] = np.r_[np.nan, np.ones(n - 1)]
    return pd.DataFrame(cols)


def plan(table, *, tr=2.0, **settings):
    return plan_denoising(
        table, {}, settings=DenoiseSettings(**settings), tr=tr, n_volumes=len(table), where="sub-01_task-rest"
    )


def test_dof_decides_whether_a_run_is_used():
    short, long = plan(confounds_table(90)), plan(confounds_table(150))
    # 90 volumes at TR 2 s (180 s: enough time for --min-time 120) keep ~4 band-passed DOF with 24P
    assert short.qc["retained_seconds"] == 180 and short.qc["dof_bandpass"] < 6
    assert short.qc["used"] is False
    assert "sub-01_task-rest" not in short.not_used_because  # the caller names the run
    assert f"keeps {short.qc['dof_bandpass']:g} effective degrees of freedom, fewer than --min-dof 10" in (
        short.not_used_because
    )
    assert long.qc["used"] is True and long.not_used_because is None and long.qc["dof_bandpass"] > 15
    # the QC figures are the effective DOF of the operators the denoising applies
    ops = denoising_operators(confounds=np.nan_to_num(long.confounds), sample_mask=long.sample_mask, tr=2.0,
                              band=(0.01, 0.08))  # fmt: skip
    assert long.qc["dof_bandpass"] == pytest.approx(effective_dof(ops.filtered), abs=0.01)
    assert long.qc["dof_unfiltered"] == pytest.approx(150 - 24 - 2, abs=0.01)  # OLS: T - p
    assert plan(confounds_table(90), min_dof=0).qc["used"] is True


def test_used_and_skipped_runs_have_one_qc_definition():
    used = plan(confounds_table(150, spikes=(40, 90)), dummy_scans="3")
    skipped = plan(confounds_table(150, spikes=(40, 90)), dummy_scans="3", min_dof=100)
    assert used.qc.keys() == skipped.qc.keys()
    for qc in (used.qc, skipped.qc):
        assert (qc["n_dummy"], qc["n_censored"], qc["n_retained"]) == (3, 2, 145)
        assert qc["fraction_censored"] == pytest.approx(2 / 147)
        assert qc["dof_lost"] == 26  # 24 regressors + mean + trend, for both
    assert provenance_metadata(used, settings=DenoiseSettings())["Denoising"]["CensoredVolumes"] == 2


def test_low_pass_above_nyquist_is_refused_naming_run_tr_and_flag():
    with pytest.raises(ConfoundError) as exc:
        plan(confounds_table(60), tr=7.0)
    assert str(exc.value).startswith("sub-01_task-rest: TR 7 s")
    assert "0.0714 Hz" in str(exc.value) and "--band-pass 0.01 HIGH" in str(exc.value)
    # without band-pass ALFF/fALFF still use 0.01-0.08 Hz, which TR 7 s cannot reach either
    with pytest.raises(ConfoundError, match="Nyquist"):
        plan(confounds_table(60), tr=7.0, band_pass=())
    possible = plan(confounds_table(60), tr=7.0, band_pass=(0.01, 0.06), min_dof=0)
    assert possible.band == (0.01, 0.06)
    assert provenance_metadata(possible, settings=DenoiseSettings())["Denoising"]["BandPass"] == [0.01, 0.06]


def test_old_fmriprep_names_are_planned_like_current_ones():
    table = confounds_table(150)
    old = table[list(MOTION) + ["framewise_displacement", "std_dvars"]].rename(
        columns={"trans_x": "X", "trans_y": "Y", "trans_z": "Z", "rot_x": "RotX", "rot_y": "RotY", "rot_z": "RotZ",
                 "framewise_displacement": "FramewiseDisplacement", "std_dvars": "stdDVARS"}
    )  # fmt: skip
    current, legacy = plan(table), plan(old)
    assert legacy.columns == current.columns
    np.testing.assert_allclose(np.nan_to_num(legacy.confounds), np.nan_to_num(current.confounds))
    assert legacy.qc == {**current.qc, "legacy_confound_names": True}
    note = provenance_metadata(legacy, settings=DenoiseSettings())["Denoising"]["LegacyConfoundNames"]
    assert "RotX -> rot_x" in note and "mm and rad" in note


def test_compcor_strategy_takes_the_wm_components_of_an_fmriprep_202_json(tmp_path):
    n = 150
    table = confounds_table(n)
    rng = np.random.default_rng(5)
    meta, components = {}, {}
    for index in range(120):  # combined _00-_69, WM _70-_109, CSF _110-_119
        mask, first = ("combined", 0) if index < 70 else ("WM", 70) if index < 110 else ("CSF", 110)
        components[f"a_comp_cor_{index:02d}"] = rng.standard_normal(n)
        meta[f"a_comp_cor_{index:02d}"] = {"Method": "aCompCor", "Mask": mask, "Retained": True,
                                           "VarianceExplained": 0.1 * 0.9 ** (index - first)}  # fmt: skip
    table = pd.concat([table, pd.DataFrame(components)], axis=1)
    strategy = tmp_path / "wm.yml"
    strategy.write_text("name: wm\ncolumns: []\ncompcor: {method: aCompCor, masks: [WM], n_components: 5}\n")
    planned = plan_denoising(table, meta, settings=DenoiseSettings(strategy=str(strategy)), tr=2.0, n_volumes=n,
                             where="sub-01_task-rest")  # fmt: skip
    assert planned.columns == [f"a_comp_cor_{i}" for i in range(70, 75)]
