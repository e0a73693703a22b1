"""init_*_wf graph builders of the participant level and the code that runs them.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
