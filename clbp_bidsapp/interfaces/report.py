"""Report interfaces: one HTML section per run, joined into ``sub-<label>.html``."""

from __future__ import annotations

import html as html_lib
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.core.qc import standardized_dvars
from clbp_bidsapp.io import derivatives, images
from clbp_bidsapp.io.confounds import read_confounds
from clbp_bidsapp.reports import figures, html, participant_figures


class _RunReportInputSpec(BaseInterfaceInputSpec):
    source_name = traits.Str(mandatory=True)
    series = File(exists=True, mandatory=True, desc="preprocessed series .npy")
    cleaned = File(exists=True, mandatory=True, desc="denoised series .npy (retained volumes)")
    sample_mask = File(exists=True, mandatory=True)
    confounds = File(exists=True, mandatory=True)
    qc = File(exists=True, mandatory=True)
    tr = traits.Float(mandatory=True)
    fd_thresh = traits.Float(mandatory=True)
    maps = InputMultiObject(File(exists=True), desc="maps to show as mosaics")
    map_titles = traits.List(traits.Str, desc="one title per map")
    fc_maps = InputMultiObject(File(exists=True), desc="seed FC (Fisher z) maps, shown with a symmetric scale")
    fc_titles = traits.List(traits.Str, desc="one title per FC map")
    relmats = InputMultiObject(File(exists=True), desc="connectome TSVs (first column: region names)")
    regions = InputMultiObject(File(exists=True), desc="the regions TSV of each connectome (network column)")
    graphs = InputMultiObject(File(exists=True), desc="global graph-measure TSVs (last row: AUC)")
    atlas_names = traits.List(traits.Str, desc="one atlas name per connectome")
    mni_background = traits.Bool(True, usedefault=True, desc="draw maps over the MNI template (MNI spaces only)")
    grid = File(exists=True, desc="the run's mask and affine (.npz): mask outline on the mean BOLD")
    min_seconds = traits.Float(desc="minimum retained time (s) for a run to be used, named in the verdict")
    tissue_maps = traits.Dict(
        traits.Str, traits.Str, desc="GM/WM/CSF probseg NIfTIs on the run's grid: carpet rows ordered by tissue"
    )


class _RunReportOutputSpec(TraitedSpec):
    out_fragment = File(exists=True)


class RunReport(SimpleInterface):
    """HTML section of one run: QC numbers, motion with censoring, carpet plots, map mosaics."""

    input_spec = _RunReportInputSpec
    output_spec = _RunReportOutputSpec

    def _run_interface(self, runtime):
        sample_mask = np.load(self.inputs.sample_mask)
        table, _ = read_confounds(Path(self.inputs.confounds))
        fd = table["framewise_displacement"].to_numpy(float) if "framewise_displacement" in table else None
        qc = pd.read_csv(self.inputs.qc, sep="\t").iloc[0].to_dict()
        used, line = figures.verdict(
            qc, min_seconds=self.inputs.min_seconds if isdefined(self.inputs.min_seconds) else None
        )
        parts = [
            f"<h2>{html_lib.escape(self.inputs.source_name)}</h2>",
            f"<p class='verdict{'' if used else ' skipped'}'>{html_lib.escape(line)}</p>",
        ]
        series = images.load_series(Path(self.inputs.series))
        mean_img = None  # the run's mean BOLD: background of the mask outline and of native-space maps
        if isdefined(self.inputs.grid):
            mask, affine = images.load_grid(Path(self.inputs.grid))
            mean = images.unmask(series.mean(axis=0), mask)
            mean_img = images.make_image(mean.astype(np.float32), affine)
            parts.append(
                html.image(
                    figures.mask_figure(
                        mean_img,
                        images.make_image(mask.astype(np.uint8), affine),
                        title="mean BOLD; red: brain mask"
                        + ("; cyan: MNI template brain" if self.inputs.mni_background else ""),
                        mni_outline=self.inputs.mni_background,
                    ),
                    "brain mask outline on the mean BOLD",
                )
            )
        parts += _quality_figures(
            series,
            images.load_series(Path(self.inputs.cleaned)),
            sample_mask,
            table,
            fd,
            tr=self.inputs.tr,
            fd_thresh=self.inputs.fd_thresh,
            grid=Path(self.inputs.grid) if isdefined(self.inputs.grid) else None,
            tissue_maps=self.inputs.tissue_maps if isdefined(self.inputs.tissue_maps) else {},
        )
        parts.append("<h3>QC numbers</h3>")
        parts.append(html.table(qc))
        if self.inputs.maps:
            parts.append("<h3>Maps</h3>")
            for path, title in zip(self.inputs.maps, self.inputs.map_titles, strict=True):
                parts.append(
                    html.image(
                        figures.mosaic_figure(
                            Path(path),
                            title=title,
                            mni_background=self.inputs.mni_background,
                            native_background=mean_img,
                        ),
                        title,
                    )
                )
        if self.inputs.fc_maps:
            parts.append("<h3>Seed-based functional connectivity (Fisher z)</h3>")
            for path, title in zip(self.inputs.fc_maps, self.inputs.fc_titles, strict=True):
                parts.append(
                    html.image(
                        figures.mosaic_figure(
                            Path(path),
                            title=title,
                            symmetric=True,
                            mni_background=self.inputs.mni_background,
                            native_background=mean_img,
                        ),
                        title,
                    )
                )
        if self.inputs.relmats:
            parts.append("<h3>Connectomes and graph measures</h3>")
            graphs = list(self.inputs.graphs) if self.inputs.graphs else []
            for index, (path, regions, atlas) in enumerate(
                zip(self.inputs.relmats, self.inputs.regions, self.inputs.atlas_names, strict=True)
            ):
                matrix = pd.read_csv(path, sep="\t", index_col=0, na_values="n/a")
                networks = pd.read_csv(regions, sep="\t")["network"].astype(str).tolist()
                title = f"{atlas}: Pearson correlation (regions ordered by network)"
                parts.append(
                    html.image(figures.matrix_figure(matrix.to_numpy(), title=title, networks=networks), title)
                )
                if index < len(graphs):
                    table = pd.read_csv(graphs[index], sep="\t", dtype={"sparsity": str})
                    auc = table[table["sparsity"] == "auc"].drop(columns=["sparsity"]).dropna(axis=1)
                    if auc.shape[1] == 0:
                        parts.append(f"<p>{atlas}: graph measures n/a (fewer than three regions with data)</p>")
                    elif len(auc):
                        parts.append(f"<p>{atlas}: area under the curve over the densities</p>")
                        parts.append(html.table({k: float(v) for k, v in auc.iloc[0].items()}))
        out = derivatives.write_text(Path(runtime.cwd) / "fragment.html", "".join(parts))
        self._results["out_fragment"] = str(out)
        return runtime


def _quality_figures(series, cleaned, sample_mask, table, fd, *, tr, fd_thresh, grid, tissue_maps) -> list[str]:
    """The FD / standardised DVARS trace (fMRIPrep's ``std_dvars`` column, else computed from the series) and the
    carpet plots ordered by tissue (when the GM/WM/CSF probsegs are on the run's grid)."""
    if "std_dvars" in table and table["std_dvars"].notna().any():
        std_dvars, source = table["std_dvars"].to_numpy(float), "the std_dvars column of the fMRIPrep confounds"
    else:
        std_dvars, source = standardized_dvars(series)[0], "computed from the preprocessed series (Nichols 2017)"
    parts = [
        "<h3>Motion and censoring</h3>",
        html.image(
            participant_figures.trace_figure(fd, std_dvars, sample_mask, tr=tr, fd_thresh=fd_thresh),
            "framewise displacement and standardised DVARS",
        ),
        f"<p class='muted'>Standardised DVARS (about 1 without artefacts): {source}.</p>",
    ]
    labels, note = None, "tissue unknown (no GM/WM/CSF probsegs on the run's grid)"
    if grid is not None and all(name in tissue_maps for name in participant_figures.TISSUES):
        mask, affine = images.load_grid(grid)
        columns = []
        for name in participant_figures.TISSUES:
            volume, tissue_affine = images.load_volume(Path(tissue_maps[name]))
            if volume.shape[:3] != mask.shape or not np.allclose(tissue_affine, affine, atol=1e-3):
                columns = []
                note = f"tissue unknown ({Path(tissue_maps[name]).name} is not on the run's grid)"
                break
            columns.append(volume[mask])
        if columns:
            labels = participant_figures.tissue_labels(np.stack(columns, axis=1))
            counts = np.bincount(labels, minlength=len(participant_figures.TISSUES) + 1)
            names = (*participant_figures.TISSUES, "other")
            note = (
                "rows by most probable tissue (fMRIPrep probsegs): "
                + ", ".join(f"{name} {count}" for name, count in zip(names, counts, strict=True) if count)
                + " voxels in the mask"
            )
    parts.append("<h3>Carpet plot before and after denoising</h3>")
    parts.append(
        html.image(participant_figures.carpet_figure(series, cleaned, sample_mask, labels=labels), "carpet plot")
    )
    parts.append(
        f"<p class='muted'>Up to {participant_figures.MAX_CARPET_ROWS} voxels, each detrended and z-scored "
        f"(grey scale -2 to 2); {html_lib.escape(note)}.</p>"
    )
    return parts


class _ParticipantReportInputSpec(BaseInterfaceInputSpec):
    participant = traits.Str(mandatory=True)
    fragments = InputMultiObject(File(exists=True), mandatory=True)
    output_dir = Directory(mandatory=True)
    settings_summary = traits.Dict(traits.Str, traits.Any, value={}, usedefault=True)


class _ParticipantReportOutputSpec(TraitedSpec):
    out_report = File(exists=True)


class ParticipantReport(SimpleInterface):
    """Join the run sections into ``OUTPUT_DIR/sub-<label>.html`` (written atomically)."""

    input_spec = _ParticipantReportInputSpec
    output_spec = _ParticipantReportOutputSpec

    def _run_interface(self, runtime):
        sections = ["<h2>Settings</h2>", html.table(self.inputs.settings_summary)]
        sections += [Path(f).read_text() for f in self.inputs.fragments]
        text = html.page(
            f"clbp-bidsapp report: sub-{self.inputs.participant}",
            sections,
            footer=f"clbp-bidsapp {__version__}",
        )
        self._results["out_report"] = str(derivatives.write_text(self.published_files()[0], text))
        return runtime

    def published_files(self) -> list[Path]:
        """The report's final path (a publishing interface, like ``DerivativeSink``)."""
        return [Path(self.inputs.output_dir) / f"sub-{self.inputs.participant}.html"]
