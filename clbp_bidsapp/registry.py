"""One registry per concept: local metrics, group map families, participant and group stages, ML models.

Every list of these names in the package is derived from the records here: the parser's ``--group-metrics``,
``--skip``, ``--ml-models`` choices (through :mod:`clbp_bidsapp.config` and :mod:`clbp_bidsapp.stages`), the sidecar
``Description`` of each participant map, the QC column descriptions, the group map queries
(:func:`clbp_bidsapp.group.voxelwise.collect_map_sets`), the ML ROI features and feature sets, the stages skipped
outside MNI spaces (:func:`clbp_bidsapp.io.spaces.unavailable_stages`), the group report's order and descriptions,
the participant report's captions and the methods text. ``tests/test_registry.py`` fails when a record lacks a
part (kernel, interface, citation, documentation) or when a derived list disagrees with the registry, and
``tests/workflows/test_graph_building.py`` when the participant graph does not wire a metric as its record says.

Adding a local metric ``foo``:

1. ``core/foo.py``: the kernel (arrays in, arrays out) and its known-answer tests in ``tests/core``;
2. one :class:`LocalMetric` record below (and a :class:`Stage` when it is computed by a new ``--skip`` stage);
3. its interface in ``interfaces/metrics.py`` and, in ``workflows/local_metrics.py``, its node in its stage's
   ``init_<stage>_wf`` (a new stage: a new builder, named by the :class:`Stage` record, whose ``inputnode`` fields
   are outputs of the denoising; ``tests/workflows/test_graph_building.py`` fails until the node is there);
4. a section in ``docs/local-metrics.md`` and its files in ``docs/outputs.md`` (the registry test checks both).

This module is plain data: it imports nothing heavy, so that the settings and the parser can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from clbp_bidsapp.config import MetricSettings


def _cite(keys: tuple[str, ...]) -> str:
    return "[" + "; ".join(f"@{key}" for key in keys) + "]"


@dataclass(frozen=True)
class Stage:
    """A stage that ``--skip`` accepts (at the level of the tuple that holds it), with what it writes."""

    name: str
    description: str
    workflow: str = ""  # participant stages: "module:function" of its init_*_wf builder ("": built elsewhere)
    needs: tuple[str, ...] = ()  # the stages whose outputs it reads (it is not built when one of them is skipped)


@dataclass(frozen=True, kw_only=True)
class GroupStage(Stage):
    """A group-level stage: the group runner (:func:`clbp_bidsapp.group.stages.run_stages`) is a loop over these.

    ``run`` and ``summary`` name functions of :mod:`clbp_bidsapp.group.stages` ("module:function"):
    ``run(context)`` does the work and returns its result (None: it did not run, and said why in the outcome);
    ``summary(context, result)`` gives the lines said when it ran. Adding a group stage is one record here and
    its functions there; ``tests/group/test_group_stages.py`` fails when a record's functions are missing or when
    the runner runs a stage outside this list.
    """

    run: str
    summary: str
    timed_as: str = ""  # its name in the budget's progress and stage-time line (group/budget.STAGES); "": not timed
    follow_up: str = ""  # "module:function" (context, result): tables from its written results (late steps)
    fans_out: bool = False  # its permutations go through group/fanout.py (--nprocs, --plugin SLURM)
    after_analyses: bool = False  # runs only once some analysis ran, after the reasons of those that did not


@dataclass(frozen=True)
class LocalMetric:
    """A voxelwise map computed per run at the participant level and compared voxelwise at the group level."""

    name: str  # stat- entity of its maps and its --group-metrics choice
    stage: str  # the participant stage (--skip name) that computes it
    label: str  # short name in tables, figures and the methods text
    group_label: str  # name in the group report ("weighted degree centrality")
    description: str  # sidecar Description: how the map is computed
    series: str  # "unfiltered" or "filtered": the denoised series (output of the denoising node) it is computed from
    kernel: str  # "module:function" of its core kernel
    interface: str  # "module:Class" of its nipype interface
    citations: tuple[str, ...]  # keys of data/citations.yaml
    methods: Callable[..., str]  # (metric settings, space=the run space) -> its methods phrase, citations included
    group_desc: str = "z"  # desc- entity of the standardised map the group level compares
    variants: tuple[str, ...] = ()  # desc- entities of its raw maps when it has several (degree centrality)
    within: str = "the brain"  # where the map is standardised
    smoothed: bool = True  # whether its standardised maps are smoothed with --smoothing-fwhm
    needs_mni: str = ""  # why it needs an MNI-aligned space ("": it does not); it is skipped in other spaces
    ml_roi: bool = True  # whether its regional means are features of the ML ``roi`` set

    @property
    def group_description(self) -> str:
        """What the group level compares, e.g. "ReHo (z within the brain, smoothed)"."""
        return f"{self.group_label} (z within {self.within}{', smoothed' if self.smoothed else ''})"

    @property
    def report_label(self) -> str:
        """Caption of its standardised map in the participant report."""
        return f"{self.group_label} (z{', smoothed' if self.smoothed else ''})"


@dataclass(frozen=True)
class MapFamily:
    """A family of group maps with one map per seed or network (their labels are ``<name>-<member>``)."""

    name: str  # --group-metrics choice and the label prefix
    stage: str  # the participant stage that writes the maps
    label: str
    description: str  # what ``--group-metrics`` help says about it


@dataclass(frozen=True)
class FeatureSetKind:
    """A feature set of the group ML stage (``--ml-feature-sets``), built by :mod:`clbp_bidsapp.group.ml`."""

    name: str
    stages: tuple[str, ...]  # the participant stages whose outputs it reads (empty: built from the other sets)
    description: str


@dataclass(frozen=True)
class Model:
    """A scikit-learn model of the group ML stage (built by :mod:`clbp_bidsapp.core.ml`)."""

    name: str  # --ml-models / --ml-regression-models choice
    task: str  # classification / regression
    label: str  # plain words, for the report and the methods text


def _dc_methods(m: MetricSettings, *, space=None, **_) -> str:
    """DC's phrase: the threshold, the grey-matter mask (``io/grey_matter``) for the run space, the node bound."""
    threshold = (
        f"r above the value whose one-sided p is {m.dc_threshold_p:g} given each run's effective degrees of "
        "freedom, recorded in each map's sidecar"
        if m.dc_threshold_p
        else f"r > {m.dc_threshold:g}"
    )
    mask = (
        f"the brain mask where a participant had none ({space.name} space has no template coordinates)"
        if space is not None and not space.mni_aligned
        else "nilearn's bundled MNI152 grey-matter template resampled to the run's grid where a participant had none"
    )
    return (
        f"binarised and weighted degree centrality ({threshold}) {_cite(('buckner2009', 'zuo2012'))} within grey "
        f"matter (fMRIPrep grey-matter probability > 0.2, or {mask}), computed on the mean series of blocks of "
        f"k^3 voxels, k the smallest integer keeping at most {m.dc_max_nodes} nodes"
        + (f" and blocks of at least {m.dc_resolution:g} mm" if m.dc_resolution else "")
        + " (k = 1 is the data grid; each run's mask and k are recorded in its sidecar)"
    )


LOCAL_METRICS: tuple[LocalMetric, ...] = (
    LocalMetric(
        name="alff",
        stage="alff",
        label="ALFF",
        group_label="ALFF",
        description="amplitude of low-frequency fluctuations (Zang 2007): mean single-sided FFT amplitude 2|X|/n in "
        "the band of the unfiltered denoised series",
        series="unfiltered",
        kernel="clbp_bidsapp.core.alff:alff_falff",
        interface="clbp_bidsapp.interfaces.metrics:ALFF",
        citations=("zang2007",),
        methods=lambda m, **_: f"ALFF {_cite(('zang2007',))} from the unfiltered denoised series",
    ),
    LocalMetric(
        name="falff",
        stage="alff",
        label="fALFF",
        group_label="fALFF",
        description="fractional ALFF (Zou 2008): band amplitude sum / amplitude sum over all frequencies above 0",
        series="unfiltered",
        kernel="clbp_bidsapp.core.alff:alff_falff",
        interface="clbp_bidsapp.interfaces.metrics:ALFF",
        citations=("zou2008",),
        methods=lambda m, **_: f"fALFF {_cite(('zou2008',))} from the same series",
    ),
    LocalMetric(
        name="reho",
        stage="reho",
        label="ReHo",
        group_label="ReHo",
        description="regional homogeneity (Zang 2004): Kendall's W of each voxel with its in-mask neighbours, on "
        "the band-passed, unsmoothed series",
        series="filtered",
        kernel="clbp_bidsapp.core.reho:reho",
        interface="clbp_bidsapp.interfaces.metrics:ReHo",
        citations=("zang2004",),
        methods=lambda m, **_: (
            f"regional homogeneity (Kendall's W over {m.reho_neighbourhood} voxels) {_cite(('zang2004',))}"
        ),
    ),
    LocalMetric(
        name="vmhc",
        stage="vmhc",
        label="VMHC",
        group_label="VMHC",
        description="voxel-mirrored homotopic connectivity (Zuo 2010): Fisher z of the correlation with the voxel "
        "nearest to (-x, y, z), on the band-passed series smoothed first (the map itself is not smoothed); voxels "
        "on the midline (their own mirror) and voxels whose mirror is outside the brain mask or on the midline are "
        "not analysed (0)",
        series="filtered",
        kernel="clbp_bidsapp.core.vmhc:vmhc",
        interface="clbp_bidsapp.interfaces.metrics:VMHC",
        citations=("zuo2010",),
        methods=lambda m, **_: f"voxel-mirrored homotopic connectivity (VMHC) {_cite(('zuo2010',))}",
        smoothed=False,
        needs_mni="its mirror plane is x = 0 in MNI coordinates",
        ml_roi=False,
    ),
    LocalMetric(
        name="dc",
        stage="dc",
        label="degree centrality",
        group_label="weighted degree centrality",
        description="degree centrality (Zuo 2012): correlations above the threshold with every other grey-matter "
        "voxel, self excluded, on the band-passed series",
        series="filtered",
        kernel="clbp_bidsapp.core.centrality:degree_centrality",
        interface="clbp_bidsapp.interfaces.metrics:DegreeCentrality",
        citations=("buckner2009", "zuo2012"),
        methods=_dc_methods,
        group_desc="weightedZ",
        variants=("binarized", "weighted"),
        within="grey matter",
    ),
)

MAP_FAMILIES: tuple[MapFamily, ...] = (
    MapFamily("fcz", "seedfc", "seed-based FC", "every seed's smoothed Fisher-z FC map"),
    MapFamily("dualreg", "dualreg", "dual regression", "the --group-networks components"),
)

PARTICIPANT_STAGES: tuple[Stage, ...] = (
    Stage(
        "tsnr", "mean and temporal SNR maps of the preprocessed BOLD", "clbp_bidsapp.workflows.denoising:init_tsnr_wf"
    ),
    Stage(
        "alff", "ALFF and fALFF maps (unfiltered denoised series)", "clbp_bidsapp.workflows.local_metrics:init_alff_wf"
    ),
    Stage("reho", "ReHo map (band-passed series)", "clbp_bidsapp.workflows.local_metrics:init_reho_wf"),
    Stage("vmhc", "VMHC map (band-passed, smoothed series)", "clbp_bidsapp.workflows.local_metrics:init_vmhc_wf"),
    Stage(
        "dc",
        "degree centrality maps, binarized and weighted (band-passed series, grey matter)",
        "clbp_bidsapp.workflows.local_metrics:init_dc_wf",
    ),
    Stage(
        "seedfc",
        "seed-based FC maps (Fisher z) of the seeds chosen with --seeds, and the seed series",
        "clbp_bidsapp.workflows.connectivity:init_seedfc_wf",
    ),
    Stage(
        "connectome",
        "region series, Pearson and partial correlation matrices of each --atlases atlas",
        "clbp_bidsapp.workflows.connectivity:init_connectome_wf",
    ),
    Stage(
        "graph",
        "graph measures of each connectome over the sparsity range (needs connectome)",
        "clbp_bidsapp.workflows.connectivity:init_graph_wf",
        needs=("connectome",),
    ),
    Stage(
        "dualreg",
        "dual regression onto the reference networks (--networks)",
        "clbp_bidsapp.workflows.connectivity:init_dualreg_wf",
    ),
    # built by workflows/participant.py from what the other stages give (the run's part: workflows/report.py)
    Stage("report", "the HTML report OUTPUT_DIR/sub-<label>.html"),
    # built per ASL run by workflows/perfusion.py (with --aslprep-dir)
    Stage("cbf", "CBF maps (absolute, relative, z) from the ASLPrep derivatives of --aslprep-dir"),
)

_GS = "clbp_bidsapp.group.stages"

GROUP_STAGES: tuple[GroupStage, ...] = (  # in the order they run
    GroupStage(
        "qc", "group QC table (motion, censoring, retained time per run and group)",
        run=f"{_GS}:run_qc", summary=f"{_GS}:no_summary",
    ),
    GroupStage(
        "ica", "group ICA (CanICA) with dual regression, when the denoised series were saved (--save-denoised)",
        run=f"{_GS}:run_ica", summary=f"{_GS}:ica_summary", timed_as="ica",
    ),
    GroupStage(
        "stats",
        "voxelwise CLBP-versus-control GLM (and clinical correlations) of every map with permutation inference",
        run=f"{_GS}:run_stats", summary=f"{_GS}:stats_summary", timed_as="voxelwise",
        follow_up=f"{_GS}:stats_concordance", fans_out=True,
    ),
    GroupStage(
        "connectome", "edge-wise tests, Network-Based Statistic and graph-measure comparisons of the ROI connectomes",
        run=f"{_GS}:run_connectome", summary=f"{_GS}:connectome_summary", timed_as="connectome", fans_out=True,
    ),
    GroupStage(
        "ml",
        "machine learning: CLBP-versus-control classification and pain prediction (nested CV, permutation p)",
        run=f"{_GS}:run_ml", summary=f"{_GS}:ml_summary", timed_as="ml",
    ),
    GroupStage(
        "report", "the group HTML report OUTPUT_DIR/group.html",
        run=f"{_GS}:run_report", summary=f"{_GS}:report_summary", after_analyses=True,
    ),
)  # fmt: skip

ML_FEATURE_SET_KINDS: tuple[FeatureSetKind, ...] = (
    FeatureSetKind("roi", tuple(dict.fromkeys(m.stage for m in LOCAL_METRICS if m.ml_roi)),
                   "mean of each standardised local map per region of --ml-atlas"),
    FeatureSetKind("edges", ("connectome",), "Fisher-z edges of each connectome atlas"),
    FeatureSetKind("graph", ("graph",), "area under the density curve of the global graph measures"),
    FeatureSetKind("dualreg", ("dualreg",), "dual-regression network strength"),
    FeatureSetKind("cbf", ("cbf",), "mean relative CBF per region of --ml-atlas (ASLPrep input; absent without)"),
    FeatureSetKind("combined", (), "all the other sets side by side"),
)  # fmt: skip

MODELS: tuple[Model, ...] = (
    Model("linear_svm", "classification", "linear support vector machine"),
    Model("rbf_svm", "classification", "support vector machine with a radial basis function kernel"),
    Model("logistic_l2", "classification", "L2-penalised logistic regression"),
    Model("logistic_enet", "classification", "elastic-net logistic regression"),
    Model("random_forest", "classification", "random forest"),
    Model("ridge", "regression", "ridge regression"),
    Model("svr", "regression", "linear support vector regression"),
)


# -- derived lists -------------------------------------------------------------------------------------------------


def local_metric(name: str) -> LocalMetric:
    """The record of local metric ``name`` (KeyError when there is none)."""
    for metric in LOCAL_METRICS:
        if metric.name == name:
            return metric
    raise KeyError(name)


def metrics_of_stage(stage: str) -> tuple[LocalMetric, ...]:
    return tuple(m for m in LOCAL_METRICS if m.stage == stage)


def metrics_on(series: str) -> tuple[LocalMetric, ...]:
    """The local metrics computed from the ``unfiltered`` or ``filtered`` denoised series."""
    return tuple(m for m in LOCAL_METRICS if m.series == series)


GROUP_METRICS: tuple[str, ...] = tuple(m.name for m in LOCAL_METRICS) + tuple(f.name for f in MAP_FAMILIES)
ML_ROI_METRICS: tuple[str, ...] = tuple(m.name for m in LOCAL_METRICS if m.ml_roi)
ML_FEATURE_SETS: tuple[str, ...] = tuple(kind.name for kind in ML_FEATURE_SET_KINDS)
ML_CLASSIFIERS: tuple[str, ...] = tuple(m.name for m in MODELS if m.task == "classification")
ML_REGRESSORS: tuple[str, ...] = tuple(m.name for m in MODELS if m.task == "regression")
MODEL_LABELS: dict[str, str] = {m.name: m.label for m in MODELS}
