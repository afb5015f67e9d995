"""integrations/dask: feature extraction sharded over a Dask LocalCluster of several processes, each
driving its own `cytogan serve`, gives exactly the features of one process extracting the whole
list; errors keep their global crop index; the command line writes the same table."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from test_integration_support import (BIN, INTEGRATIONS, PYTHON_CLIENT, cytogan_client, require, small_model,  # noqa: F401
                                      synth_screen)

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed in this venv")
import cytogan_dask  # noqa: E402


@pytest.fixture(scope="module")
def cluster_env():
    """Worker processes import the client and this integration from the source tree."""
    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "CYTOGAN_BIN")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PYTHON_CLIENT), str(INTEGRATIONS / "dask"), old["PYTHONPATH"] or ""])
    os.environ["CYTOGAN_BIN"] = BIN
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def client(cluster_env):
    require("model/load", "features/extract")
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def one_process(model, manifest, batch_size=None):
    """The reference: one worker extracting the whole manifest in one request."""
    with cytogan_client.Worker.start(BIN) as w:
        w.model_load(model)
        return w.extract(manifest=manifest, output="pandas", batch_size=batch_size)


def test_sharded_extraction_equals_one_process(client, small_model, synth_screen):
    client.register_plugin(cytogan_dask.CytoganPlugin(small_model, BIN))
    manifest = synth_screen / "crops.csv"
    seen = []
    df = cytogan_dask.extract_manifest(client, manifest, small_model, binary=BIN, shard_size=7, batch_size=4,
                                       progress=lambda done, total: seen.append((done, total)))
    ref = one_process(small_model, manifest, batch_size=4)
    pd.testing.assert_frame_equal(df, ref, check_exact=True)
    n = len(ref)
    assert seen[-1] == (n, n) and len(seen) == -(-n // 8)  # shards of two whole batches of 4
    # Each Dask worker process ran its own cytogan worker (distinct processes, all alive).
    pids = client.run(lambda: [w.process.pid for w in cytogan_dask._workers.values() if w.connection.alive])
    flat = [p for ps in pids.values() for p in ps]
    assert len(pids) == 3 and len(flat) == 3 and len(set(flat)) == 3


def test_errors_keep_their_global_index(client, small_model, synth_screen, tmp_path):
    crops = cytogan_client.read_manifest(synth_screen / "crops.csv")[:10]
    crops[8] = cytogan_client.crop_file(tmp_path / "missing.tif")
    feats, errors = cytogan_dask.extract_crops(client, crops, small_model, binary=BIN, shard_size=3, on_error="skip")
    assert [e["index"] for e in errors] == [8] and errors[0]["code"] == -32010
    assert np.isnan(feats[8]).all() and not np.isnan(np.delete(feats, 8, axis=0)).any()
    with pytest.raises(cytogan_client.FileNotFound) as e:
        cytogan_dask.extract_crops(client, crops, small_model, binary=BIN, shard_size=3)
    assert e.value.index == 8 and e.value.path.endswith("missing.tif")


def test_command_line_against_a_running_scheduler(client, small_model, synth_screen, tmp_path):
    out = tmp_path / "features.csv"
    p = subprocess.run([sys.executable, "-m", "cytogan_dask", "--manifest", str(synth_screen / "crops.csv"),
                        "--model", str(small_model), "--out", str(out), "--scheduler", client.scheduler.address,
                        "--shard-size", "16", "--binary", BIN], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    got = pd.read_csv(out)
    ref = one_process(small_model, synth_screen / "crops.csv")
    feat = [c for c in ref.columns if c.startswith("Cytogan_")]
    assert list(got.columns) == list(ref.columns)
    # %.9g round-trips float32 exactly.
    np.testing.assert_array_equal(got[feat].to_numpy(np.float32), ref[feat].to_numpy())
