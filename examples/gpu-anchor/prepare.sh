#!/usr/bin/env bash
# Packs a crop manifest's model inputs for anchor.py: cytogan's own preprocessing (64x64, the
# dataset scale at PERCENTILE, resampled) via `cytogan image prepare`, quantized to uint8,
# differenced along rows and xz-compressed (the BBBC021 crops then fit the GPU machine's 64 MiB transfer), plus the
# manifest's Metadata_ columns in row order for `cytogan profile evaluate-crops`.
#
# Also the starting weights: the generator and discriminator of a cytogan cpu-64 model of 0 steps
# with SEED (default 1), for anchor.py --init-from.
#
#   examples/gpu-anchor/prepare.sh MANIFEST PERCENTILE OUTDIR [SEED]
#   e.g. examples/gpu-anchor/prepare.sh ../shared/data/bbbc021/crops.csv 95 .anchor
# writes OUTDIR/crops64-p95.npy.xz, crops64-p95.metadata.csv and init-p95-s1.safetensors.
set -euo pipefail
[ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: $0 MANIFEST PERCENTILE OUTDIR [SEED]" >&2; exit 2; }
manifest=$1 percentile=$2 out=$3 seed=${4:-1}
here=$(cd "$(dirname "$0")" && pwd)
bin=${CYTOGAN:-.build/release/cytogan}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The dataset scale exactly as training estimates it: a model of 0 steps stores it in its
# preprocessing, beside the starting weights kept for anchor.py.
"$bin" train --manifest "$manifest" --preset cpu-64 --normalization "dataset:$percentile" --steps 0 \
    --seed "$seed" --checkpoint-dir "$tmp/ckpt" --progress none 2> "$tmp/log" > /dev/null || { cat "$tmp/log" >&2; exit 1; }
normalization=$(PYTHONPATH=$here python3 - "$tmp"/ckpt/checkpoint-*.safetensors "$out/init-p$percentile-s$seed.safetensors" <<'PY'
import json, sys, checkpoint
tensors, metadata = checkpoint.read(sys.argv[1])
checkpoint.write(sys.argv[2], {k: v for k, v in tensors.items() if k.startswith(("generator.", "discriminator."))})
print(json.dumps(json.loads(metadata["preprocessing"])["normalization"]))
PY
)
echo "normalization (percentile $percentile): $normalization" >&2
python3 - "$manifest" "$out/crops64-p$percentile.metadata.csv" "$tmp/paths" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
meta = [k for k in rows[0] if k.startswith("Metadata_")]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f); w.writerow(meta); w.writerows([r[k] for k in meta] for r in rows)
open(sys.argv[3], "w").write("\n".join(r["path"] for r in rows) + "\n")
PY
# One invocation (prepare writes one file): paths relative to the manifest's folder.
mapfile -t paths < "$tmp/paths"
(cd "$(dirname "$manifest")" && "$bin" image prepare --npy "$tmp/crops.npy" --size 64 --resize resample \
    --normalization "$normalization" "${paths[@]}")
python3 - "$tmp/crops.npy" "$out/crops64-p$percentile.npy.xz" <<'PY'
import lzma, sys, numpy as np
x = np.load(sys.argv[1])
q = np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.uint8)
# Differences along each row (mod 256) compress better than the pixels: 52 MB for BBBC021's crops.
d = np.diff(q, axis=3, prepend=np.uint8(0)).astype(np.uint8)
assert (np.cumsum(d, axis=3, dtype=np.uint8) == q).all()
with lzma.open(sys.argv[2], "wb", preset=6) as f:
    np.save(f, d)
print(f"{sys.argv[2]}: {q.shape}, max quantization error {np.abs(q / 127.5 - 1 - x).max():.4f}", file=sys.stderr)
PY
