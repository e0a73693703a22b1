"""Connectivity part of a run's graph: seed FC maps, atlas connectomes, graph measures, dual regression.

All of it runs on the band-passed denoised series (``denoise.filtered``), unsmoothed; seed FC maps are also
written smoothed (``desc-<seed>Smoothed``) for the group level.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from nipype.pipeline import engine as pe

from clbp_bidsapp.config import ConnectivitySettings
from clbp_bidsapp.interfaces.connectivity import Connectome, DualRegression, GraphMeasures, SeedFC
from clbp_bidsapp.io import atlases
from clbp_bidsapp.workflows.utils import listify, pick

FC_DESCRIPTION = (
    "seed-based functional connectivity: Fisher z (arctanh) of the Pearson correlation between the seed's mean "
    "band-passed denoised series and each voxel's"
)


def add_connectivity(
    workflow: pe.Workflow,
    *,
    load: pe.Node,
    denoise_node: pe.Node,
    sink: Callable[..., pe.Node],
    settings: ConnectivitySettings,
    smoothing_fwhm: float,
    random_seed: int,
    skip: Collection[str] = (),
) -> dict[str, list]:
    """Add the connectivity nodes of one run to ``workflow``; return what the run report shows.

    Parameters
    ----------
    load : node with ``grid`` (the run's mask and affine)
    denoise_node : node with ``filtered`` (band-passed series) and ``provenance`` (denoising sidecar JSON)
    sink : factory of derivative sinks for this run (``sink(label, suffix=..., **entities)``)
    settings : seeds, atlases, coverage, graph and network settings
    smoothing_fwhm : FWHM (mm) of the smoothed seed maps
    random_seed : seed of the random networks of the graph measures
    skip : stage names not to run (``seedfc``, ``connectome``, ``graph``, ``dualreg``)

    Returns
    -------
    ``{report input: [(node, output, ...)]}`` for the run report: the first seeds' FC maps (``fc_maps`` with
    their ``fc_titles``), each atlas's Pearson matrix (``relmats``, ``regions``, ``atlas_names``) and global
    graph measures (``graphs``).
    """
    report: dict[str, list] = {"fc_maps": [], "fc_titles": [], "relmats": [], "regions": [], "atlas_names": [],
                               "graphs": []}  # fmt: skip
    inputs = [(denoise_node, "filtered", "series"), (load, "grid", "grid")]

    def feed(node: pe.Node) -> None:
        for source, field, target in inputs:
            workflow.connect(source, field, node, target)

    def publish(node: pe.Node, field: str, label: str, **kw) -> pe.Node:
        ds = sink(label, **kw)
        workflow.connect(
            [(node, ds, [(field, "in_file")]), (denoise_node, ds, [(("provenance", listify), "metadata_files")])]
        )
        return ds

    if "seedfc" not in skip and settings.seeds:
        seeds = atlases.select_seeds(settings.seeds)
        seed_fc = pe.Node(
            SeedFC(
                seeds=seeds.astype(str).to_dict("records"),
                min_coverage=settings.min_region_coverage,
                fwhm=smoothing_fwhm,
            ),
            name="seed_fc",
        )
        feed(seed_fc)
        for index, name in enumerate(seeds["name"][:REPORT_SEEDS]):
            report["fc_maps"].append((seed_fc, ("fcz", pick, index)))
            report["fc_titles"].append(f"seed {name}")
        for index, name in enumerate(seeds["name"]):
            for field, desc, smoothed in (("fcz", name, 0.0), ("fcz_smoothed", f"{name}Smoothed", smoothing_fwhm)):
                ds = sink(
                    f"fcz_{desc}",
                    suffix="boldmap",
                    desc=desc,
                    stat="fcz",
                    metadata={"Description": FC_DESCRIPTION, "SmoothingFWHM": smoothed},
                )
                workflow.connect([
                    (seed_fc, ds, [((field, pick, index), "in_file"), (("metadata", pick, index), "metadata_file")]),
                    (denoise_node, ds, [(("provenance", listify), "metadata_files")]),
                ])  # fmt: skip
        publish(
            seed_fc,
            "timeseries",
            "seed_timeseries",
            suffix="timeseries",
            extension=".tsv",
            desc="seeds",
            stat="mean",
            metadata={"Description": "mean band-passed denoised series of each seed"},
        )
        publish(
            seed_fc,
            "regions",
            "seed_regions",
            suffix="regions",
            extension=".tsv",
            desc="seeds",
            metadata={"Description": "seed definitions on the BOLD grid with their coverage by the brain mask"},
        )

    connectomes = {}
    if "connectome" not in skip:
        for atlas in settings.atlases:
            label = atlas if atlas in atlases.ATLASES else atlases.user_atlas_name(atlas)
            node = pe.Node(
                Connectome(atlas=str(atlas), min_coverage=settings.min_region_coverage), name=f"connectome_{label}"
            )
            feed(node)
            connectomes[label] = node
            report["relmats"].append((node, "pearson"))
            report["regions"].append((node, "regions"))
            report["atlas_names"].append(label)
            ents = {"atlas": label, "extension": ".tsv"}
            publish(
                node,
                "timeseries",
                f"{label}_timeseries",
                suffix="timeseries",
                stat="mean",
                **ents,
                metadata={"Description": "mean band-passed denoised series of each region"},
            )
            publish(
                node,
                "regions",
                f"{label}_regions",
                suffix="regions",
                **ents,
                metadata={"Description": "regions on the BOLD grid with their coverage by the brain mask"},
            )
            for field, stat in (("pearson", "pearsoncorrelation"), ("partial", "partialcorrelation")):
                ds = sink(
                    f"{label}_{field}",
                    suffix="relmat",
                    stat=stat,
                    **ents,
                    metadata={"Description": f"{field} correlation between region series"},
                )
                workflow.connect(
                    [
                        (node, ds, [(field, "in_file")]),
                        (denoise_node, ds, [(("provenance", listify), "metadata_files")]),
                    ]
                )
                workflow.connect(node, "metadata", ds, "metadata_file")

    if "graph" not in skip:
        for label, node in connectomes.items():
            graph = pe.Node(
                GraphMeasures(
                    sparsity=list(settings.graph_sparsity),
                    n_random=settings.graph_random_networks,
                    random_seed=random_seed,
                ),
                name=f"graph_{label}",
            )
            workflow.connect([(node, graph, [("pearson", "relmat"), ("regions", "regions")])])
            report["graphs"].append((graph, "global_measures"))
            ents = {"atlas": label, "extension": ".tsv"}
            ds_global = publish(
                graph,
                "global_measures",
                f"{label}_graph",
                suffix="measures",
                stat="graph",
                **ents,
                metadata={
                    "Description": "global graph measures per connection density and their area under the curve (AUC)"
                },
            )
            ds_nodal = publish(
                graph,
                "nodal_measures",
                f"{label}_nodal",
                suffix="measures",
                stat="nodal",
                **ents,
                metadata={"Description": "nodal graph measures per connection density and their AUC"},
            )
            for ds in (ds_global, ds_nodal):  # the sidecars say how (or why not) the measures were computed
                workflow.connect(graph, "metadata", ds, "metadata_file")

    if "dualreg" not in skip:
        dualreg = pe.Node(DualRegression(networks=settings.networks), name="dual_regression")
        feed(dualreg)
        for field, desc, normalised in (
            ("components", "dualreg", True),
            ("components_unnormalised", "dualregUnnormalised", False),
        ):
            ds = sink(
                desc,
                suffix="components",
                desc=desc,
                metadata={
                    "Description": "dual regression (Beckmann 2009) stage-2 maps, one volume per reference network",
                    "VarianceNormalisedTimecourses": normalised,
                },
            )
            workflow.connect(
                [
                    (dualreg, ds, [(field, "in_file")]),
                    (denoise_node, ds, [(("provenance", listify), "metadata_files")]),
                ]
            )
            workflow.connect(dualreg, "metadata", ds, "metadata_file")
        publish(
            dualreg,
            "timeseries",
            "dualreg_timeseries",
            suffix="timeseries",
            extension=".tsv",
            desc="dualreg",
            metadata={"Description": "dual regression stage-1 series, one column per reference network"},
        )
    return report


REPORT_SEEDS = 2  # seed FC maps shown in the run report
