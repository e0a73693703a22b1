#!/usr/bin/env bash
# The main job on the embedded synthetic dataset: generate it, run participant + group, say where outputs are.
# Usage: bash scripts/demo.sh [DEMO_DIR]   (default: ./demo-output)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${1:-$ROOT/demo-output}
bash "$ROOT/scripts/setup-venv.sh"
BIN="$ROOT/.venv/bin"
rm -rf "$DEMO"
"$BIN/clbp-bidsapp-synth" "$DEMO/bids" --voxel-size 4 --n-volumes 120 --tr 2.0 --n-patients 6 --n-controls 6
"$BIN/clbp-bidsapp" "$DEMO/bids" "$DEMO/out" participant --nprocs 2 -w "$DEMO/work"
# 1000 permutations (default 5000) keep the demo's group level to a few minutes on 2 cores
"$BIN/clbp-bidsapp" "$DEMO/bids" "$DEMO/out" group --n-permutations 1000
echo
echo "Synthetic dataset:        $DEMO/bids (fMRIPrep derivatives in $DEMO/bids/derivatives/fmriprep)"
echo "Participant derivatives:  $DEMO/out/sub-*/func"
echo "Participant reports:      $DEMO/out/sub-*.html"
echo "Group report:             $DEMO/out/group.html"
echo "Group outputs:            $DEMO/out/group (cluster tables: $DEMO/out/group/*_desc-clusters_table.tsv,"
echo "                          connectome statistics: $DEMO/out/group/atlas-*)"
echo "Settings of this run:     $(ls "$DEMO"/out/logs/config-*.toml | head -n 2 | tr '\n' ' ')"
