"""An installed cytogan is found without settings: the Python client, the Dask integration and the
CellProfiler plugin, run with CYTOGAN_BIN unset, start the `cytogan` on PATH (as `make install` or
a release's install.sh leaves it), else the one in ~/.local/bin; their features equal those of
the binary named explicitly."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from test_integration_support import BIN, INTEGRATIONS, PYTHON_CLIENT, cytogan_client, small_model, synth_screen  # noqa: F401

TESTS = os.path.dirname(os.path.abspath(__file__))

# Run in a fresh interpreter whose environment has no CYTOGAN_BIN: which binary each integration
# starts, and the features it gets for the crops.
SCRIPT = r"""
import json, sys
sys.path[:0] = [{tests!r}, {client!r}, {dask!r}, {plugins!r}]
import cytogan_client
from cytogan_client.connection import find_binary
out = {{"found": find_binary()}}
crops = [{{"path": p}} for p in {crops!r}]
with cytogan_client.Worker.start() as w:
    out["client"] = w.process.args[0]
    w.model_load({model!r})
    out["client_features"] = w.features_extract(crops)["features"]
import cytogan_dask
feats, errors, names = cytogan_dask.extract_shard(crops, {model!r})
out["dask"] = cytogan_dask.process_worker({model!r}).process.args[0]
out["dask_features"] = feats.tolist()
from test_integration_cellprofiler import fake_cellprofiler_core
fake_cellprofiler_core()
import measureobjectcytogan
w, info = measureobjectcytogan.worker_for(None, {model!r})
out["cellprofiler"] = w.process.args[0]
out["cellprofiler_features"] = w.features_extract(crops)["features"]
print(json.dumps(out))
"""


def run_without_settings(tmp_path, crops, model, path, home):
    env = {k: v for k, v in os.environ.items() if k != "CYTOGAN_BIN"}
    env["PATH"] = path
    env["HOME"] = str(home)
    code = SCRIPT.format(tests=TESTS, client=str(PYTHON_CLIENT), dask=str(INTEGRATIONS / "dask"),
                         plugins=str(INTEGRATIONS / "cellprofiler" / "plugins"), crops=crops, model=str(model))
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def installed_copy(prefix):
    """What `make install PREFIX=prefix` puts in prefix/bin."""
    (prefix / "bin").mkdir(parents=True)
    dest = prefix / "bin" / "cytogan"
    shutil.copy2(BIN, dest)
    return dest


def test_integrations_start_the_cytogan_on_path_without_settings(tmp_path, synth_screen, small_model):
    crops = sorted(str(p) for p in (synth_screen / "crops").rglob("*.tif"))[:5]
    with cytogan_client.Worker.start(BIN) as w:
        w.model_load(small_model)
        want = np.array(w.features_extract([{"path": p} for p in crops])["features"])
    exe = installed_copy(tmp_path / "prefix")
    got = run_without_settings(tmp_path, crops, small_model, f"{exe.parent}:/usr/bin:/bin", tmp_path / "home")
    for who in ("found", "client", "dask", "cellprofiler"):
        assert got[who] == str(exe), (who, got[who])
    for who in ("client", "dask", "cellprofiler"):
        np.testing.assert_array_equal(np.array(got[who + "_features"], dtype=np.float32), want.astype(np.float32), err_msg=who)


def test_the_default_install_location_is_found_when_path_lacks_it(tmp_path, synth_screen, small_model):
    crops = sorted(str(p) for p in (synth_screen / "crops").rglob("*.tif"))[:2]
    home = tmp_path / "home"
    exe = installed_copy(home / ".local")
    got = run_without_settings(tmp_path, crops, small_model, "/usr/bin:/bin", home)
    assert got["found"] == got["client"] == got["dask"] == got["cellprofiler"] == str(exe)
