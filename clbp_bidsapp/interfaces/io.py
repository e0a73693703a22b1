"""Nipype interfaces that load runs and write derivatives (all file work delegated to ``io``)."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from clbp_bidsapp.io import derivatives, images


class _LoadRunInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="preprocessed 4-D BOLD")
    mask = File(exists=True, mandatory=True, desc="brain mask on the BOLD grid")


class _LoadRunOutputSpec(TraitedSpec):
    series = File(exists=True, desc="(time, voxels) float32 .npy of in-mask voxels")
    grid = File(exists=True, desc=".npz with the mask and affine")


class LoadRun(SimpleInterface):
    """Read the BOLD once (the only gzip read of the run) and keep its in-mask series uncompressed."""

    input_spec = _LoadRunInputSpec
    output_spec = _LoadRunOutputSpec

    def _run_interface(self, runtime):
        run = images.load_masked_run(Path(self.inputs.bold), Path(self.inputs.mask))
        cwd = Path(runtime.cwd)
        self._results["series"] = str(images.save_series(cwd / "series.npy", run.series))
        self._results["grid"] = str(images.save_grid(cwd / "grid.npz", run.mask, run.affine))
        return runtime


class _DerivativeSinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="file to publish")
    output_dir = Directory(mandatory=True, desc="derivatives root")
    source_name = traits.Str(mandatory=True, desc="BIDS prefix of the run, e.g. sub-01_task-rest")
    subject = traits.Str(mandatory=True)
    session = traits.Either(None, traits.Str, default=None, usedefault=True)
    entities = traits.Dict(traits.Str, traits.Any, value={}, usedefault=True, desc="space, res, atlas, desc, stat")
    suffix = traits.Str(mandatory=True)
    extension = traits.Str(".nii.gz", usedefault=True)
    datatype = traits.Str("func", usedefault=True, desc="folder under sub-<label>[/ses-<label>] (func, perf)")
    metadata = traits.Dict(traits.Str, traits.Any, value={}, usedefault=True, desc="sidecar content")
    metadata_files = traits.List(
        File(exists=True),
        value=[],
        usedefault=True,
        desc="JSON files merged into the sidecar (after `metadata`)",
    )
    metadata_file = File(exists=True, desc="one more JSON file merged last (e.g. the producing node's)")


class _DerivativeSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True)
    out_sidecar = traits.Either(None, File(exists=True))


class DerivativeSink(SimpleInterface):
    """Copy a result under its BIDS-derivatives name, atomically, with its JSON sidecar.

    A publishing interface: :meth:`published_files` lists what it writes under the output folder, and the
    participant graph runs it on every run (its copy is cheap), so outputs deleted since the last run are
    written again from the cached results.
    """

    input_spec = _DerivativeSinkInputSpec
    output_spec = _DerivativeSinkOutputSpec

    def destination(self) -> tuple[Path, Path]:
        """The final paths of the data file and of its JSON sidecar (from the static inputs only)."""
        name = derivatives.derivative_name(
            self.inputs.source_name,
            suffix=self.inputs.suffix,
            extension=self.inputs.extension,
            **dict(self.inputs.entities),
        )
        ents = {"subject": self.inputs.subject, "session": self.inputs.session}
        out = derivatives.subject_dir(Path(self.inputs.output_dir), ents, self.inputs.datatype) / name
        return out, out.with_name(name[: -len(self.inputs.extension)] + ".json")

    def published_files(self) -> list[Path]:
        """Every file this sink writes whatever its connected inputs: the data and, with metadata, the sidecar."""
        out, sidecar = self.destination()
        return [out, sidecar] if self.inputs.metadata else [out]

    def _run_interface(self, runtime):
        final, sidecar = self.destination()
        out = derivatives.copy_file(Path(self.inputs.in_file), final)
        self._results["out_file"] = str(out)
        metadata = dict(self.inputs.metadata)
        extras = list(self.inputs.metadata_files)
        if isdefined(self.inputs.metadata_file):
            extras.append(self.inputs.metadata_file)
        for extra in extras:
            metadata.update(json.loads(Path(extra).read_text()))
        if metadata:
            metadata = {**derivatives.bids_metadata(self.inputs.suffix, dict(self.inputs.entities)), **metadata}
        self._results["out_sidecar"] = None
        if metadata:
            self._results["out_sidecar"] = str(derivatives.write_json(sidecar, metadata))
        return runtime


class _SeriesToNiftiInputSpec(BaseInterfaceInputSpec):
    series = File(exists=True, mandatory=True, desc="(time, voxels) .npy")
    grid = File(exists=True, mandatory=True)
    tr = traits.Float(mandatory=True)


class _SeriesToNiftiOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class SeriesToNifti(SimpleInterface):
    """Write a masked series back to a 4-D NIfTI (only for outputs the user asked for)."""

    input_spec = _SeriesToNiftiInputSpec
    output_spec = _SeriesToNiftiOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "series.nii.gz"
        images.save_series_nifti(
            out, images.load_series(Path(self.inputs.series)), Path(self.inputs.grid), tr=self.inputs.tr
        )
        self._results["out_file"] = str(out)
        return runtime
