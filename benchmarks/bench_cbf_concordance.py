"""BOLD-CBF concordance through the full command-line chain on planted and null synthetic data (issue #16).

    .venv/bin/python benchmarks/bench_cbf_concordance.py [--patients 12] [--controls 10] [--volumes 150]
                                                         [--permutations 500] [--folder /tmp/bench-cbf]

For the planted and the null dataset (same generator and seed; ``make_dataset(..., aslprep=True)``): the participant
level (ALFF and ReHo only, with ``--aslprep-dir``) and the group level (``alff``, ``reho``, and the CBF maps). It
prints, for both, the BOLD-derived clusters compared (cluster or peak FWE p < 0.05) and their concordance status,
the CBF clusters, and the voxels with max-t FWE p < 0.05 of ``rcbf`` inside and outside the planted spheres. Expected on
planted data: the insula ALFF cluster concordant (CBF +40 % there), the parahippocampal ReHo cluster discordant
(CBF -40 %); on null data: no significant cluster of either kind. Slow (tens of minutes on 2 cores): not a test.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from clbp_bidsapp.testing.synthetic import CBF_EFFECTS, PLANTED_EFFECTS, make_dataset


def _cli(*args) -> None:
    done = subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)


def _fwe_voxels(path: Path) -> tuple[int, int]:
    img = nb.load(path)
    data = np.asanyarray(img.dataobj)
    ijk = np.argwhere(np.abs(data) > -np.log10(0.05))
    xyz = nb.affines.apply_affine(img.affine, ijk)
    near = np.zeros(len(xyz), dtype=bool)
    for effect in PLANTED_EFFECTS:
        if effect.name in CBF_EFFECTS:
            near |= np.linalg.norm(xyz - np.asarray(effect.centre_mm), axis=1) <= effect.radius_mm + 4
    return int(near.sum()), int((~near).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--controls", type=int, default=10)
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--permutations", type=int, default=500)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench-cbf"))
    args = parser.parse_args()
    for effects in (True, False):
        start = time.perf_counter()
        root = args.folder / ("planted" if effects else "null")
        info = make_dataset(root / "bids", n_patients=args.patients, n_controls=args.controls, n_volumes=args.volumes,
                            effects=effects, seed=11, aslprep=True)  # fmt: skip
        out, work = root / "out", root / "work"
        _cli(info.root, out, "participant", "-w", work, "--nprocs", "2", "--aslprep-dir",
             info.root / "derivatives" / "aslprep", "--skip", "tsnr", "vmhc", "dc", "seedfc", "connectome", "graph",
             "dualreg", "report")  # fmt: skip
        _cli(info.root, out, "group", "-w", work, "--group-metrics", "alff", "reho", "--n-permutations",
             args.permutations, "--covariates", "age", "mean_fd", "--skip", "connectome", "ml", "ica")  # fmt: skip
        group = out / "group"
        forward = pd.read_csv(group / "desc-boldcbf_concordance.tsv", sep="\t")
        reverse = pd.read_csv(group / "desc-cbfbold_concordance.tsv", sep="\t")
        near, away = _fwe_voxels(group / "rcbf_contrast-CLBPvsHC_stat-logp_desc-fwe_statmap.nii.gz")
        print(f"\n== {'planted' if effects else 'null'} ({args.patients} CLBP, {args.controls} HC, {args.volumes} "
              f"volumes, {args.permutations} permutations; {time.perf_counter() - start:.0f} s)")  # fmt: skip
        print(f"rcbf voxels with max-t FWE p < 0.05: {near} within 4 mm of a planted sphere, {away} elsewhere")
        columns = ["map", "cluster", "bold_sign", "voxels", "harvard_oxford", "cbf_effect", "cbf_ci_low",
                   "cbf_ci_high", "cbf_p", "status"]  # fmt: skip
        none = "cluster with cluster or peak FWE p < 0.05"
        print(forward[columns].to_string(index=False) if len(forward) else f"no BOLD {none}")
        print(reverse.to_string(index=False) if len(reverse) else f"no CBF {none}")


if __name__ == "__main__":
    main()
