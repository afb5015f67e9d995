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
cytogan=${CYTOGAN:-${CYTOGAN_BIN:-cytogan}}
parts=$(mktemp -d)
trap 'rm -rf "$parts"' EXIT

export model cytogan parts per
# Each xargs invocation gets N NUL-separated paths as arguments and feeds them to one line-mode
# extractor, one thread each (the parallelism is the processes'). One batch of N per process, one
# thread: the rows equal, bit for bit, `cytogan extract --paths - --batch N --threads 1` on the
# whole list (the engine rounds a crop's last bits by its place in its batch and the threads).
find "$crops" -name '*.tif' -print0 | sort -z \
  | xargs -0 -n "$per" -P "$procs" bash -c '
      printf "%s\n" "$@" | "$cytogan" extract --model "$model" --paths - --batch "$per" --threads 1 \
        > "$(mktemp "$parts/part-XXXXXX.csv")"' _

# One header, then every part's rows sorted by path (the first column).
first=$(ls "$parts"/part-*.csv | head -n1)
{ head -n1 "$first"; for f in "$parts"/part-*.csv; do tail -n +2 "$f"; done | sort -t, -k1,1; } > "$out.tmp"
mv "$out.tmp" "$out"
echo "$(($(wc -l < "$out") - 1)) crops -> $out" >&2
