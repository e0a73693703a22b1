"""Who enters the group analysis, with what values, and who is left out and why."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.core.exchangeability import block_codes
from clbp_bidsapp.core.stats import Design, design_matrix
from clbp_bidsapp.errors import ExitCode, InputError
from clbp_bidsapp.group.inclusion import Exclusions


@dataclass(frozen=True)
class GroupDesign:
    included: pd.DataFrame  # one row per participant (participant_id, group, ..., QC averages)
    exclusions: Exclusions  # participant_id, analysis (``all`` or one analysis), reason

    @property
    def excluded(self) -> pd.DataFrame:
        return self.exclusions.table()


def build_design(
    participants: pd.DataFrame,
    run_qc: pd.DataFrame,
    *,
    settings: GroupSettings,
    table_name: str,
    exclusions: Exclusions | None = None,
) -> GroupDesign:
    """Join participants.tsv with the participant-level QC; average runs; exclude with reasons.

    Runs that the participant level did not use (too little data after censoring) are dropped; a participant
    with no used run, without derivatives, without a row or a group label in participants.tsv, whose group is
    neither label, or with a missing value of a modelled covariate is excluded. Multiple runs and sessions of a
    participant are averaged (mean of each QC value), which is what enters the group model. ``exclusions`` (those
    decided before, e.g. an incomplete participant level) are extended and returned in the design.
    """
    exclusions = exclusions if exclusions is not None else Exclusions()
    column = settings.group_column
    if column not in participants.columns:
        raise InputError(
            f"{table_name} has no column '{column}'; add it or name the diagnosis column with --group-column"
        )
    table = participants.copy()
    table["participant_id"] = table["participant_id"].astype(str).str.strip().str.removeprefix("sub-")
    labels = {settings.patient_label, settings.control_label}
    for pid, value in zip(table["participant_id"], table[column], strict=True):
        if pd.isna(value) or str(value).strip() == "":
            exclusions.add(pid, f"no {column} label in {table_name}")
        elif str(value) not in labels:
            exclusions.add(pid, f"{column} is '{value}', neither {settings.patient_label} nor {settings.control_label}")
    table = table[table[column].astype(str).isin(labels)]

    if run_qc.empty:
        used = run_qc
    else:
        for pid in sorted(set(run_qc["participant_id"]) - set(participants_in(participants))):
            exclusions.add(pid, f"no row in {table_name}")
        used = run_qc[run_qc["used"].astype(bool)]
        for pid in sorted(set(run_qc["participant_id"]) - set(used["participant_id"])):
            exclusions.add(pid, "no usable run (too little data after censoring or too few degrees of freedom)")
    numeric = used.drop(columns=["used"], errors="ignore").groupby("participant_id").mean(numeric_only=True)
    numeric["n_runs"] = used.groupby("participant_id").size()
    have = set(numeric.index) - exclusions.excluded_from_all()
    for pid in table["participant_id"]:
        if pid not in have and pid not in exclusions.excluded_from_all():
            exclusions.add(pid, "no participant-level derivatives (run the participant level)")
    included = table[table["participant_id"].isin(have)].merge(
        numeric, left_on="participant_id", right_index=True, how="left"
    )
    for name in settings.covariates:
        if name in included.columns and included[name].notna().any():
            values = pd.to_numeric(included[name], errors="coerce") if _numeric(included[name]) else included[name]
            for pid in included.loc[values.isna(), "participant_id"]:
                exclusions.add(pid, f"covariate {name} is missing (n/a) in {table_name} or the QC tables")
    included = included[~included["participant_id"].isin(exclusions.excluded_from_all())]
    included = included.sort_values("participant_id").reset_index(drop=True)
    return GroupDesign(included=included, exclusions=exclusions)


def participants_in(participants: pd.DataFrame) -> list[str]:
    return list(participants["participant_id"].astype(str).str.strip().str.removeprefix("sub-"))


def _numeric(column: pd.Series) -> bool:
    """A column whose present values are all numbers (a non-number there is then a missing value)."""
    present = column.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().all()


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


def group_design(table: pd.DataFrame, settings: GroupSettings, *, covariates, factors) -> Design:
    """The patient-versus-control design of ``table`` (raises ``DesignError`` when it cannot be estimated)."""
    return design_matrix(
        table,
        group_column=settings.group_column,
        patient_label=settings.patient_label,
        control_label=settings.control_label,
        covariates=covariates,
        factors=factors,
    )


def permutation_blocks(table: pd.DataFrame, settings: GroupSettings) -> tuple[str | None, np.ndarray | None]:
    """The exchangeability blocks of ``--permute-within`` for the rows of ``table``: (column, label per row).

    ``(None, None)`` (free permutation) when the setting is ``none``, or when the column is absent or has a single
    level among these rows (the default ``site`` on a one-site study). Every permutation test of the group level
    calls this on the rows it tests, so a subset (e.g. patients only) gets its own blocks.
    """
    column = settings.permute_within
    if column == "none" or column not in table.columns:
        return None, None
    blocks = block_codes(table[column].astype(str).to_numpy())
    return (column, blocks) if blocks is not None else (None, None)
