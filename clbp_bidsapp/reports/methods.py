"""Methods boilerplate with citations, generated from the settings a run actually used.

Each level writes its paragraph to ``logs/methods-<level>.json`` (text + citation keys); ``logs/CITATION.md``
and ``logs/CITATION.bib`` are then rebuilt from every level present, so after a participant and a group run the
two files describe both, with one reference list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from clbp_bidsapp import __version__, registry
from clbp_bidsapp.config import Settings
from clbp_bidsapp.io import derivatives, spaces
from clbp_bidsapp.io.citations import load_references
from clbp_bidsapp.io.strategies import load_strategy

ATLAS_CITATIONS = {
    "seitzman300": "seitzman2020",
    "power264": "power2011",
    "dosenbach160": "dosenbach2010",
    "aal": "tzouriomazoyer2002",
    "harvardoxford": "desikan2006",
}
LEVELS = ("participant", "group")
_CITE = re.compile(r"\[@([\w;@ ]+)\]")


def _join(items) -> str:
    """``a``, ``a and b``, ``a, b and c``; callers leave out the sentence of an empty list."""
    items = list(items)
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def participant_methods(settings: Settings) -> str:
    """The participant level's paragraph; citations are written ``[@key1; @key2]``."""
    d, m, c, skip = settings.denoise, settings.metrics, settings.connectivity, set(settings.execution.skip)
    strategy = load_strategy(d.strategy)
    cites = "; ".join(f"@{k}" for k in strategy.citations)
    text = [
        f"Resting-state BOLD runs preprocessed with fMRIPrep [@esteban2019] were analysed with clbp-bidsapp "
        f"{__version__}, a Nipype [@gorgolewski2011] workflow using nilearn and scikit-learn [@abraham2014; "
        f"@pedregosa2011]. Volumes with framewise displacement above {d.fd_thresh:g} mm"
        + (f" or standardised DVARS above {d.dvars_thresh:g}" if d.dvars_thresh is not None else "")
        + (" and their neighbours" if d.censor_neighbours else "")
        + f" were censored [@power2012]; runs with less than {d.min_time:g} s of retained data"
        + (
            f", or whose {'band-passed' if d.band_pass else 'denoised'} series kept fewer than {d.min_dof:g} "
            "effective degrees of freedom (tr(C)^2/tr(C^2), C the covariance the denoising operator gives white "
            "noise [@worsley1995]),"
            if d.min_dof > 0
            else ""
        )
        + " were not analysed.",
        f"The {strategy.name} confound model ({strategy.description.rstrip('.')})"
        + (f" [{cites}]" if cites else "")
        + (
            f" was regressed out together with a Butterworth band-pass filter ({d.band_pass[0]:g}-"
            f"{d.band_pass[1]:g} Hz) in one step, so that filtering does not reintroduce the regressed signals "
            "[@lindquist2019]."
            if d.band_pass
            else " was regressed out (no band-pass filter)."
        ),
    ]
    space = spaces.lookup(settings.inputs.space)
    if not space.mni_aligned:
        text.append(
            f"The runs were analysed in {space.name} space, which has no MNI coordinates, so only measures that "
            "do not depend on template coordinates were computed."
        )
    local = [metric for metric in registry.LOCAL_METRICS if metric.stage not in skip]
    if local:
        unsmoothed = [metric.label for metric in local if not metric.smoothed]
        smoothed = ""
        if len(unsmoothed) < len(local):
            except_ = f", except {_join(unsmoothed)}," if unsmoothed else ""
            smoothed = f" and{except_} smoothed with a {m.smoothing_fwhm:g} mm FWHM Gaussian kernel"
        phrases = [metric.methods(m, space=space) for metric in local]
        text.append(
            f"Local measures were {_join(phrases)}; each map was standardised "
            f"(z-scored and divided by its mean within the brain mask){smoothed}."
        )
    if "vmhc" not in skip:
        exact = (
            "a symmetric template, so the mirror voxel is homotopic"
            if space.symmetric
            else "an asymmetric template, so the mirror voxel is only approximately homotopic"
        )
        text.append(
            f"VMHC correlated each voxel with the voxel nearest to its mirror across x = 0 in {space.name} ({exact}); "
            f"its band-passed series were smoothed with a {m.smoothing_fwhm:g} mm FWHM kernel before the "
            "correlation and the VMHC map itself was not smoothed; midline voxels (their own mirror) and voxels "
            "whose mirror lay outside the brain mask or on the midline were not analysed."
        )
    if "seedfc" not in skip and c.seeds:
        text.append(
            f"Seed-based functional connectivity (Pearson r, Fisher z) was mapped for {len(c.seeds)} seeds "
            f"({', '.join(c.seeds)}) [@fox2005]."
        )
    if "connectome" not in skip and c.atlases:
        atlas_cites = "; ".join(f"@{ATLAS_CITATIONS[a]}" for a in c.atlases if a in ATLAS_CITATIONS)
        text.append(
            f"Region time series of the {_join(c.atlases)} atlases"
            + (f" [{atlas_cites}]" if atlas_cites else "")
            + f" (regions with less than {c.min_region_coverage:.0%} of their voxels in the brain mask left out) "
            "gave Pearson and partial correlation connectomes (Ledoit-Wolf shrinkage) [@ledoit2004]."
        )
        if "graph" not in skip:
            low, high, step = c.graph_sparsity
            text.append(
                f"Graph measures were computed on the proportionally thresholded connectomes at densities "
                f"{low:g} to {high:g} (step {step:g}) and summarised by their area under the curve, normalised by "
                f"{c.graph_random_networks} degree-preserving random networks [@maslov2002; @humphries2008; "
                "@latora2001; @blondel2008]."
            )
    if "dualreg" not in skip:
        text.append(f"Dual regression [@beckmann2009; @nickerson2017] onto the {c.networks} network maps gave "
                    "each participant's network maps and time courses.")  # fmt: skip
    if settings.inputs.aslprep_dir is not None and "cbf" not in skip:
        text.append(cbf_participant_methods(settings))
    return " ".join(text)


CBF_VARIANTS = {"mean": "mean CBF", "basil": "BASIL CBF", "basilGM": "partial-volume-corrected BASIL grey-matter CBF",
                "score": "SCORE-cleaned CBF", "scrub": "SCRUB-cleaned CBF"}  # fmt: skip


def cbf_participant_methods(settings: Settings) -> str:
    """The participant level's CBF sentences (with ``--aslprep-dir``)."""
    inp, m = settings.inputs, settings.metrics
    low, high = inp.cbf_gm_range
    return (
        f"Cerebral blood flow (CBF) maps from arterial spin labelling, quantified by ASLPrep [@adebimpe2022] (its "
        f"{CBF_VARIANTS[inp.cbf_variant]} map, in mL/100 g/min), were taken in the template space of the BOLD runs "
        "and resampled (trilinear) to each participant's BOLD grid; a participant without a usable BOLD run kept "
        "the CBF map's own grid. Relative CBF was CBF divided by the participant's mean grey-matter CBF (grey-matter "
        "probability > 0.5; the template's grey matter when the participant had no grey-matter map). Absolute and "
        f"relative CBF were smoothed with a {m.smoothing_fwhm:g} mm FWHM Gaussian kernel within the brain mask. "
        f"Maps whose mean grey-matter CBF lay outside {low:g}-{high:g} mL/100 g/min or whose ASLPrep quality "
        f"evaluation index was below {inp.cbf_min_qei:g} were left out of the group CBF analyses."
    )


def cbf_group_methods(settings: Settings) -> str:
    """The group level's CBF sentences (when CBF maps were analysed)."""
    covariate = (
        ", absolute CBF with each participant's mean grey-matter CBF as an additional covariate"
        if settings.group.cbf_global_covariate
        else ""
    )
    return (
        "Absolute and relative CBF maps entered the same voxelwise model and inference as the BOLD-derived maps"
        f"{covariate}; participants with CBF but no usable BOLD run entered the CBF analyses only, with the mean "
        "framewise displacement of their ASL run. For every BOLD-derived cluster with cluster-extent family-wise "
        "error p < 0.05 or a peak voxel with max-t family-wise error p < 0.05, the group difference in relative CBF "
        "averaged over the cluster's voxels was estimated under the same model (effect, 95 % confidence interval, "
        "t-test) and compared in sign; conversely, every such CBF cluster was checked for such BOLD-derived clusters "
        "in its voxels."
    )


def group_methods(settings: Settings, *, cbf: bool = False) -> str:
    """The group level's paragraph (``cbf``: CBF maps were analysed); citations are written ``[@key1; @key2]``."""
    g, skip = settings.group, set(settings.execution.skip)
    covariates = _join(g.covariates) if g.covariates else "no covariates"
    text = [
        f"{g.patient_label} and {g.control_label} participants were compared with a general linear model "
        f"({covariates} as covariates; runs averaged per participant). Inference used {g.n_permutations} "
        f"permutations (Freedman-Lane, random seed {settings.execution.random_seed}) [@freedman1983; @winkler2014] "
        "for voxelwise family-wise error (max-t), cluster-extent family-wise error at a cluster-forming "
        f"p < {g.cluster_forming_p:g}"
        + (
            " and threshold-free cluster enhancement [@smith2009tfce]"
            + (" (for the group comparison of the primary maps)" if g.tfce_maps == "primary" else "")
            if g.tfce
            else ""
        )
        + ", with Benjamini-Hochberg false discovery rate maps [@benjamini1995]."
        + (
            f" Uncorrected voxel p-values used sequential stopping [@besag1991; @winkler2016faster]: voxels whose "
            f"statistic was reached fewer than {g.sequential_h} times in the {g.n_permutations} permutations were "
            f"carried on until it was reached {g.sequential_h} times (p = {g.sequential_h}/L at the L-th "
            f"permutation) or to {max(g.uncorrected_permutations, g.n_permutations)} permutations."
            if g.sequential_h
            else ""
        )
        + (
            f" Every permutation test of the group level shuffled participants only within levels of {g.permute_within}"
            " (exchangeability blocks, as FSL randomise -e) [@winkler2014] wherever it had more than one level among "
            "the participants tested (each output's sidecar records the blocks, PermutationBlocks)."
            if g.permute_within != "none"
            else " Participants were permuted freely, across sites."
        )
        + (
            " Family-wise error p-values below 0.1 were taken from a generalised Pareto distribution fitted to the "
            "upper tail of each maximum-statistic permutation distribution, where the fit passed an Anderson-Darling "
            "test at 0.05, and were empirical otherwise [@winkler2016faster]."
            if g.permutation_tail == "gpd"
            else ""
        )
        + (
            f" The group comparison of {_join(g.primary_maps)} formed the primary family of hypotheses, whose max-t "
            "family-wise error was also controlled across maps (maximum over the maps of the z-transformed maximum "
            "statistic of each shared permutation, as PALM's -corrmod/-corrcon) [@winkler2016npc]; all other maps "
            "and contrasts are exploratory."
            if g.primary_maps
            else ""
        )
        + (
            f" Within patients, {'the primary maps' if g.clinical_maps == 'primary' else 'all maps'} were "
            f"correlated with {_join(g.clinical_columns)} (when recorded) under the same model and inference."
            if g.clinical_columns
            else ""
        ),
    ]
    if cbf:
        text.append(cbf_group_methods(settings))
    if "connectome" not in skip:
        text.append(
            "Connectome edges were compared with the same model (FDR across edges) and with the Network-Based "
            f"Statistic at |t| > {g.nbs_threshold:g} [@zalesky2010]; tangent-space connectomes "
            "[@varoquaux2010tangent] and graph measures were compared likewise."
        )
    if "ica" not in skip:
        text.append(f"Group ICA (CanICA, {g.ica_components} components) [@varoquaux2010] followed by dual "
                    "regression [@beckmann2009] gave network maps that entered the same voxelwise test.")  # fmt: skip
    if "ml" not in skip and hasattr(settings, "ml"):
        ml = settings.ml
        text.append(
            f"Classification of {g.patient_label} versus {g.control_label} used scikit-learn pipelines "
            f"({_join(registry.MODEL_LABELS[name] for name in ml.models)}) [@pedregosa2011] in {ml.n_repeats} x "
            f"{ml.n_splits}-fold stratified cross-validation with an inner "
            "cross-validation for hyper-parameters; scaling, covariate regression, feature selection and, with "
            "several sites, ComBat harmonisation [@johnson2007; @fortin2018] were fitted within the training folds. "
            f"The pre-declared primary result was {ml.primary_model.replace('_', ' ')} on the {ml.primary_feature_set} "
            f"features; its balanced accuracy was tested with {ml.n_permutations} label permutations, each rerunning "
            "the whole nested procedure (splits, hyper-parameter search, selection) on the permuted labels"
            + (
                ", and every model and feature set shown was tested likewise, each p taken against the best score "
                "over all of them in each permutation."
                if ml.permutation_scope == "shown"
                else "."
            )
        )
    return " ".join(text)


def write_citation_files(output_dir: Path, settings: Settings, *, level: str, cbf: bool = False) -> tuple[Path, Path]:
    """Record ``level``'s paragraph, then rebuild ``logs/CITATION.md`` and ``logs/CITATION.bib``.

    ``cbf``: the group level analysed CBF maps (said in its paragraph)."""
    logs = output_dir / "logs"
    paragraph = participant_methods(settings) if level == "participant" else group_methods(settings, cbf=cbf)
    derivatives.write_text(logs / f"methods-{level}.json", json.dumps({"text": paragraph}, indent=2) + "\n")
    references = load_references()
    sections, keys = [], []
    for name in LEVELS:
        path = logs / f"methods-{name}.json"
        if not path.is_file():
            continue
        text = json.loads(path.read_text())["text"]
        for group in _CITE.findall(text):
            keys += [k.strip().lstrip("@") for k in group.split(";") if k.strip().lstrip("@") not in keys]
        sections.append(f"## {name.capitalize()} level\n\n{_render(text, references)}\n")
    unknown = sorted(set(keys) - set(references))
    if unknown:  # a programming error, caught by the tests: every cited key must be bundled
        raise KeyError(f"methods text cites unknown reference(s): {', '.join(unknown)}")
    cited = sorted({k: references[k] for k in keys}.values(), key=lambda r: r.text.lower())
    markdown = "\n".join([
        "# Methods (generated by clbp-bidsapp from the settings of this output folder's runs)", "",
        "You may copy this text into a manuscript. BibTeX entries are in CITATION.bib.", "",
        *sections, "## References", "", *[f"- {r.text}" for r in cited], "",
    ])  # fmt: skip
    md_path, bib_path = logs / "CITATION.md", logs / "CITATION.bib"
    derivatives.write_text(md_path, markdown)
    derivatives.write_text(bib_path, "\n\n".join(r.bibtex for r in cited) + "\n")
    return md_path, bib_path


def _render(text: str, references) -> str:
    """``[@a; @b]`` -> ``(A et al. 2001; B & C 2002)``."""

    def replace(match: re.Match) -> str:
        keys = [k.strip().lstrip("@") for k in match.group(1).split(";")]
        return "(" + "; ".join(references[k].short if k in references else k for k in keys) + ")"

    return _CITE.sub(replace, text)
