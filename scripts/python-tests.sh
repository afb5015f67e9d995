#!/usr/bin/env bash
# Runs the Python checks in Tests/python against the release binary: reference computations with
# NumPy, tifffile, Pillow, safetensors, pandas and pycytominer, installed into .venv-test on first use;
# and the CellProfiler plugin's checks in real headless CellProfiler, installed into .venv-cp the
# way integrations/cellprofiler/README.md tells users (install-headless.sh), kept until its pinned
# requirements change. When CellProfiler cannot be installed (no package registry), its checks are
# skipped saying why; everything else still runs.
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

cpvenv=${CYTOGAN_CP_VENV:-.venv-cp}
cpreq=integrations/cellprofiler/requirements-headless.txt
cpstamp=$cpvenv/.installed
if [ ! -f "$cpstamp" ] || ! cmp -s "$cpreq" "$cpstamp"; then
  echo "python-tests: installing headless CellProfiler into $cpvenv (integrations/cellprofiler/install-headless.sh; a few minutes, once)" >&2
  rm -rf "$cpvenv"
  log=$(mktemp)
  if integrations/cellprofiler/install-headless.sh "$cpvenv" >"$log" 2>&1; then
    cp "$cpreq" "$cpstamp"
  else
    tail -n 20 "$log" >&2
    export CYTOGAN_CP_UNAVAILABLE="install-headless.sh failed (last line: $(tail -n 1 "$log"))"
    echo "python-tests: CellProfiler could not be installed; its checks will be skipped: $CYTOGAN_CP_UNAVAILABLE" >&2
    rm -rf "$cpvenv"
  fi
  rm -f "$log"
fi
export CYTOGAN_CP_VENV="$PWD/$cpvenv"
[ "${cpvenv#/}" != "$cpvenv" ] && export CYTOGAN_CP_VENV="$cpvenv"

export CYTOGAN_BIN="$PWD/.build/release/cytogan"
export CYTOGAN_SHARED="${CYTOGAN_SHARED:-$(cd .. && pwd)/shared}"
"$venv/bin/python" -m pytest -q Tests/python "$@"
