"""NIfTI reading and writing: masked (time, voxels) arrays in, maps out. The only place nibabel is used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np

from clbp_bidsapp.errors import InputError

TR_TOLERANCE = 1e-3


def _load(path: Path) -> nb.Nifti1Image:
    try:
        img = nb.load(str(path))
    except FileNotFoundError:
        from clbp_bidsapp.io.bids import check_fetched

        check_fetched(Path(path))  # a DataLad/git-annex file not fetched says so
        raise InputError(f"{path} does not exist") from None
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{path} cannot be read as NIfTI ({one_line(exc)}); re-export or re-run fMRIPrep") from None
    return img


def one_line(exc: BaseException) -> str:
    """A library's error message on one line: nibabel's span several, and a crash report keeps only the line
    that starts with the error, which would drop the advice that follows the message."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_tr(bold: Path, json_tr: float | None) -> float:
    """RepetitionTime from the JSON sidecar, checked against the NIfTI header when it states one."""
    if json_tr is None:
        raise InputError(f"{bold}: RepetitionTime missing from its JSON sidecar; add it (in seconds)")
    try:
        tr = float(json_tr)
    except (TypeError, ValueError):
        raise InputError(f"{bold}: RepetitionTime {json_tr!r} is not a number") from None
    if not np.isfinite(tr) or tr <= 0:
        raise InputError(f"{bold}: RepetitionTime must be > 0 seconds (found {json_tr})")
    header = _load(bold).header
    zooms = header.get_zooms()
    if len(zooms) < 4:
        raise InputError(f"{bold} is {len(zooms)}-D; a BOLD run must be 4-D (x, y, z, time)")
    header_tr = float(zooms[3])
    unit = header.get_xyzt_units()[1]
    if unit == "msec":
        header_tr /= 1000.0
    elif unit == "usec":
        header_tr /= 1e6
    if header_tr > 0 and abs(header_tr - tr) > TR_TOLERANCE:
        raise InputError(
            f"{bold}: RepetitionTime {tr} s in the JSON disagrees with {header_tr} s in the NIfTI header; "
            "fix whichever is wrong"
        )
    return tr


@dataclass(frozen=True)
class MaskedRun:
    """A BOLD run restricted to its brain mask."""

    series: np.ndarray  # (time, voxels) float32
    mask: np.ndarray  # 3-D bool
    affine: np.ndarray
    header: nb.Nifti1Header


def load_mask(path: Path, *, reference: nb.Nifti1Image | None = None) -> tuple[np.ndarray, np.ndarray]:
    img = _load(path)
    if img.ndim != 3:
        raise InputError(f"{path}: a mask must be 3-D, found {img.ndim}-D")
    try:
        mask = np.asanyarray(img.dataobj) > 0
    except Exception as exc:
        raise InputError(f"{path} is truncated or corrupt ({one_line(exc)}); re-run fMRIPrep for this run") from None
    if not mask.any():
        raise InputError(f"{path}: the mask is empty")
    if reference is not None:
        _check_same_grid(path, img, reference)
    return mask, img.affine


def _check_same_grid(path: Path, mask: nb.Nifti1Image, bold: nb.Nifti1Image) -> None:
    if tuple(bold.shape[:3]) != tuple(mask.shape[:3]):
        raise InputError(
            f"{path}: mask shape {tuple(mask.shape)} does not match the BOLD grid {tuple(bold.shape[:3])}; "
            "use the mask fMRIPrep wrote for this run"
        )
    if not np.allclose(bold.affine, mask.affine, atol=1e-3):
        raise InputError(
            f"{path}: mask affine differs from the BOLD affine (same shape, different position or voxel size); "
            "use the mask fMRIPrep wrote for this run"
        )


def check_grid(bold: Path, mask_path: Path) -> None:
    """Raise an :class:`InputError` naming the mask unless it is 3-D on the BOLD run's grid (headers only)."""
    img, mask = _load(bold), _load(mask_path)
    if mask.ndim != 3:
        raise InputError(f"{mask_path}: a mask must be 3-D, found {mask.ndim}-D")
    _check_same_grid(mask_path, mask, img)


def header_grid(path: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape (first three axes) and affine of an image, from its header only."""
    img = _load(path)
    return tuple(int(n) for n in img.shape[:3]), img.affine


def load_masked_run(bold: Path, mask_path: Path) -> MaskedRun:
    """Load a 4-D BOLD run once, check it, and return its in-mask series as (time, voxels) float32."""
    img = _load(bold)
    if img.ndim != 4:
        raise InputError(f"{bold} is {img.ndim}-D; a BOLD run must be 4-D (x, y, z, time)")
    mask, _ = load_mask(mask_path, reference=img)
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise InputError(f"{bold} is truncated or corrupt ({one_line(exc)}); re-run fMRIPrep for this run") from None
    series = _masked_time_series(data, mask)
    del data
    if not np.isfinite(series).all():
        bad = int((~np.isfinite(series)).any(axis=0).sum())
        raise InputError(f"{bold}: {bad} in-mask voxels contain NaN or Inf; check the fMRIPrep output")
    if not series.any():
        raise InputError(f"{bold}: every in-mask value is zero; the run is empty")
    return MaskedRun(series=series, mask=mask, affine=img.affine, header=img.header)


def _masked_time_series(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(time, in-mask voxels) float32, voxels in the C order of ``mask`` (as ``data[mask].T``).

    nibabel returns column-major (Fortran) arrays, so the (voxels, time) reshape is a free view whose transpose
    is C-contiguous; one column gather then gives the result without transposing the whole run.
    """
    n = data.shape[3]
    if data.flags.f_contiguous:
        columns = data.reshape(-1, n, order="F").T
        index = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
        return np.take(columns, index, axis=1).astype(np.float32, copy=False)
    return np.ascontiguousarray(data[mask].T, dtype=np.float32)


def unmask(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Put (..., voxels) values back on the 3-D grid (zeros outside the mask); 2-D input gives 4-D."""
    values = np.asarray(values)
    if values.ndim == 1:
        out = np.zeros(mask.shape, dtype=values.dtype)
        out[mask] = values
        return out
    out = np.zeros((*mask.shape, values.shape[0]), dtype=values.dtype)
    out[mask] = values.T
    return out


def make_image(volume: np.ndarray, affine: np.ndarray, *, tr: float | None = None) -> nb.Nifti1Image:
    """A NIfTI image of ``volume`` (float32 maps, int16/uint8 masks) with units and, for 4-D, the TR."""
    img = nb.Nifti1Image(volume, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None and volume.ndim == 4:
        zooms = img.header.get_zooms()
        img.header.set_zooms((*zooms[:3], tr))
    img.header.set_qform(affine, code=4)
    img.header.set_sform(affine, code=4)
    return img


# -- fast intermediates between graph nodes (uncompressed; never gzip a (time, voxels) array twice) -------


def save_series(path: Path, series: np.ndarray) -> Path:
    """Write a (time, voxels) array as ``.npy`` (uncompressed, memory-mappable)."""
    np.save(path, np.ascontiguousarray(series, dtype=np.float32))
    return path


def save_array(path: Path, array: np.ndarray) -> Path:
    """Write any small array (a sample mask, a matrix) as ``.npy``, its dtype kept."""
    np.save(path, np.asarray(array))
    return path


def load_series(path: Path, *, mmap: bool = True) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None)


def save_grid(path: Path, mask: np.ndarray, affine: np.ndarray) -> Path:
    """Write the geometry of masked arrays: the 3-D boolean mask and the affine."""
    with open(path, "wb") as handle:
        np.savez(handle, mask=mask, affine=affine)
    return path


def load_grid(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["mask"].astype(bool), data["affine"]


def save_map(path: Path, values: np.ndarray, grid: Path | tuple[np.ndarray, np.ndarray]) -> Path:
    """Write masked (voxels,) values as a 3-D float32 NIfTI on the grid (zeros outside the mask)."""
    mask, affine = load_grid(grid) if isinstance(grid, Path | str) else grid
    volume = unmask(np.asarray(values, dtype=np.float32), mask)
    nb.save(make_image(volume, affine), str(path))
    return path


def save_volumes(path: Path, values: np.ndarray, grid: Path | tuple[np.ndarray, np.ndarray]) -> Path:
    """Write (volumes, voxels) masked values, e.g. one map per network, as a 4-D float32 NIfTI."""
    mask, affine = load_grid(grid) if isinstance(grid, Path | str) else grid
    nb.save(make_image(unmask(np.asarray(values, dtype=np.float32), mask), affine), str(path))
    return path


def save_series_nifti(path: Path, series: np.ndarray, grid: Path, *, tr: float) -> Path:
    """Write a (time, voxels) series as a 4-D float32 NIfTI with the TR in the header."""
    mask, affine = load_grid(grid)
    volume = unmask(np.asarray(series, dtype=np.float32), mask)
    nb.save(make_image(volume, affine, tr=tr), str(path))
    return path


def n_volumes(path: Path) -> int:
    """Number of volumes of a 4-D image, from its header only."""
    img = _load(path)
    if img.ndim != 4:
        raise InputError(f"{path} is {img.ndim}-D; a BOLD run must be 4-D (x, y, z, time)")
    return int(img.shape[3])


def load_volume(path: Path, *, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D map as float64 and its affine; ``index`` picks one volume of a 4-D file."""
    img = _load(path)
    if index is not None:
        if img.ndim != 4 or index >= img.shape[3]:
            raise InputError(f"{path}: expected a 4-D image with at least {index + 1} volumes, found {img.shape}")
        return np.asarray(img.dataobj[..., index], dtype=np.float64), img.affine
    if img.ndim != 3:
        raise InputError(f"{path}: expected a 3-D map, found {img.ndim}-D")
    return np.asanyarray(img.dataobj, dtype=np.float64), img.affine


def voxel_size(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths (mm) of an affine."""
    return tuple(float(v) for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def nonzero_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of a 4-D series that are non-zero at some time point, and the affine."""
    img = _load(path)
    if img.ndim != 4:
        raise InputError(f"{path} is {img.ndim}-D; a denoised series must be 4-D")
    return np.any(np.asanyarray(img.dataobj) != 0, axis=3), img.affine
