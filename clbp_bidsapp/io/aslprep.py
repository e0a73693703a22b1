"""ASLPrep derivatives: find each participant's CBF map with pybids, read its QC table, put it on the BOLD grid.

Files (ASLPrep naming, ``perf/`` folder): ``<source>_space-<space>[_res-<res>][_desc-<variant>]_cbf.nii.gz`` (mean
CBF, mL/100 g/min; the variant is chosen with ``--cbf-variant``), ``<source>_space-<space>[_res-<res>]_desc-brain_mask``
and ``<source>_desc-qualitycontrol_cbf.tsv`` (``qei_cbf``, ``qei_cbf_basil``, ... and ``mean_fd``).

Grid rule: the CBF map must be in the BOLD run's template space. On another grid of that space (another
resolution) it is resampled (trilinear; its brain mask nearest-neighbour) to the participant's BOLD grid; in
another space (or without a template space) it is refused, naming both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io.bids import NATIVE_SPACE, source_name

# --cbf-variant -> (desc- entity of the CBF file, QEI column of ASLPrep's QC table)
VARIANTS: dict[str, tuple[str | None, str]] = {
    "mean": (None, "qei_cbf"),
    "basil": ("basil", "qei_cbf_basil"),
    "basilGM": ("basilGM", "qei_cbf_basil_gm"),
    "score": ("score", "qei_cbf_score"),
    "scrub": ("scrub", "qei_cbf_scrub"),
}
SOURCE_ENTITIES = ("subject", "session", "acquisition", "run")


@dataclass(frozen=True)
class CBFInputs:
    """One CBF map of a participant (one ASL acquisition) and its companions."""

    participant: str
    entities: Mapping[str, str]
    source_name: str
    cbf: Path
    mask: Path | None
    qc: Path | None
    variant: str
    aslprep_version: str
    space_entities: Mapping[str, str] = field(default_factory=dict)  # space (and res) of the CBF map

    @property
    def session(self) -> str | None:
        return self.entities.get("session")


def resolve_aslprep_dir(aslprep_dir: Path | None) -> Path | None:
    """The ``--aslprep-dir`` folder (checked), or None when not given."""
    if aslprep_dir is None:
        return None
    if not (aslprep_dir / "dataset_description.json").is_file():
        raise InputError(f"--aslprep-dir {aslprep_dir} has no dataset_description.json; point it at ASLPrep's output")
    return aslprep_dir


def aslprep_version(aslprep_dir: Path) -> str:
    """The ASLPrep version in the folder's ``dataset_description.json`` (GeneratedBy), or ``unknown``."""
    try:
        description = json.loads((aslprep_dir / "dataset_description.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "unknown"
    for entry in description.get("GeneratedBy", []) or []:
        if isinstance(entry, dict) and str(entry.get("Name", "")).lower() == "aslprep":
            return str(entry.get("Version", "unknown"))
    return "unknown"


def build_layout(aslprep_dir: Path):
    from bids import BIDSLayout

    try:
        return BIDSLayout(aslprep_dir, validate=False, config=["bids", "derivatives"])
    except Exception as exc:  # pybids raises several types for unreadable datasets
        raise InputError(f"cannot index --aslprep-dir {aslprep_dir} with pybids: {exc}") from None


def find_cbf(layout, *, participant: str, space: str, variant: str, version: str) -> list[CBFInputs]:
    """The participant's CBF maps of ``variant`` in ``space`` (any resolution); [] when they have none at all.

    Raises :class:`InputError` naming the files when CBF maps exist only in another space (or in ASL-native space).
    """
    from bids.layout import Query

    desc, _ = VARIANTS[variant]
    found = layout.get(subject=participant, suffix="cbf", desc=desc or Query.NONE, extension=[".nii.gz", ".nii"],
                       return_type="object")  # fmt: skip
    if not found:
        return []
    wanted = [f for f in found if space != NATIVE_SPACE and f.get_entities().get("space") == space]
    if not wanted:
        other = sorted({f"space-{f.get_entities().get('space', '<none: ASL-native>')}" for f in found})
        raise InputError(
            f"{found[0].path}: CBF in {', '.join(other)} but the BOLD is in --space {space}; the CBF map must be "
            "in the BOLD's template space (rerun ASLPrep with that output space)"
        )
    by_source: dict[str, list] = {}
    for file in wanted:
        ents = {k: str(v) for k, v in file.get_entities().items() if k in SOURCE_ENTITIES}
        by_source.setdefault(source_name(ents), []).append((file, ents))
    out = []
    for name, files in sorted(by_source.items()):
        file, ents = sorted(files, key=lambda item: item[0].path)[0]  # one resolution per acquisition
        mask = layout.get(subject=participant, suffix="mask", desc="brain", space=space,
                          res=file.get_entities().get("res", Query.NONE), extension=[".nii.gz", ".nii"],
                          session=ents.get("session", Query.NONE), datatype="perf", return_type="filename")  # fmt: skip
        qc = layout.get(subject=participant, suffix="cbf", desc="qualitycontrol", extension=".tsv",
                        session=ents.get("session", Query.NONE), return_type="filename")  # fmt: skip
        out.append(CBFInputs(
            participant=participant, entities=ents, source_name=name, cbf=Path(file.path),
            mask=Path(mask[0]) if mask else None, qc=Path(qc[0]) if qc else None, variant=variant,
            aslprep_version=version,
            space_entities={k: str(file.get_entities()[k]) for k in ("space", "res") if k in file.get_entities()},
        ))  # fmt: skip
    return out


def read_quality(path: Path | None, variant: str) -> dict[str, float | None]:
    """QEI of the variant and mean FD from ASLPrep's QC table (None where absent)."""
    if path is None:
        return {"qei": None, "mean_fd": None}
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable TSV ({exc}); regenerate it with ASLPrep") from None
    _, column = VARIANTS[variant]

    def first(name: str) -> float | None:
        if name not in table.columns or table.empty:
            return None
        value = pd.to_numeric(table[name], errors="coerce").iloc[0]
        return float(value) if np.isfinite(value) else None

    return {"qei": first(column), "mean_fd": first("mean_fd")}


def load_on_grid(
    cbf: Path, mask: Path | None, *, target_mask: np.ndarray, target_affine: np.ndarray
) -> tuple[np.ndarray, bool]:
    """The CBF map on the target grid, NaN outside its own brain mask; and whether it was resampled."""
    from nilearn.image import resample_img

    img = nb.load(str(cbf))
    if img.ndim != 3:
        raise InputError(f"{cbf}: expected a 3-D mean CBF map, found {img.ndim}-D; use ASLPrep's mean CBF output")
    same = tuple(img.shape) == tuple(target_mask.shape) and np.allclose(img.affine, target_affine, atol=1e-3)
    images = {"cbf": img} | ({"mask": nb.load(str(mask))} if mask is not None else {})
    if not same:
        images = {
            key: resample_img(
                value,
                target_affine=target_affine,
                target_shape=target_mask.shape,
                interpolation="continuous" if key == "cbf" else "nearest",
                force_resample=True,
                copy_header=True,
            )
            for key, value in images.items()
        }
    data = np.asarray(images["cbf"].dataobj, dtype=np.float64)
    if "mask" in images:
        if images["mask"].shape[:3] != target_mask.shape:
            raise InputError(f"{mask}: grid {images['mask'].shape} differs from its CBF map {img.shape}")
        data = np.where(np.asarray(images["mask"].dataobj) > 0, data, np.nan)
    return np.where(target_mask, data, np.nan), not same


def describe_grid(shape, affine) -> str:
    """``91x109x91 at 2x2x2 mm`` for messages."""
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return f"{'x'.join(map(str, shape))} at {'x'.join(f'{s:g}' for s in sizes)} mm"


def own_grid(cbf: Path, mask: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The grid of a CBF map used as its own target (a participant without BOLD): (brain mask, affine).

    The mask is ASLPrep's brain mask when there is one (it must be on the CBF map's grid), else the voxels where
    the map has a finite non-zero value (ASLPrep writes 0 outside the brain).
    """
    img = nb.load(str(cbf))
    if mask is not None:
        mask_img = nb.load(str(mask))
        if mask_img.shape[:3] != img.shape[:3] or not np.allclose(mask_img.affine, img.affine, atol=1e-3):
            raise InputError(
                f"{mask}: grid {describe_grid(mask_img.shape[:3], mask_img.affine)} differs from its CBF map {cbf} "
                f"({describe_grid(img.shape[:3], img.affine)}); use ASLPrep's mask of that map"
            )
        return np.asarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0, img.affine
    data = np.asarray(img.dataobj, dtype=np.float64)
    return np.isfinite(data) & (data != 0), img.affine
