"""Synthetic raw BIDS + fMRIPrep-style derivatives with resting-state structure and planted CLBP effects.

Shared by the tests, the benchmarks and the demo. Everything comes from installed packages (nilearn's bundled
MNI template, masks, tissue templates and Seitzman-2018 ROI coordinates): nothing is downloaded.

The BOLD signal of each in-mask voxel is a sum of

- resting-state networks: one band-limited (0.01-0.1 Hz) time course per Seitzman network, spread around
  each of the network's ROIs with a Gaussian profile (sigma 6 mm);
- spatially smooth local fluctuations (a low-rank sum of smooth random fields times band-limited series),
  which give ReHo its structure;
- white noise; WM and CSF physiological noise (faster fluctuations weighted by the tissue maps; these are what
  fMRIPrep's csf / white_matter / CompCor regressors capture); a slow drift; a global signal;
- motion artefacts: each voxel's intensity depends linearly on the six motion parameters (which are written to
  the confounds), plus intensity spikes at high-motion volumes (FD > 0.5 mm);
- for patients with ``effects=True``, the planted effects of :data:`PLANTED_EFFECTS`, each changing one property
  and as little else as possible: insula ALFF by multiplying every fluctuation there (signal and noise) by
  ``1 + ALFF_GAIN x pain_vas / 5.5`` (the mean VAS), so ALFF rises with pain (a planted clinical correlation) while
  fALFF, ReHo and FC, which do not depend on scale, stay the same; parahippocampal ReHo by extra band-limited
  fluctuations of the same amplitude in every participant, independent per voxel in controls and one shared time
  course in patients (ReHo up, ALFF the same); mPFC-insula FC by :func:`_plant_coupling`.

The confounds table uses fMRIPrep's column names and is computed from the generated data (global signal,
tissue means, DVARS, CompCor by SVD of WM/CSF voxels, cosine drift basis, outlier one-hot columns), so
denoising strategies resolve and behave as on real data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import ndimage

SPACE = "MNI152NLin2009cAsym"
FD_RADIUS_MM = 50.0
ROI_SIGMA_MM = 6.0


@dataclass(frozen=True)
class PlantedEffect:
    """A CLBP-versus-control difference built into the patients' data."""

    name: str
    metric: str  # "alff", "reho" or "fc"
    centre_mm: tuple[float, float, float]
    radius_mm: float
    partner_centre_mm: tuple[float, float, float] | None = None
    direction: str = "+"


MEAN_PAIN_VAS = 5.5  # patients' VAS is uniform on [3, 8]
PLANTED_EFFECTS: tuple[PlantedEffect, ...] = (
    PlantedEffect("insula_alff", "alff", (36.0, 16.0, 2.0), 10.0),  # right anterior insula (Zhou et al. 2018)
    PlantedEffect("parahippocampal_reho", "reho", (24.0, -30.0, -16.0), 8.0),
    PlantedEffect("mpfc_insula_fc", "fc", (2.0, 52.0, -2.0), 10.0, partner_centre_mm=(36.0, 16.0, 2.0)),
)


@dataclass(frozen=True)
class DatasetInfo:
    """Where the synthetic dataset is and what it holds."""

    root: Path
    fmriprep_dir: Path
    participants: tuple[str, ...]
    space: str
    res: str
    tr: float
    n_volumes: int
    groups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Grid:
    mask: np.ndarray  # 3-D bool brain mask
    affine: np.ndarray
    coords: np.ndarray  # (V, 3) world mm of in-mask voxels
    gm: np.ndarray  # (V,) tissue probabilities
    wm: np.ndarray
    csf: np.ndarray
    template: np.ndarray  # 3-D T1-like image


@cache
def _grid(voxel_size: int) -> _Grid:
    from nilearn import datasets

    mask_img = datasets.load_mni152_brain_mask(resolution=voxel_size)
    mask = np.asanyarray(mask_img.dataobj) > 0
    gm3 = np.asanyarray(datasets.load_mni152_gm_template(resolution=voxel_size).dataobj, dtype=np.float64)
    wm3 = np.asanyarray(datasets.load_mni152_wm_template(resolution=voxel_size).dataobj, dtype=np.float64)
    t1 = np.asanyarray(datasets.load_mni152_template(resolution=voxel_size).dataobj, dtype=np.float64)
    gm3, wm3 = np.clip(gm3 / max(gm3.max(), 1e-9), 0, 1), np.clip(wm3 / max(wm3.max(), 1e-9), 0, 1)
    csf3 = np.where(mask, np.clip(1.0 - gm3 - wm3, 0, 1), 0.0)
    ijk = np.argwhere(mask)
    coords = nb.affines.apply_affine(mask_img.affine, ijk)
    return _Grid(mask, mask_img.affine, coords, gm3[mask], wm3[mask], csf3[mask], t1)


def _band_limited(rng: np.random.Generator, n: int, k: int, tr: float, low: float, high: float) -> np.ndarray:
    """(n, k) unit-variance noise whose spectrum is confined to [low, high] Hz."""
    white = rng.standard_normal((n, k))
    spectrum = np.fft.rfft(white, axis=0)
    freqs = np.fft.rfftfreq(n, d=tr)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, n=n, axis=0)
    out -= out.mean(axis=0)
    sd = out.std(axis=0)
    return out / np.where(sd > 0, sd, 1)


def _sphere(coords: np.ndarray, centre: Sequence[float], radius: float) -> np.ndarray:
    return np.linalg.norm(coords - np.asarray(centre), axis=1) <= radius


@cache
def _network_weights(voxel_size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(V, networks) Gaussian weights of each voxel for each Seitzman network."""
    from nilearn import datasets

    grid = _grid(voxel_size)
    seitz = datasets.fetch_coords_seitzman_2018()
    rois = np.asarray(seitz.rois, dtype=np.float64)
    networks = np.asarray(seitz.networks).astype(str)
    names = tuple(sorted(n for n in set(networks) if n not in ("unassigned", "Unassigned")))
    weights = np.zeros((grid.coords.shape[0], len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        centres = rois[networks == name]
        for start in range(0, grid.coords.shape[0], 20000):
            block = grid.coords[start : start + 20000]
            d2 = ((block[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
            weights[start : start + 20000, j] = np.exp(-d2 / (2 * ROI_SIGMA_MM**2)).sum(1).clip(0, 1)
    return weights, names


def _smooth_fields(rng: np.random.Generator, grid: _Grid, k: int, voxel_size: int) -> np.ndarray:
    """(V, k) spatially smooth random fields (FWHM ~ 8 mm), unit variance in the mask."""
    sigma = 8.0 / 2.3548 / voxel_size
    fields = np.empty((grid.coords.shape[0], k), dtype=np.float32)
    for j in range(k):
        f = ndimage.gaussian_filter(rng.standard_normal(grid.mask.shape), sigma)[grid.mask]
        fields[:, j] = (f - f.mean()) / f.std()
    return fields


def _motion(rng: np.random.Generator, n: int, *, high_motion: bool) -> tuple[np.ndarray, np.ndarray]:
    """Six motion parameters (mm, rad) as a slow random walk plus a few jerks; and their spike volumes."""
    steps = rng.normal(0, [0.015, 0.015, 0.02, 0.0002, 0.0002, 0.0002], (n, 6))
    spikes = np.zeros(n, dtype=bool)
    if high_motion and n > 20:
        picks = rng.choice(np.arange(5, n), size=max(1, n // 40), replace=False)
        spikes[picks] = True
        steps[picks] += rng.normal(0, [0.4, 0.4, 0.5, 0.006, 0.006, 0.006], (picks.size, 6))
    steps[0] = 0
    return np.cumsum(steps, axis=0), spikes


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """Power et al. 2012 FD: sum of absolute backward differences, rotations on a 50 mm sphere; NaN first."""
    diff = np.abs(np.diff(motion, axis=0))
    fd = diff[:, :3].sum(1) + FD_RADIUS_MM * diff[:, 3:].sum(1)
    return np.concatenate([[np.nan], fd])


def _simulate_run(
    rng: np.random.Generator,
    grid: _Grid,
    *,
    voxel_size: int,
    n_volumes: int,
    tr: float,
    patient: bool,
    effects: bool,
    high_motion: bool,
    n_dummy: int,
    pain_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, voxels) float32 BOLD, the motion parameters, and the spike volumes."""
    n, v = n_volumes, grid.coords.shape[0]
    weights, _ = _network_weights(voxel_size)
    nets = _band_limited(rng, n, weights.shape[1], tr, 0.01, 0.1).astype(np.float32)
    signal = (nets @ weights.T) * 6.0  # network fluctuations, ~0.6 % of baseline

    k_local = 24
    fields = _smooth_fields(rng, grid, k_local, voxel_size)
    local_t = _band_limited(rng, n, k_local, tr, 0.01, 0.15).astype(np.float32)
    signal += (local_t @ fields.T) * (4.0 / np.sqrt(k_local)) * grid.gm.astype(np.float32)
    noise = rng.standard_normal((n, v), dtype=np.float32) * 5.0
    reho = next(e for e in PLANTED_EFFECTS if e.metric == "reho")
    region = _sphere(grid.coords, reho.centre_mm, reho.radius_mm)
    shared = patient and effects  # parahippocampal fluctuations: one time course in patients, one per voxel else
    if region.any():
        local = _band_limited(rng, n, 1 if shared else int(region.sum()), tr, 0.01, 0.08).astype(np.float32)
        signal[:, region] += local * np.float32(REHO_AMPLITUDE)
    if patient and effects:
        _plant_coupling(signal, grid)

    physio = _band_limited(rng, n, 2, tr, 0.1, 1 / (2 * tr)).astype(np.float32)
    signal += np.outer(physio[:, 0], grid.wm * 8.0) + np.outer(physio[:, 1], grid.csf * 15.0)
    t = np.linspace(-1, 1, n, dtype=np.float32)
    drift_amp = rng.normal(0, 6.0, v).astype(np.float32)
    signal += np.outer(t + 0.5 * t**2, drift_amp)
    global_t = _band_limited(rng, n, 1, tr, 0.01, 0.1)[:, 0].astype(np.float32)
    signal += global_t[:, None] * 4.0

    motion, spikes = _motion(rng, n, high_motion=high_motion)
    betas = _smooth_fields(rng, grid, 6, voxel_size) * np.float32(6.0)
    scaled = (motion / np.array([1, 1, 1, 0.0174, 0.0174, 0.0174])).astype(np.float32)  # rad -> ~deg
    signal += scaled @ betas.T
    if spikes.any():
        signal[spikes] += rng.normal(25.0, 5.0, (int(spikes.sum()), 1)).astype(np.float32)

    baseline = (600.0 + 500.0 * grid.gm + 250.0 * grid.wm + 350.0 * grid.csf).astype(np.float32)
    fluctuations = signal + noise
    if patient and effects:  # insula ALFF: every fluctuation there x gain, so ReHo and FC (scale-free) keep
        alff = next(e for e in PLANTED_EFFECTS if e.metric == "alff")
        fluctuations[:, _sphere(grid.coords, alff.centre_mm, alff.radius_mm)] *= np.float32(1 + ALFF_GAIN * pain_scale)
    bold = baseline + fluctuations
    if n_dummy:
        bold[:n_dummy] += baseline * np.linspace(0.3, 0.05, n_dummy, dtype=np.float32)[:, None]
    return bold, motion, spikes | (np.arange(n) < n_dummy)


FC_SHARE = 0.8  # share of the mPFC's neural variance taken over by the insula's time course
ALFF_GAIN = 1.5  # insula fluctuations x (1 + ALFF_GAIN x pain_vas / mean VAS) in patients
REHO_AMPLITUDE = 10.0  # band-limited fluctuations in the parahippocampal sphere: independent (HC) or shared (CLBP)


def _mix_in(own: np.ndarray, common: np.ndarray, share: float) -> np.ndarray:
    """``sqrt(1 - share) x own + sqrt(share) x sd(own) x z(common)``: more of ``common``, same variance."""
    common = (common - common.mean()) / common.std()
    return (np.sqrt(1 - share) * own + np.sqrt(share) * common[:, None] * own.std(axis=0)).astype(np.float32)


def _plant_coupling(signal: np.ndarray, grid: _Grid) -> None:
    """mPFC-insula FC: the mPFC takes on part of the insula's neural time course, at unchanged variance.

    The insula, the seed of the tested map, keeps its own time course, so its FC with the rest of the brain is
    unchanged; only insula-mPFC FC rises (and the mPFC's ALFF stays the same).
    """
    fc = next(e for e in PLANTED_EFFECTS if e.metric == "fc")
    partner = _sphere(grid.coords, fc.centre_mm, fc.radius_mm)
    insula = _sphere(grid.coords, fc.partner_centre_mm, fc.radius_mm)
    if partner.any() and insula.any():
        signal[:, partner] = _mix_in(signal[:, partner], signal[:, insula].mean(axis=1), FC_SHARE)


def _confounds(bold: np.ndarray, grid: _Grid, motion: np.ndarray, *, tr: float, n_dummy: int):
    """An fMRIPrep-like confounds table and its JSON metadata, computed from the data."""
    n = bold.shape[0]
    cols: dict[str, np.ndarray] = {}

    def with_expansions(name: str, values: np.ndarray) -> None:
        deriv = np.concatenate([[np.nan], np.diff(values)])
        cols[name] = values
        cols[f"{name}_derivative1"] = deriv
        cols[f"{name}_power2"] = values**2
        cols[f"{name}_derivative1_power2"] = deriv**2

    wm_mask, csf_mask = grid.wm > 0.9, grid.csf > 0.5
    with_expansions("global_signal", bold.mean(1))
    with_expansions("csf", bold[:, csf_mask].mean(1))
    with_expansions("white_matter", bold[:, wm_mask].mean(1))
    with_expansions("csf_wm", bold[:, csf_mask | wm_mask].mean(1))
    names = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
    for j, name in enumerate(names):
        with_expansions(name, motion[:, j])
    fd = framewise_displacement(motion)
    cols["framewise_displacement"] = fd
    diff = np.diff(bold, axis=0)
    dvars = np.sqrt((diff**2).mean(1))
    std_dvars = dvars / np.median(dvars)
    cols["dvars"] = np.concatenate([[np.nan], dvars])
    cols["std_dvars"] = np.concatenate([[np.nan], std_dvars])
    cols["rmsd"] = np.concatenate([[np.nan], np.abs(np.diff(motion[:, :3], axis=0)).sum(1) * 0.7])

    metadata: dict[str, dict] = {}
    detrended = bold - bold.mean(0)
    for prefix, mask_name, voxels, count in (
        ("a_comp_cor", "combined", csf_mask | wm_mask, 10),
        ("c_comp_cor", "CSF", csf_mask, 5),
        ("w_comp_cor", "WM", wm_mask, 5),
    ):
        _compcor(cols, metadata, detrended[:, voxels], prefix, "aCompCor", mask_name, count)
    variance = detrended.var(0)
    top = np.argsort(variance)[-max(50, variance.size // 50) :]
    _compcor(cols, metadata, detrended[:, top], "t_comp_cor", "tCompCor", None, 5)

    n_cos = int(np.floor(2 * n * tr / 128.0))
    times = np.arange(n)
    for k in range(1, n_cos + 1):
        cols[f"cosine{k - 1:02d}"] = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * times + 1) * k / (2 * n))
    for k in range(n_dummy):
        cols[f"non_steady_state_outlier{k:02d}"] = (times == k).astype(float)
    outliers = np.flatnonzero((np.nan_to_num(fd) > 0.5) | (np.nan_to_num(cols["std_dvars"]) > 1.5))
    for k, index in enumerate(outliers):
        cols[f"motion_outlier{k:02d}"] = (times == index).astype(float)
    table = pd.DataFrame(cols)
    for name in table.columns:
        metadata.setdefault(name, {})
    return table, metadata


def _compcor(cols, metadata, data, prefix, method, mask_name, count) -> None:
    u, s, _ = np.linalg.svd(data - data.mean(0), full_matrices=False)
    explained = s**2 / (s**2).sum()
    for k in range(min(count, u.shape[1])):
        name = f"{prefix}_{k:02d}"
        cols[name] = u[:, k]
        entry = {
            "Method": method,
            "SingularValue": float(s[k]),
            "VarianceExplained": float(explained[k]),
            "CumulativeVarianceExplained": float(explained[: k + 1].sum()),
            "Retained": True,
        }
        if mask_name is not None:
            entry["Mask"] = mask_name
        metadata[name] = entry


def _save(img_data: np.ndarray, affine: np.ndarray, path: Path, *, tr: float | None = None, dtype=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nb.Nifti1Image(img_data.astype(dtype) if dtype else img_data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
    img.header.set_qform(affine, code=4)
    img.header.set_sform(affine, code=4)
    nb.save(img, str(path))


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def make_dataset(
    root: Path | str,
    *,
    n_patients: int = 4,
    n_controls: int = 4,
    voxel_size: int = 4,
    n_volumes: int = 60,
    tr: float = 2.0,
    sessions: Sequence[str] = (),
    n_runs: int = 1,
    task: str = "rest",
    effects: bool = True,
    n_sites: int = 1,
    seed: int = 0,
    high_motion: bool = True,
    n_dummy: int = 0,
    space: str = SPACE,
    aslprep: bool = False,
) -> DatasetInfo:
    """Write a raw BIDS dataset at ``root`` and fMRIPrep-like derivatives at ``root/derivatives/fmriprep``.

    Patients come first (``sub-01`` ...), then controls. The same arguments give byte-identical files.
    ``space`` names the derivatives' ``space-`` entity (the grid is always nilearn's MNI grid); ``"native"``
    writes them without ``space-``/``res-``, as fMRIPrep names BOLD-native outputs.
    """
    if voxel_size not in (2, 3, 4):
        raise ValueError("voxel_size must be 2, 3 or 4 (mm)")
    root = Path(root)
    fmriprep = root / "derivatives" / "fmriprep"
    grid = _grid(voxel_size)
    rng = np.random.default_rng(seed)
    labels = [f"{i:02d}" for i in range(1, n_patients + n_controls + 1)]
    groups = {label: ("CLBP" if i < n_patients else "HC") for i, label in enumerate(labels)}

    _json(root / "dataset_description.json", {
        "Name": "clbp-bidsapp synthetic CLBP resting-state dataset",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["clbp-bidsapp synthetic data generator"],
    })  # fmt: skip
    (root / "README").write_text(
        "Synthetic resting-state fMRI dataset made by clbp_bidsapp.testing.synthetic (not real data).\n"
    )
    rows = []
    for i, label in enumerate(labels):
        patient = groups[label] == "CLBP"
        rows.append({
            "participant_id": f"sub-{label}",
            "group": groups[label],
            "age": int(rng.integers(25, 61)),
            "sex": "M" if i % 2 == 0 else "F",
            "pain_vas": round(float(rng.uniform(3, 8)), 1) if patient else 0.0,
            "pain_duration_months": int(rng.integers(12, 121)) if patient else np.nan,
            "site": f"site{i % n_sites + 1}",
        })  # fmt: skip
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    _json(root / "participants.json", {
        "group": {"Description": "diagnosis",
                  "Levels": {"CLBP": "chronic low back pain", "HC": "healthy control"}},
        "age": {"Description": "age at scan", "Units": "year"},
        "sex": {"Description": "sex", "Levels": {"M": "male", "F": "female"}},
        "pain_vas": {"Description": "pain intensity, visual analogue scale 0-10"},
        "pain_duration_months": {"Description": "duration of back pain", "Units": "month"},
        "site": {"Description": "acquisition site"},
    })  # fmt: skip
    _json(fmriprep / "dataset_description.json", {
        "Name": "fMRIPrep - synthetic",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1"}],
        "SourceDatasets": [{"URL": "../../"}],
    })  # fmt: skip
    _json(root / "task-rest_bold.json" if task == "rest" else root / f"task-{task}_bold.json",
          {"TaskName": task, "RepetitionTime": tr})  # fmt: skip

    res = str(voxel_size)
    entities = f"_space-{space}_res-{res}" if space != "native" else ""
    session_list: list[str | None] = list(sessions) or [None]
    pain_of = {row["participant_id"].removeprefix("sub-"): float(row["pain_vas"]) for row in rows}
    for label in labels:
        sub = f"sub-{label}"
        anat = fmriprep / sub / "anat"
        _save(grid.mask.astype(np.uint8), grid.affine, anat / f"{sub}{entities}_desc-brain_mask.nii.gz")
        for tissue, values in (("GM", grid.gm), ("WM", grid.wm), ("CSF", grid.csf)):
            volume = np.zeros(grid.mask.shape, dtype=np.float32)
            volume[grid.mask] = values
            _save(volume, grid.affine, anat / f"{sub}{entities}_label-{tissue}_probseg.nii.gz")
        for s_index, session in enumerate(session_list):
            ses_dir = f"ses-{session}/" if session else ""
            ses_ent = f"_ses-{session}" if session else ""
            if s_index == 0:
                t1 = grid.template[::2, ::2, ::2]
                t1_affine = grid.affine.copy()
                t1_affine[:3, :3] *= 2
                _save(
                    t1,
                    t1_affine,
                    root / sub / ses_dir / "anat" / f"{sub}{ses_ent}_T1w.nii.gz",
                    dtype=np.int16,
                )
            for run in range(1, n_runs + 1):
                run_ent = f"_run-{run}" if n_runs > 1 else ""
                stem = f"{sub}{ses_ent}_task-{task}{run_ent}"
                bold, motion, _ = _simulate_run(
                    rng, grid, voxel_size=voxel_size, n_volumes=n_volumes, tr=tr,
                    patient=groups[label] == "CLBP", effects=effects, high_motion=high_motion,
                    n_dummy=n_dummy, pain_scale=pain_of[label] / MEAN_PAIN_VAS,
                )  # fmt: skip
                func = fmriprep / sub / ses_dir / "func"
                volume = np.zeros((*grid.mask.shape, n_volumes), dtype=np.float32)
                volume[grid.mask] = bold.T
                _save(volume, grid.affine, func / f"{stem}{entities}_desc-preproc_bold.nii.gz", tr=tr)
                _json(func / f"{stem}{entities}_desc-preproc_bold.json",
                      {"RepetitionTime": tr, "SkullStripped": True, "TaskName": task})  # fmt: skip
                _save(grid.mask.astype(np.uint8), grid.affine, func / f"{stem}{entities}_desc-brain_mask.nii.gz")
                table, metadata = _confounds(bold, grid, motion, tr=tr, n_dummy=n_dummy)
                table.to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False,
                             na_rep="n/a", float_format="%.8g")  # fmt: skip
                _json(func / f"{stem}_desc-confounds_timeseries.json", metadata)
                raw = volume[::2, ::2, ::2]
                raw_affine = grid.affine.copy()
                raw_affine[:3, :3] *= 2
                scale = 4000.0 / max(float(raw.max()), 1.0)
                _save(raw * scale, raw_affine, root / sub / ses_dir / "func" / f"{stem}_bold.nii.gz", tr=tr,
                      dtype=np.int16)  # fmt: skip
                _json(
                    root / sub / ses_dir / "func" / f"{stem}_bold.json",
                    {"RepetitionTime": tr, "TaskName": task},
                )
    if aslprep:
        write_aslprep(root / "derivatives" / "aslprep", groups=groups, voxel_size=voxel_size, space=space,
                      sessions=sessions, effects=effects, seed=seed)  # fmt: skip
    return DatasetInfo(
        root=root,
        fmriprep_dir=fmriprep,
        participants=tuple(labels),
        space=space,
        res=res,
        tr=tr,
        n_volumes=n_volumes,
        groups=groups,
    )


# -- ASLPrep-style CBF ------------------------------------------------------------------------------------

ASLPREP_VERSION = "0.7.5"
CBF_TISSUE = {"gm": 60.0, "wm": 25.0, "csf": 8.0}  # mL/100 g/min of pure tissue
CBF_GLOBAL_SD = 0.08  # participants' global CBF factor ~ N(1, 0.08) (haematocrit, caffeine, ...)
CBF_NOISE_SD = 4.0  # mL/100 g/min, white noise plus the same SD of smooth (8 mm FWHM) noise
CBF_GAIN = 0.4  # patients' CBF x (1 + gain) in the concordant region, x (1 - gain) in the discordant one
# the planted CBF effects: up where ALFF is planted up (concordant), down where ReHo is planted up (discordant)
CBF_EFFECTS: dict[str, str] = {"insula_alff": "+", "parahippocampal_reho": "-"}


def cbf_volume(rng: np.random.Generator, grid: _Grid, *, voxel_size: int, patient: bool, effects: bool) -> np.ndarray:
    """(V,) mean CBF (mL/100 g/min) of one participant in the brain mask, with the planted CBF effects."""
    tissue = CBF_TISSUE["gm"] * grid.gm + CBF_TISSUE["wm"] * grid.wm + CBF_TISSUE["csf"] * grid.csf
    factor = 1.0 + CBF_GLOBAL_SD * rng.standard_normal()
    smooth = _smooth_fields(rng, grid, 1, voxel_size)[:, 0].astype(np.float64)
    cbf = factor * tissue + CBF_NOISE_SD * (smooth + rng.standard_normal(tissue.size))
    if patient and effects:
        by_name = {e.name: e for e in PLANTED_EFFECTS}
        for name, direction in CBF_EFFECTS.items():
            effect = by_name[name]
            region = _sphere(grid.coords, effect.centre_mm, effect.radius_mm)
            cbf[region] *= 1 + CBF_GAIN if direction == "+" else 1 - CBF_GAIN
    return cbf


def write_aslprep(
    aslprep: Path,
    *,
    groups: dict[str, str],
    voxel_size: int = 4,
    space: str = SPACE,
    sessions: Sequence[str] = (),
    effects: bool = True,
    seed: int = 0,
) -> Path:
    """ASLPrep-style derivatives: per participant (and session) ``perf/<source>_space-<space>_res-<res>_cbf.nii.gz``
    (mean CBF), ``desc-brain_mask`` and ``desc-qualitycontrol_cbf.tsv`` (ASLPrep's column names, QEI 0.7-0.9).

    Patients (``groups[label] == "CLBP"``) get :data:`CBF_EFFECTS` when ``effects``: a CBF increase where the
    generator plants higher insula ALFF (same sign: concordant) and a decrease where it plants higher
    parahippocampal ReHo (opposite sign: discordant). A separate seeded stream: the BOLD files do not change.
    """
    aslprep = Path(aslprep)
    grid = _grid(voxel_size)
    rng = np.random.default_rng([seed, 16])
    _json(aslprep / "dataset_description.json", {
        "Name": "ASLPrep - synthetic",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "ASLPrep", "Version": ASLPREP_VERSION}],
        "SourceDatasets": [{"URL": "../../"}],
    })  # fmt: skip
    entities = f"_space-{space}_res-{voxel_size}" if space != "native" else ""
    gm = grid.gm > 0.5
    for label, group in sorted(groups.items()):
        for session in list(sessions) or [None]:
            sub = f"sub-{label}"
            folder = aslprep / sub / (f"ses-{session}" if session else "") / "perf"
            stem = f"{sub}_ses-{session}" if session else sub
            values = cbf_volume(rng, grid, voxel_size=voxel_size, patient=group == "CLBP", effects=effects)
            volume = np.zeros(grid.mask.shape, dtype=np.float32)
            volume[grid.mask] = values
            _save(volume, grid.affine, folder / f"{stem}{entities}_cbf.nii.gz")
            _json(folder / f"{stem}{entities}_cbf.json", {"Units": "mL/100 g/min"})
            _save(grid.mask.astype(np.uint8), grid.affine, folder / f"{stem}{entities}_desc-brain_mask.nii.gz")
            qc = pd.DataFrame({
                "mean_fd": [round(float(rng.uniform(0.05, 0.3)), 4)],
                "rmsd": [round(float(rng.uniform(0.02, 0.1)), 4)],
                "qei_cbf": [round(float(rng.uniform(0.7, 0.9)), 4)],
                "mean_gm_cbf": [float(values[gm].mean())],
                "mean_wm_cbf": [float(values[grid.wm > 0.5].mean())],
            })  # fmt: skip
            qc.to_csv(folder / f"{stem}_desc-qualitycontrol_cbf.tsv", sep="\t", index=False, float_format="%.6g")
    return aslprep
