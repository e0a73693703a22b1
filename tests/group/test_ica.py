"""Group ICA on a tiny derivatives folder of denoised series with planted Seitzman networks."""

from __future__ import annotations

import json
import logging

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from nilearn import datasets

from clbp_bidsapp.group.ica import NETWORKS_OF_INTEREST, label_components, run_group_ica, spatial_correlations
from clbp_bidsapp.group.maps import load_group_maps
from clbp_bidsapp.io import atlases, derivatives, images

PLANTED = ("DefaultMode", "Visual", "SomatomotorDorsal", "FrontoParietal", "Salience")
N_PARTICIPANTS = 6
N_VOLUMES = 80
N_COMPONENTS = 7  # more than planted: two noise components
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # noise components


def _output_root(path):
    description = derivatives.dataset_description(
        source_description={"Name": "toy"}, source_url="file:///toy", config_hash="0"
    )
    derivatives.initialise_output(path, description)
    return path


def _grid(voxel_mm=8.0):
    """nilearn's bundled MNI brain mask resampled to a coarse grid (keeps CanICA fast)."""
    from nilearn import image

    mni = datasets.load_mni152_brain_mask(resolution=4)
    coarse = image.resample_img(
        mni, target_affine=np.diag([voxel_mm] * 3), interpolation="nearest", copy_header=True, force_resample=True
    )
    return np.asanyarray(coarse.dataobj) > 0, coarse.affine


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """6 participants x 80 volumes, 8 mm grid (sub-02 with two runs); DefaultMode doubled in sub-04..06."""
    out = _output_root(tmp_path_factory.mktemp("ica") / "out")
    mask, affine = _grid()
    _, templates = atlases.network_templates(mask, affine, networks=PLANTED)
    # planted maps: each voxel near a ROI belongs to the network whose template is largest there
    planted_maps = templates * (templates == templates.max(axis=0)) * (templates > 0.3)
    rng = np.random.default_rng(7)
    rows = []
    for i in range(N_PARTICIPANTS):
        label = f"{i + 1:02d}"
        folder = out / f"sub-{label}" / "func"
        for run in range(1, 3 if i == 1 else 2):
            courses = rng.standard_normal((N_VOLUMES, len(PLANTED)))
            if i >= N_PARTICIPANTS // 2:
                courses[:, 0] *= 2.0
            series = courses @ planted_maps + 0.8 * rng.standard_normal((N_VOLUMES, templates.shape[1]))
            volume = images.unmask(series.astype(np.float32), mask)
            name = f"sub-{label}_task-rest_run-{run}_space-MNI152NLin2009cAsym_res-4_desc-denoised_bold.nii.gz"
            derivatives.write_nifti(folder / name, images.make_image(volume, affine, tr=2.0))
        rows.append({"participant_id": label, "group": "CLBP" if i >= 3 else "HC"})
    included = pd.DataFrame(rows)
    result = run_group_ica(included, output_dir=out, n_components=N_COMPONENTS, seed=3, smoothing_fwhm=6.0)
    return out, included, result, planted_maps


def test_components_match_planted_networks(planted):
    _, _, result, _ = planted
    for network in PLANTED:
        index = result.best_component(network)
        assert index is not None, network
        r = result.correlations.iloc[index][network]
        assert r >= 0.5, (network, r)
        assert result.names[index] == f"ic{index + 1:02d}_{network}"


def test_sign_is_flipped_positive(planted):
    _, _, result, templates = planted
    for network in PLANTED:
        index = result.best_component(network)
        component = images.unmask(result.components[index], result.mask)
        # the planted network's peak region carries positive weights
        template = images.unmask(templates[PLANTED.index(network)], result.mask)
        assert component[template > 0].mean() > 0
    # every label's r is the positive maximum of |r| in its row
    r = result.correlations.to_numpy()
    assert np.all(r[np.arange(len(r)), np.abs(r).argmax(axis=1)] >= 0)


def test_outputs_written(planted):
    out, included, result, _ = planted
    group = out / "group"
    table = pd.read_csv(group / "desc-groupica_components.tsv", sep="\t")
    assert list(table["component"]) == result.names
    assert (table["r"] >= table["second_r"].abs() - 1e-6).all()
    assert table["explained_variance"].between(0, 1).all()
    matches = pd.read_csv(group / "desc-groupica_matches.tsv", sep="\t", index_col=0)
    assert matches.shape == (N_COMPONENTS, len(atlases.REFERENCE_NETWORKS))
    np.testing.assert_allclose(matches.to_numpy(), result.correlations.to_numpy(), atol=1e-5)
    sidecar = json.loads((group / "desc-groupica_components.json").read_text())
    assert sidecar["NComponents"] == N_COMPONENTS and sidecar["RandomSeed"] == 3
    assert sidecar["NRuns"] == N_PARTICIPANTS + 1 and sidecar["MaskVoxels"] == int(result.mask.sum())
    group_img = nb.load(group / "desc-groupica_components.nii.gz")
    assert group_img.shape == (*result.mask.shape, N_COMPONENTS)
    for pid in included["participant_id"]:
        path = result.participant_maps[pid]
        assert path == group / "ica" / f"sub-{pid}_desc-groupica_components.nii.gz"
        assert nb.load(path).shape == (*result.mask.shape, N_COMPONENTS)
        meta = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert meta["ComponentNames"] == result.names
        assert meta["Units"] == "arbitrary"  # stage-2 maps of the raw series: BOLD amplitude (was missing)
    assert "Units" not in sidecar  # the group components are CanICA's unitless maps of standardised series
    assert len(result.runs["02"]) == 2


def test_dual_regression_recovers_amplitude(planted):
    _, included, result, templates = planted
    index = result.best_component("DefaultMode")
    core = templates[PLANTED.index("DefaultMode")] > 0
    means = {}
    for pid in included["participant_id"]:
        data, _ = images.load_volume(result.participant_maps[pid], index=index)
        means[pid] = data[result.mask][core].mean()
    low = [means[p] for p in ("01", "02", "03")]
    high = [means[p] for p in ("04", "05", "06")]
    assert min(high) > max(low), means
    # a network without planted differences does not separate the same way
    other = result.best_component("Visual")
    visual = templates[PLANTED.index("Visual")] > 0
    ratio = [images.load_volume(result.participant_maps[p], index=other)[0][result.mask][visual].mean() for p in means]
    assert max(ratio) / min(ratio) < min(high) / max(low)


def test_map_sets(planted):
    _, included, result, _ = planted
    sets = result.map_sets(smoothing_fwhm=6.0)
    assert [s.label for s in sets] == [f"groupica-{n}" for n in NETWORKS_OF_INTEREST]
    first = sets[0]
    assert first.volume == result.best_component("DefaultMode")
    assert first.smoothing_fwhm == 6.0
    assert set(first.maps) == set(included["participant_id"])
    assert all(len(paths) == 1 for paths in first.maps.values())
    # the voxelwise loader reads them: the doubled-DefaultMode participants have the larger maps
    loaded = load_group_maps(first.maps, metric=first.label, volume=first.volume, smoothing_fwhm=first.smoothing_fwhm)
    assert loaded.participants == sorted(included["participant_id"])
    means = loaded.data.mean(axis=1)
    assert means[3:].min() > means[:3].max()


def test_map_sets_skip_unmatched_networks(planted, caplog):
    _, _, result, _ = planted
    # Auditory was not planted: if a noise component is labelled with it, its r is far below 0.5
    with caplog.at_level(logging.WARNING, logger="clbp_bidsapp.group"):
        sets = result.map_sets(["DefaultMode", "Auditory", "CinguloOpercular"], min_r=0.5)
    assert [s.label for s in sets] == ["groupica-DefaultMode"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    # a threshold above the best match drops the network too
    r = result.correlations.iloc[result.best_component("DefaultMode")]["DefaultMode"]
    assert result.map_sets(["DefaultMode"], min_r=r + 0.01) == []


def test_deterministic(planted, tmp_path):
    out, included, result, _ = planted
    # same inputs, same seed, into a fresh output folder: identical components and maps
    copy = _output_root(tmp_path / "out")
    for path in out.glob("sub-*/func/*_bold.nii.gz"):
        target = copy / path.relative_to(out)
        derivatives.copy_file(path, target)
    again = run_group_ica(included, output_dir=copy, n_components=N_COMPONENTS, seed=3, smoothing_fwhm=6.0)
    np.testing.assert_array_equal(again.components, result.components)
    assert again.names == result.names
    for pid in included["participant_id"]:
        a = np.asanyarray(nb.load(result.participant_maps[pid]).dataobj)
        b = np.asanyarray(nb.load(again.participant_maps[pid]).dataobj)
        np.testing.assert_array_equal(a, b)


def test_no_denoised_series_returns_none(tmp_path, caplog):
    out = _output_root(tmp_path / "out")
    included = pd.DataFrame({"participant_id": ["01", "02"]})
    with caplog.at_level(logging.WARNING, logger="clbp_bidsapp.group"):
        assert run_group_ica(included, output_dir=out) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "--save-denoised" in warnings[0].getMessage()


def test_label_components_known_answer():
    rng = np.random.default_rng(0)
    templates = rng.standard_normal((3, 57))
    components = np.stack([-2.0 * templates[2] + 0.1 * rng.standard_normal(57), 0.5 * templates[0]])
    flipped, labels, r = label_components(components, templates, ("A", "B", "C"))
    assert labels == ["C", "A"]
    np.testing.assert_allclose(flipped[0], -components[0])
    np.testing.assert_allclose(flipped[1], components[1])
    expected = np.array([[np.corrcoef(c, t)[0, 1] for t in templates] for c in components])
    np.testing.assert_allclose(spatial_correlations(components, templates), expected, atol=1e-12)
    np.testing.assert_allclose(r, expected * np.array([[-1.0], [1.0]]), atol=1e-12)
