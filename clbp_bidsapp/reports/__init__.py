"""HTML reports, figures and the methods text with citations.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
