"""Participant-level CBF: one small graph per ASLPrep CBF map, on the grid of the participant's BOLD run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.config import InputSettings
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.interfaces.io import DerivativeSink
from clbp_bidsapp.interfaces.perfusion import CBFMaps, CBFRegions
from clbp_bidsapp.io import aslprep, atlases, images, spaces
from clbp_bidsapp.io.aslprep import CBFInputs
from clbp_bidsapp.io.bids import RunInputs

CBF_QC_COLUMNS = {
    "cbf_variant": {"Description": "ASLPrep CBF map used (--cbf-variant): mean, basil, basilGM, score or scrub"},
    "mean_gm_cbf": {"Description": "mean CBF over grey matter (probability > 0.5) on the BOLD grid",
                    "Units": "mL/100 g/min"},
    "qei": {"Description": "ASLPrep's quality evaluation index of the variant (qei_cbf, qei_cbf_basil, ...)"},
    "mean_fd": {"Description": "mean framewise displacement of the ASL run (ASLPrep)", "Units": "mm"},
    "resampled": {"Description": "whether the CBF map was resampled (trilinear) to the BOLD grid"},
    "cbf_voxels": {"Description": "voxels of the BOLD brain mask with a CBF value"},
    "usable": {"Description": "whether the group level uses this map: mean_gm_cbf within --cbf-gm-range and qei "
               ">= --cbf-min-qei"},
    "reason": {"Description": "why the map is not used (empty when usable)"},
}  # fmt: skip
REGION_COLUMNS = {
    "region": {"Description": "region (atlas label or seed name)"},
    "cbf": {"Description": "mean absolute CBF over the region's voxels with CBF (unsmoothed)", "Units": "mL/100 g/min"},
    "rcbf": {"Description": "mean relative CBF (CBF / mean grey-matter CBF) over the same voxels (unsmoothed)"},
    "mask_voxels": {"Description": "voxels of the region with a CBF value (coverage: their fraction of the region)"},
}
CBF_DESCRIPTION = "mean cerebral blood flow from ASLPrep, on the grid of the participant's BOLD run"
CBF_ONLY_DESCRIPTION = "mean cerebral blood flow from ASLPrep, on its own grid (the participant has no usable BOLD run)"


def init_cbf_wf(
    *,
    cbf: CBFInputs,
    run: RunInputs | None,
    output_dir: Path,
    aslprep_dir: Path,
    fmriprep_dir: Path,
    inputs: InputSettings,
    smoothing_fwhm: float,
    region_sets: Sequence[str] = (),
    seeds: Sequence[str] = (),
    name: str = "cbf_wf",
) -> pe.Workflow:
    """Build the graph of one CBF map: absolute, relative and z maps on ``run``'s BOLD grid, and a QC row.

    ``run`` None (a participant without a usable BOLD run): the maps stay on the CBF map's own grid, which must be
    a grid of the study's template space, within ASLPrep's brain mask; the grey-matter reference of relative CBF is
    then the template's grey matter (MNI spaces; see :class:`clbp_bidsapp.interfaces.perfusion.CBFMaps`).

    Inputs
    ------
    None: the CBF files come from ``cbf`` and the target grid (brain mask, grey-matter map) from ``run``.

    Outputs
    -------
    ``perf/<source>_<space>_stat-{cbf,rcbf}[_desc-smoothed]_cbfmap.nii.gz``, ``..._stat-cbf_desc-z_cbfmap.nii.gz``
    and ``perf/<source>_desc-cbf_qc.tsv`` under ``output_dir`` (see docs/cbf.md); with ``region_sets`` (bundled atlas
    names or user atlas paths) and ``seeds`` (seed library names), the mean CBF of every region:
    ``perf/<source>_<space>_atlas-<atlas or seeds>_stat-cbf_regions.tsv``.
    """
    workflow = pe.Workflow(name=name)
    maps = pe.Node(
        CBFMaps(
            cbf=str(cbf.cbf),
            variant=cbf.variant,
            space=run.space if run is not None else inputs.space,
            fwhm=smoothing_fwhm,
            min_qei=inputs.cbf_min_qei,
            gm_range=tuple(inputs.cbf_gm_range),
        ),
        name="cbf_maps",
    )
    if cbf.mask is not None:
        maps.inputs.cbf_mask = str(cbf.mask)
    if cbf.qc is not None:
        maps.inputs.qc = str(cbf.qc)
    if run is not None:
        maps.inputs.bold_mask = str(run.mask)
    if run is not None and "GM" in run.probsegs:
        maps.inputs.gm_probseg = str(run.probsegs["GM"])
    inputs_read = ((cbf.cbf, aslprep_dir, "aslprep"), (cbf.mask, aslprep_dir, "aslprep"),
                   (run.mask if run is not None else None, fmriprep_dir, "fmriprep"))  # fmt: skip
    space_entities = dict(run.space_entities if run is not None else cbf.space_entities)
    sources = [_uri(path, root, name) for path, root, name in inputs_read if path is not None]
    base = {
        "Sources": sources,
        "SoftwareVersion": __version__,
        "ASLPrepVersion": cbf.aslprep_version,
        "Description": CBF_DESCRIPTION if run is not None else CBF_ONLY_DESCRIPTION,
    }
    outputs = {  # output field -> (node label, entities, metadata)
        "absolute": ({"stat": "cbf"}, {"Normalisation": "none (absolute CBF)", "Units": "mL/100 g/min",
                                       "SmoothingFWHM": 0.0}),
        "absolute_smoothed": ({"stat": "cbf", "desc": "smoothed"},
                              {"Normalisation": "none (absolute CBF)", "Units": "mL/100 g/min",
                               "SmoothingFWHM": smoothing_fwhm}),
        "relative": ({"stat": "rcbf"}, {"Normalisation": "divided by the participant's mean grey-matter CBF",
                                        "Units": "arbitrary", "SmoothingFWHM": 0.0}),
        "relative_smoothed": ({"stat": "rcbf", "desc": "smoothed"},
                              {"Normalisation": "divided by the participant's mean grey-matter CBF",
                               "Units": "arbitrary", "SmoothingFWHM": smoothing_fwhm}),
        "z": ({"stat": "cbf", "desc": "z"}, {"Normalisation": "z-scored within the mask (identical for absolute "
                                             "and relative CBF)", "Units": "arbitrary",
                                             "SmoothingFWHM": smoothing_fwhm}),
    }  # fmt: skip
    for field, (entities, meta) in outputs.items():
        sink = _sink(cbf, run, output_dir, name=f"ds_{field}", entities={**space_entities, **entities},
                     suffix="cbfmap", metadata={**base, **meta})  # fmt: skip
        workflow.connect([(maps, sink, [(field, "in_file"), ("metadata", "metadata_file")])])
    for atlas in [*region_sets, *(["seeds"] if seeds else [])]:
        label = atlas if atlas in (*atlases.ATLASES, "seeds") else atlases.user_atlas_name(Path(atlas))
        regions = pe.Node(CBFRegions(atlas=str(atlas)), name=f"cbf_regions_{label}")
        if atlas == "seeds":
            regions.inputs.seeds = atlases.select_seeds(seeds).astype(str).to_dict("records")
        meta = {**REGION_COLUMNS, "Sources": sources, "ASLPrepVersion": cbf.aslprep_version}
        sink = _sink(cbf, run, output_dir, name=f"ds_regions_{label}", suffix="regions", extension=".tsv",
                     entities={**space_entities, "atlas": label, "stat": "cbf"}, metadata=meta)  # fmt: skip
        workflow.connect([
            (maps, regions, [("absolute", "absolute"), ("relative", "relative"), ("grid", "grid")]),
            (regions, sink, [("out_file", "in_file")]),
        ])  # fmt: skip
    ds_qc = _sink(cbf, run, output_dir, name="ds_qc", entities={"desc": "cbf"}, suffix="qc", extension=".tsv",
                  metadata=CBF_QC_COLUMNS)  # fmt: skip
    workflow.connect(maps, "qc", ds_qc, "in_file")
    done = pe.Node(niu.IdentityInterface(fields=["qc"]), name="outputnode")
    workflow.connect(maps, "qc", done, "qc")
    return workflow


def _sink(cbf: CBFInputs, run: RunInputs | None, output_dir: Path, *, name: str, entities: dict, suffix: str,
          metadata: dict, extension: str = ".nii.gz") -> pe.Node:  # fmt: skip
    return pe.Node(
        DerivativeSink(
            output_dir=str(output_dir),
            source_name=cbf.source_name,
            subject=cbf.participant,
            session=cbf.session,
            entities=entities,
            suffix=suffix,
            extension=extension,
            datatype="perf",
            metadata=metadata,
        ),
        name=name,
        run_without_submitting=True,
    )


def _uri(path: Path, root: Path, dataset: str) -> str:
    try:
        return f"bids:{dataset}:{Path(path).resolve().relative_to(Path(root).resolve())}"
    except ValueError:
        return str(path)


def aslprep_layout(inputs: InputSettings, skip) -> tuple[object, Path, str] | None:
    """(pybids layout, folder, ASLPrep version) of ``--aslprep-dir``, or None without it (or with --skip cbf)."""
    folder = aslprep.resolve_aslprep_dir(inputs.aslprep_dir)
    if folder is None or "cbf" in skip:
        return None
    return aslprep.build_layout(folder), folder, aslprep.aslprep_version(folder)


def cbf_only_participants(asl, requested: Sequence[str], *, analysed, failed, no_bold) -> list[str]:
    """Participants of ``--aslprep-dir`` (those ``requested``, or all) with no participant graph: no fMRIPrep BOLD
    at all, or one of ``no_bold`` (no usable BOLD run: none found, or all skipped). Their CBF is analysed on its own
    (:func:`participant_cbf_wfs` with no run); a participant whose BOLD input failed otherwise is not (fix it first).
    """
    if asl is None:
        return []
    subjects = set(asl[0].get_subjects())
    wanted = subjects & set(requested) if requested else subjects
    return sorted(label for label in wanted if label not in analysed and (label not in failed or label in no_bold))


def participant_cbf_wfs(
    asl, participant: str, runs: list[RunInputs], *, output_dir: Path, fmriprep_dir: Path, inputs: InputSettings,
    smoothing_fwhm: float, skipped: list[tuple[str, str]], region_sets: Sequence[str] = (), seeds: Sequence[str] = (),
) -> list[pe.Workflow]:  # fmt: skip
    """One :func:`init_cbf_wf` per CBF map of the participant, on the grid of their BOLD run of the same session.

    A participant without CBF gets none (their BOLD is analysed); a CBF map that cannot be used (another space,
    no BOLD run of its session) is listed in ``skipped`` with the reason, and the BOLD is still analysed.
    ``runs`` empty (a participant without a usable BOLD run): every CBF map on its own grid (``init_cbf_wf``).
    """
    if asl is None:
        return []
    layout, folder, version = asl
    space = runs[0].space if runs else inputs.space
    try:
        found = aslprep.find_cbf(layout, participant=participant, space=space, variant=inputs.cbf_variant,
                                 version=version)  # fmt: skip
    except InputError as exc:
        skipped.append((f"sub-{participant} CBF", str(exc)))
        return []
    workflows = []
    for cbf in found:
        target = [run for run in runs if run.session == cbf.session] or (runs if cbf.session is None else [])
        if not runs:  # no BOLD run at all: the CBF map's own grid, if it is a grid of the template space
            spaces.check_template_grid(cbf.cbf, *images.header_grid(cbf.cbf), spaces.lookup(space))
            target = [None]
        if not target:
            skipped.append((f"{cbf.source_name} CBF", f"{cbf.cbf}: no analysed BOLD run of session {cbf.session} "
                            "to provide the grid"))  # fmt: skip
            continue
        workflows.append(init_cbf_wf(cbf=cbf, run=target[0], output_dir=output_dir, aslprep_dir=folder,
                                     fmriprep_dir=fmriprep_dir, inputs=inputs, smoothing_fwhm=smoothing_fwhm,
                                     region_sets=region_sets, seeds=seeds,
                                     name=f"cbf_{cbf.source_name.replace('-', '_')}_wf"))  # fmt: skip
    return workflows
