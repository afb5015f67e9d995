"""cytogan train / extract / sample / encode, checked from outside: checkpoints read by the
`safetensors` package with the expected names, shapes and metadata; the discriminator's features
and the generator's samples recomputed in NumPy from the checkpoint's weights (written here from
the definitions of CytoGAN's TensorFlow code: 'same' padding, LeakyReLU 0.2, BatchNorm eps 1e-3);
CLI resume equal to one run; bad input reported.
"""
import json

import numpy as np
import pytest
import tifffile
from safetensors import safe_open
from safetensors.numpy import load_file

SIZE, LATENT, G_WIDTHS, D_WIDTHS, D_STRIDES, REP, BATCH = 16, 8, [16, 8, 4], [4, 8, 8], [1, 2, 2], 6, 4
CONFIG = {
    "name": "tiny",
    "architecture": {"size": SIZE, "channels": 3, "latent": LATENT, "generator_widths": G_WIDTHS,
                     "discriminator_widths": D_WIDTHS, "discriminator_strides": D_STRIDES, "representation": REP},
    "loss": "lsgan", "batch_size": BATCH, "seed": "5",
    "discriminator_rate": 0.001, "generator_rate": 0.001,
    "preprocessing": {"size": SIZE, "channels": 3, "normalization": {"kind": "per_crop_max"}, "resize": "resample"},
    "augmentation": {"flips": True, "rotations": True},
}


def write_crops(folder, n, seed=1):
    """n 3-channel uint16 crops of SIZE x SIZE (a blob and noise) and a manifest; returns (manifest, arrays)."""
    rng = np.random.default_rng(seed)
    (folder / "crops").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    rows, arrays = ["path,Metadata_Plate,Metadata_Well,Metadata_Compound,Metadata_Concentration"], []
    for i in range(n):
        cy, cx = rng.uniform(4, SIZE - 4, 2)
        a = np.stack([2000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (2 + c) ** 2)) + rng.integers(0, 200, (SIZE, SIZE))
                      for c in range(3)]).astype(np.uint16)
        tifffile.imwrite(folder / "crops" / f"c{i}.tif", a, photometric="minisblack", planarconfig="separate")
        rows.append(f"crops/c{i}.tif,P{i % 2},W{i % 3},{'DMSO' if i % 3 == 0 else 'X'},{i % 3}")
        arrays.append(a)
    (folder / "crops.csv").write_text("\n".join(rows) + "\n")
    return folder / "crops.csv", arrays


@pytest.fixture(scope="module")
def trained(cytogan, tmp_path_factory):
    """A tiny LSGAN trained 3 steps on 10 synthetic crops (one thread)."""
    d = tmp_path_factory.mktemp("gan")
    manifest, arrays = write_crops(d, 10)
    (d / "tiny.json").write_text(json.dumps(CONFIG))
    p = cytogan("train", "--manifest", manifest, "--config", d / "tiny.json", "--steps", 3, "--checkpoint-dir", d / "ck",
                "--threads", 1, "--progress", "none")
    summary = json.loads(p.stdout)
    return d, manifest, arrays, summary


# ---------------------------------------------------------------------------------------------
# NumPy forward passes from the checkpoint's weights.

def conv_same(x, w, b, stride):
    """TensorFlow 'same' cross-correlation: x [N, C, H, W], w [O, C, k, k] (PyTorch layout)."""
    n, c, h, width = x.shape
    k = w.shape[2]
    out = -(-h // stride)
    total = max((out - 1) * stride + k - h, 0)
    before = total // 2
    xp = np.pad(x, ((0, 0), (0, 0), (before, total - before), (before, total - before)))
    y = np.zeros((n, w.shape[0], out, out))
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, :, ky:ky + stride * out:stride, kx:kx + stride * out:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return y + b[None, :, None, None]


def lrelu(x):
    return np.where(x > 0, x, 0.2 * x)


def representation(t, x):
    h = x.astype(np.float64)
    for i, s in enumerate(D_STRIDES):
        h = lrelu(conv_same(h, t[f"discriminator.conv{i}.weight"], t[f"discriminator.conv{i}.bias"], s))
    h = h.reshape(h.shape[0], -1)
    return h @ t["discriminator.representation.weight"].T + t["discriminator.representation.bias"]


def generate(t, z):
    def bn(h, name):
        m, v = t[f"generator.{name}.running_mean"], t[f"generator.{name}.running_var"]
        g, b = t[f"generator.{name}.weight"], t[f"generator.{name}.bias"]
        return (h - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-3) * g[None, :, None, None] + b[None, :, None, None]

    s0 = SIZE >> (len(G_WIDTHS) - 1)
    h = (z @ t["generator.dense0.weight"].T + t["generator.dense0.bias"]).reshape(len(z), G_WIDTHS[0], s0, s0)
    h = lrelu(bn(h, "bn0"))
    for i in range(1, len(G_WIDTHS)):
        h = h.repeat(2, axis=2).repeat(2, axis=3)
        h = lrelu(bn(conv_same(h, t[f"generator.conv{i}.weight"], t[f"generator.conv{i}.bias"], 1), f"bn{i}"))
    n = len(G_WIDTHS)
    return np.tanh(conv_same(h, t[f"generator.conv{n}.weight"], t[f"generator.conv{n}.bias"], 1))


def model_input(a):
    """CytoGAN's preprocessing: each channel divided by its own maximum, mapped to [-1, 1]."""
    a = a.astype(np.float64)
    return 2 * a / a.max(axis=(1, 2), keepdims=True) - 1


# ---------------------------------------------------------------------------------------------

def test_gan_checkpoint_read_by_safetensors(trained):
    d, _, _, summary = trained
    assert summary["step"] == 3 and summary["steps_run"] == 3 and summary["skipped_crops"] == 0
    path = summary["checkpoint"]
    assert path.endswith("checkpoint-000000003.safetensors")
    t = load_file(path)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    s0 = SIZE >> (len(G_WIDTHS) - 1)
    expected = {"generator.dense0.weight": (s0 * s0 * G_WIDTHS[0], LATENT), "generator.dense0.bias": (s0 * s0 * G_WIDTHS[0],)}
    for i, w in enumerate(G_WIDTHS):
        for k in ["weight", "bias", "running_mean", "running_var"]:
            expected[f"generator.bn{i}.{k}"] = (w,)
        if i > 0:
            expected[f"generator.conv{i}.weight"] = (w, G_WIDTHS[i - 1], 5, 5)
            expected[f"generator.conv{i}.bias"] = (w,)
    n = len(G_WIDTHS)
    expected[f"generator.conv{n}.weight"] = (3, G_WIDTHS[-1], 5, 5)
    expected[f"generator.conv{n}.bias"] = (3,)
    c, side = 3, SIZE
    for i, (w, s) in enumerate(zip(D_WIDTHS, D_STRIDES)):
        expected[f"discriminator.conv{i}.weight"] = (w, c, 5, 5)
        expected[f"discriminator.conv{i}.bias"] = (w,)
        c, side = w, -(-side // s)
    expected["discriminator.representation.weight"] = (REP, c * side * side)
    expected["discriminator.representation.bias"] = (REP,)
    expected["discriminator.output.weight"] = (1, REP)
    expected["discriminator.output.bias"] = (1,)
    for net in ["generator", "discriminator"]:
        for name, shape in list(expected.items()):
            if name.startswith(net + ".") and "running" not in name:
                for slot in "mv":
                    expected[f"optimizer.{net}.{slot}.{name[len(net) + 1:]}"] = shape
    assert {k: v.shape for k, v in t.items()} == expected
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in t.values())
    assert all((t[k] >= 0).all() for k in t if ".v." in k)                   # Adam's second moments
    assert any((t[f"generator.bn{i}.running_var"] != 1).any() for i in range(len(G_WIDTHS)))

    assert meta["format"] == "cytogan.gan" and meta["format_version"] == "1"
    config = json.loads(meta["config"])
    assert config["architecture"]["generator_widths"] == G_WIDTHS and config["batch_size"] == BATCH
    assert config["loss"] == meta["loss"] == "lsgan" and meta["feature_layer"] == "representation"
    assert json.loads(meta["preprocessing"])["normalization"] == {"kind": "per_crop_max"}
    assert json.loads(meta["architecture"]) == config["architecture"]
    assert meta["step"] == "3" and json.loads(meta["optimizer_steps"]) == {"generator": 3, "discriminator": 3}
    assert (int(meta["epoch"]), int(meta["position"]), int(meta["dataset_count"])) == divmod(3 * BATCH, 10) + (10,)
    streams = json.loads(meta["random_state"])
    assert set(streams) == {"latent", "label_smoothing", "interpolation", "discriminator_noise", "data_order_epoch_start", "augmentation"}
    assert all(len(w) == 4 and all(0 <= int(x) < 2 ** 64 for x in w) for w in streams.values())


def test_gan_features_match_numpy_forward(cytogan, trained):
    d, manifest, arrays, summary = trained
    p = cytogan("extract", "--model", summary["checkpoint"], "--manifest", manifest, "--batch", 3, "--threads", 1)
    lines = p.stdout.strip().split("\n")
    header = lines[0].split(",")
    assert header[:4] == ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration"]
    assert header[4:] == [f"Cytogan_representation_{k}" for k in range(REP)]
    rows = [l.split(",") for l in lines[1:]]
    assert [r[1] for r in rows] == [f"W{i % 3}" for i in range(10)]           # input order
    got = np.array([[float(v) for v in r[4:]] for r in rows])
    t = load_file(summary["checkpoint"])
    want = representation(t, np.stack([model_input(a) for a in arrays]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Deterministic, and the same in .npy form with its metadata CSV beside it.
    again = cytogan("extract", "--model", summary["checkpoint"], "--manifest", manifest, "--batch", 3, "--threads", 1).stdout
    assert again == p.stdout
    other = cytogan("extract", "--model", summary["checkpoint"], "--manifest", manifest, "--batch", 256, "--threads", 2).stdout
    np.testing.assert_allclose(np.array([[float(v) for v in l.split(",")[4:]] for l in other.strip().split("\n")[1:]]), got, rtol=1e-5, atol=1e-7)
    cytogan("extract", "--model", summary["checkpoint"], "--manifest", manifest, "--out", d / "f.npy", "--threads", 1)
    np.testing.assert_allclose(np.load(d / "f.npy"), got, rtol=1e-6)
    assert (d / "f.metadata.csv").read_text().split("\n")[0] == ",".join(header[:4])
    # Noisy encoding differs, and is reproducible from its seed.
    n1 = cytogan("extract", "--model", summary["checkpoint"], "--manifest", manifest, "--noisy", "--noise-seed", 4).stdout
    n2 = cytogan("extract", "--model", summary["checkpoint"], "--manifest", manifest, "--noisy", "--noise-seed", 4).stdout
    assert n1 == n2 and n1 != p.stdout


def test_gan_extract_line_mode(cytogan, trained):
    d, manifest, arrays, summary = trained
    order = [7, 2, 9, 0]
    paths = [str(d / "crops" / f"c{i}.tif") for i in order]
    stdin = "\n".join(paths[:2] + [str(d / "nope.tif")] + paths[2:]) + "\n"
    p = cytogan("extract", "--model", summary["checkpoint"], "--paths", "-", "--layer", "representation,pooled", input=stdin)
    lines = p.stdout.strip().split("\n")
    header = lines[0].split(",")
    assert header[0] == "Metadata_Path" and len(header) == 1 + REP + sum(D_WIDTHS)
    assert [l.split(",")[0] for l in lines[1:]] == paths                      # order kept, bad one skipped
    assert "nope.tif" in p.stderr
    got = np.array([[float(v) for v in l.split(",")[1:1 + REP]] for l in lines[1:]])
    want = representation(load_file(summary["checkpoint"]), np.stack([model_input(arrays[i]) for i in order]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_gan_intensity_features_match_numpy(cytogan, trained):
    d, manifest, arrays, _ = trained
    p = cytogan("extract", "--features", "intensity", "--manifest", manifest)
    lines = p.stdout.strip().split("\n")
    header = lines[0].split(",")
    got = np.array([[float(v) for v in l.split(",")[4:]] for l in lines[1:]])
    for ci, ch in enumerate(["DNA", "Tubulin", "Actin"]):
        a = np.stack(arrays)[:, ci].reshape(10, -1).astype(np.float64)
        for name, want in [("Mean", a.mean(1)), ("Std", a.std(1)), ("Max", a.max(1)), ("P90", np.percentile(a, 90, axis=1))]:
            np.testing.assert_allclose(got[:, header.index(f"Intensity_{name}_{ch}") - 4], want, rtol=1e-5)


def test_gan_samples_match_numpy_generator(cytogan, trained):
    d, _, _, summary = trained
    z = np.random.default_rng(3).standard_normal((5, LATENT)).astype(np.float32)
    np.save(d / "z.npy", z)
    out = d / "samples"
    cytogan("sample", "--model", summary["checkpoint"], "--vectors", d / "z.npy", "--out", out, "--threads", 1)
    assert (out / "samples.png").exists()
    np.testing.assert_array_equal(np.load(out / "samples-z.npy"), z)
    want = generate(load_file(summary["checkpoint"]), z.astype(np.float64))
    for i in range(5):
        img = tifffile.imread(out / f"sample-{i:04d}.tif")                  # 16-bit, samples interleaved
        assert img.dtype == np.uint16 and img.shape == (SIZE, SIZE, 3)
        np.testing.assert_allclose(np.moveaxis(img, -1, 0).astype(np.float64), np.round((want[i] + 1) / 2 * 65535), atol=3)


def test_gan_interpolation_and_algebra_vectors(cytogan, trained):
    d, _, _, summary = trained
    out = d / "walk"
    p = cytogan("sample", "--model", summary["checkpoint"], "--count", 3, "--seed", 8, "--interpolate", "0,1", "--mode", "slerp",
                "--steps", 5, "--algebra", "0,1,2", "--out", out)
    assert json.loads(p.stdout) == {"vectors": 3, "interpolations": 1, "algebra": 1, "out": str(out)}
    path = np.load(out / "interpolation-z.npy").astype(np.float64)
    a, b = path[0], path[-1]
    w = np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    for i, t in enumerate(np.linspace(0, 1, 5)):
        np.testing.assert_allclose(path[i], (np.sin((1 - t) * w) * a + np.sin(t * w) * b) / np.sin(w), rtol=1e-5, atol=1e-6)
    alg = np.load(out / "algebra-z.npy").astype(np.float64)
    np.testing.assert_allclose(alg[3], alg[0] - alg[1] + alg[2], atol=1e-6)
    np.testing.assert_allclose(alg[0], a, atol=0)                            # the same drawn vectors
    for k in range(4):
        assert tifffile.imread(out / f"algebra-0-{k:04d}.tif").shape == (SIZE, SIZE, 3)


def test_gan_encode_writes_vectors_and_reconstructions(cytogan, trained):
    d, manifest, _, summary = trained
    out = d / "enc"
    p = cytogan("encode", "--model", summary["checkpoint"], "--manifest", manifest, "--limit", 3, "--iterations", 40, "--out", out,
                "--threads", 1)
    r = json.loads(p.stdout)
    assert r["crops"] == 3 and r["loss_last"] < r["loss_first"]
    z = np.load(out / "z.npy")
    assert z.shape == (3, LATENT)
    errors = (out / "errors.csv").read_text().strip().split("\n")
    assert len(errors) == 4 and errors[1].split(",")[1] == "crops/c0.tif"
    # The reconstruction written is G(z) for the vector written.
    want = generate(load_file(summary["checkpoint"]), z.astype(np.float64))
    recon = np.moveaxis(tifffile.imread(out / "recon-0001.tif"), -1, 0).astype(np.float64)
    np.testing.assert_allclose(recon, np.round((want[1] + 1) / 2 * 65535), atol=3)


def test_gan_cli_resume_equals_one_run(cytogan, tmp_path):
    manifest, _ = write_crops(tmp_path, 7, seed=2)
    cfg = dict(CONFIG, loss="wgangp", critic_steps=2)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    common = ["--manifest", manifest, "--threads", 1, "--progress", "none"]
    one = json.loads(cytogan("train", *common, "--config", tmp_path / "c.json", "--steps", 4, "--checkpoint-dir", tmp_path / "a").stdout)
    cytogan("train", *common, "--config", tmp_path / "c.json", "--steps", 2, "--checkpoint-dir", tmp_path / "b")
    two = json.loads(cytogan("train", *common, "--resume", tmp_path / "b", "--steps", 2, "--checkpoint-dir", tmp_path / "b").stdout)
    assert one["step"] == two["step"] == 4
    ta, tb = load_file(one["checkpoint"]), load_file(two["checkpoint"])
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
    with safe_open(one["checkpoint"], framework="numpy") as f1, safe_open(two["checkpoint"], framework="numpy") as f2:
        m1, m2 = f1.metadata(), f2.metadata()
    for k in ["random_state", "step", "epoch", "position", "optimizer_steps"]:
        assert m1[k] == m2[k], k


def test_gan_bad_input_is_reported(cytogan, trained, tmp_path):
    d, manifest, _, summary = trained
    p = cytogan("train", "--manifest", tmp_path / "none.csv", "--steps", 1, check=False)
    assert p.returncode != 0 and "none.csv" in p.stderr
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    p = cytogan("extract", "--model", tmp_path / "bad.safetensors", "--manifest", manifest, check=False)
    assert p.returncode == 1 and "bad.safetensors" in p.stderr
    p = cytogan("sample", "--model", summary["checkpoint"], "--count", 2, "--interpolate", "0,5", "--out", tmp_path / "s", check=False)
    assert p.returncode != 0 and "0..<2" in p.stderr
    # Bad manifest rows and unreadable crops are skipped, counted and named; training goes on.
    text = manifest.read_text() + "crops/missing.tif,P0,W0,DMSO,0\n,P0,W0,DMSO,0\ncrops/c1.tif,P0\n"
    (d / "bad.csv").write_text(text)
    p = cytogan("train", "--manifest", d / "bad.csv", "--config", d / "tiny.json", "--steps", 4, "--checkpoint-dir", tmp_path / "ck",
                "--progress", "none")
    s = json.loads(p.stdout)
    assert s["skipped_manifest_rows"] == 2 and s["skipped_crops"] >= 1 and s["step"] == 4
    assert "missing.tif" in p.stderr and "bad.csv:13" in p.stderr and "bad.csv:14" in p.stderr


def test_gan_small64_on_real_crops(cytogan, shared_data, tmp_path):
    d = shared_data / "bbbc021"
    rows = (d / "crops.csv").read_text().split("\n")
    (tmp_path / "m.csv").write_text("\n".join(rows[:41]) + "\n")
    s = json.loads(cytogan("train", "--manifest", tmp_path / "m.csv", "--root", d, "--preset", "small-64", "--steps", 2,
                           "--checkpoint-dir", tmp_path / "ck", "--progress", "none").stdout)
    assert s["step"] == 2 and s["skipped_crops"] == 0
    p = cytogan("extract", "--model", s["checkpoint"], "--manifest", tmp_path / "m.csv", "--root", d, "--out", tmp_path / "f.csv")
    f = np.genfromtxt(tmp_path / "f.csv", delimiter=",", skip_header=1)
    assert f.shape == (40, 8 + 100)


def test_gan_sigint_checkpoints_then_exits(cytogan, trained, tmp_path):
    import os
    import signal
    import subprocess
    import time
    d, manifest, _, _ = trained
    bin_ = os.environ.get("CYTOGAN_BIN")
    p = subprocess.Popen([bin_, "train", "--manifest", str(manifest), "--config", str(d / "tiny.json"), "--steps", "1000000",
                          "--checkpoint-dir", str(tmp_path / "ck"), "--progress", "none", "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    s = json.loads(out)
    assert s["stop_reason"] == "requested" and 0 < s["step"] < 1000000 and "signal" in err
    with safe_open(s["checkpoint"], framework="numpy") as f:
        assert f.metadata()["step"] == str(s["step"])


def test_gan_spectral_norm_weights_have_unit_norm(cytogan, tmp_path):
    """--spectral-norm: every discriminator weight in the checkpoint, seen as a matrix of its
    first dimension's rows, has largest singular value 1 by NumPy's SVD (one power iteration per
    update estimates it from below: 1 to a few percent above); its biases and the generator do
    not; the config records the choice and --no-spectral-norm leaves no such state."""
    manifest, _ = write_crops(tmp_path, 10)
    (tmp_path / "tiny.json").write_text(json.dumps(CONFIG))
    common = ["train", "--manifest", manifest, "--config", tmp_path / "tiny.json", "--steps", 20, "--threads", 1, "--progress", "none"]
    s = json.loads(cytogan(*common, "--spectral-norm", "--checkpoint-dir", tmp_path / "sn").stdout)
    t = load_file(s["checkpoint"])
    with safe_open(s["checkpoint"], "np") as f:
        assert json.loads(f.metadata()["config"])["spectral_norm"] is True
    weights = [k for k in t if k.startswith("discriminator.") and k.endswith(".weight")]
    assert len(weights) == 5
    for k in weights:
        sigma = np.linalg.svd(t[k].reshape(t[k].shape[0], -1).astype(np.float64), compute_uv=False)[0]
        assert 0.9999 < sigma < 1.05, (k, sigma)
        assert f"spectral_norm.sigma.{k.removeprefix('discriminator.')}" in t
    g = t["generator.conv1.weight"]
    assert abs(np.linalg.svd(g.reshape(g.shape[0], -1), compute_uv=False)[0] - 1) > 0.05
    s = json.loads(cytogan(*common, "--no-spectral-norm", "--checkpoint-dir", tmp_path / "plain").stdout)
    t = load_file(s["checkpoint"])
    assert not any(k.startswith("spectral_norm.") for k in t)
    with safe_open(s["checkpoint"], "np") as f:
        assert json.loads(f.metadata()["config"])["spectral_norm"] is False


def sqrt_transfer(v, c):
    """The square-root intensity transfer on normalized values v in [-1, 1], from its definition."""
    u = np.clip((v + 1) / 2, 0, 1)
    return (np.sqrt(u + c) - np.sqrt(c)) / (np.sqrt(1 + c) - np.sqrt(c)) * 2 - 1


def test_gan_square_root_transfer_in_and_out(cytogan, tmp_path):
    """--transfer sqrt:C: the model's inputs are the normalized crops through the square root
    (NumPy on the TIFF's pixels), the config records it, and samples written in the crops' units
    are the NumPy generator's images through the inverse square root and the inverse range."""
    manifest, arrays = write_crops(tmp_path, 10)
    low, high, c = [50.0, 60.0, 70.0], [1500.0, 1800.0, 2100.0], 0.04
    norm = {"kind": "fixed_range", "low": low, "high": high}
    lo, hi = np.array(low)[:, None, None], np.array(high)[:, None, None]
    cytogan("image", "prepare", tmp_path / "crops" / "c3.tif", "--npy", tmp_path / "in.npy", "--size", SIZE, "--resize", "pad_crop",
            "--normalization", json.dumps(norm), "--transfer", f"sqrt:{c}")
    linear = np.clip((arrays[3].astype(np.float64) - lo) / (hi - lo) * 2 - 1, -1, 1)
    np.testing.assert_allclose(np.load(tmp_path / "in.npy")[0], sqrt_transfer(linear, c), atol=2e-6)

    config = dict(CONFIG, preprocessing=dict(CONFIG["preprocessing"], normalization=norm))
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    s = json.loads(cytogan("train", "--manifest", manifest, "--config", tmp_path / "tiny.json", "--transfer", f"sqrt:{c}",
                           "--steps", 3, "--threads", 1, "--progress", "none", "--checkpoint-dir", tmp_path / "ck").stdout)
    with safe_open(s["checkpoint"], "np") as f:
        pre = json.loads(f.metadata()["config"])["preprocessing"]
    assert pre["transfer"]["kind"] == "square_root" and abs(pre["transfer"]["offset"] - c) < 1e-7
    z = np.random.default_rng(4).standard_normal((3, LATENT)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    cytogan("sample", "--model", s["checkpoint"], "--vectors", tmp_path / "z.npy", "--units", "crops", "--out", tmp_path / "s", "--threads", 1)
    model = generate(load_file(s["checkpoint"]), z.astype(np.float64))
    r0, span = np.sqrt(c), np.sqrt(1 + c) - np.sqrt(c)
    u = np.clip((np.clip((model + 1) / 2, 0, 1) * span + r0) ** 2 - c, 0, 1)
    want = lo + u * (hi - lo)
    for i in range(3):
        img = np.moveaxis(tifffile.imread(tmp_path / "s" / f"sample-{i:04d}.tif"), -1, 0).astype(np.float64)
        np.testing.assert_allclose(img, np.round(want[i]), atol=2)
