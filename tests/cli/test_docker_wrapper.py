"""clbp-bidsapp-docker without an engine: mounts, rewritten arguments, printed commands."""

import csv
import json
import os
import shlex
import subprocess
import sys

import pytest

from clbp_bidsapp.cli.docker import apptainer_command, docker_command, docker_mount, plan_run


def test_mounts_and_arguments(tmp_path):
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"acquisition": "x"}}))
    plan = plan_run([str(bids), str(out), "participant", "--participant-label", "01", "--fmriprep-dir",
                     str(bids / "derivatives" / "fmriprep"), "-w", str(work), f"--bids-filter-file={filters}",
                     "--nprocs", "2"])  # fmt: skip
    assert plan.args == ["/data", "/out", "participant", "--participant-label", "01", "--bids-filter-file",
                         "/mnt/in1/filters.json", "--fmriprep-dir", "/mnt/fmriprep_dir", "--work-dir", "/mnt/work",
                         "--nprocs", "2"]  # fmt: skip
    mounts = {container: (host, ro) for host, container, ro in plan.mounts}
    assert mounts["/data"] == (str(bids.resolve()), True)  # the input dataset is read-only
    assert mounts["/out"] == (str(out.resolve()), False)
    assert mounts["/mnt/work"] == (str(work.resolve()), False)
    assert mounts["/mnt/in1"] == (str(tmp_path.resolve()), True)  # user files: read-only
    assert not out.exists() and not work.exists(), "planning (and --print-command) creates nothing on the host"

    command = docker_command(plan, "clbp-bidsapp:test")
    assert command[:3] == ["docker", "run", "--rm"]
    assert "--read-only" in command and command[command.index("--network") :][:2] == ["--network", "none"]
    assert f"{os.getuid()}:{os.getgid()}" in command
    assert f"type=bind,source={bids.resolve()},target=/data,readonly" in command
    assert command[command.index("clbp-bidsapp:test") + 1 :] == plan.args
    sif = apptainer_command(plan, "clbp.sif")
    assert sif[:3] == ["apptainer", "run", "--cleanenv"] and f"{bids.resolve()}:/data:ro" in sif


def test_options_before_the_positionals_still_mount(tmp_path):
    """Before: with options first, nothing was mounted and host paths went into the container."""
    bids, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    bids.mkdir()
    plan = plan_run(["-w", str(work), "--nprocs", "2", "--no-band-pass", "-vv", str(bids), str(out), "participant"])
    assert plan.args == ["/data", "/out", "participant", "--no-band-pass", "--work-dir", "/mnt/work", "--nprocs",
                         "2", "--verbose", "--verbose"]  # fmt: skip
    assert {c for _, c, _ in plan.mounts} == {"/data", "/out", "/mnt/work"}


def test_rewritten_arguments_mean_the_same_to_the_app(tmp_path):
    """The container's arguments parse to the same settings as the host's, paths aside."""
    from clbp_bidsapp.cli.parser import build_parser

    (tmp_path / "bids").mkdir()
    host = [str(tmp_path / "bids"), str(tmp_path / "out"), "group", "--no-tfce", "--covariates", "--skip", "ml",
            "--band-pass", "0.01", "0.1", "--ml-models", "linear_svm", "rbf_svm", "-v", "--clean-workdir",
            "--space", "MNI152NLin6Asym:res-2", "--no-ml-leave-site-out", "--strategy", "36P"]  # fmt: skip
    parser = build_parser()
    expected = vars(parser.parse_args(host))
    got = vars(parser.parse_args(plan_run(host).args))
    for key in ("bids_dir", "output_dir"):
        expected.pop(key), got.pop(key)
    assert got == expected


def test_user_files_are_mounted_read_only_and_rewritten(tmp_path, monkeypatch):
    """Before: --seeds, --atlases, --strategy, --networks, --config-file files were passed as host paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bids").mkdir()
    files = tmp_path / "my files"
    files.mkdir()
    for name in ("seeds.tsv", "atlas.nii.gz", "atlas.tsv", "strategy.yml", "nets.nii.gz", "c.toml"):
        (files / name).write_text("x")
    plan = plan_run([str(tmp_path / "bids"), str(tmp_path / "out"), "participant",
                     "--seeds", "pcc", str(files / "seeds.tsv"), "--atlases", "harvardoxford",
                     str(files / "atlas.nii.gz"), "--strategy", "my files/strategy.yml",  # relative to the cwd
                     "--networks", str(files / "nets.nii.gz"), "--config-file", str(files / "c.toml")])  # fmt: skip
    args = plan.args
    folder = next(c for h, c, ro in plan.mounts if h == str(files.resolve()) and ro)
    assert args[args.index("--seeds") + 1 : args.index("--seeds") + 3] == ["pcc", f"{folder}/seeds.tsv"]
    assert args[args.index("--atlases") + 1 : args.index("--atlases") + 3] == [
        "harvardoxford",
        f"{folder}/atlas.nii.gz",
    ]
    assert args[args.index("--strategy") + 1] == f"{folder}/strategy.yml"
    assert args[args.index("--networks") + 1] == f"{folder}/nets.nii.gz"
    assert args[args.index("--config-file") + 1] == f"{folder}/c.toml"
    assert not any(str(tmp_path) in a for a in args), "no host path reaches the container"


def test_paths_inside_a_config_file_are_mounted_and_rewritten(tmp_path, monkeypatch):
    """Before: a replayed --config-file kept its host paths (fMRIPrep folder, strategy, seeds), which do not exist
    in the container. A command-line option still wins over the file, and container paths in the file are kept."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bids").mkdir()
    fmriprep = tmp_path / "fmriprep"
    fmriprep.mkdir()
    files = tmp_path / "files"
    files.mkdir()
    for name in ("strategy.yml", "seeds.tsv", "other.yml"):
        (files / name).write_text("x")
    config = files / "c.toml"
    config.write_text(
        f'[inputs]\nfmriprep_dir = "{fmriprep}"\n[denoise]\nstrategy = "{files / "strategy.yml"}"\n'
        f'[connectivity]\nseeds = ["pcc", "{files / "seeds.tsv"}"]\n[execution]\nwork_dir = "/mnt/work"\n'
    )
    args = plan_run([str(tmp_path / "bids"), str(tmp_path / "out"), "participant", "--config-file", str(config),
                     "--strategy", str(files / "other.yml")]).args  # fmt: skip
    assert args[args.index("--fmriprep-dir") + 1] == "/mnt/fmriprep_dir"
    assert args[args.index("--strategy") + 1].endswith("/other.yml"), "the command line wins over the file"
    assert args[args.index("--seeds") + 1 : args.index("--seeds") + 3][0] == "pcc"
    assert args[args.index("--seeds") + 2].startswith("/mnt/in")
    assert "--work-dir" not in args, "a container path saved in the file is not a host folder to mount"
    assert not any(str(tmp_path) in a for a in args), "no host path reaches the container"


def test_paths_with_colons_commas_and_quotes(tmp_path):
    """docker --mount is CSV: a field holding ',' or '"' is quoted with quotes doubled; ':' needs nothing.
    Apptainer's -B cannot escape ':' or ',': one line and exit 2. Before: -v host:container broke on ':'."""
    bids = tmp_path / 'da:ta, "x"'
    bids.mkdir()
    plan = plan_run([str(bids), str(tmp_path / "out"), "participant"])
    value = docker_mount(*plan.mounts[0])
    assert next(csv.reader([value])) == ["type=bind", f"source={bids.resolve()}", "target=/data", "readonly"]
    done = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli.docker", "--print-command", "--apptainer", "x.sif", str(bids),
         str(tmp_path / "out"), "participant"], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"clbp-bidsapp: error: {bids.resolve()}: Apptainer's -B cannot bind a path holding ':' or ','; "
        "rename or link the folder"
    ]


def test_print_command_needs_no_engine(tmp_path):
    """It prints only: before, it created OUTPUT_DIR and the working folder on the host."""
    done = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli.docker", "--print-command", "--image", "img:1",
         str(tmp_path / "bids"), str(tmp_path / "out"), "group"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    words = shlex.split(done.stdout)
    assert words[0] == "docker" and words[-4:] == ["img:1", "/data", "/out", "group"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-w", "{bids}/code/work"], "--work-dir {bids}/code/work is inside the input dataset {bids}"),
        (
            ["--bids-database-dir", "{bids}/derivatives/fmriprep/db"],
            "--bids-database-dir {bids}/derivatives/fmriprep/db",
        ),
        (["-w", "{out}"], "--work-dir {out} is the output folder"),
    ],
)
def test_writable_mounts_inside_the_input_are_refused(tmp_path, args, message):
    """In the container the input (/data, read-only) and a writable folder inside it (/mnt/work) are separate
    mounts, so the app could not see the overlap: the wrapper applies the app's rule to the host paths."""
    bids, out = tmp_path / "bids", tmp_path / "out"
    (bids / "derivatives" / "fmriprep").mkdir(parents=True)
    fill = {"bids": bids, "out": out}
    done = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli.docker", "--print-command", str(bids), str(out), "participant",
         *(a.format(**fill) for a in args)], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout
    assert len(done.stderr.strip().splitlines()) == 1 and message.format(**fill) in done.stderr, done.stderr
    assert sorted(p.name for p in bids.iterdir()) == ["derivatives"] and not out.exists()
