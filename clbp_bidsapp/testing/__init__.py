"""Synthetic BIDS + fMRIPrep datasets (tests, benchmarks, demo) and the option space of the CLI tests.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
