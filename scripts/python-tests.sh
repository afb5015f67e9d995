#!/usr/bin/env bash
# Runs the Python checks in Tests/python against the release binary: reference computations with
# NumPy, tifffile, Pillow, safetensors, pandas and pycytominer, installed into .venv-test on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
req=Tests/python/requirements.txt
stamp=$venv/.installed
if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
  echo "python-tests: preparing $venv (first run installs packages)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
export CYTOGAN_BIN="$PWD/.build/release/cytogan"
export CYTOGAN_SHARED="${CYTOGAN_SHARED:-$(cd .. && pwd)/shared}"
"$venv/bin/python" -m pytest -q Tests/python "$@"
