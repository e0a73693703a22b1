"""What the group level will do, how long it should take, and one progress bar with ETA over all of it.

Before the work starts the runner builds a :class:`Plan` from the settings and the participant outputs found
(maps x contrasts x permutations, which tests get TFCE, the sequential uncorrected p, connectome atlases, ML fits),
times a few permutations of one real map (:func:`calibrate`: a block without TFCE and one with it) and prints
the plan and the estimate through :mod:`clbp_bidsapp.messages`::

    clbp-bidsapp: group level plan: 30 maps x 3 contrasts = 90 voxelwise tests x 1000 permutations (TFCE on 5 ...)
    clbp-bidsapp: estimate: voxelwise about 6:10 (0.041 s per permutation, TFCE +0.35 s; timed on alff, ...)

Then :class:`GroupProgress` draws one bar over the whole group level (``io/progress.py``): its unit is the
estimated millisecond, each permutation of a voxelwise test advances it by its calibrated cost, and each stage
that is not calibrated (group ICA, connectomes, ML) advances it by its share when it ends. The rate, and so the
ETA, is re-measured as the work goes. At the end it prints each stage's wall time and share.

The voxelwise code asks :func:`map_progress` for its per-map progress object: inside a :class:`GroupProgress`
that is a view on the whole-run bar, otherwise the per-map bar as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO

import numpy as np
import pandas as pd

from clbp_bidsapp import messages
from clbp_bidsapp.config import GroupSettings, MLSettings, Settings
from clbp_bidsapp.core.stats import Design, permutation_test
from clbp_bidsapp.errors import InputError
from clbp_bidsapp.group import fanout
from clbp_bidsapp.io.progress import Progress, _duration, progress

STAGES = ("ica", "voxelwise", "connectome", "ml")


def group_contrast(settings: GroupSettings) -> str:
    """The file-name label of the patients-versus-controls contrast (``CLBPvsHC``)."""
    return f"{settings.patient_label}vs{settings.control_label}"


def tfce_for(settings: GroupSettings, label: str, contrast: str) -> bool:
    """Whether a map x contrast gets TFCE: ``--tfce-maps primary`` keeps it to the primary family's group contrast."""
    if not settings.tfce:
        return False
    return settings.tfce_maps == "all" or (label in settings.primary_maps and contrast == group_contrast(settings))


def clinical_for(settings: GroupSettings, label: str) -> bool:
    """Whether a map is correlated with the clinical columns: ``--clinical-maps primary`` keeps it to the family."""
    return settings.clinical_maps == "all" or label in settings.primary_maps


@dataclass(frozen=True)
class VoxelwiseTest:
    map: str
    contrast: str
    tfce: bool


@dataclass(frozen=True)
class Plan:
    """The work of one group level, counted before it starts."""

    tests: tuple[VoxelwiseTest, ...]
    n_permutations: int
    sequential_h: int
    uncorrected_permutations: int
    connectome_atlases: int
    ica: bool
    ml_fits: int  # outer cross-validation fits (each with its inner search) over models x feature sets x tasks
    ml_permutation_fits: int  # refits of the permutation test of the primary models

    @property
    def maps(self) -> list[str]:
        return list(dict.fromkeys(t.map for t in self.tests))

    @property
    def contrasts(self) -> list[str]:
        return list(dict.fromkeys(t.contrast for t in self.tests))

    @property
    def tfce_tests(self) -> list[VoxelwiseTest]:
        return [t for t in self.tests if t.tfce]

    @property
    def empty(self) -> bool:
        """Nothing will run: no group ICA, voxelwise test, connectome atlas or ML fit."""
        return not (self.ica or self.tests or self.connectome_atlases or self.ml_fits)

    def describe(self) -> str:
        """One line: what will run."""
        parts = []
        if self.ica:
            parts.append("group ICA")
        if self.tests:
            tfce = self.tfce_tests
            tfce_text = (
                f"TFCE on {len(tfce)} ({', '.join(t.map for t in tfce)})" if 0 < len(tfce) <= 6
                else f"TFCE on {len(tfce)}" if tfce else "no TFCE"
            )  # fmt: skip
            sequential = (
                f"; uncorrected p sequential (stop at {self.sequential_h} exceedances, at most "
                f"{max(self.uncorrected_permutations, self.n_permutations)} permutations)"
                if self.sequential_h
                else ""
            )
            parts.append(
                f"{len(self.maps)} maps x {len(self.contrasts)} contrasts = {len(self.tests)} voxelwise tests x "
                f"{self.n_permutations} permutations ({tfce_text}{sequential})"
            )
        if self.connectome_atlases:
            atlases = self.connectome_atlases
            parts.append(f"connectome tests on {atlases} atlas(es) x {self.n_permutations} permutations")
        if self.ml_fits:
            parts.append(f"ML: {self.ml_fits} cross-validation fits + {self.ml_permutation_fits} permutation refits")
        return "group level plan: " + ("; ".join(parts) if parts else "nothing to run")


def plan_group_level(
    *,
    map_labels: Sequence[str],
    clinical: Sequence[str],
    settings: GroupSettings,
    ml: MLSettings | None = None,
    ml_feature_sets: int = 0,
    connectome_atlases: int = 0,
    ica: bool = False,
) -> Plan:
    """Count the group level's work: every map gets the group contrast, and the maps of ``clinical_for`` one
    contrast per clinical column.

    ``ml`` (None: the ML stage is skipped) with ``ml_feature_sets`` feature sets: classification with every
    model, and pain prediction with every regression model when the clinical target is among ``clinical``;
    each permutation reruns the whole nested CV (``n_repeats x n_splits`` outer fits) of the primary model and
    feature set of each task, or of every model and feature set with ``permutation_scope = "shown"``.
    """
    contrasts = [group_contrast(settings), *(_safe(c) for c in clinical)]
    tests = tuple(
        VoxelwiseTest(label, contrast, tfce_for(settings, label, contrast))
        for label in map_labels
        for contrast in (contrasts if clinical_for(settings, label) else contrasts[:1])
    )
    ml_fits = ml_perm = 0
    if ml is not None and ml_feature_sets:
        tasks = [len(ml.models)]
        if ml.clinical_target in clinical and ml.regression_models:
            tasks.append(len(ml.regression_models))
        ml_fits = ml_feature_sets * sum(tasks) * ml.n_splits * ml.n_repeats
        permuted = sum(tasks) * ml_feature_sets if ml.permutation_scope == "shown" else len(tasks)
        ml_perm = permuted * ml.n_permutations * ml.n_splits * ml.n_repeats
    return Plan(
        tests=tests,
        n_permutations=settings.n_permutations,
        sequential_h=settings.sequential_h,
        uncorrected_permutations=settings.uncorrected_permutations,
        connectome_atlases=connectome_atlases,
        ica=ica,
        ml_fits=ml_fits,
        ml_permutation_fits=ml_perm,
    )


def _safe(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


@dataclass(frozen=True)
class Calibration:
    """Seconds per permutation of one map, measured on its real data and group mask."""

    map: str
    voxels: int
    participants: int
    seconds_per_permutation: float  # t, max-t, clusters, sequential counting
    seconds_per_tfce: float  # extra per permutation with TFCE

    def test_seconds(self, test: VoxelwiseTest, n_permutations: int) -> float:
        return n_permutations * (self.seconds_per_permutation + (self.seconds_per_tfce if test.tfce else 0.0))


def calibrate(
    label: str,
    data: np.ndarray,
    design: Design,
    mask: np.ndarray,
    *,
    cluster_threshold: float,
    n_plain: int = 64,
    n_tfce: int = 16,
    clock=time.perf_counter,
) -> Calibration:
    """Time ``n_plain`` permutations without TFCE and ``n_tfce`` with it (the first block's set-up included)."""
    start = clock()
    permutation_test(data, design, n_permutations=n_plain, mask=mask, cluster_threshold=cluster_threshold, seed=0)
    plain = (clock() - start) / n_plain
    start = clock()
    permutation_test(data, design, n_permutations=n_tfce, mask=mask, cluster_threshold=cluster_threshold,
                     tfce=True, seed=0)  # fmt: skip
    with_tfce = (clock() - start) / n_tfce
    return Calibration(label, int(mask.sum()), int(data.shape[0]), plain, max(with_tfce - plain, 0.0))


def voxelwise_seconds(plan: Plan, calibration: Calibration) -> float:
    """Estimated seconds of the voxelwise tests (the clinical contrasts have fewer participants: an upper bound)."""
    return sum(calibration.test_seconds(test, plan.n_permutations) for test in plan.tests)


def describe_estimate(plan: Plan, calibration: Calibration | None, *, processes: int = 1, cluster: bool = False) -> str:
    """One line: the estimate and what it rests on; ``processes`` worker processes share the tests (--nprocs),
    ``cluster``: they run as SLURM jobs, whose start the queue decides (the one-process time is given)."""
    if calibration is None or not plan.tests:
        return "estimate: no voxelwise test to calibrate; progress is shown per stage"
    seconds = voxelwise_seconds(plan, calibration)
    if cluster:
        when = f"{_duration(seconds)} in one process, as SLURM jobs as fast as the queue starts them"
    elif processes > 1:
        when = f"{_duration(seconds / processes)} in {processes} processes ({_duration(seconds)} in one)"
    else:
        when = _duration(seconds)
    return (
        f"estimate: voxelwise tests about {when} ({calibration.seconds_per_permutation:.3f} s per "
        f"permutation, TFCE +{calibration.seconds_per_tfce:.3f} s; timed on {calibration.map}, "
        f"{calibration.voxels} voxels, {calibration.participants} participants); group ICA, connectome and ML "
        "stages are timed as they run"
    )


_CURRENT: ContextVar[GroupProgress | None] = ContextVar("group_progress", default=None)


class GroupProgress:
    """One bar over the whole group level, in estimated milliseconds (see the module docstring).

    ``stage_shares`` gives the uncalibrated stages (ica, connectome, ml) a weight relative to the voxelwise
    estimate; when a stage ends the bar is moved to that stage's planned end, so a slower or faster stage only
    changes the rate the ETA is computed from.
    """

    def __init__(
        self,
        plan: Plan,
        calibration: Calibration | None,
        *,
        stage_seconds: dict[str, float] | None = None,
        stream: IO[str] | None = None,
        clock=time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.plan = plan
        self.calibration = calibration
        self.clock = clock
        self.planned = dict.fromkeys(STAGES, 0.0) | (stage_seconds or {})
        if calibration is not None:
            self.planned["voxelwise"] = voxelwise_seconds(plan, calibration)
        total = max(round(1000 * sum(self.planned.values())), 1)
        self.bar = Progress(total, label="group level", stream=stream, clock=clock, tty=tty, quiet_below=0.0)
        self.wall: dict[str, float] = {}
        self._stage_end = 0  # bar position (ms) at which the current stage is planned to end
        self._stage: str | None = None
        self._stage_start = 0.0

    def begin(self, name: str, *, runs: bool = True) -> None:
        """Start timing stage ``name`` (ending the stage before it); the bar follows its voxelwise tests.
        ``runs=False``: a skipped stage, only the stage before it ends (a skipped stage is not timed or shown)."""
        self._end_stage()
        if not runs:
            return
        self._stage, self._stage_start = name, self.clock()
        self._stage_end = self.bar.done + round(1000 * self.planned.get(name, 0.0))
        self.bar.label = f"group level: {name}"
        _CURRENT.set(self)

    def _end_stage(self) -> None:
        """Record the current stage's wall time and move the bar to its planned end."""
        if self._stage is None:
            return
        self.wall[self._stage] = self.wall.get(self._stage, 0.0) + self.clock() - self._stage_start
        self._stage = None
        left = min(self._stage_end, self.bar.total) - self.bar.done
        if left > 0:
            self.bar.update(left)

    def advance(self, n_permutations: int, *, tfce: bool) -> None:
        """``n_permutations`` more permutations of a voxelwise test done."""
        if self.calibration is None:
            return
        per = self.calibration.seconds_per_permutation + (self.calibration.seconds_per_tfce if tfce else 0.0)
        step = min(round(1000 * per * n_permutations), max(self._stage_end - self.bar.done - 1, 0))
        if step > 0:
            self.bar.update(step)

    def finish(self) -> str:
        """End the last stage, close the bar and detach from the voxelwise code; returns :meth:`summary`."""
        self._end_stage()
        self.bar.close()
        if _CURRENT.get() is self:
            _CURRENT.set(None)
        return self.summary()

    def summary(self) -> str:
        """Wall time of each stage that ran and its share of the total."""
        total = sum(self.wall.values())
        shares = ", ".join(
            f"{name} {_duration(seconds)} ({100 * seconds / total:.0f} %)" for name, seconds in self.wall.items()
        ) if total > 0 else "nothing timed"  # fmt: skip
        return f"group level stages took {_duration(total)}: {shares}"


class _MapView:
    """The per-map progress object handed to the voxelwise code while a :class:`GroupProgress` runs."""

    def __init__(self, tracker: GroupProgress, label: str, tfce: bool):
        self.tracker, self.tfce = tracker, tfce
        tracker.bar.label = f"group level: {label}"

    def update(self, n: int = 1) -> None:
        self.tracker.advance(n, tfce=self.tfce)

    def __enter__(self) -> _MapView:
        return self

    def __exit__(self, *exc) -> None:
        return None


def map_progress(n_permutations: int, *, label: str, tfce: bool):
    """The progress of one voxelwise test: a view on the whole-run bar inside a :class:`GroupProgress`, else its own."""
    tracker = _CURRENT.get()
    if tracker is None:
        return progress(n_permutations, label=label, quiet_below=10)
    return _MapView(tracker, label, tfce)


def start(settings: Settings, included: pd.DataFrame, layout) -> GroupProgress | None:
    """Plan the group level on what the participant level wrote, calibrate on one map, print both; the bar.
    None, with nothing printed, when nothing can run (:attr:`Plan.empty`).

    The group-ICA maps are counted as one per ``--group-networks`` network (the components matched after the
    ICA may be fewer). The calibration loads the first map set found (runs averaged, as the test does).
    """
    from scipy import stats as sstats

    from clbp_bidsapp.core.stats import DesignError
    from clbp_bidsapp.group import perfusion
    from clbp_bidsapp.group.connectomes import files_by_atlas
    from clbp_bidsapp.group.design import group_design
    from clbp_bidsapp.group.maps import load_group_maps
    from clbp_bidsapp.group.voxelwise import clinical_columns, collect_map_sets, model_columns

    ex, g = settings.execution, settings.group
    skip = set(ex.skip)
    participants = [str(p) for p in included["participant_id"]]
    with_cbf = _with_cbf(layout)  # CBF-only participants are in the CBF tests too; no CBF: no ML set "cbf"
    map_sets = []
    quiet = logging.getLogger("clbp_bidsapp.group")  # the stages warn about missing maps and columns themselves
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        if "stats" not in skip:
            map_sets = collect_map_sets(layout, settings=g, participants=participants,
                                        smoothing_fwhm=settings.metrics.smoothing_fwhm)  # fmt: skip
            map_sets += perfusion.cbf_map_sets(layout, participants=sorted({*participants, *with_cbf}), settings=g)
        clinical = [c for c in clinical_columns(included, g) if _clinical_testable(included, c, g)]
    finally:
        quiet.setLevel(level)
    labels = [m.label for m in map_sets]
    if "stats" not in skip and "ica" not in skip:
        labels += [f"groupica-{network}" for network in g.networks]
    atlases = 0 if "connectome" in skip else len(files_by_atlas(layout, set(participants), stat="pearsoncorrelation",
                                                                suffix="relmat"))  # fmt: skip
    plan = plan_group_level(
        map_labels=labels,
        clinical=clinical,
        settings=g,
        ml=None if "ml" in skip else settings.ml,
        ml_feature_sets=len([name for name in settings.ml.feature_sets if name != "cbf" or with_cbf]),
        connectome_atlases=atlases,
        ica="ica" not in skip,
    )
    if plan.empty:  # nothing can run: no plan, estimate or bar; the stages say why, and the group level exits 3
        return None
    messages.say(plan.describe())
    calibration = None
    if map_sets:
        first = map_sets[0]
        try:
            files = {pid: first.maps[pid] for pid in participants if pid in first.maps}
            maps = load_group_maps(files, metric=first.label, volume=first.volume, smoothing_fwhm=first.smoothing_fwhm)
            table = included[included["participant_id"].astype(str).isin(maps.participants)]
            covariates, factors, _ = model_columns(table, g)
            design = group_design(table, g, covariates=covariates, factors=factors)
        except (InputError, DesignError):  # the voxelwise stage reports it; no estimate
            pass
        else:
            n, p = design.matrix.shape
            threshold = float(sstats.t.isf(g.cluster_forming_p / 2, n - p))
            calibration = calibrate(first.label, maps.data, design, maps.mask, cluster_threshold=threshold)
    cluster = ex.plugin in fanout.SLURM_PLUGINS
    processes = ex.nprocs if ex.plugin != "Linear" and not cluster else 1  # as fanout.executor_for decides
    messages.say(describe_estimate(plan, calibration, processes=processes, cluster=cluster))
    return GroupProgress(plan, calibration)


def _with_cbf(layout) -> set[str]:
    """The participants with CBF maps (a CBF QC table), with or without BOLD."""
    files = layout.get(suffix="qc", desc="cbf", extension=".tsv", return_type="object")
    return {str(f.get_entities()["subject"]) for f in files}


def _clinical_testable(included: pd.DataFrame, column: str, g: GroupSettings) -> bool:
    """Whether the within-patient test of ``column`` can be estimated (as ``voxelwise._clinical`` decides)."""
    from clbp_bidsapp.core.stats import DesignError, regression_design
    from clbp_bidsapp.group.voxelwise import MIN_CLINICAL_DOF, model_columns

    values = pd.to_numeric(included[column], errors="coerce")
    patients = included[(included[g.group_column].astype(str) == g.patient_label) & values.notna()]
    covariates, factors, _ = model_columns(patients, g)
    try:
        design = regression_design(patients.reset_index(drop=True), tested=column, covariates=covariates,
                                   factors=factors)  # fmt: skip
    except DesignError:
        return False
    n, p = design.matrix.shape
    return n - p >= MIN_CLINICAL_DOF
