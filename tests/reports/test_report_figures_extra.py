"""Issue 21, second part: the FD / standardised DVARS trace, carpet plots ordered by tissue, per-cluster orthogonal
views, connectome plots of the significant edges, ML weight maps and the family FWE in the group figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from nilearn.datasets import load_mni152_brain_mask

from clbp_bidsapp.core import qc
from clbp_bidsapp.interfaces.report import ParticipantReport, RunReport
from clbp_bidsapp.io import images
from clbp_bidsapp.reports import participant_figures as pf
from tests.reports.test_figures import N_VOLUMES, TR, _pngs, _run_inputs


# ------------------------------------------------------------------------------------------------- DVARS (core)
def _dvars_by_definition(series: np.ndarray) -> np.ndarray:
    """Standardised DVARS voxel by voxel, as written in Nichols (2017) and nipype's ``compute_dvars``."""
    x = series.astype(np.float64) / np.median(series) * 1000
    expected, kept, diffs = [], [], []
    for v in range(x.shape[1]):
        y = x[:, v]
        sd = (np.percentile(y, 75, method="lower") - np.percentile(y, 25, method="lower")) / 1.349
        if sd <= 1e-7:
            continue
        c = y - y.mean()
        ar1 = sum(c[t] * c[t + 1] for t in range(len(c) - 1)) / sum(c * c)  # Yule-Walker, order 1
        expected.append(np.sqrt(2 * (1 - ar1)) * sd)
        kept.append(v)
    for t in range(1, x.shape[0]):
        d = x[t, kept] - x[t - 1, kept]
        diffs.append(np.sqrt(np.mean(d**2)))
    return np.array([np.nan, *diffs]) / np.mean(expected)


def test_standardized_dvars_matches_the_definition(monkeypatch):
    rng = np.random.default_rng(3)
    n_t, n_v = 37, 211
    noise = rng.normal(0, 1, (n_t, n_v))
    series = 800 + 5 * rng.uniform(0.5, 2, n_v) * noise
    series[1:] += 0.4 * (series[:-1] - 800)  # autocorrelated voxels
    series[:, :3] = 812.0  # constant voxels: left out
    series[22] += 30  # one artefact volume
    monkeypatch.setattr(qc, "_DVARS_CHUNK", 50)  # several blocks, the last one partial
    std, dvars = qc.standardized_dvars(series.astype(np.float32))
    expected = _dvars_by_definition(series.astype(np.float32))
    assert np.isnan(std[0]) and np.isnan(dvars[0])
    np.testing.assert_allclose(std[1:], expected[1:], rtol=1e-5)
    assert set(np.argsort(std[1:])[-2:] + 1) == {22, 23}  # the jump into and out of the artefact


def test_standardized_dvars_of_white_noise_is_about_one():
    series = 1000 + np.random.default_rng(0).normal(0, 10, (200, 500))
    std, _ = qc.standardized_dvars(series)
    assert abs(np.nanmean(std) - 1) < 0.05


# ------------------------------------------------------------------------------------------------ trace figure
def test_censored_spans_merge_neighbours():
    mask = np.ones(12, bool)
    mask[[0, 4, 5, 6, 11]] = False
    assert pf.censored_spans(mask, tr=2.0) == [(-1.0, 1.0), (7.0, 13.0), (21.0, 23.0)]


def test_trace_marks_the_censored_volumes_and_draws_dvars():
    fd = np.full(N_VOLUMES, 0.1)
    fd[[10, 11, 40]] = 0.9
    sample_mask = fd <= 0.5
    dvars = np.r_[np.nan, np.ones(N_VOLUMES - 1)]
    fig = pf._trace_figure(fd, dvars, sample_mask, tr=TR, fd_thresh=0.5)
    axes = fig.axes
    assert [a.get_ylabel() for a in axes] == ["FD (mm)", "std DVARS"]
    for ax in axes:
        shaded = []
        for patch in ax.patches:
            xs = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
            shaded.append((round(xs.min(), 6), round(xs.max(), 6)))
        assert sorted(shaded) == [(9.5 * TR, 11.5 * TR), (39.5 * TR, 40.5 * TR)]
    np.testing.assert_array_equal(axes[1].lines[0].get_ydata(), dvars)
    plt.close(fig)
    once = pf.trace_figure(fd, dvars, sample_mask, tr=TR, fd_thresh=0.5)
    assert once == pf.trace_figure(fd, dvars, sample_mask, tr=TR, fd_thresh=0.5)  # byte-identical


# ----------------------------------------------------------------------------------------------- carpet figure
def test_tissue_labels_take_the_most_probable_tissue():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]])
    assert pf.tissue_labels(p).tolist() == [0, 2, 1, 3, 3]


def test_carpet_rows_are_grouped_gm_wm_csf_and_keep_each_share():
    labels = np.random.default_rng(1).choice(4, size=5000, p=[0.5, 0.3, 0.15, 0.05])
    order = pf.carpet_order(labels, max_rows=1000, seed=0)
    assert order.size == 1000 and np.unique(order).size == 1000
    assert np.all(np.diff(labels[order]) >= 0)  # GM, then WM, then CSF, then other
    shares = np.bincount(labels[order], minlength=4) / 1000
    np.testing.assert_allclose(shares, [0.5, 0.3, 0.15, 0.05], atol=0.05)
    np.testing.assert_array_equal(order, pf.carpet_order(labels, max_rows=1000, seed=0))


def test_carpet_figure_rows_follow_the_tissue_order():
    rng = np.random.default_rng(2)
    n_vox = 60
    labels = rng.choice(3, size=n_vox)
    series = rng.normal(0, 1, (20, n_vox)) + labels * 0.0
    sample_mask = np.ones(20, bool)
    sample_mask[5] = False
    fig = pf._carpet_figure(series, series[sample_mask], sample_mask, labels)
    band = fig.axes[0].images[0].get_array()[:, 0]
    order = pf.carpet_order(labels)
    np.testing.assert_array_equal(band, labels[order])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["GM", "WM", "CSF"]
    carpet = np.asarray(fig.axes[1].images[0].get_array())
    np.testing.assert_allclose(carpet, pf._carpet_rows(series, order))
    after = np.asarray(fig.axes[3].images[0].get_array())
    assert np.isnan(after[:, 5]).all() and np.isfinite(np.delete(after, 5, axis=1)).all()
    plt.close(fig)


def _participant_report(tmp: Path, *, tissue: bool, std_dvars: bool) -> str:
    """The report of one synthetic run (tests/reports/test_figures.py), with probsegs (the brain split in thirds:
    GM, WM, CSF) and a std_dvars column when asked."""
    work = tmp / "work"
    work.mkdir(parents=True)
    inputs = _run_inputs(work, space_mni=True)
    mask, affine = images.load_grid(Path(inputs["grid"]))
    n_vox = int(mask.sum())
    if tissue:
        third = np.minimum(np.arange(n_vox) * 3 // n_vox, 2)
        inputs["tissue_maps"] = {}
        for k, name in enumerate(pf.TISSUES):
            probability = np.where(third == k, 0.8, 0.1)
            images.save_map(work / f"{name}.nii.gz", probability, (mask, affine))
            inputs["tissue_maps"][name] = str(work / f"{name}.nii.gz")
    if std_dvars:
        confounds = pd.read_csv(inputs["confounds"], sep="\t")
        confounds["std_dvars"] = np.r_[np.nan, np.full(N_VOLUMES - 1, 1.25)]
        confounds.to_csv(inputs["confounds"], sep="\t", index=False, na_rep="n/a")
    fragment = RunReport(**inputs).run(cwd=str(work))
    out = ParticipantReport(participant="01", fragments=[fragment.outputs.out_fragment], output_dir=str(tmp))
    return Path(out.run(cwd=str(work)).outputs.out_report).read_text()


def test_run_report_orders_the_carpet_by_the_probsegs_and_reads_std_dvars(tmp_path):
    report = _participant_report(tmp_path / "tissue", tissue=True, std_dvars=True)
    mask = np.asarray(load_mni152_brain_mask(resolution=4).dataobj) > 0
    counts = np.bincount(np.minimum(np.arange(mask.sum()) * 3 // mask.sum(), 2))
    assert f"GM {counts[0]}, WM {counts[1]}, CSF {counts[2]} voxels in the mask" in report
    assert "the std_dvars column of the fMRIPrep confounds" in report
    assert len(_pngs(report)) == 4  # mask, trace, carpet, map

    plain = _participant_report(tmp_path / "plain", tissue=False, std_dvars=False)
    assert "tissue unknown (no GM/WM/CSF probsegs on the run&#x27;s grid)" in plain
    assert "computed from the preprocessed series" in plain
