"""Denoising kernels against nilearn.signal.clean and known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from nilearn import signal as nsignal

from clbp_bidsapp.core.denoise import (
    ConfoundError,
    censoring_mask,
    count_dummy_scans,
    denoise,
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


def test_qc_summary():
    mask = np.array([False, False, True, True, False, True, True, True])
    fd = np.array([np.nan, 0.2, 0.1, 0.2, 0.9, 0.1, 0.1, 0.2])
    qc = qc_summary(fd=fd, sample_mask=mask, tr=2.0, n_dummy=2, dof_lost=26, min_time=10)
    assert qc["n_censored"] == 1 and qc["n_retained"] == 5 and qc["retained_seconds"] == 10.0
    assert qc["used"] is True and qc["max_fd"] == pytest.approx(0.9)
    assert qc["mean_fd"] == pytest.approx(np.mean([0.1, 0.2, 0.9, 0.1, 0.1, 0.2]))
    assert qc_summary(fd=fd, sample_mask=mask, tr=2.0, n_dummy=2, dof_lost=26, min_time=11)["used"] is False
