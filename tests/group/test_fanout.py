"""Fan-out of the group permutation tests (issue #17 item 4): chunks computed apart and merged give exactly the
single-process result, in the kernel, through the process pool, and through the command line (``--nprocs``).

The SLURM executor is tested on a real cluster in tests/cluster/test_group_fanout.py.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clbp_bidsapp.core.stats import (
    PERMUTATIONS_PER_CHUNK,
    Design,
    chunk_count,
    merge_nulls,
    permutation_nulls,
    permutation_stream,
    permutation_test,
)
from clbp_bidsapp.group import fanout
from tests.integration.common import with_min_dof

N_PERM = 2 * PERMUTATIONS_PER_CHUNK + 37  # three chunks, the last one short


@pytest.fixture(scope="module")
def problem():
    """An uneven 7 x 8 x 9 grid with a planted effect, 14 participants, a covariate: (data, design, mask)."""
    rng = np.random.default_rng(5)
    mask = np.zeros((7, 8, 9), dtype=bool)
    mask[1:6, 1:7, 2:8] = True
    mask[3, 4, 2] = False
    n = 14
    group = np.r_[np.ones(7), np.zeros(7)]
    age = rng.normal(size=n)
    design = Design(matrix=np.column_stack([group, np.ones(n), age - age.mean()]), names=["g", "1", "age"], tested=0)
    volumes = rng.normal(size=(n, *mask.shape))
    volumes[:7, 2:5, 2:5, 3:6] += 1.2  # a blob in the patients
    from scipy import ndimage

    volumes = ndimage.gaussian_filter(volumes, sigma=(0, 1, 1, 1))
    return volumes[:, mask], design, mask


OPTIONS = {"n_permutations": N_PERM, "seed": 11, "cluster_threshold": 2.0, "tfce": True}


def assert_same_result(a, b) -> None:
    """Every array of two PermutationResults identical to the bit (NaN-aware), and the same tail fits."""
    for name in ("t", "p_uncorrected", "p_fwe", "q_fdr", "max_null", "cluster_labels", "cluster_p_fwe", "tfce",
                 "p_tfce_fwe", "max_tfce_null"):  # fmt: skip
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        if left is not None:
            assert left.dtype == right.dtype and left.tobytes() == right.tobytes(), name
    assert (a.n_permutations, a.tail, a.p_floor, a.tail_fits) == (b.n_permutations, b.tail, b.p_floor, b.tail_fits)


def test_split_chunks_covers_every_chunk_once_in_order():
    assert fanout.split_chunks(5, 2) == [range(0, 2), range(2, 5)]
    assert fanout.split_chunks(3, 8) == [range(0, 1), range(1, 2), range(2, 3)]  # never an empty task
    for n_chunks in (1, 7, 50):
        for pieces in (1, 2, 3, 16):
            parts = fanout.split_chunks(n_chunks, pieces)
            assert [c for part in parts for c in part] == list(range(n_chunks))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_the_stream_depends_on_the_seed_and_chunk_only():
    whole = np.concatenate(list(permutation_stream(9, N_PERM, seed=4, block=128)))
    assert whole.shape == (N_PERM, 9)
    assert np.array_equal(whole[0], np.arange(9))  # the observed data first
    assert not np.array_equal(whole[PERMUTATIONS_PER_CHUNK], np.arange(9))  # later chunks are not restarted at it
    for block in (1, 7, 1000):  # block size: memory only
        assert np.array_equal(np.concatenate(list(permutation_stream(9, N_PERM, seed=4, block=block))), whole)
    pieces = [np.concatenate(list(permutation_stream(9, N_PERM, seed=4, block=30, chunks=part)))
              for part in fanout.split_chunks(chunk_count(N_PERM), 3)]  # fmt: skip
    assert np.array_equal(np.concatenate(pieces), whole)
    # chunk c comes from default_rng([seed, c]): known answer for chunk 1
    rng = np.random.default_rng([4, 1])
    assert np.array_equal(whole[PERMUTATIONS_PER_CHUNK], rng.permutation(9))
    assert not np.array_equal(np.concatenate(list(permutation_stream(9, N_PERM, seed=5, block=128))), whole)


@pytest.mark.parametrize("tail", ["none", "gpd"])
@pytest.mark.parametrize("pieces", [1, 2, 3])
def test_chunks_merged_equal_one_run(problem, pieces, tail):
    data, design, mask = problem
    single = permutation_test(data, design, mask=mask, tail=tail, **OPTIONS)
    assert single.cluster_p_fwe.size > 0 and (single.p_fwe < 0.05).any()  # the planted blob is found
    parts = [
        permutation_nulls(data, design, mask=mask, chunks=chunks, **OPTIONS)
        for chunks in reversed(fanout.split_chunks(chunk_count(N_PERM), pieces))
    ]  # any completion order
    merged = permutation_test(data, design, mask=mask, tail=tail, nulls=merge_nulls(parts), **OPTIONS)
    assert_same_result(merged, single)


def test_merging_refuses_missing_chunks(problem):
    data, design, _ = problem
    first, _, last = (permutation_nulls(data, design, n_permutations=N_PERM, seed=1, chunks=range(c, c + 1))
                      for c in range(3))  # fmt: skip
    with pytest.raises(ValueError, match="not consecutive"):
        merge_nulls([first, last])
    with pytest.raises(ValueError, match="not all"):
        permutation_test(data, design, n_permutations=N_PERM, seed=1, nulls=merge_nulls([first]))


def test_process_pool_equals_serial(problem, tmp_path):
    """Two workers, three units in flight (the pool's window), outputs identical; the temporary data is removed."""
    data, design, mask = problem
    units = [(data, "gpd"), (data[:, ::-1].copy(), "none"), (data * 2.5, "gpd")]
    serial = fanout.Serial()
    expected = [serial.submit(d, design, label="u", mask=mask, tail=t, **OPTIONS)() for d, t in units]
    with fanout.Pool(tmp_path, nprocs=2) as pool:
        assert pool.max_units == 3
        pending = [pool.submit(d, design, label="u", mask=mask, tail=t, **OPTIONS) for d, t in units]
        assert [len(unit.tasks) for unit in pool.units] == [2, 2, 2]
        results = [finish() for finish in pending]
        folder = pool.folder
    for got, want in zip(results, expected, strict=True):
        assert_same_result(got, want)
    assert not folder.exists()


def test_a_worker_that_dies_stops_the_run_with_one_line(problem, tmp_path):
    """E.g. killed by the kernel's out-of-memory killer: exit 1 naming --nprocs, not a BrokenProcessPool traceback."""
    from clbp_bidsapp.errors import ExitCode, InputError

    data, design, mask = problem
    with fanout.Pool(tmp_path, nprocs=1) as pool:
        finish = pool.submit(data, design, label="alff (CLBPvsHC) permutations", mask=mask, tail="none", **OPTIONS)
        for process in list(pool.pool._processes.values()):  # spawned at submit; still importing numpy
            process.kill()
        with pytest.raises(InputError, match=r"--nprocs 1: a worker process died during alff \(CLBPvsHC\)") as caught:
            finish()
    assert caught.value.exit_code == ExitCode.SOME_FAILED


def test_executor_follows_nprocs_and_plugin(tmp_path, monkeypatch):
    from clbp_bidsapp.config import ExecutionSettings
    from clbp_bidsapp.errors import InputError

    assert isinstance(fanout.executor_for(ExecutionSettings(nprocs=1), work_dir=tmp_path), fanout.Serial)
    assert isinstance(fanout.executor_for(ExecutionSettings(nprocs=4, plugin="Linear"), work_dir=tmp_path),
                      fanout.Serial)  # fmt: skip
    with fanout.executor_for(ExecutionSettings(nprocs=2, omp_nthreads=1), work_dir=tmp_path) as pool:
        assert isinstance(pool, fanout.Pool) and pool.nprocs == 2
    assert list(tmp_path.iterdir()) == []  # the pool's temporary folder is gone
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(InputError, match="--plugin SLURM: sbatch is not on PATH"):
        fanout.check_execution(ExecutionSettings(plugin="SLURM"))
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    fanout.check_execution(ExecutionSettings(plugin="SLURMGraph", plugin_args={"sbatch_args": "-p short"}))
    for args, problem in (({"chunks_per_job": 0}, "chunks_per_job: 0 is not a positive whole number"),
                          ({"units_per_array": "8"}, "units_per_array: '8' is not a positive whole number"),
                          ({"sbatch_args": ["-p"]}, "sbatch_args: ['-p'] is not a string")):  # fmt: skip
        with pytest.raises(InputError, match=re.escape(f"--plugin-args {problem}")):
            fanout.check_execution(ExecutionSettings(plugin="SLURM", plugin_args=args))
    fanout.check_execution(ExecutionSettings(plugin="MultiProc"))


# ---- command line: --nprocs 2 writes the same bytes as --nprocs 1 ------------------------------------------------

PARTICIPANT_ARGS = ("--min-time", "0", "--fd-thresh", "0", "--no-band-pass", "--skip", "vmhc", "dc", "tsnr", "report",
                    "graph", "dualreg", "connectome", "seedfc")  # fmt: skip
GROUP_ARGS = ("--n-permutations", "150", "--covariates", "--group-metrics", "alff", "reho", "--skip", "ml", "ica",
              "report", "connectome")  # fmt: skip


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Every command line of this file goes through here."""
    return subprocess.run([sys.executable, "-m", "clbp_bidsapp.cli", *map(str, with_min_dof(args))],
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """(dataset root, output folder with the participant level of 2 patients + 2 controls, 30 volumes, 4 mm)."""
    from clbp_bidsapp.testing.synthetic import make_dataset

    base = tmp_path_factory.mktemp("fanout")
    info = make_dataset(base / "bids", n_patients=2, n_controls=2, voxel_size=4, n_volumes=30, tr=2.0, seed=7)
    out = base / "out"
    result = cli(info.root, out, "participant", *PARTICIPANT_ARGS, "-w", base / "work")
    assert result.returncode == 0, result.stderr
    return info.root, out


def test_two_processes_write_the_same_group_outputs_as_one(processed, tmp_path):
    root, out = processed
    outputs = {}
    for nprocs in ("1", "2"):
        target = tmp_path / f"out-{nprocs}"
        shutil.copytree(out, target)
        result = cli(root, target, "group", *GROUP_ARGS, "--nprocs", nprocs, "-w", tmp_path / f"work-{nprocs}")
        assert result.returncode == 0, result.stderr
        assert "2 analyses run, 0 not run" in result.stderr
        assert ("permutations in 2 worker processes" in result.stderr) == (nprocs == "2")
        outputs[nprocs] = digest(target / "group")
        assert not list((tmp_path / f"work-{nprocs}").glob("group-fanout-*"))  # temporary unit data removed
    names = set(outputs["1"])
    for label in ("alff", "reho"):  # every map's statistics, TFCE and clusters
        for suffix in ("stat-t_statmap.nii.gz", "stat-logp_desc-fwe_statmap.nii.gz", "stat-tfce_statmap.nii.gz",
                       "stat-logp_desc-tfcefwe_statmap.nii.gz", "stat-logp_desc-clusterfwe_statmap.nii.gz",
                       "stat-logp_desc-uncorrected_statmap.nii.gz", "stat-t_statmap.json"):  # fmt: skip
            assert f"{label}_contrast-CLBPvsHC_{suffix}" in names
    assert "alff_contrast-CLBPvsHC_stat-logp_desc-familyfwe_statmap.nii.gz" in names  # the primary family
    assert outputs["2"] == outputs["1"]
