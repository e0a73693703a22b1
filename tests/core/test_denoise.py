"""Denoising kernels against nilearn.signal.clean and known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nilearn import signal as nsignal

from clbp_bidsapp.core.denoise import (
    ConfoundError,
    RunDOF,
    censoring_mask,
    check_band,
    count_dummy_scans,
    denoise,
    denoising_operators,
    effective_dof,
    legacy_confound_renames,
    modernise_confounds,
    qc_summary,
    resolve_confound_columns,
    select_compcor,
)

TR = 2.0
BAND = (0.01, 0.08)


def _data(n=90, v=37, k=5, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    confounds = rng.standard_normal((n, k)) + np.linspace(0, 2, n)[:, None]
    mixing = rng.standard_normal((k, v))
    bold = 500 + rng.standard_normal((n, v)) * 3 + confounds @ mixing * 4 + 0.05 * t[:, None]
    return bold.astype(np.float32), confounds


def _nilearn(bold, confounds, mask, band):
    kwargs = dict(
        detrend=True,
        standardize=None,
        confounds=confounds.copy(),
        standardize_confounds=True,
        t_r=TR,
        sample_mask=mask.copy(),
    )
    if band is None:
        return nsignal.clean(bold.astype(np.float64), filter=False, **kwargs)
    return nsignal.clean(bold.astype(np.float64), filter="butterworth", high_pass=band[0], low_pass=band[1], **kwargs)


# nilearn 0.14's _interpolate_volumes indexes with ``~sample_mask`` after turning the mask into indices,
# so a censored volume j is interpolated only if volume n-1-j is retained; otherwise its raw value enters
# the filter. These masks avoid that case (like for like); test_censored_volumes_do_not_leak covers it.
@pytest.mark.parametrize("censored", [[], [0, 1, 2], [17, 18, 40], [0, 1, 30, 87]])
def test_matches_nilearn_clean(censored):
    bold, confounds = _data()
    mask = np.ones(bold.shape[0], dtype=bool)
    mask[censored] = False
    before = bold.copy(), confounds.copy()
    result = denoise(bold, confounds=confounds, sample_mask=mask, tr=TR, band=BAND)
    scale = np.abs(bold - bold.mean(0)).max()
    np.testing.assert_allclose(result.filtered, _nilearn(bold, confounds, mask, BAND), atol=1e-5 * scale)
    np.testing.assert_allclose(result.unfiltered, _nilearn(bold, confounds, mask, None), atol=1e-5 * scale)
    np.testing.assert_array_equal(bold, before[0])  # inputs untouched
    np.testing.assert_array_equal(confounds, before[1])
    assert result.filtered.dtype == np.float32 and result.filtered.shape == (mask.sum(), bold.shape[1])


def test_censored_volumes_do_not_leak_into_retained_ones():
    bold, confounds = _data(seed=1)
    mask = np.ones(bold.shape[0], dtype=bool)
    spikes = [12, 13, 50, 77]  # including pairs whose mirror image (n - 1 - j) is also censored
    mask[spikes] = False
    mask[[90 - 1 - j for j in spikes]] = False
    clean = denoise(bold, confounds=confounds, sample_mask=mask, tr=TR, band=BAND)
    spiked = bold.copy()
    spiked[~mask] += 1e4
    dirty = denoise(spiked, confounds=confounds, sample_mask=mask, tr=TR, band=BAND)
    scale = np.abs(clean.filtered).max()
    np.testing.assert_allclose(dirty.filtered, clean.filtered, atol=1e-5 * scale)
    np.testing.assert_allclose(dirty.unfiltered, clean.unfiltered, atol=1e-5 * scale)


def test_outputs_are_orthogonal_to_the_confounds_they_were_cleaned_of():
    bold, confounds = _data(seed=2)
    mask = np.ones(bold.shape[0], dtype=bool)
    mask[[25, 26, 60]] = False
    result = denoise(bold, confounds=confounds, sample_mask=mask, tr=TR, band=BAND)
    # unfiltered: residuals are orthogonal to the detrended retained confounds
    kept = confounds[mask] - confounds[mask].mean(0)
    ramp = np.arange(mask.sum()) - (mask.sum() - 1) / 2
    kept -= np.outer(ramp, ramp @ kept) / (ramp @ ramp)
    corr = np.abs(kept.T @ result.unfiltered) / (
        np.linalg.norm(kept, axis=0)[:, None] * np.linalg.norm(result.unfiltered, axis=0)
    )
    assert corr.max() < 1e-4
    # filtered: orthogonal to the confounds after the same interpolation, detrending and filtering
    conf_clean = nsignal.clean(
        confounds.copy(),
        detrend=True,
        standardize=None,
        filter="butterworth",
        high_pass=BAND[0],
        low_pass=BAND[1],
        t_r=TR,
        sample_mask=mask.copy(),
    )
    assert conf_clean.shape[0] == mask.sum()
    conf_clean -= conf_clean.mean(0)  # the regression uses z-scored (demeaned) filtered confounds
    corr = np.abs(conf_clean.T @ result.filtered) / (
        np.linalg.norm(conf_clean, axis=0)[:, None] * np.linalg.norm(result.filtered, axis=0)
    )
    assert corr.max() < 1e-4


def test_filtered_output_has_no_power_outside_the_band():
    rng = np.random.default_rng(3)
    n = 400
    bold = rng.standard_normal((n, 20)).astype(np.float32)
    result = denoise(bold, confounds=None, sample_mask=np.ones(n, bool), tr=TR, band=BAND)
    spectrum = np.abs(np.fft.rfft(result.filtered, axis=0)) ** 2
    freqs = np.fft.rfftfreq(n, d=TR)
    inside = (freqs >= BAND[0]) & (freqs <= BAND[1])
    far_outside = (freqs > 0.16) | ((freqs > 0) & (freqs < 0.002))
    # beyond the transition bands only the filter's edge transients remain (< 0.5 % of the in-band power)
    assert spectrum[far_outside].mean() < 5e-3 * spectrum[inside].mean()


def test_no_band_pass_and_no_confounds():
    bold, _ = _data()
    result = denoise(bold, confounds=None, sample_mask=np.ones(90, bool), tr=TR, band=None)
    assert result.filtered is None
    np.testing.assert_allclose(result.unfiltered.mean(0), 0, atol=1e-3)
    assert result.dof_lost == 2


def test_too_few_volumes_for_the_regressors():
    bold, confounds = _data(n=10, k=8)
    with pytest.raises(ConfoundError, match="cannot support 8 regressors"):
        denoise(bold, confounds=confounds, sample_mask=np.ones(10, bool), tr=TR, band=None)
    with pytest.raises(ConfoundError, match="too few to band-pass"):
        denoise(bold, confounds=None, sample_mask=np.ones(10, bool), tr=TR, band=BAND)


def test_confound_rows_must_match_volumes():
    bold, confounds = _data()
    with pytest.raises(ConfoundError, match="80 rows but the run has 90 volumes"):
        denoise(bold, confounds=confounds[:80], sample_mask=np.ones(90, bool), tr=TR)


def test_censoring_mask():
    fd = np.array([np.nan, 0.1, 0.9, 0.2, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1])
    keep = censoring_mask(n_volumes=10, n_dummy=1, fd=fd, fd_threshold=0.5)
    assert keep.tolist() == [False, True, False, True, True, True, False, True, True, True]
    grown = censoring_mask(n_volumes=10, fd=fd, fd_threshold=0.5, expand_before=1, expand_after=2)
    assert np.flatnonzero(~grown).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert censoring_mask(n_volumes=10, fd=fd, fd_threshold=0).all()
    dvars = np.array([np.nan, 1, 1, 1, 2.5, 1, 1, 1, 1, 1])
    keep = censoring_mask(n_volumes=10, fd=None, dvars=dvars, dvars_threshold=1.5)
    assert np.flatnonzero(~keep).tolist() == [4]


def test_dummy_scans():
    table = pd.DataFrame(
        {
            "non_steady_state_outlier00": [1, 0, 0, 0],
            "non_steady_state_outlier01": [0, 1, 0, 0],
            "x": [1, 2, 3, 4],
        }
    )
    assert count_dummy_scans(table, dummy_scans="auto") == 2
    assert (
        count_dummy_scans(
            table.drop(columns=["non_steady_state_outlier00", "non_steady_state_outlier01"]),
            dummy_scans="auto",
        )
        == 0
    )
    assert count_dummy_scans(table, dummy_scans=3) == 3
    with pytest.raises(ConfoundError, match="leaves no volume"):
        count_dummy_scans(table, dummy_scans=4)


def test_resolve_columns_reports_every_missing_pattern():
    available = ["trans_x", "trans_y", "trans_z", "rot_x", "csf", "a_comp_cor_00"]
    assert resolve_confound_columns(available, patterns=["trans_[xyz]", "csf"]) == [
        "trans_x",
        "trans_y",
        "trans_z",
        "csf",
    ]
    with pytest.raises(ConfoundError) as exc:
        resolve_confound_columns(available, patterns=["rot_[xyz]", "white_matter", "global_signal"])
    assert "white_matter" in str(exc.value) and "global_signal" in str(exc.value)
    # a set pattern names every column it stands for: rot_x alone does not satisfy rot_[xyz]
    assert "rot_y, rot_z" in str(exc.value) and "rot_x" not in str(exc.value)
    with pytest.raises(ConfoundError, match=r"missing confound column\(s\): a_comp_cor_01$|a_comp_cor_01 "):
        resolve_confound_columns(available, patterns=["a_comp_cor_0[0-1]"])
    # a wildcard pattern needs one match only
    assert resolve_confound_columns(available, patterns=["rot_*"]) == ["rot_x"]


def test_select_compcor_from_metadata():
    meta = {f"a_comp_cor_{i:02d}": {"Method": "aCompCor", "Mask": "combined"} for i in range(7)}
    meta.update({f"a_comp_cor_{i:02d}": {"Method": "aCompCor", "Mask": "WM"} for i in range(7, 12)})
    meta["t_comp_cor_00"] = {"Method": "tCompCor"}
    assert select_compcor(meta, n_components=5) == [f"a_comp_cor_{i:02d}" for i in range(5)]
    assert select_compcor(meta, masks=("WM",), n_components=2) == ["a_comp_cor_07", "a_comp_cor_08"]
    with pytest.raises(ConfoundError, match="Mask=CSF"):
        select_compcor(meta, masks=("CSF",))


def test_qc_summary_one_definition_for_every_run():
    mask = np.array([False, False, True, True, False, True, True, True])
    fd = np.array([np.nan, 0.2, 0.1, 0.2, 0.9, 0.1, 0.1, 0.2])
    qc = qc_summary(fd=fd, sample_mask=mask, tr=2.0, n_dummy=2, dof=RunDOF(bandpass=3.456, unfiltered=4.0, lost=2))
    # dummy scans are not censored volumes: 1 of the 6 volumes after them was censored
    assert qc["n_censored"] == 1 and qc["fraction_censored"] == pytest.approx(1 / 6)
    assert qc["n_retained"] == 5 and qc["retained_seconds"] == 10.0
    assert qc["max_fd"] == pytest.approx(0.9)
    assert qc["mean_fd"] == pytest.approx(np.mean([0.1, 0.2, 0.9, 0.1, 0.1, 0.2]))
    assert (qc["dof_lost"], qc["dof_unfiltered"], qc["dof_bandpass"]) == (2, 4.0, 3.46)
    too_short = qc_summary(fd=fd, sample_mask=mask, tr=2.0, n_dummy=2, dof=None)
    assert (too_short["dof_lost"], too_short["dof_bandpass"]) == (0, 0.0) and too_short["n_censored"] == 1


# -- effective degrees of freedom --------------------------------------------------------------------------


def _operator_by_applying_the_denoiser(confounds, mask, band):
    """The straightforward construction: denoise each column of the identity (one unit impulse per volume)."""
    n = mask.size
    result = denoise(np.eye(n, dtype=np.float32), confounds=confounds, sample_mask=mask, tr=TR, band=band)
    return result.unfiltered.astype(float), None if result.filtered is None else result.filtered.astype(float)


def _dof_by_definition(op):
    c = op @ op.T
    return np.trace(c) ** 2 / np.trace(c @ c)


@pytest.mark.parametrize("censor", [False, True])
def test_effective_dof_matches_the_operator_built_from_the_denoiser_itself(censor):
    _, confounds = _data(n=120, k=6)
    mask = np.ones(120, bool)
    mask[:3] = False
    if censor:
        mask[[40, 41, 42, 77, 118]] = False
    ops = denoising_operators(confounds=confounds, sample_mask=mask, tr=TR, band=BAND)
    unfiltered, filtered = _operator_by_applying_the_denoiser(confounds, mask, BAND)
    np.testing.assert_allclose(ops.filtered, filtered, atol=2e-5)
    np.testing.assert_allclose(ops.unfiltered, unfiltered, atol=2e-5)
    # censored and dummy volumes have no weight: the map from the retained raw series is all there is
    assert np.abs(ops.filtered[:, ~mask]).max() == 0 and np.abs(ops.unfiltered[:, ~mask]).max() == 0
    result = denoise(np.eye(120, dtype=np.float32), confounds=confounds, sample_mask=mask, tr=TR, band=BAND)
    assert result.dof.bandpass == pytest.approx(_dof_by_definition(filtered), rel=1e-4)
    assert result.dof.unfiltered == pytest.approx(_dof_by_definition(unfiltered), rel=1e-4)
    # band-passing keeps a fraction of the retained volumes (~2 N TR 0.07 at most), the regression p + 2 fewer
    assert 5 < result.dof.bandpass < 2 * mask.sum() * TR * 0.07


def test_effective_dof_of_an_ols_projection_is_t_minus_p():
    rng = np.random.default_rng(1)
    t, p = 50, 7
    x = rng.standard_normal((t, p))
    residual_maker = np.eye(t) - x @ np.linalg.pinv(x)
    assert effective_dof(residual_maker) == pytest.approx(t - p)
    # the unfiltered denoiser is exactly that projection (mean, trend and the confounds): T - p - 2
    mask = np.ones(t, bool)
    mask[[10, 20]] = False
    ops = denoising_operators(confounds=x, sample_mask=mask, tr=TR, band=None)
    assert ops.filtered is None and effective_dof(ops.unfiltered) == pytest.approx(mask.sum() - p - 2)


def test_regressors_removed_inside_the_band_cost_band_dof():
    """The issue's mechanism: 24 band-passed regressors take a 62-volume run's band almost entirely."""
    rng = np.random.default_rng(2)
    n = 62
    motion = np.cumsum(rng.normal(0, 0.02, (n, 6)), axis=0)
    deriv = np.vstack([np.zeros(6), np.diff(motion, axis=0)])
    p24 = np.hstack([motion, deriv, motion**2, deriv**2])
    mask = np.ones(n, bool)
    none = effective_dof(denoising_operators(confounds=None, sample_mask=mask, tr=TR, band=BAND).filtered)
    with24 = effective_dof(denoising_operators(confounds=p24, sample_mask=mask, tr=TR, band=BAND).filtered)
    assert 7 < none < 11 and with24 < 2.5


# -- band-pass above Nyquist -------------------------------------------------------------------------------


def test_low_pass_at_or_above_nyquist_is_refused():
    check_band((0.01, 0.08), tr=6.0)  # Nyquist 0.083 Hz: possible
    for tr in (6.25, 7.0):  # Nyquist 0.08 and 0.071 Hz: no low-pass at 0.08 Hz
        with pytest.raises(ConfoundError, match=rf"TR {tr:g} s .* --band-pass 0.01 HIGH with HIGH below"):
            check_band((0.01, 0.08), tr=tr)
    bold, _ = _data(n=60)
    with pytest.raises(ConfoundError, match="Nyquist"):
        denoise(bold, confounds=None, sample_mask=np.ones(60, bool), tr=7.0, band=BAND)
    result = denoise(bold, confounds=None, sample_mask=np.ones(60, bool), tr=7.0, band=(0.01, 0.06))
    assert result.filtered is not None


# -- CompCor selection and old fMRIPrep names ---------------------------------------------------------------


def _fmriprep_202_compcor_json(n_combined=70, n_wm=40, n_csf=10):
    """fMRIPrep 20.2 numbering: one sequence over the masks, each kept to 50 % variance (here combined _00-_69,
    WM _70-_109, CSF _110-_119)."""
    meta = {}
    index = 0
    for mask, count in (("combined", n_combined), ("WM", n_wm), ("CSF", n_csf)):
        explained = 0.5 * 0.9 ** np.arange(count) / (0.9 ** np.arange(count)).sum()
        for k in range(count):
            meta[f"a_comp_cor_{index:02d}"] = {
                "Method": "aCompCor",
                "Mask": mask,
                "Retained": True,
                "SingularValue": float(100 * explained[k]),
                "VarianceExplained": float(explained[k]),
                "CumulativeVarianceExplained": float(explained[: k + 1].sum()),
            }
            index += 1
    meta["a_comp_cor_120"] = {"Method": "aCompCor", "Mask": "WM", "Retained": False, "VarianceExplained": 0.3}
    meta["t_comp_cor_00"] = {"Method": "tCompCor", "Retained": True, "VarianceExplained": 0.2}
    return meta


def test_select_compcor_by_mask_and_explained_variance_not_by_text():
    meta = _fmriprep_202_compcor_json()
    # WM components are numbered 70..109: as text, "a_comp_cor_100" sorts before "a_comp_cor_70"
    assert select_compcor(meta, masks=("WM",), n_components=5) == [f"a_comp_cor_{i}" for i in range(70, 75)]
    assert select_compcor(meta, masks=("CSF",), n_components=3) == [
        "a_comp_cor_110",
        "a_comp_cor_111",
        "a_comp_cor_112",
    ]
    assert select_compcor(meta, n_components=5) == [f"a_comp_cor_{i:02d}" for i in range(5)]
    # the JSON's order of explained variance wins over the numbering; Retained = false is never chosen
    meta["a_comp_cor_104"]["VarianceExplained"] = 0.9
    assert select_compcor(meta, masks=("WM",), n_components=1) == ["a_comp_cor_104"]
    assert "a_comp_cor_120" not in select_compcor(meta, masks=("WM",), n_components=40)
    # no variance in the JSON: the component number, read as a number
    bare = {f"a_comp_cor_{i}": {"Method": "aCompCor", "Mask": "WM"} for i in (100, 99, 70, 101)}
    assert select_compcor(bare, masks=("WM",), n_components=3) == ["a_comp_cor_70", "a_comp_cor_99", "a_comp_cor_100"]


def _legacy_table(n=20, seed=0):
    rng = np.random.default_rng(seed)
    cols = {name: rng.standard_normal(n) for name in ("X", "Y", "Z", "RotX", "RotY", "RotZ")}
    cols.update(
        WhiteMatter=rng.standard_normal(n), CSF=rng.standard_normal(n), GlobalSignal=rng.standard_normal(n),
        FramewiseDisplacement=np.r_[np.nan, np.abs(rng.standard_normal(n - 1))],
        stdDVARS=np.r_[np.nan, np.abs(rng.standard_normal(n - 1))],
        NonSteadyStateOutlier00=np.r_[1.0, np.zeros(n - 1)],
        **{f"aCompCor{k:02d}": rng.standard_normal(n) for k in range(6)},
        **{f"tCompCor{k:02d}": rng.standard_normal(n) for k in range(6)},
    )  # fmt: skip
    return pd.DataFrame(cols)


def test_old_fmriprep_names_are_mapped_and_expanded():
    table = _legacy_table()
    renames = legacy_confound_renames(list(table.columns))
    assert renames["RotX"] == "rot_x" and renames["FramewiseDisplacement"] == "framewise_displacement"
    assert (
        renames["aCompCor03"] == "a_comp_cor_03" and renames["NonSteadyStateOutlier00"] == "non_steady_state_outlier00"
    )
    assert renames["stdDVARS"] == "std_dvars" and renames["WhiteMatter"] == "white_matter"
    new, meta, used = modernise_confounds(table, {})
    assert used == renames
    # same values, same units (mm and rad in fMRIPrep 1.x as today): a renaming, no conversion
    np.testing.assert_array_equal(new["rot_x"], table["RotX"])
    # 24P/36P expansions computed as fMRIPrep >= 1.4 does: backward difference (n/a first) and squares
    d = np.diff(table["RotX"].to_numpy())
    assert np.isnan(new["rot_x_derivative1"].iloc[0])
    np.testing.assert_allclose(new["rot_x_derivative1"].to_numpy()[1:], d)
    np.testing.assert_allclose(new["rot_x_derivative1_power2"].to_numpy()[1:], d**2)
    np.testing.assert_allclose(new["csf_power2"], table["CSF"] ** 2)
    # every 36P column is there, and old aCompCor (one combined mask, no JSON) is selectable
    columns36 = [f"{b}{s}" for b in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "white_matter",
                                      "csf", "global_signal")
                 for s in ("", "_derivative1", "_power2", "_derivative1_power2")]  # fmt: skip
    assert resolve_confound_columns(list(new.columns), patterns=columns36) == columns36
    assert select_compcor(meta, n_components=5) == [f"a_comp_cor_{k:02d}" for k in range(5)]
    assert count_dummy_scans(new, dummy_scans="auto") == 1
    # a current table is left alone
    current, _, none = modernise_confounds(new, meta)
    assert none == {} and current is new
