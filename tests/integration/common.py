"""Helpers shared by the command-line test files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path


def with_min_dof(args: tuple) -> tuple:
    """Participant-level runs of tiny test datasets (30-80 volumes) are not about the DOF rule: ``--min-dof 0``."""
    return (*args, "--min-dof", "0") if "participant" in map(str, args) else args


def run_app(*args: str | Path, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command line (``python -m clbp_bidsapp.cli``) with ``args``, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "clbp_bidsapp.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (root may write anywhere, so permissions prove nothing; hashes do)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_user_error(result: subprocess.CompletedProcess, code: int, *fragments: str, max_lines: int = 6) -> None:
    """Exit ``code``; a short stderr without a traceback that contains every fragment (file names, labels)."""
    err = result.stderr
    assert result.returncode == code, err
    assert "Traceback" not in err + result.stdout, err + result.stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= max_lines, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
