"""Confound regression, censoring and Butterworth band-pass filtering of (time, voxels) series.

The result equals ``nilearn.signal.clean`` (tested): for the band-passed output,
``clean(x, detrend=True, standardize=False, confounds=c, standardize_confounds=True, filter="butterworth",
low_pass=high, high_pass=low, t_r=tr, sample_mask=kept)`` — censored volumes inside the run are replaced by a
cubic-spline interpolation of the retained ones (censored volumes at the start or end are dropped, as nilearn
does without extrapolation), data and confounds are detrended and filtered alike (Lindquist et al. 2019), the
censored volumes are removed, and the data are projected off the z-scored, filtered confounds. The unfiltered
output is ``clean(..., filter=False)``: censored volumes removed first, then detrending and the regression on
the same confound columns.

Speed: every step above is linear in the data and identical for every voxel, so each output is computed
as one small (retained x volumes) operator built from the confounds, applied with a single float32 matrix
product. nilearn filters voxel by voxel (86 s on 235k voxels x 239 volumes when it works in place); one
``sosfiltfilt`` over the whole array takes ~4 s; the operator takes one GEMM. The filter's operator is
obtained by filtering the identity matrix with ``scipy.signal.sosfiltfilt``: the exact same filter, padding
and initial conditions as nilearn's ``butterworth`` (order 5, odd padding).

Degrees of freedom: :func:`denoising_operators` builds both operators from the confounds and the censoring alone;
:func:`denoise` applies them and :func:`effective_dof` measures them (tr(C)^2 / tr(C^2), C = A A^T), so the DOF
recorded for a run are those of the very maps it produced. The band edge must lie below Nyquist
(:func:`check_band`); fMRIPrep < 1.4 column names are mapped by :func:`modernise_confounds`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import linalg, signal
from scipy.interpolate import CubicSpline

BUTTERWORTH_ORDER = 5  # nilearn.signal.butterworth's default
DEFAULT_BAND = (0.01, 0.08)  # Hz: the band-pass default, and ALFF's band when there is no band-pass
QR_TOLERANCE = np.finfo(np.float64).eps * 100.0  # nilearn's rank cut-off


class ConfoundError(ValueError):
    """The confounds cannot be used as asked; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class DenoiseResult:
    unfiltered: np.ndarray  # (retained, voxels) float32
    filtered: np.ndarray | None  # (retained, voxels) float32, None without band-pass
    sample_mask: np.ndarray  # (volumes,) bool, True = retained
    n_regressors: int  # rank of the confound matrix actually regressed out
    dof_lost: int  # regressors + mean + linear trend
    dof: RunDOF  # effective degrees of freedom of both outputs


# -- choosing columns --------------------------------------------------------------------------------------


_SET_RE = re.compile(r"\[([^\]!^]+)\]")


def _expand_sets(pattern: str) -> list[str] | None:
    """Every name a pattern of literals and ``[...]`` sets stands for; None if it has a wildcard or negation."""
    if any(ch in pattern for ch in "*?") or "[!" in pattern or "[^" in pattern:
        return None
    names = [""]
    position = 0
    for match in _SET_RE.finditer(pattern):
        literal = pattern[position : match.start()]
        members = re.sub(r"(.)-(.)", lambda m: "".join(map(chr, range(ord(m[1]), ord(m[2]) + 1))), match[1])
        names = [n + literal + c for n in names for c in members]
        position = match.end()
    if "[" in pattern[position:] or "]" in pattern[position:]:
        return None  # not a simple set: keep fnmatch's own reading
    return [n + pattern[position:] for n in names]


def resolve_confound_columns(
    available: Sequence[str], *, patterns: Sequence[str], compcor_columns: Sequence[str] = ()
) -> list[str]:
    """Expand shell-style patterns (``trans_*``, ``a_comp_cor_0[0-4]``) against the table's columns.

    Returns the matched columns in pattern order (table order within a pattern), then ``compcor_columns``,
    without duplicates. A pattern with a wildcard (``*``, ``?``) must match at least one column; a pattern made
    of names and character sets only (``trans_[xyz]``, ``a_comp_cor_0[0-4]``) names every column it expands to,
    and each must be present (24P means 24 regressors). Every pattern that matches nothing and every named
    column that is absent is reported in one :class:`ConfoundError`.
    """
    chosen: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        matched = [c for c in available if fnmatch.fnmatchcase(c, pattern)]
        named = _expand_sets(pattern)
        if named is not None:
            missing.extend(name for name in named if name not in matched)
        elif not matched:
            missing.append(pattern)
        chosen.extend(c for c in matched if c not in chosen)
    absent = [c for c in compcor_columns if c not in available]
    missing.extend(absent)
    if missing:
        hint = (
            " (fMRIPrep < 1.4 named columns differently, e.g. X instead of trans_x; "
            "rerun a recent fMRIPrep or choose another --strategy)"
            if any(m.startswith(("trans_", "rot_")) for m in missing)
            else " (choose a --strategy that the confounds provide)"
        )
        raise ConfoundError(f"missing confound column(s): {', '.join(missing)}{hint}")
    chosen.extend(c for c in compcor_columns if c not in chosen)
    return chosen


def _component_number(name: str) -> float:
    """The trailing number of a component name (``a_comp_cor_104`` -> 104), read as a number."""
    match = re.search(r"(\d+)$", name)
    return int(match[1]) if match else float("inf")


def _by_explained_variance(names: list[str], metadata: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Components from most to least explained variance (the JSON's VarianceExplained, else its cumulative
    variance, else the component number read as a number: ``_100`` comes after ``_70``)."""

    def numeric(name: str, key: str) -> float | None:
        value = metadata[name].get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    if names and all(numeric(n, "VarianceExplained") is not None for n in names):
        return sorted(names, key=lambda n: (-numeric(n, "VarianceExplained"), _component_number(n)))
    if names and all(numeric(n, "CumulativeVarianceExplained") is not None for n in names):
        return sorted(names, key=lambda n: (numeric(n, "CumulativeVarianceExplained"), _component_number(n)))
    return sorted(names, key=lambda n: (_component_number(n), n))


def select_compcor(
    metadata: Mapping[str, Mapping[str, Any]],
    *,
    method: str = "aCompCor",
    masks: Sequence[str] = ("combined",),
    n_components: int = 5,
) -> list[str]:
    """The ``n_components`` CompCor columns of each mask that explain the most variance, from the confounds JSON.

    fMRIPrep's JSON gives every ``*_comp_cor_XX`` column its ``Method``, (for aCompCor) ``Mask``, ``Retained``
    and explained variance. fMRIPrep >= 20.2 numbers the aCompCor components of all masks in one sequence
    (combined ``_00``-``_69``, CSF ``_70``..., WM ``_1xx``...), so the choice is made per mask and by explained
    variance, never by sorting names as text.
    """
    out: list[str] = []
    for mask in masks:
        found = [
            name
            for name, meta in metadata.items()
            if isinstance(meta, Mapping)
            and meta.get("Method") == method
            and (method != "aCompCor" or meta.get("Mask") == mask)
            and meta.get("Retained", True) is not False
        ]
        if len(found) < n_components:
            raise ConfoundError(
                f"the confounds JSON describes {len(found)} {method} component(s) with Mask={mask}, "
                f"{n_components} needed (is the JSON sidecar next to the confounds table?)"
            )
        out.extend(_by_explained_variance(found, metadata)[:n_components])
    return out


# -- fMRIPrep < 1.4 column names ---------------------------------------------------------------------------

# fMRIPrep 1.0-1.3 (init_bold_confs_wf): "Estimated head-motion parameters, in mm and rad (X, Y, Z, RotX, RotY,
# RotZ)" -- the same units as today's trans_*/rot_*, so the mapping is a renaming.
LEGACY_CONFOUND_NAMES = {
    "X": "trans_x", "Y": "trans_y", "Z": "trans_z", "RotX": "rot_x", "RotY": "rot_y", "RotZ": "rot_z",
    "FramewiseDisplacement": "framewise_displacement", "stdDVARS": "std_dvars", "non-stdDVARS": "dvars",
    "WhiteMatter": "white_matter", "CSF": "csf", "GlobalSignal": "global_signal",
}  # fmt: skip
LEGACY_NUMBERED_NAMES = (
    (re.compile(r"aCompCor(\d+)"), "a_comp_cor_{:02d}"),
    (re.compile(r"tCompCor(\d+)"), "t_comp_cor_{:02d}"),
    (re.compile(r"NonSteadyStateOutlier(\d+)"), "non_steady_state_outlier{:02d}"),
    (re.compile(r"NonSteadyState(\d+)"), "non_steady_state_outlier{:02d}"),
    (re.compile(r"Cosine(\d+)"), "cosine{:02d}"),
    (re.compile(r"AROMAAggrComp(\d+)"), "aroma_motion_{:02d}"),
)
EXPANDED_BASES = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z", "white_matter", "csf", "global_signal")


def legacy_confound_renames(columns: Sequence[str]) -> dict[str, str]:
    """``{old: current}`` for the fMRIPrep < 1.4 names of a table (empty when it has current names only)."""
    renames: dict[str, str] = {}
    for name in columns:
        new = LEGACY_CONFOUND_NAMES.get(name)
        for pattern, template in LEGACY_NUMBERED_NAMES:
            match = pattern.fullmatch(name)
            if new is None and match:
                new = template.format(int(match[1]))
        if new is not None and new not in columns:
            renames[name] = new
    return renames


def modernise_confounds(
    table: pd.DataFrame, metadata: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str]]:
    """A table with fMRIPrep < 1.4 names in today's names, with what fMRIPrep >= 1.4 adds.

    Returns the new table, the new metadata and the renaming (empty, and the inputs unchanged, for a current
    table). Old fMRIPrep wrote no ``_derivative1``/``_power2`` columns: they are computed as fMRIPrep does
    (backward difference with ``n/a`` first, squares). Its aCompCor used one combined WM+CSF mask and it wrote no
    JSON: the components get ``Method``/``Mask`` metadata so that CompCor strategies select them.
    """
    renames = legacy_confound_renames(list(table.columns))
    if not renames:
        return table, dict(metadata), {}
    table = table.rename(columns=renames)
    extra: dict[str, pd.Series] = {}
    for base in EXPANDED_BASES:
        if base not in table:
            continue
        values = table[base].astype(float)
        derivative = values.diff()
        for name, column in (
            (f"{base}_derivative1", derivative),
            (f"{base}_power2", values**2),
            (f"{base}_derivative1_power2", derivative**2),
        ):
            if name not in table:
                extra[name] = column
    table = pd.concat([table, pd.DataFrame(extra, index=table.index)], axis=1) if extra else table
    metadata = dict(metadata)
    for new in renames.values():
        if new.startswith("a_comp_cor_"):
            metadata.setdefault(new, {"Method": "aCompCor", "Mask": "combined"})
        elif new.startswith("t_comp_cor_"):
            metadata.setdefault(new, {"Method": "tCompCor"})
    return table, metadata, renames


# -- which volumes ----------------------------------------------------------------------------------------


def count_dummy_scans(confounds: pd.DataFrame, *, dummy_scans: int | Literal["auto"]) -> int:
    """Initial non-steady-state volumes: fMRIPrep's ``non_steady_state_outlierXX`` flags, or a number."""
    if dummy_scans != "auto":
        n = int(dummy_scans)
        if n < 0 or n >= len(confounds):
            raise ConfoundError(f"--dummy-scans {n} leaves no volume of {len(confounds)}")
        return n
    columns = [c for c in confounds.columns if c.startswith("non_steady_state_outlier")]
    if not columns:
        return 0
    flagged = confounds[columns].fillna(0).to_numpy().any(axis=1)
    return int(np.argmin(flagged)) if not flagged.all() else len(flagged)


def censoring_mask(
    *,
    n_volumes: int,
    n_dummy: int = 0,
    fd: np.ndarray | None = None,
    fd_threshold: float = 0.5,
    dvars: np.ndarray | None = None,
    dvars_threshold: float | None = None,
    expand_before: int = 0,
    expand_after: int = 0,
) -> np.ndarray:
    """Volumes to keep (True): not dummy, FD <= threshold, std DVARS <= threshold.

    ``fd_threshold = 0`` disables FD censoring (Power et al. 2012 use 0.5 mm for this definition of FD).
    NaN (the first row of FD and DVARS) never censors. ``expand_before``/``expand_after`` also censor that
    many neighbours of each flagged volume (DPABI uses 1 and 2).
    """
    flagged = np.zeros(n_volumes, dtype=bool)
    if fd is not None and fd_threshold > 0:
        flagged |= np.nan_to_num(np.asarray(fd, dtype=float), nan=0.0) > fd_threshold
    if dvars is not None and dvars_threshold is not None and dvars_threshold > 0:
        flagged |= np.nan_to_num(np.asarray(dvars, dtype=float), nan=0.0) > dvars_threshold
    if expand_before or expand_after:
        grown = flagged.copy()
        for index in np.flatnonzero(flagged):
            grown[max(index - expand_before, 0) : index + expand_after + 1] = True
        flagged = grown
    keep = ~flagged
    keep[:n_dummy] = False
    return keep


# -- the linear operators ---------------------------------------------------------------------------------


def _detrend_operator(n: int) -> np.ndarray:
    """Remove the mean and the linear trend (nilearn's ``_detrend``), as an (n, n) matrix."""
    ramp = np.arange(n, dtype=np.float64)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    op = np.eye(n) - 1.0 / n
    if norm > np.finfo(np.float64).eps:
        ramp /= norm
        op -= np.outer(ramp, ramp)
    return op


def _interpolation_operator(sample_mask: np.ndarray, tr: float) -> tuple[np.ndarray, slice]:
    """Cubic-spline fill of censored volumes between the first and last retained ones.

    Returns the (span, volumes) matrix and the span of volumes it produces (censored volumes before the first
    or after the last retained one are dropped: nilearn does not extrapolate by default).
    """
    kept = np.flatnonzero(sample_mask)
    span = slice(int(kept[0]), int(kept[-1]) + 1)
    times = np.arange(sample_mask.size, dtype=np.float64) * tr
    spline = CubicSpline(times[kept], np.eye(kept.size))
    values = spline(times[span])  # (span, kept)
    op = np.zeros((span.stop - span.start, sample_mask.size))
    op[:, kept] = values
    retained_rows = kept - span.start
    op[retained_rows] = 0.0
    op[retained_rows, kept] = 1.0  # retained volumes are kept exactly, as nilearn does
    return op, span


def check_band(band: tuple[float, float], *, tr: float) -> None:
    """Refuse a band-pass the sampling rate cannot honour (its upper edge at or above Nyquist, 0.5 / TR).

    A Butterworth low-pass at or above Nyquist does not exist: filtering would high-pass only while the run's
    records claimed the band, and ALFF/fALFF would sum the whole spectrum (fALFF ~ 1 everywhere).
    """
    nyquist = 0.5 / tr
    low, high = band
    if not 0 < low < high:
        raise ConfoundError(f"the band-pass {low:g}-{high:g} Hz needs 0 < LOW < HIGH (--band-pass LOW HIGH)")
    if high >= nyquist:
        raise ConfoundError(
            f"TR {tr:g} s samples frequencies up to {nyquist:.3g} Hz (Nyquist), not up to the band's upper edge "
            f"{high:g} Hz; give --band-pass {low:g} HIGH with HIGH below {nyquist:.3g} Hz"
        )


def _butterworth_operator(n: int, *, tr: float, band: tuple[float, float]) -> np.ndarray:
    """Zero-phase Butterworth band-pass as an (n, n) matrix (nilearn's ``butterworth``: order 5, odd pad)."""
    check_band(band, tr=tr)
    sos = signal.butter(BUTTERWORTH_ORDER, list(band), btype="bandpass", output="sos", fs=1.0 / tr)
    try:
        return signal.sosfiltfilt(sos, np.eye(n), axis=0, padtype="odd")
    except ValueError:
        raise ConfoundError(
            f"{n} volumes are too few to band-pass filter with a Butterworth filter of order "
            f"{BUTTERWORTH_ORDER}; use --no-band-pass or keep more volumes"
        ) from None


def _projection_off(confounds: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """Z-score the confounds (ddof 1), keep their numerical rank by pivoted QR, return the basis Q."""
    if confounds is None or confounds.shape[1] == 0:
        return None, 0
    c = confounds - confounds.mean(axis=0)
    sd = c.std(axis=0, ddof=1)
    sd[sd < np.finfo(np.float64).eps] = 1.0
    c /= sd
    q, r, _ = linalg.qr(c, mode="economic", pivoting=True)
    q = q[:, np.abs(np.diag(r)) > QR_TOLERANCE]
    return q, q.shape[1]


def _project_off(operator: np.ndarray, q: np.ndarray | None) -> np.ndarray:
    """(I - Q Q^T) @ operator: the regression folded into the operator."""
    return operator if q is None else operator - q @ (q.T @ operator)


@dataclass(frozen=True)
class DenoisingOperators:
    """The linear maps from a run's volumes to its two denoised series (the same for every voxel).

    Each is (retained, volumes) float64 with the confound regression folded in; the columns of censored and
    dummy volumes are zero, so each is also the map from the retained raw series to the denoised one.
    """

    unfiltered: np.ndarray
    filtered: np.ndarray | None  # None without band-pass
    n_regressors: int  # numerical rank of the confounds regressed out (of the band-passed ones with a band)


def denoising_operators(
    *,
    confounds: np.ndarray | None,
    sample_mask: np.ndarray,
    tr: float,
    band: tuple[float, float] | None = (0.01, 0.08),
) -> DenoisingOperators:
    """Build the operators :func:`denoise` applies (see the module docstring for the computation)."""
    sample_mask = np.asarray(sample_mask, dtype=bool)
    n_volumes = sample_mask.size
    if confounds is not None and confounds.shape[0] != n_volumes:
        raise ConfoundError(f"the confounds have {confounds.shape[0]} rows but the run has {n_volumes} volumes")
    n_kept = int(sample_mask.sum())
    n_conf = 0 if confounds is None else confounds.shape[1]
    if n_kept <= n_conf + 2:
        raise ConfoundError(
            f"{n_kept} retained volumes cannot support {n_conf} regressors plus mean and trend; "
            "relax censoring or choose a smaller --strategy"
        )
    conf64 = None if confounds is None else np.asarray(confounds, dtype=np.float64)

    # unfiltered: censor, detrend, regress (nilearn.signal.clean with filter=False)
    select = np.eye(n_volumes)[sample_mask]
    unfiltered_op = _detrend_operator(n_kept) @ select
    q_unfiltered, rank = _projection_off(None if conf64 is None else unfiltered_op @ conf64)
    unfiltered_op = _project_off(unfiltered_op, q_unfiltered)

    filtered_op = None
    if band is not None:
        interp, span = _interpolation_operator(sample_mask, tr)
        n_span = span.stop - span.start
        filtered_op = _butterworth_operator(n_span, tr=tr, band=band) @ _detrend_operator(n_span) @ interp
        filtered_op = filtered_op[sample_mask[span]]
        q_filtered, rank = _projection_off(None if conf64 is None else filtered_op @ conf64)
        filtered_op = _project_off(filtered_op, q_filtered)
    return DenoisingOperators(unfiltered=unfiltered_op, filtered=filtered_op, n_regressors=rank)


def effective_dof(operator: np.ndarray) -> float:
    """Effective degrees of freedom of a linear denoising operator: tr(C)^2 / tr(C^2) with C = op op^T.

    For white noise in, C is the covariance of what comes out; the ratio is the number of independent
    samples with the same variance and variance-of-variance (Satterthwaite's approximation, as used for
    filtered fMRI series by Worsley & Friston 1995). For an OLS residual-forming matrix it is T - p.
    """
    c = operator @ operator.T
    trace = float(np.trace(c))
    trace_sq = float(np.sum(c * c))  # tr(C^2) = ||C||_F^2 as C is symmetric
    return trace**2 / trace_sq if trace_sq > 0 else 0.0


@dataclass(frozen=True)
class RunDOF:
    """Degrees of freedom of one run's denoising (all from its operators, none from the voxels)."""

    bandpass: float  # effective DOF of the band-passed series (nan without band-pass)
    unfiltered: float  # effective DOF of the unfiltered series
    lost: int  # nominal: regressors (numerical rank) + mean + linear trend


def run_dof(operators: DenoisingOperators) -> RunDOF:
    return RunDOF(
        bandpass=float("nan") if operators.filtered is None else effective_dof(operators.filtered),
        unfiltered=effective_dof(operators.unfiltered),
        lost=operators.n_regressors + 2,
    )


def denoise(
    bold: np.ndarray,
    *,
    confounds: np.ndarray | None,
    sample_mask: np.ndarray,
    tr: float,
    band: tuple[float, float] | None = (0.01, 0.08),
) -> DenoiseResult:
    """Regress confounds out of a run, with censoring, and optionally band-pass it.

    Parameters
    ----------
    bold : (volumes, voxels) array, every volume of the run (dummy and censored ones included)
    confounds : (volumes, regressors) array without NaN, or None
    sample_mask : (volumes,) bool, True for retained volumes
    tr : repetition time in seconds
    band : (low, high) Hz of the Butterworth band-pass, or None for no filtering

    Returns
    -------
    DenoiseResult with both outputs restricted to the retained volumes. Inputs are not modified.
    """
    sample_mask = np.asarray(sample_mask, dtype=bool)
    n_volumes = bold.shape[0]
    if sample_mask.shape != (n_volumes,):
        raise ValueError(f"sample_mask has {sample_mask.size} entries for {n_volumes} volumes")
    operators = denoising_operators(confounds=confounds, sample_mask=sample_mask, tr=tr, band=band)
    series = np.asarray(bold, dtype=np.float32)
    unfiltered = operators.unfiltered.astype(np.float32) @ series
    filtered = None if operators.filtered is None else operators.filtered.astype(np.float32) @ series
    dof = run_dof(operators)
    return DenoiseResult(
        unfiltered=unfiltered,
        filtered=filtered,
        sample_mask=sample_mask.copy(),
        n_regressors=operators.n_regressors,
        dof_lost=dof.lost,
        dof=dof,
    )


def qc_summary(
    *,
    fd: np.ndarray | None,
    sample_mask: np.ndarray,
    tr: float,
    n_dummy: int,
    dof: RunDOF | None,
) -> dict[str, Any]:
    """Per-run QC numbers, the same for analysed and skipped runs (``used`` is added by the caller).

    ``n_censored`` counts the volumes censored for motion (FD/DVARS and their neighbours), not the dummy
    scans; ``fraction_censored`` is it over the volumes after the dummy scans. ``dof`` is None when no
    operator could be built (too few volumes): every DOF is then 0.
    """
    sample_mask = np.asarray(sample_mask, dtype=bool)
    fd_values = None if fd is None else np.asarray(fd, dtype=float)[n_dummy:]
    after_dummy = sample_mask[n_dummy:]
    n_censored = int((~after_dummy).sum())
    return {
        "n_volumes": int(sample_mask.size),
        "n_dummy": int(n_dummy),
        "n_censored": n_censored,
        "fraction_censored": n_censored / after_dummy.size if after_dummy.size else 1.0,
        "n_retained": int(sample_mask.sum()),
        "retained_seconds": float(sample_mask.sum() * tr),
        "mean_fd": float(np.nanmean(fd_values)) if fd_values is not None and fd_values.size else float("nan"),
        "max_fd": float(np.nanmax(fd_values)) if fd_values is not None and fd_values.size else float("nan"),
        "dof_lost": 0 if dof is None else int(dof.lost),
        "dof_unfiltered": 0.0 if dof is None else round(dof.unfiltered, 2),  # as written in the QC table
        "dof_bandpass": 0.0 if dof is None else round(dof.bandpass, 2),
    }
