#!/usr/bin/env bash
# Scores every features-*.npy that anchor.py wrote with `cytogan profile evaluate-crops` (a), (b),
# (c), against the metadata prepare.sh wrote; eval-TAG.json beside each, one summary line each.
#
#   examples/gpu-anchor/evaluate.sh RESULTS_DIR METADATA.csv
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 RESULTS_DIR METADATA.csv" >&2; exit 2; }
dir=$1 meta=$2 out=${EVAL_OUT:-$1}
bin=${CYTOGAN:-.build/release/cytogan}
mkdir -p "$out"
for f in "$dir"/features-*.npy; do
    tag=$(basename "$f" .npy); tag=${tag#features-}
    "$bin" profile evaluate-crops --features "$f" --meta "$meta" > "$out/eval-$tag.json" 2> "$out/eval-$tag.txt"
    echo "$tag: $(tr '\n' ' ' < "$out/eval-$tag.txt")"
done
