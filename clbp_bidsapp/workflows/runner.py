"""The participant level from settings to outputs: find runs, build graphs, run them, report."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from clbp_bidsapp import messages
from clbp_bidsapp.config import Settings
from clbp_bidsapp.core.denoise import ConfoundError
from clbp_bidsapp.denoise_plan import plan_denoising, qc_table
from clbp_bidsapp.errors import ExitCode, InputError, LateSteps, UserError
from clbp_bidsapp.io import atlases, bids, completion, derivatives, images, manifest, spaces, workdir
from clbp_bidsapp.io.confounds import read_confounds
from clbp_bidsapp.reports.methods import write_citation_files
from clbp_bidsapp.workflows import perfusion
from clbp_bidsapp.workflows.denoising import QC_COLUMNS
from clbp_bidsapp.workflows.execution import run_graph
from clbp_bidsapp.workflows.participant import init_participant_wf, promised_outputs

LOGGER = logging.getLogger("clbp_bidsapp")


def work_dir_for(settings: Settings) -> Path:
    return settings.execution.work_dir or settings.execution.output_dir / "work"


def prepare_output(settings: Settings, *, source: dict[str, Any] | None) -> None:
    """dataset_description.json (with the settings hash, the ``fmriprep`` dataset link and the upstream pipelines)
    and .bidsignore of the output folder."""
    fmriprep_dir = bids.resolve_fmriprep_dir(settings.execution.bids_dir, settings.inputs.fmriprep_dir)
    aslprep_dir = settings.inputs.aslprep_dir
    linked = {}  # the bids:aslprep: URIs of the CBF sidecars
    if aslprep_dir is not None:
        linked["aslprep"] = (f"file://{aslprep_dir.resolve()}", bids.read_derivative_description(aslprep_dir))
    description = derivatives.dataset_description(
        source_description=source or {},
        source_url=f"file://{settings.execution.bids_dir.resolve()}",
        config_hash=settings.result_hash(),
        fmriprep_url=f"file://{fmriprep_dir.resolve()}",
        fmriprep_description=bids.read_derivative_description(fmriprep_dir),
        linked=linked,
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
    messages.say(f"found {n_runs} resting-state run(s) of {len(collection.runs)} participant(s) in {fmriprep_dir}")
    requested = settings  # what the user asked for: the completion records carry its hash (rerun comparisons)
    settings = settings_for_space(settings)
    ex = settings.execution
    failed = dict(collection.failed)
    skipped = list(collection.skipped)
    for label in [*collection.runs, *collection.failed]:  # no record while a participant is being (re)made
        completion.remove_record(ex.output_dir, label)
    workflows = {}
    asl = perfusion.aslprep_layout(inp, ex.skip)  # None without --aslprep-dir
    cbf_wfs_of = functools.partial(  # (label, runs) -> the participant's CBF graphs on those runs' grids
        perfusion.participant_cbf_wfs, asl, output_dir=ex.output_dir, fmriprep_dir=fmriprep_dir, inputs=inp,
        smoothing_fwhm=settings.metrics.smoothing_fwhm, skipped=skipped, region_sets=settings.connectivity.atlases,
        seeds=() if "seedfc" in ex.skip else settings.connectivity.seeds,
    )  # fmt: skip
    used: dict[str, list[str]] = {}
    not_analysed: dict[str, list[str]] = {}
    for label, runs in collection.runs.items():
        try:
            LOGGER.info("sub-%s: checking %d run(s)", label, len(runs))
            for run in runs:
                LOGGER.debug("sub-%s: %s (mask %s, confounds %s)", label, run.bold, run.mask, run.confounds)
            usable = [run for run in runs if check_run(run, settings=settings, skipped=skipped)]
            used[label] = [run.source_name for run in usable]
            not_analysed[label] = [run.source_name for run in runs if run not in usable]
            if not usable:
                failed[label] = (
                    "no usable run: too little data after censoring or too few degrees of freedom "
                    "(see the skipped runs below)"
                )
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
                extra_wfs=cbf_wfs_of(label, usable),
            )
        except (UserError, ConfoundError) as exc:
            failed[label] = str(exc)
        except Exception as exc:  # one participant's unforeseen problem never stops the others
            LOGGER.debug("checking the runs of sub-%s failed", label, exc_info=True)  # traceback with -vv
            failed[label] = f"unexpected {type(exc).__name__}: {exc} (please report this, with the -vv log)"
    no_bold = {label for label in failed if label in collection.failed or not used.get(label, True)}
    for label in perfusion.cbf_only_participants(asl, inp.participant_label, analysed=workflows, failed=failed,
                                                 no_bold=no_bold):  # fmt: skip
        # no usable BOLD run (none found, or all skipped) but ASLPrep CBF: the CBF is analysed on its own
        runs = [run for run in collection.runs.get(label, []) if run.mask is not None]  # skipped runs: their grid
        completion.remove_record(ex.output_dir, label)
        try:
            cbf_wfs = cbf_wfs_of(label, runs)
        except UserError as exc:
            failed[label] = f"{failed.get(label, 'no fMRIPrep BOLD')}; CBF: {exc}"
            continue
        if not cbf_wfs and label not in failed:
            failed[label] = "no fMRIPrep BOLD, and no usable CBF map (see the skipped files below)"
        if cbf_wfs:
            skipped.append((f"sub-{label} BOLD", f"{failed.pop(label, 'no BOLD run')} (only CBF analysed)"))
            used[label] = []
            not_analysed.setdefault(label, [])
            workflows[label] = init_participant_wf(
                participant=label,
                runs=[],
                output_dir=ex.output_dir,
                fmriprep_dir=fmriprep_dir,
                denoise=settings.denoise,
                metrics=settings.metrics,
                skip=ex.skip,
                extra_wfs=cbf_wfs,
            )
    limit_threads(ex.omp_nthreads)
    from threadpoolctl import threadpool_limits

    if workflows:
        workdir.claim(work_dir_for(settings))  # marks the folder as the app's before the graph writes to it
    with threadpool_limits(limits=ex.omp_nthreads):  # this process's BLAS too (Linear plugin, forked workers)
        outcome = run_graph(
            workflows,
            execution=ex,
            work_dir=work_dir_for(settings),
            crash_dir=ex.output_dir / "logs" / f"crash-{run_id}",
        )
    failed.update(outcome.failed)
    promised = {label: promised_outputs(wf, ex.output_dir) for label, wf in workflows.items()}
    verified = []
    for label in outcome.succeeded:  # success is judged from disk, not from the graph
        missing = completion.missing_outputs(ex.output_dir, promised[label])
        if missing:
            failed[label] = missing_outputs_reason(ex.output_dir, missing)
        else:
            verified.append(label)
    outcome.succeeded = verified
    for label in outcome.succeeded:
        skipped += graph_not_computed(ex.output_dir, collection.runs.get(label, []), settings.connectivity.atlases)
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
    for label in list(outcome.succeeded):  # last: a record means every promised output is there
        try:
            completion.write_record(
                ex.output_dir,
                label,
                result_hash=requested.participant_hash(),
                settings=requested.participant_settings(),
                runs=used[label],
                skipped_runs=not_analysed[label],
                outputs=promised[label],
            )
        except FileNotFoundError as exc:  # removed since it was checked (another process, a scratch purge)
            outcome.succeeded.remove(label)
            failed[label] = str(exc)
            messages.say(f"  FAILED  sub-{label}: {exc}")
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
        workdir.clean(work_dir_for(settings), [wf.name for wf in workflows.values()])  # only what the app made
    return late.exit_code(ExitCode.OK)


def missing_outputs_reason(output_dir: Path, missing: list[Path]) -> str:
    """One line naming the first missing output (and how many more) of a participant whose graph ran."""
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return (
        f"output {output_dir / missing[0]}{more} missing after the run (not written, or removed while running); "
        "check that the output folder can be written, then rerun"
    )


def refuse_mixed_settings(settings: Settings) -> None:
    """Refuse a participant run whose result-affecting settings differ from the participants already there.

    Maps made with different settings in one folder would be compared at the group level as if made alike
    (processing confounded with diagnosis). Raises :class:`UserError` (exit 2) naming the folder, how many
    participants differ, every differing setting (old → new) and what to do.
    """
    output_dir = settings.execution.output_dir
    current = settings.participant_hash()
    others = [r for r in completion.read_records(output_dir).values() if r.get("result_hash") != current]
    if not others:
        return
    differences: list[str] = []
    for record in others:
        for line in completion.settings_differences(record.get("settings", {}), settings.participant_settings()):
            if line not in differences:
                differences.append(line)
    replay = _config_with_hash(output_dir, others[0].get("result_hash"))
    how = f"replay {replay} with --config-file" if replay else "replay logs/config-*.toml with --config-file"
    raise UserError(
        f"output folder {output_dir} holds {len(others)} participant(s) made with other settings "
        f"({'; '.join(differences) or 'settings of another version'}); use a new output folder, or the same "
        f"settings ({how})"
    )


def _config_with_hash(output_dir: Path, result_hash: str | None) -> Path | None:
    """The newest ``logs/config-*.toml`` whose participant settings have ``result_hash`` (None if none)."""
    for path in sorted((output_dir / "logs").glob("config-*.toml"), reverse=True):
        try:
            if Settings.from_toml(path.read_text()).participant_hash() == result_hash:
                return path
        except Exception:  # an unreadable or older config file is simply not a candidate
            continue
    return None


def settings_for_space(settings: Settings) -> Settings:
    """The settings with the stages that need MNI coordinates skipped when ``--space`` has none (said once).

    See :mod:`clbp_bidsapp.io.spaces`: in ``native``, ``T1w`` or an unknown space, seed FC, VMHC, the bundled
    atlases and the bundled reference networks are left out; user atlas and network files still run.
    """
    space = spaces.lookup(settings.inputs.space)
    con, skip = settings.connectivity, settings.execution.skip
    unavailable, kept = spaces.unavailable_stages(
        space, atlases=con.atlases, bundled_atlases=tuple(atlases.ATLASES), networks=con.networks
    )
    unavailable = {stage: why for stage, why in unavailable.items() if stage not in skip}
    dropped = [a for a in con.atlases if a not in kept] if "connectome" not in skip and kept else []
    message = spaces.skip_message(space, unavailable, dropped)
    if message:
        messages.say(message)
    return settings.replace({"execution": {"skip": (*skip, *unavailable)}, "connectivity": {"atlases": kept}})


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
    retained time than ``--min-time``, or whose band-passed series keeps fewer effective degrees of freedom than
    ``--min-dof``, is not analysed: its QC row is written with ``used = false`` and the reason is listed among
    the skipped runs (heavy censoring never crashes the graph).
    """
    images.check_grid(run.bold, run.mask)
    spaces.check_template_grid(run.bold, *images.header_grid(run.bold), spaces.lookup(run.space))
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
    derivatives.write_tsv(folder / name, qc_table(plan.qc))
    derivatives.write_json((folder / name).with_suffix(".json"), QC_COLUMNS)
    skipped.append((run.source_name, f"{plan.not_used_because} (recorded in its QC table, not analysed)"))
    return False


def graph_not_computed(output_dir: Path, runs, atlas_names) -> list[tuple[str, str]]:
    """(run and atlas, reason) for every connectome whose graph measures are n/a (too few regions with data)."""
    import json

    notes = []
    for run in runs:
        folder = derivatives.subject_dir(output_dir, run.entities)
        for atlas in atlas_names:
            label = atlas if atlas in atlases.ATLASES else atlases.user_atlas_name(Path(atlas))
            name = derivatives.derivative_name(
                run.source_name, suffix="measures", extension=".json", atlas=label, stat="graph",
                **run.space_entities,
            )  # fmt: skip
            path = folder / name
            sidecar = json.loads(path.read_text()) if path.is_file() else {}
            if sidecar.get("Computed") is False:
                notes.append((f"{run.source_name} atlas-{label}", f"graph measures {sidecar['NotComputed']}"))
    return notes


def report(succeeded: list[str], failed: dict[str, str], skipped: list[tuple[str, str]]) -> None:
    """Print the closing summary (every participant's outcome and every skipped file)."""

    say = messages.say
    say(f"finished: {len(succeeded)} participant(s) succeeded, {len(failed)} failed")
    for label in succeeded:
        say(f"  ok      sub-{label}")
    for label, why in sorted(failed.items()):
        say(f"  FAILED  sub-{label}: {why}")
    for what, why in skipped:
        say(f"  skipped {what}: {why}")
