"""Pure numpy/scipy kernels: arrays in, arrays out, (time, voxels) orientation; no file, nipype or pybids import.

Layering and conventions: docs/design.md (import-linter enforces the layers).
"""
