#!/usr/bin/env bash
# Scores every features-*.npy that anchor.py wrote with `cytogan profile evaluate-crops` (a), (b),
# (c), against the metadata prepare.sh wrote; eval-TAG.json beside each, one summary line each.
# Renders the generated cells (samples.npy, when there) as samples.png, 32 tiles 8 to a row, with
# the same contrast stretch as `cytogan image montage` of real crops.
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
if [ -f "$dir/samples.npy" ]; then
    tiles=$(mktemp -d); trap 'rm -rf "$tiles"' EXIT
    python3 - "$dir/samples.npy" "$tiles" <<'PY'
import sys, numpy as np
x = np.load(sys.argv[1])  # (N, C, H, W) in [-1, 1]
for i in range(min(32, len(x))):
    np.save(f"{sys.argv[2]}/{i:02d}.npy", np.ascontiguousarray(x[i].transpose(1, 2, 0)))
PY
    for t in "$tiles"/*.npy; do "$bin" image convert "$t" --out "${t%.npy}.png" --bits 8 > /dev/null; done
    "$bin" image montage "$tiles"/*.png --columns 8 --out "$out/samples.png"
fi
