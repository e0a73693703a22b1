"""The only code that touches files: pybids queries, NIfTI loading, derivatives naming and atomic writes.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
