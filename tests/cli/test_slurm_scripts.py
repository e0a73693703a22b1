"""The SLURM script writer (no cluster needed): one participant per array task, group after the array."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clbp_bidsapp.cli import slurm


def test_scripts_for_bare_metal_and_apptainer(tmp_path):
    args = slurm.build_parser().parse_args(
        [
            str(tmp_path / "bids"),
            str(tmp_path / "out"),
            "--participant-label",
            "sub-01",
            "02",
            "--cpus",
            "3",
            "--max-parallel",
            "5",
            "--sbatch-args",
            "--partition=short --account=pain",
        ]
    )
    scripts = slurm.render_scripts(args, ["01", "02"], ["--strategy", "36P"])
    assert scripts["participants.txt"] == "01\n02\n"
    array = scripts["participant.sbatch"]
    assert "#SBATCH --array=1-2%5" in array
    assert "#SBATCH --cpus-per-task=3" in array
    assert "#SBATCH --partition=short" in array and "#SBATCH --account=pain" in array
    assert '--participant-label "$LABEL"' in array
    assert "--strategy 36P" in array and "--nprocs 3" in array
    assert f'-w {(tmp_path / "out" / "work").resolve()}/sub-"$LABEL"' in array
    assert "--dependency=afterany:$ARRAY" in scripts["submit.sh"]
    assert " group " in scripts["group.sbatch"]

    args.apptainer = tmp_path / "clbp.sif"
    scripts = slurm.render_scripts(args, ["01"], [])
    assert "apptainer run --cleanenv --containall" in scripts["participant.sbatch"]
    assert f"-B {(tmp_path / 'bids').resolve()}:{(tmp_path / 'bids').resolve()}:ro" in scripts["participant.sbatch"]


def test_bash_syntax_of_written_scripts(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clbp_bidsapp.cli.slurm",
            str(tmp_path),
            str(out),
            "--participant-label",
            "01",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    for name in ("participant.sbatch", "group.sbatch", "submit.sh"):
        check = subprocess.run(["bash", "-n", str(out / "logs" / "slurm" / name)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


HOSTILE = "out $(touch PWNED-dollar) `touch PWNED-backtick` \"dq\" 'sq' ; touch PWNED-semicolon\nnew line"


def _fake(bin_dir: Path, name: str, record: Path, stdout: str = "") -> None:
    """A stand-in for ``name`` that records its arguments as JSON (one list per call) and prints ``stdout``."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(record)!r}, 'a') as f: f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"print({stdout!r})\n"
    )
    script.chmod(0o755)


def test_hostile_names_reach_the_app_as_plain_words(tmp_path):
    """An output folder (and work folder, extra argument) named with $(…), backticks, quotes, ; and a newline:
    the written scripts, run by bash with stand-ins for clbp-bidsapp and sbatch, pass each name unchanged as one
    argument and execute nothing from it. Before the fix, the work path was put in double quotes unescaped."""
    bids, out, work = tmp_path / "bids", tmp_path / HOSTILE, tmp_path / f"work {HOSTILE}"
    bids.mkdir()
    fake_bin, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    _fake(fake_bin, "clbp-bidsapp", record)
    _fake(fake_bin, "sbatch", record, stdout="4242")
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1"}
    extra = ["--task-pattern", "$(touch PWNED-extra)"]
    done = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli.slurm", str(bids), str(out), "--participant-label", "01",
         "--work-dir", str(work), "--", *extra],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scripts = out / "logs" / "slurm"
    for name in ("participant.sbatch", "group.sbatch", "submit.sh"):
        run = subprocess.run(["bash", str(scripts / name)], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert run.returncode == 0, (name, run.stderr)
    assert not list(tmp_path.rglob("PWNED*")), "a command inside a name was executed"
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    participant, group, sbatch_array, sbatch_group = calls
    assert participant == [str(bids.resolve()), str(out.resolve()), "participant", *extra, "--participant-label",
                           "01", "--nprocs", "2", "-w", f"{work.resolve()}/sub-01"]  # fmt: skip
    assert group == [str(bids.resolve()), str(out.resolve()), "group", *extra, "-w", f"{work.resolve()}/group"]
    assert sbatch_array == [
        "--parsable",
        f"--output={scripts}/participant-%A_%a.log",
        str(scripts / "participant.sbatch"),
    ]
    assert sbatch_group[-1] == str(scripts / "group.sbatch") and "--dependency=afterany:4242" in sbatch_group


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["--participant-label", "01;x"], "'01;x': not a valid BIDS label"),
        (["--mem", "8G\n#SBATCH --x"], "--mem '8G\\n#SBATCH --x': expected a SLURM value"),
        (["--sbatch-args", "'--partition=a\necho hi'"], "is not an sbatch option"),
        (["--apptainer", "img.sif", "--work-dir", "/tmp/a:b"], "Apptainer cannot bind a path holding ':' or ','"),
    ],
)
def test_values_that_cannot_stay_one_value_are_refused(tmp_path, option, fragment):
    done = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli.slurm", str(tmp_path), str(tmp_path / "out"), *option,
         *([] if "--participant-label" in option else ["--participant-label", "01"])],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert fragment in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "logs").exists()


def test_plain_log_paths_stay_in_the_sbatch_lines(tmp_path):
    """A direct ``sbatch participant.sbatch`` rerun logs next to the scripts when the path is plain; a path with
    spaces or shell characters is given only on sbatch's command line in submit.sh (quoted)."""
    plain = slurm.build_parser().parse_args([str(tmp_path / "bids"), str(tmp_path / "out")])
    script = slurm.render_scripts(plain, ["01"], [])["participant.sbatch"]
    assert f"#SBATCH --output={(tmp_path / 'out').resolve()}/logs/slurm/participant-%A_%a.log\n" in script
    odd = slurm.build_parser().parse_args([str(tmp_path / "bids"), str(tmp_path / "out $(x)")])
    scripts = slurm.render_scripts(odd, ["01"], [])
    assert "#SBATCH --output" not in scripts["participant.sbatch"] + scripts["group.sbatch"]
    assert "'--output=" in scripts["submit.sh"]
