"""The engine's safetensors files against Hugging Face's `safetensors` package, both ways.

Python writes a file (F32, F16, F64, I64 through safetensors.numpy; BF16 by hand), the engine
reads it and writes it back (`cytogan bench safetensors-roundtrip IN OUT`: every tensor as F32,
the metadata plus "roundtrip", and a tensor "roundtrip.sums" with each input tensor's sum), and
Python reads the engine's file with safetensors and checks every value.
"""
import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def _tensors():
    rng = np.random.default_rng(7)
    return {
        "conv0.weight": rng.standard_normal((32, 3, 5, 5)).astype(np.float32),
        "conv0.bias": np.linspace(-1, 1, 32, dtype=np.float32),
        "half": rng.standard_normal((4, 6)).astype(np.float16),
        "double": rng.standard_normal((3,)).astype(np.float64),
        "count": np.array([1, -2, 300000], dtype=np.int64),
        "scalar": np.array(2.5, dtype=np.float32),
    }


def test_python_file_read_and_rewritten_by_the_engine(cytogan, tmp_path):
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    tensors = _tensors()
    save_file(tensors, str(src), metadata={"step": "12", "note": "from python"})

    report = json.loads(cytogan("bench", "safetensors-roundtrip", src, dst).stdout)
    assert report["metadata"] == {"step": "12", "note": "from python"}
    dtypes = {"conv0.weight": "F32", "conv0.bias": "F32", "half": "F16", "double": "F64", "count": "I64", "scalar": "F32"}
    for name, value in tensors.items():
        entry = report["tensors"][name]
        assert entry["dtype"] == dtypes[name]
        assert entry["shape"] == list(value.shape)
        assert entry["sum"] == pytest.approx(float(value.astype(np.float64).sum()), rel=1e-5, abs=1e-4)

    with safe_open(str(dst), framework="numpy") as f:
        assert f.metadata() == {"step": "12", "note": "from python", "roundtrip": "cytogan"}
        names = set(f.keys())
    out = load_file(str(dst))
    assert names == set(tensors) | {"roundtrip.sums"}
    for name, value in tensors.items():
        assert out[name].dtype == np.float32
        assert out[name].shape == value.shape
        np.testing.assert_array_equal(out[name], value.astype(np.float32))
    sums = [float(tensors[n].astype(np.float64).sum()) for n in sorted(tensors)]
    np.testing.assert_allclose(out["roundtrip.sums"], np.array(sums, dtype=np.float32), rtol=1e-5, atol=1e-4)


def _handmade(path, entries, data, metadata=None):
    """A safetensors file written byte by byte (for dtypes numpy lacks, and broken files)."""
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_bfloat16_from_a_handmade_file(cytogan, tmp_path):
    values = np.array([1.5, -0.25, 3.0, 1e-3], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # these values are exact or truncated in bf16
    src, dst = tmp_path / "bf.safetensors", tmp_path / "out.safetensors"
    _handmade(src, {"b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bf16.tobytes())
    report = json.loads(cytogan("bench", "safetensors-roundtrip", src, dst).stdout)
    assert report["tensors"]["b"]["dtype"] == "BF16"
    expected = (bf16.astype(np.uint32) << 16).view(np.float32).reshape(2, 2)
    np.testing.assert_array_equal(load_file(str(dst))["b"], expected)


@pytest.mark.parametrize("case", ["truncated", "bad_json", "offsets"])
def test_broken_files_fail_with_the_path(cytogan, tmp_path, case):
    src = tmp_path / f"{case}.safetensors"
    if case == "truncated":
        save_file({"x": np.ones((10,), dtype=np.float32)}, str(src))
        src.write_bytes(src.read_bytes()[:-8])
    elif case == "bad_json":
        src.write_bytes(struct.pack("<Q", 8) + b"{nope   ")
    else:
        _handmade(src, {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    p = cytogan("bench", "safetensors-roundtrip", src, tmp_path / "never.safetensors", check=False)
    assert p.returncode != 0
    assert str(src) in p.stderr
    assert not (tmp_path / "never.safetensors").exists()
