"""Run settings: frozen dataclasses per section, TOML round trip and a hash of what affects results.

There is no global configuration object. ``cli`` builds a :class:`Settings` from the command line (and an
optional saved TOML file); workflow builders and group runners receive the sections they need as arguments.

Fields carry ``metadata={"result": False}`` when changing them cannot change any output value (paths, thread
counts, plugins, verbosity...). Everything else enters :meth:`Settings.result_hash`, which is recorded in
``dataset_description.json`` so two output folders can be compared at a glance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_SPACE = "MNI152NLin2009cAsym"


def _not_result(**kwargs: Any) -> Any:
    """A field that cannot change output values (excluded from the result hash)."""
    return field(metadata={"result": False}, **kwargs)


@dataclass(frozen=True)
class ExecutionSettings:
    """Where to read and write, and how to run. Only ``random_seed`` can change an output value."""

    bids_dir: Path = _not_result(default=Path("."))
    output_dir: Path = _not_result(default=Path("out"))
    analysis_level: str = _not_result(default="participant")
    work_dir: Path | None = _not_result(default=None)
    bids_database_dir: Path | None = _not_result(default=None)
    nprocs: int = _not_result(default=1)
    omp_nthreads: int = _not_result(default=1)
    mem_gb: float | None = _not_result(default=None)
    plugin: str = _not_result(default="MultiProc")
    plugin_args: Mapping[str, Any] = _not_result(default_factory=dict)
    skip_bids_validation: bool = _not_result(default=False)
    stop_on_first_crash: bool = _not_result(default=False)
    clean_workdir: bool = _not_result(default=False)
    verbosity: int = _not_result(default=0)
    random_seed: int = 0
    skip: tuple[str, ...] = _not_result(default=())


@dataclass(frozen=True)
class InputSettings:
    """What to analyse: the fMRIPrep derivatives and the pybids selection."""

    fmriprep_dir: Path | None = _not_result(default=None)
    participant_label: tuple[str, ...] = _not_result(default=())
    session_id: tuple[str, ...] = _not_result(default=())
    task_id: tuple[str, ...] = ()
    task_pattern: str = "rest"
    space: str = DEFAULT_SPACE
    res: str | None = None
    bids_filters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DenoiseSettings:
    """Confound regression, censoring and filtering (see docs/denoising.md)."""

    strategy: str = "24P"
    fd_thresh: float = 0.5
    dvars_thresh: float | None = None
    censor_neighbours: bool = False
    dummy_scans: str = "auto"
    min_time: float = 120.0
    min_dof: float = 10.0  # effective DOF of the band-passed series; see docs/denoising.md
    band_pass: tuple[float, ...] = (0.01, 0.08)  # () = no band-pass filter
    save_denoised: bool = _not_result(default=False)


@dataclass(frozen=True)
class MetricSettings:
    """Local metrics: ALFF/fALFF, ReHo, VMHC, degree centrality; standardisation and smoothing."""

    reho_neighbourhood: int = 27
    dc_threshold: float = 0.25  # r; used unless dc_threshold_p is set
    dc_threshold_p: float | None = None  # one-sided p turned into each run's r with its effective DOF
    dc_resolution: float | None = None  # mm; None = the data's grid
    smoothing_fwhm: float = 6.0  # mm; 0 = no smoothing


DEFAULT_SEEDS = (
    "insulaAntL", "insulaAntR", "insulaPostL", "insulaPostR", "dacc", "mpfc", "pcc", "s1TrunkL", "s1TrunkR",
    "thalamusL", "thalamusR", "naccL", "naccR", "vta", "pag",
)  # fmt: skip


@dataclass(frozen=True)
class ConnectivitySettings:
    """Seed-based FC, ROI connectomes, graph measures and dual regression (see docs/connectivity.md)."""

    seeds: tuple[str, ...] = DEFAULT_SEEDS  # names in data/seeds.tsv and/or paths of user seed TSVs
    atlases: tuple[str, ...] = ("seitzman300", "harvardoxford")  # bundled names and/or user dseg NIfTI paths
    min_region_coverage: float = 0.5  # fraction of a region's voxels inside the brain mask; below: n/a
    graph_sparsity: tuple[float, ...] = (0.05, 0.40, 0.01)  # low, high, step
    graph_random_networks: int = 10
    networks: str = "seitzman"  # reference maps for dual regression: "seitzman" or a 4-D NIfTI path


@dataclass(frozen=True)
class GroupSettings:
    """Participants table columns that define the CLBP-versus-control design."""

    group_column: str = "group"
    patient_label: str = "CLBP"
    control_label: str = "HC"
    min_per_group: int = 2
    covariates: tuple[str, ...] = ("age", "sex", "mean_fd")
    n_permutations: int = 5000
    cluster_forming_p: float = 0.001
    tfce: bool = True  # TFCE (Smith & Nichols 2009) FWE maps besides max-t and cluster-extent FWE
    metrics: tuple[str, ...] = ("alff", "falff", "reho", "vmhc", "dc", "fcz", "dualreg")
    networks: tuple[str, ...] = ("DefaultMode", "Salience", "FrontoParietal", "SomatomotorDorsal", "Visual")
    clinical_columns: tuple[str, ...] = ("pain_vas", "pain_duration_months")  # used when present
    nbs_threshold: float = 3.0  # |t| that forms Network-Based Statistic components
    ica_components: int = 20  # group ICA (CanICA) components; needs the participant level's --save-denoised


@dataclass(frozen=True)
class MLSettings:
    """Machine learning at the group level (see docs/machine-learning.md)."""

    feature_sets: tuple[str, ...] = ("roi", "edges", "graph", "dualreg", "combined")
    atlas: str = "harvardoxford"  # regions of the ROI-mean features
    models: tuple[str, ...] = ("linear_svm", "rbf_svm", "logistic_l2", "logistic_enet", "random_forest")
    primary_model: str = "linear_svm"  # the model whose score is permutation-tested
    regression_models: tuple[str, ...] = ("ridge", "svr")  # the first one is permutation-tested
    clinical_target: str = "pain_vas"  # predicted within patients
    n_splits: int = 10
    n_repeats: int = 10
    inner_splits: int = 5
    k_best: tuple[int, ...] = (10, 100, 1000)  # features kept by selection inside the folds, tuned (0/() = none)
    n_permutations: int = 1000
    permutation_repeats: int = 1  # repeats of the outer splits refitted per permutation
    permutation_inner_search: bool = False  # grid search inside each permutation (slow) or fixed defaults
    harmonize: str = "auto"  # auto (ComBat when several sites), combat, none
    leave_site_out: bool = True  # leave-one-site-out validation too, when there are several sites
    n_top_features: int = 20


@dataclass(frozen=True)
class Settings:
    """All settings of one run, one attribute per section."""

    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    inputs: InputSettings = field(default_factory=InputSettings)
    denoise: DenoiseSettings = field(default_factory=DenoiseSettings)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    connectivity: ConnectivitySettings = field(default_factory=ConnectivitySettings)
    group: GroupSettings = field(default_factory=GroupSettings)
    ml: MLSettings = field(default_factory=MLSettings)

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain, TOML-compatible dictionary (``None`` values are omitted, paths become strings)."""
        return {
            f.name: {k: _to_plain(v) for k, v in dataclasses.asdict(getattr(self, f.name)).items() if v is not None}
            for f in fields(self)
        }

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> Settings:
        """Build settings from a (possibly partial) nested mapping; unknown keys raise ``ValueError``."""
        unknown_sections = set(data) - {f.name for f in fields(cls)}
        if unknown_sections:
            raise ValueError(f"unknown settings section(s): {', '.join(sorted(unknown_sections))}")
        sections = {}
        for f in fields(cls):
            section_cls = type(getattr(cls(), f.name))
            sections[f.name] = section_from_mapping(section_cls, data.get(f.name, {}))
        return cls(**sections)

    @classmethod
    def from_toml(cls, text: str) -> Settings:
        return cls.from_dict(tomllib.loads(text))

    def replace(self, overrides: Mapping[str, Mapping[str, Any]]) -> Settings:
        """Return a copy with ``{section: {field: value}}`` overrides applied (values already typed)."""
        new_sections = {}
        for f in fields(self):
            section = getattr(self, f.name)
            changes = dict(overrides.get(f.name, {}))
            new_sections[f.name] = dataclasses.replace(section, **changes) if changes else section
        return Settings(**new_sections)

    def result_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of every field that can change an output value."""
        payload = {}
        for f in fields(self):
            section = getattr(self, f.name)
            payload[f.name] = {
                sf.name: _to_plain(getattr(section, sf.name))
                for sf in fields(section)
                if sf.metadata.get("result", True)
            }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def section_from_mapping(section_cls: type, values: Mapping[str, Any]) -> Any:
    """Instantiate one settings section from plain values, coercing them to the annotated types."""
    hints = get_type_hints(section_cls)
    known = {f.name for f in fields(section_cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown setting(s) in [{_section_name(section_cls)}]: {', '.join(sorted(unknown))}")
    return section_cls(**{k: _coerce(hints[k], v) for k, v in values.items()})


def _section_name(section_cls: type) -> str:
    return section_cls.__name__.removesuffix("Settings").lower()


def _coerce(annotation: Any, value: Any) -> Any:
    text = str(annotation)
    if value is None:
        return None
    if "Path" in text:
        return Path(value)
    if text.startswith("tuple[float"):
        return tuple(float(v) for v in value)
    if text.startswith("tuple"):
        return tuple(value)
    if "Mapping" in text:
        return dict(value)
    if text.startswith("float"):
        return float(value)
    return value


def _to_plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value
