#!/usr/bin/env bash
# Runs the Python checks in Tests/python against the release binary: reference computations with
# NumPy, tifffile, Pillow, safetensors, pandas and pycytominer, installed into .venv-test on first use;
# the CellProfiler plugin's checks in real headless CellProfiler, installed into .venv-cp the
# way integrations/cellprofiler/README.md tells users (install-headless.sh), kept until its pinned
# requirements change; and the MCP client test (Tests/python/test_mcp_client.py) with the official
# MCP Python SDK in a virtual environment of its own (.venv-mcp). Where CellProfiler or `mcp` cannot
# be installed (no package registry), those checks are skipped saying why; everything else still runs.
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
mcp_venv=.venv-mcp
mcp_req=Tests/python/requirements-mcp.txt
mcp_stamp=$mcp_venv/.installed
mcp_ready=0
if [ -f "$mcp_stamp" ] && cmp -s "$mcp_req" "$mcp_stamp"; then
  mcp_ready=1
else
  echo "python-tests: preparing $mcp_venv for the MCP client test (first run installs the MCP Python SDK)" >&2
  if python3 -m venv "$mcp_venv" && "$mcp_venv/bin/pip" install -q --disable-pip-version-check -r "$mcp_req"; then
    cp "$mcp_req" "$mcp_stamp"
    mcp_ready=1
  else
    echo "python-tests: SKIPPED the MCP client test: the MCP Python SDK (mcp) could not be installed from the package registry" >&2
  fi
fi

export CYTOGAN_BIN="$PWD/.build/release/cytogan"
export CYTOGAN_SHARED="${CYTOGAN_SHARED:-$(cd .. && pwd)/shared}"
"$venv/bin/python" -m pytest -q Tests/python --ignore=Tests/python/test_mcp_client.py "$@"
if [ "$mcp_ready" = 1 ]; then
  if [ $# -eq 0 ]; then
    "$mcp_venv/bin/python" -m pytest -q Tests/python/test_mcp_client.py
  else
    echo "python-tests: arguments given, so the MCP client test did not run; run it alone with" \
         "$mcp_venv/bin/python -m pytest Tests/python/test_mcp_client.py" >&2
  fi
fi
