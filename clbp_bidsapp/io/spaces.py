"""The template-space registry (``data/spaces.yaml``): which spaces are MNI-aligned or symmetric, which stages
each supports, and whether a data grid is plausibly the named template.

Stages that need MNI coordinates: seed FC (seeds are MNI coordinates or bundled-atlas regions), connectomes of
the bundled atlases, dual regression onto the bundled reference networks and VMHC (mirror plane x = 0). In a
space without template coordinates (``native``, ``T1w``, any name the registry does not know) they are skipped;
user atlases and reference networks given as files are taken to be in the run's space and still run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from clbp_bidsapp import registry
from clbp_bidsapp.errors import InputError

BBOX_TOLERANCE_MM = 10.0  # plus one voxel, per face of the bounding box


@dataclass(frozen=True)
class Space:
    """What the app knows about a ``--space`` value."""

    name: str
    known: bool  # in the registry (a template) or a listed space-free name
    mni_aligned: bool
    symmetric: bool
    description: str = ""
    bbox_mm: tuple[tuple[float, float], ...] | None = None

    @property
    def mirror_note(self) -> str:
        """How exact the VMHC mirror is in this space (sidecars and methods text)."""
        if self.symmetric:
            return f"{self.name} is a symmetric template: the mirror voxel is the homotopic voxel"
        return (
            f"{self.name} is an asymmetric template: the mirror voxel is only approximately homotopic "
            "(use a symmetric template, e.g. --space MNI152NLin2009cSym, for exact homotopy)"
        )


@cache
def _registry() -> dict:
    return yaml.safe_load(resources.files("clbp_bidsapp.data").joinpath("spaces.yaml").read_text())


def lookup(name: str) -> Space:
    """The registry entry of ``name``; an unknown name is treated as a space without MNI coordinates."""
    registry = _registry()
    entry = registry["templates"].get(name)
    if entry is not None:
        return Space(
            name=name,
            known=True,
            mni_aligned=bool(entry["mni_aligned"]),
            symmetric=bool(entry["symmetric"]),
            description=entry["description"],
            bbox_mm=tuple(tuple(float(v) for v in pair) for pair in entry["bbox_mm"]),
        )
    return Space(name=name, known=name in registry["space_free"], mni_aligned=False, symmetric=False)


def template_names() -> list[str]:
    return list(_registry()["templates"])


def why_not_mni(space: Space) -> str:
    """``--space X has no MNI coordinates`` (or is not a known template), for messages."""
    if space.known:
        return f"--space {space.name} has no MNI coordinates"
    return f"--space {space.name} is not a known MNI template ({', '.join(template_names())})"


def unavailable_stages(
    space: Space, *, atlases: Sequence[str], bundled_atlases: Sequence[str], networks: str
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Stages that cannot run in ``space`` (name -> what needs MNI) and the atlases that can.

    Bundled atlases are MNI atlases; any other entry of ``atlases`` is a user dseg file taken to be in the run's
    space. ``networks`` other than ``seitzman`` is a user file, likewise.
    """
    if space.mni_aligned:
        return {}, tuple(atlases)
    skipped = {"seedfc": "seeds are MNI coordinates"}
    skipped |= {metric.stage: metric.needs_mni for metric in registry.LOCAL_METRICS if metric.needs_mni}
    kept = tuple(a for a in atlases if a not in bundled_atlases)
    if not kept:
        skipped["connectome"] = "the bundled atlases are MNI atlases; --atlases takes dseg files in this space"
        skipped["graph"] = "it needs the connectomes"
    if networks == "seitzman":
        skipped["dualreg"] = "the bundled networks are MNI maps; --networks takes a 4-D NIfTI in this space"
    return skipped, kept


def skip_message(space: Space, skipped: dict[str, str], dropped_atlases: Sequence[str]) -> str:
    """The one message a run in a space without MNI coordinates prints (empty when nothing is skipped)."""
    parts = [f"{stage} ({reason})" for stage, reason in skipped.items()]
    if dropped_atlases:
        parts.append(f"atlas(es) {', '.join(dropped_atlases)} (MNI atlases)")
    if not parts:
        return ""
    return f"{why_not_mni(space)}; not run: " + "; ".join(parts) + "."


def grid_bbox(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """(3, 2) world extent (min, max per axis, mm) of the voxel centres of a grid."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1).T
    world = corners @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    return np.stack([world.min(axis=0), world.max(axis=0)], axis=1)


def check_template_grid(path: Path, shape: Sequence[int], affine: np.ndarray, space: Space) -> None:
    """Raise an :class:`InputError` naming ``path`` unless its grid plausibly covers the template's box."""
    if space.bbox_mm is None:
        return
    box = grid_bbox(shape, affine)
    expected = np.asarray(space.bbox_mm)
    voxel_extent = np.abs(np.asarray(affine)[:3, :3]).sum(axis=1)  # one voxel's extent along each world axis
    tolerance = BBOX_TOLERANCE_MM + voxel_extent[:, None]
    if np.all(np.abs(box - expected) <= tolerance):
        return

    def fmt(b) -> str:
        return " ".join(f"{lo:g}..{hi:g}" for lo, hi in np.round(b, 1))

    raise InputError(
        f"{path}: grid {'x'.join(map(str, shape[:3]))} covers x y z = {fmt(box)} mm, not the {space.name} "
        f"template's {fmt(expected)} mm (tolerance {BBOX_TOLERANCE_MM:g} mm + 1 voxel); the data are not in "
        f"{space.name}: pass the --space the file is really in"
    )
