"""``clbp-bidsapp-synth OUTDIR``: write the synthetic CLBP dataset (raw BIDS + fMRIPrep-like derivatives)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from clbp_bidsapp.testing.synthetic import make_dataset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clbp-bidsapp-synth", description=__doc__, allow_abbrev=False)
    p.add_argument("output", type=Path, help="folder of the raw BIDS dataset to create")
    p.add_argument("--voxel-size", type=int, choices=[2, 3, 4], default=4)
    p.add_argument("--n-volumes", type=int, default=60)
    p.add_argument("--tr", type=float, default=2.0)
    p.add_argument("--n-patients", type=int, default=4)
    p.add_argument("--n-controls", type=int, default=4)
    p.add_argument("--sessions", nargs="+", default=[])
    p.add_argument("--n-runs", type=int, default=1)
    p.add_argument("--n-sites", type=int, default=1)
    p.add_argument("--n-dummy", type=int, default=0, help="non-steady-state volumes at the start of each run")
    p.add_argument("--null", action="store_true", help="no planted CLBP effects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--aslprep", action="store_true", help="also write ASLPrep-style CBF maps in OUTPUT/derivatives/aslprep"
    )
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.output.exists() and any(args.output.iterdir()):
        print(f"clbp-bidsapp-synth: error: {args.output} exists and is not empty", file=sys.stderr)
        sys.exit(2)
    info = make_dataset(
        args.output,
        n_patients=args.n_patients,
        n_controls=args.n_controls,
        voxel_size=args.voxel_size,
        n_volumes=args.n_volumes,
        tr=args.tr,
        sessions=tuple(args.sessions),
        n_runs=args.n_runs,
        effects=not args.null,
        n_sites=args.n_sites,
        seed=args.seed,
        n_dummy=args.n_dummy,
        aslprep=args.aslprep,
    )
    print(f"raw BIDS dataset:      {info.root}")
    print(f"fMRIPrep derivatives:  {info.fmriprep_dir}")
    if args.aslprep:
        print(f"ASLPrep derivatives:   {info.root / 'derivatives' / 'aslprep'}")
    print(f"participants:          {len(info.participants)} ({args.n_patients} CLBP, {args.n_controls} HC)")
