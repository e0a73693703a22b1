#!/usr/bin/env bash
# The whole test suite: install, lint (ruff + import-linter layer contracts), then pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/core -x`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup-venv.sh
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== import-linter"
.venv/bin/lint-imports --no-cache
echo "== docs (mkdocs --strict: any warning fails)"
DOCS_SITE=$(mktemp -d)
.venv/bin/mkdocs build --strict --quiet --site-dir "$DOCS_SITE"
rm -rf "$DOCS_SITE"
echo "== pytest"
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" -p no:cacheprovider "$@"
