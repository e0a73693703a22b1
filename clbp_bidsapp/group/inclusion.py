"""Which participant outputs the group level may use, and why each one it does not use is left out.

The participant level writes ``OUTPUT_DIR/logs/participants/sub-<label>.json`` last, and only when the participant
succeeded and its outputs were verified on disk::

    {"participant": "01", "status": "complete", "finished": "<ISO time>", "app_version": "...",
     "result_hash": "<hash of the result-affecting settings>", "settings": {...}, "runs": [...],
     "skipped_runs": [...], "outputs": {"<path relative to OUTPUT_DIR>": "<sha256>"}}

The group level reads only the files a record lists (so a failed or interrupted participant, or a stale map from an
earlier run with other settings, is never used), after checking that each is still there with the same SHA-256;
it compares only participants whose records carry one ``result_hash``; and ``--participant-label``,
``--session-id`` and ``--task-id`` select participants and the files whose names carry those entities.

Reading and verifying a record is :mod:`clbp_bidsapp.io.completion`'s (``load_record``, ``verify_outputs``); the
functions below are pure over the parsed records.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clbp_bidsapp.config import GroupSettings, Settings, section_from_mapping
from clbp_bidsapp.errors import InputError

ALL_ANALYSES = "all"  # the ``analysis`` value of an exclusion from every analysis
EXCLUSION_COLUMNS = ["participant_id", "analysis", "reason"]
# participant-level settings that the group level describes or applies itself (taken from the records)
APPLIED_SECTIONS = ("denoise", "metrics", "connectivity")


# -- selection by entities ---------------------------------------------------------------------------------------


def _entity(name: str, key: str) -> str | None:
    found = re.search(rf"(?:^|_){key}-([0-9A-Za-z]+)(?=_|\.|$)", Path(name).name)
    return found.group(1) if found else None


@dataclass(frozen=True)
class Selection:
    """``--participant-label``, ``--session-id`` and ``--task-id`` at the group level (empty = all)."""

    participants: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()

    def wants_participant(self, label: str) -> bool:
        return not self.participants or label in self.participants

    def wants_file(self, relative: str) -> bool:
        """A file of a selected session and task (files without the entity are kept)."""
        for key, values in (("ses", self.sessions), ("task", self.tasks)):
            value = _entity(relative, key)
            if values and value is not None and value not in values:
                return False
        return True

    def describe(self) -> str:
        parts = [
            f"{what} {', '.join(f'{prefix}{v}' for v in values)}"
            for what, prefix, values in (
                ("participants", "sub-", self.participants),
                ("sessions", "ses-", self.sessions),
                ("tasks", "task-", self.tasks),
            )
            if values
        ]
        return "; ".join(parts) if parts else "all participants, sessions and tasks"


def selection_from_settings(settings: Settings) -> Selection:
    inputs = settings.inputs
    return Selection(
        participants=tuple(str(p).removeprefix("sub-") for p in inputs.participant_label),
        sessions=tuple(str(s).removeprefix("ses-") for s in inputs.session_id),
        tasks=tuple(str(t).removeprefix("task-") for t in inputs.task_id),
    )


# -- settings ------------------------------------------------------------------------------------------------------


def flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"denoise": {"strategy": "24P"}}`` -> ``{"denoise.strategy": "24P"}`` (already flat keys stay)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and "." not in str(key):
            flat.update(flatten_settings(value, prefix=f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def mixed_settings_message(records: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One line when the records carry more than one ``result_hash``: participants per variant, what differs."""
    variants: dict[str, list[str]] = {}
    for label, record in sorted(records.items()):
        variants.setdefault(str(record["result_hash"]), []).append(label)
    if len(variants) < 2:
        return None
    ordered = sorted(variants.items(), key=lambda item: (-len(item[1]), item[1]))
    settings = [flatten_settings(records[labels[0]]["settings"]) for _, labels in ordered]
    keys = sorted(set().union(*settings))
    differing = [
        f"{key}: {' vs '.join(_show(s.get(key, '(not set)')) for s in settings)}"
        for key in keys
        if len({repr(s.get(key, "(not set)")) for s in settings}) > 1
    ]
    groups = "; ".join(f"{len(labels)} with settings {hash_} ({_participants(labels)})" for hash_, labels in ordered)
    what = ", ".join(differing) if differing else "the result hash only"
    return (
        f"the participant outputs were made with {len(variants)} different result-affecting settings ({groups}), "
        f"differing in {what}; rerun the participant level of every participant with one configuration "
        "(or choose one variant with --participant-label)"
    )


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _participants(labels: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(f"sub-{label}" for label in labels[:limit])
    return shown + (f", ... ({len(labels)})" if len(labels) > limit else "")


def apply_participant_settings(settings: Settings, participant_settings: Mapping[str, Any]) -> Settings:
    """``settings`` with the denoise, metrics and connectivity values the participant level actually used.

    The maps were made by the participant run; the group level describes (methods, report) and continues
    (smoothing of dual-regression and ICA maps) with its values, not with its own command line's defaults.
    """
    flat = flatten_settings(participant_settings)
    overrides: dict[str, dict[str, Any]] = {}
    for section in APPLIED_SECTIONS:
        current = getattr(settings, section)
        known = {f.name for f in dataclasses.fields(current)}
        values = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{section}.")}
        values = {k: v for k, v in values.items() if k in known}
        if not values:
            continue
        try:
            typed = section_from_mapping(type(current), values)
        except (TypeError, ValueError):
            continue
        overrides[section] = {k: getattr(typed, k) for k in values}
    return settings.replace(overrides)


# -- participants.tsv ----------------------------------------------------------------------------------------------


def check_participants_table(table: pd.DataFrame, *, table_name: str, group_column: str) -> None:
    """Refuse a table that would count a participant twice or has no diagnosis column (before anything is written)."""
    ids = table["participant_id"].astype(str).str.strip().str.removeprefix("sub-")
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise InputError(
            f"{table_name} lists {', '.join(f'sub-{d}' for d in duplicated)} more than once; keep one row per "
            "participant"
        )
    if (ids == "").any() or ids.isna().any():
        raise InputError(f"{table_name} has a row without participant_id; fill it in or delete the row")
    if group_column not in table.columns:
        raise InputError(
            f"{table_name} has no column '{group_column}'; add it or name the diagnosis column with --group-column"
        )


# -- the exclusion table -------------------------------------------------------------------------------------------


@dataclass
class Exclusions:
    """Every participant left out, of which analysis (``all`` or a map/atlas name), and why."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, participant: str, reason: str, analysis: str = ALL_ANALYSES) -> None:
        row = (str(participant), analysis, reason)
        if row not in self.rows:
            self.rows.append(row)

    def narrow(self, participant: str, analysis: str, reason: str) -> None:
        """Turn the participant's exclusions from every analysis into one from ``analysis`` only, for ``reason``."""
        mine = [row for row in self.rows if row[0] == participant and row[1] == ALL_ANALYSES]
        narrowed = [row for row in self.rows if row not in mine] + ([(participant, analysis, reason)] if mine else [])
        self.rows = []
        for participant_id, name, reason in narrowed:
            self.add(participant_id, reason, name)

    def excluded_from_all(self) -> set[str]:
        return {p for p, analysis, _ in self.rows if analysis == ALL_ANALYSES}

    def table(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=EXCLUSION_COLUMNS)
        order = frame["analysis"] != ALL_ANALYSES
        return (
            frame.assign(_order=order)
            .sort_values(["_order", "analysis", "participant_id"], kind="stable")
            .drop(columns="_order")
            .reset_index(drop=True)
        )


# -- the selected outputs as a layout ------------------------------------------------------------------------------


class SelectedLayout:
    """A pybids output layout that returns only the files ``keep(relative_path)`` accepts.

    The group loaders query it as they query a ``BIDSLayout`` (``get`` with ``return_type`` object, filename
    or id), so every analysis sees the same complete, verified, selected files.
    """

    def __init__(self, layout, keep: Callable[[str], bool]) -> None:
        self._layout = layout
        self._keep = keep
        self.root = str(layout.root)

    def _relative(self, path: str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def get(self, return_type: str = "object", target: str | None = None, **filters):
        files = [f for f in self._layout.get(return_type="object", **filters) if self._keep(self._relative(f.path))]
        if return_type == "object":
            return files
        if return_type == "filename":
            return [f.path for f in files]
        if return_type == "id":
            return sorted({str(f.get_entities()[target]) for f in files if target in f.get_entities()})
        raise ValueError(f"return_type {return_type!r} is not supported by SelectedLayout")


def allowed_files(records: Iterable[Mapping[str, Any]], selection: Selection) -> set[str]:
    """Relative paths of the output files the group level may read: listed in a record and selected."""
    return {
        Path(relative).as_posix()
        for record in records
        for relative in record["outputs"]
        if selection.wants_file(relative)
    }


# -- what ran ------------------------------------------------------------------------------------------------------


def group_size_shortfall(table: pd.DataFrame, *, settings: GroupSettings) -> str | None:
    """Why ``table`` has too few participants in a group for an analysis (``settings.min_per_group``), or None."""
    counts = table[settings.group_column].astype(str).value_counts() if len(table) else pd.Series(dtype=int)
    short = [
        f"{int(counts.get(label, 0))} {label}"
        for label in (settings.patient_label, settings.control_label)
        if int(counts.get(label, 0)) < settings.min_per_group
    ]
    if not short:
        return None
    return f"only {' and '.join(short)} participant(s) usable, fewer than --min-per-group {settings.min_per_group}"


@dataclass
class Outcome:
    """Which requested analyses ran, which did not (with the reason), and the exclusions they added."""

    exclusions: Exclusions
    settings: GroupSettings
    analysed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def requested(self) -> bool:
        return bool(self.analysed or self.skipped)

    def ran(self, analysis: str) -> None:
        self.analysed.append(analysis)

    def not_run(self, analysis: str, reason: str) -> None:
        self.skipped.append((analysis, reason))

    def exclude(self, participants: Mapping[str, str], analysis: str) -> None:
        for participant, reason in sorted(participants.items()):
            self.exclusions.add(participant, reason, analysis)

    def enough(self, analysis: str, table: pd.DataFrame) -> bool:
        """True when ``table`` meets ``--min-per-group``; otherwise the analysis is recorded as not run."""
        shortfall = group_size_shortfall(table, settings=self.settings)
        if shortfall is not None:
            self.not_run(analysis, shortfall)
        return shortfall is None
