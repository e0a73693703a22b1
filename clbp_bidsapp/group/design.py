"""Who enters the group analysis, with what values, and who is left out and why."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.errors import ExitCode, InputError


@dataclass(frozen=True)
class GroupDesign:
    included: pd.DataFrame  # one row per participant (participant_id, group, ..., QC averages)
    excluded: pd.DataFrame  # participant_id, reason


def build_design(
    participants: pd.DataFrame, run_qc: pd.DataFrame, *, settings: GroupSettings, table_name: str
) -> GroupDesign:
    """Join participants.tsv with the participant-level QC; average runs; exclude with reasons.

    Runs that the participant level did not use (too little data after censoring) are dropped; a participant
    with no used run, without derivatives, or whose group is neither label is excluded. Multiple runs and
    sessions of a participant are averaged (mean of each QC value), which is what enters the group model.
    """
    column = settings.group_column
    if column not in participants.columns:
        raise InputError(
            f"{table_name} has no column '{column}'; add it or name the diagnosis column with --group-column"
        )
    table = participants.copy()
    table["participant_id"] = table["participant_id"].astype(str).str.removeprefix("sub-")
    excluded: list[tuple[str, str]] = []
    labels = {settings.patient_label, settings.control_label}
    for pid, value in zip(table["participant_id"], table[column], strict=True):
        if str(value) not in labels:
            excluded.append(
                (
                    pid,
                    f"{column} is '{value}', neither {settings.patient_label} nor {settings.control_label}",
                )
            )
    table = table[table[column].astype(str).isin(labels)]

    if run_qc.empty:
        used = run_qc
    else:
        used = run_qc[run_qc["used"].astype(bool)]
        for pid in sorted(set(run_qc["participant_id"]) - set(used["participant_id"])):
            excluded.append((pid, "no usable run (too little data after censoring or too few degrees of freedom)"))
    numeric = used.drop(columns=["used"], errors="ignore").groupby("participant_id").mean(numeric_only=True)
    numeric["n_runs"] = used.groupby("participant_id").size()
    have = set(numeric.index)
    for pid in table["participant_id"]:
        if pid not in have and pid not in {e[0] for e in excluded}:
            excluded.append((pid, "no participant-level derivatives (run the participant level)"))
    included = table[table["participant_id"].isin(have)].merge(
        numeric, left_on="participant_id", right_index=True, how="left"
    )
    included = included.sort_values("participant_id").reset_index(drop=True)
    excluded_table = pd.DataFrame(excluded, columns=["participant_id", "reason"])
    return GroupDesign(included=included, excluded=excluded_table)


def check_group_sizes(design: GroupDesign, *, settings: GroupSettings, table_name: str) -> None:
    """Raise when a group has fewer usable participants than ``settings.min_per_group``."""
    column = settings.group_column
    counts = design.included[column].astype(str).value_counts()
    for label in (settings.patient_label, settings.control_label):
        n = int(counts.get(label, 0))
        if n < settings.min_per_group:
            raise InputError(
                f"{n} usable participant(s) with {column}={label} in {table_name}; the group analysis needs "
                f"at least {settings.min_per_group} per group (see group/desc-excluded_participants.tsv)",
                exit_code=ExitCode.NOTHING_PROCESSED,
            )


def qc_summary(design: GroupDesign, *, settings: GroupSettings) -> pd.DataFrame:
    """Mean and SD of every numeric QC value per group."""
    column = settings.group_column
    values = design.included.select_dtypes("number").columns.tolist()
    summary = design.included.groupby(column)[values].agg(["mean", "std"])
    summary.columns = [f"{name}_{stat}" for name, stat in summary.columns]
    summary.insert(0, "n", design.included.groupby(column).size())
    return summary.reset_index()
