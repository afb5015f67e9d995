"""Feature tables that join back to CellProfiler and feed pycytominer, from every route:

- one set of feature names (`Cytogan_<layer>_<i>`) in `cytogan extract`'s table, the worker's
  ModelInfo and features/extract reply, and the Python client's DataFrame; pycytominer's
  `infer_cp_features(df, compartments=["Cytogan"])` finds exactly them;
- a CellProfiler object table used as a manifest keeps its key columns (ImageNumber,
  ObjectNumber, Location_*, or `--keep-columns` / `keepColumns`) through `extract` and the worker;
- `cytogan serve --threads 1` computes on one core (process CPU time over wall time).
"""
import os
import time

import numpy as np
import pandas as pd
import pytest

from test_integration_support import BIN, cytogan_client, require

HUMAN = [f"AS_09125_050116030001_D03f00d{i}.tif" for i in range(3)]


@pytest.fixture(scope="module")
def pooled_model(tmp_path_factory):
    """cells-64, untrained, with a fixed dataset scale: pooled features of four blocks (480)."""
    require("model/create", "model/save")
    path = tmp_path_factory.mktemp("pooled") / "pooled.safetensors"
    with cytogan_client.Worker.start(BIN, threads=2) as w:
        info = w.model_create("cells-64", seed=5, config={
            "preprocessing": {"normalization": {"kind": "fixed_scale", "scale": [200.0, 180.0, 220.0]}}})
        w.model_save(path)
    return path, info


@pytest.fixture(scope="module")
def object_table(shared_data, tmp_path_factory):
    """An object table as CellProfiler exports it (ImageNumber, ObjectNumber, Location_*, a
    measurement), plus a path column per channel: a grid of 290 objects over ExampleHuman."""
    d = shared_data / "fields" / "ExampleHuman"
    ys, xs = np.meshgrid(np.linspace(20, 490, 17), np.linspace(20, 490, 18), indexing="ij")
    xs, ys = xs.ravel()[:290], ys.ravel()[:290]
    t = pd.DataFrame({"ImageNumber": 1, "ObjectNumber": np.arange(1, 291), "Location_Center_X": xs + 0.25,
                      "Location_Center_Y": ys, "AreaShape_Area": np.arange(290) % 7 + 40,
                      "Metadata_Well": "D03"})
    for i, f in enumerate(HUMAN):
        t[f"Channel{i}"] = str(d / f)
    path = tmp_path_factory.mktemp("objects") / "Nuclei.csv"
    t.to_csv(path, index=False)
    return path, t


EXTRACT_COLUMNS = ["--channel-columns", "Channel0,Channel1,Channel2", "--centre-columns",
                   "Location_Center_X,Location_Center_Y"]
MANIFEST = {"pathColumns": ["Channel0", "Channel1", "Channel2"], "centreColumns": ["Location_Center_X", "Location_Center_Y"]}


def test_one_set_of_feature_names_from_cli_worker_and_client(cytogan, pooled_model, object_table, tmp_path):
    require("model/load", "features/extract")
    from pycytominer.cyto_utils import infer_cp_features
    model, created = pooled_model
    manifest, _ = object_table
    out = tmp_path / "f.csv"
    cytogan("extract", "--model", model, "--manifest", manifest, *EXTRACT_COLUMNS, "--out", out, "--threads", 2)
    table = pd.read_csv(out)
    cli = [c for c in table.columns if c not in ("ImageNumber", "ObjectNumber", "Location_Center_X",
                                                 "Location_Center_Y", "Metadata_Well")]
    with cytogan_client.Worker.start(BIN, threads=2) as w:
        info = w.model_load(model)
        reply = w.features_extract(manifest={"path": str(manifest), **MANIFEST})
        df = w.extract(manifest={"path": str(manifest), **MANIFEST}, output="pandas")
    assert len(cli) == 480 and cli[0] == "Cytogan_pool_lrelu0_0" and cli[-1] == "Cytogan_std_lrelu3_127"
    assert cli == created["featureNames"] == info["featureNames"] == reply["names"]
    assert [c for c in df.columns if c.startswith("Cytogan_")] == cli
    # pycytominer finds the features, and only them, with the documented compartment.
    assert infer_cp_features(df, compartments=["Cytogan"]) == cli
    assert infer_cp_features(table, compartments=["Cytogan"]) == cli
    assert infer_cp_features(df, compartments=["Cytogan"], metadata=True) == ["Metadata_Well"]
    # The same numbers by both routes (same model and crops), read independently from CSV and JSON.
    np.testing.assert_allclose(df[cli].to_numpy(np.float64), table[cli].to_numpy(np.float64), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(df[cli].to_numpy(), np.array(reply["features"], dtype=np.float32))


def test_object_table_key_columns_travel_with_the_features(cytogan, pooled_model, object_table, tmp_path):
    require("model/load", "features/extract")
    model, _ = pooled_model
    manifest, objects = object_table
    keys = ["ImageNumber", "ObjectNumber", "Location_Center_X", "Location_Center_Y"]
    out = tmp_path / "f.csv"
    cytogan("extract", "--model", model, "--manifest", manifest, *EXTRACT_COLUMNS, "--out", out, "--threads", 2)
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == keys + ["Metadata_Well"]
    # Joined back to the object table by ImageNumber and ObjectNumber, every object finds its row.
    joined = objects.merge(table, on=["ImageNumber", "ObjectNumber"], suffixes=("", "_f"))
    assert len(joined) == len(objects)
    np.testing.assert_array_equal(joined["Location_Center_X"], joined["Location_Center_X_f"])
    # An explicit list replaces the default keys (Metadata_* always stay); a missing name fails naming it.
    cytogan("extract", "--model", model, "--manifest", manifest, *EXTRACT_COLUMNS, "--out", out,
            "--keep-columns", "ObjectNumber,AreaShape_*", "--threads", 2)
    kept = pd.read_csv(out)
    assert list(kept.columns[:3]) == ["ObjectNumber", "AreaShape_Area", "Metadata_Well"]
    np.testing.assert_array_equal(kept["AreaShape_Area"], objects["AreaShape_Area"])
    p = cytogan("extract", "--model", model, "--manifest", manifest, *EXTRACT_COLUMNS, "--out", tmp_path / "x.csv",
                "--keep-columns", "ObjectNumber,TableNumber", check=False)
    assert p.returncode != 0 and "'TableNumber'" in p.stderr and not (tmp_path / "x.csv").exists()
    # The worker's manifest requests carry the same columns; the client's DataFrame has them.
    with cytogan_client.Worker.start(BIN, threads=2) as w:
        w.model_load(model)
        df = w.extract(manifest={"path": str(manifest), **MANIFEST})
        assert list(df.columns[:5]) == keys + ["Metadata_Well"]
        np.testing.assert_array_equal(df["ObjectNumber"], objects["ObjectNumber"])
        df = w.extract(manifest={"path": str(manifest), **MANIFEST, "keepColumns": ["ObjectNumber", "AreaShape_*"]})
        assert list(df.columns[:3]) == ["ObjectNumber", "AreaShape_Area", "Metadata_Well"]
        w.features_extract(manifest={"path": str(manifest), **MANIFEST, "keepColumns": ["ObjectNumber"]}, keep=True,
                           table="nuclei", return_features=False)
        listed = {t["name"]: t for t in w.call("profiles/list")["tables"]}
        assert listed["nuclei"]["metadataColumns"] == ["ObjectNumber", "Metadata_Well"]
        with pytest.raises(cytogan_client.WorkerError, match="TableNumber"):
            w.features_extract(manifest={"path": str(manifest), **MANIFEST, "keepColumns": ["TableNumber"]})


def cpu_seconds(pid):
    """User plus system CPU time of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc to read a process's CPU time")
def test_serve_threads_1_computes_on_one_core(pooled_model, object_table):
    require("model/load", "features/extract")
    model, _ = pooled_model
    manifest, _ = object_table
    with cytogan_client.Worker.start(BIN, threads=1) as w:
        assert "--threads" in w.process.args and w.process.args[w.process.args.index("--threads") + 1] == "1"
        w.model_load(model)
        c0, t0 = cpu_seconds(w.process.pid), time.monotonic()
        r = w.features_extract(manifest={"path": str(manifest), **MANIFEST}, return_features=True)
        c1, t1 = cpu_seconds(w.process.pid), time.monotonic()
    assert r["count"] == 290
    ratio = (c1 - c0) / (t1 - t0)
    print(f"serve --threads 1: {c1 - c0:.2f} s CPU over {t1 - t0:.2f} s wall = {ratio:.2f} for 290 crops")
    assert ratio <= 1.2, f"CPU/wall {ratio:.2f}: more than one core busy"


def test_thread_budgets(monkeypatch):
    monkeypatch.delenv("CYTOGAN_THREADS", raising=False)
    cores = cytogan_client.usable_cores()
    assert cores == len(os.sched_getaffinity(0))
    assert cytogan_client.default_threads() == cores
    assert cytogan_client.default_threads(workers=cores) == 1
    assert cytogan_client.default_threads(workers=4 * cores) == 1
    monkeypatch.setenv("CYTOGAN_THREADS", "3")
    assert cytogan_client.default_threads(workers=8) == 3
    monkeypatch.setenv("CYTOGAN_THREADS", "zero")
    with pytest.raises(ValueError, match="CYTOGAN_THREADS"):
        cytogan_client.default_threads()
