"""Literature concordance: bundled table is well formed; findings are matched on map, contrast, label and sign."""

from __future__ import annotations

import pandas as pd

from clbp_bidsapp.group.concordance import concordance, literature_table
from clbp_bidsapp.io.atlases import _load


def test_bundled_literature_is_cited_and_uses_real_atlas_labels():
    table = literature_table()
    assert table["finding"].is_unique
    assert set(table["direction"]) <= {"+", "-"}
    assert (table["citation"].str.len() > 20).all()
    _, _, names = _load("harvard_oxford")
    labels = {label for cell in table["harvard_oxford_labels"] for label in cell.split(";")}
    assert labels <= set(names.values())


def _clusters(rows):
    columns = ["cluster", "sign", "voxels", "peak_t", "peak_x", "peak_y", "peak_z", "p_fwe_cluster",
               "p_tfce_fwe_peak", "harvard_oxford", "harvard_oxford_overlap"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def test_findings_are_matched_by_map_contrast_label_and_sign(tmp_path):
    literature = pd.DataFrame({
        "finding": ["up_insula", "down_insula", "up_thalamus", "untested", "up_operculum", "up_caudate"],
        "map": ["alff", "alff", "alff", "reho", "alff", "alff"],
        "contrast": ["CLBPvsHC"] * 6,
        "direction": ["+", "-", "+", "+", "+", "+"],
        "region": ["insula", "insula", "thalamus", "x", "operculum", "caudate"],
        "harvard_oxford_labels": ["Right_Insular_Cortex", "Right_Insular_Cortex", "Left_Thalamus", "Left_Thalamus",
                                  "Right_Frontal_Operculum_Cortex", "Right_Caudate"],
        "population": [""] * 6, "method": [""] * 6, "citation": ["c"] * 6, "doi": [""] * 6,
    })  # fmt: skip
    _clusters([
        [1, "+", 40, 5.1, 38, 16, 2, 0.01, 0.02, "Right_Putamen",  # peak in the putamen, cluster mostly insula
         "Right_Insular_Cortex 46%; Right_Frontal_Operculum_Cortex 22%; Right_Caudate 5%"],
        [2, "+", 9, 3.9, -10, -18, 6, 0.30, 0.20, "Left_Thalamus", "Left_Thalamus 100%"],  # not significant
    ]).to_csv(tmp_path / "alff_contrast-CLBPvsHC_desc-clusters_table.tsv", sep="\t", index=False)  # fmt: skip
    result = concordance(literature, tmp_path, patient_label="CLBP", control_label="HC").set_index("finding")
    assert result.loc["up_insula", "status"] == "found, same direction"
    assert result.loc["up_insula", "this_study_peak_mm"] == "38 16 2"
    assert result.loc["down_insula", "status"] == "found, opposite direction"
    assert result.loc["up_thalamus", "status"] == "not found"
    assert result.loc["untested", "status"] == "not tested here"
    assert result.loc["up_operculum", "status"] == "found, same direction"  # 22 % of the cluster
    assert result.loc["up_caudate", "status"] == "not found"  # 5 % of the cluster: below MIN_OVERLAP


def test_findings_say_whether_they_belong_to_the_primary_family(tmp_path):
    """Issue 14 section 5: "found" rows span many maps, each with its own FWE; the table says which are primary."""
    literature = literature_table()
    result = concordance(literature, tmp_path, patient_label="CLBP", control_label="HC",
                         primary_maps=("alff", "reho", "fcz-mpfc")).set_index("finding")  # fmt: skip
    assert result.loc["zhou2018_alff_ains", "family"] == "primary"
    assert result.loc["loggia2013_dmn_rins", "family"] == "exploratory"  # dual regression: not a primary map
    assert result.loc["loggia2013_dmn_rins_pain", "family"] == "exploratory"  # a clinical correlation
    assert set(result["family"]) == {"primary", "exploratory"}
    assert (
        concordance(literature, tmp_path, patient_label="CLBP", control_label="HC")["family"] == "exploratory"
    ).all()
