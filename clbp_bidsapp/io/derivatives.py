"""BIDS-derivatives output: names, JSON sidecars, dataset_description.json, .bidsignore, atomic writes.

Every file is written to a temporary name in the destination folder and renamed into place, so a final name
never refers to a partial file (a crash, a kill or a full disk leaves at most a ``.tmp-*`` file, which is
removed on the next write of the same output). The input dataset is never written: :func:`check_output_dir`
refuses an output folder inside the input, and :func:`input_overlap` is the rule for every folder the app writes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import pandas as pd

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.errors import OutputError

PIPELINE_NAME = "clbp-bidsapp"
CODE_URL = "https://github.com/clbp-bidsapp/clbp-bidsapp"
BIDS_VERSION = "1.9.0"

# Entity order of output names, after the run's own entities (``source``). BIDS 1.10's order
# (schema rules/entities.yaml: space, atlas, seg, res, den, ..., desc), with ``stat`` (BEP012 / XCP-D, not yet
# a BIDS entity) placed just before ``desc`` as XCP-D does (``stat-alff_desc-smooth``) and as pybids places
# entities it does not know, and TemplateFlow's ``cohort`` right after ``space`` as fMRIPrep writes it
# (``space-MNIPediatricAsym_cohort-1_res-2``). The only place output names are ordered: every writer uses
# derivative_name.
ENTITY_ORDER = ("space", "cohort", "atlas", "seg", "res", "den", "stat", "desc")

BIDSIGNORE = """\
# Files that the BIDS specification does not (yet) define, written by clbp-bidsapp.
*_boldmap.nii.gz
*_boldmap.json
*_cbfmap.nii.gz
*_cbfmap.json
*_qc.tsv
*_qc.json
*_timeseries.tsv
*_timeseries.json
*_relmat.tsv
*_relmat.json
*_regions.tsv
*_regions.json
*_measures.tsv
*_measures.json
*_components.nii.gz
*_components.json
*.html
figures
group
logs
work
"""


def derivative_name(source: str, *, suffix: str, extension: str, **entities: str | None) -> str:
    """``<source>_space-X_res-Y_..._<suffix><extension>`` with entities in BIDS order."""
    parts = [source]
    for key in ENTITY_ORDER:
        value = entities.pop(key, None)
        if value is not None:
            parts.append(f"{key}-{value}")
    if entities:
        raise ValueError(f"unknown output entities: {sorted(entities)}")  # programming error
    return "_".join(parts) + f"_{suffix}{extension}"


# Units of the outputs that have one (BIDS "Units": "arbitrary" for values in the BOLD signal's own scale, which
# fMRIPrep leaves in scanner units). Ratios, correlations, Kendall's W, counts, z and mean-scaled maps are
# dimensionless and carry no Units (docs/outputs.md lists the rule per file).
ARBITRARY = "arbitrary"


def output_units(suffix: str, entities: Mapping[str, str | None]) -> str | None:
    """The ``Units`` of an output named by ``suffix`` and its entities, or None when it is dimensionless."""
    stat, desc = entities.get("stat"), entities.get("desc")
    if suffix == "boldmap":
        return ARBITRARY if stat in ("alff", "mean") and desc is None else None  # raw ALFF, mean BOLD
    if suffix == "bold":
        return ARBITRARY  # denoised BOLD series (--save-denoised)
    if suffix == "timeseries":
        return ARBITRARY  # region/seed mean series and dual-regression stage-1 series, in BOLD units
    if suffix == "components":
        return ARBITRARY  # dual-regression stage-2 maps: BOLD amplitude of each network
    return None


def bids_metadata(suffix: str, entities: Mapping[str, str | None]) -> dict[str, Any]:
    """Sidecar fields BIDS asks of an output with this name: ``Units`` (:func:`output_units`), ``Resolution``
    (REQUIRED with a ``res-`` entity) and, for a BOLD series, ``SkullStripped`` (REQUIRED for derivatives; the
    app's series are masked: zero outside the brain mask)."""
    fields: dict[str, Any] = {}
    units = output_units(suffix, entities)
    if units is not None:
        fields["Units"] = units
    res, space = entities.get("res"), entities.get("space")
    if res is not None:
        fields["Resolution"] = {res: f"the grid of the fMRIPrep input (res-{res} of space {space})"}
    if suffix == "bold":
        fields["SkullStripped"] = True
    return fields


def subject_dir(output_dir: Path, entities: Mapping[str, str], datatype: str = "func") -> Path:
    path = output_dir / f"sub-{entities['subject']}"
    if entities.get("session"):
        path = path / f"ses-{entities['session']}"
    return path / datatype


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


# Write errors that are the disk's fault, not the program's: no space, quota exceeded, file too big, read-only.
FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only if the block succeeds."""
    suffix = "".join(final.suffixes)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{final.name.split('.')[0]}-", suffix=suffix, dir=final.parent)
    except OSError as exc:
        if exc.errno in FULL_OR_READ_ONLY:
            raise _cannot_write(final, exc) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600; outputs get the usual mode under the user's umask
        os.replace(tmp_path, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno in FULL_OR_READ_ONLY:
            raise _cannot_write(final, exc) from None
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.tmp-*`` files a killed run left under ``folder`` (never a final name); return them.

    Call it only on a folder that no other running job writes to (a participant's own folder at the start of
    its processing): a concurrent job's temporary file would otherwise be removed under its feet.
    """
    stale = sorted(p for p in folder.rglob(".tmp-*") if p.is_file()) if folder.is_dir() else []
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


def _cannot_write(final: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write {final} ({exc.strerror}); free space on that disk or choose another output folder, "
        "then rerun (finished outputs are kept)"
    )


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_tsv(path: Path, table: pd.DataFrame, *, index: bool = False) -> Path:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=index, na_rep="n/a", float_format="%.6g")
    return path


def write_nifti(path: Path, img: nb.Nifti1Image) -> Path:
    """Write a NIfTI atomically (nibabel's gzip writes a zero mtime, so reruns are byte-identical)."""
    with atomic_path(path) as tmp:
        nb.save(img, str(tmp))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def input_overlap(path: Path, *, raw_dir: Path | None, derivative_inputs: Sequence[Path]) -> str | None:
    """How ``path`` (a folder the app would write) overlaps the read-only input, or ``None`` if it does not.

    The input is the raw dataset and the derivative datasets read from (fMRIPrep). A derivative input is
    read-only as a whole. Of the raw dataset, only ``derivatives/<name>`` folders may be written (where BIDS,
    fMRIPrep and XCP-D put derivatives), and not those holding or inside a derivative input. A folder holding an
    input (``path`` an ancestor of it) is refused too: writing or cleaning it would touch the input.
    Symbolic links are resolved first, so a link cannot lead into the input.
    """
    target = path.resolve()
    found = [(_relation(target, source.resolve()), source) for source in derivative_inputs]
    if raw_dir is not None:
        relation = _relation(target, raw_dir.resolve())
        inner = target.relative_to(raw_dir.resolve()).parts if relation == "is inside" else ()
        if not (inner[:1] == ("derivatives",) and len(inner) > 1):
            found.append((relation, raw_dir))
    for wanted in ("is", "is inside", "holds"):  # the most telling first
        for relation, source in found:
            if relation == wanted:
                return f"{relation} the input dataset {source}"
    return None


def _relation(path: Path, folder: Path) -> str | None:
    if path == folder:
        return "is"
    if folder in path.parents:
        return "is inside"
    if path in folder.parents:
        return "holds"
    return None


def check_output_dir(output_dir: Path, *, raw_dir: Path | None, derivative_inputs: Sequence[Path]) -> None:
    """Refuse an output folder in the input (see :func:`input_overlap`), and one that cannot be written."""
    overlap = input_overlap(output_dir, raw_dir=raw_dir, derivative_inputs=derivative_inputs)
    if overlap:
        raise OutputError(
            f"output folder {output_dir} {overlap}; choose a folder outside it, or BIDS_DIR/derivatives/<name> "
            "(the input is never written)"
        )
    out = output_dir.resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to output folder {output_dir} ({exc.strerror}); fix its permissions or choose another"
        ) from None


def container_info() -> dict[str, str]:
    """Container type and image tag recorded by the image's environment (empty outside a container)."""
    kind = os.environ.get("CLBP_CONTAINER_TYPE")
    if not kind:
        return {}
    info = {"Type": kind}
    tag = os.environ.get("CLBP_CONTAINER_TAG")
    if tag:
        info["Tag"] = tag
    return info


def dataset_description(
    *,
    source_description: Mapping[str, Any],
    source_url: str,
    config_hash: str,
    fmriprep_url: str | None = None,
    fmriprep_description: Mapping[str, Any] | None = None,
    linked: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """``dataset_description.json`` of the output: a derivative generated by this app.

    ``fmriprep_url`` (a ``file://`` URL of the preprocessed dataset) defines the ``fmriprep`` name of the
    ``bids:fmriprep:`` URIs in every sidecar's ``Sources`` (BIDS ``DatasetLinks``); the preprocessed dataset is
    listed in ``SourceDatasets``, and the pipelines that made it (its own ``GeneratedBy``: fMRIPrep, ASLPrep, ...,
    with their versions) follow this app in ``GeneratedBy``, so the upstream software is recorded too.
    ``linked`` adds other derivative inputs the same way, by name: ``{"aslprep": (url, its description)}``.
    """
    generated_by: dict[str, Any] = {
        "Name": PIPELINE_NAME,
        "Version": __version__,
        "CodeURL": CODE_URL,
        "Description": "resting-state fMRI maps and CLBP-versus-control group analysis",
    }
    container = container_info()
    if container:
        generated_by["Container"] = container
    source: dict[str, Any] = {"URL": source_url}
    for key in ("DatasetDOI", "Name"):
        if key in source_description:
            source[key] = source_description[key]
    sources = [source]
    description: dict[str, Any] = {
        "Name": f"clbp-bidsapp outputs of {source_description.get('Name', 'a BIDS dataset')}",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated_by],
        "SourceDatasets": sources,
        "ConfigHash": config_hash,
    }
    inputs = dict(linked or {})
    if fmriprep_url is not None:
        inputs = {"fmriprep": (fmriprep_url, fmriprep_description or {}), **inputs}
    for name, (url, upstream) in inputs.items():
        description.setdefault("DatasetLinks", {})[name] = url
        if url != source_url:
            entry: dict[str, Any] = {"URL": url}
            if "DatasetDOI" in upstream:
                entry["DOI"] = upstream["DatasetDOI"]
            sources.append(entry)
        description["GeneratedBy"].extend(upstream_pipelines(upstream, url, name=name))
    return description


def upstream_pipelines(upstream: Mapping[str, Any], url: str, *, name: str = "fmriprep") -> list[dict[str, Any]]:
    """The pipelines that made a derivative input (its ``GeneratedBy``: fMRIPrep, ASLPrep, ...), as
    ``GeneratedBy`` entries of this dataset saying what they did; fMRIPrep < 20.2 wrote ``PipelineDescription``."""
    generated = upstream.get("GeneratedBy")
    if not isinstance(generated, list):
        generated = [upstream["PipelineDescription"]] if isinstance(upstream.get("PipelineDescription"), dict) else []
    pipelines = []
    for item in generated:
        if not isinstance(item, dict) or not item.get("Name"):
            continue
        entry = {k: str(item[k]) for k in ("Name", "Version", "CodeURL") if item.get(k)}
        entry["Description"] = f"preprocessed the input dataset {url} (DatasetLinks '{name}') used here"
        pipelines.append(entry)
    return pipelines


def initialise_output(output_dir: Path, description: Mapping[str, Any]) -> None:
    """Write dataset_description.json and .bidsignore (atomically; safe for concurrent runs)."""
    write_json(output_dir / "dataset_description.json", description)
    write_text(output_dir / ".bidsignore", BIDSIGNORE)


def copy_file(source: Path, final: Path) -> Path:
    """Copy ``source`` to ``final`` atomically (bytes unchanged: no re-compression)."""
    import shutil

    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
    return final
