"""The participant level from settings to outputs: find runs, build graphs, run them, report."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from clbp_bidsapp.config import Settings
from clbp_bidsapp.core.denoise import ConfoundError
from clbp_bidsapp.errors import ExitCode, InputError, LateSteps, UserError
from clbp_bidsapp.interfaces.denoise import plan_denoising
from clbp_bidsapp.io import bids, derivatives, images, manifest
from clbp_bidsapp.io.confounds import read_confounds
from clbp_bidsapp.reports.methods import write_citation_files
from clbp_bidsapp.workflows.execution import run_graph
from clbp_bidsapp.workflows.participant import init_participant_wf

LOGGER = logging.getLogger("clbp_bidsapp")


def work_dir_for(settings: Settings) -> Path:
    return settings.execution.work_dir or settings.execution.output_dir / "work"


def prepare_output(settings: Settings, *, source: dict[str, Any] | None) -> None:
    """dataset_description.json (with the settings hash) and .bidsignore of the output folder."""
    description = derivatives.dataset_description(
        source_description=source or {},
        source_url=f"file://{settings.execution.bids_dir.resolve()}",
        config_hash=settings.result_hash(),
    )
    derivatives.initialise_output(settings.execution.output_dir, description)


def run_participant_level(settings: Settings, *, run_id: str, source: dict[str, Any] | None) -> ExitCode:
    ex, inp = settings.execution, settings.inputs
    fmriprep_dir = bids.resolve_fmriprep_dir(ex.bids_dir, inp.fmriprep_dir)
    layout = bids.build_layout(fmriprep_dir, ex.bids_database_dir)
    collection = bids.collect_runs(
        layout,
        participants=inp.participant_label,
        sessions=inp.session_id,
        tasks=inp.task_id,
        task_pattern=inp.task_pattern,
        space=inp.space,
        res=inp.res,
        filters=inp.bids_filters,
    )
    prepare_output(settings, source=source)
    n_runs = sum(len(runs) for runs in collection.runs.values())
    print(
        f"clbp-bidsapp: found {n_runs} resting-state run(s) of {len(collection.runs)} participant(s) in {fmriprep_dir}",
        file=sys.stderr,
    )
    failed = dict(collection.failed)
    skipped = list(collection.skipped)
    workflows = {}
    for label, runs in collection.runs.items():
        try:
            usable = [run for run in runs if check_run(run, settings=settings, skipped=skipped)]
            if not usable:
                failed[label] = "no run has enough data after censoring (see the skipped runs below)"
                continue
            derivatives.remove_stale_temporaries(ex.output_dir / f"sub-{label}")  # left by a killed run
            workflows[label] = init_participant_wf(
                participant=label,
                runs=usable,
                output_dir=ex.output_dir,
                fmriprep_dir=fmriprep_dir,
                denoise=settings.denoise,
                metrics=settings.metrics,
                connectivity=settings.connectivity,
                random_seed=ex.random_seed,
                skip=ex.skip,
            )
        except (UserError, ConfoundError) as exc:
            failed[label] = str(exc)
        except Exception as exc:  # one participant's unforeseen problem never stops the others
            LOGGER.debug("checking the runs of sub-%s failed", label, exc_info=True)  # traceback with -vv
            failed[label] = f"unexpected {type(exc).__name__}: {exc} (please report this, with the -vv log)"
    limit_threads(ex.omp_nthreads)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=ex.omp_nthreads):  # this process's BLAS too (Linear plugin, forked workers)
        outcome = run_graph(
            workflows,
            execution=ex,
            work_dir=work_dir_for(settings),
            crash_dir=ex.output_dir / "logs" / f"crash-{run_id}",
        )
    failed.update(outcome.failed)
    report(outcome.succeeded, failed, skipped)
    read = [
        path
        for label in outcome.succeeded
        for run in collection.runs.get(label, [])
        for path in (run.bold, run.mask, run.confounds, run.confounds_json, *run.probsegs.values())
        if path is not None
    ]
    late = LateSteps(results=str(ex.output_dir))  # after the results are written: a failure there loses nothing
    if outcome.succeeded:
        late.run("the methods text (logs/CITATION.md)", write_citation_files, ex.output_dir, settings,
                 level="participant")  # fmt: skip
    late.run("the record of the inputs (logs/inputs-*.json)", manifest.record_inputs, ex.output_dir, run_id, read)
    late.run("the manifest (logs/manifest.json)", manifest.write_manifest, ex.output_dir)
    if not outcome.succeeded:
        if not failed:
            raise InputError(
                f"no participants to process in {fmriprep_dir}",
                exit_code=ExitCode.NOTHING_PROCESSED,
            )
        return ExitCode.NOTHING_PROCESSED
    if failed:
        return ExitCode.SOME_FAILED
    if ex.clean_workdir:
        shutil.rmtree(work_dir_for(settings), ignore_errors=True)
    return late.exit_code(ExitCode.OK)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Threads per process of the numerical libraries (inherited by MultiProc workers and SLURM jobs)."""
    import os

    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)


def check_run(run: bids.RunInputs, *, settings: Settings, skipped: list[tuple[str, str]]) -> bool:
    """Plan the run's denoising from its confounds before building any graph.

    A mask not on the BOLD grid (headers only) and confound problems (missing columns, wrong number of rows)
    raise here, naming the file or run. A run with less
    retained time than ``--min-time`` is not analysed: its QC row is written with ``used = false`` and the
    reason is listed among the skipped runs (heavy censoring never crashes the graph).
    """
    images.check_grid(run.bold, run.mask)
    table, metadata = read_confounds(run.confounds, run.confounds_json)
    plan = plan_denoising(
        table,
        metadata,
        settings=settings.denoise,
        tr=run.tr,
        n_volumes=images.n_volumes(run.bold),
        where=str(run.confounds),
    )
    if plan.qc["used"]:
        return True
    name = derivatives.derivative_name(run.source_name, suffix="qc", extension=".tsv", desc="denoising")
    folder = derivatives.subject_dir(settings.execution.output_dir, run.entities)
    derivatives.write_tsv(folder / name, pd.DataFrame([{**plan.qc, "n_volumes": int(plan.sample_mask.size)}]))
    skipped.append(
        (
            run.source_name,
            f"only {plan.qc['retained_seconds']:.0f} s retained after censoring, less than --min-time "
            f"{settings.denoise.min_time:g} s (recorded in its QC table, not analysed)",
        )
    )
    return False


def report(succeeded: list[str], failed: dict[str, str], skipped: list[tuple[str, str]]) -> None:
    """Print the closing summary (every participant's outcome and every skipped file)."""

    def say(text: str) -> None:
        print(f"clbp-bidsapp: {text}", file=sys.stderr)

    say(f"finished: {len(succeeded)} participant(s) succeeded, {len(failed)} failed")
    for label in succeeded:
        say(f"  ok      sub-{label}")
    for label, why in sorted(failed.items()):
        say(f"  FAILED  sub-{label}: {why}")
    for what, why in skipped:
        say(f"  skipped {what}: {why}")
