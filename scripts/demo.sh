#!/usr/bin/env bash
# The main job on the embedded synthetic dataset: generate it, run participant + group, say where outputs are.
# Usage: bash scripts/demo.sh [DEMO_DIR]   (default: ./demo-output)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${1:-$ROOT/demo-output}
bash "$ROOT/scripts/setup-venv.sh"
BIN="$ROOT/.venv/bin"
rm -rf "$DEMO"
"$BIN/clbp-bidsapp-synth" "$DEMO/bids" --voxel-size 4 --n-volumes 150 --tr 2.0 --n-patients 12 --n-controls 10 \
    --aslprep
# --save-denoised keeps the band-passed series, which the group ICA needs; --aslprep-dir adds the CBF maps
SECONDS=0
"$BIN/clbp-bidsapp" "$DEMO/bids" "$DEMO/out" participant --nprocs 2 -w "$DEMO/work" --save-denoised \
    --aslprep-dir "$DEMO/bids/derivatives/aslprep"
PARTICIPANT_SECONDS=$SECONDS
# the group level at its defaults (sized for a study: docs/performance.md), its permutations on both cores
SECONDS=0
"$BIN/clbp-bidsapp" "$DEMO/bids" "$DEMO/out" group --nprocs 2 -w "$DEMO/work"
GROUP_SECONDS=$SECONDS
echo
echo "Wall time:                participant level ${PARTICIPANT_SECONDS} s, group level ${GROUP_SECONDS} s (docs/performance.md)"
echo "Synthetic dataset:        $DEMO/bids (fMRIPrep derivatives in $DEMO/bids/derivatives/fmriprep)"
echo "Participant derivatives:  $DEMO/out/sub-*/func"
echo "Participant reports:      $DEMO/out/sub-*.html"
echo "Group report:             $DEMO/out/group.html"
echo "Group outputs:            $DEMO/out/group (cluster tables: $DEMO/out/group/*_desc-clusters_table.tsv,"
echo "                          connectome statistics: $DEMO/out/group/atlas-*)"
echo "Machine learning:         $DEMO/out/group/desc-ml_summary.json"
echo "CBF and BOLD-CBF signs:   $DEMO/out/sub-*/perf, $DEMO/out/group/*cbf* (docs/cbf.md)"
echo "Methods text:             $DEMO/out/logs/CITATION.md (BibTeX: $DEMO/out/logs/CITATION.bib)"
echo "Settings of this run:     $(ls "$DEMO"/out/logs/config-*.toml | head -n 2 | tr '\n' ' ')"
