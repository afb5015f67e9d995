#!/usr/bin/env bash
# Makes a venv with headless CellProfiler 5 (nightly wheels from PyPI) and cytogan_client, for the
# MeasureObjectCytoGAN plugin and its test. About 5 minutes on a 2-core machine.
#   integrations/cellprofiler/install-headless.sh [VENV]      (default: .venv-cp at the repo root)
#
# What works and what does not (November 2026, Python 3.11, Linux):
# - cellprofiler-core 4.2.8 does not install: python-javabridge fails to build.
# - cellprofiler-core-nightly and cellprofiler-library-nightly (CellProfiler 5) install from wheels.
# - The built-in modules (IdentifyPrimaryObjects, ...) live in cellprofiler-nightly, which requires
#   wxPython (GUI only; no wheel for this platform, a long source build) and mysqlclient (only for
#   ExportToDatabase): it is installed with --no-deps plus the few packages the modules import.
# - CellProfiler's Bio-Formats reader starts Java and fetches its jars with Maven at run time;
#   offline that fails ("Could not resolve RELEASE version for ome:formats-gpl"), so run_headless.py
#   enables only the ImageIO reader, which reads TIFF and PNG without Java.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${1:-$root/.venv-cp}
python3 -m venv "$venv"
pip() { "$venv/bin/pip" install -q --disable-pip-version-check "$@"; }
pip cellprofiler-core-nightly cellprofiler-library-nightly
pip --no-deps cellprofiler-nightly
pip jinja2 rapidfuzz sentry-sdk
pip -e "$root/integrations/python"
"$venv/bin/python" -c "import cellprofiler_core, cellprofiler.modules.identifyprimaryobjects, cytogan_client; print('headless CellProfiler ready in $venv')"
