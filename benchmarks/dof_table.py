"""Effective degrees of freedom of the denoising, by run length and strategy (docs/denoising.md's table).

    .venv/bin/python benchmarks/dof_table.py [--tr 2] [--volumes 62 90 120 150 240]

Each run is a synthetic participant (4 mm grid, no motion spikes, no censoring: ``--fd-thresh 0``); the DOF
come from the same plan and operators the participant level uses (``plan_denoising``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from clbp_bidsapp.config import DenoiseSettings
from clbp_bidsapp.denoise_plan import plan_denoising
from clbp_bidsapp.io.confounds import read_confounds
from clbp_bidsapp.testing.synthetic import make_dataset

STRATEGIES = ("none", "24P", "36P")


def dof_row(root: Path, *, n_volumes: int, tr: float) -> dict[str, tuple[float, float]]:
    make_dataset(root, n_patients=1, n_controls=0, n_volumes=n_volumes, tr=tr, high_motion=False, seed=0)
    confounds = next((root / "derivatives" / "fmriprep").rglob("*desc-confounds_timeseries.tsv"))
    table, metadata = read_confounds(confounds)
    row = {}
    for strategy in STRATEGIES:
        settings = DenoiseSettings(strategy=strategy, fd_thresh=0.0, min_time=0.0, min_dof=0.0)
        plan = plan_denoising(table, metadata, settings=settings, tr=tr, n_volumes=n_volumes, where="synthetic")
        row[strategy] = (plan.dof.bandpass, plan.dof.unfiltered)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tr", type=float, default=2.0)
    parser.add_argument("--volumes", type=int, nargs="+", default=[62, 90, 120, 150, 240])
    args = parser.parse_args()
    print(f"TR {args.tr:g} s, band-pass 0.01-0.08 Hz; band-passed DOF (unfiltered DOF)")
    print("| volumes | seconds | " + " | ".join(STRATEGIES) + " |")
    print("|---|---|" + "---|" * len(STRATEGIES))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.volumes:
            row = dof_row(Path(tmp) / f"n{n}", n_volumes=n, tr=args.tr)
            cells = " | ".join(f"{b:.1f} ({u:.1f})" for b, u in row.values())
            print(f"| {n} | {n * args.tr:g} | {cells} |")


if __name__ == "__main__":
    main()
