"""The command line answers as a shell user expects."""

import pytest


def test_help_lists_every_subcommand(cytogan):
    out = cytogan("--help").stdout
    for sub in ["serve", "train", "extract", "sample", "encode", "synth", "demo", "image", "profile"]:
        assert sub in out, f"'{sub}' missing from cytogan --help"


def test_developer_tools_are_hidden_but_answer(cytogan):
    """image bench, image fuzz and bench engine stay out of the user's lists and still run."""
    assert "\n  bench " not in cytogan("--help").stdout
    image = cytogan("image", "--help").stdout
    assert "\n  bench " not in image and "\n  fuzz " not in image
    for tool in [("image", "bench"), ("image", "fuzz"), ("bench", "engine")]:
        assert "USAGE: cytogan " + " ".join(tool) in cytogan(*tool, "--help").stdout


def test_bench_gemm_reports_the_limit_and_each_layers_shapes(cytogan):
    """bench engine --only gemm: OpenBLAS's rate at a large square, then at each layer's matrix
    shapes, derived here from small-64's networks (D: 3 -> 16 -> 32 -> 64 -> 128 channels, 5 x 5,
    strides 1, 2, 2, 2 on 64 x 64 at twice the batch of 32; G: 128 x 8 x 8 -> 64 -> 32 -> 16 by
    upsampling 3 x 3 convolutions, then 16 -> 3); later rates also come as shares of the limit."""
    import json
    out = cytogan("bench", "engine", "--preset", "small-64", "--threads", "1", "--only", "gemm",
                  "--only", "features", "--reps", "1").stdout
    lines = [json.loads(l) for l in out.splitlines()]
    limit = [l for l in lines if l["measure"] == "gemm_limit"]
    assert len(limit) == 1 and limit[0]["gflop_per_s"] > 0 and (limit[0]["m"], limit[0]["n"], limit[0]["k"]) == (1024, 1024, 1024)
    shapes = {(l["net"], l["layer"]): (l["m"], l["n"], l["k"]) for l in lines if l["measure"] == "gemm"}
    assert all(l["gflop_per_s"] > 0 for l in lines if l["measure"] == "gemm")

    def columns(plane, images):
        return plane * max(1, min(images, 4096 // plane))

    widths, side = [3, 16, 32, 64, 128], 64
    for i, stride in enumerate([1, 2, 2, 2]):
        side //= stride
        assert shapes[("discriminator", f"conv{i}")] == (widths[i + 1], columns(side * side, 64), widths[i] * 25)
    g, side = [128, 64, 32, 16], 8
    for i in range(3):
        assert shapes[("generator", f"conv{i + 1}")] == (g[i + 1], columns(side * side, 32), g[i] * 9)
        side *= 2
    assert shapes[("generator", "conv4")] == (3, columns(64 * 64, 32), 16 * 25)
    assert shapes[("generator", "dense0")] == (32, 128 * 8 * 8, 100)
    features = next(l for l in lines if l["measure"] == "features")
    assert features["of_limit"] == pytest.approx(features["gflop_per_s"] / limit[0]["limit_gflop_per_s"], abs=2e-3)


def test_fixed_choice_options_name_their_values(cytogan):
    p = cytogan("train", "--manifest", "none.csv", "--steps", 1, "--progress", "fancy", check=False)
    assert p.returncode != 0
    assert "--progress" in p.stderr
    for value in ["auto", "bar", "lines", "none"]:
        assert f"'{value}'" in p.stderr
    assert "(values: auto, bar, lines, none; default: auto)" in " ".join(cytogan("train", "--help").stdout.split())


def test_unknown_subcommand_fails_with_message(cytogan):
    p = cytogan("no-such-command", check=False)
    assert p.returncode != 0
    assert "no-such-command" in p.stderr


def test_extract_that_produces_nothing_fails(cytogan, tmp_path):
    """Every crop missing: non-zero exit naming why; one of two missing: exit 0 with the count on
    stderr, unless --strict; a manifest whose crops all fail leaves no output file."""
    import numpy as np
    import tifffile
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, (np.arange(32 * 32 * 3, dtype=np.uint16).reshape(32, 32, 3) * 7), photometric="minisblack", planarconfig="contig")
    missing = tmp_path / "nope.tif"
    p = cytogan("extract", "--features", "intensity", "--paths", "-", input=f"{missing}\n", check=False)
    assert p.returncode != 0 and "all 1 crop(s) were skipped" in p.stderr
    p = cytogan("extract", "--features", "intensity", "--paths", "-", input=f"{good}\n{missing}\n")
    assert "1 crop(s), 1 skipped" in p.stderr and p.stdout.count("\n") == 2
    p = cytogan("extract", "--features", "intensity", "--paths", "-", "--strict", input=f"{good}\n{missing}\n", check=False)
    assert p.returncode != 0 and "--strict" in p.stderr
    p = cytogan("extract", "--features", "intensity", "--paths", "-", input="", check=False)
    assert p.returncode != 0 and "no crops were given" in p.stderr
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,Metadata_Well\n{missing},A01\n")
    out = tmp_path / "f.csv"
    p = cytogan("extract", "--features", "intensity", "--manifest", manifest, "--out", out, check=False)
    assert p.returncode != 0 and not out.exists()


@pytest.mark.parametrize("option,key", [("--texture-matching=-0.5", "texture_matching"),
                                        ("--tail-matching=-0.5", "tail_matching"),
                                        ("--tail-matching=nan", "tail_matching")])
def test_a_bad_matching_weight_is_refused_by_name(cytogan, tmp_path, option, key):
    """--texture-matching and --tail-matching are loss weights: a negative or NaN one stops
    before any training, naming the config key, and leaves no checkpoint behind."""
    p = cytogan("train", "--manifest", tmp_path / "none.csv", "--steps", 1, option,
                "--checkpoint-dir", tmp_path / "ck", check=False)
    assert p.returncode != 0
    assert key in p.stderr
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())
