"""Read fMRIPrep confounds tables and their JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from clbp_bidsapp.errors import InputError


def read_confounds(path: Path, json_path: Path | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The confounds table (``n/a`` -> NaN) and its sidecar metadata (empty when there is none)."""
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a", "N/A", "NaN", "nan", ""], keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"confounds file {path} does not exist; re-run fMRIPrep for this run") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable TSV ({exc}); regenerate it with fMRIPrep") from None
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            values = pd.to_numeric(table[column], errors="coerce")
            bad = table[column][values.isna() & table[column].notna()]
            if bad.empty:
                table[column] = values
                continue
            row = int(bad.index[0]) + 2  # 1-based line number, after the header
            raise InputError(
                f"{path}: column {column} holds {bad.iloc[0]!r} on line {row}, not a number or n/a; "
                "regenerate it with fMRIPrep"
            )
    metadata: dict[str, Any] = {}
    json_path = json_path if json_path is not None else path.with_suffix(".json")
    if json_path.is_file():
        try:
            metadata = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{json_path} is not valid JSON ({exc})") from None
    return table, metadata
