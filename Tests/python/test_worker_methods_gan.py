"""The worker's GAN-backed methods driven as a subprocess, standard library only: create a tiny
model, extract real BBBC021 crops, train in the background while ping and jobs/status keep
answering, pause, resume, cancel, save, reload in a fresh worker and get the same features bit
for bit; SIGKILL during training, start again, resume from the last checkpoint
and end bit-identical to an uninterrupted run. Also samples, interpolation and noise algebra
against their definitions, and extraction errors, streaming, keeping and cancellation.

Tests that need ../shared/data skip with a message when it is absent."""
import csv
import json
import math
import os
import signal
import struct
import subprocess
import time

import pytest

from conftest import BIN
from test_worker_support import Worker, err, ok

# A tiny network (32x32 input, a few thousand parameters) so that training takes milliseconds a step.
TINY = {"architecture": {"size": 32, "generator_widths": [32, 16, 8], "discriminator_widths": [8, 16, 32],
                         "discriminator_strides": [1, 2, 2], "representation": 16, "latent": 20}, "batch_size": 8}


def create_tiny(w, seed=1):
    return ok(w.call("model/create", {"preset": "small-64", "config": TINY, "seed": seed}))


def exchange(w, method, params=None, id=None):
    """Sends a request; returns (response, notifications that came before it)."""
    w.next_id += 1
    rid = id if id is not None else w.next_id
    msg = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    w.send(msg)
    m, seen = w.recv_until(rid, timeout=60)
    return m, [n for n in seen if "method" in n]


@pytest.fixture(scope="module")
def crops(shared_data):
    """32 real BBBC021 crops (68x68, 3 channels, uint16): 16 DMSO, 16 cyclohexamide, with metadata."""
    root = shared_data / "bbbc021"
    with open(root / "crops.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    dmso = [r for r in rows if r["Metadata_Compound"] == "DMSO"][:16]
    chx = [r for r in rows if r["Metadata_Compound"] != "DMSO"][:16]
    return [{"path": str(root / r["path"]),
             "metadata": {k: r[k] for k in ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration"]}}
            for r in dmso + chx]


def features(w, crops, **extra):
    return ok(w.call("features/extract", {"crops": crops, "batchSize": 8, **extra}))["features"]


def safetensors(path):
    """{name: (dtype, shape, bytes)} and the metadata of a safetensors file, read with the standard library."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    return {k: (v["dtype"], tuple(v["shape"]), data[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items()}, meta


def checkpoints(folder):
    return sorted(p.name for p in folder.glob("checkpoint-*.safetensors"))


def test_train_in_background_pause_cancel_save_and_reload_give_identical_features(crops, tmp_path):
    w = Worker()
    try:
        w.initialize()
        info = create_tiny(w)
        assert info["step"] == 0 and info["featureDim"] == 16 and info["trainingJob"] is None
        assert info["config"]["architecture"]["size"] == 32 and info["config"]["preprocessing"]["size"] == 32
        before = features(w, crops)
        assert len(before) == 32 and all(len(v) == 16 for v in before)

        ck = tmp_path / "ck"
        r, _ = exchange(w, "train/start", {"data": {"crops": crops}, "steps": 1_000_000,
                                            "checkpoint": {"directory": str(ck), "every": 10},
                                            "_meta": {"progressToken": "train"}})
        job = ok(r)
        assert job["kind"] == "train" and job["state"] in ("queued", "running")
        jid = job["jobId"]
        # While it trains, ping and jobs/status keep answering, and progress comes step by step.
        progress, pings, seen = [], [], []
        deadline = time.time() + 120
        while (not progress or progress[-1] < 25) and time.time() < deadline:
            t = time.perf_counter()
            r, notes = exchange(w, "ping")
            pings.append(time.perf_counter() - t)
            assert r["result"] == {}
            r, more = exchange(w, "jobs/status", {"jobId": jid})
            st = ok(r)
            assert st["state"] == "running"
            seen.append(st["progress"])
            for n in notes + more:
                assert n["method"] == "notifications/progress", n
                assert n["params"]["progressToken"] == "train" and n["params"]["total"] == 1_000_000
                assert n["params"]["message"].startswith(f"step {int(n['params']['progress'])}/1000000 D ")
                progress.append(n["params"]["progress"])
            time.sleep(0.02)
        assert progress and progress[-1] >= 25, "training sent no progress"
        assert progress == sorted(set(progress)) and seen == sorted(seen)
        assert st["metrics"]["step"] >= 1 and "discriminatorLoss" in st["metrics"] and "learningRates" in st["metrics"]
        assert max(pings) < 5, f"ping took {max(pings):.3f} s during training"
        # model/create is refused while the job holds the model; model/info answers at once.
        d = err(w.call("model/create", {"preset": "small-64", "config": TINY}), -32016)
        assert d["jobId"] == jid and d["conflict"] == "model"
        assert err(w.call("train/start", {"data": {"crops": crops}, "steps": 5}), -32016)["jobId"] == jid
        assert ok(w.call("model/info"))["trainingJob"] == jid

        # Pause: the step stays put, the model answers requests, then resume goes on.
        paused = ok(w.call("jobs/pause", {"jobId": jid}))
        assert paused["state"] == "paused"
        time.sleep(0.3)
        still = ok(w.call("jobs/status", {"jobId": jid}))
        assert still["state"] == "paused" and still["progress"] == paused["progress"]
        during = features(w, crops[:8])
        assert len(during) == 8
        assert ok(w.call("jobs/resume", {"jobId": jid}))["state"] == "running"
        deadline = time.time() + 60
        while ok(w.call("jobs/status", {"jobId": jid}))["progress"] <= paused["progress"] + 3 and time.time() < deadline:
            time.sleep(0.05)

        # Cancel: the job ends cancelled after writing a final checkpoint.
        r, _ = exchange(w, "jobs/cancel", {"jobId": jid, "reason": "enough"})
        end = ok(r)
        assert end["state"] == "cancelled" and end["error"]["code"] == -32800
        assert end["error"]["data"]["jobId"] == jid and end["error"]["data"]["reason"] == "enough"
        info = ok(w.call("model/info"))
        step = info["step"]
        assert step >= 28 and info["trainingJob"] is None
        final = ck / f"checkpoint-{step:09d}.safetensors"
        assert info["checkpoint"] == str(final) and final.name in checkpoints(ck)
        assert len(checkpoints(ck)) <= 3   # the newest 3 are kept

        trained = features(w, crops)
        assert trained != before, "training did not change the discriminator"
        saved = ok(w.call("model/save", {"path": str(tmp_path / "m" / "model.safetensors")}))
        assert saved["step"] == step and saved["bytes"] == os.path.getsize(tmp_path / "m" / "model.safetensors")
        tensors, meta = safetensors(tmp_path / "m" / "model.safetensors")
        assert meta["format"] == "cytogan.gan" and meta["step"] == str(step)
        assert any(k.startswith("optimizer.discriminator.") for k in tensors)
    finally:
        w.kill()

    # A fresh worker: the saved model and the cancelled job's checkpoint give the same features.
    for path in [tmp_path / "m" / "model.safetensors", final]:
        w2 = Worker()
        try:
            w2.initialize()
            assert err(w2.call("features/extract", {"crops": crops[:1]}), -32015)
            loaded = ok(w2.call("model/load", {"path": str(path)}))
            assert loaded["step"] == step and loaded["checkpoint"] == str(path)
            assert features(w2, crops) == trained
        finally:
            w2.kill()


def train_to(w, crops, folder, steps, token=None, resume=False):
    params = {"data": {"crops": crops}, "steps": steps, "checkpoint": {"directory": str(folder), "every": 5, "keep": 100}}
    if resume:
        params["resume"] = True
    if token:
        params["_meta"] = {"progressToken": token}
    return ok(w.call("train/start", params))


def test_sigkill_during_training_then_resume_from_the_last_checkpoint(crops, tmp_path):
    steps = 60
    a = Worker()
    try:
        a.initialize()
        create_tiny(a, seed=5)
        train_to(a, crops, tmp_path / "run", steps, token="t")
        latest = 0
        deadline = time.time() + 120
        while latest < 22 and time.time() < deadline:
            m = a.recv(timeout=60)
            if m.get("method") == "notifications/progress":
                latest = m["params"]["progress"]
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
    finally:
        a.kill()
    left = checkpoints(tmp_path / "run")
    assert left, "no checkpoint was written before the kill"
    last = int(left[-1][len("checkpoint-"):-len(".safetensors")])
    assert 20 <= last < steps

    b = Worker()
    try:
        b.initialize()
        job = train_to(b, crops, tmp_path / "run", steps, token="r", resume=True)
        first = None
        while True:
            m = b.recv(timeout=120)
            if m.get("method") == "notifications/progress" and first is None:
                first = m["params"]["progress"]
            if m.get("method") == "notifications/jobs/ended":
                assert m["params"]["job"]["jobId"] == job["jobId"]
                done = m["params"]["job"]
                break
        assert first == last + 1, f"resumed at step {first}, the last checkpoint was {last}"
        assert done["state"] == "done" and done["result"]["step"] == steps
        assert done["result"]["stepsRun"] == steps - last
    finally:
        b.kill()

    # The same training without the kill, in another worker.
    c = Worker()
    try:
        c.initialize()
        create_tiny(c, seed=5)
        jid = train_to(c, crops, tmp_path / "ref", steps)["jobId"]
        assert ok(c.call("jobs/wait", {"jobId": jid}))["state"] == "done"
    finally:
        c.kill()
    for s in [last, steps]:
        name = f"checkpoint-{s:09d}.safetensors"
        got, gmeta = safetensors(tmp_path / "run" / name)
        want, wmeta = safetensors(tmp_path / "ref" / name)
        assert got.keys() == want.keys()
        different = [k for k in want if got[k] != want[k]]
        assert not different, f"{name}: {len(different)} tensors differ after resume, e.g. {different[:3]}"
        for k in ["step", "random_state", "position", "epoch", "optimizer_steps"]:
            assert gmeta[k] == wmeta[k], k


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def close(a, b, tol=1e-5):
    """Equal up to float32 rounding of a differently blocked matrix product."""
    return len(a) == len(b) and all(abs(x - y) <= tol * max(1.0, abs(x), abs(y)) for x, y in zip(a, b))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_samples_interpolation_and_algebra_follow_their_definitions(tmp_path):
    w = Worker()
    try:
        w.initialize()
        assert err(w.call("samples/generate", {"count": 1}), -32015)
        create_tiny(w)
        g = ok(w.call("samples/generate", {"count": 3, "seed": 9, "returnImages": True,
                                           "output": {"dir": str(tmp_path / "s"), "format": "both", "montage": True}}))
        z = g["latents"]
        assert len(z) == 3 and all(len(v) == 20 for v in z)
        assert [im["shape"] for im in g["images"]] == [[3, 32, 32]] * 3
        assert all(-1 <= x <= 1 for im in g["images"] for x in im["data"])
        assert g["files"] == [str(tmp_path / "s" / f"sample-000{i}.{e}") for i in range(3) for e in ("png", "tif")]
        assert png_size(tmp_path / "s" / "sample-0000.png") == (32, 32)
        assert g["montage"] == str(tmp_path / "s" / "sample-montage.png")
        w_, h_ = png_size(g["montage"])
        assert 32 <= h_ < 64 and 3 * 32 < w_ < 4 * 32   # one row of three tiles
        # The same vectors given back as latents give the same cells; {"seed": 9} is the first draw.
        again = ok(w.call("samples/generate", {"latents": [{"vector": v} for v in z], "returnImages": True, "returnLatents": False}))
        assert again["images"] == g["images"] and "latents" not in again
        first = ok(w.call("samples/generate", {"latents": [{"seed": 9}]}))["latents"][0]
        assert first == z[0]
        # Means of several seeds, and vector algebra in float32.
        mean = ok(w.call("samples/generate", {"latents": [{"vectors": z[:2]}]}))["latents"][0]
        # (JSON carries float32 values in their shortest text: compare them as float32.)
        z32 = [[f32(x) for x in v] for v in z]
        assert [f32(x) for x in mean] == [f32(f32(a + b) / 2) for a, b in zip(z32[0], z32[1])]
        alg = ok(w.call("samples/algebra", {"a": {"vector": z[0]}, "b": {"vector": z[1]}, "c": {"vector": z[2]},
                                            "returnImages": True, "output": {"dir": str(tmp_path / "alg"), "prefix": "x-"}}))
        assert [f32(x) for x in alg["latent"]] == [f32(f32(a - b) + c) for a, b, c in zip(*z32)]
        assert alg["terms"] == {"a": z[0], "b": z[1], "c": z[2]}
        # Another batch size may round differently in the last bits, never more.
        assert close(alg["images"]["a"]["data"], g["images"][0]["data"])
        assert alg["files"] == [str(tmp_path / "alg" / f"x-{n}.png") for n in ["a", "b", "c", "result"]]
        # Interpolation: both ends included; linear midpoints; slerp keeps the great circle.
        lin = ok(w.call("samples/interpolate", {"from": {"vector": z[0]}, "to": {"vector": z[1]}, "steps": 5}))["latents"]
        assert lin[0] == z[0] and lin[-1] == z[1]
        for t, v in zip([0.25, 0.5, 0.75], lin[1:4]):
            assert all(abs(x - ((1 - t) * a + t * b)) < 1e-5 for x, a, b in zip(v, z[0], z[1]))
        sl = ok(w.call("samples/interpolate", {"from": {"vector": z[0]}, "to": {"vector": z[1]}, "steps": 3, "mode": "slerp"}))["latents"]
        a, b = z[0], z[1]
        na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
        th = math.acos(sum(x * y for x, y in zip(a, b)) / na / nb)
        want = [math.sin(th / 2) / math.sin(th) * (x + y) for x, y in zip(a, b)]
        assert all(abs(x - y) < 1e-5 for x, y in zip(sl[1], want))
        # Errors: a vector of the wrong length names it; the worker goes on.
        d = err(w.call("samples/generate", {"latents": [{"seed": 1}, {"vector": [0.5] * 7}]}), -32013)
        assert d["field"] == "latents[1].vector" and d["index"] == 1
        assert err(w.call("samples/interpolate", {"from": {"seed": 1}, "to": {"seed": 2, "vector": [1]}}), -32602)["field"] == "to.vector"
        assert err(w.call("samples/generate", {"count": 2, "output": {"dir": "/proc/cytogan"}}), -32017)
        assert ok(w.call("ping")) == {}
    finally:
        w.kill()


def test_extraction_errors_streaming_keeping_and_the_command_line(crops, tmp_path):
    w = Worker()
    try:
        w.initialize()
        create_tiny(w, seed=2)
        ok(w.call("model/save", {"path": str(tmp_path / "m.safetensors")}))
        bad = crops[:3] + [{"path": str(tmp_path / "absent.tif"), "id": "x"}] + crops[3:6]
        d = err(w.call("features/extract", {"crops": bad}), -32010)
        assert d["index"] == 3 and d["path"] == str(tmp_path / "absent.tif") and d["id"] == "x"
        r = ok(w.call("features/extract", {"crops": bad, "onError": "skip", "batchSize": 4}))
        assert r["count"] == 7 and r["features"][3] is None and [e["index"] for e in r["errors"]] == [3]
        assert all(close(a, b) for a, b in zip(r["features"][:3] + r["features"][4:], features(w, crops[:6])))
        d = err(w.call("features/extract", {"crops": [{"path": crops[0]["path"], "box": [1, 2, 3]}]}), -32602)
        assert d["field"] == "crops[0].box" and d["index"] == 0
        assert err(w.call("features/extract", {"crops": [{"path": crops[0]["path"], "channels": [0]}]}), -32013)
        # Streaming: pieces in order that cover the list once; the response carries counts only.
        r, notes = exchange(w, "features/extract", {"crops": crops[:20], "stream": True, "batchSize": 8})
        parts = [n["params"] for n in notes if n["method"] == "notifications/partial"]
        assert [p["offset"] for p in parts] == [0, 8, 16] and "features" not in r["result"]
        assert [v for p in parts for v in p["items"]] == features(w, crops[:20])
        # Keeping: rows with their metadata in the worker's table, then scored like any table.
        r = ok(w.call("features/extract", {"crops": crops, "keep": True, "returnFeatures": False, "metadata": {"Metadata_Batch": "b1"}}))
        assert r["kept"] == {"table": "cells", "rows": 32, "tableRows": 32} and "features" not in r
        t = ok(w.call("profiles/list"))["tables"][0]
        assert t["rows"] == 32 and t["features"] == 16 and t["metadataColumns"][0] == "Metadata_Batch"
        ok(w.call("profiles/export", {"source": {"table": "cells"}, "path": str(tmp_path / "cells.csv")}))
        # The same crops through `cytogan extract` give the same numbers (same batch size).
        manifest = tmp_path / "crops.csv"
        with open(manifest, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["path", "Metadata_Well"])
            for c in crops:
                out.writerow([c["path"], c["metadata"]["Metadata_Well"]])
        subprocess.run([BIN, "extract", "--model", str(tmp_path / "m.safetensors"), "--manifest", str(manifest),
                        "--batch", "64", "--out", str(tmp_path / "cli.csv")], check=True, capture_output=True)
        with open(tmp_path / "cli.csv", newline="") as f:
            cli = [[f32(float(x)) for x in row[1:]] for row in list(csv.reader(f))[1:]]
        with open(tmp_path / "cells.csv", newline="") as f:
            rows = list(csv.reader(f))
        kept = [[f32(float(x)) for x in row[len(t["metadataColumns"]):]] for row in rows[1:]]
        assert cli == [[f32(x) for x in v] for v in features(w, crops, batchSize=64)]
        assert kept == cli
    finally:
        w.kill()


def test_a_cancelled_extraction_keeps_nothing(crops):
    w = Worker()
    try:
        w.initialize()
        create_tiny(w)
        many = crops * 40   # 1280 crops: long enough to be cancelled between batches
        w.send({"jsonrpc": "2.0", "id": "x", "method": "features/extract",
                "params": {"crops": many, "keep": True, "batchSize": 8, "_meta": {"progressToken": "p"}}})
        while True:
            m = w.recv(timeout=60)
            if m.get("method") == "notifications/progress" and m["params"]["progress"] >= 80:
                break
        w.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "x", "reason": "stop"}})
        m, _ = w.recv_until("x", timeout=60)
        assert m["error"]["code"] == -32800 and m["error"]["data"]["reason"] == "stop"
        assert ok(w.call("profiles/list")) == {"tables": []}
        # A background extraction job keeps its rows when done.
        job = ok(w.call("features/extract", {"crops": crops, "keep": True, "background": True, "table": "bg"}))
        assert job["kind"] == "extract"
        end = ok(w.call("jobs/wait", {"jobId": job["jobId"]}))
        assert end["state"] == "done" and end["result"]["kept"]["rows"] == 32
        assert ok(w.call("profiles/list"))["tables"][0]["name"] == "bg"
    finally:
        w.kill()


def test_crops_cut_from_a_field_by_centre_box_and_mask(shared_data):
    """The stardist nuclei field (512x512, 16-bit, 1 channel) and its label mask: label 19 covers
    its centre pixel (166, 141) (found once with NumPy; the data are fixed)."""
    field = str(shared_data / "fields" / "stardist" / "img2d.tif")
    mask = str(shared_data / "fields" / "stardist" / "mask2d.tif")
    w = Worker()
    try:
        w.initialize()
        one = {"architecture": {**TINY["architecture"], "channels": 1}, "batch_size": 8}
        assert ok(w.call("model/create", {"preset": "small-64", "config": one}))["config"]["preprocessing"]["channels"] == 1

        def feat(crop):
            return ok(w.call("features/extract", {"crops": [crop]}))["features"][0]

        centre = feat({"path": field, "centre": [166, 141]})
        # A 32x32 box centred on the same point is the same window as a centre crop of the model's size.
        assert feat({"path": field, "box": [150, 125, 182, 157]}) == centre
        masked = feat({"path": field, "centre": [166, 141], "mask": mask})
        assert masked != centre
        assert feat({"path": field, "centre": [166, 141], "mask": mask, "label": 19}) == masked
        assert feat({"path": field, "centre": [166.4, 140.6]}) == centre      # centres round to pixels
        for crop in [{"path": field, "centre": [0, 0], "mask": mask},            # background under the centre
                     {"path": field, "centre": [600, 10]},                       # outside the field
                     {"path": field, "centre": [166, 141], "mask": mask, "label": 2}]:   # no label 2 in the window
            d = err(w.call("features/extract", {"crops": [{"path": field}, crop]}), -32014)
            assert d["index"] == 1 and d["path"] in (field, mask)
        d = err(w.call("features/extract", {"crops": [{"path": field, "centre": [10, 10], "mask": str(shared_data / "bbbc021" / "crops" / "Week4_27481" / "B02" / "s1_0000.tif")}]}), -32013)
        assert d["index"] == 0
    finally:
        w.kill()
