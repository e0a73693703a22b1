"""The full command line on a small synthetic dataset: participant + group, failures, determinism."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nilearn import signal as nsignal
from scipy.stats import rankdata

from clbp_bidsapp.io.strategies import load_strategy
from tests.integration.common import run_app, tree_digest, with_min_dof

pytestmark = pytest.mark.integration

# Files of the 4-participant test output that bids-validator-deno reports NOT_INCLUDED without .bidsignore: the
# kinds BIDS 1.10 does not define (docs/outputs.md, "Which naming rule each file follows"): 136 files under
# sub-<label>/ and the report sub-<label>.html, per participant, before and after issue #18 (no BIDS 1.10 suffix
# fits a map, a time-series table or a matrix).
NOT_INCLUDED_WITHOUT_BIDSIGNORE = 4 * 137


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return run_app(*with_min_dof(args), timeout=900)


@pytest.fixture(scope="module")
def participant_run(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    before = tree_digest(small_dataset.root)
    result = cli(small_dataset.root, out, "participant", "--nprocs", "2", "-w", out.parent / "work")
    assert result.returncode == 0, result.stderr
    assert tree_digest(small_dataset.root) == before, "the input dataset was written"
    return out, result


def test_participant_outputs(small_dataset, participant_run):
    out, result = participant_run
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "clbp-bidsapp"
    assert len(desc["ConfigHash"]) == 16
    assert (out / ".bidsignore").is_file()
    assert len(list((out / "logs").glob("config-*.toml"))) == 1
    for label in small_dataset.participants:
        func = out / f"sub-{label}" / "func"
        prefix = f"sub-{label}_task-rest_space-{small_dataset.space}_res-{small_dataset.res}"
        tsnr = func / f"{prefix}_stat-tsnr_boldmap.nii.gz"
        sidecar = json.loads(tsnr.with_name(tsnr.name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Sources"][0].startswith("bids:fmriprep:")
        img = nb.load(tsnr)
        bold = nb.load(next((small_dataset.fmriprep_dir / f"sub-{label}" / "func").glob("*preproc_bold.nii.gz")))
        assert img.shape == bold.shape[:3]
        np.testing.assert_allclose(img.affine, bold.affine)
        values = np.asanyarray(img.dataobj)
        assert np.isfinite(values).all() and values.max() > 1
    assert "4 participant(s) succeeded, 0 failed" in result.stderr


def test_participant_outputs_pass_the_bids_validator(participant_run):
    out, _ = participant_run
    exe = shutil.which("bids-validator-deno") or str(Path(sys.executable).parent / "bids-validator-deno")
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    done = subprocess.run([exe, str(out), "--format", "json"], capture_output=True, text=True, timeout=300)
    errors = [i for i in json.loads(done.stdout)["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors[:5]


def bidsignored(root: Path, patterns: str) -> list[str]:
    """Files under ``root`` that .bidsignore ``patterns`` hide (a name pattern anywhere, or a folder's contents)."""
    rules = [line for line in patterns.splitlines() if line.strip() and not line.startswith("#")]
    hidden = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = path.relative_to(root).parts
        if any(fnmatch.fnmatch(parts[-1], rule) or rule in parts[:-1] for rule in rules):
            hidden.append("/".join(parts))
    return hidden


def test_without_bidsignore_only_what_bids_lacks_is_not_included(participant_run, tmp_path):
    """The validator, run without .bidsignore, reports as NOT_INCLUDED exactly the participant files .bidsignore
    hides (kinds BIDS 1.10 does not define: maps, time series, matrices, QC tables, reports), and nothing else."""
    from clbp_bidsapp.io.derivatives import BIDSIGNORE

    out, _ = participant_run
    exe = shutil.which("bids-validator-deno") or str(Path(sys.executable).parent / "bids-validator-deno")
    if not Path(exe).exists():
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    bare = tmp_path / "out"
    shutil.copytree(out, bare, ignore=shutil.ignore_patterns("work", "logs", "group"))
    (bare / ".bidsignore").unlink()
    done = subprocess.run([exe, str(bare), "--format", "json"], capture_output=True, text=True, timeout=300)
    errors = [i for i in json.loads(done.stdout)["issues"]["issues"] if i["severity"] == "error"]
    assert [i for i in errors if i["code"] != "NOT_INCLUDED"] == []
    not_included = sorted(i["location"].lstrip("/") for i in errors)
    assert not_included == sorted(bidsignored(bare, BIDSIGNORE))
    assert len(not_included) == NOT_INCLUDED_WITHOUT_BIDSIGNORE


def test_every_map_has_its_name_and_sidecar(small_dataset, participant_run):
    out, _ = participant_run
    func = out / "sub-01" / "func"
    prefix = f"sub-01_task-rest_space-{small_dataset.space}_res-{small_dataset.res}"
    expected = [f"{prefix}_{ents}_boldmap" for ents in (
        "stat-alff", "stat-falff", "stat-reho", "stat-vmhc", "stat-dc_desc-binarized", "stat-dc_desc-weighted",
        "stat-alff_desc-z", "stat-alff_desc-m", "stat-falff_desc-z", "stat-falff_desc-m", "stat-reho_desc-z",
        "stat-reho_desc-m", "stat-vmhc_desc-z", "stat-vmhc_desc-m", "stat-dc_desc-binarizedZ",
        "stat-dc_desc-binarizedM", "stat-dc_desc-weightedZ", "stat-dc_desc-weightedM", "stat-mean",
        "stat-tsnr")]  # fmt: skip
    for stem in expected:
        assert (func / f"{stem}.nii.gz").is_file(), stem
        sidecar = json.loads((func / f"{stem}.json").read_text())
        assert sidecar["Description"] and sidecar["Sources"], stem
        if "stat-mean" not in stem and "stat-tsnr" not in stem:
            assert sidecar["Denoising"]["Strategy"] == "24P", stem
        if "desc-z" in stem or "Z_stat" in stem:
            z = np.asanyarray(nb.load(func / f"{stem}.nii.gz").dataobj)
            assert sidecar["Standardization"].startswith("z-scored")
            assert abs(z[z != 0].mean()) < 0.3 and 0.3 < z[z != 0].std() < 1.2, stem  # smoothed z map
    assert json.loads((func / f"{prefix}_stat-reho_boldmap.json").read_text())["Neighbourhood"] == 27
    assert json.loads((func / f"{prefix}_stat-dc_desc-weighted_boldmap.json").read_text())["Threshold"] == 0.25
    assert (out / "sub-01.html").is_file()


def test_group_level(small_dataset, participant_run):
    out, _ = participant_run
    # 2 + 2 participants cannot carry the default covariates: the design must say so, then run without them
    refused = cli(small_dataset.root, out, "group", "--n-permutations", "200")
    assert refused.returncode == 3 and "participants; use fewer --covariates" in refused.stderr
    result = cli(small_dataset.root, out, "group", "--n-permutations", "200", "--covariates")
    assert result.returncode == 0, result.stderr
    design = pd.read_csv(out / "group" / "desc-design_participants.tsv", sep="\t", dtype={"participant_id": str})
    assert sorted(design["participant_id"]) == sorted(small_dataset.participants)
    assert set(design["group"]) == {"CLBP", "HC"}
    for metric in ("alff", "falff", "reho", "vmhc", "dc"):
        assert (out / "group" / f"{metric}_contrast-CLBPvsHC_stat-t_statmap.nii.gz").is_file()
        assert (out / "group" / f"{metric}_contrast-CLBPvsHC_desc-clusters_table.tsv").is_file()


def test_rerun_is_byte_identical(small_dataset, participant_run, tmp_path):
    out, _ = participant_run
    again = tmp_path / "again"
    result = cli(small_dataset.root, again, "participant", "--nprocs", "1", "-w", tmp_path / "work")
    assert result.returncode == 0, result.stderr

    def outputs(root):
        return {k: v for k, v in tree_digest(root).items() if not k.startswith(("logs", "work", "group"))}

    assert outputs(again) == outputs(out)


def test_killed_run_resumes_to_identical_outputs(small_dataset, participant_run, tmp_path):
    """SIGKILL mid-run: no partial file under a final name; the rerun with the same work dir finishes identically."""
    out, work = tmp_path / "out", tmp_path / "work"
    command = [sys.executable, "-m", "clbp_bidsapp.cli", small_dataset.root, out, "participant", "--nprocs", "2",
               "--min-dof", "0"]  # fmt: skip
    process = subprocess.Popen(
        [*map(str, command), "-w", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the MultiProc workers too
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not list(out.glob("sub-*/func/*.nii.gz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    reference = {k: v for k, v in tree_digest(participant_run[0]).items() if k.startswith("sub-")}
    at_kill = {k: v for k, v in tree_digest(out).items() if k.startswith("sub-")}
    final_names = {k: v for k, v in at_kill.items() if not Path(k).name.startswith(".tmp-")}
    assert final_names, "nothing was written before the kill"
    assert len(final_names) < len(reference), "the run had finished before the kill"
    assert {k: reference.get(k) for k in final_names} == final_names, "a final name holds a partial or wrong file"

    result = cli(small_dataset.root, out, "participant", "--nprocs", "2", "-w", work)
    assert result.returncode == 0, result.stderr
    assert {k: v for k, v in tree_digest(out).items() if k.startswith("sub-")} == reference


def test_one_failing_participant_does_not_stop_the_others(small_dataset, tmp_path):
    broken = tmp_path / "bids"
    shutil.copytree(small_dataset.root, broken)
    label = small_dataset.participants[0]
    bold = next((broken / "derivatives" / "fmriprep" / f"sub-{label}" / "func").glob("*preproc_bold.nii.gz"))
    data = bold.read_bytes()
    bold.write_bytes(data[: len(data) // 3])  # truncated file: header readable, data not
    result = cli(broken, tmp_path / "out", "participant", "-w", tmp_path / "work")
    assert result.returncode == 1, result.stderr
    assert f"FAILED  sub-{label}" in result.stderr
    assert "Traceback" not in result.stderr
    for other in small_dataset.participants[1:]:
        assert f"ok      sub-{other}" in result.stderr


def test_maps_equal_their_definitions_on_nilearn_cleaned_data(small_dataset, tmp_path):
    """End to end: the written ALFF/fALFF/ReHo/seed-FC maps equal the definitions applied to nilearn-cleaned data."""
    out = tmp_path / "out"
    result = cli(small_dataset.root, out, "participant", "--participant-label", "01", "--fd-thresh", "0",
                 "--skip", "vmhc", "dc", "tsnr", "report", "graph", "dualreg", "--seeds", "pcc", "thalamusL",
                 "--atlases", "aal", "-w", tmp_path / "work")  # fmt: skip
    assert result.returncode == 0, result.stderr
    func = small_dataset.fmriprep_dir / "sub-01" / "func"
    bold = nb.load(next(func.glob("*preproc_bold.nii.gz")))
    mask = np.asanyarray(nb.load(next(func.glob("*brain_mask.nii.gz"))).dataobj) > 0
    series = np.asanyarray(bold.dataobj)[mask].T.astype(np.float64)
    table = pd.read_csv(func / "sub-01_task-rest_desc-confounds_timeseries.tsv", sep="\t", na_values="n/a")
    patterns = load_strategy("24P").columns
    columns = [c for p in patterns for c in table.columns if fnmatch.fnmatchcase(c, p)]
    confounds = table[columns].fillna(0).to_numpy()
    common = dict(detrend=True, standardize=None, confounds=confounds, standardize_confounds=True, t_r=2.0)
    unfiltered = nsignal.clean(series.copy(), filter=False, **common)
    filtered = nsignal.clean(series.copy(), filter="butterworth", high_pass=0.01, low_pass=0.08, **common)

    def written(stat):
        name = f"sub-01_task-rest_space-{small_dataset.space}_res-{small_dataset.res}_stat-{stat}_boldmap.nii.gz"
        return np.asanyarray(nb.load(out / "sub-01" / "func" / name).dataobj)[mask]

    n = unfiltered.shape[0]
    amplitude = 2 * np.abs(np.fft.rfft(unfiltered, axis=0))[1:] / n
    freqs = np.fft.rfftfreq(n, d=2.0)[1:]
    band = (freqs >= 0.01) & (freqs <= 0.08)
    np.testing.assert_allclose(written("alff"), amplitude[band].mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(written("falff"), amplitude[band].sum(0) / amplitude.sum(0), rtol=1e-3, atol=1e-4)

    # ReHo of a few voxels by the definition (27 neighbours, ranks with ties averaged)
    volume = np.zeros((*mask.shape, n))
    volume[mask] = filtered.T
    reho = written("reho")
    indices = np.argwhere(mask)
    rng = np.random.default_rng(0)
    for index in rng.choice(len(indices), size=25, replace=False):
        i, j, k = indices[index]
        ranks = [
            rankdata(volume[a, b, c])
            for a in (i - 1, i, i + 1)
            for b in (j - 1, j, j + 1)
            for c in (k - 1, k, k + 1)
            if mask[a, b, c]
        ]
        big_k = len(ranks)
        s = ((np.sum(ranks, axis=0) - big_k * (n + 1) / 2) ** 2).sum()
        assert reho[index] == pytest.approx(12 * s / (big_k**2 * (n**3 - n)), abs=2e-3)

    # seed FC: the PCC seed is the 6 mm sphere around (-5, -49, 40); its mean series and Fisher z map
    prefix = out / "sub-01" / "func" / f"sub-01_task-rest_space-{small_dataset.space}_res-{small_dataset.res}"
    world = nb.affines.apply_affine(bold.affine, np.argwhere(mask))
    in_seed = ((world - np.array([-5, -49, 40])) ** 2).sum(axis=1) <= 36
    seed_series = filtered[:, in_seed].mean(axis=1)
    written_series = pd.read_csv(f"{prefix}_stat-mean_desc-seeds_timeseries.tsv", sep="\t")
    np.testing.assert_allclose(written_series["pcc"], seed_series, rtol=1e-4, atol=1e-4)
    fcz = np.asanyarray(nb.load(f"{prefix}_stat-fcz_desc-pcc_boldmap.nii.gz").dataobj)[mask]
    r = np.array([np.corrcoef(seed_series, filtered[:, v])[0, 1] for v in range(0, mask.sum(), 97)])
    np.testing.assert_allclose(fcz[::97], np.arctanh(np.clip(r, -1 + 1e-7, 1 - 1e-7)), atol=2e-3)
    # connectome: the Pearson matrix is the correlation of the written region series
    atlas_prefix = prefix.with_name(prefix.name.replace("_res-", "_atlas-aal_res-"))  # BIDS: atlas before res
    regions = pd.read_csv(f"{atlas_prefix}_stat-mean_timeseries.tsv", sep="\t", na_values="n/a")
    relmat = pd.read_csv(f"{atlas_prefix}_stat-pearsoncorrelation_relmat.tsv", sep="\t", index_col=0,
                         na_values="n/a")  # fmt: skip
    assert list(relmat.columns) == list(regions.columns) == list(relmat.index)
    np.testing.assert_allclose(relmat.to_numpy(), regions.corr().to_numpy(), atol=1e-4)


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """One participant with 240 volumes (8 min): long enough for stable correlations after 24P and band-pass."""
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = tmp_path_factory.mktemp("long")
    dataset = make_dataset(root / "bids", n_patients=1, n_controls=1, voxel_size=4, n_volumes=240, tr=2.0, seed=11)
    out = root / "out"
    result = cli(dataset.root, out, "participant", "--participant-label", "01", "--skip", "alff", "reho", "vmhc",
                 "dc", "tsnr", "report", "--atlases", "seitzman300", "--graph-random-networks", "5",
                 "-w", root / "work", "--nprocs", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dataset, out


def test_connectivity_finds_the_planted_networks(long_run):
    """Seed FC, the Seitzman connectome, graph measures and dual regression recover the planted networks."""
    from clbp_bidsapp.io import atlases

    dataset, out = long_run
    prefix = out / "sub-01" / "func" / f"sub-01_task-rest_space-{dataset.space}_res-{dataset.res}"
    seitzman_prefix = (
        out / "sub-01" / "func" / f"sub-01_task-rest_space-{dataset.space}_atlas-seitzman300_res-{dataset.res}"
    )
    mask_img = nb.load(next((dataset.fmriprep_dir / "sub-01" / "func").glob("*brain_mask.nii.gz")))
    mask = np.asanyarray(mask_img.dataobj) > 0
    seitzman = atlases.atlas_regions("seitzman300", mask, mask_img.affine)
    network_of = np.array(seitzman.networks)

    # seeds placed on a network's ROI correlate with that network's ROIs more than with the other networks' ROIs
    # (on average: the generator's networks interdigitate, e.g. salience and cingulo-opercular ROIs in the insula)
    for seed, network in (("insulaAntL", "Salience"), ("s1TrunkR", "SomatomotorDorsal"), ("mpfc", "DefaultMode")):
        fcz = np.asanyarray(nb.load(f"{prefix}_stat-fcz_desc-{seed}_boldmap.nii.gz").dataobj)[mask]
        roi_means = np.nan_to_num(fcz) @ seitzman.membership.T.toarray() / np.maximum(seitzman.in_mask_voxels, 1)
        own = roi_means[network_of == network].mean()
        others = roi_means[(network_of != network) & (network_of != "unassigned")]
        assert own > others.mean() + 0.1, (seed, network, own, others.mean())
        assert own > roi_means[network_of == "Visual"].mean() + 0.1, (seed, network)

    # the connectome: correlations within networks exceed those between networks
    relmat = pd.read_csv(f"{seitzman_prefix}_stat-pearsoncorrelation_relmat.tsv", sep="\t", index_col=0,
                         na_values="n/a").to_numpy()  # fmt: skip
    assigned = network_of != "unassigned"
    same = (network_of[:, None] == network_of[None, :]) & assigned[:, None] & assigned[None, :]
    np.fill_diagonal(same, False)
    different = (network_of[:, None] != network_of[None, :]) & assigned[:, None] & assigned[None, :]
    assert np.nanmean(relmat[same]) > np.nanmean(relmat[different]) + 0.2
    regions = pd.read_csv(f"{seitzman_prefix}_regions.tsv", sep="\t")
    assert {"region", "network", "coverage", "used"} <= set(regions.columns)

    # graph measures: one row per density plus the AUC row; modular networks make a small world
    graph = pd.read_csv(f"{seitzman_prefix}_stat-graph_measures.tsv", sep="\t")
    assert len(graph) == 37 and graph["sparsity"].iloc[-1] == "auc"
    per_density = graph.iloc[:-1].astype({"sigma": float, "gamma": float, "lcc_fraction": float})
    assert (per_density["gamma"] > 1).all(), "clustering above that of degree-preserving random networks"
    connected = per_density["lcc_fraction"] == 1
    assert connected.sum() >= 10 and (per_density.loc[connected, "sigma"] > 1).all()
    nodal = pd.read_csv(f"{seitzman_prefix}_stat-nodal_measures.tsv", sep="\t")
    assert set(nodal["region"]) == set(regions["region"]) and len(nodal) == 37 * len(regions)

    # dual regression: each network's subject map resembles its own template most
    names, templates = atlases.network_templates(mask, mask_img.affine)
    components = np.asanyarray(nb.load(f"{prefix}_desc-dualreg_components.nii.gz").dataobj)[mask].T
    sidecar = json.loads(Path(f"{prefix}_desc-dualreg_components.json").read_text())
    assert sidecar["ComponentNames"] == list(names)
    similarity = np.corrcoef(components, templates)[: len(names), len(names) :]
    assert (similarity.argmax(axis=1) == np.arange(len(names))).mean() >= 0.75


def test_manifest_records_outputs_and_inputs_and_verify_finds_changes(small_dataset, participant_run, tmp_path):
    out, _ = participant_run
    manifest = json.loads((out / "logs" / "manifest.json").read_text())
    assert manifest["Software"]["Name"] == "clbp-bidsapp" and "nilearn" in manifest["Software"]["Dependencies"]
    assert any(name.endswith("_stat-reho_boldmap.nii.gz") for name in manifest["Outputs"])
    bold = next((small_dataset.fmriprep_dir / "sub-01" / "func").glob("*preproc_bold.nii.gz"))
    assert manifest["Inputs"][str(bold.resolve())] == hashlib.sha256(bold.read_bytes()).hexdigest()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("work"))
    verify = [sys.executable, "-m", "clbp_bidsapp.cli.verify"]
    same = subprocess.run([*verify, str(copy)], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    changed = next(copy.glob("sub-01/func/*_stat-reho_boldmap.json"))
    changed.write_text(changed.read_text() + " ")
    (copy / "sub-01" / "func" / "extra.tsv").write_text("x\n")
    differs = subprocess.run([*verify, str(copy), "--outputs-only"], capture_output=True, text=True)
    assert differs.returncode == 1
    assert f"changed output: {changed.relative_to(copy)}" in differs.stdout
    assert "output not in the manifest: sub-01/func/extra.tsv" in differs.stdout
    missing = subprocess.run([*verify, str(tmp_path)], capture_output=True, text=True)
    assert missing.returncode == 2 and "manifest.json not found" in missing.stderr


def test_saved_config_replays_the_run(small_dataset, participant_run, tmp_path):
    """A run's logs/config-*.toml reproduces its outputs byte for byte; --skip and --clean-workdir act."""
    out, _ = participant_run
    configs = sorted((out / "logs").glob("config-*.toml"))
    saved = next(p for p in configs if 'analysis_level = "participant"' in p.read_text())
    replay = tmp_path / "replay"
    result = cli(small_dataset.root, replay, "participant", "--config-file", saved, "-w", tmp_path / "work",
                 "--clean-workdir", "--skip", "dc", "vmhc", "report")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "work").exists()
    produced = {k: v for k, v in tree_digest(replay).items() if not k.startswith("logs")}
    original = tree_digest(out)
    assert produced and all(original[k] == v for k, v in produced.items())  # dataset_description.json too
    assert not any("stat-dc" in k or "stat-vmhc" in k for k in produced)
    assert not any(k.endswith(".html") for k in produced)
