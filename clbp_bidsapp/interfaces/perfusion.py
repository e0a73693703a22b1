"""CBF maps on the BOLD grid: load with ``io.aslprep``, normalise with ``core.perfusion``, write maps and QC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits

from clbp_bidsapp.core import connectivity, perfusion, standardize
from clbp_bidsapp.io import aslprep, atlases, derivatives, grey_matter, images, spaces


class _CBFMapsInputSpec(BaseInterfaceInputSpec):
    cbf = File(exists=True, mandatory=True, desc="ASLPrep mean CBF map (mL/100 g/min)")
    cbf_mask = File(exists=True, desc="ASLPrep brain mask of the CBF map")
    qc = File(exists=True, desc="ASLPrep desc-qualitycontrol_cbf.tsv")
    bold_mask = File(
        exists=True,
        desc="brain mask of the participant's BOLD run: the target grid (without it, the "
        "CBF map's own grid and mask: a participant without BOLD)",
    )
    gm_probseg = File(exists=True, desc="grey-matter probability on the BOLD grid")
    space = traits.Str("", usedefault=True, desc="template space: MNI-aligned ones fall back to the template GM")
    variant = traits.Enum(*aslprep.VARIANTS, mandatory=True)
    fwhm = traits.Float(mandatory=True)
    min_qei = traits.Float(mandatory=True)
    gm_range = traits.Tuple(traits.Float, traits.Float, mandatory=True)


class _CBFMapsOutputSpec(TraitedSpec):
    absolute = File(exists=True, desc="CBF on the BOLD grid (mL/100 g/min)")
    absolute_smoothed = File(exists=True)
    relative = File(exists=True, desc="CBF / mean grey-matter CBF")
    relative_smoothed = File(exists=True)
    z = File(exists=True, desc="CBF z-scored within the mask, smoothed (the same for absolute and relative)")
    qc = File(exists=True)
    metadata = File(exists=True, desc="JSON merged into every sidecar")
    grid = File(exists=True, desc="the voxels with a CBF value and the affine (io.images.save_grid)")


class CBFMaps(SimpleInterface):
    """Absolute, relative (/ mean GM CBF) and z CBF maps on the BOLD grid, smoothed, with a QC row."""

    input_spec = _CBFMapsInputSpec
    output_spec = _CBFMapsOutputSpec

    def _run_interface(self, runtime):
        cbf_mask = Path(self.inputs.cbf_mask) if isdefined(self.inputs.cbf_mask) else None
        if isdefined(self.inputs.bold_mask):
            bold_mask, affine = images.load_mask(Path(self.inputs.bold_mask))
        else:  # no BOLD: the CBF map's own grid, within its mask (or where it has a non-zero value)
            bold_mask, affine = aslprep.own_grid(Path(self.inputs.cbf), cbf_mask)
        volume, resampled = aslprep.load_on_grid(Path(self.inputs.cbf), cbf_mask, target_mask=bold_mask,
                                                 target_affine=affine)  # fmt: skip
        mask = bold_mask & np.isfinite(volume)
        values = volume[mask]
        if isdefined(self.inputs.gm_probseg):
            gm, _ = images.load_volume(Path(self.inputs.gm_probseg))
            reference = "grey-matter probability > 0.5 (fMRIPrep, BOLD grid)"
        elif self.inputs.space and spaces.lookup(self.inputs.space).mni_aligned:
            gm = grey_matter.template_grey_matter(mask.shape, affine)
            reference = f"grey-matter probability > 0.5 of {grey_matter.TEMPLATE_NAME} (no participant GM map)"
        else:
            gm, reference = np.ones(mask.shape), "whole brain mask (no grey-matter probability map found)"
        mean_gm = perfusion.mean_tissue_cbf(values, gm[mask])
        qc_file = Path(self.inputs.qc) if isdefined(self.inputs.qc) else None
        quality = aslprep.read_quality(qc_file, self.inputs.variant)
        problem = perfusion.quality_problem(
            mean_gm_cbf=mean_gm, qei=quality["qei"], gm_range=tuple(self.inputs.gm_range), min_qei=self.inputs.min_qei
        )
        relative = perfusion.relative_cbf(values, reference=mean_gm)
        grid = (mask, affine)
        sizes = images.voxel_size(affine)
        cwd = Path(runtime.cwd)
        self._results["grid"] = str(images.save_grid(cwd / "grid.npz", mask, affine))

        def write(name: str, masked: np.ndarray, *, smooth: bool) -> str:
            out = np.zeros(mask.shape, dtype=np.float32)
            out[mask] = np.nan_to_num(masked)
            if smooth:
                out = standardize.smooth_volume(out, mask=mask, fwhm_mm=self.inputs.fwhm, voxel_size_mm=sizes)
            return str(images.save_map(cwd / f"{name}.nii.gz", out[mask], grid))

        self._results["absolute"] = write("absolute", values, smooth=False)
        self._results["absolute_smoothed"] = write("absolute_smoothed", values, smooth=True)
        self._results["relative"] = write("relative", relative, smooth=False)
        self._results["relative_smoothed"] = write("relative_smoothed", relative, smooth=True)
        self._results["z"] = write("z", standardize.zscore_map(values), smooth=True)
        qc = pd.DataFrame([{
            "cbf_variant": self.inputs.variant,
            "mean_gm_cbf": mean_gm,
            "qei": quality["qei"],
            "mean_fd": quality["mean_fd"],
            "resampled": resampled,
            "cbf_voxels": int(mask.sum()),
            "usable": problem is None,
            "reason": problem or "",
        }])  # fmt: skip
        qc_path = cwd / "qc.tsv"
        derivatives.write_tsv(qc_path, qc)
        self._results["qc"] = str(qc_path)
        metadata = {
            "CBFVariant": self.inputs.variant,
            "MeanGreyMatterCBF": round(mean_gm, 4) if np.isfinite(mean_gm) else None,
            "GreyMatterReference": reference,
            "Resampled": (
                f"trilinear from {aslprep.describe_grid(*images.header_grid(Path(self.inputs.cbf)))} to the BOLD grid"
                if resampled else False
            ),
            "QEI": quality["qei"],
            "Usable": problem is None,
            "NotUsableBecause": problem,
        }  # fmt: skip
        derivatives.write_json(cwd / "metadata.json", metadata)
        self._results["metadata"] = str(cwd / "metadata.json")
        return runtime


class _CBFRegionsInputSpec(BaseInterfaceInputSpec):
    absolute = File(exists=True, mandatory=True, desc="absolute CBF on the BOLD grid (unsmoothed)")
    relative = File(exists=True, mandatory=True, desc="relative CBF on the BOLD grid (unsmoothed)")
    grid = File(exists=True, mandatory=True, desc="the voxels with a CBF value (CBFMaps' grid output)")
    atlas = traits.Str(mandatory=True, desc="bundled atlas name or user atlas path; 'seeds' for the seed library")
    seeds = traits.List(traits.Dict, value=[], usedefault=True, desc="rows of the seed library (atlas 'seeds')")


class _CBFRegionsOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class CBFRegions(SimpleInterface):
    """Mean absolute and relative CBF in every region of an atlas (or every seed), with its CBF coverage."""

    input_spec = _CBFRegionsInputSpec
    output_spec = _CBFRegionsOutputSpec

    def _run_interface(self, runtime):
        mask, affine = images.load_grid(Path(self.inputs.grid))  # a CBF of exactly 0 inside it is a value
        absolute, _ = images.load_volume(Path(self.inputs.absolute))
        relative, _ = images.load_volume(Path(self.inputs.relative))
        if self.inputs.atlas == "seeds":
            regions = atlases.seed_regions(pd.DataFrame(self.inputs.seeds), mask, affine)
        else:
            regions = atlases.atlas_regions(self.inputs.atlas, mask, affine)
        table = regions.table()
        table["cbf"] = connectivity.region_means(absolute[mask][None, :], regions.membership)[0]
        table["rcbf"] = connectivity.region_means(relative[mask][None, :], regions.membership)[0]
        path = Path(runtime.cwd) / "regions.tsv"
        derivatives.write_tsv(path, table)
        self._results["out_file"] = str(path)
        return runtime
