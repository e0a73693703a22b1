"""Participant maps as a (participants, voxels) matrix on a common group mask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clbp_bidsapp.core import standardize
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import images


@dataclass(frozen=True)
class GroupMaps:
    """One metric's maps for the included participants (runs averaged), restricted to the group mask."""

    metric: str
    participants: list[str]
    data: np.ndarray  # (participants, voxels) float64
    mask: np.ndarray  # 3-D bool
    affine: np.ndarray
    dropped: dict[str, str] = field(default_factory=dict)  # participant -> why their map was not used


def find_maps(layout, *, stat: str, desc: str | None, participants: Sequence[str]) -> dict[str, list[Path]]:
    """Every run's map of ``stat`` (and ``desc``) per participant, found with pybids."""
    from bids.layout import Query

    found: dict[str, list[Path]] = {}
    for label in participants:
        files = layout.get(
            subject=label,
            stat=stat,
            desc=desc if desc is not None else Query.NONE,
            suffix="boldmap",
            extension=".nii.gz",
            return_type="filename",
        )
        if files:
            found[label] = sorted(Path(f) for f in files)
    return found


def load_group_maps(
    maps: Mapping[str, Sequence[Path]],
    *,
    metric: str,
    min_coverage: float = 1.0,
    volume: int | None = None,
    smoothing_fwhm: float = 0.0,
) -> GroupMaps:
    """Average each participant's runs and keep voxels covered (non-zero, finite) in every participant.

    ``min_coverage`` is the fraction of participants in whom a voxel must be valid (1.0 = intersection, the
    default, so no participant contributes a zero from outside their brain mask). ``volume`` picks one volume of
    4-D files (a dual-regression component), which is then smoothed by ``smoothing_fwhm`` mm within its mask.
    A participant whose map has no valid voxel (e.g. a seed outside their brain mask) is left out and listed in
    :attr:`GroupMaps.dropped`.
    """
    labels = sorted(maps)
    if not labels:
        raise InputError(f"no participant maps of {metric} found; run the participant level first")
    volumes, kept, dropped, affine, shape = [], [], {}, None, None
    for label in labels:
        runs = []
        for path in maps[label]:
            if volume is None:
                data, img_affine = images.load_volume(path)
            else:
                data, img_affine = images.load_volume(path, index=volume)
                valid = np.isfinite(data) & (data != 0)
                data = standardize.smooth_volume(
                    data, mask=valid, fwhm_mm=smoothing_fwhm, voxel_size_mm=images.voxel_size(img_affine)
                ).astype(np.float64)
            if shape is None:
                shape, affine = data.shape, img_affine
            elif data.shape != shape or not np.allclose(img_affine, affine, atol=1e-3):
                raise InputError(
                    f"{path}: grid {data.shape} differs from the other participants' {shape}; "
                    "all participants must be in the same space and resolution"
                )
            runs.append(data)
        mean = np.mean(runs, axis=0)
        if not (np.isfinite(mean) & (mean != 0)).any():
            dropped[label] = f"no valid voxel in the {metric} map"
            continue
        volumes.append(mean)
        kept.append(label)
    if not volumes:
        raise InputError(f"no participant has a usable {metric} map")
    stack = np.stack(volumes)  # (participants, x, y, z)
    valid = np.isfinite(stack) & (stack != 0)
    mask = valid.mean(axis=0) >= min_coverage
    data = np.where(valid, stack, 0.0)[:, mask]
    return GroupMaps(metric=metric, participants=kept, data=data, mask=mask, affine=affine, dropped=dropped)
