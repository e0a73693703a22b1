"""The group level: participants.tsv + participant derivatives -> CLBP-versus-control outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clbp_bidsapp import messages, registry
from clbp_bidsapp.config import GroupSettings, Settings
from clbp_bidsapp.errors import ExitCode, InputError, LateSteps
from clbp_bidsapp.group import budget, fanout, inclusion, stages
from clbp_bidsapp.group.design import build_design, check_group_sizes, group_design
from clbp_bidsapp.group.inclusion import Outcome
from clbp_bidsapp.io import bids, completion, derivatives, manifest
from clbp_bidsapp.reports.methods import write_citation_files


def read_participants(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype={"participant_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable TSV ({exc})") from None
    if "participant_id" not in table.columns:
        raise InputError(f"{path} has no participant_id column; BIDS requires it")
    return table


def collect_run_qc(layout) -> pd.DataFrame:
    """One row per run from the participant level's ``*_desc-denoising_qc.tsv`` files (found with pybids)."""
    rows = []
    for qc_file in layout.get(suffix="qc", desc="denoising", extension=".tsv", return_type="object"):
        ents = qc_file.get_entities()
        row = pd.read_csv(qc_file.path, sep="\t", na_values=["n/a"]).iloc[0].to_dict()
        row["participant_id"] = str(ents["subject"])
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["participant_id", "used"])
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class GroupInputs:
    """The participants whose complete, verified participant-level outputs the group level may read."""

    records: dict[str, dict[str, Any]]  # label -> completion record
    files: frozenset[str]  # output files (relative to OUTPUT_DIR) that the analyses may read
    exclusions: inclusion.Exclusions


def participants_with_outputs(output_dir: Path) -> list[str]:
    """Labels with a ``sub-<label>`` output folder or a completion record."""
    found = {p.name.removeprefix("sub-") for p in output_dir.glob("sub-*") if p.is_dir()}
    found |= {p.name.removeprefix("sub-").removesuffix(".json")
              for p in (output_dir / completion.RECORD_DIR).glob("sub-*.json")}  # fmt: skip
    return sorted(found)


def select_inputs(output_dir: Path, selection: inclusion.Selection) -> GroupInputs:
    """Read and verify every selected participant's completion record; list who is left out and why."""
    exclusions = inclusion.Exclusions()
    candidates = [label for label in participants_with_outputs(output_dir) if selection.wants_participant(label)]
    for label in selection.participants:
        if label not in candidates:
            exclusions.add(label, f"selected with --participant-label but has no outputs in {output_dir}")
    records = {}
    for label in candidates:
        record = completion.load_record(output_dir, label)
        if isinstance(record, str):
            exclusions.add(label, record)
            continue
        problem = completion.verify_outputs(output_dir, record, wanted=selection.wants_file)
        if problem is not None:
            exclusions.add(label, problem)
            continue
        records[label] = record
    files = frozenset(inclusion.allowed_files(records.values(), selection))
    return GroupInputs(records=records, files=files, exclusions=exclusions)


def run_group_level(settings: Settings, *, run_id: str, source: dict[str, Any] | None) -> ExitCode:
    ex = settings.execution
    fmriprep_dir = bids.resolve_fmriprep_dir(ex.bids_dir, settings.inputs.fmriprep_dir)
    table_path = bids.find_participants_table(ex.bids_dir, fmriprep_dir)
    if table_path is None:
        raise InputError(
            f"participants.tsv not found next to {ex.bids_dir} or in its SourceDatasets; "
            "the group level needs it (participant_id and the group column)"
        )
    participants = read_participants(table_path)
    table_name = str(table_path)
    inclusion.check_participants_table(participants, table_name=table_name, group_column=settings.group.group_column)
    if not participants_with_outputs(ex.output_dir):
        raise InputError(
            f"no participant-level outputs in {ex.output_dir}; run the participant level first",
            exit_code=ExitCode.NOTHING_PROCESSED,
        )
    selection = inclusion.selection_from_settings(settings)
    inputs = select_inputs(ex.output_dir, selection)
    mixed = inclusion.mixed_settings_message(inputs.records)
    if mixed is not None:
        raise InputError(mixed)
    if inputs.records:  # describe and continue with what the participant level did, not this command line
        settings = inclusion.apply_participant_settings(settings, next(iter(inputs.records.values()))["settings"])
    layout = inclusion.SelectedLayout(bids.build_output_layout(ex.output_dir), keep=inputs.files.__contains__)
    run_qc = collect_run_qc(layout)
    group_dir = ex.output_dir / "group"
    g = settings.group
    design = build_design(participants, run_qc, settings=g, table_name=table_name, exclusions=inputs.exclusions)
    exclusions = design.exclusions
    derivatives.write_tsv(group_dir / "desc-design_participants.tsv", design.included)
    derivatives.write_tsv(group_dir / "desc-excluded_participants.tsv", design.excluded)
    check_group_sizes(design, settings=g, table_name=table_name)
    check_design_estimable(design.included, settings=g)
    if any(stage.fans_out for stage in stages.wanted(registry.GROUP_STAGES, ex.skip)):
        fanout.check_execution(ex)  # --plugin SLURM needs sbatch: refused now, not after the group ICA
    messages.say(f"group level reads {selection.describe()}")
    tracker = budget.start(settings, design.included, layout)  # the plan and the estimate; None: nothing can run
    outcome = Outcome(exclusions=exclusions, settings=g)
    late = LateSteps(results=str(group_dir))  # summaries of written results: a failure there loses nothing
    context = stages.GroupContext(settings, design, layout, outcome, tracker, late, participants=participants)
    with context.exits, stages.quiet_warnings(tracker is None):  # nothing can run: only the reasons are said
        stages.run_stages(context, [stage for stage in registry.GROUP_STAGES if not stage.after_analyses])
    if tracker is not None:
        messages.say(tracker.finish())
    derivatives.write_tsv(group_dir / "desc-excluded_participants.tsv", exclusions.table())
    for analysis, reason in outcome.skipped:
        messages.say(f"{analysis} not run: {reason}")
    if outcome.requested and not outcome.analysed:
        raise InputError(
            f"no group analysis ran ({len(outcome.skipped)} not run, listed above; exclusions in "
            f"{group_dir / 'desc-excluded_participants.tsv'})",
            exit_code=ExitCode.NOTHING_PROCESSED,
        )
    stages.run_stages(context, [stage for stage in registry.GROUP_STAGES if stage.after_analyses])
    counts = design.included[g.group_column].astype(str).value_counts()
    messages.say(
        f"group level: {counts.get(g.patient_label, 0)} {g.patient_label} and "
        f"{counts.get(g.control_label, 0)} {g.control_label} included, {len(exclusions.excluded_from_all())} "
        f"excluded ({len(exclusions.rows) - len(exclusions.excluded_from_all())} exclusion(s) from single "
        f"analyses); {len(outcome.analysed)} analyses run, {len(outcome.skipped)} not run; outputs in {group_dir}"
    )
    stats = context.results.get("stats")
    late.run("the methods text (logs/CITATION.md)", _citation, settings, bool(stats is not None and stats.cbf_sets))
    late.run(
        "the record of the inputs (logs/inputs-*.json)", manifest.record_inputs, ex.output_dir, run_id, [table_path]
    )
    late.run("the manifest (logs/manifest.json)", manifest.write_manifest, ex.output_dir)
    return late.exit_code(ExitCode.OK)


def check_design_estimable(table: pd.DataFrame, *, settings: GroupSettings) -> None:
    """Stop before any work (exit 3) when the study's group design cannot be estimated on everyone included.

    The covariates and factors are the same for every analysis, so a design with as many regressors as
    participants, or a confounded covariate, would make every analysis fail after the group ICA and the other
    slow steps; an analysis whose own subset of participants is too small is still reported as not run.
    """
    from clbp_bidsapp.core.stats import DesignError
    from clbp_bidsapp.group.voxelwise import model_columns

    covariates, factors, _ = model_columns(table, settings)
    try:
        group_design(table, settings, covariates=covariates, factors=factors)
    except DesignError as exc:
        raise InputError(f"group design: {exc}", exit_code=ExitCode.NOTHING_PROCESSED) from None


def _citation(settings: Settings, cbf: bool = False) -> None:
    citation, _ = write_citation_files(settings.execution.output_dir, settings, level="group", cbf=cbf)
    messages.say(f"methods text with citations: {citation} (BibTeX: {citation.with_suffix('.bib')})")
