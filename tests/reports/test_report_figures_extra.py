"""Issue 21, second part: the FD / standardised DVARS trace, carpet plots ordered by tissue, per-cluster orthogonal
views, connectome plots of the significant edges, ML weight maps and the family FWE in the group figures."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nb
import numpy as np
import pandas as pd
from nilearn.datasets import load_mni152_brain_mask
from PIL import Image

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


def make_tissue_report(tmp: Path, *, tissue: bool, std_dvars: bool) -> Path:
    """The report of one synthetic run (tests/reports/test_figures.py), with probsegs (the brain split in thirds:
    GM, WM, CSF) and a std_dvars column when asked."""
    work = tmp / "work"
    work.mkdir(parents=True)
    inputs = _run_inputs(work, space_mni=True, qc_extra={"dof_bandpass": 23.5})
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
    return Path(out.run(cwd=str(work)).outputs.out_report)


def test_run_report_orders_the_carpet_by_the_probsegs_and_reads_std_dvars(tmp_path):
    report = make_tissue_report(tmp_path / "tissue", tissue=True, std_dvars=True).read_text()
    mask = np.asarray(load_mni152_brain_mask(resolution=4).dataobj) > 0
    counts = np.bincount(np.minimum(np.arange(mask.sum()) * 3 // mask.sum(), 2))
    assert f"GM {counts[0]}, WM {counts[1]}, CSF {counts[2]} voxels in the mask" in report
    assert "the std_dvars column of the fMRIPrep confounds" in report
    assert len(_pngs(report)) == 4  # mask, trace, carpet, map

    plain = make_tissue_report(tmp_path / "plain", tissue=False, std_dvars=False).read_text()
    assert "tissue unknown (no GM/WM/CSF probsegs on the run&#x27;s grid)" in plain
    assert "computed from the preprocessed series" in plain


# ---------------------------------------------------------------------------------------------- group: clusters
def _mni_blob(centre, height):
    mask_img = load_mni152_brain_mask(resolution=4)
    ijk = np.indices(mask_img.shape).reshape(3, -1).T
    xyz = nb.affines.apply_affine(mask_img.affine, ijk)
    inside = (np.linalg.norm(xyz - np.asarray(centre), axis=1) <= 10).reshape(mask_img.shape)
    return np.where(inside, height, 0.0), mask_img.affine


CLUSTERS = pd.DataFrame(
    {
        "cluster": [1, 2, 3],
        "sign": ["+", "-", "+"],
        "voxels": [40, 12, 3],
        "peak_t": [7.0, -6.1, 3.9],
        "peak_x": [-38.0, 6.0, 30.0],
        "peak_y": [14.0, -62.0, -20.0],
        "peak_z": [0.0, 40.0, 10.0],
        "p_fwe_cluster": [0.001, 0.2, 0.6],
        "p_tfce_fwe_peak": [0.004, 0.03, 0.5],  # cluster 2: significant by its TFCE peak only
        "harvard_oxford": ["Left_Insular_Cortex", "Precuneous_Cortex", "Right_Thalamus"],
    }
)


def test_cluster_views_are_cut_at_each_significant_peak():
    from clbp_bidsapp.reports import group_figures as gf

    volume, affine = _mni_blob((-38, 14, 0), 7.0)
    fig, display = gf._cluster_display(volume, affine, (-38.0, 14.0, 0.0), title="cluster 1")
    assert tuple(display.cut_coords) == (-38.0, 14.0, 0.0)
    plt.close(fig)
    assert gf.significant_clusters(CLUSTERS)["cluster"].tolist() == [1, 2]
    text = gf.cluster_views(volume, affine, CLUSTERS, title="alff, contrast CLBPvsHC")
    views = re.findall(r"<div class='cluster'><img alt=\"([^\"]+)\"", text)
    assert views == [
        "alff, contrast CLBPvsHC, cluster 1 at (-38, 14, 0)",
        "alff, contrast CLBPvsHC, cluster 2 at (6, -62, 40)",
    ]
    assert "Left_Insular_Cortex" in text and "Precuneous_Cortex" in text and "Right_Thalamus" not in text
    assert gf.cluster_views(volume, affine, CLUSTERS.iloc[2:], title="x") == ""  # nothing significant: no view


# ------------------------------------------------------------------------------------------- group: glass brains
def _dark_fraction(png: bytes) -> float:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    return float((rgb.max(axis=2) < 60).mean())


def test_glass_brain_outlines_the_family_fwe_voxels_and_says_which_correction():
    from clbp_bidsapp.reports import group_figures as gf

    volume, affine = _mni_blob((-38, 14, 0), 7.0)
    plain = gf.glass_brain_figure(volume, affine)
    outlined = gf.glass_brain_figure(volume, affine, family=np.where(np.abs(volume) > 0, volume, 0))
    assert _dark_fraction(outlined) > 1.2 * _dark_fraction(plain)  # the black outline
    assert gf.glass_brain_figure(volume, affine, family=np.zeros_like(volume)) == plain
    assert gf.family_text({}, None) == "exploratory: FWE within this map only"
    assert gf.family_text({"Family": {"Name": "primary"}}, 0).startswith("primary family: no voxel survives")
    assert gf.family_text({"Family": {"Name": "primary"}}, 12) == (
        "primary family: 12 vox survive the family-wise FWE (black outline)"
    )


def test_overview_tiles_say_within_map_or_family_fwe(tmp_path, monkeypatch):
    from clbp_bidsapp.reports import group_figures as gf
    from clbp_bidsapp.reports.group import write_group_report
    from tests.reports.test_group_report import _voxelwise

    mask_img = load_mni152_brain_mask(resolution=4)
    group = tmp_path / "group"
    group.mkdir()
    blob, _ = _mni_blob((-38, 14, 0), 7.0)
    for name in ("alff", "reho"):
        _voxelwise(group, mask_img, name, "CLBPvsHC", t_map=blob, clusters=CLUSTERS.to_dict("records"),
                   significant=True)  # fmt: skip
    prefix = group / "alff_contrast-CLBPvsHC_"
    meta = json.loads(Path(f"{prefix}stat-t_statmap.json").read_text()) | {"Family": {"Name": "primary"}}
    Path(f"{prefix}stat-t_statmap.json").write_text(json.dumps(meta))
    family = np.where(blob > 6.5, blob, 0).astype(np.float32)
    nb.save(nb.Nifti1Image(family, mask_img.affine), f"{prefix}stat-t_desc-familyfwe05_statmap.nii.gz")
    monkeypatch.setattr(gf, "MAX_CLUSTER_VIEWS_TOTAL", 3)
    text = write_group_report(tmp_path, settings_summary={}).read_text()
    overview = text[text.index("id='overview'") : text.index("</figure>")]
    tiles = dict(re.findall(r"<b>([^<]+)</b>: ([^<]+)<a", overview))
    assert tiles["alff, CLBPvsHC"].endswith(
        f"primary family: {np.count_nonzero(family)} vox survive the family-wise FWE (black outline) "
    )
    assert tiles["reho, CLBPvsHC"].endswith("exploratory: FWE within this map only ")
    assert text.count("<div class='cluster'>") == 3  # two significant clusters per map, three views per report


# --------------------------------------------------------------------------------------------- group: connectome
def test_the_edges_drawn_are_exactly_the_significant_ones():
    from clbp_bidsapp.io import atlases
    from clbp_bidsapp.reports import group_figures as gf

    centres = atlases.region_centres("dosenbach160")
    regions = list(centres)[:6]
    edges = pd.DataFrame(
        {
            "region_a": [regions[0], regions[2], regions[1], regions[3]],
            "region_b": [regions[1], regions[5], regions[4], regions[4]],
            "t": [5.0, -4.5, 3.0, 2.0],
            "p_fwe": [0.01, 0.04, 0.05, 0.3],  # p = 0.05 is not < 0.05
        }
    )
    adjacency = gf.significant_edges(edges, regions)
    expected = {(0, 1): 5.0, (2, 5): -4.5}
    assert {(int(i), int(j)): adjacency[i, j] for i, j in zip(*np.nonzero(np.triu(adjacency)), strict=True)} == (
        expected
    )
    np.testing.assert_array_equal(adjacency, adjacency.T)
    fig = gf._edge_matrix_figure(np.zeros((6, 6)), regions, adjacency != 0, title="t")
    circled = {tuple(map(int, xy)) for xy in fig.axes[0].collections[0].get_offsets()}
    assert circled == {(1, 0), (0, 1), (5, 2), (2, 5)}  # (column, row) of both triangles
    plt.close(fig)
    coords = np.array([centres[r] for r in regions])
    fig, display = gf._connectome_display(adjacency, coords, title="t")
    drawn = {frozenset(map(tuple, np.round(line.get_xydata(), 3))) for line in display.axes["z"].ax.lines}
    assert drawn == {frozenset({tuple(np.round(coords[i, :2], 3)), tuple(np.round(coords[j, :2], 3))})
                     for i, j in expected}  # fmt: skip
    plt.close(fig)
    matrix = pd.DataFrame(np.zeros((6, 6)), index=regions, columns=regions)
    text = gf.connectome_figures(matrix, edges, atlas="dosenbach160", title="dosenbach160")
    assert text.count("<img") == 2 and "the 2 edge(s) with max-t FWE p &lt; 0.05" in text
    user = gf.connectome_figures(matrix, edges, atlas="myatlas", title="myatlas")
    assert user.count("<img") == 1 and "user atlas" in user


def test_region_centres_carry_the_connectome_region_names():
    from clbp_bidsapp.io import atlases

    mask_img = load_mni152_brain_mask(resolution=4)
    mask = np.asarray(mask_img.dataobj) > 0
    for atlas in ("aal", "seitzman300"):
        regions = atlases.atlas_regions(atlas, mask, mask_img.affine)
        centres = atlases.region_centres(atlas)
        assert set(regions.labels) <= set(centres)
        seen = np.isfinite(regions.centres_mm).all(axis=1)
        found = np.array([centres[label] for label in regions.labels])
        assert np.abs(found[seen] - regions.centres_mm[seen]).max() < 4.0  # atlas grid vs 4 mm grid
    assert atlases.region_centres("my_dseg") == {}


# ------------------------------------------------------------------------------------------------------ group: ML
def test_ml_weight_maps_one_mosaic_per_metric(tmp_path):
    from clbp_bidsapp.reports import group_figures as gf

    blob, affine = _mni_blob((-38, 14, 0), 0.3)
    volumes = np.stack([blob, -blob, np.zeros_like(blob)], axis=-1).astype(np.float32)
    stem = tmp_path / "features-roi_model-linearsvm_desc-mlweights_boldmap"
    nb.save(nb.Nifti1Image(volumes, affine), f"{stem}.nii.gz")
    Path(f"{stem}.json").write_text(json.dumps({"Volumes": ["alff", "reho", "dc"]}))
    text = gf.ml_weight_maps(tmp_path)
    alts = re.findall(r"<img alt=\"([^\"]+)\"", text)
    assert alts == [
        "linearsvm: mean weight of the alff ROI features",
        "linearsvm: mean weight of the reho ROI features",
    ]
    assert gf.ml_weight_maps(tmp_path / "none") == ""


def test_the_participant_workflow_gives_the_report_its_probsegs_and_std_dvars(tmp_path):
    """End to end on the synthetic fMRIPrep derivatives (4 mm, 60 volumes, report stage only): the run's
    probsegs reach the carpet plot and fMRIPrep's std_dvars column the trace."""
    from clbp_bidsapp.config import Settings
    from clbp_bidsapp.io import bids
    from clbp_bidsapp.stages import PARTICIPANT_STAGES
    from clbp_bidsapp.testing.synthetic import make_dataset
    from clbp_bidsapp.workflows.participant import init_participant_wf

    data = make_dataset(tmp_path / "bids", n_patients=1, n_controls=0, voxel_size=4, n_volumes=60, tr=2.0, seed=7)
    layout = bids.build_layout(data.fmriprep_dir, None)
    runs = bids.collect_runs(layout, participants=("01",), sessions=(), tasks=(), task_pattern="rest",
                             space=data.space, res=None, filters={}).runs["01"]  # fmt: skip
    settings = Settings().replace({"denoise": {"min_dof": 0, "min_time": 0}})
    workflow = init_participant_wf(
        participant="01", runs=runs, output_dir=tmp_path / "out", fmriprep_dir=data.fmriprep_dir,
        denoise=settings.denoise, metrics=settings.metrics, connectivity=settings.connectivity,
        skip=tuple(stage for stage in PARTICIPANT_STAGES if stage != "report"),
    )  # fmt: skip
    workflow.base_dir = str(tmp_path / "work")
    workflow.run(plugin="Linear")
    text = (tmp_path / "out" / "sub-01.html").read_text()
    tissues = re.search(
        r"rows by most probable tissue \(fMRIPrep probsegs\): GM (\d+), WM (\d+), CSF (\d+) voxels", text
    )
    mask = np.asarray(nb.load(runs[0].mask).dataobj) > 0
    assert tissues and sum(map(int, tissues.groups())) == int(mask.sum())
    assert "the std_dvars column of the fMRIPrep confounds" in text
