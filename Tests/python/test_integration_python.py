"""integrations/python (cytogan_client) against the real `cytogan serve`: lifecycle, typed helpers
(checked against the protocol's schemas), batches, typed errors, progress, streaming, cancellation,
jobs, feature tables in pycytominer's layout (checked against NumPy/pandas computations of the raw
JSON), and a fresh venv where the package installs with pip and works with the standard library only."""
import inspect
import io
import json
import math
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from test_integration_support import (BIN, PYTHON_CLIENT, ROOT, cytogan_client, manifest_rows, require,
                                      small_model, synth_screen)  # noqa: F401 (fixtures)
from test_worker_support import canonical, schemas

from cytogan_client import (AlreadyInitialized, Cancelled, ConnectionLost, FileNotFound, InvalidParams,
                            MethodNotFound, NoModel, NotInitialized, UnknownJob, Worker, WorkerError, crop_field,
                            crop_file)


class ValidatingWriter:
    """The worker's stdin, checking that every line the client writes is valid against protocol/schemas."""

    def __init__(self, raw):
        self.raw = raw
        self.sent = []

    def write(self, data):
        for line in data.splitlines():
            msg = json.loads(line)
            schemas().validate_sent(msg)
            self.sent.append(msg)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()

    def close(self):
        self.raw.close()


@pytest.fixture
def worker():
    w = Worker.start(BIN)
    yield w
    w.close()
    assert w.returncode == 0, w.log()


@pytest.fixture
def checked_worker():
    """A worker attached through pipes whose every client message is validated against the schemas."""
    proc = subprocess.Popen([BIN, "serve", "--log-level", "warning"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    writer = ValidatingWriter(proc.stdin)
    w = Worker.attach(proc.stdout, writer)
    w.process = proc
    w.sent = writer.sent
    yield w
    w.close()
    assert proc.wait(timeout=30) == 0


# ------------------------------------------------------------------ lifecycle and control

def test_start_initializes_and_reports_the_server(worker):
    assert worker.protocol_version == "1.0"
    assert worker.server_info["name"] == "cytogan"
    assert {"initialize", "ping", "shutdown", "jobs/list"} <= worker.methods
    assert worker.limits["maxLineBytes"] == 64 << 20
    assert worker.ping() == {}
    listed = {m["name"] for m in worker.methods_list()["methods"]}
    assert listed == set(worker.methods)


def test_attach_to_pipes_in_binary_and_text_mode():
    for text in (False, True):
        proc = subprocess.Popen([BIN, "serve", "--log-level", "quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=text)
        w = Worker.attach(proc.stdout, proc.stdin)
        assert w.ping() == {} and w.jobs_list() == []
        w.close()
        assert proc.wait(timeout=20) == 0


def test_attach_without_initialize_gets_not_initialized_then_works():
    proc = subprocess.Popen([BIN, "serve", "--log-level", "quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    w = Worker.attach(proc.stdout, proc.stdin, initialize=False)
    assert w.ping() == {}  # served before initialize
    with pytest.raises(NotInitialized) as e:
        w.jobs_list()
    assert e.value.code == -32001 and e.value.kind == "not_initialized"
    w.initialize()
    assert w.jobs_list() == []
    with pytest.raises(AlreadyInitialized):
        w.initialize()
    w.close()
    assert proc.wait(timeout=20) == 0


def test_shutdown_answers_and_the_worker_exits_zero():
    w = Worker.start(BIN)
    assert w.shutdown() == {"jobs": []}
    assert w.returncode == 0
    with pytest.raises(ConnectionLost):
        w.ping()


def test_typed_errors_carry_code_message_and_data(worker):
    with pytest.raises(MethodNotFound) as e:
        worker.call("no/such/method")
    assert e.value.code == -32601 and e.value.kind == "method_not_found"
    with pytest.raises(UnknownJob) as e:
        worker.jobs_status("job-42")
    assert e.value.code == -32018 and e.value.job_id == "job-42" and e.value.field == "jobId"
    with pytest.raises(InvalidParams) as e:
        worker.jobs_list(state="sleeping")
    assert e.value.field == "state" and "sleeping" in e.value.message
    with pytest.raises(InvalidParams) as e:
        worker.call("ping", typo=1)
    assert e.value.field == "typo"
    assert isinstance(e.value, WorkerError) and isinstance(e.value, cytogan_client.CytoganError)
    # The worker keeps serving after errors.
    assert worker.ping() == {}


def test_batch_answers_in_order_with_errors_in_place(checked_worker):
    w = checked_worker
    with w.batch() as b:
        p1 = b.call("ping")
        b.notify("ping")  # a notification inside a batch gets no entry
        j = b.call("jobs/list", state="running")
        bad = b.call("jobs/status", jobId="job-7")
        p2 = b.call("ping")
    assert p1.result() == {} and j.result() == {"jobs": []} and p2.result() == {}
    assert isinstance(bad.exception(), UnknownJob)
    # The batch went out as one line (an array) holding the five messages.
    arrays = [m for m in w.sent if isinstance(m, list)]
    assert len(arrays) == 1 and len(arrays[0]) == 5
    out = w.call_batch([("ping", {}), ("jobs/status", {"jobId": "job-99"}), ("ping", None)], return_exceptions=True)
    assert out[0] == {} and isinstance(out[1], UnknownJob) and out[2] == {}


def test_many_threads_share_one_worker(worker):
    errors = []

    def hammer():
        try:
            for _ in range(200):
                assert worker.ping() == {}
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=hammer) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_a_line_over_the_workers_limit_is_refused_before_sending():
    w = Worker.start(BIN, ["--max-line-bytes", "2048"])
    with pytest.raises(ValueError, match="maxLineBytes 2048"):
        w.call("ping", _meta={"pad": "x" * 4000})
    assert w.ping() == {}
    w.close()


def test_a_worker_that_dies_fails_pending_and_later_calls_with_connection_lost():
    w = Worker.start(BIN)
    w.process.kill()
    with pytest.raises(ConnectionLost) as e:
        for _ in range(100):  # the reader notices the end of output at once or after a write fails
            w.ping(timeout=10)
    assert e.value.returncode == -9
    w.close()


def test_callbacks_that_wait_raise_instead_of_deadlocking():
    """Callbacks run on the reader thread: one that waits for a response gets RuntimeError rather
    than hanging the connection. (Driven through a pipe written by the test: the situation needs a
    notification at a chosen moment.)"""
    r, wfd = os.pipe()
    sink = io.BytesIO()
    w = Worker.attach(os.fdopen(r, "rb"), sink, initialize=False)
    outcome = []

    def listener(params):
        try:
            w.ping(timeout=1)
            outcome.append("answered")
        except RuntimeError as e:
            outcome.append(e)

    w.on_notification("notifications/jobs/ended", listener)
    os.write(wfd, b'{"jsonrpc":"2.0","method":"notifications/jobs/ended","params":{"job":{"jobId":"job-1","state":"done"}}}\n')
    deadline = time.time() + 10
    while not outcome and time.time() < deadline:
        time.sleep(0.01)
    assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError) and "deadlock" in str(outcome[0])
    assert w.connection.ended_jobs["job-1"]["state"] == "done"
    os.close(wfd)
    assert w.connection.wait_closed(10) and not w.connection.alive


def test_cancelling_a_finished_call_is_a_no_op(worker):
    c = worker.send("ping")
    assert c.result(10) == {}
    c.cancel("too late")
    assert worker.ping() == {}


def test_params_of_and_helpers_match_the_schemas():
    """Every request method of protocol/schemas has a typed helper whose keyword parameters are
    exactly the method's params (snake_case), so the helpers cannot drift from the protocol."""
    from cytogan_client.worker import _camel
    helper_of = {"methods/list": "methods_list"}
    skip_args = {"self", "timeout", "progress", "on_partial", "client_name", "client_version", "protocol_version"}
    renamed = {"protocolVersion": "protocol_version", "clientInfo": "client_name"}
    for d in schemas().by_title.values():
        if d.get("x-kind") != "request":
            continue
        method = d["title"]
        name = helper_of.get(method, method.replace("/", "_"))
        fn = getattr(Worker, name, None)
        assert fn is not None, f"no helper Worker.{name} for {method}"
        props = set(d["$defs"]["params"].get("properties", {})) - {"_meta"}
        if method == "initialize":
            assert {"capabilities"} <= {_camel(a) for a in inspect.signature(fn).parameters}
            continue
        args = {_camel(a) for a in inspect.signature(fn).parameters if a not in skip_args}
        if method == "features/extract":
            props -= {"background"}  # background extraction has its own helper, extract_job
        assert args == props, f"{method}: helper takes {sorted(args)}, schema has {sorted(props)}"
    assert _camel("batch_size") == "batchSize" and _camel("from_") == "from" and _camel("job_id") == "jobId"


def test_feature_tables_follow_pycytominer_layout():
    feats = [[1.5, -2.0, 0.25], None, [0.0, 3.0, 1.0]]
    meta = [{"Metadata_Plate": "P1", "Metadata_Well": "B02"}, {"Metadata_Plate": "P1", "Metadata_Well": "B03"},
            {"Metadata_Plate": "P2", "Metadata_Well": "B02"}]
    names = ["Cytogan_representation_0", "Cytogan_representation_1", "Cytogan_representation_2"]
    df = cytogan_client.format_features(feats, 3, "pandas", meta, columns=names)
    assert list(df.columns) == ["Metadata_Plate", "Metadata_Well"] + names
    assert df["Cytogan_representation_1"].dtype == np.float32
    assert df.iloc[1][names].isna().all()
    assert cytogan_client.feature_names({"names": names}) == names
    assert cytogan_client.feature_names({"featureNames": names[:2]}) == names[:2]
    with pytest.raises(ValueError, match="no feature names"):
        cytogan_client.feature_names({"dim": 3})
    with pytest.raises(ValueError, match="3 features need 3 column names"):
        cytogan_client.format_features(feats, 3, "pandas", meta)
    arr = cytogan_client.format_features(feats, 3, "numpy")
    np.testing.assert_array_equal(arr[[0, 2]], np.array([feats[0], feats[2]], dtype=np.float32))
    assert np.isnan(arr[1]).all()
    assert cytogan_client.format_features(feats, 3, "list") == feats
    # pycytominer recognises the layout: its metadata inference finds exactly the Metadata_ columns.
    from pycytominer.cyto_utils import infer_cp_features, output
    assert infer_cp_features(df, metadata=True) == ["Metadata_Plate", "Metadata_Well"]


def test_crop_builders_make_schema_valid_crops():
    crops = [crop_file("a.tif", metadata={"Metadata_Well": "B02"}, id=3),
             crop_file("b.tif", channels=[0, 2, 1]),
             cytogan_client.crop_channels(["d.tif", "t.tif", "a.tif"]),
             crop_field("f.tif", centre=(10.5, 20), mask="m.tif", label=2),
             crop_field("f.tif", center=(3, 4), channels=[0, 0, 0]),
             crop_field(["f0.tif", "f1.tif"], box=(1, 2, 30, 40))]
    assert crops[3] == {"path": "f.tif", "centre": [10.5, 20], "mask": "m.tif", "label": 2}
    assert crops[5] == {"paths": ["f0.tif", "f1.tif"], "box": [1, 2, 30, 40]}
    for c in crops:
        schemas()._validate(c, schemas().common["$id"] + "#/$defs/CropSpec")
    with pytest.raises(ValueError):
        crop_field("f.tif")


def test_read_manifest_resolves_paths_and_keeps_metadata(tmp_path):
    (tmp_path / "m.csv").write_text("path,Metadata_Well,Other\nsub/a.tif,B02,x\n/abs/b.tif,B03,y\n")
    crops = cytogan_client.read_manifest(tmp_path / "m.csv")
    assert crops == [{"path": str(tmp_path / "sub/a.tif"), "metadata": {"Metadata_Well": "B02"}},
                     {"path": "/abs/b.tif", "metadata": {"Metadata_Well": "B03"}}]
    (tmp_path / "bad.csv").write_text("path,Metadata_Well\n,B02\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        cytogan_client.read_manifest(tmp_path / "bad.csv")


# ------------------------------------------------------------------ methods that need a model

@pytest.fixture
def model_worker(small_model):
    w = Worker.start(BIN)
    w.model_load(small_model)
    yield w
    w.close()
    assert w.returncode == 0, w.log()


def synth_crops(screen):
    return cytogan_client.read_manifest(screen / "crops.csv")


def test_no_model_is_a_typed_error(worker):
    require("model/info", "features/extract")
    with pytest.raises(NoModel) as e:
        worker.model_info()
    assert e.value.code == -32015
    with pytest.raises(NoModel):
        worker.extract([crop_file("x.tif")])


def test_extract_returns_pycytominer_tables_and_arrays_equal_to_the_raw_json(model_worker, synth_screen):
    w = model_worker
    crops = synth_crops(synth_screen)
    raw = w.features_extract(crops)
    assert raw["count"] == len(crops) and raw["dim"] == w.model_info()["featureDim"]
    ref = np.array(raw["features"], dtype=np.float32)  # the JSON numbers read independently
    df = w.extract(crops, output="pandas")
    rows = manifest_rows(synth_screen / "crops.csv")
    meta_cols = [c for c in rows[0] if c.startswith("Metadata_")]
    assert w.model_info()["featureLayer"] == "representation"
    feat_cols = [f"Cytogan_representation_{i}" for i in range(raw["dim"])]
    assert raw["names"] == feat_cols == w.model_info()["featureNames"]
    assert list(df.columns) == meta_cols + feat_cols
    assert df["Metadata_Well"].tolist() == [r["Metadata_Well"] for r in rows]
    np.testing.assert_array_equal(df[feat_cols].to_numpy(), ref)
    np.testing.assert_array_equal(w.extract(crops, output="numpy"), ref)
    assert w.extract(crops, output="list") == raw["features"]
    # From the manifest (read by the worker), metadata typed by pandas as pycytominer reads CSVs.
    # (Same batches as the crop list above: the same numbers to the bit.)
    dm = w.extract(manifest=synth_screen / "crops.csv")
    expect = pd.read_csv(synth_screen / "crops.csv")[meta_cols]
    pd.testing.assert_frame_equal(dm[meta_cols], expect)
    np.testing.assert_array_equal(dm[feat_cols].to_numpy(), ref)


def test_progress_streaming_and_partial_results(model_worker, synth_screen):
    w = model_worker
    crops = synth_crops(synth_screen)
    # Same batches as the streamed requests below: the engine rounds a crop's last bits by its
    # position in its batch, so equal batches give equal numbers.
    whole = w.extract(crops, output="numpy", batch_size=4)
    seen = []
    blocks = list(w.extract_stream(crops, output="numpy", batch_size=4, progress=lambda p, t, m: seen.append((p, t))))
    assert [o for o, _ in blocks] == list(range(0, len(crops), 4))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), whole)
    assert w.last_result["count"] == len(crops)
    assert seen, "no notifications/progress arrived"
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:])), f"progress must grow: {seen}"
    assert seen[-1][0] <= len(crops) and all(t == len(crops) for _, t in seen if t is not None)
    # The generic Stream over the raw protocol gives the same items.
    s = w.stream("features/extract", crops=crops, batchSize=4)
    items = list(s)
    assert s.result["count"] == len(crops) and "features" not in s.result
    np.testing.assert_array_equal(np.array(items, dtype=np.float32), whole)
    # pandas blocks carry their crops' metadata and positions.
    pblocks = list(w.extract_stream(crops, batch_size=16))
    df = pd.concat([b for _, b in pblocks])
    assert df.index.tolist() == list(range(len(crops)))
    assert df["Metadata_Well"].tolist() == [c["metadata"]["Metadata_Well"] for c in crops]


def test_cancelling_a_long_extraction(model_worker, synth_screen):
    w = model_worker
    crops = synth_crops(synth_screen) * 200  # thousands of crops: long enough to be cut short
    got = []
    call = w.send("features/extract", crops=crops, batchSize=8, stream=True,
                  on_partial=lambda off, items: (got.append(off), call.cancel("enough") if len(got) == 2 else None))
    with pytest.raises(Cancelled) as e:
        call.result(120)
    assert e.value.code == -32800 and e.value.reason == "enough" and e.value.data["requestId"] == call.id
    assert 2 <= len(got) < len(crops) // 8
    assert w.ping() == {}
    # Closing a stream early cancels too; the worker goes on serving.
    gen = w.extract_stream(crops, batch_size=8, output="numpy")
    next(gen)
    gen.close()
    assert w.model_info()["featureDim"] > 0


def test_skipped_crops_are_nan_rows_with_their_errors(model_worker, synth_screen, tmp_path):
    w = model_worker
    crops = synth_crops(synth_screen)[:3]
    crops.insert(1, crop_file(tmp_path / "missing.tif"))
    with pytest.raises(FileNotFound) as e:
        w.extract(crops)
    assert e.value.index == 1 and e.value.path.endswith("missing.tif")
    df = w.extract(crops, on_error="skip", output="pandas")
    assert df.iloc[1].filter(like="Cytogan_").isna().all() and not df.iloc[[0, 2, 3]].isna().any().any()
    assert [x["index"] for x in df.attrs["errors"]] == [1] and df.attrs["errors"][0]["code"] == -32010


def test_field_crops_by_centre_and_box(model_worker, shared_data):
    require("features/extract")
    field = shared_data / "fields" / "stardist" / "img2d.tif"  # one channel, given thrice
    cfg = model_worker.model_info()["config"]
    s = cfg["preprocessing"].get("crop_size") or cfg["architecture"]["size"]
    a = model_worker.extract([crop_field(field, centre=(100, 120), channels=[0, 0, 0])], output="numpy")
    b = model_worker.extract([crop_field(field, box=(100 - s // 2, 120 - s // 2, 100 - s // 2 + s, 120 - s // 2 + s),
                                         channels=[0, 0, 0])], output="numpy")
    np.testing.assert_array_equal(a, b)  # the same window, two ways
    with pytest.raises(cytogan_client.InvalidInput) as e:
        model_worker.extract([crop_file(field, channels=[0, 0, 0]), crop_field(field, centre=(9999, 5), channels=[0, 0, 0])])
    assert e.value.index == 1


def test_kept_rows_profiles_round_trip(model_worker, synth_screen, tmp_path):
    require("profiles/aggregate", "profiles/normalize", "profiles/score", "profiles/export")
    w = model_worker
    df = w.extract(manifest=synth_screen / "crops.csv", keep=True, table="cells")
    assert {t["name"]: t["rows"] for t in w.profiles_list()}["cells"] == len(df)
    back = w.table("cells")
    feat = [c for c in df.columns if c.startswith("Cytogan_")]
    np.testing.assert_allclose(back[feat].to_numpy(), df[feat].to_numpy(), rtol=1e-6)
    info = w.profiles_aggregate("cells", by=["Metadata_Plate", "Metadata_Well"], join=["Metadata_Batch"], into="wells")
    # The mean per well, computed independently with pandas.
    ref = df.groupby(["Metadata_Plate", "Metadata_Well"])[feat].mean()
    assert info["rows"] == len(ref)
    agg = w.table("wells").set_index(["Metadata_Plate", "Metadata_Well"]).sort_index()
    np.testing.assert_allclose(agg[feat].to_numpy(), ref.sort_index().to_numpy(), rtol=1e-4, atol=1e-7)
    w.profiles_normalize("wells", ("Metadata_Compound", ["DMSO"]), into="normalized")
    score = w.profiles_score("normalized", exclude=("Metadata_Compound", ["DMSO"]), metrics=["nsc", "map"])
    assert 0 <= score["nsc"]["accuracy"] <= 1 and score["nsc"]["total"] > 0
    out = w.profiles_export("cells", tmp_path / "cells.csv")
    assert out["rows"] == len(df)
    assert w.profiles_drop("normalized") == {"dropped": "normalized"}


def test_training_job_progress_pause_resume_cancel_done_and_reload(synth_screen, tmp_path):
    require("train/start", "model/save", "model/load", "model/create")
    w = Worker.start(BIN)
    try:
        w.model_create("small-64", seed=1, config={"batch_size": 4})
        seen = []
        ended = []
        w.on_notification("notifications/jobs/ended", ended.append)
        ckpt = tmp_path / "checkpoints"
        job = w.train_start({"manifest": {"path": str(synth_screen / "crops.csv")}}, steps=10_000,
                            checkpoint={"directory": str(ckpt), "every": 5},
                            progress=lambda p, t, m: seen.append((p, t, m)))
        assert job.kind == "train" and job.id.startswith("job-")
        deadline = time.time() + 60
        while not seen and time.time() < deadline:
            assert w.ping(timeout=10) == {}  # the worker answers while it trains
            time.sleep(0.05)
        assert seen and seen[0][1] == 10_000
        paused = job.pause()
        assert paused["state"] == "paused"
        step = job.status()["progress"]
        time.sleep(0.5)
        assert job.status()["progress"] == step  # a paused job does not move
        assert job.resume()["state"] in ("running", "queued")
        final = job.cancel("test over")
        assert final["state"] == "cancelled" and final["error"]["code"] == -32800
        with pytest.raises(Cancelled):
            job.result()
        assert job.wait(5)["state"] == "cancelled"
        deadline = time.time() + 10
        while not ended and time.time() < deadline:
            time.sleep(0.05)
        assert ended and ended[0]["job"]["jobId"] == job.id
        assert any(p.suffix == ".safetensors" for p in ckpt.iterdir())  # a cancelled job keeps its checkpoint
        # A short job to the end: two more steps.
        at = w.model_info()["step"]
        done = w.train_start(synth_screen / "crops.csv", steps=at + 2).result(timeout=120)
        assert done["step"] == at + 2 and done["stepsRun"] == 2 and w.model_info()["step"] == at + 2
        # Save, reload in a new worker: identical features.
        crops = synth_crops(synth_screen)[:5]
        saved = tmp_path / "after.safetensors"
        w.model_save(saved)
        before = w.extract(crops, output="numpy")
    finally:
        w.close()
    with Worker.start(BIN) as w2:
        w2.model_load(saved)
        np.testing.assert_array_equal(w2.extract(crops, output="numpy"), before)


def test_samples_and_encoding(model_worker, synth_screen, tmp_path):
    require("samples/generate", "samples/interpolate", "samples/algebra", "cells/encode")
    w = model_worker
    dim = w.model_info()["config"]["architecture"]["latent"]
    g = w.samples_generate(3, seed=5, output={"dir": str(tmp_path / "s"), "format": "png"})
    assert len(g["latents"]) == 3 and all(len(z) == dim for z in g["latents"])
    assert all(pathlib.Path(f).is_file() for f in g["files"])
    it = w.samples_interpolate({"vector": g["latents"][0]}, {"vector": g["latents"][1]}, steps=5)
    a, b = np.array(g["latents"][0]), np.array(g["latents"][1])
    np.testing.assert_allclose(np.array(it["latents"])[2], 0.5 * a + 0.5 * b, rtol=1e-5, atol=1e-6)
    alg = w.samples_algebra({"seed": 1}, {"seed": 2}, {"seed": 3})
    t = alg["terms"]
    np.testing.assert_allclose(alg["latent"], np.array(t["a"]) - np.array(t["b"]) + np.array(t["c"]), rtol=1e-5, atol=1e-6)
    enc = w.cells_encode(synth_crops(synth_screen)[:2], steps=3, restarts=1)
    assert len(enc["latents"]) == 2 and all(math.isfinite(x) for x in enc["pixelError"])


# ------------------------------------------------------------------ packaging

def test_installs_in_a_fresh_venv_and_works_with_the_standard_library_only(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # pip builds the package in an isolated environment (it fetches the setuptools backend from the
    # index), from a copy so the build leaves nothing in the source tree.
    import shutil
    src = tmp_path / "src"
    shutil.copytree(PYTHON_CLIENT, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    script = f"""
import sys, cytogan_client
from cytogan_client import Worker, UnknownJob
assert cytogan_client.__file__.startswith({str(venv)!r}), cytogan_client.__file__
assert "numpy" not in sys.modules and "pandas" not in sys.modules
from cytogan_client import tables
assert tables.np is None and tables.pd is None, "the fresh venv must not have numpy or pandas"
assert tables.resolve_output("auto") == "list"
w = Worker.start({BIN!r})
assert w.ping() == {{}}
try:
    w.jobs_status("job-1")
except UnknownJob as e:
    assert e.code == -32018
assert cytogan_client.format_features([[1.0, 2.0], None], 2) == [[1.0, 2.0], None]
w.close()
assert w.returncode == 0
print("ok")
"""
    r = subprocess.run([str(py), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_profile_helpers_on_a_feature_table_file(worker, tmp_path):
    """profiles/* through the typed helpers on a table file, against pandas computed from the
    definitions (per-well mean; standardize to DMSO with the sample standard deviation)."""
    require("profiles/aggregate", "profiles/normalize", "profiles/score", "profiles/export", "profiles/list",
            "profiles/drop")
    rng = np.random.default_rng(4)
    rows = []
    for p in ("P1", "P2"):
        for w, (comp, conc, moa) in enumerate([("DMSO", 0.0, ""), ("DMSO", 0.0, ""), ("DMSO", 0.0, ""),
                                               ("a", 1.0, "m1"), ("b", 1.0, "m1"), ("c", 1.0, "m2"), ("d", 1.0, "m2")]):
            for cell in range(3):
                rows.append([p, f"W{w}", comp, conc, moa, "B1", *rng.normal(w % 4, 1, 5)])
    cols = ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration", "Metadata_MOA",
            "Metadata_Batch"] + [f"f{j}" for j in range(5)]
    cells = pd.DataFrame(rows, columns=cols)
    path = tmp_path / "cells.csv"
    cells.to_csv(path, index=False)
    feats = [f"f{j}" for j in range(5)]

    info = worker.profiles_aggregate(path, by=["Metadata_Plate", "Metadata_Well"], into="wells")
    assert info["name"] == "wells" and info["rows"] == 14
    wells = worker.table("wells")
    ref = cells.groupby(["Metadata_Plate", "Metadata_Well"], sort=False)[feats].mean().reset_index()
    np.testing.assert_allclose(wells[feats].to_numpy(), ref[feats].to_numpy(), rtol=1e-6, atol=1e-9)

    worker.profiles_normalize("wells", ("Metadata_Compound", ["DMSO"]), method="standardize", into="norm")
    norm = worker.table("norm")
    ctrl = wells[wells["Metadata_Compound"] == "DMSO"][feats]
    expect = (wells[feats] - ctrl.mean()) / ctrl.std(ddof=1)
    np.testing.assert_allclose(norm[feats].to_numpy(), expect.to_numpy(), rtol=1e-5, atol=1e-6)

    score = worker.profiles_score("norm", exclude=("Metadata_Compound", ["DMSO"]), metrics=["nsc", "map"],
                                  batch="Metadata_Batch", distance="cosine")
    assert score["nsc"]["total"] == 4 and 0 <= score["nsc"]["accuracy"] <= 1
    out = worker.profiles_export("norm", tmp_path / "out" / "norm.npy")
    np.testing.assert_allclose(np.load(out["path"]), norm[feats].to_numpy(np.float32), rtol=1e-6)
    names = {t["name"] for t in worker.profiles_list()}
    assert {"wells", "norm"} <= names
    assert worker.profiles_drop("norm") == {"dropped": "norm"}
    with pytest.raises(cytogan_client.InvalidInput) as e:
        worker.profiles_drop("norm")
    assert e.value.field == "table"


def test_background_extraction_job_keeps_its_rows(model_worker, synth_screen):
    require("features/extract", "profiles/export")
    w = model_worker
    seen = []
    job = w.extract_job(manifest=synth_screen / "crops.csv", table="bg", progress=lambda p, t, m: seen.append(p))
    assert job.kind == "extract"
    result = job.result(timeout=120)
    n = len(manifest_rows(synth_screen / "crops.csv"))
    assert result["count"] == n and result["kept"]["rows"] == n and "features" not in result
    assert w.jobs_wait(job.id, timeout_seconds=5)["state"] == "done"
    kept = w.table("bg")
    direct = w.extract(manifest=synth_screen / "crops.csv", output="pandas")
    feat = [c for c in direct.columns if c.startswith("Cytogan_")]
    np.testing.assert_array_equal(kept[feat].to_numpy(np.float32), direct[feat].to_numpy())
    assert seen and seen[-1] == n
