#!/usr/bin/env bash
# cytogan's engine against the PyTorch peer (../shared/bench), interleaved in one run so both see
# the same machine: ROUNDS x (peer, then each cytogan binary), paper-96 shapes, THREADS threads.
# Prints every JSON line tagged with who made it, then the ratio table (bench/ratios.py).
#
#   PEER_PYTHON=/path/to/.venv-peer/bin/python examples/bench/vs-peer.sh [cytogan binaries...]
#
# Defaults: .build/release/cytogan, ROUNDS=3, THREADS=2, PRESET=paper-96, the peer script in
# ../shared/bench/torch_cytogan.py (override with PEER_SCRIPT).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-3} threads=${THREADS:-2} preset=${PRESET:-paper-96}
peer_python=${PEER_PYTHON:?set PEER_PYTHON to a Python with torch (see ../shared/bench/README.md)}
peer_script=${PEER_SCRIPT:-$here/../../../shared/bench/torch_cytogan.py}
[ $# -gt 0 ] || set -- .build/release/cytogan
peer_args=(--threads "$threads")
if [ "$preset" = small-64 ]; then peer_args+=(--size 64 --g-widths 128,64,32,16 --d-widths 16,32,64,128 --batch 32); fi
out=$(mktemp)
for r in $(seq 1 "$rounds"); do
    "$peer_python" "$peer_script" "${peer_args[@]}" | sed "s/^/peer\t/" >> "$out"
    for bin in "$@"; do
        "$bin" bench engine --preset "$preset" --threads "$threads" --only train --only features --only sample \
            | sed "s|^|$bin\t|" >> "$out"
    done
done
cat "$out"
python3 "$here/ratios.py" < "$out"
rm -f "$out"
