#!/usr/bin/env bash
# Fuzzes the image decoders: a seed corpus of every TIFF/PNG layout (Tests/python/image_layouts.py)
# plus real BBBC021 crops and fields when ../shared/data exists, mutated in-process by the hidden
# `cytogan image fuzz` subcommand. A crash leaves its input as crash-PID.bin in the output folder.
#   Tests/fuzz/run.sh [SECONDS] [--asan]     (default 300 s; --asan builds with AddressSanitizer)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-300}
out=${FUZZ_OUT:-.build/fuzz}
mkdir -p "$out/seeds"
bin=.build/release/cytogan
if [ "${2:-}" = "--asan" ]; then
  swift build -c release --product cytogan --build-path .build-asan -Xswiftc -sanitize=address -Xcc -fsanitize=address
  bin=.build-asan/release/cytogan
else
  swift build -c release --product cytogan
fi
[ -x .venv-test/bin/python ] || ./scripts/python-tests.sh --collect-only -q >/dev/null
.venv-test/bin/python Tests/python/image_layouts.py "$out/seeds"
shared="${CYTOGAN_SHARED:-$(cd .. && pwd)/shared}/data"
if [ -d "$shared" ]; then
  find "$shared/bbbc021/crops" -name '*.tif' | sort | awk 'NR % 400 == 1' | while read -r f; do
    cp "$f" "$out/seeds/bbbc_$(basename "$(dirname "$f")")_$(basename "$f")"; done
  cp "$shared"/fields/*/*.tif "$out/seeds/" 2>/dev/null || true
fi
"$bin" image fuzz "$out/seeds" --seconds "$seconds" --crash-dir "$out"
