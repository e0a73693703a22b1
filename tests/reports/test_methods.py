"""Methods boilerplate: generated from the settings used, every citation bundled, valid BibTeX."""

from __future__ import annotations

import re

import pytest

from clbp_bidsapp.config import Settings
from clbp_bidsapp.io.citations import Reference, load_references
from clbp_bidsapp.reports.methods import group_methods, participant_methods, write_citation_files


def _settings(**sections) -> Settings:
    return Settings().replace(sections)


def test_every_reference_is_complete_and_renders():
    references = load_references()
    assert len(references) >= 40
    for key, ref in references.items():
        assert ref.key == key
        assert 1900 < ref.year < 2030 and ref.title and ref.journal and ref.volume and ref.pages, key
        assert ref.text.startswith(ref.authors) and f"({ref.year})" in ref.text
        assert ref.bibtex.count("{") == ref.bibtex.count("}"), key
        assert ref.bibtex.startswith(f"@article{{{key},")


def test_short_citations_and_bibtex_authors():
    two = Reference("a", "Ledoit O, Wolf M", 2004, "T", "J", "1", "1-2")
    many = Reference("b", "Van Essen DC, Smith SM, Jones A", 2001, "T", "J", "1", "3-4")
    etal = Reference("c", "Power JD, Cohen AL, et al.", 2011, "T", "J", "72", "665-678")
    assert (two.short, many.short, etal.short) == ("Ledoit & Wolf 2004", "Van Essen et al. 2001", "Power et al. 2011")
    assert "author = {Van Essen, DC and Smith, SM and Jones, A}" in many.bibtex
    assert "author = {Power, JD and Cohen, AL and others}" in etal.bibtex
    assert "pages = {665--678}" in etal.bibtex


def test_participant_text_follows_the_settings():
    default = participant_methods(Settings())
    assert "24P" in default and "0.5 mm" in default and "0.01-0.08 Hz" in default
    assert "regional homogeneity" in default and "@zang2004" in default
    changed = participant_methods(
        _settings(
            denoise={"strategy": "36P", "fd_thresh": 0.3, "band_pass": ()},
            execution={"skip": ("reho", "graph")},
            connectivity={"atlases": ("aal",)},
        )
    )
    assert "36P" in changed and "@satterthwaite2013" in changed and "0.3 mm" in changed
    assert "no band-pass filter" in changed and "@lindquist2019" not in changed
    assert "regional homogeneity" not in changed and "@maslov2002" not in changed
    assert "@tzouriomazoyer2002" in changed and "@seitzman2020" not in changed


def test_group_text_follows_the_settings():
    text = group_methods(_settings(group={"n_permutations": 777, "tfce": False, "covariates": ("age",)}))
    assert "777 permutations" in text and "age as covariates" in text and "@smith2009tfce" not in text
    assert "@smith2009tfce" in group_methods(Settings())


def test_citation_files_cover_both_levels_with_one_reference_list(tmp_path):
    settings = _settings(execution={"skip": ("ml",)})
    write_citation_files(tmp_path, settings, level="participant")
    md_path, bib_path = write_citation_files(tmp_path, settings, level="group")
    markdown, bib = md_path.read_text(), bib_path.read_text()
    assert "## Participant level" in markdown and "## Group level" in markdown
    assert "[@" not in markdown and "(Power et al. 2012)" in markdown
    cited = set(re.findall(r"@article\{(\w+),", bib))
    assert {"power2012", "winkler2014", "zalesky2010", "esteban2019"} <= cited
    assert len(cited) == bib.count("@article")  # each reference once
    references = load_references()
    listed = [line[2:] for line in markdown.splitlines() if line.startswith("- ")]
    assert listed == sorted((references[k].text for k in cited), key=str.lower)
    again = write_citation_files(tmp_path, settings, level="group")
    assert again[0].read_text() == markdown and again[1].read_text() == bib  # deterministic


@pytest.mark.parametrize("strategy", ["24P", "27P", "36P", "acompcor", "acompcor_gsr", "none"])
def test_every_bundled_strategy_has_a_methods_sentence_with_known_citations(strategy):
    text = participant_methods(_settings(denoise={"strategy": strategy}))
    keys = {k for group in re.findall(r"\[@([^\]]+)\]", text) for k in re.findall(r"@?(\w+)", group)}
    assert keys <= set(load_references()), keys - set(load_references())


@pytest.mark.parametrize(
    ("space", "phrase"),
    [
        (
            "MNI152NLin2009cAsym",
            "in MNI152NLin2009cAsym (an asymmetric template, so the mirror voxel is only approximately",
        ),
        ("MNI152NLin2009cSym", "in MNI152NLin2009cSym (a symmetric template, so the mirror voxel is homotopic)"),
    ],
)
def test_vmhc_methods_name_the_mirror_template_and_do_not_claim_map_smoothing(space, phrase):
    text = participant_methods(_settings(inputs={"space": space}))
    assert phrase in text
    assert "and, except VMHC, smoothed with a 6 mm FWHM Gaussian kernel" in text
    assert "the VMHC map itself was not smoothed" in text
    only_vmhc = participant_methods(_settings(inputs={"space": space}, execution={"skip": ("alff", "reho", "dc")}))
    assert "Gaussian kernel" not in only_vmhc  # no standardised map was smoothed


def test_native_space_methods_say_why_template_measures_are_missing():
    text = participant_methods(_settings(inputs={"space": "native"}))
    assert "analysed in native space, which has no MNI coordinates" in text


def test_empty_lists_leave_their_sentence_out():
    """Issue #20: `--clinical-columns` with no column raised IndexError in _join after the whole group level."""
    text = group_methods(_settings(group={"clinical_columns": ()}))
    assert "Within patients" not in text and "exploratory. Connectome" in text
    assert "correlated with pain_vas (when recorded)" in group_methods(
        _settings(group={"clinical_columns": ("pain_vas",)})
    )
    # lists a --config-file can leave empty (the command line needs at least one)
    text = participant_methods(_settings(connectivity={"seeds": (), "atlases": ()}))
    assert "Seed-based" not in text and "Region time series" not in text and "Graph measures" not in text


def test_group_text_names_the_sequential_uncorrected_p_and_the_tfce_maps():
    text = group_methods(Settings())
    assert "reached 100 times (p = 100/L" in text and "or to 10000 permutations" in text
    assert "@besag1991" in text and "(for the group comparison of the primary maps)" in text
    plain = group_methods(_settings(group={"sequential_h": 0, "tfce_maps": "all"}))
    assert "@besag1991" not in plain and "primary maps)" not in plain


def test_dc_methods_say_which_grey_matter_mask_and_node_bound_were_used():
    mni = participant_methods(Settings())
    assert "nilearn's bundled MNI152 grey-matter template resampled to the run's grid" in mni
    assert "at most 60000 nodes (k = 1 is the data grid" in mni
    native = participant_methods(_settings(inputs={"space": "native"}, metrics={"dc_max_nodes": 5000}))
    assert "or the brain mask where a participant had none (native space has no template coordinates)" in native
    assert "at most 5000 nodes" in native and "MNI152 grey-matter" not in native
    coarse = participant_methods(_settings(metrics={"dc_resolution": 6.0}))
    assert "and blocks of at least 6 mm" in coarse


def test_family_correction_cites_palm_corrmod_and_dc_states_a_dof_matched_threshold():
    """The across-map FWE is Winkler et al. 2016's correction over modalities/contrasts (Hum Brain Mapp, PALM
    -corrmod/-corrcon), not their 'Faster permutation inference' (the GPD tail); a DOF-matched DC threshold is
    described as such, not as the fixed r."""
    family = group_methods(Settings()).split("formed the primary family")[1].split(".")[0]
    assert "@winkler2016npc" in family and "@winkler2016faster" not in family
    matched = participant_methods(_settings(metrics={"dc_threshold_p": 0.05}))
    assert "one-sided p is 0.05 given each run's effective degrees of freedom" in matched and "r > 0.25" not in matched
