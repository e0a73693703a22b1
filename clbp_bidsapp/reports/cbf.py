"""The group report's "BOLD and CBF" section: the concordance tables of :mod:`clbp_bidsapp.group.perfusion`."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from clbp_bidsapp.reports import html as page_html

EPP_2025 = (
    "Epp et al. (2025), 'BOLD signal changes can oppose oxygen metabolism across the human cortex', Nature "
    "Neuroscience, doi:10.1038/s41593-025-02132-9"
)
CAVEAT = (
    f"In task fMRI with quantitative BOLD, CBF and CMRO2 in the same participants, {EPP_2025} report that about 40 % "
    "of voxels with a significant BOLD change had an oxygen-metabolism change of the opposite sign. A "
    "BOLD-derived group difference is therefore not, by itself, evidence of a difference in neural activity; CBF "
    "measured with ASL is a more direct read-out of local activity. This table shows, for each significant "
    "BOLD-derived cluster, the CBF group difference in the same voxels. It compares group differences at rest, not "
    "task responses, and CBF is not CMRO2: agreement or disagreement in sign is a prompt for interpretation, not a "
    "measurement of metabolism. 'no CBF effect' means p >= 0.05 over the cluster: read the confidence interval "
    "before calling it an absence."
)


def cbf_section(group_dir: Path) -> str:
    """HTML body of the section ('' when the group level had no CBF maps)."""
    forward = _read(group_dir / "desc-boldcbf_concordance.tsv")
    if forward is None:
        return ""
    reverse = _read(group_dir / "desc-cbfbold_concordance.tsv")
    modalities = _read(group_dir / "desc-modalities_participants.tsv")
    parts = [f"<p>{html.escape(CAVEAT)}</p>"]
    if modalities is not None:
        n_cbf = int(modalities["cbf"].astype(str).str.lower().eq("true").sum())
        parts.append(f"<p>{len(modalities)} participants with BOLD; {n_cbf} with a usable CBF map "
                     "(desc-modalities_participants.tsv says who and why not).</p>")  # fmt: skip
    parts.append("<h3>BOLD-derived clusters (cluster FWE p &lt; 0.05) and relative CBF in the same voxels</h3>")
    classes = ["warn" if status in ("discordant", "no CBF effect") else "" for status in forward.get("status", [])]
    parts.append(_table(forward, classes))
    if reverse is not None:
        parts.append("<h3>CBF clusters (cluster FWE p &lt; 0.05) and the BOLD maps in the same voxels</h3>")
        parts.append(_table(reverse, None))
    return "".join(parts)


def _read(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None


def _table(frame: pd.DataFrame, classes) -> str:
    rows = [{k: ("n/a" if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]  # fmt: skip
    if not rows:
        return "<p class='muted'>none</p>"
    return f"<div class='scroll'>{page_html.table(rows, row_classes=classes)}</div>"
