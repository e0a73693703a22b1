"""Where degree centrality is computed: the grey-matter mask and the grid, chosen from what the run has.

In order of preference:

1. ``participant``: the participant's fMRIPrep GM probability map (``label-GM_probseg``) > 0.2 within the brain
   mask (DPABI's threshold);
2. ``template``: in an MNI-aligned space without such a map, nilearn's bundled MNI152 grey-matter template
   (ICBM 2009a symmetric, shipped inside the nilearn package: nothing is downloaded) resampled to the run's grid
   (linear interpolation in world coordinates), > 0.2 within the brain mask;
3. ``brain-mask``: in a space without template coordinates (``native``, ``T1w``, unknown), the whole brain mask.

Whatever the mask, the O(N^2) cost is then bounded: with more than ``max_nodes`` voxels DC is computed on the
mean series of blocks of factor^3 voxels (:func:`clbp_bidsapp.core.centrality.coarsening_factor`), and
``--dc-resolution`` can ask for a coarser grid still. The choice is recorded in every DC sidecar
(:meth:`DCDomain.metadata`), logged and described in the methods text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from clbp_bidsapp.core import centrality
from clbp_bidsapp.core.standardize import coarse_labels
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.io import images, spaces

GM_THRESHOLD = 0.2  # grey-matter probability above which a voxel enters degree centrality (DPABI's default)
TEMPLATE_NAME = "nilearn's MNI152 grey-matter template (ICBM 2009a nonlinear symmetric, 1 mm, bundled with nilearn)"

SOURCE_TEXT = {
    "participant": f"the participant's grey-matter probability map > {GM_THRESHOLD} within the brain mask",
    "template": f"{TEMPLATE_NAME} resampled to the run's grid, > {GM_THRESHOLD} within the brain mask "
    "(no grey-matter probability map was found for the participant)",
    "brain-mask": "the whole brain mask (no grey-matter probability map was found, and {space} space has no "
    "template coordinates for a grey-matter template)",
}


@dataclass(frozen=True)
class DCDomain:
    """The voxels and grid degree centrality is computed on."""

    mask: np.ndarray  # 3-D bool, within the brain mask
    source: str  # "participant", "template" or "brain-mask"
    space: str
    factor: int  # 1: data grid; k: mean series of k^3-voxel blocks
    n_nodes: int  # correlation nodes (voxels or blocks)
    max_nodes: int

    def metadata(self) -> dict:
        """The sidecar fields that say where and on which grid DC was computed."""
        grid = (
            "data grid"
            if self.factor == 1
            else f"blocks of {self.factor}^3 voxels (mean series), one value per block given to each of its voxels"
        )
        return {
            "Mask": SOURCE_TEXT[self.source].format(space=self.space),
            "MaskSource": self.source,
            "MaskVoxels": int(self.mask.sum()),
            "ComputedOnGrid": grid,
            "CoarseningFactor": self.factor,
            "Nodes": self.n_nodes,
            "MaxNodes": self.max_nodes,
        }

    def summary(self) -> str:
        """One line for the log."""
        grid = "the data grid" if self.factor == 1 else f"blocks of {self.factor}^3 voxels"
        return (
            f"degree centrality on {self.n_nodes} nodes ({grid}) in {self.mask.sum()} voxels of "
            f"{SOURCE_TEXT[self.source].format(space=self.space)}"
        )


def mask_source(*, has_probseg: bool, space: str) -> str:
    """Which grey-matter mask a run gets (module docstring); known when the graph is built."""
    if has_probseg:
        return "participant"
    return "template" if spaces.lookup(space).mni_aligned else "brain-mask"


def fallback_message(*, has_probseg: bool, space: str, where: str) -> str | None:
    """The line said when a run has no grey-matter map (None when it has one)."""
    source = mask_source(has_probseg=has_probseg, space=space)
    if source == "participant":
        return None
    return f"{where}: degree centrality uses {SOURCE_TEXT[source].format(space=space)}"


@cache
def _template_image():
    from nilearn.datasets import load_mni152_gm_template  # bundled file, rescaled to 0..1; no download

    return load_mni152_gm_template(resolution=1)


def template_grey_matter(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """nilearn's MNI152 GM probability (0..1) on a grid, by linear interpolation in world coordinates (0 outside)."""
    from nilearn.image import resample_img

    resampled = resample_img(
        _template_image(),
        target_affine=np.asarray(affine),
        target_shape=tuple(int(n) for n in shape),
        interpolation="linear",
        fill_value=0,
        force_resample=True,
        copy_header=True,
    )
    return np.asarray(resampled.dataobj, dtype=np.float64)


def participant_grey_matter(path: Path, shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """The participant's GM probability map, which must be on the BOLD grid."""
    gm, gm_affine = images.load_volume(Path(path))
    if gm.shape != tuple(shape) or not np.allclose(gm_affine, affine, atol=1e-3):
        raise InputError(f"{path}: grid differs from the BOLD grid; use the probseg in the same space/res")
    return gm


def _above_threshold(gm: np.ndarray) -> np.ndarray:
    """GM probability > 0.2, compared in float32 (the precision of probseg maps and of the template, whose
    voxels can hold float32(0.2) exactly)."""
    return np.asarray(gm, dtype=np.float32) > np.float32(GM_THRESHOLD)


def dc_domain(
    brain_mask: np.ndarray,
    affine: np.ndarray,
    *,
    space: str,
    gm_probseg: Path | None = None,
    resolution_mm: float = 0.0,
    max_nodes: int = centrality.MAX_NODES,
) -> DCDomain:
    """Choose the mask and grid of degree centrality for one run (module docstring)."""
    source = mask_source(has_probseg=gm_probseg is not None, space=space)
    if source == "participant":
        mask = brain_mask & _above_threshold(participant_grey_matter(gm_probseg, brain_mask.shape, affine))
    elif source == "template":
        mask = brain_mask & _above_threshold(template_grey_matter(brain_mask.shape, affine))
        if not mask.any():  # the grid does not overlap the template's grey matter at all
            source, mask = "brain-mask", brain_mask
    else:
        mask = brain_mask
    if not mask.any():
        raise InputError(f"{gm_probseg}: no grey-matter voxel (probability > {GM_THRESHOLD}) in the brain mask")
    requested = 1
    if resolution_mm > 0:
        requested = max(round(resolution_mm / min(images.voxel_size(affine))), 1)
    factor = centrality.coarsening_factor(mask, max_nodes=max_nodes, min_factor=requested)
    n_nodes = int(mask.sum()) if factor == 1 else coarse_labels(mask, factor=factor)[1]
    return DCDomain(mask=mask, source=source, space=space, factor=factor, n_nodes=n_nodes, max_nodes=max_nodes)
