"""--aslprep-dir through the container and SLURM wrappers: mounted read-only and rewritten, like --fmriprep-dir."""

from __future__ import annotations

import json

from clbp_bidsapp.cli import slurm
from clbp_bidsapp.cli.docker import apptainer_command, plan_run


def test_docker_wrapper_mounts_and_rewrites_the_aslprep_dir(tmp_path):
    bids, out, asl = tmp_path / "bids", tmp_path / "out", tmp_path / "elsewhere" / "aslprep"
    bids.mkdir()
    asl.mkdir(parents=True)
    plan = plan_run([str(bids), str(out), "participant", "--aslprep-dir", str(asl)])
    assert plan.args[plan.args.index("--aslprep-dir") + 1] == "/mnt/aslprep_dir"
    mounts = {container: (host, ro) for host, container, ro in plan.mounts}
    assert mounts["/mnt/aslprep_dir"] == (str(asl.resolve()), True)  # an input: read-only
    assert str(asl) not in plan.args, "no host path reaches the container"
    assert f"{asl.resolve()}:/mnt/aslprep_dir:ro" in apptainer_command(plan, "clbp.sif")


def test_docker_wrapper_mounts_an_aslprep_dir_named_in_a_config_file(tmp_path):
    bids, out, asl = tmp_path / "bids", tmp_path / "out", tmp_path / "asl"
    bids.mkdir()
    asl.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f"[inputs]\naslprep_dir = {json.dumps(str(asl))}\n")
    plan = plan_run([str(bids), str(out), "participant", "--config-file", str(config)])
    assert str(asl.resolve()) in {host for host, _, _ in plan.mounts}


def test_slurm_scripts_pass_and_bind_the_aslprep_dir_at_the_participant_level(tmp_path):
    asl = tmp_path / "deriv" / "asl prep"  # a space: one quoted word
    args = slurm.build_parser().parse_args([str(tmp_path / "bids"), str(tmp_path / "out"), "--participant-label",
                                            "01", "--aslprep-dir", str(asl)])  # fmt: skip
    scripts = slurm.render_scripts(args, ["01"], [])
    quoted = f"'{asl.resolve()}'"
    assert f"--aslprep-dir {quoted}" in scripts["participant.sbatch"]
    assert "--aslprep-dir" not in scripts["group.sbatch"]  # the group level reads the CBF maps from OUTPUT_DIR
    args.apptainer = tmp_path / "clbp.sif"
    scripts = slurm.render_scripts(args, ["01"], [])
    assert f"-B '{asl.resolve()}:{asl.resolve()}:ro'" in scripts["participant.sbatch"]


def test_slurm_participants_include_those_with_cbf_only(tmp_path):
    from clbp_bidsapp.testing.synthetic import make_dataset

    root = make_dataset(tmp_path / "ds", n_patients=1, n_controls=1, n_volumes=12, aslprep=True).root
    asl = root / "derivatives" / "aslprep"
    (asl / "sub-99" / "perf").mkdir(parents=True)
    extra = next((asl / "sub-01").rglob("*_cbf.nii.gz"))
    (asl / "sub-99" / "perf" / extra.name.replace("sub-01", "sub-99")).write_bytes(extra.read_bytes())
    assert "99" not in slurm.discover_participants(root, None)
    assert "99" in slurm.discover_participants(root, None, asl)
