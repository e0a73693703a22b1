"""Denoising stage versus one bare nibabel load of the same run (2 mm, 240 volumes), measured in one run.

    .venv/bin/python benchmarks/bench_denoise.py

Prints: the stage time (load once + plan + regression/censoring/band-pass, both outputs) as a ratio to one
bare ``nibabel`` load of the gzipped BOLD, the kernel alone as a ratio to the load, nilearn.signal.clean
(float64, as it must be called) as a ratio, and the kernel's peak extra memory as a ratio to the run's float32
size.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import nibabel as nb
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _data import best_of, one_run

from clbp_bidsapp.config import DenoiseSettings
from clbp_bidsapp.core.denoise import denoise
from clbp_bidsapp.denoise_plan import plan_denoising
from clbp_bidsapp.io.confounds import read_confounds
from clbp_bidsapp.io.images import load_masked_run


def main() -> None:
    bold, mask, confounds = one_run()
    bare = best_of(lambda: np.asanyarray(nb.load(str(bold)).dataobj), repeats=2)
    run = load_masked_run(bold, mask)
    table, meta = read_confounds(confounds)
    plan = plan_denoising(table, meta, settings=DenoiseSettings(), tr=2.0, n_volumes=run.series.shape[0], where="bench")

    def stage():
        loaded = load_masked_run(bold, mask)
        t, m = read_confounds(confounds)
        p = plan_denoising(t, m, settings=DenoiseSettings(), tr=2.0, n_volumes=loaded.series.shape[0], where="b")
        denoise(loaded.series, confounds=p.confounds, sample_mask=p.sample_mask, tr=2.0)

    def kernel():
        denoise(run.series, confounds=plan.confounds, sample_mask=plan.sample_mask, tr=2.0)

    stage_time = best_of(stage, repeats=2)
    kernel_time = best_of(kernel)
    tracemalloc.start()
    kernel()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = run.series.nbytes
    n, v = run.series.shape
    print(f"run: {v} voxels x {n} volumes ({size / 1e6:.0f} MB float32); {int((~plan.sample_mask).sum())} censored")
    print(f"bare nibabel load of the gzipped BOLD: {bare:.2f} s")
    print(f"denoising stage (load + plan + both outputs): {stage_time / bare:.2f} x one bare load")
    print(f"denoising kernel alone:                       {kernel_time / bare:.2f} x one bare load")
    print(f"kernel peak extra memory:                     {peak / size:.2f} x the run's float32 size")
    if "--nilearn" in sys.argv:
        from nilearn import signal as nsignal

        subset = run.series[:, :20000].astype(np.float64)
        start = __import__("time").perf_counter()
        nsignal.clean(
            subset,
            detrend=True,
            standardize=None,
            confounds=plan.confounds,
            filter="butterworth",
            high_pass=0.01,
            low_pass=0.08,
            t_r=2.0,
            sample_mask=plan.sample_mask,
        )
        per_voxel = (__import__("time").perf_counter() - start) / 20000
        print(f"nilearn.signal.clean (extrapolated from 20000 voxels): {per_voxel * v / bare:.1f} x one bare load")


if __name__ == "__main__":
    main()
