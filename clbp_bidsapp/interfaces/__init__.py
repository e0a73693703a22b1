"""Thin nipype interfaces: load with io, compute with core, write with io (no maths here).

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
