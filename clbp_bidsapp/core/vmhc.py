"""Voxel-mirrored homotopic connectivity (Zuo et al. 2010): the correlation of each voxel's series with
that of its mirror image across the mid-sagittal plane (x = 0 in world coordinates), Fisher z-transformed.

The mirror is found in world coordinates, so RAS, LAS and oblique grids give the same pairs up to orientation:
a voxel centre (x, y, z) is mapped to (-x, y, z), back to (continuous) voxel indices with the inverse affine,
and the partner is the voxel whose centre is nearest (rounded indices). When the mirrored position is not a
voxel centre (a grid not symmetric about x = 0, or an oblique one) the partner is the nearest voxel, up to
half a voxel away; :attr:`Mirror.offset_mm` records the distance. Two kinds of voxel are not analysed (NaN):

- voxels that straddle the mid-sagittal plane, ``|x| <`` half the voxel's extent along world x: on TemplateFlow's
  and nilearn's 1 and 2 mm MNI grids the column at x = 0 is its own mirror (r = 1 by construction);
- voxels whose mirror falls outside the grid or outside the brain mask, or onto a voxel that straddles the
  plane: on a grid without an x = 0 column (nilearn's 3 mm MNI grid: x = ..., -2, 1, ... mm) the mirror of the
  voxel at x = -2 mm is nearest to its own neighbour at x = 1 mm, a smoothness artefact, not homotopy.

Leaving them out of the map (rather than writing r = 1 or 0) keeps them out of the within-brain standardisation
and out of the group mask. In a symmetric template (MNI152NLin2009cSym, MNI152NLin6Sym) the mirror voxel is the
homotopic one; in an asymmetric template it is an approximation (DPABI and C-PAC register to a symmetric one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clbp_bidsapp.core.centrality import unit_columns

MAX_Z = 7.0  # arctanh(0.9999983): caps |r| = 1 (e.g. two identical series), which would be infinite
_EPS = 1e-6  # mm: a voxel whose edge touches x = 0 (|x| = half a voxel) does not straddle the plane


@dataclass(frozen=True)
class Mirror:
    """The mirror partner of every in-mask voxel (C order of the mask).

    Attributes
    ----------
    partner : (V,) int, index of the mirror voxel in the same order, -1 when the voxel is not analysed
    midline : (V,) bool, the voxel straddles the mid-sagittal plane (its own mirror)
    no_mirror : (V,) bool, the mirrored position falls outside the grid or the mask, or its nearest voxel is a
        ``midline`` one (and not ``midline`` itself)
    offset_mm : (V,) float, distance from the mirrored position to the partner's centre (NaN without partner)
    """

    partner: np.ndarray
    midline: np.ndarray
    no_mirror: np.ndarray
    offset_mm: np.ndarray


def mirror_voxels(mask: np.ndarray, affine: np.ndarray) -> Mirror:
    """Mirror each in-mask voxel across x = 0 (world mm) onto the nearest voxel of the grid."""
    mask = np.asarray(mask, dtype=bool)
    affine = np.asarray(affine, dtype=np.float64)
    ijk = np.argwhere(mask)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    half_extent_x = 0.5 * np.abs(affine[0, :3]).sum()  # half the voxel's extent along world x
    midline = np.abs(world[:, 0]) < half_extent_x - _EPS
    mirrored = world * np.array([-1.0, 1.0, 1.0])
    inverse = np.linalg.inv(affine)
    continuous = mirrored @ inverse[:3, :3].T + inverse[:3, 3]
    nearest = np.rint(continuous).astype(np.int64)
    on_grid = np.all((nearest >= 0) & (nearest < np.array(mask.shape)), axis=1)
    lookup = np.full(mask.shape, -1, dtype=np.int64)
    lookup[mask] = np.arange(ijk.shape[0])
    partner = np.full(ijk.shape[0], -1, dtype=np.int64)
    partner[on_grid] = lookup[tuple(nearest[on_grid].T)]
    self_partner = partner == np.arange(ijk.shape[0])  # nearest to itself: treated as midline
    midline |= self_partner
    onto_midline = (partner >= 0) & midline[np.maximum(partner, 0)]
    no_mirror = ((partner < 0) | onto_midline) & ~midline
    partner[midline | no_mirror] = -1
    offset = np.full(ijk.shape[0], np.nan)
    has = partner >= 0
    offset[has] = np.linalg.norm(mirrored[has] - world[partner[has]], axis=1)
    return Mirror(partner=partner, midline=midline, no_mirror=no_mirror, offset_mm=offset)


def mirror_indices(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """For each in-mask voxel (C order), the index of its mirror voxel in the same order, or -1."""
    return mirror_voxels(mask, affine).partner


def vmhc(series: np.ndarray, *, mask: np.ndarray, affine: np.ndarray, mirror: Mirror | None = None) -> np.ndarray:
    """Fisher-z correlation of each in-mask voxel (columns of ``series``, C order) with its mirror voxel.

    NaN marks voxels that are not analysed: midline voxels, voxels without a mirror in the mask and voxels
    whose own or mirror series is constant (no correlation defined). ``mirror`` is
    ``mirror_voxels(mask, affine)`` when the caller has it already.
    """
    partner = (mirror if mirror is not None else mirror_voxels(mask, affine)).partner
    z = unit_columns(series)
    out = np.full(z.shape[1], np.nan, dtype=np.float32)
    has = partner >= 0
    r = np.einsum("tv,tv->v", z[:, has], z[:, partner[has]], dtype=np.float64)
    constant = (~np.isfinite(r)) | (np.abs(r) == 0)
    out[has] = np.clip(np.arctanh(np.clip(r, -np.tanh(MAX_Z), np.tanh(MAX_Z))), -MAX_Z, MAX_Z)
    out[np.flatnonzero(has)[constant]] = np.nan
    return out
