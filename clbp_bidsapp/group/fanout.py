"""Fan-out of the group level's voxelwise permutation tests over processes (``--nprocs``) or SLURM jobs.

**Units, chunks and tasks.** Every map x contrast test is a *unit*. Its permutations are drawn in seeded *chunks*
of ``core.stats.PERMUTATIONS_PER_CHUNK`` (chunk c from ``numpy.random.default_rng([seed, c])``, see
``core.stats.permutation_stream``), so a *task* -- a range of one unit's chunks -- computes exactly the numbers a
single process computes for those permutations, wherever it runs. The tasks' nulls merge exactly
(``core.stats.merge_nulls``: exceedance counts add, the per-permutation maxima of t, cluster size and TFCE
concatenate in chunk order), and the p-values, TFCE maps, cluster tables and the across-family FWE are computed once,
in the main process, from the merged nulls by the same code as a single-process run. So the outputs are
byte-identical whatever the number of processes or jobs. The maps of one contrast keep sharing their permutations
(same seed, same participants: same orderings), which the across-family FWE needs.

**Executors** (:func:`executor_for` picks one from the execution settings):

- :class:`Serial` (``--nprocs 1``, or ``--plugin Linear``): each test runs when it is submitted, as before.
- :class:`Pool` (``--nprocs N``, N > 1): N spawned worker processes, each limited to ``--omp-nthreads`` BLAS
  threads. A unit's chunks are split into N tasks; up to N + 1 units are in flight, so a worker never waits for
  the main process to load the next map.
- :class:`Slurm` (``--plugin SLURM`` or ``SLURMGraph``): the tasks of up to ``units_per_array`` units are submitted
  as ONE job array (``sbatch --wait``), ``chunks_per_job`` chunks per array task; the main process (the group
  level itself) merges and writes. One array per batch rather than nipype's SLURM plugin: one submission and one
  wait instead of one job and one ``squeue`` poll per node, no pickled nipype graph, and the merge needs every map
  in the main process anyway (the family FWE). ``--plugin-args '{"sbatch_args": "--partition=short --mem=4G",
  "chunks_per_job": 10, "units_per_array": 16}'`` tunes it (these are the defaults, with no sbatch_args).

**Memory and disk.** A unit's data (participants x voxels, float64) is written once to a temporary folder under
the work folder and memory-mapped by the tasks (the page cache is shared by the processes of one machine); the
main process does not keep it. Each worker holds one unit's Freedman-Lane residuals (participants x voxels x 8
bytes) and one block of permuted t maps (128 x voxels x 8 bytes, plus 16 TFCE maps). The temporary folder holds
at most N + 1 (pool) or ``units_per_array`` (SLURM) units' data and is removed when the group level's statistics
end (kept, and named, when a SLURM task failed).
"""

from __future__ import annotations

import itertools
import multiprocessing
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clbp_bidsapp import messages
from clbp_bidsapp.core.nbs import merge_nbs_nulls, nbs_nulls, network_based_statistic
from clbp_bidsapp.core.stats import (
    Design,
    chunk_count,
    merge_nulls,
    permutation_nulls,
    permutation_test,
)
from clbp_bidsapp.errors import ExitCode, InputError
from clbp_bidsapp.group import budget
from clbp_bidsapp.io import derivatives, images

SLURM_PLUGINS = ("SLURM", "SLURMGraph")
DEFAULT_CHUNKS_PER_JOB = 10
DEFAULT_UNITS_PER_ARRAY = 16  # x 1.9 GB of temporary data per test for 1000 participants at 2 mm
PendingResult = Callable[[], Any]


@dataclass(frozen=True)
class PermutationKind:
    """A permutation test the executors run: its per-chunk nulls, their exact merge, and the result from them."""

    nulls: Callable[..., Any]  # (data, design, *, chunks, **options) -> part with .chunks and .max_null
    merge: Callable[[Sequence[Any]], Any]  # parts -> the nulls of all chunks
    result: Callable[..., Any]  # (data, design, *, nulls=None, on_progress=None, **options) -> the test's result


KINDS: dict[str, PermutationKind] = {
    "glm": PermutationKind(permutation_nulls, merge_nulls, permutation_test),  # t, max-t, clusters, TFCE, sequential p
    "nbs": PermutationKind(nbs_nulls, merge_nbs_nulls, network_based_statistic),  # Network-Based Statistic components
}


def split_chunks(n_chunks: int, pieces: int) -> list[range]:
    """``range(n_chunks)`` cut into ``pieces`` consecutive ranges of near-equal length (none empty)."""
    pieces = max(1, min(pieces, n_chunks))
    bounds = [round(k * n_chunks / pieces) for k in range(pieces + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def task_nulls(data_path: Path, design: Design, options: Mapping[str, Any], chunks: range, kind: str = "glm") -> Any:
    """One task: the nulls of ``chunks`` of the unit whose data is in ``data_path`` (memory-mapped)."""
    data = np.load(data_path, mmap_mode="r")
    return KINDS[kind].nulls(data, design, chunks=chunks, **_null_options(options))


# fitted on the merged null, or (sequential uncorrected p) carried on from it, by the main process
MERGED_OPTIONS = ("tail", "sequential_h", "max_permutations")


def _null_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key not in MERGED_OPTIONS}


class Executor:
    """Runs the permutation tests submitted to it; ``submit`` returns a callable giving the unit's result."""

    def submit(
        self, data: np.ndarray, design: Design, *, label: str, kind: str = "glm", **options: Any
    ) -> PendingResult:
        """Start the ``kind`` test (:data:`KINDS`) of ``data``; the callable returned gives its result."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers and temporary files."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Serial(Executor):
    """Every test in this process, when it is submitted."""

    def submit(
        self, data: np.ndarray, design: Design, *, label: str, kind: str = "glm", **options: Any
    ) -> PendingResult:
        with budget.map_progress(options["n_permutations"], label=label, tfce=options.get("tfce", False)) as bar:
            result = KINDS[kind].result(data, design, on_progress=bar.update, **options)
        return lambda: result


@dataclass
class _Unit:
    index: int
    data_path: Path
    design: Design
    options: dict[str, Any]
    label: str
    tasks: list[range]
    kind: str = "glm"
    handles: list[Any] = field(default_factory=list)  # pool: futures; SLURM: task numbers in its job array
    array: int = -1  # SLURM: which job array ran its tasks
    result: Any = None


class _Deferred(Executor):
    """Shared by :class:`Pool` and :class:`Slurm`: unit data on disk, tasks elsewhere, merge here, in order."""

    max_units = 1

    def __init__(self, work_dir: Path) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="group-fanout-", dir=work_dir))
        self.units: list[_Unit] = []
        self.open: list[_Unit] = []  # submitted, not yet merged, in submission order
        self.keep_folder = False

    def pieces(self, n_chunks: int) -> int:
        raise NotImplementedError

    def start(self, unit: _Unit) -> None:
        raise NotImplementedError

    def collect(self, unit: _Unit) -> list[Any]:
        raise NotImplementedError

    def submit(
        self, data: np.ndarray, design: Design, *, label: str, kind: str = "glm", **options: Any
    ) -> PendingResult:
        while len(self.open) >= self.max_units:
            self.finish(self.open[0])
        index = len(self.units)
        data_path = self.folder / f"unit-{index:04d}.npy"
        with derivatives.atomic_path(data_path) as tmp:  # a full work disk: the usual one-line error
            images.save_array(tmp, np.asarray(data, dtype=np.float64))
        n_chunks = chunk_count(options["n_permutations"])
        tasks = split_chunks(n_chunks, self.pieces(n_chunks))
        unit = _Unit(index, data_path, design, dict(options), label, tasks, kind)
        self.units.append(unit)
        self.open.append(unit)
        self.start(unit)
        return lambda: self.finish(unit)

    def finish(self, unit: _Unit) -> Any:
        """Merge every open unit up to ``unit`` (in order) and compute its result as one process would."""
        while unit.result is None:
            first = self.open.pop(0)
            kind = KINDS[first.kind]
            nulls = kind.merge(self.collect(first))
            data = np.load(first.data_path, mmap_mode="r")
            first.result = kind.result(data, first.design, nulls=nulls, **first.options)
            del data
            first.data_path.unlink()
        return unit.result

    def close(self) -> None:
        if not self.keep_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def _limit_threads(omp_nthreads: int) -> None:
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which shuts the pool down
    threadpool_limits(limits=omp_nthreads)


class Pool(_Deferred):
    """``nprocs`` worker processes on this machine."""

    def __init__(self, work_dir: Path, *, nprocs: int, omp_nthreads: int = 1) -> None:
        super().__init__(work_dir)
        self.nprocs = nprocs
        self.max_units = nprocs + 1
        self.pool = ProcessPoolExecutor(
            max_workers=nprocs,
            mp_context=multiprocessing.get_context("spawn"),  # no fork of a process holding threads and files
            initializer=_limit_threads,
            initargs=(omp_nthreads,),
        )

    def pieces(self, n_chunks: int) -> int:
        return self.nprocs

    def start(self, unit: _Unit) -> None:
        unit.handles = [
            self.pool.submit(task_nulls, unit.data_path, unit.design, unit.options, chunks, unit.kind)
            for chunks in unit.tasks
        ]

    def collect(self, unit: _Unit) -> list[Any]:
        n_permutations = unit.options["n_permutations"]
        try:
            with budget.map_progress(n_permutations, label=unit.label, tfce=unit.options.get("tfce", False)) as bar:
                for future in as_completed(unit.handles):
                    bar.update(future.result().max_null.size)
        except BrokenProcessPool:
            raise InputError(
                f"--nprocs {self.nprocs}: a worker process died during {unit.label} (out of memory?); "
                "rerun with fewer --nprocs",
                exit_code=ExitCode.SOME_FAILED,
            ) from None
        return [future.result() for future in unit.handles]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        super().close()


class Slurm(_Deferred):
    """Job arrays on SLURM, submitted with ``sbatch --wait`` from this process."""

    def __init__(
        self,
        work_dir: Path,
        *,
        omp_nthreads: int = 1,
        sbatch_args: Sequence[str] = (),
        chunks_per_job: int = DEFAULT_CHUNKS_PER_JOB,
        units_per_array: int = DEFAULT_UNITS_PER_ARRAY,
    ) -> None:
        super().__init__(work_dir)
        self.omp_nthreads = omp_nthreads
        self.sbatch_args = list(sbatch_args)
        self.chunks_per_job = chunks_per_job
        self.max_units = units_per_array
        self.queued: list[tuple[_Unit, range]] = []
        self.arrays = 0

    def pieces(self, n_chunks: int) -> int:
        return -(-n_chunks // self.chunks_per_job)

    def start(self, unit: _Unit) -> None:
        self.queued += [(unit, chunks) for chunks in unit.tasks]

    def collect(self, unit: _Unit) -> list[Any]:
        if self.queued:
            self.run_array()
        parts = []
        for number in unit.handles:
            path = self.array_folder(unit.array) / f"result-{number}.pkl"
            try:
                parts.append(pickle.loads(path.read_bytes()))
            except (OSError, pickle.UnpicklingError, EOFError):
                self.keep_folder = True
                log = self.array_folder(unit.array) / f"task-{number}.log"
                raise InputError(
                    f"--plugin SLURM: array task {number} of {unit.label} wrote no result; see {log}",
                    exit_code=ExitCode.SOME_FAILED,
                ) from None
        return parts

    def array_folder(self, array: int) -> Path:
        return self.folder / f"array-{array:03d}"

    def run_array(self) -> None:
        """Submit every queued task as one job array and wait for it to end."""
        folder = self.array_folder(self.arrays)
        folder.mkdir()
        for number, (unit, chunks) in enumerate(self.queued):
            task = {"data_path": unit.data_path, "design": unit.design, "options": unit.options, "chunks": chunks,
                    "kind": unit.kind, "omp_nthreads": self.omp_nthreads}  # fmt: skip
            derivatives.write_bytes(folder / f"task-{number}.pkl", pickle.dumps(task))
            unit.handles.append(number)
            unit.array = self.arrays
        script = folder / "fanout.sbatch"
        derivatives.write_text(
            script,
            "#!/bin/bash\n"
            "#SBATCH --job-name=clbp-group-fanout\n"
            f"#SBATCH --array=0-{len(self.queued) - 1}\n"
            f"#SBATCH --cpus-per-task={self.omp_nthreads}\n"
            "set -euo pipefail\n"
            f"export OMP_NUM_THREADS={self.omp_nthreads} OPENBLAS_NUM_THREADS={self.omp_nthreads} "
            f"MKL_NUM_THREADS={self.omp_nthreads}\n"
            f"exec {shlex.quote(sys.executable)} -m clbp_bidsapp.group.fanout {shlex.quote(str(folder))} "
            '"$SLURM_ARRAY_TASK_ID"\n',
        )
        command = ["sbatch", "--wait", "--parsable", f"--output={folder}/task-%a.log", *self.sbatch_args, str(script)]
        total = sum(unit.options["n_permutations"] for unit in {id(u): u for u, _ in self.queued}.values())
        count = len(self.queued)
        self.queued = []
        self.arrays += 1
        messages.say(f"group statistics: a SLURM job array of {count} task(s), {total} permutations; waiting for it")
        started = time.monotonic()
        done = _run_and_wait(command)
        messages.say(
            f"group statistics: SLURM job array {done.stdout.strip()} ended in {time.monotonic() - started:.0f} s"
        )
        if done.returncode != 0:
            failed = [n for n in range(count) if not (folder / f"result-{n}.pkl").is_file()]
            if failed or not done.stdout.strip():
                self.keep_folder = True
                raise InputError(
                    f"--plugin SLURM: the job array ended with code {done.returncode} and {len(failed)} task(s) "
                    f"without a result ({done.stderr.strip() or 'see the task logs'}); logs in {folder}",
                    exit_code=ExitCode.SOME_FAILED,
                )


def _run_and_wait(command: list[str]) -> subprocess.CompletedProcess:
    """Run ``sbatch --wait --parsable``; if this process is interrupted, cancel the array it submitted."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = process.stdout.readline().strip() if process.stdout is not None else ""
    try:
        rest, stderr = process.communicate()
    except BaseException:
        if job:
            subprocess.run(["scancel", job.split(";")[0]], check=False)
        process.kill()
        raise
    return subprocess.CompletedProcess(command, process.returncode, job + rest, stderr)


def executor_for(execution, *, work_dir: Path) -> Executor:
    """The executor that ``--nprocs``, ``--plugin`` and ``--plugin-args`` ask for (see the module docstring)."""
    if execution.plugin in SLURM_PLUGINS:
        options = slurm_options(execution)
        messages.say(f"group statistics: permutations as SLURM job arrays (--plugin {execution.plugin})")
        return Slurm(work_dir, omp_nthreads=execution.omp_nthreads, **options)
    if execution.nprocs > 1 and execution.plugin != "Linear":
        messages.say(f"group statistics: permutations in {execution.nprocs} worker processes (--nprocs)")
        return Pool(work_dir, nprocs=execution.nprocs, omp_nthreads=execution.omp_nthreads)
    return Serial()


def slurm_options(execution) -> dict[str, Any]:
    """The SLURM executor's options from ``--plugin-args``; :class:`InputError` for a wrong one or no sbatch."""
    if shutil.which("sbatch") is None:
        raise InputError("--plugin SLURM: sbatch is not on PATH; run the group level on a SLURM host, or --nprocs")
    args = dict(execution.plugin_args)
    return {
        "sbatch_args": shlex.split(_plugin_arg(args, "sbatch_args", str, "")),
        "chunks_per_job": _plugin_arg(args, "chunks_per_job", int, DEFAULT_CHUNKS_PER_JOB),
        "units_per_array": _plugin_arg(args, "units_per_array", int, DEFAULT_UNITS_PER_ARRAY),
    }


def check_execution(execution) -> None:
    """Refuse, before any work, a SLURM fan-out that cannot run (no sbatch, wrong ``--plugin-args``)."""
    if execution.plugin in SLURM_PLUGINS:
        slurm_options(execution)


def _plugin_arg(args: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = args.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 1):
        wanted = "a positive whole number" if kind is int else "a string"
        raise InputError(f"--plugin-args {key}: {value!r} is not {wanted}")
    return value


def run_task(folder: Path, number: int) -> None:
    """One SLURM array task: compute the nulls of ``task-<number>.pkl`` and write ``result-<number>.pkl``."""
    from threadpoolctl import threadpool_limits

    task = pickle.loads((folder / f"task-{number}.pkl").read_bytes())
    with threadpool_limits(limits=task["omp_nthreads"]):
        nulls = task_nulls(task["data_path"], task["design"], task["options"], task["chunks"], task["kind"])
    derivatives.write_bytes(folder / f"result-{number}.pkl", pickle.dumps(nulls))


def main(argv: Sequence[str] | None = None) -> int:
    folder, number = (sys.argv[1:] if argv is None else list(argv))[:2]
    run_task(Path(folder), int(number))
    return 0


if __name__ == "__main__":
    sys.exit(main())
