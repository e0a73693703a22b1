"""Run settings: frozen dataclasses per section, TOML round trip and a hash of what affects results.

There is no global configuration object. ``cli`` builds a :class:`Settings` from the command line (and an
optional saved TOML file); workflow builders and group runners receive the sections they need as arguments.

Every field is declared with :func:`setting`, which carries its :class:`Check` (type, range or choices) as data:
:meth:`Settings.validate` runs every check for the command line, a replayed TOML file and the Python API alike,
and :meth:`Settings.from_toml` refuses a value of the wrong type before it is coerced (``"01"`` where a list is
expected is not read as ``["0", "1"]``). Checks that relate several fields (a band's low < high) are in
:data:`RELATIONS`. Fields made with ``result=False`` cannot change any output value (paths, thread counts,
plugins, verbosity...). Everything else enters :meth:`Settings.result_hash`, which is recorded in
``dataset_description.json`` so two output folders can be compared at a glance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from clbp_bidsapp import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_SPACE = "MNI152NLin2009cAsym"


# names from the registry (plain data, so that the settings and the parser do not import scikit-learn)
ML_CLASSIFIERS = registry.ML_CLASSIFIERS
ML_REGRESSORS = registry.ML_REGRESSORS
GROUP_METRICS = registry.GROUP_METRICS
ML_FEATURE_SETS = registry.ML_FEATURE_SETS

_KIND_NAMES = {
    "int": ("an integer", "integers"),
    "float": ("a number", "numbers"),
    "bool": ("true or false", "true/false values"),
    "str": ("a text", "texts"),
    "path": ("a path", "paths"),
    "table": ("a table", "tables"),
}


@dataclass(frozen=True)
class Check:
    """What one setting accepts: a kind (int, float, bool, str, path, table), optionally a list of it, a range
    (``low``/``high``, excluded when ``*_open``), choices, list lengths, or a text pattern (described by
    ``text``). ``optional``: ``None`` (no value; a key left out of the TOML file) is accepted."""

    kind: str
    many: bool = False
    optional: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    lengths: tuple[int, ...] = ()
    pattern: str | None = None
    text: str | None = None

    def describe(self) -> str:
        """What is expected, e.g. ``an integer >= 1`` or ``a list of 2 numbers, each > 0``."""
        limits = ""
        if self.low is not None and self.high is not None:
            low, high = _number(self.low), _number(self.high)
            limits = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        elif self.low is not None:
            limits = f"{'>' if self.low_open else '>='} {_number(self.low)}"
        elif self.high is not None:
            limits = f"{'<' if self.high_open else '<='} {_number(self.high)}"
        if self.choices:
            one = each = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            one = f"{self.text or _KIND_NAMES[self.kind][0]} {limits}".strip()
            each = limits or (self.text or "")
        if not self.many:
            return one
        count = " or ".join(str(n) for n in self.lengths) + " " if self.lengths else ""
        return f"a list of {count}{_KIND_NAMES[self.kind][1]}" + (f", each {each}" if each else "")

    def from_text(self, text: str) -> Any:
        """One command-line word as this setting's type (the range is checked by :meth:`problem`)."""
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise ValueError(f"expected {self.describe()}, got {text!r}") from None
        return Path(text) if self.kind == "path" else text

    def from_plain(self, value: Any) -> Any:
        """A TOML (or other plain) value as this setting's type; wrong types raise ``ValueError``."""
        if value is None and self.optional:
            return None
        if self.many:
            if not isinstance(value, list | tuple):
                raise ValueError(f"expected {self.describe()}, got {value!r}")
            return tuple(self._one_from_plain(v, whole=value) for v in value)
        return self._one_from_plain(value, whole=value)

    def _one_from_plain(self, value: Any, *, whole: Any) -> Any:
        kind = self.kind
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
            "path": isinstance(value, str | Path),
            "table": isinstance(value, Mapping),
        }[kind]
        if not ok:
            raise ValueError(f"expected {self.describe()}, got {whole!r}")
        if kind == "float":
            return float(value)
        if kind == "path":
            return Path(value)
        if kind == "table":
            return dict(value)
        return value

    def problem(self, value: Any) -> str | None:
        """``expected …, got …`` if ``value`` (already of the setting's type) is out of range, else ``None``."""
        if value is None and self.optional:
            return None
        try:
            typed = self.from_plain(list(value) if self.many and isinstance(value, tuple) else value)
        except ValueError as exc:
            return str(exc)
        items = typed if self.many else (typed,)
        bad = (
            (self.lengths and len(items) not in self.lengths)
            or any(not self._in_range(v) for v in items)
        )  # fmt: skip
        return f"expected {self.describe()}, got {_shown(value)}" if bad else None

    def _in_range(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return False
        if self.kind in ("int", "float"):
            if not math.isfinite(value):
                return False
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                return False
            if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
                return False
        return True


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _shown(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def setting(default: Any = dataclasses.MISSING, check: Check | None = None, *, result: bool = True, **kwargs) -> Any:
    """A settings field with its :class:`Check`; ``result=False``: it cannot change an output value."""
    if check is None:
        raise TypeError("every setting needs a Check")  # programming error
    if isinstance(default, dict | list):
        kwargs["default_factory"] = lambda d=default: type(d)(d)
    else:
        kwargs["default"] = default
    return field(metadata={"result": result, "check": check}, **kwargs)


def _int(low: float | None = None, **kw: Any) -> Check:
    return Check("int", low=low, **kw)


def _float(low: float | None = None, **kw: Any) -> Check:
    return Check("float", low=low, **kw)


TEXT = Check("str")
TEXTS = Check("str", many=True)
FLAG = Check("bool")
PATH = Check("path")
OPTIONAL_PATH = Check("path", optional=True)
LABELS = Check("str", many=True, pattern="[A-Za-z0-9]+", text="a BIDS label (letters and digits)")
PLUGINS = ("Linear", "MultiProc", "SLURM", "SLURMGraph")


@dataclass(frozen=True)
class ExecutionSettings:
    """Where to read and write, and how to run. Only ``random_seed`` can change an output value."""

    bids_dir: Path = setting(Path("."), PATH, result=False)
    output_dir: Path = setting(Path("out"), PATH, result=False)
    analysis_level: str = setting("participant", Check("str", choices=("participant", "group")), result=False)
    work_dir: Path | None = setting(None, OPTIONAL_PATH, result=False)
    bids_database_dir: Path | None = setting(None, OPTIONAL_PATH, result=False)
    nprocs: int = setting(1, _int(1), result=False)
    omp_nthreads: int = setting(1, _int(1), result=False)
    mem_gb: float | None = setting(None, _float(0, low_open=True, optional=True), result=False)
    plugin: str = setting("MultiProc", Check("str", choices=PLUGINS), result=False)
    plugin_args: Mapping[str, Any] = setting({}, Check("table"), result=False)
    skip_bids_validation: bool = setting(False, FLAG, result=False)
    stop_on_first_crash: bool = setting(False, FLAG, result=False)
    clean_workdir: bool = setting(False, FLAG, result=False)
    verbosity: int = setting(0, _int(0), result=False)
    random_seed: int = setting(0, _int(0, high=2**32 - 1))  # numpy seeds: 0 .. 2**32 - 1
    skip: tuple[str, ...] = setting((), TEXTS, result=False)  # names checked against stages.py


@dataclass(frozen=True)
class InputSettings:
    """What to analyse: the fMRIPrep derivatives and the pybids selection."""

    fmriprep_dir: Path | None = setting(None, OPTIONAL_PATH, result=False)
    participant_label: tuple[str, ...] = setting((), LABELS, result=False)
    session_id: tuple[str, ...] = setting((), LABELS, result=False)
    task_id: tuple[str, ...] = setting((), LABELS)
    task_pattern: str = setting("rest", TEXT)
    space: str = setting(DEFAULT_SPACE, Check("str", pattern="[A-Za-z0-9]+", text="a template name"))
    res: str | None = setting(None, Check("str", optional=True, pattern="[A-Za-z0-9]+", text="a BIDS label"))
    bids_filters: Mapping[str, Any] = setting({}, Check("table"))
    # ASL cerebral blood flow from ASLPrep (docs/cbf.md)
    aslprep_dir: Path | None = setting(None, OPTIONAL_PATH, result=False)
    cbf_variant: str = setting("mean", Check("str", choices=("mean", "basil", "basilGM", "score", "scrub")))
    cbf_min_qei: float = setting(0.6, _float(0, high=1))
    cbf_gm_range: tuple[float, ...] = setting((10.0, 150.0), _float(0, many=True, lengths=(2,)))


@dataclass(frozen=True)
class DenoiseSettings:
    """Confound regression, censoring and filtering (see docs/denoising.md)."""

    strategy: str = setting("24P", TEXT)  # bundled name or YAML path, checked by io.strategies
    fd_thresh: float = setting(0.5, _float(0))  # mm; 0 = no FD censoring
    dvars_thresh: float | None = setting(None, _float(0, optional=True))
    censor_neighbours: bool = setting(False, FLAG)
    dummy_scans: str = setting("auto", Check("str", pattern="auto|[0-9]+", text="'auto' or a number of volumes >= 0"))
    min_time: float = setting(120.0, _float(0))
    min_dof: float = setting(10.0, _float(0))  # effective DOF of the band-passed series; see docs/denoising.md
    band_pass: tuple[float, ...] = setting(
        (0.01, 0.08), _float(0, low_open=True, many=True, lengths=(0, 2))
    )  # () = no band-pass filter
    save_denoised: bool = setting(False, FLAG, result=False)


@dataclass(frozen=True)
class MetricSettings:
    """Local metrics: ALFF/fALFF, ReHo, VMHC, degree centrality; standardisation and smoothing."""

    reho_neighbourhood: int = setting(27, Check("int", choices=(7, 19, 27)))
    dc_threshold: float = setting(0.25, _float(0, high=1, high_open=True))  # r; used unless dc_threshold_p is set
    # one-sided p turned into each run's r with its effective DOF
    dc_threshold_p: float | None = setting(None, _float(0, low_open=True, high=1, high_open=True, optional=True))
    dc_resolution: float | None = setting(None, _float(0, low_open=True, optional=True))  # mm; None = data grid
    dc_max_nodes: int = setting(60_000, _int(100))  # DC on coarser blocks above this many voxels (core.centrality)
    smoothing_fwhm: float = setting(6.0, _float(0))  # mm; 0 = no smoothing


DEFAULT_SEEDS = (
    "insulaAntL", "insulaAntR", "insulaPostL", "insulaPostR", "dacc", "mpfc", "pcc", "s1TrunkL", "s1TrunkR",
    "thalamusL", "thalamusR", "naccL", "naccR", "vta", "pag",
)  # fmt: skip


@dataclass(frozen=True)
class ConnectivitySettings:
    """Seed-based FC, ROI connectomes, graph measures and dual regression (see docs/connectivity.md)."""

    seeds: tuple[str, ...] = setting(DEFAULT_SEEDS, TEXTS)  # names in data/seeds.tsv and/or paths of user seed TSVs
    atlases: tuple[str, ...] = setting(("seitzman300", "harvardoxford"), TEXTS)  # bundled names and/or dseg NIfTI paths
    min_region_coverage: float = setting(0.5, _float(0, high=1))  # fraction of a region inside the brain mask
    graph_sparsity: tuple[float, ...] = setting(
        (0.05, 0.40, 0.01), _float(0, high=1, low_open=True, many=True, lengths=(3,))
    )
    graph_random_networks: int = setting(10, _int(1))
    networks: str = setting("seitzman", TEXT)  # dual-regression reference: "seitzman" or a 4-D NIfTI path


@dataclass(frozen=True)
class GroupSettings:
    """Participants table columns that define the CLBP-versus-control design."""

    group_column: str = setting("group", TEXT)
    patient_label: str = setting("CLBP", TEXT)
    control_label: str = setting("HC", TEXT)
    min_per_group: int = setting(2, _int(1))
    covariates: tuple[str, ...] = setting(("age", "sex", "mean_fd"), TEXTS)
    n_permutations: int = setting(500, _int(1))
    # FWE p below 0.1 from a generalised Pareto fit to the null's tail where it fits (Winkler 2016) or empirical
    permutation_tail: str = setting("gpd", Check("str", choices=("none", "gpd")))
    # exchangeability blocks (FSL randomise -e): a participants.tsv column whose levels are permuted within; "none":
    # free. "site" applies only when the table has a site column with several levels (multi-site designs).
    permute_within: str = setting("site", TEXT)
    # maps whose group contrast forms the primary family (FWE across them, as PALM -corrmod); the rest exploratory
    primary_maps: tuple[str, ...] = setting(("alff", "reho", "fcz-insulaAntL", "fcz-insulaAntR", "fcz-mpfc"), TEXTS)
    cluster_forming_p: float = setting(0.001, _float(0, high=1, low_open=True, high_open=True))
    tfce: bool = setting(True, FLAG)  # TFCE (Smith & Nichols 2009) FWE maps besides max-t and cluster-extent FWE
    tfce_maps: str = setting("primary", Check("str", choices=("primary", "all")))  # primary: the primary family only
    # uncorrected p: each voxel's count stops at h exceedances (Besag & Clifford 1991; 0 = off), voxels below h
    # carried on (t only) up to uncorrected_permutations; the FWE nulls use n_permutations
    sequential_h: int = setting(100, _int(0))
    uncorrected_permutations: int = setting(10000, _int(1))
    metrics: tuple[str, ...] = setting(GROUP_METRICS, Check("str", many=True, choices=GROUP_METRICS))
    networks: tuple[str, ...] = setting(
        ("DefaultMode", "Salience", "FrontoParietal", "SomatomotorDorsal", "Visual"), TEXTS
    )
    clinical_columns: tuple[str, ...] = setting(("pain_vas", "pain_duration_months"), TEXTS)  # used when present
    clinical_maps: str = setting("primary", Check("str", choices=("primary", "all")))  # maps correlated with them
    nbs_threshold: float = setting(3.0, _float(0, low_open=True))  # |t| that forms Network-Based Statistic components
    cbf_global_covariate: bool = setting(False, FLAG)  # absolute CBF: mean grey-matter CBF as a covariate
    ica_components: int = setting(
        20, _int(1)
    )  # group ICA (CanICA) components; needs the participant level's --save-denoised


@dataclass(frozen=True)
class MLSettings:
    """Machine learning at the group level (see docs/machine-learning.md)."""

    feature_sets: tuple[str, ...] = setting(ML_FEATURE_SETS, Check("str", many=True, choices=ML_FEATURE_SETS))
    atlas: str = setting("harvardoxford", TEXT)  # regions of the ROI-mean features
    # classifiers run; the others (rbf_svm, logistic_l2, logistic_enet, random_forest) only when asked
    models: tuple[str, ...] = setting(("linear_svm",), Check("str", many=True, choices=ML_CLASSIFIERS))
    # the pre-declared headline: this model on this feature set (its score and permutation p are reported first)
    primary_model: str = setting("linear_svm", Check("str", choices=ML_CLASSIFIERS))
    primary_feature_set: str = setting("roi", Check("str", choices=ML_FEATURE_SETS))
    regression_models: tuple[str, ...] = setting(
        ("ridge",), Check("str", many=True, choices=ML_REGRESSORS)
    )  # 1st: the primary pain model
    clinical_target: str = setting("pain_vas", TEXT)  # predicted within patients
    n_splits: int = setting(5, _int(2))
    n_repeats: int = setting(2, _int(1))
    inner_splits: int = setting(3, _int(2))
    k_best: tuple[int, ...] = setting((10, 100), _int(0, many=True))  # features kept inside the folds (0/() = all)
    # each permutation reruns the whole nested pipeline; 100 resolve p down to 1/101 (benchmarks/bench_ml.py)
    n_permutations: int = setting(100, _int(0))
    # which k-fold results get a permutation p: the primary pipeline only, or every model x feature set shown
    # (then each p is corrected by the maximum score over them per permutation: it holds for "the best of")
    permutation_scope: str = setting("primary", Check("str", choices=("primary", "shown")))
    harmonise: str = setting("auto", Check("str", choices=("auto", "combat", "none")))  # auto: ComBat if several sites
    leave_site_out: bool = setting(True, FLAG)  # leave-one-site-out validation too, when there are several sites
    n_top_features: int = setting(20, _int(1))


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
        """Build settings from a (possibly partial) nested mapping of plain values.

        Unknown keys, values of the wrong type and values out of range raise one :class:`SettingsError` listing
        every problem, each naming its TOML key (``[section] key``).
        """
        unknown_sections = set(data) - {f.name for f in fields(cls)}
        if unknown_sections:
            raise SettingsError([f"unknown settings section(s): {', '.join(sorted(unknown_sections))}"])
        sections, problems = {}, []
        for f in fields(cls):
            section_cls = type(getattr(cls(), f.name))
            sections[f.name], section_problems = _typed_section(section_cls, data.get(f.name, {}))
            problems += section_problems
        settings = cls(**sections)
        problems += settings.validate()
        if problems:
            raise SettingsError(problems)
        return settings

    def validate(self, names: Mapping[str, str] | None = None) -> list[str]:
        """Every problem of every field (its :class:`Check`) and of :data:`RELATIONS`, one line each.

        ``names`` maps ``"section.field"`` to the name shown (the command-line flag); other fields are named by
        their TOML key, ``[section] field``.
        """
        names = names or {}
        problems, bad = [], set()
        for f in fields(self):
            section = getattr(self, f.name)
            for sf in fields(section):
                problem = sf.metadata["check"].problem(getattr(section, sf.name))
                if problem:
                    bad.add(f"{f.name}.{sf.name}")
                    problems.append(f"{names.get(f'{f.name}.{sf.name}', toml_key(f.name, sf.name))}: {problem}")
        for keys, holds, expected in RELATIONS:
            if bad.intersection(keys):
                continue  # relations assume each value in range
            values = [getattr(getattr(self, k.split(".")[0]), k.split(".")[1]) for k in keys]
            if not holds(*values):
                shown = ", ".join(
                    f"{names.get(k, toml_key(*k.split('.')))} {_shown(v)}" for k, v in zip(keys, values, strict=True)
                )
                problems.append(f"{shown}: need {expected}")
        return problems

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

    def result_settings(self, sections: tuple[str, ...] | None = None) -> dict[str, dict[str, Any]]:
        """``{section: {field: value}}`` of every field that can change an output value (plain values)."""
        return {
            f.name: {
                sf.name: _to_plain(getattr(getattr(self, f.name), sf.name))
                for sf in fields(getattr(self, f.name))
                if sf.metadata.get("result", True)
            }
            for f in fields(self)
            if sections is None or f.name in sections
        }

    def result_hash(self) -> str:
        """SHA-256 (first 16 hex digits) of every field that can change an output value."""
        return _hash(self.result_settings())

    def participant_settings(self) -> dict[str, dict[str, Any]]:
        """The result-affecting settings of the participant level (no group or ML setting)."""
        return self.result_settings(PARTICIPANT_SECTIONS)

    def participant_hash(self) -> str:
        """Hash of :meth:`participant_settings`: equal for participant outputs made the same way."""
        return _hash(self.participant_settings())


PARTICIPANT_SECTIONS = ("execution", "inputs", "denoise", "metrics", "connectivity")


def _hash(payload: Mapping[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class SettingsError(ValueError):
    """Settings that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def toml_key(section: str, name: str) -> str:
    return f"[{section}] {name}"


def field_check(dest: str) -> Check:
    """The :class:`Check` of ``"section.field"``."""
    section, name = dest.split(".", 1)
    section_obj = getattr(Settings(), section)
    return next(f.metadata["check"] for f in fields(section_obj) if f.name == name)


def section_from_mapping(section_cls: type, values: Mapping[str, Any]) -> Any:
    """Instantiate one settings section from plain values; unknown keys and wrong types raise SettingsError."""
    section, problems = _typed_section(section_cls, values)
    if problems:
        raise SettingsError(problems)
    return section


# TOML keys renamed since a release (old saved config files still read): (section, old key) -> new key
RENAMED_KEYS = {("ml", "harmonize"): "harmonise"}


def _typed_section(section_cls: type, values: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The section built from the values of the right type, and one problem per other value."""
    by_name = {f.name: f for f in fields(section_cls)}
    name = _section_name(section_cls)
    values = {RENAMED_KEYS.get((name, key), key): value for key, value in values.items()}
    unknown = set(values) - set(by_name)
    problems = [f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}"] if unknown else []
    typed = {}
    for key, value in values.items():
        if key in unknown:
            continue
        try:
            typed[key] = by_name[key].metadata["check"].from_plain(value)
        except ValueError as exc:
            problems.append(f"{toml_key(name, key)}: {exc}")
    return section_cls(**typed), problems


def _section_name(section_cls: type) -> str:
    """The TOML section of a settings class (``InputSettings`` is ``[inputs]``)."""
    return next(f.name for f in fields(Settings) if type(getattr(Settings(), f.name)) is section_cls)


# Checks that relate several fields: (fields, holds(*values), what is needed). Run once every field is in range.
RELATIONS: tuple[tuple[tuple[str, ...], Callable[..., bool], str], ...] = (
    (("denoise.band_pass",), lambda band: not band or band[0] < band[1], "LOW < HIGH (Hz), e.g. 0.01 0.08"),
    (
        ("connectivity.graph_sparsity",),
        lambda sparsity: sparsity[0] <= sparsity[1],
        "LOW <= HIGH, e.g. 0.05 0.40 0.01",
    ),
    (("inputs.cbf_gm_range",), lambda cbf: cbf[0] < cbf[1], "LOW < HIGH (mL/100 g/min), e.g. 10 150"),
)


def _to_plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value
