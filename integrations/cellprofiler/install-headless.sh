#!/usr/bin/env bash
# Makes a venv with headless CellProfiler 5 and cytogan_client, for the MeasureObjectCytoGAN
# plugin, from PyPI wheels: every package at the version in requirements-headless.txt (tested
# together), so `cellprofiler -c -r` works without Java and SaveImages writes TIFFs.
# About 2 minutes on a 2-core machine with a fresh pip cache, seconds with a warm one.
#   integrations/cellprofiler/install-headless.sh [VENV]      (default: .venv-cp at the repo root)
# Needs Python 3.9 to 3.11 (CellProfiler 5 needs SciPy < 1.11, which has no wheels for 3.12):
# python3.11 when there is one, else python3, or the interpreter named by $PYTHON.
#
# What is left out and why:
# - wxPython: the GUI only (no Linux wheel; a long source build). Headless runs do not need it.
# - mysqlclient: only ExportToDatabase's MySQL output. CellProfiler logs "MySQL could not be
#   loaded" with a traceback at start-up; harmless (add `-L ERROR` to quiet it).
# - Java: CellProfiler's Bio-Formats reader needs it; run with `-e imageio_reader`, which reads
#   TIFF and PNG without Java.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${1:-$root/.venv-cp}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$python" -c 'import sys; sys.exit(not ((3, 9) <= sys.version_info[:2] <= (3, 11)))'; then
  echo "install-headless: CellProfiler 5 needs Python 3.9 to 3.11; $python is $("$python" -V 2>&1)." >&2
  echo "install-headless: install python3.11 or name one with PYTHON=/path/to/python3.11" >&2
  exit 1
fi
"$python" -m venv "$venv"
pip() { "$venv/bin/pip" install -q --disable-pip-version-check "$@"; }
pip --no-deps -r "$here/requirements-headless.txt"
pip --no-deps -e "$root/integrations/python"
"$venv/bin/python" -c "import cellprofiler_core, cellprofiler.modules.identifyprimaryobjects, cytogan_client" \
  || { echo "install-headless: the packages installed but CellProfiler does not import (see above)" >&2; exit 1; }
echo "install-headless: headless CellProfiler ready in $venv (run it as $venv/bin/cellprofiler)" >&2
