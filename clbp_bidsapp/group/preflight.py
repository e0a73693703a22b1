"""What the group level's late steps need from participants.tsv, checked with the arguments before any work.

The group level runs for minutes to hours; a column named on the command line that is not in the table must be
refused with the other argument errors, not found by the step that uses it. Lists left at their defaults keep
their "used when present" meaning (a dataset without ``pain_duration_months`` is fine); a list the user changed
must name columns that exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from clbp_bidsapp.config import GroupSettings, MLSettings, Settings

QC_TABLE_GLOB = "sub-*/**/*_desc-denoising_qc.tsv"
DESIGN_COLUMNS = ("n_runs",)  # added by group.design.build_design (runs averaged per participant)


def qc_value_names(output_dir: Path) -> set[str] | None:
    """Column names of the participant level's QC tables (covariates such as mean_fd); None if there are none."""
    first = next(iter(sorted(output_dir.glob(QC_TABLE_GLOB))), None)
    if first is None:
        return None
    return set(pd.read_csv(first, sep="\t", nrows=0).columns) | set(DESIGN_COLUMNS)


def design_problems(
    participants: pd.DataFrame, *, settings: Settings, table_name: str, qc_values: set[str] | None
) -> list[str]:
    """One line per group-design setting that participants.tsv cannot satisfy (empty when all is well)."""
    g, ml = settings.group, settings.ml
    skip = set(settings.execution.skip)
    columns = set(participants.columns)
    problems = []
    defaults, ml_defaults = GroupSettings(), MLSettings()
    if g.group_column not in columns:
        problems.append(
            f"{table_name} has no column '{g.group_column}'; add it or name the diagnosis column with --group-column"
        )
    else:  # a default label that no one has is a data problem (too few per group, exit 3, found by the design)
        values = sorted({str(v) for v in participants[g.group_column].dropna()})
        for flag, label, default in (
            ("--patient-label", g.patient_label, defaults.patient_label),
            ("--control-label", g.control_label, defaults.control_label),
        ):
            if label != default and label not in values:
                problems.append(
                    f"{flag} {label}: no participant has {g.group_column}={label} in {table_name} "
                    f"(values: {', '.join(values) or 'none'})"
                )
        if g.patient_label == g.control_label:
            problems.append(f"--patient-label and --control-label are both {g.patient_label}; they must differ")
    if g.covariates != defaults.covariates and qc_values is not None:  # no QC tables: refused later, exit 3
        problems += _missing("--covariates", g.covariates, columns | qc_values, table_name, True)
    if g.clinical_columns != defaults.clinical_columns and "stats" not in skip:
        problems += _missing("--clinical-columns", g.clinical_columns, columns, table_name, False)
    if g.permute_within not in ("none", defaults.permute_within) and g.permute_within not in columns:
        problems.append(
            f"--permute-within {g.permute_within}: no such column in {table_name} (columns: "
            f"{', '.join(sorted(columns))}); name the column of the exchangeability blocks, or none"
        )
    if ml.clinical_target != ml_defaults.clinical_target and "ml" not in skip and ml.regression_models:
        problems += _missing("--ml-target", (ml.clinical_target,), columns, table_name, False)
    return problems


def _missing(flag: str, names: Iterable[str], known: set[str], table_name: str, with_qc: bool) -> list[str]:
    missing = [name for name in names if name not in known]
    if not missing:
        return []
    where = f"{table_name} or the participant-level QC tables" if with_qc else table_name
    return [
        f"{flag}: column(s) {', '.join(missing)} not in {where} (columns: {', '.join(sorted(known))}); "
        "fix the name or leave it out"
    ]
