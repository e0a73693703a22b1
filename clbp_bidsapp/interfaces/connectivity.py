"""Connectivity interfaces: seed FC maps, atlas connectomes, graph measures and dual regression.

Each node reads the band-passed series (memory-mapped ``.npy``) and the grid, builds its regions on that grid
with :mod:`clbp_bidsapp.io.atlases`, calls :mod:`clbp_bidsapp.core` and writes its results in its own folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from clbp_bidsapp.core import connectivity, standardize
from clbp_bidsapp.io import atlases, derivatives, images


def _usable(regions: atlases.RegionSet, min_coverage: float) -> np.ndarray:
    """Regions with at least one in-mask voxel and enough of their voxels in the brain mask."""
    return (regions.in_mask_voxels > 0) & (regions.coverage >= min_coverage)


class _SeriesInputSpec(BaseInterfaceInputSpec):
    series = File(exists=True, mandatory=True, desc="(time, voxels) .npy of the band-passed series")
    grid = File(exists=True, mandatory=True, desc=".npz mask + affine")


class _SeedFCInputSpec(_SeriesInputSpec):
    seeds = traits.List(traits.Dict(traits.Str, traits.Str), mandatory=True, desc="rows of the seed table")
    min_coverage = traits.Float(0.5, usedefault=True)
    fwhm = traits.Float(0.0, usedefault=True, desc="Gaussian FWHM (mm) of the smoothed maps")


class _SeedFCOutputSpec(TraitedSpec):
    fcz = traits.List(File(exists=True), desc="Fisher-z map per seed, in seed order")
    fcz_smoothed = traits.List(File(exists=True), desc="the same, smoothed within the mask")
    timeseries = File(exists=True, desc="TSV: one column per seed")
    regions = File(exists=True, desc="TSV: seed definition, voxels and coverage")
    metadata = traits.List(File(exists=True), desc="JSON sidecar content per seed")


class SeedFC(SimpleInterface):
    """Fisher-z correlation of each seed's mean series with every voxel (:mod:`clbp_bidsapp.core.connectivity`).

    A seed's coverage is the fraction of its voxels that are inside the brain mask and have signal (a finite,
    non-constant series). A seed with too little coverage, or whose mean series is not finite or constant, is
    invalid: it gets an n/a series and a map of NaN, with ``Valid: false`` in the sidecar and ``used`` false in
    the regions table, never a silent zero; the group level leaves such maps out.
    """

    input_spec = _SeedFCInputSpec
    output_spec = _SeedFCOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))
        series = images.load_series(Path(self.inputs.series))
        table = pd.DataFrame(self.inputs.seeds)
        regions = atlases.seed_regions(table, mask, affine)
        with_signal = connectivity.signal_voxels(series, regions.membership)
        coverage = np.where(regions.grid_voxels > 0, with_signal / np.maximum(regions.grid_voxels, 1), 0.0)
        seed_series = connectivity.region_means(series, regions.membership)
        usable = (with_signal > 0) & (coverage >= self.inputs.min_coverage) & connectivity.has_signal(seed_series)
        seed_series[:, ~usable] = np.nan
        z = connectivity.fisher_z(connectivity.seed_correlation(series, seed_series))
        cwd = Path(runtime.cwd)
        fcz, smoothed, metadata = [], [], []
        for index, name in enumerate(regions.labels):
            fcz.append(str(images.save_map(cwd / f"{name}_fcz.nii.gz", z[index], (mask, affine))))
            volume = images.unmask(np.nan_to_num(z[index]), mask)
            smooth = standardize.smooth_volume(
                volume, mask=mask, fwhm_mm=self.inputs.fwhm, voxel_size_mm=images.voxel_size(affine)
            )[mask]
            if not usable[index]:
                smooth[:] = np.nan
            smoothed.append(str(images.save_map(cwd / f"{name}_fcz_smoothed.nii.gz", smooth, (mask, affine))))
            row = table.iloc[index]
            meta = {
                "Seed": {
                    "Name": name,
                    "Definition": (
                        f"atlas {row['atlas']} region {row['atlas_label']}"
                        if row.get("atlas")
                        else f"sphere of radius {row['radius']} mm at MNI ({row['x']}, {row['y']}, {row['z']})"
                    ),
                    "Network": row.get("network", ""),
                    "Source": row.get("source", ""),
                    "VoxelsInMask": int(regions.in_mask_voxels[index]),
                    "VoxelsWithSignal": int(with_signal[index]),
                    "Coverage": round(float(coverage[index]), 4),
                    "CoverageDefinition": "fraction of the seed's voxels inside the brain mask with a finite, "
                    "non-constant denoised series",
                    "MinimumCoverage": self.inputs.min_coverage,
                    "Valid": bool(usable[index]),
                }
            }
            path = cwd / f"{name}_meta.json"
            derivatives.write_json(path, meta)
            metadata.append(str(path))
        self._results["fcz"] = fcz
        self._results["fcz_smoothed"] = smoothed
        timeseries = pd.DataFrame(seed_series, columns=list(regions.labels))
        self._results["timeseries"] = str(derivatives.write_tsv(cwd / "seeds_timeseries.tsv", timeseries))
        regions_table = regions.table().assign(
            signal_voxels=with_signal, signal_coverage=np.round(coverage, 4), used=usable
        )
        self._results["regions"] = str(derivatives.write_tsv(cwd / "seeds_regions.tsv", regions_table))
        self._results["metadata"] = metadata
        return runtime


class _ConnectomeInputSpec(_SeriesInputSpec):
    atlas = traits.Str(mandatory=True, desc="bundled atlas name or path of a dseg NIfTI")
    min_coverage = traits.Float(0.5, usedefault=True)


class _ConnectomeOutputSpec(TraitedSpec):
    timeseries = File(exists=True, desc="TSV: mean series per region (n/a for uncovered regions)")
    regions = File(exists=True, desc="TSV: region, network, centre, voxels, coverage, used")
    pearson = File(exists=True, desc="TSV: Pearson correlation matrix")
    partial = File(exists=True, desc="TSV: partial correlation matrix")
    metadata = File(exists=True)


class Connectome(SimpleInterface):
    """Region mean series of an atlas and their Pearson and partial correlation matrices."""

    input_spec = _ConnectomeInputSpec
    output_spec = _ConnectomeOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))
        series = images.load_series(Path(self.inputs.series))
        regions = atlases.atlas_regions(self.inputs.atlas, mask, affine)
        usable = _usable(regions, self.inputs.min_coverage)
        timeseries = connectivity.region_means(series, regions.membership)
        timeseries[:, ~usable] = np.nan
        names = list(regions.labels)
        cwd = Path(runtime.cwd)
        self._results["timeseries"] = str(
            derivatives.write_tsv(cwd / "timeseries.tsv", pd.DataFrame(timeseries, columns=names))
        )
        self._results["regions"] = str(derivatives.write_tsv(cwd / "regions.tsv", regions.table().assign(used=usable)))
        for key, matrix in (
            ("pearson", connectivity.correlation_matrix(timeseries)),
            ("partial", connectivity.partial_correlation(timeseries)),
        ):
            frame = pd.DataFrame(matrix, index=pd.Index(names, name="region"), columns=names)
            self._results[key] = str(derivatives.write_tsv(cwd / f"{key}.tsv", frame, index=True))
        kind, description, _ = atlases.ATLASES.get(self.inputs.atlas, ("labels", "user atlas", ""))
        metadata = {
            "Atlas": description if self.inputs.atlas in atlases.ATLASES else str(self.inputs.atlas),
            "AtlasKind": kind,
            "Resampling": "nearest neighbour to the BOLD grid" if kind == "labels" else "spheres on the BOLD grid",
            "MinimumCoverage": self.inputs.min_coverage,
            "RegionsExcluded": [n for n, ok in zip(names, usable, strict=True) if not ok],
            "RegionsUsed": int(usable.sum()),
            "PartialCorrelation": "inverse of the Ledoit-Wolf shrunk covariance (nilearn ConnectivityMeasure default)",
        }
        derivatives.write_json(cwd / "metadata.json", metadata)
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime


class _DualRegressionInputSpec(_SeriesInputSpec):
    networks = traits.Str("seitzman", usedefault=True, desc="'seitzman' or path of a 4-D NIfTI")


class _DualRegressionOutputSpec(TraitedSpec):
    components = File(exists=True, desc="4-D stage-2 maps, variance-normalised stage-1 series")
    components_unnormalised = File(exists=True, desc="4-D stage-2 maps without variance normalisation")
    timeseries = File(exists=True, desc="TSV: stage-1 series, one column per network")
    metadata = File(exists=True)


class DualRegression(SimpleInterface):
    """Dual regression (:func:`clbp_bidsapp.core.connectivity.dual_regression`) onto reference networks."""

    input_spec = _DualRegressionInputSpec
    output_spec = _DualRegressionOutputSpec

    def _run_interface(self, runtime):
        grid = Path(self.inputs.grid)
        mask, affine = images.load_grid(grid)
        series = images.load_series(Path(self.inputs.series))
        if self.inputs.networks == "seitzman":
            names, maps = atlases.network_templates(mask, affine)
            source = (
                f"Seitzman 2018 ROIs of each network, Gaussian profile sigma {atlases.NETWORK_SIGMA_MM} mm, "
                "voxelwise maximum over the network's ROIs"
            )
        else:
            names, maps = atlases.user_network_maps(Path(self.inputs.networks), mask, affine)
            source = str(self.inputs.networks)
        cwd = Path(runtime.cwd)
        timecourses, normalised, unnormalised = connectivity.dual_regression_maps(series, maps)
        self._results["components"] = str(images.save_volumes(cwd / "components.nii.gz", normalised, (mask, affine)))
        self._results["components_unnormalised"] = str(
            images.save_volumes(cwd / "components_unnormalised.nii.gz", unnormalised, (mask, affine))
        )
        self._results["timeseries"] = str(
            derivatives.write_tsv(cwd / "timeseries.tsv", pd.DataFrame(timecourses, columns=list(names)))
        )
        metadata = {"ComponentNames": list(names), "ReferenceNetworks": source}
        derivatives.write_json(cwd / "metadata.json", metadata)
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime


class _GraphInputSpec(BaseInterfaceInputSpec):
    relmat = File(exists=True, mandatory=True, desc="TSV correlation matrix with region names")
    regions = File(exists=True, mandatory=True, desc="TSV of the regions (region, network, ...)")
    sparsity = traits.List(traits.Float, minlen=3, maxlen=3, mandatory=True, desc="low, high, step")
    n_random = traits.Int(10, usedefault=True)
    random_seed = traits.Int(0, usedefault=True)


class _GraphOutputSpec(TraitedSpec):
    global_measures = File(exists=True, desc="TSV: one row per density, then the AUC row")
    nodal_measures = File(exists=True, desc="TSV: one row per (density, region), then one AUC row per region")
    metadata = File(exists=True)


def sparsity_range(low: float, high: float, step: float) -> np.ndarray:
    """Densities from ``low`` to ``high`` inclusive in steps of ``step`` (rounded to avoid float drift)."""
    count = int(np.floor((high - low) / step + 1e-9)) + 1
    return np.round(low + step * np.arange(count), 10)


class GraphMeasures(SimpleInterface):
    """Binary graph measures over a density range (:func:`clbp_bidsapp.core.graph.graph_measures`)."""

    input_spec = _GraphInputSpec
    output_spec = _GraphOutputSpec

    def _run_interface(self, runtime):
        from clbp_bidsapp.core import graph

        matrix = pd.read_csv(self.inputs.relmat, sep="\t", index_col=0, na_values="n/a")
        names = list(matrix.columns)
        densities = sparsity_range(*self.inputs.sparsity)
        result = graph.graph_measures(
            matrix.to_numpy(dtype=np.float64),
            sparsities=densities,
            n_random=self.inputs.n_random,
            seed=self.inputs.random_seed,
        )
        table = result.global_table.reset_index()
        table["sparsity"] = [f"{d:.4g}" for d in table["sparsity"]]
        auc_row = {"sparsity": "auc", **result.auc_global}
        table = pd.concat([table, pd.DataFrame([auc_row])], ignore_index=True)
        nodal = result.nodal.copy()
        nodal.insert(0, "region", [names[i] for i in nodal.pop("node")])
        nodal["sparsity"] = [f"{d:.4g}" for d in nodal["sparsity"]]
        auc_nodal = result.auc_nodal.reset_index()
        auc_nodal.insert(0, "region", [names[i] for i in auc_nodal.pop("node")])
        auc_nodal.insert(1, "sparsity", "auc")
        nodal = pd.concat([nodal, auc_nodal], ignore_index=True)
        cwd = Path(runtime.cwd)
        self._results["global_measures"] = str(derivatives.write_tsv(cwd / "global.tsv", table))
        self._results["nodal_measures"] = str(derivatives.write_tsv(cwd / "nodal.tsv", nodal))
        metadata = {
            "RegionsWithData": int(result.kept.sum()),
            "Computed": result.computed,
            **(
                {}
                if result.computed
                else {
                    "NotComputed": f"n/a: only {int(result.kept.sum())} region(s) reached the coverage threshold; "
                    f"graph measures need at least {graph.MIN_NODES}"
                }
            ),
            "Thresholding": "proportional: the strongest positive correlations at each density, binary graphs",
            "Densities": [float(d) for d in densities],
            "RandomNetworks": self.inputs.n_random,
            "RandomNetworkModel": "degree-preserving edge swaps (Maslov & Sneppen 2002)",
            "RandomSeed": self.inputs.random_seed,
            "AUC": "trapezoid rule over the densities",
        }
        derivatives.write_json(cwd / "metadata.json", metadata)
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime
