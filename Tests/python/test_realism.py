"""cytogan evaluate realism, checked from outside on real BBBC021 crops: the 41 per-image
measurements and the Frechet distance recomputed in NumPy from the definitions (with
scipy.linalg.sqrtm as a second route to the trace term) on the same model-space inputs (made by
`cytogan image prepare` with the model's stored preprocessing), the logistic two-sample test
against scikit-learn on the same folds, and the measure's behaviour: real vs real below real vs
crops blurred by 0.7 px below 2 px, a classifier at chance on real vs real, one JSON line per
checkpoint of a folder, bad input named.
"""
import csv
import json
import shutil
import struct

import numpy as np
import pytest
import scipy.linalg
import tifffile
from scipy.ndimage import gaussian_filter
from sklearn.linear_model import LogisticRegression

N = 150


def model_preprocessing(checkpoint):
    """The `preprocessing` JSON stored in a checkpoint's safetensors metadata."""
    with open(checkpoint, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return json.loads(header["__metadata__"]["preprocessing"])


def write_manifest(path, paths):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows([p] for p in paths)
    return path


@pytest.fixture(scope="module")
def setup(cytogan, shared_data, tmp_path_factory):
    """An untrained cpu-64 model (and a folder with it and a 1-step successor), a manifest of
    400 real crops for A and B, and manifests of 150 other crops: as they are and blurred."""
    d = tmp_path_factory.mktemp("realism")
    crops = shared_data / "bbbc021" / "crops.csv"
    if not crops.exists():
        pytest.skip(f"BBBC021 crops not found at {crops}")
    cytogan("train", "--preset", "cpu-64", "--steps", 0, "--manifest", crops, "--checkpoint-dir", d / "run", "--threads", 2,
            "--progress", "none")
    model = d / "model.safetensors"
    shutil.copy(d / "run" / "checkpoint-000000000.safetensors", model)
    cytogan("train", "--resume", d / "run", "--steps", 1, "--manifest", crops, "--checkpoint-dir", d / "run", "--threads", 2,
            "--progress", "none")

    with open(crops) as f:
        rows = [r["path"] for r in csv.DictReader(f)]
    order = np.random.default_rng(7).permutation(len(rows))
    base = crops.parent
    real = [str(base / rows[i]) for i in order[:400]]
    other = [str(base / rows[i]) for i in order[400:400 + N]]
    manifests = {"real": write_manifest(d / "real.csv", real), "other": write_manifest(d / "other.csv", other)}
    for sigma in (0.7, 2.0):
        folder = d / f"blur{sigma}"
        folder.mkdir()
        paths = []
        for k, p in enumerate(other):
            a = tifffile.imread(p).astype(np.float64)          # 68 x 68 x 3
            b = np.clip(np.rint(gaussian_filter(a, sigma=(sigma, sigma, 0))), 0, 65535).astype(np.uint16)
            out = folder / f"c{k}.tif"
            tifffile.imwrite(out, b, photometric="minisblack", planarconfig="contig")
            paths.append(str(out))
        manifests[f"blur{sigma}"] = write_manifest(d / f"blur{sigma}.csv", paths)
    return d, model, manifests


def evaluate(cytogan, model, manifest, *args):
    p = cytogan("evaluate", "realism", "--model", model, "--manifest", manifest, "--count", N, "--seed", 3, "--threads", 2, *args)
    lines = p.stdout.strip().splitlines()
    assert all(line.startswith("{") for line in lines), "stdout holds only the JSON lines"
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def runs(cytogan, setup):
    """Real vs other real crops (the classifier at full strength), vs the same crops blurred
    (a light classifier), each with its per-image measurements."""
    d, model, m = setup
    out = {}
    for name, extra in [("other", ["--folds", 4, "--epochs", 3]), ("blur0.7", ["--folds", 2, "--epochs", 1]),
                        ("blur2.0", ["--folds", 2, "--epochs", 1])]:
        table = d / f"measurements-{name}.csv"
        [result] = evaluate(cytogan, model, m["real"], "--generated", m[name], "--measurements", table, *extra)
        out[name] = (result, table)
    return out


# ---------------------------------------------------------------------------------------------
# The definitions, in NumPy.

def measurements(x):
    """The 41 measurements of model-space images x [N, C, S, S] (values in [-1, 1])."""
    u = (x.astype(np.float64) + 1) / 2
    n, channels, s, _ = u.shape
    c0 = (s - 1) / 2
    yy, xx = np.mgrid[0:s, 0:s]
    r = np.sqrt((yy - c0) ** 2 + (xx - c0) ** 2)
    rings = [(r >= k * s / 8) & (r < (k + 1) * s / 8) for k in range(4)]
    cols = []
    for c in range(channels):
        p = u[:, c]
        flat = p.reshape(n, -1)
        q05, q50, q95 = np.percentile(flat, [5, 50, 95], axis=1)
        cols += [flat.mean(1), flat.std(1), q05, q50, q95, (flat >= 0.98).mean(1)]
        cols += [p[:, ring].mean(1) for ring in rings]
        cols.append(((p[:, :, 1:] - p[:, :, :-1]) ** 2).mean((1, 2)) + ((p[:, 1:, :] - p[:, :-1, :]) ** 2).mean((1, 2)))
        cols.append(np.abs(4 * p[:, 1:-1, 1:-1] - p[:, :-2, 1:-1] - p[:, 2:, 1:-1] - p[:, 1:-1, :-2] - p[:, 1:-1, 2:]).mean((1, 2)))
    nucleus = np.zeros((n, 5))
    for i in range(n):
        p = u[i, 0]
        q50, q99 = np.percentile(p, [50, 99])
        mask = p > (q50 + q99) / 2
        area = mask.sum()
        if area == 0:
            continue
        ys, xs = np.nonzero(mask)
        offset = np.hypot(ys.mean() - c0, xs.mean() - c0) / s
        ecc = 0.0
        if area >= 2:
            l2, l1 = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(np.float64), bias=True))
            ecc = np.sqrt(max(0.0, 1 - l2 / l1)) if l1 > 0 else 0.0
        pad = np.pad(mask, 1)
        inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        perimeter = (mask & ~inner).sum()
        contrast = p[mask].mean() - p[~mask].mean() if area < s * s else 0.0
        nucleus[i] = [area / s ** 2, offset, ecc, perimeter ** 2 / (4 * np.pi * area), contrast]
    return np.column_stack(cols + [nucleus])


def standardizer(a):
    mean, std = a.mean(0), a.std(0)
    return mean, np.where(std < 1e-12, 1.0, std)


def frechet(x, y):
    """FD of the rows of x and y, the trace term by the spec's route, checked against sqrtm."""
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    trace = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    by_sqrtm = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert abs(trace - by_sqrtm) <= 1e-6 * trace, (trace, by_sqrtm)
    return ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace


def model_inputs(cytogan, tmp_path, preprocessing, paths):
    out = tmp_path / "inputs.npy"
    cytogan("image", "prepare", *paths, "--size", preprocessing["size"], "--normalization", json.dumps(preprocessing["normalization"]),
            "--resize", preprocessing["resize"], "--npy", out)
    return np.load(out)


def read_table(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    names = [k for k in rows[0] if k not in ("step", "set", "index", "path")]
    sets = {}
    for s in "ABG":
        part = [r for r in rows if r["set"] == s]
        assert [int(r["index"]) for r in part] == list(range(len(part)))
        sets[s] = ([r["path"] for r in part], np.array([[float(r[k]) for k in names] for r in part]))
    return names, sets


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["other", "blur0.7", "blur2.0"])
def test_measurements_and_frechet_match_numpy(cytogan, setup, runs, tmp_path, name):
    d, model, _ = setup
    result, table = runs[name]
    names, sets = read_table(table)
    assert result["measurements"]["names"] == names and len(names) == 41
    assert result["count"] == N and result["size"] == 64
    pre = model_preprocessing(model)
    mine = {}
    for s in "ABG":
        paths, theirs = sets[s]
        assert len(paths) == N
        mine[s] = measurements(model_inputs(cytogan, tmp_path, pre, paths))
        np.testing.assert_allclose(theirs, mine[s], rtol=1e-9, atol=1e-7, err_msg=f"set {s}: per-image measurements")
    a, b, g = mine["A"], mine["B"], mine["G"]
    m = result["measurements"]
    np.testing.assert_allclose(m["real_mean"], a.mean(0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(m["generated_mean"], g.mean(0), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(m["real_std"], a.std(0), rtol=1e-5, atol=1e-8)
    mean, scale = standardizer(a)
    za, zb, zg = ((x - mean) / scale for x in (a, b, g))
    fd, floor = frechet(za, zg), frechet(za, zb)
    f = result["frechet"]
    assert f["distance"] == pytest.approx(fd, rel=1e-3) and f["floor"] == pytest.approx(floor, rel=1e-3)
    # The distance by kind of measurement: NumPy's FD on each kind's columns, and on the rest.
    kinds = {}
    for i, n in enumerate(names):
        kinds.setdefault("nucleus" if n.startswith("nuc_") else n.rsplit("_", 1)[0], []).append(i)
    assert [p["measurement"] for p in f["parts"]] == list(kinds) and len(kinds) == 13
    for p in f["parts"]:
        cols = kinds[p["measurement"]]
        rest = [i for i in range(len(names)) if i not in cols]
        assert p["alone"] == pytest.approx(frechet(za[:, cols], zg[:, cols]), rel=1e-3, abs=1e-9), p
        assert p["without"] == pytest.approx(frechet(za[:, rest], zg[:, rest]), rel=1e-3), p
    assert f["ratio"] == pytest.approx(fd / floor, rel=2e-3)
    grad = [names.index(f"grad_{c}") for c in range(3)]
    q05 = [names.index(f"q05_{c}") for c in range(3)]
    np.testing.assert_allclose(result["sharpness"], g.mean(0)[grad] / a.mean(0)[grad], rtol=1e-5)
    np.testing.assert_allclose(result["background"], (g.mean(0)[q05] - a.mean(0)[q05]) / scale[q05], rtol=1e-5, atol=1e-8)
    # The logistic two-sample test on the same folds (item i in fold i mod k), by scikit-learn.
    k = result["classifier"]["folds"]
    fold = np.arange(N) % k
    correct = 0
    for f_ in range(k):
        train, test = fold != f_, fold == f_
        x = np.vstack([za[train], zg[train]])
        y = np.r_[np.ones(train.sum()), np.zeros(train.sum())]
        lr = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(x, y)
        decision = lr.decision_function(np.vstack([za[test], zg[test]]))
        correct += ((decision > 0) == np.r_[np.ones(test.sum()), np.zeros(test.sum())].astype(bool)).sum()
    assert abs(result["measurement_classifier"]["accuracy"] - correct / (2 * N)) <= 2 / (2 * N)


def test_blur_moves_the_measure_away_and_real_vs_real_sits_at_chance(runs):
    real, b07, b2 = (runs[k][0] for k in ("other", "blur0.7", "blur2.0"))
    # The real sets depend only on the manifest, the seed and the preprocessing.
    assert real["frechet"]["floor"] == b07["frechet"]["floor"] == b2["frechet"]["floor"]
    assert real["frechet"]["ratio"] < b07["frechet"]["ratio"] < b2["frechet"]["ratio"]
    assert all(s < 1 for s in b07["sharpness"]) and all(x < y for x, y in zip(b2["sharpness"], b07["sharpness"]))
    c = real["classifier"]
    assert c["folds"] == 4 and c["epochs"] == 3
    assert abs(c["accuracy"] - 0.5) <= 0.1 and abs(c["null_accuracy"] - 0.5) <= 0.1 and 0 <= c["null_std"] < 0.1


def test_a_folder_of_checkpoints_gives_a_line_per_step(cytogan, setup):
    d, _, m = setup
    lines = evaluate(cytogan, d / "run", m["real"], "--folds", 2, "--epochs", 1)
    assert [r["step"] for r in lines] == [0, 1]
    untrained = lines[0]
    assert untrained["frechet"]["floor"] == lines[1]["frechet"]["floor"]
    # Its generator paints flat grey: far from every real statistic, and easy to tell apart.
    assert untrained["frechet"]["ratio"] > 10 and untrained["measurement_classifier"]["accuracy"] > 0.9
    assert len(untrained["sharpness"]) == 3 and len(untrained["background"]) == 3


def test_bad_input_is_named(cytogan, setup, tmp_path):
    d, model, m = setup
    cases = [
        (["--model", tmp_path / "none.safetensors", "--manifest", m["real"]], "none.safetensors"),
        (["--model", model, "--manifest", tmp_path / "none.csv"], "none.csv"),
        (["--model", model, "--manifest", m["real"], "--count", 1], "--count"),
        (["--model", model, "--manifest", m["real"], "--folds", 1], "--folds"),
        (["--model", tmp_path, "--manifest", m["real"]], "no checkpoint"),
    ]
    (tmp_path / "nopath.csv").write_text("file\nx.tif\n")
    cases.append((["--model", model, "--manifest", m["real"], "--generated", tmp_path / "nopath.csv"], "nopath.csv"))
    for args, expected in cases:
        p = cytogan("evaluate", "realism", *args, check=False)
        assert p.returncode != 0 and p.stdout == "", args
        assert str(expected) in p.stderr, (args, p.stderr)


def test_the_worker_gives_the_command_lines_numbers(setup, runs):
    from conftest import BIN
    from test_worker_support import Worker, canonical, schemas

    d, model, m = setup
    cli = runs["blur2.0"][0]   # count N, seed 3, 2 folds, 1 epoch
    params = {"manifest": {"path": str(m["real"])}, "generated": {"path": str(m["blur2.0"])}, "count": N, "seed": 3,
              "folds": 2, "epochs": 1}
    w = Worker()
    try:
        w.initialize()

        def call(p):
            r = w.call("realism/evaluate", p)
            schemas().validate_received(r, {canonical(r["id"]): "realism/evaluate"})
            return r

        assert call(params)["error"]["code"] == -32015
        got = call({**params, "model": str(model)})["result"]
        assert got["step"] == 0 and got["count"] == N
        for k in ("frechet", "measurements", "measurement_classifier", "sharpness", "background"):
            assert got[k] == cli[k], k
        # The classifier's weight gradients sum per thread: another thread count may move it a little.
        assert abs(got["classifier"]["accuracy"] - cli["classifier"]["accuracy"]) <= 0.05
        # The current model, as a job.
        assert "result" in w.call("model/load", {"path": str(model)})
        job = call({**params, "background": True})["result"]
        assert job["kind"] == "realism" and job["state"] in ("queued", "running")
        done = w.call("jobs/wait", {"jobId": job["jobId"]})["result"]
        assert done["state"] == "done" and done["result"]["frechet"] == got["frechet"]
        # Bad input names the parameter.
        e = call({"manifest": {"path": str(d / "absent.csv")}})["error"]
        assert e["code"] == -32010 and e["data"]["field"] == "manifest" and e["data"]["path"].endswith("absent.csv")
        e = call({**params, "model": str(d / "absent.safetensors")})["error"]
        assert e["code"] == -32010 and e["data"]["field"] == "model"
        e = call({**params, "count": 3, "folds": 4})["error"]
        assert e["code"] == -32602 and e["data"]["field"] == "count"
        e = call({"count": 10})["error"]
        assert e["code"] == -32602 and e["data"]["field"] == "manifest"
        w.close_input()
        assert w.wait() == 0
    finally:
        w.kill()
    # The Python client's helper, as a job.
    import test_integration_support  # noqa: F401 (puts integrations/python on sys.path)
    from cytogan_client import Worker as Client

    with Client.start(str(BIN)) as c:
        job = c.realism_evaluate(m["real"], model=model, generated=m["blur2.0"], count=N, seed=3, folds=2, epochs=1,
                                 background=True)
        assert job.result(timeout=300)["frechet"] == got["frechet"]
