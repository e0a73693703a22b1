"""Literature concordance: each finding of the bundled CLBP literature table next to what this study found.

``clbp_bidsapp/data/clbp_literature.tsv`` lists resting-state findings in chronic (low) back pain, one row per
map, contrast, direction and region, with the citation (the abstract's words; nothing inferred). A finding is
matched against this study's cluster table of the same map and contrast: a significant cluster (cluster-extent
FWE or peak TFCE FWE p < 0.05) is a match when its peak Harvard-Oxford label, or a label holding at least
:data:`MIN_OVERLAP` of its voxels (the table's ``harvard_oxford_overlap``), is among the finding's labels; its sign
says whether the direction agrees. Overlap matters: a cluster that is mostly insula can peak in the putamen next to
it. Matching on labels is coarse (a large cluster can span several regions); the table is an aid for the
discussion, not a test. Its ``family`` column says whether the finding's map and contrast belong to the declared
primary family (``--primary-maps``, group contrast) or are exploratory: "found" uses each map's own cluster/TFCE
FWE p, which is not corrected across the maps the table spans.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from clbp_bidsapp.io import derivatives

ALPHA = 0.05
MIN_OVERLAP = 0.2  # share of a cluster's voxels in a region for the region to count as where the cluster is
COLUMNS = ["finding", "map", "contrast", "family", "reported_direction", "region", "status", "this_study_peak_t",
           "this_study_peak_mm", "this_study_label", "this_study_p", "population", "method", "citation",
           "doi"]  # fmt: skip


def _regions(cluster) -> set[str]:
    """The cluster's peak label and every label holding at least MIN_OVERLAP of its voxels."""
    regions = {cluster.harvard_oxford}
    for part in str(getattr(cluster, "harvard_oxford_overlap", "") or "").split(";"):
        name, _, share = part.strip().rpartition(" ")
        if name and share.endswith("%") and float(share[:-1]) >= 100 * MIN_OVERLAP:
            regions.add(name)
    return regions


def literature_table(path: Path | None = None) -> pd.DataFrame:
    """The bundled literature table, or a user TSV with the same columns."""
    if path is not None:
        return pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    with importlib.resources.files("clbp_bidsapp.data").joinpath("clbp_literature.tsv").open() as handle:
        return pd.read_csv(handle, sep="\t", keep_default_na=False, dtype=str)


def concordance(
    literature: pd.DataFrame,
    group_dir: Path,
    *,
    patient_label: str,
    control_label: str,
    primary_maps: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per literature finding: found (same / opposite direction), not found, or not tested here; its
    family is primary when its map is one of ``primary_maps`` and its contrast the group contrast."""
    rows = []
    for finding in literature.itertuples(index=False):
        group_contrast = finding.contrast == "CLBPvsHC"
        contrast = f"{patient_label}vs{control_label}" if group_contrast else finding.contrast
        table_path = group_dir / f"{finding.map}_contrast-{contrast}_desc-clusters_table.tsv"
        row = {
            "finding": finding.finding, "map": finding.map, "contrast": contrast,
            "family": "primary" if group_contrast and finding.map in primary_maps else "exploratory",
            "reported_direction": finding.direction, "region": finding.region, "status": "not tested here",
            "this_study_peak_t": None, "this_study_peak_mm": None, "this_study_label": None, "this_study_p": None,
            "population": finding.population, "method": finding.method, "citation": finding.citation,
            "doi": finding.doi,
        }  # fmt: skip
        if table_path.is_file():
            row["status"] = "not found"
            clusters = pd.read_csv(table_path, sep="\t")
            labels = set(finding.harvard_oxford_labels.split(";"))
            significant = clusters[(clusters["p_fwe_cluster"] < ALPHA) | (clusters["p_tfce_fwe_peak"] < ALPHA)]
            hits = significant[[bool(_regions(cluster) & labels) for cluster in significant.itertuples()]]
            if len(hits):
                same = hits[hits["sign"] == finding.direction]
                best = (same if len(same) else hits).iloc[0]
                row.update({
                    "status": "found, same direction" if len(same) else "found, opposite direction",
                    "this_study_peak_t": round(float(best["peak_t"]), 3),
                    "this_study_peak_mm": f"{best['peak_x']:.0f} {best['peak_y']:.0f} {best['peak_z']:.0f}",
                    "this_study_label": best["harvard_oxford"],
                    "this_study_p": float(min(best["p_fwe_cluster"], best["p_tfce_fwe_peak"])),
                })  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def write_concordance(
    group_dir: Path, *, patient_label: str, control_label: str, primary_maps: Sequence[str] = ()
) -> tuple[Path, pd.DataFrame]:
    table = concordance(literature_table(), group_dir, patient_label=patient_label, control_label=control_label,
                        primary_maps=primary_maps)  # fmt: skip
    return derivatives.write_tsv(group_dir / "desc-concordance_literature.tsv", table), table
