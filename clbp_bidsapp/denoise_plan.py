"""Denoising plan of one run: the strategy's confound columns, censoring, degrees of freedom and QC row.

Decided from the confounds table and its metadata alone (no voxel data, no nipype), so it is unit-tested on
tables (``tests/test_denoise_plan.py``), used by the ``Denoise`` interface, by the runner for skipped runs, and by
the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clbp_bidsapp.config import DenoiseSettings
from clbp_bidsapp.core import denoise as kernels
from clbp_bidsapp.io.strategies import load_strategy

# DPABI's neighbour expansion: 1 volume before and 2 after each flagged volume.
NEIGHBOURS_BEFORE, NEIGHBOURS_AFTER = 1, 2


@dataclass(frozen=True)
class DenoisePlan:
    """What the regression will use for one run, decided from the confounds table alone."""

    columns: list[str]
    confounds: np.ndarray | None  # (time, regressors), derivative n/a rows filled
    sample_mask: np.ndarray  # (time,) True = retained
    n_dummy: int
    qc: dict[str, Any]  # one QC row, ``used`` included
    strategy_name: str
    strategy_citations: tuple[str, ...]
    band: tuple[float, float] | None  # the band-pass applied (None: no band-pass)
    dof: kernels.RunDOF | None  # None when the run is too short for the operators
    not_used_because: str | None  # why ``used`` is false (None when the run is analysed)
    legacy_names: dict[str, str]  # fMRIPrep < 1.4 column names mapped to current ones ({} when current)


def plan_denoising(
    table: pd.DataFrame,
    metadata: dict[str, Any],
    *,
    settings: DenoiseSettings,
    tr: float,
    n_volumes: int,
    where: str,
) -> DenoisePlan:
    """Resolve the strategy's columns, the censoring and the degrees of freedom of one run.

    Raises ConfoundError naming ``where`` for what the user must change (missing columns, a band-pass above
    Nyquist). A run that is merely too short (``--min-time``) or keeps too few effective degrees of freedom
    (``--min-dof``) is planned with ``used = false`` and the reason in ``not_used_because``.
    """
    strategy = load_strategy(settings.strategy)
    if len(table) != n_volumes:
        raise kernels.ConfoundError(
            f"{where}: the confounds table has {len(table)} rows but the BOLD run has {n_volumes} volumes; "
            "use the confounds fMRIPrep wrote for this run"
        )
    band = (float(settings.band_pass[0]), float(settings.band_pass[1])) if settings.band_pass else None
    try:
        kernels.check_band(band or kernels.DEFAULT_BAND, tr=tr)  # ALFF's band too, without band-pass
    except kernels.ConfoundError as exc:
        raise kernels.ConfoundError(f"{where}: {exc}") from None
    table, metadata, legacy_names = kernels.modernise_confounds(table, metadata)
    compcor: list[str] = []
    if strategy.compcor is not None:
        try:
            compcor = kernels.select_compcor(
                metadata,
                method=strategy.compcor.method,
                masks=tuple(strategy.compcor.masks),
                n_components=strategy.compcor.n_components,
            )
        except kernels.ConfoundError as exc:
            raise kernels.ConfoundError(f"{where}: strategy {strategy.name}: {exc}") from None
    try:
        columns = kernels.resolve_confound_columns(
            list(table.columns), patterns=list(strategy.columns), compcor_columns=compcor
        )
    except kernels.ConfoundError as exc:
        raise kernels.ConfoundError(f"{where}: strategy {strategy.name}: {exc}") from None
    n_dummy = kernels.count_dummy_scans(
        table, dummy_scans="auto" if settings.dummy_scans == "auto" else int(settings.dummy_scans)
    )
    fd = table["framewise_displacement"].to_numpy(float) if "framewise_displacement" in table else None
    dvars = table["std_dvars"].to_numpy(float) if "std_dvars" in table else None
    if settings.dvars_thresh is not None and dvars is None:
        raise kernels.ConfoundError(f"{where}: --dvars-thresh needs the std_dvars column, which is missing")
    if settings.fd_thresh > 0 and fd is None:
        raise kernels.ConfoundError(
            f"{where}: FD censoring needs the framewise_displacement column; add it or use --fd-thresh 0"
        )
    expand = settings.censor_neighbours
    sample_mask = kernels.censoring_mask(
        n_volumes=n_volumes,
        n_dummy=n_dummy,
        fd=fd,
        fd_threshold=settings.fd_thresh,
        dvars=dvars,
        dvars_threshold=settings.dvars_thresh,
        expand_before=NEIGHBOURS_BEFORE if expand else 0,
        expand_after=NEIGHBOURS_AFTER if expand else 0,
    )
    confounds = None
    if columns:
        confounds = table[columns].to_numpy(dtype=np.float64)
        confounds = np.where(np.isfinite(confounds), confounds, 0.0)
    dof: kernels.RunDOF | None = None
    not_used_because = None
    try:  # the (volumes x volumes) operators the denoising will apply: cheap, no voxel data
        operators = kernels.denoising_operators(confounds=confounds, sample_mask=sample_mask, tr=tr, band=band)
        dof = kernels.run_dof(operators)
    except kernels.ConfoundError as exc:
        not_used_because = str(exc)
    qc = kernels.qc_summary(fd=fd, sample_mask=sample_mask, tr=tr, n_dummy=n_dummy, dof=dof)
    if qc["retained_seconds"] < settings.min_time:
        not_used_because = (
            f"only {qc['retained_seconds']:.0f} s retained after censoring, less than --min-time "
            f"{settings.min_time:g} s"
        )
    elif dof is not None and qc["dof_bandpass" if band else "dof_unfiltered"] < settings.min_dof:
        series = "band-passed" if band else "denoised"
        not_used_because = (
            f"its {series} series keeps {qc['dof_bandpass' if band else 'dof_unfiltered']:g} effective degrees "
            f"of freedom, fewer than --min-dof "
            f"{settings.min_dof:g} (lower --min-dof to analyse it anyway, or use longer runs or a smaller --strategy)"
        )
    qc["used"] = not_used_because is None
    qc["legacy_confound_names"] = bool(legacy_names)
    return DenoisePlan(
        columns=columns,
        confounds=confounds,
        sample_mask=sample_mask,
        n_dummy=n_dummy,
        qc=qc,
        strategy_name=strategy.name,
        strategy_citations=tuple(strategy.citations),
        band=band,
        dof=dof,
        not_used_because=not_used_because,
        legacy_names=legacy_names,
    )


def qc_table(qc: dict[str, Any]) -> pd.DataFrame:
    """The one-row QC table of a run (analysed or skipped alike)."""
    return pd.DataFrame([qc])


def provenance_metadata(plan: DenoisePlan, *, settings: DenoiseSettings) -> dict[str, Any]:
    """How the series behind a map was denoised (goes into every map's sidecar)."""
    dof = plan.dof
    out: dict[str, Any] = {
        "Strategy": plan.strategy_name,
        "StrategyCitations": list(plan.strategy_citations),
        "ConfoundColumns": plan.columns,
        "DummyScans": plan.n_dummy,
        "FDThreshold": settings.fd_thresh,
        "DVARSThreshold": settings.dvars_thresh,
        "CensorNeighbours": settings.censor_neighbours,
        "RetainedVolumes": int(plan.sample_mask.sum()),
        "CensoredVolumes": int(plan.qc["n_censored"]),
        "DegreesOfFreedomLost": int(plan.qc["dof_lost"]),
        "EffectiveDegreesOfFreedomBandPassed": None if dof is None or plan.band is None else round(dof.bandpass, 2),
        "EffectiveDegreesOfFreedomUnfiltered": None if dof is None else round(dof.unfiltered, 2),
        "EffectiveDegreesOfFreedomDefinition": "tr(C)^2 / tr(C^2), C = A A^T, A the linear map from the retained "
        "raw series to the denoised one (Worsley & Friston 1995)",
        "MinimumEffectiveDegreesOfFreedom": settings.min_dof,
        "BandPass": list(plan.band) if plan.band else None,
    }
    if plan.legacy_names:
        out["LegacyConfoundNames"] = (
            "fMRIPrep < 1.4 column names mapped to current ones (same units: mm and rad); derivatives and "
            "squares computed as fMRIPrep >= 1.4 does: "
            + ", ".join(f"{old} -> {new}" for old, new in plan.legacy_names.items())
        )
    return {"Denoising": out}
