"""Small functions applied on graph edges (nipype runs their source, so each is self-contained)."""

from __future__ import annotations


def listify(value):
    """One value as a one-item list (a single sidecar file where a node takes a list of them)."""
    return [value]


def pick(values, index):
    """Item ``index`` of a node's list output."""
    return values[index]


def head(values, n):
    """The first ``n`` items of a node's list output."""
    return values[:n]
