#!/usr/bin/env bash
# Several extraction processes at once with xargs -P: each takes up to N paths, writes its own
# part; the parts are joined under one header and put back in path order.
#   ./extract-xargs-parallel.sh MODEL.safetensors CROPS_DIR OUT.csv [PROCESSES] [PATHS_PER_PROCESS]
set -euo pipefail
model=${1:?usage: extract-xargs-parallel.sh MODEL CROPS_DIR OUT.csv [PROCESSES] [N]}
crops=${2:?}
out=${3:?}
procs=${4:-2}
per=${5:-200}
cytogan=${CYTOGAN:-cytogan}
parts=$(mktemp -d)
trap 'rm -rf "$parts"' EXIT

export model cytogan parts
# Each xargs invocation gets NUL-separated paths as arguments and feeds them to one line-mode
# extractor (OPENBLAS_NUM_THREADS=1: the parallelism is the processes').
find "$crops" -name '*.tif' -print0 | sort -z \
  | xargs -0 -n "$per" -P "$procs" bash -c '
      printf "%s\n" "$@" | OPENBLAS_NUM_THREADS=1 "$cytogan" extract --model "$model" --paths - \
        > "$(mktemp "$parts/part-XXXXXX.csv")"' _

# One header, then every part's rows sorted by path (the first column).
first=$(ls "$parts"/part-*.csv | head -n1)
{ head -n1 "$first"; for f in "$parts"/part-*.csv; do tail -n +2 "$f"; done | sort -t, -k1,1; } > "$out.tmp"
mv "$out.tmp" "$out"
echo "$(($(wc -l < "$out") - 1)) crops -> $out" >&2
