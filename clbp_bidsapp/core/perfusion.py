"""Cerebral blood flow: grey-matter normalisation, quality rules and the BOLD-CBF concordance statistics.

- mean tissue CBF: mean of the finite CBF values of the voxels whose tissue probability exceeds a threshold;
- relative CBF: CBF divided by the participant's mean grey-matter CBF (removes global differences such as
  haematocrit or caffeine; the usual normalisation of ASL group studies);
- the group effect in a set of voxels: the OLS coefficient of the tested column on each participant's mean CBF
  over those voxels, its standard error, t, two-sided p and t-based confidence interval;
- concordance: a CBF effect with p < alpha of the BOLD cluster's sign is "concordant", of the opposite sign
  "discordant"; otherwise "no CBF effect" (which is not evidence of no difference: see the confidence interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sstats

GM_THRESHOLD = 0.5  # grey-matter probability above which a voxel counts as grey matter (ASLPrep's default)
CONCORDANT, DISCORDANT, NO_EFFECT = "concordant", "discordant", "no CBF effect"


def mean_tissue_cbf(cbf: np.ndarray, tissue: np.ndarray, *, threshold: float = GM_THRESHOLD) -> float:
    """Mean of ``cbf`` over the voxels with ``tissue`` probability above ``threshold`` (NaN if there are none)."""
    cbf, tissue = np.asarray(cbf, dtype=np.float64), np.asarray(tissue, dtype=np.float64)
    use = (tissue > threshold) & np.isfinite(cbf)
    return float(cbf[use].mean()) if use.any() else float("nan")


def relative_cbf(cbf: np.ndarray, *, reference: float) -> np.ndarray:
    """``cbf / reference`` (unitless); NaN everywhere when the reference is not a positive number."""
    cbf = np.asarray(cbf, dtype=np.float64)
    if not (np.isfinite(reference) and reference > 0):
        return np.full(cbf.shape, np.nan)
    return cbf / reference


def quality_problem(
    *, mean_gm_cbf: float, qei: float | None, gm_range: tuple[float, float], min_qei: float
) -> str | None:
    """Why a CBF map is not fit for the group analysis (None when it is).

    Mean grey-matter CBF outside ``gm_range`` (mL/100 g/min), or a quality evaluation index below ``min_qei``.
    A missing QEI (no QC table, or no column for the variant) is not a reason.
    """
    low, high = gm_range
    if not np.isfinite(mean_gm_cbf):
        return "no grey-matter voxel with a CBF value"
    if not low <= mean_gm_cbf <= high:
        return f"mean grey-matter CBF {mean_gm_cbf:.1f} mL/100 g/min outside [{low:g}, {high:g}]"
    if qei is not None and np.isfinite(qei) and qei < min_qei:
        return f"QEI {qei:.3f} below --cbf-min-qei {min_qei:g}"
    return None


@dataclass(frozen=True)
class Effect:
    """The tested column's OLS effect on one value per participant."""

    estimate: float  # coefficient (for a 0/1 group column: patients minus controls, adjusted)
    se: float
    ci_low: float
    ci_high: float
    t: float
    p: float  # two-sided, Student t with n - rank(X) degrees of freedom
    dof: int
    standardised: float  # estimate / residual SD (Cohen's d for a two-group design)


def group_effect(values: np.ndarray, design: np.ndarray, *, tested: int, confidence: float = 0.95) -> Effect:
    """OLS of ``values`` (participants,) on ``design`` (participants, regressors); the ``tested`` column's effect."""
    y = np.asarray(values, dtype=np.float64)
    x = np.asarray(design, dtype=np.float64)
    if y.ndim != 1 or x.shape[0] != y.size:
        raise ValueError(f"values {y.shape} and design {x.shape} do not match")
    rank = np.linalg.matrix_rank(x)
    dof = y.size - rank
    if dof < 1:
        raise ValueError(f"{y.size} participants leave no residual degrees of freedom for {rank} regressors")
    pinv = np.linalg.pinv(x)
    beta = pinv @ y
    residual = y - x @ beta
    sigma2 = float(residual @ residual) / dof
    se = float(np.sqrt(sigma2 * (pinv @ pinv.T)[tested, tested]))
    estimate = float(beta[tested])
    t = estimate / se if se > 0 else (np.inf * np.sign(estimate) if estimate else 0.0)
    p = float(2 * sstats.t.sf(abs(t), dof))
    half = float(sstats.t.isf((1 - confidence) / 2, dof)) * se
    sd = float(np.sqrt(sigma2))
    return Effect(estimate, se, estimate - half, estimate + half, float(t), p, int(dof),
                  estimate / sd if sd > 0 else float("nan"))  # fmt: skip


def concordance(bold_sign: float, effect_sign: float, p: float, *, alpha: float = 0.05) -> str:
    """``concordant`` / ``discordant`` (p < ``alpha`` with the same / the opposite sign), else ``no CBF effect``."""
    if not (np.isfinite(p) and p < alpha) or effect_sign == 0:
        return NO_EFFECT
    return CONCORDANT if np.sign(bold_sign) == np.sign(effect_sign) else DISCORDANT


def region_means(data: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Each row's mean over the ``members`` columns (boolean or index array): (participants,)."""
    data = np.asarray(data, dtype=np.float64)
    selected = data[:, members]
    if selected.shape[1] == 0:
        raise ValueError("the region has no voxel")
    return selected.mean(axis=1)
