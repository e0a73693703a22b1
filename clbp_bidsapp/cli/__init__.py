"""Command line: parsers (no side effects), validation of every setting at once, dispatch, container and SLURM wrappers.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
