"""The group level's plan, time estimate and whole-run progress (group/budget.py)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from clbp_bidsapp.config import GroupSettings, MLSettings
from clbp_bidsapp.core.stats import Design
from clbp_bidsapp.group import budget
from clbp_bidsapp.io.progress import Progress


def _settings(**changes) -> GroupSettings:
    base = {"primary_maps": ("alff", "fcz-pcc"), "n_permutations": 300}
    return GroupSettings(**(base | changes))


def test_plan_counts_maps_contrasts_and_tfce_of_the_primary_family_only():
    plan = budget.plan_group_level(map_labels=["alff", "reho", "fcz-pcc"], clinical=["pain_vas", "pain duration"],
                                   settings=_settings())  # fmt: skip
    # the group contrast of every map; the clinical ones of the primary maps only (--clinical-maps primary)
    assert len(plan.tests) == 7
    assert [t.contrast for t in plan.tests if t.map == "reho"] == ["CLBPvsHC"]
    all_clinical = budget.plan_group_level(map_labels=["alff", "reho", "fcz-pcc"], clinical=["pain_vas", "x"],
                                           settings=_settings(clinical_maps="all"))  # fmt: skip
    assert len(all_clinical.tests) == 9
    assert plan.contrasts == ["CLBPvsHC", "pain_vas".replace("_", ""), "painduration"]
    assert [(t.map, t.contrast) for t in plan.tfce_tests] == [("alff", "CLBPvsHC"), ("fcz-pcc", "CLBPvsHC")]
    line = plan.describe()
    assert "3 maps x 3 contrasts = 7 voxelwise tests x 300 permutations (TFCE on 2 (alff, fcz-pcc)" in line
    assert "stop at 100 exceedances, at most 10000 permutations" in line
    every = budget.plan_group_level(map_labels=["alff", "reho"], clinical=[], settings=_settings(tfce_maps="all"))
    assert len(every.tfce_tests) == 2 == len(every.tests)
    none = budget.plan_group_level(map_labels=["alff"], clinical=[], settings=_settings(tfce=False, sequential_h=0))
    assert none.tfce_tests == [] and "no TFCE" in none.describe() and "sequential" not in none.describe()


def test_plan_counts_ml_fits():
    ml = MLSettings(models=("linear_svm", "logistic"), regression_models=("ridge",), n_splits=5, n_repeats=2,
                    n_permutations=50)  # fmt: skip
    plan = budget.plan_group_level(map_labels=[], clinical=["pain_vas"], settings=_settings(), ml=ml,
                                   ml_feature_sets=4)  # fmt: skip
    # classification (2 models) and pain prediction (1 model), 5 x 2 outer folds, on 4 feature sets
    assert plan.ml_fits == 4 * 3 * 5 * 2
    # the primary pipeline of each of the 2 tasks: 50 permutations of the whole 5 x 2 nested CV
    assert plan.ml_permutation_fits == 2 * 50 * 5 * 2
    every = dataclasses.replace(ml, permutation_scope="shown")
    shown = budget.plan_group_level(map_labels=[], clinical=["pain_vas"], settings=_settings(), ml=every,
                                    ml_feature_sets=4)  # fmt: skip
    assert shown.ml_permutation_fits == 4 * 3 * 50 * 5 * 2
    without_target = budget.plan_group_level(map_labels=[], clinical=[], settings=_settings(), ml=ml,
                                             ml_feature_sets=4)  # fmt: skip
    assert without_target.ml_fits == 4 * 2 * 5 * 2
    assert budget.plan_group_level(map_labels=["alff"], clinical=[], settings=_settings()).ml_fits == 0


def test_calibration_and_estimate_follow_the_clock():
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 6, 4), dtype=bool)
    mask[1:4, 1:5, 1:3] = True
    data = rng.standard_normal((10, int(mask.sum())))
    design = Design(np.column_stack([np.r_[np.ones(5), np.zeros(5)], np.ones(10)]), ["g", "i"], 0)
    ticks = iter([0.0, 6.4, 10.0, 14.0])  # 64 plain permutations in 6.4 s, 16 with TFCE in 4 s
    calibration = budget.calibrate("alff", data, design, mask, cluster_threshold=2.0, clock=lambda: next(ticks))
    assert calibration.seconds_per_permutation == pytest.approx(0.1)
    assert calibration.seconds_per_tfce == pytest.approx(0.15)
    assert (calibration.voxels, calibration.participants) == (24, 10)
    plan = budget.plan_group_level(map_labels=["alff", "reho"], clinical=["pain_vas"], settings=_settings())
    # 3 tests (reho is not primary: no clinical contrast) x 300 permutations x 0.1 s, and TFCE on alff's group
    # contrast: 300 x 0.15 s
    assert budget.voxelwise_seconds(plan, calibration) == pytest.approx(3 * 300 * 0.1 + 300 * 0.15)
    assert "voxelwise tests about 2:15" in budget.describe_estimate(plan, calibration)
    # --nprocs 2 shares the tests between two processes (the demo measured 1:53 for a one-process 3:45)
    assert "voxelwise tests about 1:08 in 2 processes (2:15 in one)" in budget.describe_estimate(
        plan, calibration, processes=2
    )
    assert "about 2:15 in one process, as SLURM jobs" in budget.describe_estimate(plan, calibration, cluster=True)


def test_group_progress_spans_the_stages_and_reports_their_shares():
    now = [0.0]
    plan = budget.plan_group_level(map_labels=["alff"], clinical=[], settings=_settings(n_permutations=100))
    calibration = budget.Calibration("alff", 10, 8, seconds_per_permutation=0.1, seconds_per_tfce=0.2)
    stream = io.StringIO()
    tracker = budget.GroupProgress(plan, calibration, stage_seconds={"ml": 10.0}, stream=stream,
                                   clock=lambda: now[0], tty=False)  # fmt: skip
    assert tracker.bar.total == 40_000  # voxelwise 100 x 0.3 s + ML 10 s, in ms
    tracker.begin("voxelwise")
    with budget.map_progress(100, label="alff (CLBPvsHC) permutations", tfce=True) as bar:
        for _ in range(5):
            now[0] += 3.0
            bar.update(10)
    assert tracker.bar.done == 15_000
    now[0] += 15.0
    tracker.begin("ml")  # the voxelwise stage ends: the bar moves to its planned end
    assert tracker.bar.done == 30_000
    now[0] += 10.0
    summary = tracker.finish()
    assert tracker.bar.done == 40_000
    assert summary == "group level stages took 0:40: voxelwise 0:30 (75 %), ml 0:10 (25 %)"
    assert "group level: alff (CLBPvsHC) permutations: 9000/40000 (22%) after 9.0 s, about 31.0 s left" in (
        stream.getvalue()
    )
    # outside a group level, each test has its own bar again
    assert isinstance(budget.map_progress(10, label="x", tfce=False), Progress)
