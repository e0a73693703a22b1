"""The methods text names the CBF analysis (variant, normalisation, quality rule, covariate option) when it ran."""

from __future__ import annotations

from pathlib import Path

from clbp_bidsapp.config import Settings
from clbp_bidsapp.reports.methods import group_methods, participant_methods, write_citation_files


def _settings(**sections) -> Settings:
    return Settings().replace(sections)


def test_participant_text_names_the_cbf_variant_normalisation_and_quality_rule():
    asl = {"aslprep_dir": Path("/data/aslprep"), "cbf_variant": "basilGM", "cbf_min_qei": 0.7,
           "cbf_gm_range": (20.0, 120.0)}  # fmt: skip
    text = participant_methods(_settings(inputs=asl))
    assert "ASLPrep [@adebimpe2022]" in text and "partial-volume-corrected BASIL grey-matter CBF" in text
    assert "divided by the participant's mean grey-matter CBF" in text
    assert "outside 20-120 mL/100 g/min" in text and "below 0.7" in text
    assert "ASLPrep" not in participant_methods(Settings())  # no --aslprep-dir: no CBF sentence
    assert "ASLPrep" not in participant_methods(_settings(inputs=asl, execution={"skip": ("cbf",)}))


def test_group_text_names_cbf_and_the_global_covariate_option_only_when_cbf_was_analysed():
    assert "CBF" not in group_methods(Settings())
    text = group_methods(Settings(), cbf=True)
    assert "relative CBF" in text and "mean grey-matter CBF as an additional covariate" not in text
    covaried = group_methods(_settings(group={"cbf_global_covariate": True}), cbf=True)
    assert "mean grey-matter CBF as an additional covariate" in covaried


def test_citation_files_list_aslprep_when_cbf_was_read(tmp_path):
    settings = _settings(inputs={"aslprep_dir": tmp_path / "aslprep"})
    md, bib = write_citation_files(tmp_path, settings, level="participant")
    assert "Adebimpe" in md.read_text() and "@article{adebimpe2022," in bib.read_text()
