"""The registry (clbp_bidsapp.registry) is complete, and every list derived from it agrees with it."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from pathlib import Path

import pytest

from clbp_bidsapp import config, registry, stages
from clbp_bidsapp.config import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"
OPTIONAL = {"variants", "needs_mni"}  # record fields that may be empty


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name, None)


def metric_problems(metric: registry.LocalMetric) -> list[str]:
    """Every part a local metric record lacks: empty fields, a missing kernel, interface, citation, stage or docs."""
    from nipype.interfaces.base import SimpleInterface

    from clbp_bidsapp.io.citations import load_references

    problems = []
    for item in dataclasses.fields(metric):
        value = getattr(metric, item.name)
        if item.name not in OPTIONAL and (value is None or (isinstance(value, (str, tuple)) and not value)):
            problems.append(f"{metric.name}: empty {item.name}")
    if not metric.kernel.startswith("clbp_bidsapp.core.") or not callable(_resolve(metric.kernel)):
        problems.append(f"{metric.name}: kernel {metric.kernel} is not a function of clbp_bidsapp.core")
    interface = _resolve(metric.interface)
    if not (isinstance(interface, type) and issubclass(interface, SimpleInterface)):
        problems.append(f"{metric.name}: interface {metric.interface} is not a nipype interface")
    if metric.stage not in stages.PARTICIPANT_STAGES:
        problems.append(f"{metric.name}: stage {metric.stage} is not a participant stage")
    if metric.series not in ("unfiltered", "filtered"):
        problems.append(f"{metric.name}: series {metric.series!r}")
    references = load_references()
    problems += [
        f"{metric.name}: citation {key} not in citations.yaml" for key in metric.citations if key not in references
    ]
    phrase = metric.methods(Settings().metrics)
    problems += [
        f"{metric.name}: methods phrase does not cite {key}" for key in metric.citations if f"@{key}" not in phrase
    ]
    if metric.name not in (DOCS / "outputs.md").read_text(encoding="utf-8"):
        problems.append(f"{metric.name}: not in docs/outputs.md")
    if metric.label.lower() not in (DOCS / "local-metrics.md").read_text(encoding="utf-8").lower():
        problems.append(f"{metric.name}: {metric.label} not in docs/local-metrics.md")
    return problems


@pytest.mark.parametrize("metric", registry.LOCAL_METRICS, ids=lambda m: m.name)
def test_every_local_metric_record_is_complete(metric):
    assert metric_problems(metric) == []


def test_an_incomplete_record_is_reported():
    alff = registry.local_metric("alff")
    broken = dataclasses.replace(alff, kernel="clbp_bidsapp.core.alff:nosuch", citations=("nosuch2099",), label="")
    problems = metric_problems(broken)
    assert any("kernel" in p for p in problems)
    assert any("nosuch2099" in p for p in problems)
    assert any("empty label" in p for p in problems)
    other_stage = dataclasses.replace(alff, stage="nosuch", interface="clbp_bidsapp.interfaces.metrics:nosuch")
    assert {p.split(":")[1].split()[0] for p in metric_problems(other_stage)} == {"interface", "stage"}


def test_names_are_unique_and_families_are_participant_stages():
    names = [m.name for m in registry.LOCAL_METRICS] + [f.name for f in registry.MAP_FAMILIES]
    assert len(names) == len(set(names))
    assert all(family.stage in stages.PARTICIPANT_STAGES for family in registry.MAP_FAMILIES)
    assert len({m.name for m in registry.MODELS}) == len(registry.MODELS)
    assert {m.task for m in registry.MODELS} == {"classification", "regression"}


def test_settings_and_parser_choices_come_from_the_registry():
    from clbp_bidsapp.cli.parser import build_parser

    choices = {action.dest: action.choices for action in build_parser()._actions if action.choices}
    local = tuple(m.name for m in registry.LOCAL_METRICS)
    assert local + tuple(f.name for f in registry.MAP_FAMILIES) == config.GROUP_METRICS
    assert tuple(choices["group.metrics"]) == config.GROUP_METRICS
    assert tuple(choices["ml.models"]) == registry.ML_CLASSIFIERS
    assert tuple(choices["ml.primary_model"]) == registry.ML_CLASSIFIERS
    assert tuple(choices["ml.regression_models"]) == registry.ML_REGRESSORS
    assert Settings().group.metrics == config.GROUP_METRICS
    assert {name.split("-", 1)[0] for name in Settings().group.primary_maps} <= set(config.GROUP_METRICS)
    assert tuple(stages.PARTICIPANT_STAGES) == tuple(s.name for s in registry.PARTICIPANT_STAGES)
    assert tuple(stages.GROUP_STAGES) == tuple(s.name for s in registry.GROUP_STAGES)


def test_the_ml_models_are_those_core_builds():
    from clbp_bidsapp.core import ml

    assert set(ml.CLASSIFIERS) == set(registry.ML_CLASSIFIERS)
    assert set(ml.REGRESSORS) == set(registry.ML_REGRESSORS)


def test_group_queries_ml_features_and_report_order_come_from_the_registry():
    from clbp_bidsapp.group import ml, voxelwise
    from clbp_bidsapp.reports import group

    for metric in registry.LOCAL_METRICS:
        assert voxelwise.MAP_QUERIES[metric.name] == (metric.name, metric.group_desc)
        assert voxelwise.LOCAL_DESCRIPTIONS[metric.name] == metric.group_description
        assert ("smoothed" in metric.group_description) == metric.smoothed
    assert set(voxelwise.MAP_QUERIES) == {m.name for m in registry.LOCAL_METRICS}
    assert tuple(m.name for m in registry.LOCAL_METRICS if m.ml_roi) == ml.ROI_METRICS
    assert "vmhc" not in ml.ROI_METRICS  # a mirror-pair map has no meaning as a regional mean
    assert group.MAP_ORDER == config.GROUP_METRICS


def test_sidecar_and_qc_descriptions_come_from_the_registry():
    from clbp_bidsapp.workflows import denoising, local_metrics

    for metric in registry.LOCAL_METRICS:
        assert local_metrics.METRIC_DESCRIPTIONS[metric.name] == metric.description
    unfiltered = denoising.QC_COLUMNS["dof_unfiltered"]["Description"]
    filtered = denoising.QC_COLUMNS["dof_bandpass"]["Description"]
    for metric in registry.LOCAL_METRICS:
        assert metric.label in (unfiltered if metric.series == "unfiltered" else filtered)
        assert metric.label not in (filtered if metric.series == "unfiltered" else unfiltered)


def test_every_participant_stage_names_its_builder_or_is_built_elsewhere():
    """A stage record names its ``init_<stage>_wf`` (workflows/participant.init_run_wf builds it from the record);
    only the report (built from every other stage) and cbf (per ASL run, workflows/perfusion.py) are built elsewhere;
    ``needs`` names earlier stages."""
    from clbp_bidsapp.workflows.participant import stage_builder

    names = [stage.name for stage in registry.PARTICIPANT_STAGES]
    assert {stage.name for stage in registry.PARTICIPANT_STAGES if not stage.workflow} == {"report", "cbf"}
    for stage in registry.PARTICIPANT_STAGES:
        if stage.workflow:
            builder = stage_builder(stage.workflow)
            assert builder.__name__ == f"init_{stage.name}_wf", stage.name
        assert all(names.index(need) < names.index(stage.name) for need in stage.needs), stage.name
    assert all(metric.stage in names and registry.PARTICIPANT_STAGES[names.index(metric.stage)].workflow
               for metric in registry.LOCAL_METRICS)  # fmt: skip
    assert not any(stage.workflow or stage.needs for stage in registry.GROUP_STAGES)


@pytest.mark.parametrize("skipped", [(), ("vmhc",), ("alff", "reho", "dc"), ("alff", "reho", "vmhc", "dc")])
def test_the_methods_text_names_the_computed_metrics_and_their_smoothing(skipped):
    from clbp_bidsapp.reports.methods import participant_methods

    settings = Settings().replace({"execution": {"skip": skipped}})
    text = participant_methods(settings)
    for metric in registry.LOCAL_METRICS:
        assert (f"@{metric.citations[-1]}" in text) == (metric.stage not in skipped), metric.name
    computed = [m for m in registry.LOCAL_METRICS if m.stage not in skipped]
    assert ("FWHM Gaussian kernel" in text) == any(m.smoothed for m in computed)
    unsmoothed = [m.label for m in computed if not m.smoothed]
    partly = bool(unsmoothed) and len(unsmoothed) < len(computed)
    assert ("smoothed with a" in text and ", except " in text) == partly
    assert all((f"except {label}," in text) == partly for label in unsmoothed)


def test_the_group_methods_text_names_the_chosen_models():
    from clbp_bidsapp.reports.methods import group_methods

    settings = Settings().replace({"ml": {"models": ("random_forest",)}})
    text = group_methods(settings)
    assert "(random forest)" in text and registry.MODEL_LABELS["linear_svm"] not in text


# -- one spelling for public names ---------------------------------------------------------------------------------

AMERICAN = re.compile(r"(?<![a-z])(harmoniz|normaliz|standardiz|neighbor|center(?!ed)|color)", re.IGNORECASE)
OLD_SPELLINGS = {"--ml-harmonize"}  # hidden-in-plain-sight aliases kept for command lines users already have


def test_flags_and_output_names_use_the_documented_british_spelling():
    from clbp_bidsapp.cli.parser import build_parser

    flags = {o for action in build_parser()._actions for o in action.option_strings}
    assert {f for f in flags if AMERICAN.search(f)} == OLD_SPELLINGS
    assert {"--ml-harmonise", "--reho-neighbourhood", "--censor-neighbours"} <= flags
    source = (Path(__file__).resolve().parents[1] / "clbp_bidsapp/workflows/connectivity.py").read_text("utf-8")
    assert '"dualregUnnormalised"' in source and "Unnormalized" not in source
    outputs = (DOCS / "outputs.md").read_text(encoding="utf-8")
    assert "desc-dualregUnnormalised_components" in outputs and "Unnormalized" not in outputs


@pytest.mark.parametrize("flag", ["--ml-harmonise", "--ml-harmonize"])
def test_both_spellings_of_the_harmonisation_flag_reach_the_setting(tmp_path, flag):
    from clbp_bidsapp.cli.run import parse_settings

    bids = tmp_path / "bids"
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    (bids / "derivatives" / "fmriprep" / "dataset_description.json").write_text(
        json.dumps({"Name": "f", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tCLBP\nsub-02\tHC\n")
    settings, _ = parse_settings([str(bids), str(tmp_path / "out"), "group", flag, "none"])
    assert settings.ml.harmonise == "none"


def test_a_saved_config_with_the_old_key_still_reads():
    assert Settings.from_toml('[ml]\nharmonize = "combat"\n').ml.harmonise == "combat"
    assert "harmonise" in Settings().to_toml() and "harmonize" not in Settings().to_toml()


def test_every_ml_feature_set_has_a_builder_and_reads_existing_stages():
    from clbp_bidsapp.group import ml

    names = {kind.name for kind in registry.ML_FEATURE_SET_KINDS}
    assert set(ml.FEATURE_BUILDERS) | {"combined"} == names
    assert registry.ML_FEATURE_SET_KINDS[-1].name == "combined"  # built last, from the others
    assert all(set(kind.stages) <= set(stages.PARTICIPANT_STAGES) for kind in registry.ML_FEATURE_SET_KINDS)
    assert Settings().ml.feature_sets == config.ML_FEATURE_SETS == registry.ML_FEATURE_SETS


def test_metrics_that_need_mni_coordinates_are_skipped_in_other_spaces():
    from clbp_bidsapp.io import spaces

    native = spaces.lookup("native")
    skipped, _ = spaces.unavailable_stages(native, atlases=(), bundled_atlases=(), networks="seitzman")
    for metric in registry.LOCAL_METRICS:
        assert (metric.stage in skipped) == bool(metric.needs_mni), metric.name
        if metric.needs_mni:
            assert skipped[metric.stage] == metric.needs_mni
    mni, _ = spaces.unavailable_stages(spaces.lookup("MNI152NLin2009cAsym"), atlases=(), bundled_atlases=(),
                                       networks="seitzman")  # fmt: skip
    assert mni == {}


def test_each_local_metric_stage_says_what_it_writes():
    for metric in registry.LOCAL_METRICS:
        assert metric.label.lower() in stages.PARTICIPANT_STAGES[metric.stage].lower(), metric.name


# -- files are written through io only -----------------------------------------------------------------------------

WRITES = re.compile(r"np\.save|\.to_csv\(|json\.dump\(|\.write_text\(|\.write_bytes\(|\bopen\([^)]*[\"'][wa]|nb\.save")


def test_files_are_written_through_io_only():
    """Outside io/ (and testing/, which writes synthetic inputs) files are written by io helpers, atomically."""
    package = Path(__file__).resolve().parents[1] / "clbp_bidsapp"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] in ("io", "testing"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if WRITES.search(line) and "derivatives.write_" not in line:
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []
