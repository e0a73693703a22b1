"""The real image on the real engine, run the way Singularity/Apptainer runs it: read-only root file system,
an arbitrary UID, no network, a writable /tmp only.

Skipped with the reason when no Docker engine answers or the image is absent; failing instead when
CLBP_REQUIRE_DOCKER=1 (CI sets it after building the image), so CI can never skip these silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.container
IMAGE = os.environ.get("CLBP_IMAGE", "clbp-bidsapp:ci")
UID = "1000:1000"


def _engine_and_image() -> str | None:
    if shutil.which("docker") is None:
        return "the docker client is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (start one with .ci/docker-up.sh)"
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        return f"image {IMAGE} is not built (see .ci/run)"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    why = _engine_and_image()
    if why is not None:
        if os.environ.get("CLBP_REQUIRE_DOCKER") == "1":
            pytest.fail(f"CLBP_REQUIRE_DOCKER=1 but {why}")
        pytest.skip(why)
    return IMAGE


def run(image: str, *args: str, mounts: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = ["docker", "run", "--rm", "--read-only", "--user", UID, "--network", "none", "--tmpfs", "/tmp"]
    for mount in mounts:
        command += ["-v", mount]
    return subprocess.run([*command, image, *args], capture_output=True, text=True, timeout=900)


def test_version_and_help(image):
    version = run(image, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("clbp-bidsapp ")
    helped = run(image, "--help")
    assert helped.returncode == 0 and "--participant-label" in helped.stdout


def test_missing_input_is_a_one_line_error(image):
    result = run(image, "/data/nope", "/tmp/out", "participant")
    assert result.returncode == 2
    assert result.stderr.strip() == "clbp-bidsapp: error: BIDS_DIR /data/nope does not exist or is not a folder"


def test_participant_and_group_read_only_any_uid(image, small_dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    mounts = (f"{small_dataset.root}:/data:ro", f"{out}:/out")
    participant = run(image, "/data", "/out", "participant", "--nprocs", "2", "--min-dof", "0", mounts=mounts)
    assert participant.returncode == 0, participant.stderr
    assert "Traceback" not in participant.stderr
    group = run(image, "/data", "/out", "group", "--n-permutations", "100", "--covariates", mounts=mounts)
    assert group.returncode == 0, group.stderr
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Container"]["Type"] == "docker"
    maps = sorted(out.glob(f"sub-*/func/*_res-{small_dataset.res}_stat-reho_boldmap.nii.gz"))
    assert len(maps) == len(small_dataset.participants)
    assert (out / "group" / "desc-design_participants.tsv").is_file()
    owners = {p.stat().st_uid for p in out.rglob("*") if p.is_file()}
    assert owners == {1000}, "outputs must belong to the invoking user"
    assert all(Path(p).is_file() for p in (out / f"sub-{label}.html" for label in small_dataset.participants))

    # the docker-py wrapper, for real: host paths in, mounted read-only, run as the calling user
    wrapped = subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli.docker", "--image", image, str(small_dataset.root), str(out),
         "group", "--skip", "qc", "stats", "--covariates"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert wrapped.returncode == 0, wrapped.stderr
    assert "CLBP and" in wrapped.stderr  # the container's log was streamed
