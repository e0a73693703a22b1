"""Names of the optional stages that ``--skip`` accepts, with what each one writes.

Only stages that exist are listed: an unknown name given to ``--skip`` is an error, never silently ignored.
"""

from __future__ import annotations

PARTICIPANT_STAGES: dict[str, str] = {
    "tsnr": "mean and temporal SNR maps of the preprocessed BOLD",
    "alff": "ALFF and fALFF maps (unfiltered denoised series)",
    "reho": "ReHo map (band-passed series)",
    "vmhc": "VMHC map (band-passed, smoothed series)",
    "dc": "degree centrality maps, binarized and weighted (band-passed series, grey matter)",
    "seedfc": "seed-based FC maps (Fisher z) of the seeds chosen with --seeds, and the seed series",
    "connectome": "region series, Pearson and partial correlation matrices of each --atlases atlas",
    "graph": "graph measures of each connectome over the sparsity range (needs connectome)",
    "dualreg": "dual regression onto the reference networks (--networks)",
    "report": "the HTML report OUTPUT_DIR/sub-<label>.html",
    "cbf": "CBF maps (absolute, relative, z) from the ASLPrep derivatives of --aslprep-dir",
}

GROUP_STAGES: dict[str, str] = {
    "qc": "group QC table (motion, censoring, retained time per run and group)",
    "ica": "group ICA (CanICA) with dual regression, when the denoised series were saved (--save-denoised)",
    "stats": "voxelwise CLBP-versus-control GLM (and clinical correlations) of every map with permutation inference",
    "connectome": "edge-wise tests, Network-Based Statistic and graph-measure comparisons of the ROI connectomes",
    "ml": "machine learning: CLBP-versus-control classification and pain prediction (nested CV, permutation p)",
    "report": "the group HTML report OUTPUT_DIR/group.html",
}
