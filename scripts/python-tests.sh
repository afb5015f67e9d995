#!/usr/bin/env bash
# Runs the Python checks in Tests/python against the release binary: reference computations with
# NumPy, tifffile, Pillow, safetensors, pandas and pycytominer, installed into .venv-test on first use.
# Then the MCP client test (Tests/python/test_mcp_client.py) with the official MCP Python SDK, in a
# virtual environment of its own (.venv-mcp), installed on first use when the package registry can
# be reached; where `mcp` cannot be installed that test is skipped with a message saying so.
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
