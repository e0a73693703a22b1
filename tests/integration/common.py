"""Helpers shared by the command-line test files."""

from __future__ import annotations


def with_min_dof(args: tuple) -> tuple:
    """Participant-level runs of tiny test datasets (30-80 volumes) are not about the DOF rule: ``--min-dof 0``."""
    return (*args, "--min-dof", "0") if "participant" in map(str, args) else args
