"""Run the participant level several times on the tests' small dataset and list every output whose bytes differ
between runs, saying whether its voxel data differ or only its (gzip) bytes.

    .venv/bin/python benchmarks/check_rerun_identity.py [--runs N] [--src SRC] [--keep DIR]

The dataset is the one of ``tests/conftest.py::small_dataset`` (4 mm, 2 patients + 2 controls, 80 volumes, seed 3).
Runs alternate ``--nprocs 2`` and ``--nprocs 1``, each with a fresh working folder, as
``tests/integration/test_cli.py::test_rerun_is_byte_identical`` does. ``--src SRC`` runs the code in another
source folder (put first on ``PYTHONPATH``), e.g. a tree with ``git revert --no-commit d475ee2`` applied, which is
how the withdrawn participant-level speed-ups were checked (docs/performance.md, "Rerun identity").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np

from clbp_bidsapp.testing.synthetic import make_dataset


def digest(root: Path) -> dict[str, str]:
    """sha256 of every participant output (logs, work and group left out, as the rerun test does)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(("logs", "work", "group"))
    }


def data_differ(a: Path, b: Path) -> bool:
    """Whether two NIfTI files hold different voxel values (bit for bit), whatever their gzip bytes."""
    x, y = (np.asanyarray(nb.load(str(p)).dataobj) for p in (a, b))
    return x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--src", type=Path, help="source folder whose clbp_bidsapp is run")
    parser.add_argument("--keep", type=Path, help="folder for the runs (default: a temporary folder)")
    args = parser.parse_args()
    top = args.keep or Path(tempfile.mkdtemp(prefix="rerun-identity-"))
    bids = top / "bids"
    if not bids.exists():
        make_dataset(bids, n_patients=2, n_controls=2, voxel_size=4, n_volumes=80, tr=2.0, seed=3)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(args.src.resolve()), env.get("PYTHONPATH", "")])
    outputs = []
    for run in range(args.runs):
        nprocs = 2 if run % 2 == 0 else 1
        out, work = top / f"run{run}" / "out", top / f"run{run}" / "work"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "clbp_bidsapp.cli", str(bids), str(out), "participant", "--nprocs", str(nprocs),
             "--min-dof", "0", "-w", str(work)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"run {run} failed ({done.returncode}): {done.stderr[-2000:]}")
        outputs.append(out)
        print(f"run {run}: --nprocs {nprocs}, {time.perf_counter() - start:.0f} s, {len(digest(out))} files")
    reference = digest(outputs[0])
    for run, out in enumerate(outputs[1:], start=1):
        other = digest(out)
        differing = sorted(k for k in set(reference) | set(other) if reference.get(k) != other.get(k))
        print(f"run {run} against run 0: {len(differing)} of {len(reference)} files differ")
        for name in differing:
            kind = ""
            if name.endswith(".nii.gz") and name in reference and name in other:
                kind = "voxel data differ" if data_differ(outputs[0] / name, out / name) else "only gzip bytes"
            print(f"  {name} {kind}")
    print(f"runs kept in {top}")


if __name__ == "__main__":
    main()
