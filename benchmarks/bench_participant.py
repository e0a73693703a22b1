"""The whole participant level on one 2 mm, 240-volume run (nilearn's MNI grid, with its x = 0 column), as a ratio
to one bare nibabel load of its BOLD, with each node's share of the time, measured in one run.

    .venv/bin/python benchmarks/bench_participant.py [--before SRC] [--only CONFIGURATION] [--repeats N]

Two configurations: without degree centrality and the report (as issue #17 measured it), and the whole
participant level with its defaults except the HTML report (degree centrality included; the synthetic run has a
GM probseg, and nilearn's template fallback gives the same mask, as ``print_dc_domains`` shows). ``--before SRC``
also runs the code in the source folder SRC (e.g. ``git archive <commit> clbp_bidsapp | tar -x -C SRC``) in the
same session, alternating, so before/after ratios come from one run. Each configuration runs the real command
line with the Linear plugin (one process, so the peak resident memory is the largest node's) in a fresh working
folder; node times are read from nipype's result files.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nb
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import best_of, one_run

CONFIGURATIONS = {
    "no DC, no report": ("--skip", "dc", "report"),
    "whole (no report)": ("--skip", "report"),
}


def node_seconds(work: Path) -> dict[str, float]:
    """Seconds per node (summed over runs of the same name) from nipype's ``result_<node>.pklz`` files."""
    from nipype.utils.filemanip import loadpkl

    totals: dict[str, float] = defaultdict(float)
    for result_file in work.rglob("result_*.pklz"):
        try:
            result = loadpkl(result_file)
        except (OSError, pickle.UnpicklingError, EOFError):
            continue
        duration = getattr(getattr(result, "runtime", None), "duration", None)
        if duration is not None:
            totals[result_file.parent.name] += float(duration)
    return dict(totals)


def run_participant(bids: Path, extra: tuple[str, ...], source: Path | None) -> tuple[float, float, dict]:
    """(wall seconds, peak resident bytes of the child, node seconds) of one participant-level run."""
    out = Path(tempfile.mkdtemp(prefix="clbp-bench-out-"))
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", "import resource, runpy, sys; sys.argv[0] = 'clbp-bidsapp'; "
             "code = 0\ntry:\n    runpy.run_module('clbp_bidsapp.cli', run_name='__main__')\n"
             "except SystemExit as exc:\n    code = exc.code or 0\n"
             "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)",
             str(bids), str(out / "out"), "participant", "--plugin", "Linear", "-w", str(out / "work"), *extra],
            capture_output=True, text=True, env=env, cwd=out,  # not the checkout: -c puts the cwd first
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        peak = max(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK")) * 1024
        nodes = node_seconds(out / "work")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return elapsed, peak, nodes


def shares(nodes: dict[str, float], elapsed: float, top: int = 8) -> str:
    ranked = sorted(nodes.items(), key=lambda item: -item[1])
    parts = [f"{name} {seconds / elapsed:.0%}" for name, seconds in ranked[:top]]
    rest = elapsed - sum(nodes.values())
    return ", ".join(parts) + f"; outside nodes (start-up, graph, scheduling) {rest / elapsed:.0%}"


def print_dc_domains() -> None:
    """Degree centrality's mask and grid on nilearn's MNI grids, with and without a grey-matter template."""
    from nilearn.datasets import load_mni152_brain_mask

    from clbp_bidsapp.io import grey_matter

    for resolution in (2, 3, 4):
        img = load_mni152_brain_mask(resolution=resolution)
        mask = np.asanyarray(img.dataobj) > 0
        for space in ("MNI152NLin2009cAsym", "native"):
            domain = grey_matter.dc_domain(mask, img.affine, space=space)
            print(
                f"DC at {resolution} mm, {space:19s}: {domain.source:10s} {int(domain.mask.sum()):7d} of "
                f"{int(mask.sum())} brain voxels -> k = {domain.factor}, {domain.n_nodes} nodes"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="source folder of the code to compare with")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=list(CONFIGURATIONS), help="run one configuration")
    args = parser.parse_args()
    print_dc_domains()
    bold, mask, _ = one_run()
    bids = bold.parents[4]
    shape = nb.load(str(bold)).shape
    n_voxels = int((np.asanyarray(nb.load(str(mask)).dataobj) > 0).sum())
    print(f"run: {shape} ({n_voxels} brain voxels), {bold.stat().st_size / 1e6:.0f} MB gzipped")
    versions = {"after": None} if args.before is None else {"before": args.before, "after": None}
    for label, extra in CONFIGURATIONS.items():
        if args.only and label != args.only:
            continue
        for version, source in versions.items():
            for _ in range(args.repeats):
                bare = best_of(lambda: np.asanyarray(nb.load(str(bold)).dataobj), repeats=2)
                elapsed, peak, nodes = run_participant(bids, extra, source)
                print(
                    f"{label:18s} {version:6s}: {elapsed:6.1f} s = {elapsed / bare:5.2f} x one bare load "
                    f"({bare:.2f} s); peak RSS {peak / 1e9:.2f} GB = "
                    f"{peak / (int(np.prod(shape)) * 4):.2f} x the run's float32 4-D size"
                )
                print(f"    node shares: {shares(nodes, elapsed)}")


if __name__ == "__main__":
    main()
