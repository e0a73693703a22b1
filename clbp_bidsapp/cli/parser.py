"""The command-line parser (BIDS-Apps conventions). ``build_parser()`` has no side effects.

Every option stores into ``"<section>.<field>"`` of :class:`clbp_bidsapp.config.Settings` and has
``argparse.SUPPRESS`` as its parser default, so the namespace holds exactly what the user typed. Values stay
words here: ``cli.run`` converts them with the field's :class:`clbp_bidsapp.config.Check` and checks every range
with :meth:`Settings.validate`, naming the flag found by :func:`flag_names`. Defaults live
in one place, the settings dataclasses, and are shown in ``--help`` from there. ``cli.run`` layers
dataclass defaults < ``--config-file`` < explicit command-line options.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from clbp_bidsapp.__about__ import __version__
from clbp_bidsapp.cli.other_tools import add_other_tools_options
from clbp_bidsapp.config import GROUP_METRICS, ML_CLASSIFIERS, ML_FEATURE_SETS, ML_REGRESSORS, PLUGINS, Settings
from clbp_bidsapp.stages import GROUP_STAGES, PARTICIPANT_STAGES

DESCRIPTION = (
    "Resting-state fMRI analysis of chronic low back pain (CLBP) on fMRIPrep derivatives: "
    "per-participant denoising and maps, then a CLBP-versus-control group analysis."
)
EPILOG = (
    "Exit codes: 0 success; 1 some participants failed (others finished); 2 invalid arguments or input; "
    "3 nothing could be processed; 4 the output folder cannot be written; 5 the results were written but a late "
    "step (report, methods text, manifest) failed; 130 interrupted. "
    "See docs/usage.md."
)

SUPPRESS = argparse.SUPPRESS


def _default(section: str, name: str) -> object:
    """The dataclass default of a setting, for the help text."""
    return getattr(getattr(Settings(), section), name)


def _help(text: str, section: str, name: str) -> str:
    default = _default(section, name)
    if isinstance(default, tuple):
        default = " ".join(str(v) for v in default) or "none"
    return f"{text} (default: {default})"


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """The flag that sets each destination (``ml.n_permutations`` -> ``--ml-permutations``), for messages.

    The first long option spelled with dashes of the first action of a destination is the name shown; one
    without a long option keeps its first option.
    """
    names = {}
    for action in parser._actions:
        if not action.option_strings:
            continue
        dashed = [o for o in action.option_strings if o.startswith("--") and "_" not in o]
        names.setdefault(action.dest, (dashed or action.option_strings)[0])  # --band-pass, not --no-band-pass
    return names


def megabytes_to_gigabytes(text: str) -> float:
    """fMRIPrep's ``--mem`` value in GB: a number of MB (``16000``), or with a unit ``M``/``MB``/``G``/``GB``.

    The conversion is fMRIPrep's and XCP-D's (1 GB = 1000 MB): ``16000`` -> 16.0, the ``mem_gb`` setting.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([MmGg][Bb]?)?\s*", text)
    if not match:
        raise ValueError(f"expected a memory size in MB such as 16000 (or 16G), got {text!r}")
    number, unit = float(match.group(1)), (match.group(2) or "M")[0].upper()
    return number if unit == "G" else number / 1000


class _MegabytesAsGigabytes(argparse.Action):
    """``--mem 16000`` stores 16.0 into ``execution.mem_gb`` (the setting's range is checked by ``cli.run``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, megabytes_to_gigabytes(values))
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


class _ErrorCollectingParser(argparse.ArgumentParser):
    """Raise instead of exiting, so that ``cli.run`` can report every argument error at once."""

    def error(self, message: str):  # type: ignore[override]
        raise argparse.ArgumentError(None, message)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``clbp-bidsapp``."""
    parser = _ErrorCollectingParser(
        prog="clbp-bidsapp",
        description=DESCRIPTION,
        epilog=EPILOG,
        allow_abbrev=False,  # --mem 16000 must not be read as --mem-gb 16000
    )
    parser.add_argument("--version", action="version", version=f"clbp-bidsapp {__version__}")
    parser.add_argument(
        "bids_dir",
        type=Path,
        help="the root of the BIDS dataset (raw), or an fMRIPrep derivatives dataset",
    )
    parser.add_argument("output_dir", type=Path, help="where the derivatives are written")
    parser.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="'participant' maps every selected run; 'group' compares CLBP with controls",
    )

    sel = parser.add_argument_group("Selecting data")
    sel.add_argument(
        "--participant-label",
        "--participant_label",
        dest="inputs.participant_label",
        nargs="+",
        metavar="LABEL",
        default=SUPPRESS,
        help="participants to analyse, with or without 'sub-', or files listing them one per line (default: all)",
    )
    sel.add_argument(
        "--session-id",
        "--session_id",
        "--session-label",
        dest="inputs.session_id",
        nargs="+",
        metavar="SESSION",
        default=SUPPRESS,
        help="sessions to analyse, with or without 'ses-' (default: all)",
    )
    sel.add_argument(
        "-t",
        "--task-id",
        "--task_id",
        dest="inputs.task_id",
        nargs="+",
        metavar="TASK",
        default=SUPPRESS,
        help="tasks to analyse (default: every task whose name contains --task-pattern)",
    )
    sel.add_argument(
        "--task-pattern",
        dest="inputs.task_pattern",
        metavar="TEXT",
        default=SUPPRESS,
        help=_help("resting-state tasks are those whose name contains this text", "inputs", "task_pattern"),
    )
    sel.add_argument(
        "--bids-filter-file",
        "--bids_filter_file",
        dest="bids_filter_file",
        type=Path,
        metavar="JSON",
        default=SUPPRESS,
        help="JSON of pybids filters per query (keys: bold, mask, confounds, probseg), "
        'e.g. {"bold": {"acquisition": "mb4"}}',
    )
    sel.add_argument(
        "--space",
        dest="inputs.space",
        metavar="TEMPLATE[:res-N]",
        default=SUPPRESS,
        help=_help(
            "space of the fMRIPrep outputs to use, optionally with :res-N: an MNI template (MNI152NLin2009cAsym, "
            "MNI152NLin2009cSym for exact VMHC, MNI152NLin6Asym, ...), or native (no space- entity) / T1w, where "
            "only the stages that need no MNI coordinates run",
            "inputs",
            "space",
        ),
    )
    sel.add_argument(
        "--fmriprep-dir",
        dest="inputs.fmriprep_dir",
        type=Path,
        metavar="FOLDER",
        default=SUPPRESS,
        help="fMRIPrep derivatives (default: BIDS_DIR/derivatives/fmriprep, or BIDS_DIR if it is one)",
    )
    sel.add_argument(
        "--bids-database-dir",
        dest="execution.bids_database_dir",
        type=Path,
        metavar="FOLDER",
        default=SUPPRESS,
        help="reuse (or create) a pybids index database in this folder",
    )
    sel.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        dest="execution.skip_bids_validation",
        action="store_true",
        default=SUPPRESS,
        help="do not check that BIDS_DIR looks like a BIDS dataset",
    )

    den = parser.add_argument_group("Denoising")
    den.add_argument(
        "--strategy",
        dest="denoise.strategy",
        metavar="NAME|YAML",
        default=SUPPRESS,
        help=_help("confound strategy: a bundled name or a path to a YAML file", "denoise", "strategy"),
    )
    den.add_argument(
        "--fd-thresh",
        "--fd_thresh",
        "-f",
        dest="denoise.fd_thresh",
        metavar="MM",
        default=SUPPRESS,
        help=_help(
            "censor volumes with framewise displacement above this (0 disables)",
            "denoise",
            "fd_thresh",
        ),
    )
    den.add_argument(
        "--dvars-thresh",
        dest="denoise.dvars_thresh",
        metavar="STD_DVARS",
        default=SUPPRESS,
        help="also censor volumes whose std_dvars exceeds this (default: off)",
    )
    den.add_argument(
        "--censor-neighbours",
        dest="denoise.censor_neighbours",
        action="store_true",
        default=SUPPRESS,
        help="also censor 1 volume before and 2 after each flagged volume (as DPABI does)",
    )
    den.add_argument(
        "--dummy-scans",
        "--dummy_scans",
        dest="denoise.dummy_scans",
        metavar="auto|N",
        default=SUPPRESS,
        help=_help(
            "initial volumes to drop; auto uses fMRIPrep's non_steady_state_outlier columns",
            "denoise",
            "dummy_scans",
        ),
    )
    den.add_argument(
        "--min-time",
        "--min_time",
        dest="denoise.min_time",
        metavar="SECONDS",
        default=SUPPRESS,
        help=_help("skip runs with less retained time after censoring", "denoise", "min_time"),
    )
    den.add_argument(
        "--min-dof",
        dest="denoise.min_dof",
        metavar="DOF",
        default=SUPPRESS,
        help=_help(
            "skip runs whose band-passed series keeps fewer effective degrees of freedom (0 = off)",
            "denoise",
            "min_dof",
        ),
    )
    band = den.add_mutually_exclusive_group()
    band.add_argument(
        "--band-pass",
        dest="denoise.band_pass",
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=SUPPRESS,
        help=_help("Butterworth band-pass in Hz", "denoise", "band_pass"),
    )
    band.add_argument(
        "--no-band-pass",
        "--disable-bandpass-filter",
        "--disable_bandpass_filter",
        dest="denoise.band_pass",
        action="store_const",
        const=(),
        default=SUPPRESS,
        help="do not band-pass filter (ALFF/fALFF always use the unfiltered series)",
    )
    den.add_argument(
        "--save-denoised",
        dest="denoise.save_denoised",
        action="store_true",
        default=SUPPRESS,
        help="also write the denoised BOLD series (large)",
    )

    met = parser.add_argument_group("Local metrics")
    met.add_argument(
        "--reho-neighbourhood",
        dest="metrics.reho_neighbourhood",
        metavar="{7,19,27}",
        default=SUPPRESS,
        help=_help("voxels in the ReHo neighbourhood (faces / +edges / +corners)", "metrics", "reho_neighbourhood"),
    )
    dc_threshold = met.add_mutually_exclusive_group()
    dc_threshold.add_argument(
        "--dc-threshold",
        dest="metrics.dc_threshold",
        metavar="R",
        default=SUPPRESS,
        help=_help("degree centrality counts correlations above this r", "metrics", "dc_threshold"),
    )
    dc_threshold.add_argument(
        "--dc-threshold-p",
        dest="metrics.dc_threshold_p",
        metavar="P",
        default=SUPPRESS,
        help="instead of a fixed r, count correlations whose one-sided p < P given each run's effective degrees "
        "of freedom (the r used is in each DC sidecar; default: off, r > --dc-threshold)",
    )
    met.add_argument(
        "--dc-resolution",
        dest="metrics.dc_resolution",
        metavar="MM",
        default=SUPPRESS,
        help="compute degree centrality on a coarser grid of this voxel size in mm (default: data grid)",
    )
    met.add_argument(
        "--dc-max-nodes",
        dest="metrics.dc_max_nodes",
        metavar="N",
        default=SUPPRESS,
        help=_help(
            "bound on degree centrality's correlation nodes: a larger grey-matter mask is computed on the mean "
            "series of blocks of k^3 voxels, k the smallest that fits (cost grows as N^2)",
            "metrics",
            "dc_max_nodes",
        ),
    )
    met.add_argument(
        "--smoothing-fwhm",
        "--smoothing",
        dest="metrics.smoothing_fwhm",
        metavar="MM",
        default=SUPPRESS,
        help=_help("Gaussian FWHM of the smoothed, standardised maps (0: none)", "metrics", "smoothing_fwhm"),
    )

    con = parser.add_argument_group("Connectivity")
    con.add_argument(
        "--seeds",
        dest="connectivity.seeds",
        nargs="+",
        metavar="SEED",
        default=SUPPRESS,
        help=_help("seed names from the bundled library (docs/connectivity.md) and/or TSV files with the same "
                   "columns", "connectivity", "seeds"),
    )  # fmt: skip
    con.add_argument(
        "--atlases",
        dest="connectivity.atlases",
        nargs="+",
        metavar="ATLAS",
        default=SUPPRESS,
        help=_help("atlases for ROI connectomes: aal, harvardoxford, seitzman300, power264, dosenbach160, or a dseg "
                   "NIfTI with a TSV (index, name[, network]) of the same name", "connectivity", "atlases"),
    )  # fmt: skip
    con.add_argument(
        "--min-region-coverage",
        "--min-coverage",
        "--min_coverage",
        dest="connectivity.min_region_coverage",
        metavar="FRACTION",
        default=SUPPRESS,
        help=_help("regions with a smaller fraction of their voxels inside the brain mask are n/a",
                   "connectivity", "min_region_coverage"),
    )  # fmt: skip
    con.add_argument(
        "--graph-sparsity",
        dest="connectivity.graph_sparsity",
        nargs=3,
        metavar=("LOW", "HIGH", "STEP"),
        default=SUPPRESS,
        help=_help("range of connection densities of the graph measures", "connectivity", "graph_sparsity"),
    )
    con.add_argument(
        "--graph-random-networks",
        dest="connectivity.graph_random_networks",
        metavar="N",
        default=SUPPRESS,
        help=_help("degree-preserving random networks per density for small-worldness", "connectivity",
                   "graph_random_networks"),
    )  # fmt: skip
    con.add_argument(
        "--networks",
        dest="connectivity.networks",
        metavar="MAPS",
        default=SUPPRESS,
        help=_help("reference networks of the dual regression: 'seitzman' (bundled ROIs) or a 4-D NIfTI",
                   "connectivity", "networks"),
    )  # fmt: skip

    grp = parser.add_argument_group("Group design (participants.tsv)")
    grp.add_argument(
        "--group-column",
        dest="group.group_column",
        metavar="COLUMN",
        default=SUPPRESS,
        help=_help("column of participants.tsv holding the diagnosis", "group", "group_column"),
    )
    grp.add_argument(
        "--patient-label",
        dest="group.patient_label",
        metavar="VALUE",
        default=SUPPRESS,
        help=_help("value of the group column for patients", "group", "patient_label"),
    )
    grp.add_argument(
        "--control-label",
        dest="group.control_label",
        metavar="VALUE",
        default=SUPPRESS,
        help=_help("value of the group column for controls", "group", "control_label"),
    )
    grp.add_argument(
        "--min-per-group",
        dest="group.min_per_group",
        metavar="N",
        default=SUPPRESS,
        help=_help("fewest participants per group for a group analysis", "group", "min_per_group"),
    )

    grp.add_argument(
        "--covariates",
        dest="group.covariates",
        nargs="*",
        metavar="COLUMN",
        default=SUPPRESS,
        help=_help("participants.tsv columns (or QC values such as mean_fd) adjusted for in the group GLM; "
                   "'site' is added as a factor when it has several levels", "group", "covariates"),
    )  # fmt: skip
    grp.add_argument(
        "--n-permutations",
        dest="group.n_permutations",
        metavar="N",
        default=SUPPRESS,
        help=_help("permutations of the group test", "group", "n_permutations"),
    )
    grp.add_argument(
        "--permutation-tail",
        dest="group.permutation_tail",
        choices=("none", "gpd"),
        default=SUPPRESS,
        help=_help("FWE p below 0.1 from a generalised Pareto fit to the permutation null's tail (gpd, Winkler "
                   "2016; empirical where the fit fails) or the empirical null only (none)", "group",
                   "permutation_tail"),
    )  # fmt: skip
    grp.add_argument(
        "--permute-within",
        dest="group.permute_within",
        metavar="COLUMN",
        default=SUPPRESS,
        help=_help("participants.tsv column whose levels are exchangeability blocks: every permutation test of the "
                   "group level (maps, ROIs, connectomes, graph measures, ML labels) shuffles participants only "
                   "within a level (FSL randomise -e); 'site' applies when site has several levels; 'none': free",
                   "group", "permute_within"),
    )  # fmt: skip
    grp.add_argument(
        "--primary-maps",
        dest="group.primary_maps",
        nargs="+",
        metavar="MAP",
        default=SUPPRESS,
        help=_help("maps (file-name labels: alff, reho, fcz-<seed>, dualreg-<network>, ...) whose group contrast "
                   "is the primary family, FWE-corrected across them as well as within each map; the others are "
                   "exploratory", "group", "primary_maps"),
    )  # fmt: skip
    grp.add_argument(
        "--cluster-forming-p",
        dest="group.cluster_forming_p",
        metavar="P",
        default=SUPPRESS,
        help=_help("two-sided uncorrected p that forms clusters for cluster-extent inference", "group",
                   "cluster_forming_p"),
    )  # fmt: skip
    grp.add_argument(
        "--group-metrics",
        dest="group.metrics",
        nargs="+",
        choices=GROUP_METRICS,
        default=SUPPRESS,
        help=_help("participant maps compared between groups (fcz: every seed's smoothed FC map; dualreg: the "
                   "--group-networks components)", "group", "metrics"),
    )  # fmt: skip
    grp.add_argument(
        "--group-networks",
        dest="group.networks",
        nargs="+",
        metavar="NETWORK",
        default=SUPPRESS,
        help=_help("dual-regression networks compared between groups", "group", "networks"),
    )
    grp.add_argument(
        "--no-tfce",
        dest="group.tfce",
        action="store_false",
        default=SUPPRESS,
        help="skip TFCE (max-t and cluster-extent FWE are still computed)",
    )
    grp.add_argument(
        "--tfce-maps",
        dest="group.tfce_maps",
        choices=("primary", "all"),
        default=SUPPRESS,
        help=_help("maps that get TFCE: the group contrast of the --primary-maps, or every map and contrast",
                   "group", "tfce_maps"),
    )  # fmt: skip
    grp.add_argument(
        "--clinical-maps",
        dest="group.clinical_maps",
        choices=("primary", "all"),
        default=SUPPRESS,
        help=_help("maps correlated with the --clinical-columns within patients: the --primary-maps, or every map",
                   "group", "clinical_maps"),
    )  # fmt: skip
    grp.add_argument(
        "--sequential-h",
        dest="group.sequential_h",
        metavar="H",
        default=SUPPRESS,
        help=_help("uncorrected p: stop counting a voxel at H exceedances (Besag-Clifford sequential p; 0: off)",
                   "group", "sequential_h"),
    )  # fmt: skip
    grp.add_argument(
        "--uncorrected-permutations",
        dest="group.uncorrected_permutations",
        metavar="N",
        default=SUPPRESS,
        help=_help("most permutations for a sequential uncorrected p (voxels below H exceedances, t only)",
                   "group", "uncorrected_permutations"),
    )  # fmt: skip
    grp.add_argument(
        "--clinical-columns",
        dest="group.clinical_columns",
        nargs="*",
        metavar="COLUMN",
        default=SUPPRESS,
        help=_help("participants.tsv columns correlated with the maps within patients (those present are used)",
                   "group", "clinical_columns"),
    )  # fmt: skip
    grp.add_argument(
        "--ica-components",
        dest="group.ica_components",
        metavar="N",
        default=SUPPRESS,
        help=_help("group ICA (CanICA) components; group ICA runs when the participant level wrote the denoised "
                   "series (--save-denoised)", "group", "ica_components"),
    )  # fmt: skip
    grp.add_argument(
        "--nbs-threshold",
        dest="group.nbs_threshold",
        metavar="T",
        default=SUPPRESS,
        help=_help("|t| forming Network-Based Statistic components", "group", "nbs_threshold"),
    )

    _add_ml_arguments(parser)
    _add_cbf_arguments(parser)

    exe = parser.add_argument_group("Execution")
    exe.add_argument(
        "-w",
        "--work-dir",
        "--work_dir",
        dest="execution.work_dir",
        type=Path,
        metavar="FOLDER",
        default=SUPPRESS,
        help="nipype working folder; reuse it to resume (default: OUTPUT_DIR/work)",
    )
    exe.add_argument(
        "--nprocs",
        "--nthreads",
        "--n-cpus",
        "--n_cpus",
        dest="execution.nprocs",
        metavar="N",
        default=SUPPRESS,
        help=_help("processes for the participant graph and the group permutation tests", "execution", "nprocs"),
    )
    exe.add_argument(
        "--omp-nthreads",
        "--omp_nthreads",
        dest="execution.omp_nthreads",
        metavar="N",
        default=SUPPRESS,
        help=_help("threads per process for numerical libraries", "execution", "omp_nthreads"),
    )
    exe.add_argument(
        "--mem-gb",
        "--mem_gb",
        dest="execution.mem_gb",
        metavar="GB",
        default=SUPPRESS,
        help="memory available to the graph scheduler, in GB (default: what the machine has)",
    )
    exe.add_argument(
        "--mem",
        "--mem-mb",
        "--mem_mb",
        dest="execution.mem_gb",
        action=_MegabytesAsGigabytes,
        metavar="MB",
        default=SUPPRESS,
        help="the same in MB, as fMRIPrep and XCP-D take it (16000 = 16 GB; a G suffix gives GB: 16G)",
    )
    exe.add_argument(
        "--plugin",
        dest="execution.plugin",
        choices=PLUGINS,
        default=SUPPRESS,
        help=_help(
            "nipype execution plugin; SLURM/SLURMGraph also fan the group tests out as job arrays",
            "execution",
            "plugin",
        ),
    )
    exe.add_argument(
        "--plugin-args",
        dest="plugin_args",
        metavar="JSON",
        default=SUPPRESS,
        help='nipype plugin arguments as JSON, e.g. \'{"sbatch_args": "-p short"}\'',
    )
    exe.add_argument(
        "--config-file",
        "--config_file",
        dest="config_file",
        type=Path,
        metavar="TOML",
        default=SUPPRESS,
        help="settings TOML (e.g. OUTPUT_DIR/logs/config-*.toml of an earlier run); options here win",
    )
    exe.add_argument(
        "--random-seed",
        "--random_seed",
        dest="execution.random_seed",
        metavar="N",
        default=SUPPRESS,
        help=_help("seed of every random choice", "execution", "random_seed"),
    )
    exe.add_argument(
        "--stop-on-first-crash",
        dest="execution.stop_on_first_crash",
        action="store_true",
        default=SUPPRESS,
        help="stop at the first failing node instead of finishing the other participants",
    )
    exe.add_argument(
        "--clean-workdir",
        "--clean_workdir",
        dest="execution.clean_workdir",
        action="store_true",
        default=SUPPRESS,
        help="remove the working folder after a fully successful run",
    )
    exe.add_argument(
        "--skip",
        dest="execution.skip",
        nargs="+",
        metavar="STAGE",
        default=SUPPRESS,
        help="stages not to run; participant: " + ", ".join(PARTICIPANT_STAGES) + "; group: " + ", ".join(GROUP_STAGES),
    )
    exe.add_argument(
        "-v",
        "--verbose",
        dest="execution.verbosity",
        action="count",
        default=SUPPRESS,
        help="-v: progress messages; -vv: debugging messages and the traceback of an unexpected error",
    )
    exe.add_argument(
        "--notrack",
        dest="notrack",
        action="store_true",
        default=SUPPRESS,
        help="accepted for fMRIPrep/XCP-D command lines; this app never sends anything anywhere",
    )
    add_other_tools_options(parser)
    return parser


def _add_ml_arguments(parser: argparse.ArgumentParser) -> None:
    """The "Machine learning" group (stage ml of the group level; see docs/machine-learning.md)."""
    ml = parser.add_argument_group("Machine learning (group level, stage ml)")
    ml.add_argument("--ml-feature-sets", dest="ml.feature_sets", nargs="+", default=SUPPRESS,
                    choices=ML_FEATURE_SETS,
                    help=_help("feature sets classified separately (combined: all side by side)", "ml",
                               "feature_sets"))  # fmt: skip
    ml.add_argument(
        "--ml-atlas",
        dest="ml.atlas",
        metavar="ATLAS",
        default=SUPPRESS,
        help=_help("atlas whose regions give the ROI-mean features", "ml", "atlas"),
    )
    ml.add_argument(
        "--ml-models",
        dest="ml.models",
        nargs="+",
        choices=ML_CLASSIFIERS,
        default=SUPPRESS,
        help=_help("classifiers", "ml", "models"),
    )
    ml.add_argument(
        "--ml-primary-model",
        dest="ml.primary_model",
        choices=ML_CLASSIFIERS,
        default=SUPPRESS,
        help=_help("pre-declared headline classifier (with --ml-primary-feature-set): its score and permutation p "
                   "are what the console, summary and report lead with", "ml", "primary_model"),
    )  # fmt: skip
    ml.add_argument(
        "--ml-primary-feature-set",
        dest="ml.primary_feature_set",
        choices=ML_FEATURE_SETS,
        default=SUPPRESS,
        help=_help("pre-declared headline feature set", "ml", "primary_feature_set"),
    )
    ml.add_argument("--ml-regression-models", dest="ml.regression_models", nargs="*", choices=ML_REGRESSORS,
                    default=SUPPRESS, help=_help("regressors of the clinical target within patients (the first is "
                                                 "permutation-tested; none: no regression)", "ml",
                                                 "regression_models"))  # fmt: skip
    ml.add_argument(
        "--ml-target",
        dest="ml.clinical_target",
        metavar="COLUMN",
        default=SUPPRESS,
        help=_help("participants.tsv column predicted within patients", "ml", "clinical_target"),
    )
    ml.add_argument(
        "--ml-splits",
        dest="ml.n_splits",
        metavar="K",
        default=SUPPRESS,
        help=_help("outer folds of the repeated stratified k-fold", "ml", "n_splits"),
    )
    ml.add_argument(
        "--ml-repeats",
        dest="ml.n_repeats",
        metavar="N",
        default=SUPPRESS,
        help=_help("repeats of the outer k-fold", "ml", "n_repeats"),
    )
    ml.add_argument(
        "--ml-inner-splits",
        dest="ml.inner_splits",
        metavar="K",
        default=SUPPRESS,
        help=_help("folds of the inner hyper-parameter search", "ml", "inner_splits"),
    )
    ml.add_argument("--ml-k-best", dest="ml.k_best", metavar="K", nargs="+", default=SUPPRESS,
                    help=_help("features kept by univariate selection inside the folds; several values are tuned "
                               "by the inner CV (0: no selection)", "ml", "k_best"))  # fmt: skip
    ml.add_argument("--ml-permutations", dest="ml.n_permutations", metavar="N", default=SUPPRESS,
                    help=_help("label permutations; each reruns the whole nested pipeline (0: no p-value)", "ml",
                               "n_permutations"))  # fmt: skip
    ml.add_argument("--ml-permutation-scope", dest="ml.permutation_scope", choices=("primary", "shown"),
                    default=SUPPRESS, help=_help("k-fold classification results that get a permutation p: the primary "
                                                 "model and feature set only, or every one shown, each p corrected "
                                                 "by the best score over them per permutation", "ml",
                                                 "permutation_scope"))  # fmt: skip
    ml.add_argument("--ml-harmonise", "--ml-harmonize", dest="ml.harmonise", choices=["auto", "combat", "none"],
                    default=SUPPRESS, help=_help("ComBat site harmonisation inside the folds (auto: when site has "
                                                 "several levels)", "ml", "harmonise"))  # fmt: skip
    ml.add_argument(
        "--no-ml-leave-site-out",
        dest="ml.leave_site_out",
        action="store_false",
        default=SUPPRESS,
        help="skip the leave-one-site-out validation",
    )
    ml.add_argument(
        "--ml-top-features",
        dest="ml.n_top_features",
        metavar="N",
        default=SUPPRESS,
        help=_help("most informative features listed per model", "ml", "n_top_features"),
    )


def _add_cbf_arguments(parser: argparse.ArgumentParser) -> None:
    cbf = parser.add_argument_group("Cerebral blood flow (ASLPrep derivatives; docs/cbf.md)")
    cbf.add_argument(
        "--aslprep-dir",
        dest="inputs.aslprep_dir",
        type=Path,
        metavar="FOLDER",
        default=SUPPRESS,
        help="ASLPrep derivatives: CBF maps next to the BOLD maps, and the BOLD-CBF concordance (default: none)",
    )
    cbf.add_argument(
        "--cbf-variant",
        dest="inputs.cbf_variant",
        choices=("mean", "basil", "basilGM", "score", "scrub"),
        default=SUPPRESS,
        help=_help("ASLPrep CBF map: the plain mean CBF, or the desc-basil/basilGM/score/scrub one", "inputs",
                   "cbf_variant"),
    )  # fmt: skip
    cbf.add_argument(
        "--cbf-min-qei",
        dest="inputs.cbf_min_qei",
        metavar="QEI",
        default=SUPPRESS,
        help=_help("CBF maps whose ASLPrep quality evaluation index is lower are left out of the group analysis",
                   "inputs", "cbf_min_qei"),
    )  # fmt: skip
    cbf.add_argument(
        "--cbf-gm-range",
        dest="inputs.cbf_gm_range",
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=SUPPRESS,
        help=_help("plausible mean grey-matter CBF in mL/100 g/min; maps outside are left out of the group analysis",
                   "inputs", "cbf_gm_range"),
    )  # fmt: skip
    cbf.add_argument(
        "--cbf-global-covariate",
        dest="group.cbf_global_covariate",
        action="store_true",
        default=SUPPRESS,
        help="group level: model each participant's mean grey-matter CBF as a covariate of the absolute CBF maps "
        "(default: off; the relative CBF maps remove it by division)",
    )
