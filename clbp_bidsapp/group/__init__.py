"""Group level: participant inclusion, voxelwise GLM with permutation inference, connectomes, ICA, ML.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
