"""The group runner is a loop over the registered group stages (registry.GROUP_STAGES, group/stages.py).

A record without its functions, a timed stage the progress tracker does not know, or a stage run by the runner
outside the registry (an ``if "<stage>" not in skip:`` block, a direct call of a stage's analysis) fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from clbp_bidsapp import registry
from clbp_bidsapp.config import ExecutionSettings, Settings
from clbp_bidsapp.group import budget, runner, stages

# the analyses the stages run: only group/stages.py (through a record) may call them
ENTRY_POINTS = {"run_group_ica", "run_voxelwise", "run_connectome_stats", "run_ml", "write_group_report",
                "qc_summary", "write_concordance", "report_concordance"}  # fmt: skip


def stage_problems(stage: registry.GroupStage) -> list[str]:
    """What a group-stage record lacks: a description, a run or summary function of group/stages.py, a known timing."""
    problems = []
    if not stage.name or not stage.description:
        problems.append(f"{stage.name or '?'}: no name or description")
    for part in ("run", "summary", "follow_up"):
        target = getattr(stage, part)
        if part == "follow_up" and not target:
            continue
        module, _, name = target.partition(":")
        if module != stages.__name__ or not callable(getattr(stages, name, None)):
            problems.append(f"{stage.name}: {part} {target!r} is not a function of {stages.__name__}")
            continue
        wanted = 1 if part == "run" else 2
        if len(inspect.signature(getattr(stages, name)).parameters) != wanted:
            problems.append(f"{stage.name}: {part} {target} does not take {wanted} argument(s)")
    if stage.timed_as and stage.timed_as not in budget.STAGES:
        problems.append(f"{stage.name}: timed as {stage.timed_as}, which the progress tracker does not know")
    return problems


@pytest.mark.parametrize("stage", registry.GROUP_STAGES, ids=lambda s: s.name)
def test_every_registered_group_stage_has_its_functions(stage):
    assert stage_problems(stage) == []


def test_a_record_without_a_runner_is_found():
    qc = registry.GROUP_STAGES[0]
    assert stage_problems(dataclasses.replace(qc, run=f"{stages.__name__}:run_nosuch")) == [
        f"qc: run '{stages.__name__}:run_nosuch' is not a function of {stages.__name__}"
    ]
    assert "summary" in stage_problems(dataclasses.replace(qc, summary="clbp_bidsapp.group.runner:run_group_level"))[0]
    assert "does not take 1" in stage_problems(dataclasses.replace(qc, run=f"{stages.__name__}:ica_summary"))[0]
    assert "tracker" in stage_problems(dataclasses.replace(qc, timed_as="nosuch"))[0]


def test_the_tracked_stages_are_the_registered_ones():
    """Each stage the budget times is one record's ``timed_as``; the report runs after the analyses, last."""
    timed = [stage.timed_as for stage in registry.GROUP_STAGES if stage.timed_as]
    assert sorted(timed) == sorted(budget.STAGES) and len(set(timed)) == len(timed)
    assert [stage.name for stage in registry.GROUP_STAGES if stage.after_analyses] == ["report"]
    assert registry.GROUP_STAGES[-1].after_analyses


def _runner_sources() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text()) for path in (Path(runner.__file__), Path(stages.__file__))}


def test_the_runner_runs_no_stage_outside_the_registry():
    """No ``"<stage>" (not) in ...skip`` test and no analysis called in the runner; stages.py reads skip only in
    :func:`stages.wanted`, and calls each analysis only from a function that a record names."""
    named = {getattr(stage, part).partition(":")[2] for stage in registry.GROUP_STAGES
             for part in ("run", "follow_up") if getattr(stage, part)}  # fmt: skip
    for file, tree in _runner_sources().items():
        for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
                    right = node.comparators[0]
                    name = right.attr if isinstance(right, ast.Attribute) else getattr(right, "id", "")
                    assert name not in ("skip", "skipped") or function.name == "wanted", (file, function.name)
                called = node.func if isinstance(node, ast.Call) else None
                callee = getattr(called, "attr", None) or getattr(called, "id", None)
                if callee in ENTRY_POINTS:
                    assert file == "stages.py", (file, function.name, callee)
                    helper_of = {n for n in named if _calls(tree, n, function.name)}
                    assert function.name in named or helper_of, (function.name, callee)


def _calls(tree: ast.Module, caller: str, callee: str) -> bool:
    """Whether top-level function ``caller`` refers to ``callee`` (a helper it runs, e.g. through late steps)."""
    function = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == caller), None)
    return function is not None and any(isinstance(n, ast.Name) and n.id == callee for n in ast.walk(function))


# -- the loop itself, on recording stages -------------------------------------------------------------------------

CALLS: list[tuple[str, ...]] = []


def record_run(context):
    CALLS.append(("run", f"#{len(context.results)}"))
    return len(context.results) or None  # the first stage "did not run" (None): no summary, no follow-up


def record_summary(context, result):
    CALLS.append(("summary", str(result)))
    return [f"stage result {result}"]


def record_follow_up(context, result):
    CALLS.append(("follow_up", str(result)))


class Tracker:
    def __init__(self):
        self.begun = []

    def begin(self, name, *, runs=True):
        self.begun.append((name, runs))


def test_the_loop_runs_the_unskipped_records_in_order_and_times_them(capsys):
    me = f"{__name__}:record_"
    fake = tuple(
        registry.GroupStage(name, f"stage {name}", run=me + "run", summary=me + "summary", timed_as=timed,
                            follow_up=me + "follow_up" if name == "c" else "")
        for name, timed in (("a", "ica"), ("b", ""), ("s", "voxelwise"), ("c", "connectome"))
    )  # fmt: skip
    settings = Settings(execution=ExecutionSettings(skip=("s",)))
    context = stages.GroupContext(settings, design=None, layout=None, outcome=None, tracker=Tracker(), late=None)
    CALLS.clear()
    stages.run_stages(context, fake)
    assert context.tracker.begun == [("ica", True), ("b", False), ("voxelwise", False), ("connectome", True)]
    assert list(context.results) == ["a", "b", "c"]  # s skipped
    assert CALLS == [("run", "#0"), ("run", "#1"), ("summary", "1"), ("run", "#2"), ("summary", "2"),
                     ("follow_up", "2")]  # fmt: skip
    assert capsys.readouterr().err.splitlines() == ["clbp-bidsapp: stage result 1", "clbp-bidsapp: stage result 2"]
    assert [s.name for s in stages.wanted(registry.GROUP_STAGES, ("ml", "ica"))] == ["qc", "stats", "connectome",
                                                                                     "report"]  # fmt: skip


def test_an_empty_plan_is_nothing_to_run():
    """budget.start prints no plan, estimate or bar (and returns no tracker) when the plan is empty."""
    from clbp_bidsapp.config import GroupSettings, MLSettings

    g = GroupSettings()
    assert budget.plan_group_level(map_labels=[], clinical=[], settings=g).empty
    assert budget.plan_group_level(map_labels=[], clinical=["pain_vas"], settings=g, ml=MLSettings()).empty  # no set
    for kwargs in ({"map_labels": ["alff"]}, {"connectome_atlases": 1}, {"ica": True},
                   {"ml": MLSettings(), "ml_feature_sets": 1}):  # fmt: skip
        plan = budget.plan_group_level(**{"map_labels": [], "clinical": [], "settings": g, **kwargs})
        assert not plan.empty and "nothing to run" not in plan.describe(), kwargs
