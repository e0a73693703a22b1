"""Helpers shared by the command-line test files."""

from __future__ import annotations

import subprocess


def with_min_dof(args: tuple) -> tuple:
    """Participant-level runs of tiny test datasets (30-80 volumes) are not about the DOF rule: ``--min-dof 0``."""
    return (*args, "--min-dof", "0") if "participant" in map(str, args) else args


def assert_user_error(result: subprocess.CompletedProcess, code: int, *fragments: str, max_lines: int = 6) -> None:
    """Exit ``code``; a short stderr without a traceback that contains every fragment (file names, labels)."""
    err = result.stderr
    assert result.returncode == code, err
    assert "Traceback" not in err + result.stdout, err + result.stdout
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= max_lines, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
