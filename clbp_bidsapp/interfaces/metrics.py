"""Local-metric interfaces: load the denoised series (memory-mapped), call ``core``, write one map each."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from clbp_bidsapp.core import alff as alff_kernels
from clbp_bidsapp.core import centrality, reho, standardize, vmhc
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import derivatives, grey_matter, images
from clbp_bidsapp.messages import LOGGER_NAME


class _SeriesInputSpec(BaseInterfaceInputSpec):
    series = File(exists=True, mandatory=True, desc="(time, voxels) .npy of the denoised series")
    grid = File(exists=True, mandatory=True, desc=".npz mask + affine")


class _ALFFInputSpec(_SeriesInputSpec):
    sample_mask = File(exists=True, mandatory=True, desc="(volumes,) bool .npy")
    tr = traits.Float(mandatory=True)
    band = traits.Tuple(traits.Float, traits.Float, mandatory=True)


class _ALFFOutputSpec(TraitedSpec):
    alff = File(exists=True)
    falff = File(exists=True)
    metadata = File(exists=True)


class ALFF(SimpleInterface):
    """ALFF and fALFF (:func:`clbp_bidsapp.core.alff.alff_falff`) of the unfiltered denoised series."""

    input_spec = _ALFFInputSpec
    output_spec = _ALFFOutputSpec

    def _run_interface(self, runtime):
        series = images.load_series(Path(self.inputs.series))
        sample_mask = np.load(self.inputs.sample_mask)
        grid = images.load_grid(Path(self.inputs.grid))
        values_alff, values_falff = alff_kernels.alff_falff(
            series, tr=self.inputs.tr, band=tuple(self.inputs.band), sample_mask=sample_mask
        )
        cwd = Path(runtime.cwd)
        self._results["alff"] = str(images.save_map(cwd / "alff.nii.gz", values_alff, grid))
        self._results["falff"] = str(images.save_map(cwd / "falff.nii.gz", values_falff, grid))
        gaps = not alff_kernels.is_contiguous(sample_mask)
        method = "Lomb-Scargle periodogram of the retained volumes" if gaps else "FFT"
        derivatives.write_json(cwd / "metadata.json", {"SpectrumMethod": method})
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime


class _MapOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class _ReHoInputSpec(_SeriesInputSpec):
    neighbourhood = traits.Enum(27, 19, 7, usedefault=True)


class ReHo(SimpleInterface):
    """Kendall's W ReHo (:func:`clbp_bidsapp.core.reho.reho`) of the band-passed, unsmoothed series."""

    input_spec = _ReHoInputSpec
    output_spec = _MapOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))
        values = reho.reho(
            images.load_series(Path(self.inputs.series)), mask=mask, neighbourhood=self.inputs.neighbourhood
        )
        out = Path(runtime.cwd) / "reho.nii.gz"
        self._results["out_file"] = str(images.save_map(out, values, (mask, affine)))
        return runtime


class _VMHCInputSpec(_SeriesInputSpec):
    fwhm = traits.Float(mandatory=True, desc="smoothing of the series before VMHC (mm)")


class _VMHCOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="VMHC map, 0 outside the analysed voxels")
    grid = File(exists=True, desc="the analysed voxels: the brain mask without midline and mirror-less voxels")
    metadata = File(exists=True)


class VMHC(SimpleInterface):
    """Smooth the band-passed series, then VMHC (:func:`clbp_bidsapp.core.vmhc.vmhc`).

    The map is defined on the analysed voxels only (``grid``): voxels on the mid-sagittal plane and voxels whose
    mirror is outside the mask or on that plane are written as non-brain (0) and left out of the standardised maps.
    """

    input_spec = _VMHCInputSpec
    output_spec = _VMHCOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))
        series = images.load_series(Path(self.inputs.series))
        if self.inputs.fwhm > 0:
            series = standardize.smooth_series(
                series, mask=mask, fwhm_mm=self.inputs.fwhm, voxel_size_mm=images.voxel_size(affine)
            )
        mirror = vmhc.mirror_voxels(mask, affine)
        values = vmhc.vmhc(series, mask=mask, affine=affine, mirror=mirror)
        analysed = np.isfinite(values)
        if not analysed.any():
            raise InputError(
                f"{self.inputs.grid}: no brain-mask voxel has a mirror voxel across x = 0 in the mask; "
                "VMHC needs data in an MNI template space (use --space with an MNI template, or --skip vmhc)"
            )
        vmhc_mask = np.zeros_like(mask)
        vmhc_mask[mask] = analysed
        cwd = Path(runtime.cwd)
        vmhc_grid = (vmhc_mask, affine)
        self._results["out_file"] = str(images.save_map(cwd / "vmhc.nii.gz", values[analysed], vmhc_grid))
        self._results["grid"] = str(images.save_grid(cwd / "vmhc_grid.npz", vmhc_mask, affine))
        offsets = mirror.offset_mm[analysed]
        metadata = {
            "VoxelsAnalysed": int(analysed.sum()),
            "VoxelsOnMidline": int(mirror.midline.sum()),
            "VoxelsWithoutMirror": int(mirror.no_mirror.sum()),
            "VoxelsConstant": int((~analysed & (mirror.partner >= 0)).sum()),
            "MaxMirrorOffsetMm": round(float(offsets.max()), 4),
            "NotAnalysed": "voxels straddling x = 0 (their own mirror) and voxels whose mirror is outside the grid "
            "or the brain mask or is itself such a midline voxel are written as 0 and left out of the standardised "
            "maps",
        }
        derivatives.write_json(cwd / "metadata.json", metadata)
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime


class _DCInputSpec(_SeriesInputSpec):
    gm_probseg = File(exists=True, desc="grey-matter probability map on the same grid (optional)")
    threshold = traits.Float(0.25, usedefault=True, desc="r threshold (unless threshold_p > 0)")
    threshold_p = traits.Float(0.0, usedefault=True, desc="one-sided p turned into r with the run's DOF (0: off)")
    qc = File(exists=True, desc="the run's one-row QC table (dof_bandpass), needed with threshold_p")
    resolution = traits.Float(0.0, usedefault=True, desc="coarser voxel size in mm (0: data grid)")
    space = traits.Str("", usedefault=True, desc="--space of the run (picks the grey-matter fallback)")
    max_nodes = traits.Int(centrality.MAX_NODES, usedefault=True, desc="bound on the correlation nodes")


class _DCOutputSpec(TraitedSpec):
    binarized = File(exists=True)
    weighted = File(exists=True)
    grid = File(exists=True, desc="the mask DC was computed in")
    metadata = File(exists=True)


class DegreeCentrality(SimpleInterface):
    """Binarized and weighted degree centrality in grey matter (:mod:`clbp_bidsapp.core.centrality`)."""

    input_spec = _DCInputSpec
    output_spec = _DCOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))
        series = images.load_series(Path(self.inputs.series))
        domain = grey_matter.dc_domain(
            mask,
            affine,
            space=self.inputs.space,
            gm_probseg=Path(self.inputs.gm_probseg) if self.inputs.gm_probseg else None,
            resolution_mm=self.inputs.resolution,
            max_nodes=self.inputs.max_nodes,
        )
        logging.getLogger(LOGGER_NAME).info("%s", domain.summary())
        threshold, threshold_meta = self._threshold()
        gm_series = np.asarray(series[:, domain.mask[mask]])
        binarized, weighted = centrality.coarse_degree_centrality(
            gm_series, mask=domain.mask, factor=domain.factor, threshold=threshold
        )
        cwd = Path(runtime.cwd)
        dc_grid = (domain.mask, affine)
        self._results["binarized"] = str(images.save_map(cwd / "dc_binarized.nii.gz", binarized, dc_grid))
        self._results["weighted"] = str(images.save_map(cwd / "dc_weighted.nii.gz", weighted, dc_grid))
        self._results["grid"] = str(images.save_grid(cwd / "dc_grid.npz", domain.mask, affine))
        derivatives.write_json(cwd / "metadata.json", {**domain.metadata(), **threshold_meta})
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime

    def _threshold(self) -> tuple[float, dict]:
        """The r threshold and how it was chosen (fixed r, or a p with the run's effective DOF)."""
        if self.inputs.threshold_p <= 0:
            return self.inputs.threshold, {"Threshold": self.inputs.threshold, "ThresholdType": "fixed r"}
        qc = pd.read_csv(self.inputs.qc, sep="\t", na_values=["n/a"]).iloc[0]
        dof = float(qc["dof_bandpass"]) if pd.notna(qc["dof_bandpass"]) else float(qc["dof_unfiltered"])
        r = centrality.r_threshold_for_p(self.inputs.threshold_p, dof=dof)
        return r, {
            "Threshold": round(r, 4),
            "ThresholdType": "DOF-matched: one-sided p converted to r with the run's effective degrees of freedom "
            "(r = t / sqrt(t^2 + dof - 1), t the Student t quantile with dof - 1 degrees of freedom)",
            "ThresholdP": self.inputs.threshold_p,
            "ThresholdDegreesOfFreedom": dof,
        }


class _StandardizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw map")
    grid = File(exists=True, mandatory=True, desc="mask the map is defined in")
    fwhm = traits.Float(0.0, usedefault=True, desc="Gaussian FWHM in mm applied after standardisation")


class _StandardizeOutputSpec(TraitedSpec):
    z_file = File(exists=True)
    m_file = File(exists=True)


class Standardize(SimpleInterface):
    """z (mean 0, SD 1) and m (mean 1) versions of a map within its mask, then smoothed."""

    input_spec = _StandardizeInputSpec
    output_spec = _StandardizeOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))
        volume, _ = images.load_volume(Path(self.inputs.in_file))
        values = volume[mask]
        cwd = Path(runtime.cwd)
        for key, transform in (("z_file", standardize.zscore_map), ("m_file", standardize.mean_divide_map)):
            out = np.zeros(mask.shape, dtype=np.float32)
            out[mask] = transform(values)
            smoothed = standardize.smooth_volume(
                out, mask=mask, fwhm_mm=self.inputs.fwhm, voxel_size_mm=images.voxel_size(affine)
            )
            path = cwd / f"{key[0]}.nii.gz"
            self._results[key] = str(images.save_map(path, smoothed[mask], (mask, affine)))
        return runtime
