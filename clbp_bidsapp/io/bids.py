"""Find the inputs of every run with pybids (never glob). Queries are data: ``data/io_spec.yaml``.

The raw dataset gives ``participants.tsv``; the fMRIPrep derivatives give, per participant, session, task and
run: the preprocessed BOLD in the requested space, its JSON (RepetitionTime), the brain mask, the confounds
table (matched by entities, never another run's file) and the anatomical tissue probability maps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from clbp_bidsapp.errors import InputError

LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
NATIVE_SPACE = "native"  # --space value of BOLD files without a space- entity (fMRIPrep's BOLD-native outputs)


@cache
def io_spec() -> dict[str, Any]:
    """The pybids query specification bundled with the package."""
    text = resources.files("clbp_bidsapp.data").joinpath("io_spec.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class RunInputs:
    """Everything one run needs, found and checked before any processing starts."""

    participant: str
    entities: Mapping[str, str]
    source_name: str
    bold: Path
    mask: Path
    confounds: Path
    confounds_json: Path | None
    tr: float
    space: str
    res: str | None
    probsegs: Mapping[str, Path] = field(default_factory=dict)
    cohort: str | None = None

    @property
    def session(self) -> str | None:
        return self.entities.get("session")

    @property
    def space_entities(self) -> dict[str, str]:
        """``space``/``cohort``/``res`` entities of the outputs, as the input has them (none for a BOLD-native run):
        two cohorts of one template are two templates, so the cohort stays in the outputs' names."""
        if self.space == NATIVE_SPACE:
            return {}
        out = {"space": self.space}
        if self.cohort is not None:
            out["cohort"] = self.cohort
        if self.res is not None:
            out["res"] = self.res
        return out


@dataclass
class Collection:
    """The runs found per participant, and what was left out with the reason."""

    runs: dict[str, list[RunInputs]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


# -- dataset-level checks --------------------------------------------------------------------------------


def read_dataset_description(root: Path) -> dict[str, Any]:
    """Read ``root/dataset_description.json`` or raise an :class:`InputError` saying what to do."""
    path = root / "dataset_description.json"
    check_fetched(path)  # a DataLad dataset whose files are not fetched: say so, not "not a BIDS dataset"
    if not path.is_file():
        raise InputError(
            f"{path} not found: {root} is not a BIDS dataset "
            "(point BIDS_DIR at the dataset root, or use --skip-bids-validation)"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); fix or regenerate it") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object")
    return data


def read_derivative_description(root: Path) -> dict[str, Any]:
    """``root/dataset_description.json`` of a derivative input, or ``{}`` when it is missing or unreadable (the
    run does not need it: it only records the upstream pipeline in the output's description)."""
    try:
        return read_dataset_description(root)
    except InputError:
        return {}


def is_derivative_dataset(root: Path) -> bool:
    path = root / "dataset_description.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("DatasetType") == "derivative"
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def resolve_fmriprep_dir(bids_dir: Path, fmriprep_dir: Path | None) -> Path:
    """The fMRIPrep derivatives folder: the one given, BIDS_DIR itself if it is one, or its derivatives."""
    if fmriprep_dir is not None:
        if not fmriprep_dir.is_dir():
            raise InputError(f"--fmriprep-dir {fmriprep_dir} is not a folder")
        return fmriprep_dir
    if is_derivative_dataset(bids_dir):
        return bids_dir
    default = bids_dir / "derivatives" / "fmriprep"
    if default.is_dir():
        return default
    raise InputError(
        f"no fMRIPrep derivatives found in {bids_dir}/derivatives/fmriprep; run fMRIPrep first or pass --fmriprep-dir"
    )


def input_folders(bids_dir: Path, fmriprep_dir: Path | None) -> tuple[Path | None, list[Path]]:
    """The read-only input as (raw dataset or None, derivative datasets read), for
    :func:`clbp_bidsapp.io.derivatives.input_overlap`. A BIDS_DIR that is itself a derivative dataset is read-only
    as a whole; the fMRIPrep folder is included when it is found (:func:`resolve_fmriprep_dir` says why not)."""
    derivative = is_derivative_dataset(bids_dir)
    derivative_inputs = [bids_dir] if derivative else []
    with contextlib.suppress(InputError):
        derivative_inputs.append(resolve_fmriprep_dir(bids_dir, fmriprep_dir))
    return (None if derivative else bids_dir), derivative_inputs


def find_participants_table(bids_dir: Path, fmriprep_dir: Path) -> Path | None:
    """``participants.tsv`` of the raw dataset.

    When BIDS_DIR is itself an fMRIPrep dataset, look next to it, then in its ``SourceDatasets`` (local
    ``file://`` or relative URLs, as BIDS allows).
    """
    candidates = [bids_dir / "participants.tsv"]
    if is_derivative_dataset(bids_dir):
        desc = read_dataset_description(bids_dir)
        for source in desc.get("SourceDatasets", []) or []:
            url = str(source.get("URL", "")) if isinstance(source, dict) else ""
            if url.startswith("file://"):
                candidates.append(Path(url[len("file://") :]) / "participants.tsv")
            elif url and "://" not in url:
                candidates.append((bids_dir / url).resolve() / "participants.tsv")
        candidates.append(bids_dir.parent / "participants.tsv")
        candidates.append(bids_dir.parent.parent / "participants.tsv")
    candidates.append(fmriprep_dir / "participants.tsv")
    for candidate in candidates:
        check_fetched(candidate)  # an unfetched git-annex participants.tsv is named with `datalad get`
        if candidate.is_file():
            return candidate
    return None


def normalise_labels(labels: Sequence[str], prefix: str) -> tuple[list[str], list[str]]:
    """Strip ``sub-``/``ses-`` prefixes; return (labels, errors) with path-like labels refused."""
    clean, errors = [], []
    for label in labels:
        value = label[len(prefix) :] if label.startswith(prefix) else label
        if not LABEL_RE.match(value):
            # repr: an invisible character (a Windows line end '\r', a tab) is shown, e.g. 'sub-01\r'
            errors.append(f"{prefix + value!r} is not a valid BIDS label (letters and digits only)")
        else:
            clean.append(value)
    return clean, errors


def expand_label_files(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--participant-label`` words with every word naming a file replaced by the labels it lists.

    A label file has one label per line, with or without ``sub-``; blank lines and ``#`` comments are ignored,
    and a Windows line end (``\\r``) is dropped, being an artefact of the file format. Returns (words, errors).
    """
    expanded, errors = [], []
    for word in words:
        path = Path(word)
        if not path.is_file():
            expanded.append(word)
            continue
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"--participant-label {word}: cannot read this label file ({exc})")
            continue
        labels = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        labels = [label for label in labels if label]
        if not labels:
            errors.append(f"--participant-label {word}: the file lists no labels (one per line, e.g. sub-01)")
        expanded.extend(labels)
    return expanded, errors


# -- run discovery ---------------------------------------------------------------------------------------


def build_layout(fmriprep_dir: Path, database_dir: Path | None = None):
    """A pybids layout of the fMRIPrep derivatives (optionally cached in ``database_dir``)."""
    from bids import BIDSLayout

    extra = {"name": "clbp_inputs", "entities": io_spec()["extra_entities"]}
    kwargs: dict[str, Any] = {"validate": False, "config": ["bids", "derivatives", extra]}
    if database_dir is not None:
        database_dir.mkdir(parents=True, exist_ok=True)
        kwargs["database_path"] = database_dir
    try:
        return BIDSLayout(fmriprep_dir, **kwargs)
    except Exception as exc:  # pybids raises several types for unreadable datasets
        raise InputError(f"cannot index {fmriprep_dir} with pybids: {exc}") from None


def _query(name: str, filters: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    query = dict(io_spec()["queries"][name])
    query.update(filters.get(name, {}))
    return query


def _run_query(layout, name: str, run_entities: Mapping[str, Any], filters, **extra):
    from bids.layout import Query

    spec = io_spec()
    query = _query(name, filters)
    for key in spec["run_entities"]:
        if key in query:
            continue
        query[key] = run_entities.get(key, Query.NONE)
    query.update(extra)
    return layout.get(return_type="object", **query)


def source_name(entities: Mapping[str, str]) -> str:
    """The BIDS prefix shared by a run's outputs, e.g. ``sub-01_ses-1_task-rest_run-1``."""
    keys = [
        ("subject", "sub"),
        ("session", "ses"),
        ("task", "task"),
        ("acquisition", "acq"),
        ("ceagent", "ce"),
        ("reconstruction", "rec"),
        ("direction", "dir"),
        ("run", "run"),
        ("echo", "echo"),
        ("part", "part"),
    ]
    return "_".join(f"{short}-{entities[key]}" for key, short in keys if entities.get(key) is not None)


def collect_runs(
    layout,
    *,
    participants: Sequence[str] = (),
    sessions: Sequence[str] = (),
    tasks: Sequence[str] = (),
    task_pattern: str = "rest",
    space: str,
    res: str | None = None,
    filters: Mapping[str, Mapping[str, Any]] | None = None,
) -> Collection:
    """Find every usable run; record what was skipped and why, and participants with nothing usable."""
    from clbp_bidsapp.io.images import read_tr

    filters = filters or {}
    spec = io_spec()
    collection = Collection()
    available = sorted(layout.get_subjects())
    wanted = list(participants) or available
    for label in wanted:
        if label not in available:
            collection.failed[label] = f"not found in {layout.root} (available: {', '.join(available[:10]) or 'none'})"
    wanted = [p for p in wanted if p in available]

    for label in wanted:
        query = _query("bold", filters)
        query["subject"] = label
        if sessions:
            query["session"] = list(sessions)
        all_bold = layout.get(return_type="object", **query)
        runs: list[RunInputs] = []
        reasons: list[str] = []
        for bold in all_bold:
            ents = {k: str(v) for k, v in bold.get_entities().items()}
            what = bold.filename
            task = ents.get("task", "")
            if tasks and task not in tasks:
                continue
            if not tasks and task_pattern.lower() not in task.lower():
                reasons.append(f"{what}: task '{task}' is not resting state")
                continue
            found_space = ents.get("space", NATIVE_SPACE)
            if found_space != space:
                have = f"space-{found_space}" if "space" in ents else "no space- entity (--space native)"
                reasons.append(f"{what}: {have}, not --space {space}")
                continue
            if res is not None and ents.get("res") != res:
                reasons.append(f"{what}: res-{ents.get('res')} is not res-{res}")
                continue
            run_ents = {k: ents[k] for k in spec["run_entities"] if k in ents}
            try:
                runs.append(_complete_run(layout, bold, run_ents, ents, filters, read_tr))
            except InputError as exc:
                reasons.append(str(exc))
        runs = choose_variants(runs, collection.skipped)
        for reason in reasons:
            collection.skipped.append((f"sub-{label}", reason))
        collection.skipped.extend(_cifti_notes(layout, label, sessions))
        if runs:
            collection.runs[label] = sorted(runs, key=lambda r: r.source_name)
        else:
            detail = "; ".join(reasons) if reasons else f"no preprocessed BOLD in space {space}"
            collection.failed[label] = f"no usable resting-state run ({detail})"
    return collection


# -- one file per run when fMRIPrep wrote several variants ------------------------------------------------------

# Entities that make variants of one acquisition run (the outputs of the picked file keep them in their names).
VARIANT_ENTITIES = ("acquisition", "reconstruction", "direction", "echo", "part")


def choose_variants(runs: Sequence[RunInputs], notes: list[tuple[str, str]]) -> list[RunInputs]:
    """One file per acquisition run (subject, session, task, run), picked by a fixed rule; a note names the pick.

    fMRIPrep may write a run several times: per echo beside the optimally combined series (multi-echo),
    at several resolutions (``res-``) or template cohorts (``cohort-``) of one space, and a dataset may hold
    ``acq-``/``rec-``/``dir-``/``part-`` variants of one task and run, or a ``.nii`` beside a ``.nii.gz``
    copy. The rule, in order: the optimally combined series (no ``echo-``); a ``.nii.gz``; the coarsest grid
    (largest voxels: closest to the acquired resolution, and cheapest); then the smallest entity values
    (no ``acq-``/``rec-``/``dir-``/``part-`` before any). ``--bids-filter-file`` changes the pick by leaving
    only the wanted files, e.g. ``{"bold": {"acquisition": "mb8"}}`` or ``{"bold": {"res": "1"}}``.
    """
    by_run: dict[tuple, list[RunInputs]] = {}
    for run in runs:
        key = tuple(run.entities.get(k) for k in ("subject", "session", "task", "run"))
        by_run.setdefault(key, []).append(run)
    kept = []
    for group in by_run.values():
        if len(group) == 1:
            kept.extend(group)
            continue
        ordered = sorted(group, key=_variant_rank)
        chosen = ordered[0]
        kept.append(chosen)
        differing = _differing(ordered)
        others = ", ".join(run.bold.name for run in ordered[1:])
        example = _filter_example(ordered, differing)
        notes.append(
            (
                f"{len(ordered) - 1} other variant(s) of {chosen.source_name}",
                f"analysing {chosen.bold.name} ({_why_first(chosen, differing)}), not {others}; "
                f"to analyse another, pass --bids-filter-file with e.g. {example}",
            )
        )
    return kept


def _variant_rank(run: RunInputs) -> tuple:
    from clbp_bidsapp.io.images import header_grid

    _, affine = header_grid(run.bold)
    voxel_volume = abs(float(np.linalg.det(affine[:3, :3])))
    return (
        run.entities.get("echo") is not None,
        "_desc-optcom_" in run.bold.name,  # tedana's name of the optimal combination, after fMRIPrep's desc-preproc
        not run.bold.name.endswith(".nii.gz"),
        -round(voxel_volume, 3),
        tuple(run.entities.get(k) or "" for k in VARIANT_ENTITIES),
        run.res or "",
        run.cohort or "",
        run.bold.name,
    )


def _variant_value(run: RunInputs, key: str) -> str | None:
    if key == "res":
        return run.res
    if key == "cohort":
        return run.cohort
    if key == "extension":
        return ".nii" if run.bold.name.endswith(".nii") else ".nii.gz"
    if key == "desc":
        return "optcom" if "_desc-optcom_" in run.bold.name else "preproc"
    return run.entities.get(key)


def _filter_example(ordered: Sequence[RunInputs], differing: Sequence[str]) -> str:
    """A ``--bids-filter-file`` content that picks the next variant: its first differing entity with a value that
    the analysed file (``ordered[0]``) does not have."""
    for run in ordered[1:]:
        for key in differing:
            value = _variant_value(run, key)
            if value is not None and value != _variant_value(ordered[0], key):
                return json.dumps({"bold": {key: value}})
    return '{"bold": {"<entity>": "<value>"}}'


def _differing(runs: Sequence[RunInputs]) -> list[str]:
    """The entities (in the order of the rule) whose values differ between the variants."""
    keys = ["echo", "desc", "extension", "res", *(k for k in VARIANT_ENTITIES if k != "echo"), "cohort"]
    return [k for k in keys if len({_variant_value(run, k) for run in runs}) > 1]


def _why_first(run: RunInputs, differing: Sequence[str]) -> str:
    if "echo" in differing:
        return "the optimally combined series (no echo- entity)"
    if "desc" in differing:
        return "fMRIPrep's desc-preproc before tedana's desc-optcom"
    if "extension" in differing:
        return "the .nii.gz copy"
    if "res" in differing:
        return f"res-{run.res}, the coarsest grid"
    values = ", ".join(f"{k} {_variant_value(run, k) or 'none'}" for k in differing)
    return f"the first by entity values ({values})"


def _cifti_notes(layout, label: str, sessions: Sequence[str]) -> list[tuple[str, str]]:
    """CIFTI BOLD files (``*_bold.dtseries.nii``) of a participant: not analysed (volumes only), said once each."""
    query: dict[str, Any] = dict(io_spec()["cifti"], subject=label)
    if sessions:
        query["session"] = list(sessions)
    return [
        (f.filename, "CIFTI (grayordinates) ignored: this app analyses the volumetric desc-preproc_bold files")
        for f in layout.get(return_type="object", **query)
    ]


def _complete_run(layout, bold, bold_ents, ents, filters, read_tr) -> RunInputs:
    from bids.layout import Query

    what = bold.filename
    space_ents = {"space": ents.get("space", Query.NONE)}
    for key in ("res", "cohort"):
        if key in ents:
            space_ents[key] = ents[key]
    # fMRIPrep writes one mask and one confounds table per run, without echo-, for every echo and the combination
    run_ents = {k: v for k, v in bold_ents.items() if k != "echo"}
    # the mask of a run without res-/cohort- has none either: a res-2 or cohort-1 variant beside it has its own
    mask_ents = {"res": Query.NONE, "cohort": Query.NONE, **space_ents}
    masks = _run_query(layout, "mask", run_ents, filters, **mask_ents)
    if len(masks) != 1:
        raise InputError(f"{what}: expected one matching desc-brain_mask, found {len(masks)}{_copies(masks)}")
    confounds = _run_query(layout, "confounds", run_ents, filters)
    if not confounds:  # fMRIPrep 1.2-20.1's name; fMRIPrep < 1.4's column names are mapped by the denoising plan
        confounds = _run_query(layout, "legacy_confounds", run_ents, filters)
    if len(confounds) != 1:
        raise InputError(f"{what}: expected one matching desc-confounds_timeseries.tsv, found {len(confounds)}")
    conf_path = Path(confounds[0].path)
    conf_json = conf_path.with_suffix(".json")
    for path in (Path(bold.path), Path(masks[0].path), conf_path):
        check_fetched(path)
    metadata = bold.get_metadata()
    tr = read_tr(Path(bold.path), metadata.get("RepetitionTime"))
    # anatomical files without space- are on the T1w grid, never the BOLD-native grid: no probsegs there
    probsegs = _probsegs(layout, run_ents, space_ents, filters) if "space" in ents else {}
    return RunInputs(
        participant=bold_ents["subject"],
        entities=bold_ents,
        source_name=source_name(bold_ents),
        bold=Path(bold.path),
        mask=Path(masks[0].path),
        confounds=conf_path,
        confounds_json=conf_json if conf_json.is_file() else None,
        tr=tr,
        space=ents.get("space", NATIVE_SPACE),
        res=ents.get("res"),
        probsegs=probsegs,
        cohort=ents.get("cohort"),
    )


def _copies(found) -> str:
    """Why several files matched, when the reason is plain: the same name as ``.nii`` and ``.nii.gz``."""
    stems = {}
    for f in found:
        stems.setdefault(f.filename.removesuffix(".gz"), []).append(f.filename)
    doubles = [names for names in stems.values() if len(names) > 1]
    if not doubles:
        return ""
    pair = " and ".join(sorted(doubles[0]))
    return (
        f": {pair} are one file as .nii and .nii.gz copies; delete one, or pass --bids-filter-file with "
        '{"mask": {"extension": ".nii.gz"}}'
    )


def check_fetched(path: Path) -> None:
    """Refuse a DataLad/git-annex file whose content was not fetched (a link into ``.git/annex/objects`` that
    leads nowhere), naming the command that fetches it."""
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        if "annex/objects" in target.replace(os.sep, "/"):
            raise InputError(f"{path} is not fetched (a git-annex link with no content) — run `datalad get {path}`")
        raise InputError(f"{path} is a broken symbolic link (to {target}); restore the file it points to")


def _probsegs(layout, run_ents, space_ents, filters) -> dict[str, Path]:
    """GM/WM/CSF maps of the participant in the run's space: the run's session first, then subject level."""
    out = {}
    for label in io_spec()["probseg_labels"]:
        query = _query("probseg", filters)
        query.update(subject=run_ents["subject"], label=label, **space_ents)
        found = layout.get(return_type="object", **query)
        same_session = [f for f in found if f.get_entities().get("session") == run_ents.get("session")]
        no_session = [f for f in found if "session" not in f.get_entities()]
        choice = same_session or no_session or found
        if choice:
            out[label] = Path(sorted(f.path for f in choice)[0])
    return out


def parse_filter_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read a ``--bids-filter-file``: a JSON object of query name -> entity filters."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--bids-filter-file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"--bids-filter-file {path} is not valid JSON: {exc}") from None
    queries = set(io_spec()["queries"])
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"--bids-filter-file {path} must map query names ({', '.join(sorted(queries))}) to objects")
    unknown = set(data) - queries
    if unknown:
        raise InputError(
            f"--bids-filter-file {path}: unknown query name(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(queries))}"
        )
    return data


def build_output_layout(output_dir: Path):
    """A pybids layout of this app's own participant outputs (``stat-`` is parsed as an entity)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    config = resources.files("clbp_bidsapp.data").joinpath("pybids_outputs.json")
    try:
        return BIDSLayout(
            output_dir,
            validate=False,
            config=[str(config)],
            indexer=BIDSLayoutIndexer(ignore=[re.compile(r"(/work/|/logs/|/group/|/\.)")]),
        )
    except Exception as exc:
        raise InputError(
            f"cannot index participant outputs in {output_dir} ({exc}); run the participant level first"
        ) from None
