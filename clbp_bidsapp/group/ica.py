"""Group ICA (CanICA; Varoquaux 2010) labelled with reference networks, and dual regression onto its components.

Inputs are the band-passed denoised series that the participant level writes with ``--save-denoised``
(``sub-<label>/func/*_desc-denoised_bold.nii.gz``, retained volumes only), one image per run. The group mask is
the intersection of the voxels that are non-zero at some time point in every run. CanICA
(:class:`nilearn.decomposition.CanICA`: per-run PCA, group PCA / CCA, FastICA with ``n_init`` restarts, seeded)
gives ``n_components`` spatial maps. Each component is labelled with the Seitzman 2018 reference network
(:func:`clbp_bidsapp.io.atlases.network_templates`) whose map has the highest absolute spatial (Pearson,
across group-mask voxels) correlation with it, and its sign is flipped so that this correlation is positive.

Dual regression (Beckmann 2009; Nickerson 2017; :func:`clbp_bidsapp.core.connectivity.dual_regression` with
variance normalisation, FSL's ``des_norm=1``) of every run onto the sign-flipped group components gives
subject-specific maps; runs are averaged per participant. These maps are what the voxelwise group GLM compares
(:meth:`GroupICAResult.map_sets`).

Outputs (under ``<output_dir>/group``):

- ``desc-groupica_components.nii.gz`` (+ ``.json``): the group components (4-D, one volume per component).
- ``desc-groupica_components.tsv``: per component its name, best-matching network and r, the second-best
  network and r, and the variance of the standardised series that the component alone explains.
- ``desc-groupica_matches.tsv``: the full components x networks spatial-correlation matrix.
- ``desc-groupica_mask.nii.gz``: the group mask.
- ``ica/sub-<label>_desc-groupica_components.nii.gz`` (+ ``.json`` with ``ComponentNames``): each
  participant's dual-regression maps, runs averaged, in the order of the group components.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clbp_bidsapp.core import connectivity
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.group.inclusion import Outcome
from clbp_bidsapp.io import atlases, derivatives, images
from clbp_bidsapp.io.progress import progress

LOGGER = logging.getLogger("clbp_bidsapp.group")
NETWORKS_OF_INTEREST = ("DefaultMode", "Salience", "FrontoParietal", "SomatomotorDorsal", "Visual")
PREFIX = "desc-groupica"
MIN_MATCH_R = 0.1  # below this spatial r a component is not taken to be the network it matches best


@dataclass(frozen=True)
class GroupICAResult:
    """Group components, their network labels and every participant's dual-regression maps."""

    components: np.ndarray  # (components, in-mask voxels) float32, sign-flipped
    mask: np.ndarray  # 3-D bool group mask
    affine: np.ndarray
    names: list[str]  # "ic03_DefaultMode" (1-based component number, best-matching network)
    networks: list[str]  # best-matching reference network of each component
    correlations: pd.DataFrame  # components x reference networks, spatial r after the sign flip
    table: pd.DataFrame  # the desc-groupica_components.tsv table
    participant_maps: dict[str, Path]  # participant -> 4-D dual-regression file (volume i = component i)
    runs: dict[str, list[Path]]  # participant -> denoised series used
    files: dict[str, Path] = field(default_factory=dict)

    def component_maps(self, index: int) -> dict[str, tuple[Path, int]]:
        """participant -> (4-D dual-regression file, volume index) of component ``index`` (0-based)."""
        return {pid: (path, index) for pid, path in self.participant_maps.items()}

    def best_component(self, network: str) -> int | None:
        """0-based index of the component labelled ``network`` with the highest r, or None."""
        matches = [i for i, name in enumerate(self.networks) if name == network]
        if not matches:
            return None
        return max(matches, key=lambda i: float(self.correlations.iloc[i][network]))

    def map_sets(self, networks=NETWORKS_OF_INTEREST, *, smoothing_fwhm: float = 0.0, min_r: float = MIN_MATCH_R):
        """Voxelwise :class:`~clbp_bidsapp.group.voxelwise.MapSet` (label ``groupica-<network>``) of the
        best-matching component of each network in ``networks``.

        A network is skipped with a warning when no component is labelled with it, or when its best component
        correlates with the reference map by less than ``min_r`` (such a component is not that network).
        ``smoothing_fwhm`` is applied by the voxelwise loader to each participant's map.
        """
        from clbp_bidsapp.group.voxelwise import MapSet  # lazy: voxelwise may wire this module in

        sets = []
        for network in networks:
            index = self.best_component(network)
            if index is None:
                LOGGER.warning(
                    "group ICA: no component matches the %s network best (labels: %s); not tested",
                    network,
                    ", ".join(self.names),
                )
                continue
            r = float(self.correlations.iloc[index][network])
            if r < min_r:
                LOGGER.warning(
                    "group ICA: the best %s component %s has spatial r = %.2f < %.2f with the reference map; "
                    "not tested",
                    network,
                    self.names[index],
                    r,
                    min_r,
                )
                continue
            description = (
                f"dual-regression map of group ICA component {self.names[index]} (best match {network}, "
                f"spatial r = {r:.2f}; variance-normalised, smoothed {smoothing_fwhm:g} mm)"
            )
            maps = {pid: [path] for pid, path in self.participant_maps.items()}
            sets.append(MapSet(f"groupica-{network}", description, maps, volume=index, smoothing_fwhm=smoothing_fwhm))
        return sets


def find_denoised(output_dir: Path, participants: list[str], *, layout=None) -> dict[str, list[Path]]:
    """Every run's band-passed denoised series per participant (pybids), in one space and resolution.

    When runs exist in several space/resolution combinations, the most common one is used (warned).
    ``layout`` is the output layout to read (default: every file of ``output_dir``).
    """
    from clbp_bidsapp.io.bids import build_output_layout

    layout = build_output_layout(output_dir) if layout is None else layout
    found: dict[str, list[tuple[tuple, Path]]] = {}
    for label in participants:
        for f in layout.get(subject=label, desc="denoised", suffix="bold", extension=".nii.gz"):
            ents = f.get_entities()
            found.setdefault(label, []).append(((ents.get("space"), ents.get("res")), Path(f.path)))
    grids = Counter(key for runs in found.values() for key, _ in runs)
    if len(grids) > 1:
        chosen = max(sorted(grids, key=str), key=lambda k: grids[k])
        LOGGER.warning("group ICA: denoised series in several spaces %s; using space-%s res-%s", dict(grids), *chosen)
        found = {pid: [(k, p) for k, p in runs if k == chosen] for pid, runs in found.items()}
    return {pid: sorted(p for _, p in runs) for pid, runs in sorted(found.items()) if runs}


def group_mask(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Voxels non-zero at some time point in every run (all runs must share one grid)."""
    mask, affine = None, None
    for path in paths:
        run_mask, run_affine = images.nonzero_mask(path)
        if mask is None:
            mask, affine = run_mask, run_affine
        elif run_mask.shape != mask.shape or not np.allclose(run_affine, affine, atol=1e-3):
            raise InputError(
                f"{path}: grid {run_mask.shape} differs from the other runs' {mask.shape}; "
                "all participants must be in the same space and resolution for group ICA"
            )
        else:
            mask &= run_mask
    if mask is None or not mask.any():
        raise InputError("group ICA: the denoised series have no voxel in common")
    return mask, affine


def spatial_correlations(components: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """(components, networks) Pearson correlation across voxels of each component with each template."""
    a = components - components.mean(axis=1, keepdims=True)
    b = templates - templates.mean(axis=1, keepdims=True)
    a_norm = np.linalg.norm(a, axis=1, keepdims=True)
    b_norm = np.linalg.norm(b, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a @ b.T) / (a_norm * b_norm.T)
    return np.nan_to_num(r)


def label_components(
    components: np.ndarray, templates: np.ndarray, network_names: tuple[str, ...]
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Sign-flipped components, the best-matching (highest |r|) network of each and the flipped r matrix."""
    r = spatial_correlations(components, templates)
    best = np.argmax(np.abs(r), axis=1)
    signs = np.sign(r[np.arange(len(r)), best])
    signs[signs == 0] = 1.0
    return components * signs[:, None], [network_names[i] for i in best], r * signs[:, None]


def run_group_ica(
    included: pd.DataFrame,
    *,
    output_dir: Path,
    n_components: int = 20,
    seed: int = 0,
    smoothing_fwhm: float = 6.0,
    layout=None,
    outcome: Outcome | None = None,
) -> GroupICAResult | None:
    """CanICA over the included participants' denoised series, network labels and dual regression.

    Returns None (with one warning) when no participant has a denoised series (``--save-denoised`` not used).
    ``layout`` is the output layout to read (default: every file of ``output_dir``); ``outcome`` records who was
    left out (no denoised series) and whether the ICA ran.
    """
    import nilearn
    from nilearn.decomposition import CanICA

    participants = [str(p).removeprefix("sub-") for p in included["participant_id"]]
    runs = find_denoised(output_dir, participants, layout=layout)
    if not runs:
        LOGGER.warning(
            "group ICA skipped: no denoised series (*_desc-denoised_bold.nii.gz) found for the included "
            "participants; run the participant level with --save-denoised"
        )
        if outcome is not None:
            outcome.not_run("group ICA", "no denoised series; run the participant level with --save-denoised")
        return None
    missing = sorted(set(participants) - set(runs))
    if outcome is not None:
        outcome.exclude(dict.fromkeys(missing, "no denoised series (--save-denoised)"), "group ICA")
    if missing:
        LOGGER.warning("group ICA: no denoised series for %s; left out", ", ".join(f"sub-{p}" for p in missing))
    all_runs = [path for pid in runs for path in runs[pid]]
    mask, affine = group_mask(all_runs)
    folder = output_dir / "group"
    files = {"mask": derivatives.write_nifti(folder / f"{PREFIX}_mask.nii.gz",
                                             images.make_image(mask.astype(np.uint8), affine))}  # fmt: skip

    canica = CanICA(
        mask=str(files["mask"]),
        n_components=n_components,
        smoothing_fwhm=smoothing_fwhm,
        random_state=seed,
        standardize="zscore_sample",
        memory_level=0,
        n_jobs=1,
    )
    with progress(1, label=f"group ICA (CanICA, {n_components} components, {len(all_runs)} runs)") as bar:
        canica.fit([str(p) for p in all_runs])  # one opaque call: the log shows when it ends and how long it took
        bar.update()
    raw = np.asarray(canica.components_, dtype=np.float64)  # (components, in-mask voxels)
    network_names, templates = atlases.network_templates(mask, affine)
    components, labels, r = label_components(raw, templates, network_names)
    names = [f"ic{i + 1:02d}_{label}" for i, label in enumerate(labels)]
    correlations = pd.DataFrame(r, index=pd.Index(names, name="component"), columns=list(network_names))

    # dual regression of every run; runs averaged per participant
    ica_dir = folder / "ica"
    participant_maps: dict[str, Path] = {}
    explained_num = np.zeros(len(components))
    explained_den = 0.0
    sq_norm = (components**2).sum(axis=1)
    for pid, paths in runs.items():
        run_maps = []
        for path in paths:
            series = images.load_masked_run(path, files["mask"]).series.astype(np.float64)
            run_maps.append(connectivity.dual_regression(series, components, normalise=True)[1])
            z = series - series.mean(axis=0)
            scale = z.std(axis=0, ddof=1)
            z /= np.where(scale > 0, scale, 1.0)
            explained_num += ((z @ components.T) ** 2).sum(axis=0) / np.where(sq_norm > 0, sq_norm, 1.0)
            explained_den += float((z**2).sum())
        mean_maps = np.mean(run_maps, axis=0).astype(np.float32)
        path = ica_dir / f"sub-{pid}_{PREFIX}_components.nii.gz"
        derivatives.write_nifti(path, images.make_image(images.unmask(mean_maps, mask), affine))
        derivatives.write_json(
            path.with_name(path.name.removesuffix(".nii.gz") + ".json"),
            {
                "Description": "dual-regression maps (stage 2, variance-normalised stage-1 series) of the group "
                "ICA components, runs averaged",
                "Units": derivatives.output_units("components", {}),  # BOLD amplitude, as the participant level's
                "ComponentNames": names,
                "Runs": [str(p) for p in paths],
                "Sources": [str(folder / f"{PREFIX}_components.nii.gz")],
            },
        )
        participant_maps[pid] = path
    explained = explained_num / explained_den if explained_den > 0 else np.full(len(components), np.nan)

    order = np.argsort(-np.abs(r), axis=1)
    rows = []
    for i, name in enumerate(names):
        best, second = order[i, 0], order[i, 1] if r.shape[1] > 1 else None
        rows.append({
            "component": name,
            "index": i,
            "network": network_names[best],
            "r": r[i, best],
            "second_network": network_names[second] if second is not None else "n/a",
            "second_r": r[i, second] if second is not None else np.nan,
            "explained_variance": explained[i],
        })  # fmt: skip
    table = pd.DataFrame(rows)
    files["components"] = derivatives.write_nifti(
        folder / f"{PREFIX}_components.nii.gz",
        images.make_image(images.unmask(components.astype(np.float32), mask), affine),
    )
    files["table"] = derivatives.write_tsv(folder / f"{PREFIX}_components.tsv", table)
    files["matches"] = derivatives.write_tsv(folder / f"{PREFIX}_matches.tsv", correlations, index=True)
    files["sidecar"] = derivatives.write_json(
        folder / f"{PREFIX}_components.json",
        {
            "Description": "group ICA (nilearn CanICA) of the band-passed denoised series; each component labelled "
            "with the Seitzman 2018 reference network of highest absolute spatial correlation and sign-flipped so "
            "that correlation is positive",
            "Method": "CanICA (Varoquaux 2010), standardize=zscore_sample, do_cca=True, threshold=auto, n_init=10",
            "ComponentNames": names,
            "NComponents": n_components,
            "RandomSeed": seed,
            "SmoothingFWHM": smoothing_fwhm,
            "Participants": sorted(runs),
            "NRuns": len(all_runs),
            "Runs": [str(p) for p in all_runs],
            "MaskVoxels": int(mask.sum()),
            "ReferenceNetworks": list(network_names),
            "ExplainedVariance": "variance of the unsmoothed, voxel-standardised series explained by each "
            "component map alone, pooled over runs",
            "NilearnVersion": nilearn.__version__,
        },
    )
    return GroupICAResult(
        components=components.astype(np.float32),
        mask=mask,
        affine=affine,
        names=names,
        networks=labels,
        correlations=correlations,
        table=table,
        participant_maps=participant_maps,
        runs=runs,
        files=files,
    )
