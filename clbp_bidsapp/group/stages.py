"""The group stages of :data:`clbp_bidsapp.registry.GROUP_STAGES`: how each one runs and what it says.

The group runner prepares a :class:`GroupContext` (settings, design, layout, outcome, progress tracker) and calls
:func:`run_stages`, a loop over the registered records: a stage that ``--skip`` names is left out, the tracker's
``begin(name, runs=...)`` comes from the record, ``run(context)`` does the work and returns its result (None: it
did not run and gave its reason to the outcome), ``summary(context, result)`` gives the lines said about it, and
``follow_up(context, result)`` makes the tables read from its written results as late steps (a failure there loses
nothing). Later stages read earlier stages' results from ``context.results`` (the statistics test the group-ICA
maps). The stages whose record says ``fans_out`` share one executor (``--nprocs``, ``--plugin SLURM``;
:mod:`clbp_bidsapp.group.fanout`), opened when the first of them asks for it and closed by the runner.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbp_bidsapp import messages, registry
from clbp_bidsapp.config import Settings
from clbp_bidsapp.errors import InputError, LateSteps
from clbp_bidsapp.group import fanout
from clbp_bidsapp.group.budget import GroupProgress
from clbp_bidsapp.group.design import qc_summary
from clbp_bidsapp.group.inclusion import Outcome
from clbp_bidsapp.io import derivatives


@dataclass
class GroupContext:
    """What every group stage gets: one explicit object instead of a dozen arguments."""

    settings: Settings
    design: Any  # group.design.build_design's result: ``included``, ``excluded``, ``exclusions``
    layout: Any  # the selected participant outputs (inclusion.SelectedLayout)
    outcome: Outcome
    tracker: GroupProgress | None  # None: nothing will run, nothing is timed or shown
    late: LateSteps
    participants: Any = None  # the participants table (participants.tsv): CBF-only participants come from it
    results: dict[str, Any] = field(default_factory=dict)  # stage name -> its result
    exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _fan: fanout.Executor | None = None

    @property
    def included(self):
        return self.design.included

    @property
    def group_dir(self) -> Path:
        return self.settings.execution.output_dir / "group"

    @property
    def fan(self) -> fanout.Executor:
        """The executor of the permutation tests, opened on first use (closed with :attr:`exits`); when nothing
        will run (no tracker), this process: no worker is started and nothing is said about them."""
        if self._fan is None:
            ex = self.settings.execution
            executor = (
                fanout.executor_for(ex, work_dir=ex.work_dir or ex.output_dir / "work")
                if self.tracker is not None
                else fanout.Serial()
            )
            self._fan = self.exits.enter_context(executor)
        return self._fan


def resolve(target: str) -> Callable[..., Any]:
    """The function that a record's ``"module:function"`` names."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def wanted(stages: Sequence[registry.GroupStage], skip: Iterable[str]) -> list[registry.GroupStage]:
    """The stages that run (those ``--skip`` does not name), in registry order."""
    skipped = set(skip)
    return [stage for stage in stages if stage.name not in skipped]


def run_stages(context: GroupContext, stages: Sequence[registry.GroupStage]) -> None:
    """Run ``stages`` in order (see the module docstring); skipped ones only end the timing of the one before."""
    running = wanted(stages, context.settings.execution.skip)
    for stage in stages:
        runs = stage in running
        if context.tracker is not None and not stage.after_analyses:
            context.tracker.begin(stage.timed_as or stage.name, runs=runs and bool(stage.timed_as))
        if not runs:
            continue
        result = resolve(stage.run)(context)
        context.results[stage.name] = result
        if result is None:
            continue
        for line in resolve(stage.summary)(context, result):
            messages.say(line)
        if stage.follow_up:
            resolve(stage.follow_up)(context, result)


@contextlib.contextmanager
def quiet_warnings(quiet: bool) -> Iterator[None]:
    """With ``quiet`` (and no ``-v``), the stages' warnings are not shown: their reasons are said once, at the end."""
    logger = logging.getLogger("clbp_bidsapp.group")
    level = logger.level
    if quiet and logging.getLogger(messages.LOGGER_NAME).getEffectiveLevel() >= logging.WARNING:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- the registered stages -----------------------------------------------------------------------------------------


def no_summary(context: GroupContext, result: Any) -> list[str]:
    return []


def run_qc(context: GroupContext) -> Path:
    path = context.group_dir / "desc-qc_summary.tsv"
    derivatives.write_tsv(path, qc_summary(context.design, settings=context.settings.group))
    return path


def run_ica(context: GroupContext):
    from clbp_bidsapp.group.ica import run_group_ica

    settings, ex = context.settings, context.settings.execution
    try:
        ica = run_group_ica(context.included, output_dir=ex.output_dir, n_components=settings.group.ica_components,
                            seed=ex.random_seed, smoothing_fwhm=settings.metrics.smoothing_fwhm,
                            layout=context.layout, outcome=context.outcome)  # fmt: skip
    except InputError as exc:
        context.outcome.not_run("group ICA", str(exc))
        return None
    if ica is not None:
        context.outcome.ran("group ICA")
    return ica


def ica_summary(context: GroupContext, ica) -> list[str]:
    return [
        f"group ICA: {len(ica.names)} components over {len(ica.participant_maps)} participants ({', '.join(ica.names)})"
    ]


@dataclass(frozen=True)
class StatsRun:
    results: list  # voxelwise.MetricResult per map x contrast
    cbf_sets: list  # the CBF map sets tested (for the BOLD-CBF concordance)


def run_stats(context: GroupContext) -> StatsRun:
    from clbp_bidsapp.group import perfusion
    from clbp_bidsapp.group.voxelwise import run_voxelwise

    settings, ex, g = context.settings, context.settings.execution, context.settings.group
    ica = context.results.get("ica")
    ica_sets = ica.map_sets(g.networks, smoothing_fwhm=settings.metrics.smoothing_fwhm) if ica is not None else []
    cbf_table = perfusion.cbf_participants(context.participants, context.layout, context.design, settings=g)
    cbf_sets = perfusion.cbf_map_sets(context.layout, participants=list(cbf_table["participant_id"]), settings=g,
                                      table=cbf_table)  # + CBF-only participants  # fmt: skip
    results = run_voxelwise(
        context.included,
        output_dir=ex.output_dir,
        settings=g,
        seed=ex.random_seed,
        smoothing_fwhm=settings.metrics.smoothing_fwhm,
        extra_map_sets=[*ica_sets, *cbf_sets],
        layout=context.layout,
        outcome=context.outcome,
        fan=context.fan,
    )
    return StatsRun(results, cbf_sets)


def stats_summary(context: GroupContext, run: StatsRun) -> list[str]:
    lines = []
    for result in run.results:
        top = result.clusters.iloc[0] if len(result.clusters) else None
        where = (
            f"; strongest cluster {top['voxels']} voxels at ({top['peak_x']:.0f}, {top['peak_y']:.0f}, "
            f"{top['peak_z']:.0f}) {top['harvard_oxford']}, cluster FWE p = {top['p_fwe_cluster']:.3g}"
            if top is not None
            else ""
        )
        tfce = f", {result.n_tfce_voxels} with TFCE FWE p < 0.05" if result.n_tfce_voxels is not None else ""
        family = (
            f", {result.n_family_fwe_voxels} with family FWE p < 0.05 (primary family)"
            if result.n_family_fwe_voxels is not None
            else " (exploratory)"
        )
        lines.append(
            f"{result.metric} ({result.contrast}): {result.n_participants} participants, "
            f"{result.n_fwe_voxels} voxels with max-t FWE p < 0.05 within the map{family}{tfce}{where}"
        )
    return lines


def stats_concordance(context: GroupContext, run: StatsRun) -> None:
    """The literature concordance table and, with CBF maps, the BOLD-CBF concordance tables (late steps)."""
    from clbp_bidsapp.group import perfusion

    g, late = context.settings.group, context.late
    if run.results:
        late.run("the literature concordance table", _literature_concordance, context.group_dir, g)
    if run.results and run.cbf_sets:
        late.run("the BOLD-CBF concordance table", perfusion.report_concordance, run.results, context.included,
                 map_sets=run.cbf_sets, group_dir=context.group_dir, settings=g, layout=context.layout)  # fmt: skip


def _literature_concordance(group_dir: Path, g) -> None:
    from clbp_bidsapp.group.concordance import write_concordance

    path, table = write_concordance(group_dir, patient_label=g.patient_label, control_label=g.control_label,
                                    primary_maps=g.primary_maps)  # fmt: skip
    found = table["status"].str.startswith("found")
    primary = int((found & (table["family"] == "primary")).sum())
    messages.say(f"literature concordance: {found.sum()} of {len(table)} published CLBP findings seen here "
                 f"({primary} in the primary family, the rest exploratory; each map's own FWE); {path}")  # fmt: skip


def run_connectome(context: GroupContext) -> list:
    from clbp_bidsapp.group.connectomes import run_connectome_stats

    ex = context.settings.execution
    return run_connectome_stats(context.included, output_dir=ex.output_dir, settings=context.settings.group,
                                seed=ex.random_seed, layout=context.layout, outcome=context.outcome,
                                fan=context.fan)  # fmt: skip


def connectome_summary(context: GroupContext, results: list) -> list[str]:
    lines = []
    for result in results:
        components = result.components
        significant = components[components["p_fwe"] < 0.05] if len(components) else components
        lines.append(
            f"connectome {result.atlas}: {result.n_participants} participants, "
            f"{len(result.regions)} regions ({len(result.dropped_regions)} dropped), {result.n_fdr_edges} edges "
            f"with FDR q < 0.05, {len(significant)} NBS component(s) with FWE p < 0.05"
        )
    return lines


def run_ml(context: GroupContext):
    from clbp_bidsapp.group.ml import run_ml as run_models

    settings, ex = context.settings, context.settings.execution
    try:
        results = run_models(context.included, output_dir=ex.output_dir, settings=settings.ml, group=settings.group,
                             seed=ex.random_seed, layout=context.layout)  # fmt: skip
    except InputError as exc:
        context.outcome.not_run("machine learning", str(exc))
        return None
    context.outcome.ran("machine learning")
    return results


def ml_summary(context: GroupContext, results) -> list[str]:
    from clbp_bidsapp.group.ml import describe

    return [f"machine learning: {describe(results, context.settings.ml)}; {context.group_dir / 'desc-ml_summary.json'}"]


def run_report(context: GroupContext) -> Path | None:
    """The group HTML report, as a late step (a failure there loses no result)."""
    return context.late.run("the group report", _write_report, context.settings)


def report_summary(context: GroupContext, report: Path) -> list[str]:
    return [f"group report: {report}"]


def _write_report(settings: Settings) -> Path:
    import dataclasses

    from clbp_bidsapp.reports.group import write_group_report

    ex, g = settings.execution, settings.group
    return write_group_report(
        ex.output_dir,
        settings_summary={
            **{f"group.{k}": v for k, v in dataclasses.asdict(g).items()},
            "denoise.strategy": settings.denoise.strategy,
            "metrics.smoothing_fwhm": settings.metrics.smoothing_fwhm,
            "execution.random_seed": ex.random_seed,
        },
        run_info={"config_hash": settings.result_hash()},
        group=g,
    )
