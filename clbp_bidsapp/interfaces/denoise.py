"""The interface that denoises one run as planned by :func:`clbp_bidsapp.denoise_plan.plan_denoising`."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from clbp_bidsapp.config import DenoiseSettings
from clbp_bidsapp.core import denoise as kernels
from clbp_bidsapp.denoise_plan import plan_denoising, provenance_metadata, qc_table
from clbp_bidsapp.io import derivatives, images
from clbp_bidsapp.io.confounds import read_confounds


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    series = File(exists=True, mandatory=True, desc="(time, voxels) .npy of the preprocessed BOLD")
    confounds = File(exists=True, mandatory=True, desc="fMRIPrep desc-confounds_timeseries.tsv")
    confounds_json = File(exists=True, desc="its JSON sidecar (CompCor metadata)")
    tr = traits.Float(mandatory=True)
    settings = traits.Dict(mandatory=True, desc="DenoiseSettings as a plain dict")
    where = traits.Str(mandatory=True, desc="run name for messages")


class _DenoiseOutputSpec(TraitedSpec):
    filtered = File(exists=True, desc="band-passed cleaned series (the unfiltered one without band-pass)")
    unfiltered = File(exists=True, desc="cleaned series without band-pass (for ALFF/fALFF)")
    sample_mask = File(exists=True, desc="(time,) bool .npy, True = retained volume")
    qc = File(exists=True, desc="one-row QC table")
    provenance = File(exists=True, desc="JSON describing the denoising (merged into sidecars)")


class Denoise(SimpleInterface):
    """Confound regression, censoring and band-pass of one run (:func:`clbp_bidsapp.core.denoise.denoise`)."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        from clbp_bidsapp.config import section_from_mapping

        settings = section_from_mapping(DenoiseSettings, self.inputs.settings)
        series = images.load_series(Path(self.inputs.series), mmap=False)
        json_path = Path(self.inputs.confounds_json) if self.inputs.confounds_json else None
        table, metadata = read_confounds(Path(self.inputs.confounds), json_path)
        plan = plan_denoising(
            table,
            metadata,
            settings=settings,
            tr=self.inputs.tr,
            n_volumes=series.shape[0],
            where=self.inputs.where,
        )
        result = kernels.denoise(
            series, confounds=plan.confounds, sample_mask=plan.sample_mask, tr=self.inputs.tr, band=plan.band
        )
        del series
        cwd = Path(runtime.cwd)
        unfiltered = images.save_series(cwd / "unfiltered.npy", result.unfiltered)
        self._results["unfiltered"] = str(unfiltered)
        if result.filtered is not None:
            self._results["filtered"] = str(images.save_series(cwd / "filtered.npy", result.filtered))
        else:
            self._results["filtered"] = str(unfiltered)
        self._results["sample_mask"] = str(images.save_array(cwd / "sample_mask.npy", plan.sample_mask))
        self._results["qc"] = str(derivatives.write_tsv(cwd / "qc.tsv", qc_table(plan.qc)))
        provenance = provenance_metadata(plan, settings=settings)
        self._results["provenance"] = str(derivatives.write_json(cwd / "provenance.json", provenance))
        return runtime
