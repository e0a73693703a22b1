"""Group HTML report from a tiny fake ``group/`` folder (4 mm MNI grid, nilearn's bundled mask)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nilearn.datasets import load_mni152_brain_mask
from PIL import Image

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.reports.group import NEGATIVE_BOLD, write_group_report

SETTINGS = {"n_permutations": 5000, "random_seed": 0, "covariates": "age sex mean_fd"}
INSULA = "Left_Insular_Cortex"
PRECUNEUS = "Precuneous_Cortex_TESTLABEL"
EXCLUSION = "no participant outputs (TESTREASON)"
NBS_NODES = "LeftInsulaTEST,RightThalamusTEST"


def _tsv(path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a")


def _sphere(mask_img, centre_mm, radius_mm) -> np.ndarray:
    ijk = np.indices(mask_img.shape).reshape(3, -1).T
    xyz = nb.affines.apply_affine(mask_img.affine, ijk)
    inside = np.linalg.norm(xyz - np.asarray(centre_mm), axis=1) <= radius_mm
    return inside.reshape(mask_img.shape) & (np.asarray(mask_img.dataobj) > 0)


def _voxelwise(
    group: Path, mask_img, name: str, contrast: str, *, t_map: np.ndarray, clusters: list[dict], significant: bool
) -> None:
    prefix = group / f"{name}_contrast-{contrast}_"
    affine = mask_img.affine
    nb.save(nb.Nifti1Image(t_map.astype(np.float32), affine), f"{prefix}stat-t_statmap.nii.gz")
    thresholded = np.where(np.abs(t_map) > 5, t_map, 0) if significant else np.zeros_like(t_map)
    for desc in ("tfcefwe05", "fwe05"):
        nb.save(nb.Nifti1Image(thresholded.astype(np.float32), affine), f"{prefix}stat-t_desc-{desc}_statmap.nii.gz")
    Path(f"{prefix}stat-t_statmap.json").write_text(
        json.dumps({"Participants": 12, "ClusterFormingT": 4.0, "Description": f"t of {contrast} on {name}"})
    )
    columns = [
        "cluster",
        "sign",
        "voxels",
        "volume_mm3",
        "peak_t",
        "peak_x",
        "peak_y",
        "peak_z",
        "p_fwe_cluster",
        "p_fwe_peak",
        "p_tfce_fwe_peak",
        "harvard_oxford",
        "aal",
    ]
    _tsv(Path(f"{prefix}desc-clusters_table.tsv"), pd.DataFrame(clusters, columns=columns))


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    group = out / "group"
    group.mkdir()
    mask_img = load_mni152_brain_mask(resolution=4)
    rng = np.random.default_rng(0)
    brain = np.asarray(mask_img.dataobj) > 0
    noise = np.where(brain, rng.normal(0, 1.0, mask_img.shape), 0.0)

    insula = _sphere(mask_img, (-38, 14, 0), 10)
    t_alff = noise + 7.0 * insula
    _voxelwise(
        group,
        mask_img,
        "alff",
        "CLBPvsHC",
        t_map=t_alff,
        significant=True,
        clusters=[
            {
                "cluster": 1,
                "sign": "+",
                "voxels": int(insula.sum()),
                "volume_mm3": 64 * int(insula.sum()),
                "peak_t": 8.1,
                "peak_x": -38.0,
                "peak_y": 14.0,
                "peak_z": 0.0,
                "p_fwe_cluster": 0.002,
                "p_fwe_peak": 0.01,
                "p_tfce_fwe_peak": 0.004,
                "harvard_oxford": INSULA,
                "aal": "Insula_L",
            },
        ],
    )
    precuneus = _sphere(mask_img, (6, -62, 40), 6)
    _voxelwise(
        group,
        mask_img,
        "reho",
        "CLBPvsHC",
        t_map=noise - 4.5 * precuneus,
        significant=False,
        clusters=[
            {
                "cluster": 1,
                "sign": "-",
                "voxels": 3,
                "volume_mm3": 192,
                "peak_t": -4.6,
                "peak_x": 6.0,
                "peak_y": -62.0,
                "peak_z": 40.0,
                "p_fwe_cluster": 0.41,
                "p_fwe_peak": 0.6,
                "p_tfce_fwe_peak": 0.5,
                "harvard_oxford": PRECUNEUS,
                "aal": "Precuneus_R",
            },
        ],
    )
    for name in ("falff", "fcz-insulaAntL", "dualreg-DefaultMode"):
        _voxelwise(group, mask_img, name, "CLBPvsHC", t_map=noise * 0.5, significant=False, clusters=[])
    _voxelwise(group, mask_img, "alff", "painvas", t_map=noise, significant=False, clusters=[])

    # design tables
    ids = [f"{i:02d}" for i in range(1, 13)]
    design = pd.DataFrame(
        {
            "participant_id": ids,
            "group": ["CLBP"] * 7 + ["HC"] * 5,
            "age": rng.integers(25, 60, 12),
            "sex": ["M", "F"] * 6,
            "pain_vas": list(rng.uniform(2, 8, 7).round(1)) + [0.0] * 5,
            "mean_fd": rng.uniform(0.05, 0.2, 12).round(4),
        }
    )
    _tsv(group / "desc-design_participants.tsv", design)
    _tsv(group / "desc-excluded_participants.tsv", pd.DataFrame({"participant_id": ["13"], "reason": [EXCLUSION]}))
    qc = design.drop(columns=["participant_id", "sex"]).groupby("group").agg(["count", "mean", "std"])
    summary = pd.DataFrame({"group": ["CLBP", "HC"], "n": [7, 5]})
    for col in ("age", "pain_vas", "mean_fd"):
        summary[f"{col}_mean"] = qc[(col, "mean")].to_numpy()
        summary[f"{col}_std"] = qc[(col, "std")].to_numpy()
    _tsv(group / "desc-qc_summary.tsv", summary)

    # clinical ROI tables: alff has per-participant values (scatter plot), fcz-insulaAntL does not
    roi = pd.DataFrame(
        {
            "region": ["insulaAntL", "thalamusL"],
            "t": [4.2, 0.3],
            "partial_r": [0.9, 0.1],
            "p_uncorrected": [0.004, 0.8],
            "p_fwe": [0.01, 0.95],
            "q_fdr": [0.008, 0.8],
        }
    )
    _tsv(group / "alff_contrast-painvas_desc-roi_stats.tsv", roi)
    _tsv(group / "fcz-insulaAntL_contrast-painvas_desc-roi_stats.tsv", roi)
    pain = design["pain_vas"].to_numpy()[:7]
    _tsv(
        group / "alff_contrast-painvas_desc-roivalues_stats.tsv",
        pd.DataFrame(
            {
                "participant_id": ids[:7],
                "pain_vas": pain,
                "insulaAntL": 0.2 * pain + rng.normal(0, 0.1, 7),
                "thalamusL": rng.normal(0, 1, 7),
            }
        ),
    )

    # connectome
    regions = [f"R{i}" for i in range(9)]
    t = rng.normal(0, 2, (9, 9))
    t = (t + t.T) / 2
    np.fill_diagonal(t, np.nan)
    relmat = pd.DataFrame(t, index=pd.Index(regions, name="region"), columns=regions)
    prefix = group / "atlas-testatlas_contrast-CLBPvsHC_"
    relmat.to_csv(f"{prefix}stat-t_relmat.tsv", sep="\t", na_rep="n/a")
    _tsv(
        Path(f"{prefix}desc-nbs_components.tsv"),
        pd.DataFrame(
            {
                "component": [1],
                "sign": ["+"],
                "n_edges": [1],
                "n_nodes": [2],
                "size": [1],
                "p_fwe": [0.03],
                "nodes": [NBS_NODES],
            }
        ),
    )
    iu = np.triu_indices(9, 1)
    edges = pd.DataFrame(
        {
            "region_a": [regions[i] for i in iu[0]],
            "region_b": [regions[j] for j in iu[1]],
            "t": t[iu],
            "p_uncorrected": rng.uniform(0, 1, iu[0].size),
            "p_fwe": 1.0,
            "q_fdr": rng.uniform(0, 1, iu[0].size),
        }
    )
    _tsv(Path(f"{prefix}desc-edges_stats.tsv"), edges)
    _tsv(
        Path(f"{prefix}desc-graph_stats.tsv"),
        pd.DataFrame(
            {
                "measure": ["clustering", "global_efficiency"],
                "n": [12, 12],
                "t": [1.2, -0.4],
                "p_uncorrected": [0.25, 0.7],
                "p_fwe": [0.4, 0.9],
                "q_fdr": [0.5, 0.7],
            }
        ),
    )
    write_group_report(out, settings_summary=SETTINGS, run_info={"run_id": "test-run"}, max_other_figures=2)
    return out


@pytest.fixture(scope="module")
def report(output_dir) -> str:
    return (output_dir / "group.html").read_text()


def test_sections_present(report):
    for title in ("Design", "Voxelwise results", "Clinical correlations", "Connectomes", "Methods summary"):
        assert f">{title}</h2>" in report
    assert "Summary of all maps" in report
    assert "NBS components" in report and NBS_NODES in report
    assert "Graph measures" in report and "global_efficiency" in report
    assert "Top 20 edges by FDR q" in report


def test_self_contained(report):
    sources = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", report)
    assert sources and len(sources) == report.count("<img")
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    for src in sources:  # every image decodes as a PNG (nothing can be missing: all are inline)
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as img:
            assert img.format == "PNG" and min(img.size) > 50
    # one inline script (table sorting); nothing loaded from elsewhere
    assert re.findall(r"<script[^>]*>", report.lower()) == ["<script>"]
    assert "http" not in " ".join(sources)
    assert not re.search(r"(src|href)=['\"]?https?:", report)


def test_content(report):
    assert INSULA in report and "Insula_L" in report  # cluster labels of the significant map
    assert PRECUNEUS in report  # best (non-significant) cluster of reho in the summary
    assert NEGATIVE_BOLD in report
    assert EXCLUSION in report
    # summary row of alff: TFCE and FWE voxel counts = planted voxels, one significant cluster
    assert "t where TFCE FWE p &lt; 0.05" in report  # the significant map is shown thresholded at TFCE FWE
    assert "uncorrected" in report  # other maps shown at the cluster-forming t, marked uncorrected
    assert __version__ in report and "test-run" in report and "5000" in report


def test_summary_counts(output_dir, report):
    mask_img = load_mni152_brain_mask(resolution=4)
    n_insula = int(_sphere(mask_img, (-38, 14, 0), 10).sum())
    tables = pd.read_html(io.StringIO(report))
    summary = next(t for t in tables if "voxels TFCE FWE<0.05" in t.columns)
    alff = summary[(summary["map"] == "alff") & (summary["contrast"] == "CLBPvsHC")].iloc[0]
    t_alff = np.asarray(
        nb.load(output_dir / "group" / "alff_contrast-CLBPvsHC_stat-t_desc-tfcefwe05_statmap.nii.gz").dataobj
    )
    assert int(alff["voxels TFCE FWE<0.05"]) == np.count_nonzero(t_alff) >= n_insula - 2
    assert int(alff["clusters FWE<0.05"]) == 1
    reho = summary[summary["map"] == "reho"].iloc[0]
    assert int(reho["voxels max-t FWE<0.05"]) == 0 and int(reho["clusters FWE<0.05"]) == 0
    assert list(summary["map"])[:2] == ["alff", "falff"]  # documented map order, group contrast first
    assert list(summary["contrast"])[-1] == "painvas"


def test_summary_says_which_maps_are_primary_and_counts_their_family_fwe_voxels(output_dir, tmp_path):
    """#14 multiplicity: a primary map's row gives its family-corrected count; other maps are exploratory."""
    out = tmp_path / "out"
    shutil.copytree(output_dir, out)
    prefix = out / "group" / "alff_contrast-CLBPvsHC_"
    sidecar = json.loads(Path(f"{prefix}stat-t_statmap.json").read_text())
    Path(f"{prefix}stat-t_statmap.json").write_text(json.dumps({**sidecar, "Family": {"Maps": ["alff", "reho"]}}))
    within = nb.load(f"{prefix}stat-t_desc-fwe05_statmap.nii.gz")
    data = np.asarray(within.dataobj)
    family = np.where(np.abs(data) > 7.5, data, 0)  # fewer voxels survive the family correction
    nb.save(nb.Nifti1Image(family.astype(np.float32), within.affine), f"{prefix}stat-t_desc-familyfwe05_statmap.nii.gz")
    write_group_report(out, settings_summary={}, run_info={})
    tables = pd.read_html(io.StringIO((out / "group.html").read_text()))
    summary = next(t for t in tables if "voxels family FWE<0.05" in t.columns)
    alff = summary[(summary["map"] == "alff") & (summary["contrast"] == "CLBPvsHC")].iloc[0]
    assert alff["family"] == "primary"
    assert int(alff["voxels family FWE<0.05"]) == np.count_nonzero(family) < np.count_nonzero(data)
    reho = summary[summary["map"] == "reho"].iloc[0]
    assert reho["family"] == "exploratory" and pd.isna(reho["voxels family FWE<0.05"])  # n/a


def test_figure_budget(report):
    # first figure: 1 glass brain (the significant map); the design; one significant map + at most 2 others;
    # 1 orthogonal view of the significant map's cluster; 1 connectome heatmap; 1 scatter plot (alff-painvas,
    # insulaAntL)
    headings = re.findall(r"<h3>(?!atlas )([^<]*), contrast ([^<]*?)(?: \(no significant result\))?</h3>", report)
    assert len(headings) == 3
    assert "further map(s) without significant result" in report
    assert report.count("against pain_vas") == 1
    assert "scatter plots need the per-participant ROI values".lower() in report.lower()
    assert report.count("<img") == 1 + 1 + 3 + 1 + 1 + 1


def test_deterministic_and_small(output_dir, tmp_path):
    first = (output_dir / "group.html").read_bytes()
    path = write_group_report(
        output_dir, settings_summary=SETTINGS, run_info={"run_id": "test-run"}, max_other_figures=2
    )
    assert path == output_dir / "group.html"
    assert path.read_bytes() == first
    assert len(first) < 1_000_000  # 5 figures; ~30 maps with 6 others stay well under 5 MB
    assert not list(output_dir.glob(".tmp-*"))


def test_only_existing_sections(tmp_path):
    (tmp_path / "group").mkdir()
    _tsv(tmp_path / "group" / "desc-excluded_participants.tsv", pd.DataFrame(columns=["participant_id", "reason"]))
    text = write_group_report(tmp_path, settings_summary={}).read_text()
    assert ">Design</h2>" in text and "No participant was excluded." in text
    for title in ("Voxelwise results", "Clinical correlations", "Connectomes"):
        assert title not in text
    assert ">Methods summary</h2>" in text and "<img" not in text


def test_damaged_files_do_not_stop_the_report(tmp_path):
    group = tmp_path / "group"
    group.mkdir()
    (group / "alff_contrast-CLBPvsHC_stat-t_statmap.nii.gz").write_bytes(b"not a nifti")
    (group / "desc-design_participants.tsv").write_bytes(b"\xff\xfe\x00broken")
    text = write_group_report(tmp_path, settings_summary=SETTINGS).read_text()
    assert "Summary of all maps" in text and "unreadable" in text and "cannot be read as NIfTI" in text
    assert ">Methods summary</h2>" in text


def test_headless_chromium(output_dir, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CLBP_REQUIRE_CHROMIUM"):
            pytest.fail("CLBP_REQUIRE_CHROMIUM is set but chromium is not installed (.ci/run installs it)")
        print("chromium not installed (Debian package `chromium`): browser rendering not checked")
        pytest.skip("chromium not installed")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            (output_dir / "group.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 10_000
