"""``logs/manifest.json``: SHA-256 of every output and every input read, with versions, to verify a rerun.

Each run records the inputs it read in ``logs/inputs-<run-id>.json`` and then rewrites ``logs/manifest.json``
from the outputs present and the union of every run's inputs (so concurrent SLURM array tasks never lose each
other's inputs; the last run, usually the group level, leaves a complete manifest). The manifest holds no
timestamps: the same inputs and settings give the same manifest. :func:`verify` recomputes every hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.io import derivatives

MANIFEST = "manifest.json"
KEY_PACKAGES = ("numpy", "scipy", "pandas", "nibabel", "nilearn", "nipype", "pybids", "scikit-learn", "networkx")
EXCLUDED_TOP = {"logs", "work"}


def sha256(path: Path, *, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def record_inputs(output_dir: Path, run_id: str, paths: Iterable[Path]) -> Path:
    """Hash the input files a run read into ``logs/inputs-<run-id>.json``."""
    hashes = {str(Path(p).resolve()): sha256(Path(p)) for p in sorted({Path(p) for p in paths}) if Path(p).is_file()}
    return derivatives.write_json(output_dir / "logs" / f"inputs-{run_id}.json", hashes)


def output_files(output_dir: Path) -> list[Path]:
    """Every output file (relative), without ``logs/``, ``work/`` and temporary files."""
    files = []
    for path in sorted(output_dir.rglob("*")):
        relative = path.relative_to(output_dir)
        if path.is_file() and relative.parts[0] not in EXCLUDED_TOP and not path.name.startswith(".tmp-"):
            files.append(relative)
    return files


def build_manifest(output_dir: Path) -> dict[str, Any]:
    inputs: dict[str, str] = {}
    for record in sorted((output_dir / "logs").glob("inputs-*.json")):
        inputs.update(json.loads(record.read_text()))
    description_path = output_dir / "dataset_description.json"
    description = json.loads(description_path.read_text()) if description_path.is_file() else {}
    versions = {}
    for package in KEY_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "Software": {"Name": derivatives.PIPELINE_NAME, "Version": __version__, "Dependencies": versions},
        "Container": derivatives.container_info(),
        "ConfigHash": description.get("ConfigHash"),
        "Outputs": {str(p): sha256(output_dir / p) for p in output_files(output_dir)},
        "Inputs": dict(sorted(inputs.items())),
    }


def write_manifest(output_dir: Path) -> Path:
    return derivatives.write_json(output_dir / "logs" / MANIFEST, build_manifest(output_dir))


def verify(output_dir: Path, *, inputs: bool = True) -> list[str]:
    """Differences between the files now and ``logs/manifest.json`` (empty when everything matches)."""
    manifest_path = output_dir / "logs" / MANIFEST
    recorded = json.loads(manifest_path.read_text())
    problems = []
    present = {str(p) for p in output_files(output_dir)}
    for name, digest in recorded["Outputs"].items():
        if name not in present:
            problems.append(f"missing output: {name}")
        elif sha256(output_dir / name) != digest:
            problems.append(f"changed output: {name}")
    problems += [f"output not in the manifest: {name}" for name in sorted(present - set(recorded["Outputs"]))]
    if inputs:
        for name, digest in recorded["Inputs"].items():
            path = Path(name)
            if not path.is_file():
                problems.append(f"missing input: {name}")
            elif sha256(path) != digest:
                problems.append(f"changed input: {name}")
    return problems
