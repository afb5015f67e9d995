"""CellImage checked against independent readers and writers: tifffile, Pillow and NumPy.

Decoding must equal tifffile bit for bit on the real BBBC021 crops and fields (when
../shared/data is present) and on files written in every layout by tifffile, Pillow and a small
PNG writer; the project's writers must round-trip through tifffile and Pillow; corrupt files must
give an error (exit status 1, a message naming the file, nothing on stdout), never a crash.
"""
import pathlib
import resource
import struct
import subprocess
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

import image_layouts as layouts
from conftest import BIN


def dump(cytogan, tmp_path, *paths, extra=()):
    out = tmp_path / "dump.npy"
    cytogan("image", "dump", *paths, "--npy", out, *extra)
    return np.load(out)


def has_imagecodecs():
    try:
        import imagecodecs  # noqa: F401
        return True
    except ImportError:
        return False


# --- real data ------------------------------------------------------------------------------

def test_bbbc021_crops_equal_tifffile(cytogan, shared_data, tmp_path):
    crops = sorted((shared_data / "bbbc021" / "crops").glob("*/*/*.tif"))
    assert len(crops) > 1000, "expected the BBBC021 crops under shared data"
    sample = crops[:: max(1, len(crops) // 300)]
    got = dump(cytogan, tmp_path, *sample)
    want = np.stack([tifffile.imread(p) for p in sample])
    assert got.dtype == want.dtype == np.uint16
    assert got.shape == want.shape == (len(sample), 68, 68, 3)
    assert np.array_equal(got, want)


def test_fields_equal_tifffile(cytogan, shared_data, tmp_path):
    fields = sorted((shared_data / "fields").glob("*/*.tif"))
    assert len(fields) >= 7
    for f in fields:
        want = tifffile.imread(f)
        got = dump(cytogan, tmp_path, f)
        want = want[..., None] if want.ndim == 2 else want
        assert got.dtype == want.dtype, f
        assert np.array_equal(got, want), f


# --- every layout -------------------------------------------------------------------------------

def check_cases(cytogan, folder, cases):
    for name, expected in cases:
        got = dump(cytogan, folder, folder / name)
        assert got.dtype == expected.dtype, f"{name}: dtype {got.dtype} != {expected.dtype}"
        assert got.shape == expected.shape, f"{name}: shape {got.shape} != {expected.shape}"
        assert np.array_equal(got, expected, equal_nan=True), f"{name}: values differ"


def test_tiff_layouts(cytogan, tmp_path):
    cases = layouts.tiff_cases(tmp_path)
    usable = [(n, e) for n, e, needs in cases if needs is None or has_imagecodecs()]
    assert len(usable) >= 60
    check_cases(cytogan, tmp_path, usable)


def test_png_layouts(cytogan, tmp_path):
    cases = layouts.png_cases(tmp_path)
    check_cases(cytogan, tmp_path, cases)
    # Pillow reads the 8-bit files to the same numbers as the arrays they came from.
    for name in ["pil_L.png", "pil_RGB.png", "own_uint8_3.png", "own_uint8_1.png", "own_gamma.png"]:
        got = dump(cytogan, tmp_path, tmp_path / name)
        ref = np.asarray(Image.open(tmp_path / name))
        assert np.array_equal(got, ref[..., None] if ref.ndim == 2 else ref), name


@pytest.mark.skipif(not has_imagecodecs(), reason="imagecodecs (for JPEG/WebP/LERC writing) not installed")
def test_other_libtiff_codecs_equal_tifffile(cytogan, tmp_path):
    img = (np.add.outer(np.arange(64), np.arange(80)) % 256).astype("uint8")
    rgb = np.stack([img, img[::-1], 255 - img], -1)
    noise = np.random.default_rng(5).standard_normal((30, 40)).astype("float32")
    cases = [("jpeg_gray", img, dict(compression="jpeg")),
             ("jpeg_rgb", rgb, dict(compression="jpeg", photometric="rgb")),
             ("jpeg_ycbcr", rgb, dict(compression="jpeg", photometric="ycbcr")),
             ("webp_lossless", rgb, dict(compression="webp", compressionargs={"lossless": True}, photometric="rgb")),
             ("lerc_u8", img, dict(compression="lerc")),
             ("lerc_u16", img.astype("uint16") * 200, dict(compression="lerc")),
             ("lerc_f32", noise, dict(compression="lerc"))]
    for name, data, kw in cases:
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, data, **kw)
        want = tifffile.imread(path)
        got = dump(cytogan, tmp_path, path)
        assert np.array_equal(got, want[..., None] if want.ndim == 2 else want), name


def test_ccitt_bilevel_from_pillow(cytogan, tmp_path):
    bits = np.random.default_rng(9).integers(0, 2, (50, 70)).astype(bool)
    for comp in ["group3", "group4", "tiff_ccitt", "tiff_lzw"]:
        path = tmp_path / f"bits_{comp}.tif"
        Image.fromarray(bits).save(path, compression=comp)
        got = dump(cytogan, tmp_path, path)
        assert np.array_equal(got[..., 0], bits.astype("uint8")), comp


def test_dump_stacks_and_selects_channels(cytogan, tmp_path):
    a = layouts.pixels((20, 30, 3), "uint16")
    b = layouts.pixels((20, 30, 3), "uint16")
    tifffile.imwrite(tmp_path / "a.tif", a, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "b.tif", b, photometric="minisblack", planarconfig="contig")
    got = dump(cytogan, tmp_path, tmp_path / "a.tif", tmp_path / "b.tif", extra=["--channels", "2,0"])
    assert np.array_equal(got, np.stack([a, b])[..., [2, 0]])
    tifffile.imwrite(tmp_path / "c.tif", a[:10], photometric="minisblack", planarconfig="contig")
    p = cytogan("image", "dump", tmp_path / "a.tif", tmp_path / "c.tif", "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "c.tif" in p.stderr and "shape" in p.stderr


# --- writers round-trip -------------------------------------------------------------------------

def test_tiff_writer_round_trips_through_tifffile(cytogan, tmp_path):
    for dt in ["uint8", "uint16", "uint32", "int16", "float32"]:
        a = layouts.pixels((33, 47, 3), dt)
        src = tmp_path / f"src_{dt}.tif"
        tifffile.imwrite(src, a, photometric="minisblack", planarconfig="contig")
        for comp in ["deflate", "lzw", "packbits", "none"]:
            out = tmp_path / f"out_{dt}_{comp}.tif"
            cytogan("image", "convert", src, "--out", out, "--compression", comp)
            back = tifffile.imread(out)
            assert back.dtype == a.dtype and np.array_equal(back, a), (dt, comp)
            with tifffile.TiffFile(out) as t:  # the Software tag is text, not a pointer's bytes
                assert t.pages[0].tags["Software"].value == "cytogan", (dt, comp)


def test_generated_cells_write_16bit_tiff_and_png(cytogan, tmp_path):
    x = np.random.default_rng(3).uniform(-1.2, 1.2, size=(24, 24, 3)).astype("float32")
    np.save(tmp_path / "gen.npy", x)
    cytogan("image", "convert", tmp_path / "gen.npy", "--out", tmp_path / "gen.tif")
    want = np.clip(np.rint((x.astype(np.float64) + 1) / 2 * 65535), 0, 65535).astype("uint16")
    back = tifffile.imread(tmp_path / "gen.tif")
    assert back.dtype == np.uint16 and back.shape == (24, 24, 3)
    assert np.abs(back.astype(int) - want.astype(int)).max() <= 1  # float32 arithmetic at the .5 boundary
    cytogan("image", "convert", tmp_path / "gen.tif", "--out", tmp_path / "gen16.png")
    png = np.asarray(Image.open(tmp_path / "gen16.png"))  # Pillow keeps the high byte of 16-bit RGB
    assert png.shape == (24, 24, 3) and np.array_equal(png, (back >> 8).astype("uint8"))
    assert np.array_equal(dump(cytogan, tmp_path, tmp_path / "gen16.png"), back)
    # A 16-bit gray PNG reads back exactly in Pillow.
    cytogan("image", "convert", tmp_path / "gen.tif", "--channels", "1", "--out", tmp_path / "gray16.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "gray16.png")).astype("uint16"), back[..., 1])
    cytogan("image", "convert", tmp_path / "gen.npy", "--out", tmp_path / "gen8.png", "--bits", "8")
    want8 = np.clip(np.rint((x.astype(np.float64) + 1) / 2 * 255), 0, 255).astype("uint8")
    got8 = np.asarray(Image.open(tmp_path / "gen8.png"))
    assert np.abs(got8.astype(int) - want8.astype(int)).max() <= 1


def test_montage_colours_and_grid(cytogan, tmp_path):
    h = w = 16
    tiles = []
    for k in range(5):
        a = np.zeros((h, w, 3), "uint16")
        a[..., k % 3] = np.arange(w, dtype="uint16")[None, :] * (k + 1) * 100  # one channel, a ramp
        p = tmp_path / f"t{k}.tif"
        tifffile.imwrite(p, a, photometric="minisblack", planarconfig="contig")
        tiles.append((p, k % 3))
    out = tmp_path / "grid.png"
    cytogan("image", "montage", *[p for p, _ in tiles], "--out", out, "--columns", "3", "--tile", "16",
            "--gap", "2", "--stretch", "minmax")
    g = np.asarray(Image.open(out))
    assert g.shape == (2 * 16 + 3 * 2, 3 * 16 + 4 * 2, 3)
    ramp = np.rint(np.arange(w) / (w - 1) * 255).astype(int)
    for k, (_, ch) in enumerate(tiles):
        r, c = divmod(k, 3)
        tile = g[2 + r * 18: 2 + r * 18 + 16, 2 + c * 18: 2 + c * 18 + 16].astype(int)
        # DNA (channel 0) red, tubulin green, actin blue; min-max stretch gives a full ramp.
        assert np.abs(tile[..., ch] - ramp[None, :]).max() <= 1, k
        assert tile[..., [i for i in range(3) if i != ch]].max() == 0, k
    assert g[:2].max() == 0 and g[:, :2].max() == 0  # gaps are background
    # Mapping configurable: channel 0 shown in white.
    cytogan("image", "montage", tiles[0][0], "--out", tmp_path / "w.png", "--colours", "white,none,none",
            "--tile", "16", "--stretch", "minmax")
    wimg = np.asarray(Image.open(tmp_path / "w.png")).astype(int)
    assert np.array_equal(wimg[2:18, 2:18, 0], wimg[2:18, 2:18, 1])


def test_montage_from_manifest_of_real_crops(cytogan, shared_data, tmp_path):
    manifest = shared_data / "bbbc021" / "crops.csv"
    out = tmp_path / "real.png"
    cytogan("image", "montage", "--manifest", manifest, "--limit", "16", "--out", out)
    g = np.asarray(Image.open(out))
    assert g.shape == (4 * 96 + 5 * 2, 4 * 96 + 5 * 2, 3)
    for ch in range(3):
        assert g[..., ch].max() > 200, f"channel {ch} never bright"


# --- model inputs: crop, mask, normalize, resize against NumPy ----------------------------------

def area_resize(a, out):
    """Exact area averaging by integrating over a common grid: repeat each input pixel `out`
    times, then average runs of `in` (independent of the project's tap tables)."""
    n = a.shape[-1]
    r = np.repeat(a, out, axis=-1).reshape(*a.shape[:-1], out, n).mean(-1)
    r = np.repeat(r, out, axis=-2)
    r = r.reshape(*r.shape[:-2], out, a.shape[-2], r.shape[-1]).mean(-2)
    return r


def prepare(cytogan, tmp_path, *args):
    out = tmp_path / "prep.npy"
    cytogan("image", "prepare", *args, "--npy", out)
    return np.load(out)


def test_prepare_per_crop_max_and_bilinear_match_pillow(cytogan, tmp_path):
    a = layouts.pixels((68, 68, 3), "uint16")
    tifffile.imwrite(tmp_path / "c.tif", a, photometric="minisblack", planarconfig="contig")
    got = prepare(cytogan, tmp_path, tmp_path / "c.tif", "--size", "96")
    assert got.shape == (1, 3, 96, 96) and got.dtype == np.float32
    for ch in range(3):
        x = a[..., ch].astype(np.float64)
        norm = (x / x.max() * 2 - 1).astype(np.float32)
        # Pillow's BILINEAR on float images enlarges with pixel centres aligned and clamped edges.
        ref = np.asarray(Image.fromarray(norm, mode="F").resize((96, 96), Image.BILINEAR))
        assert np.abs(got[0, ch] - ref).max() < 1e-4


def test_prepare_area_shrink_and_percentile(cytogan, tmp_path):
    a = layouts.pixels((68, 68, 3), "uint16")
    tifffile.imwrite(tmp_path / "c.tif", a, photometric="minisblack", planarconfig="contig")
    got = prepare(cytogan, tmp_path, tmp_path / "c.tif", "--size", "48",
                  "--normalization", '{"kind":"percentile","low":2,"high":98}')
    for ch in range(3):
        x = a[..., ch].astype(np.float64)
        lo, hi = np.percentile(x, 2), np.percentile(x, 98)
        norm = np.clip((x - lo) / (hi - lo), 0, 1) * 2 - 1
        assert np.abs(got[0, ch] - area_resize(norm, 48)).max() < 1e-4


def test_prepare_bit_depth_fixed_scale_and_pad_crop(cytogan, tmp_path):
    a = layouts.pixels((40, 50, 2), "uint16")
    tifffile.imwrite(tmp_path / "c.tif", a, photometric="minisblack", planarconfig="contig")
    got = prepare(cytogan, tmp_path, tmp_path / "c.tif", "--size", "46", "--resize", "pad_crop",
                  "--normalization", '{"kind":"bit_depth"}')
    want = np.full((2, 46, 46), -1.0)
    # Height 40 -> 46: 3 rows of padding on top; width 50 -> 46: columns 2..47 kept.
    want[:, 3:43, :] = (a.astype(np.float64) / 65535 * 2 - 1).transpose(2, 0, 1)[:, :, 2:48]
    assert np.abs(got[0] - want).max() < 1e-5
    got = prepare(cytogan, tmp_path, tmp_path / "c.tif", "--size", "40", "--resize", "area",
                  "--normalization", '{"kind":"fixed_scale","scale":[1000,30000]}')
    x = a.astype(np.float64).transpose(2, 0, 1) / np.array([1000, 30000])[:, None, None]
    norm = np.clip(x, 0, 1) * 2 - 1
    want = area_resize(norm, 40)  # 50 -> 40 columns, 40 -> 40 rows
    assert np.abs(got[0] - want).max() < 1e-4


def test_prepare_field_centre_box_padding_and_mask(cytogan, tmp_path):
    field = layouts.pixels((60, 80), "uint16")
    labels = np.zeros((60, 80), "uint16")
    labels[5:20, 3:15] = 7
    labels[30:50, 40:70] = 9
    tifffile.imwrite(tmp_path / "f.tif", field)
    tifffile.imwrite(tmp_path / "m.tif", labels)
    # A centre near the corner: the window reaches outside, zero padded (-1 after normalization).
    got = prepare(cytogan, tmp_path, tmp_path / "f.tif", "--centre", "2.4,3.6", "--size", "16",
                  "--resize", "pad_crop", "--normalization", '{"kind":"bit_depth"}')
    win = np.zeros((16, 16))
    win[8 - 4:, 8 - 2:] = field[0:12, 0:10]  # rows 4-8..4+8, cols 2-8..2+8
    assert np.abs(got[0, 0] - (win / 65535 * 2 - 1)).max() < 1e-5
    # Box with the object's mask: only label 9 kept, the rest zero.
    got = prepare(cytogan, tmp_path, tmp_path / "f.tif", "--box", "40,30,70,50", "--crop-size", "32", "--size", "32",
                  "--mask", tmp_path / "m.tif", "--resize", "pad_crop", "--normalization", '{"kind":"bit_depth"}')
    y0, x0 = 30 + (20 - 32) // 2, 40 + (30 - 32) // 2
    raw = np.zeros((32, 32))
    for y in range(32):
        for x in range(32):
            fy, fx = y0 + y, x0 + x
            if 0 <= fy < 60 and 0 <= fx < 80 and labels[fy, fx] == 9:
                raw[y, x] = field[fy, fx]
    assert np.abs(got[0, 0] - (raw / 65535 * 2 - 1)).max() < 1e-5
    # An empty mask (no object under the centre) and a box outside the field are errors.
    p = cytogan("image", "prepare", tmp_path / "f.tif", "--centre", "30,2", "--mask", tmp_path / "m.tif",
                "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "empty mask" in p.stderr and "m.tif" in p.stderr
    p = cytogan("image", "prepare", tmp_path / "f.tif", "--box", "100,100,120,130", "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "outside" in p.stderr and "f.tif" in p.stderr


def test_prepare_channel_files_and_mismatches(cytogan, tmp_path):
    chans = [layouts.pixels((30, 30), "uint16") for _ in range(3)]
    for i, c in enumerate(chans):
        tifffile.imwrite(tmp_path / f"w{i}.tif", c)
    got = prepare(cytogan, tmp_path, "--channel-files", tmp_path / "w2.tif", tmp_path / "w0.tif", tmp_path / "w1.tif",
                  "--size", "30")
    for k, src in enumerate([2, 0, 1]):
        x = chans[src].astype(np.float64)
        assert np.abs(got[0, k] - (x / x.max() * 2 - 1)).max() < 1e-5
    tifffile.imwrite(tmp_path / "small.tif", chans[0][:20])
    p = cytogan("image", "prepare", "--channel-files", tmp_path / "w0.tif", tmp_path / "small.tif",
                "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "small.tif" in p.stderr and "different sizes" in p.stderr
    tifffile.imwrite(tmp_path / "rgb.tif", layouts.pixels((30, 30, 3), "uint8"), photometric="rgb")
    p = cytogan("image", "prepare", "--channel-files", tmp_path / "w0.tif", tmp_path / "rgb.tif",
                "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "rgb.tif" in p.stderr and "channel count" in p.stderr
    p = cytogan("image", "prepare", tmp_path / "w0.tif", "--normalization", '{"kind":"fixed_scale","scale":[1,2]}',
                "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "channel" in p.stderr


# --- features against NumPy --------------------------------------------------------------------

def test_intensity_features_match_numpy(cytogan, shared_data, tmp_path):
    out = tmp_path / "f.csv"
    cytogan("image", "features", "--manifest", shared_data / "bbbc021" / "crops.csv", "--limit", "40", "--csv", out)
    import pandas as pd
    df = pd.read_csv(out)
    assert "Metadata_Compound" in df.columns and len(df) == 40
    for _, row in df.iterrows():
        a = tifffile.imread(row["path"]).astype(np.float64)
        for ch, name in enumerate(["DNA", "Tubulin", "Actin"]):
            x = a[..., ch]
            np.testing.assert_allclose(row[f"Intensity_Mean_{name}"], x.mean(), rtol=1e-6)
            np.testing.assert_allclose(row[f"Intensity_Std_{name}"], x.std(), rtol=1e-5)
            np.testing.assert_allclose(row[f"Intensity_Max_{name}"], x.max(), rtol=1e-7)
            np.testing.assert_allclose(row[f"Intensity_P90_{name}"], np.percentile(x, 90), rtol=1e-6)
        assert 0 < row["Shape_Area"] < 68 * 68


def test_shape_features_of_a_rectangle(cytogan, tmp_path):
    a = np.zeros((41, 41, 3), "uint16")
    a[16:26, 8:28, 0] = 1000  # a 20 x 10 nucleus
    a[..., 1] = 5
    tifffile.imwrite(tmp_path / "r.tif", a, photometric="minisblack", planarconfig="contig")
    cytogan("image", "features", tmp_path / "r.tif", "--csv", tmp_path / "f.csv")
    import pandas as pd
    row = pd.read_csv(tmp_path / "f.csv").iloc[0]
    l1, l2 = (20 ** 2 - 1) / 12, (10 ** 2 - 1) / 12  # variances of uniform pixel coordinates
    assert row["Shape_Area"] == 200
    np.testing.assert_allclose(row["Shape_Eccentricity"], np.sqrt(1 - l2 / l1), rtol=1e-5)
    np.testing.assert_allclose(row["Shape_MajorAxisLength"], 4 * np.sqrt(l1), rtol=1e-5)
    np.testing.assert_allclose(row["Shape_MinorAxisLength"], 4 * np.sqrt(l2), rtol=1e-5)
    np.testing.assert_allclose(row["Shape_CentroidOffset"], np.hypot(17.5 - 20, 20.5 - 20), rtol=1e-5)
    np.testing.assert_allclose(row["Shape_ForegroundFraction"], 200 / 41 ** 2, rtol=1e-5)


# --- corrupt inputs -----------------------------------------------------------------------------

def run_limited(args):
    """Runs cytogan with its address space capped at 1 GiB, so a decoder that allocated what an
    absurd header claims would fail loudly instead of passing."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, preexec_fn=cap, timeout=60)


def assert_clean_error(path, tmp_path):
    p = run_limited(["image", "dump", path, "--npy", tmp_path / "bad.npy"])
    assert p.returncode == 1, f"{path.name}: exit {p.returncode} (negative: killed by a signal)\n{p.stderr[-2000:]}"
    assert p.stdout == "", f"{path.name}: wrote to stdout: {p.stdout[:200]}"
    assert str(path) in p.stderr and "error" in p.stderr, f"{path.name}: {p.stderr}"
    assert not (tmp_path / "bad.npy").exists()
    return p.stderr


def tiff_header(width, height, bits=16, compression=1, count=16, le=True):
    """A minimal one-strip TIFF whose header claims width x height, with `count` bytes of data."""
    e = "<" if le else ">"
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, compression),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, count)]
    ifd_off = 8 + count
    head = (b"II" if le else b"MM") + struct.pack(e + "HI", 42, ifd_off)
    body = bytes(range(256)) * (count // 256 + 1)
    ifd = struct.pack(e + "H", len(entries))
    for tag, typ, n, val in entries:
        ifd += struct.pack(e + "HHI", tag, typ, n) + (struct.pack(e + "HH", val, 0) if typ == 3 else struct.pack(e + "I", val))
    return head + body[:count] + ifd + struct.pack(e + "I", 0)


def png_header(width, height, depth=8, color=0, idat=b"\x78\x9c\x03\x00\x00\x00\x00\x01"):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + layouts.png_chunk(b"IHDR", ihdr) + layouts.png_chunk(b"IDAT", idat)
            + layouts.png_chunk(b"IEND", b""))


def test_corrupt_inputs_are_errors_not_crashes(cytogan, tmp_path):
    folder = tmp_path / "layouts"
    folder.mkdir()
    cases = [(n, e) for n, e, needs in layouts.tiff_cases(folder) if needs is None][::4] + \
        layouts.png_cases(folder)[::3]
    bad = tmp_path / "bad"
    bad.mkdir()
    files = []
    for name, expected in cases:
        data = (folder / name).read_bytes()
        for cut in sorted({8, 16, len(data) // 3, len(data) // 2, len(data) - 20, len(data) - 1}):
            f = bad / f"trunc{cut}_{name}"
            f.write_bytes(data[:cut])
            p = run_limited(["image", "dump", f, "--npy", tmp_path / "t.npy"])
            assert p.stdout == "" and p.returncode in (0, 1), f"{f.name}: exit {p.returncode}\n{p.stderr[-2000:]}"
            if p.returncode == 0:
                # Only a cut that spares every pixel may succeed (e.g. inside a skipped thumbnail),
                # and then with the right pixels.
                assert np.array_equal(np.load(tmp_path / "t.npy"), expected, equal_nan=True), f.name
                (tmp_path / "t.npy").unlink()
            else:
                assert str(f) in p.stderr and "error" in p.stderr, p.stderr
    rng = np.random.default_rng(11)
    for i in range(8):
        f = bad / f"random{i}.tif"
        f.write_bytes(rng.integers(0, 256, size=int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
        files.append(f)
    for magic in [b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n"]:
        f = bad / f"magic_then_noise_{len(files)}.tif"
        f.write_bytes(magic + rng.integers(0, 256, size=3000, dtype=np.uint8).tobytes())
        files.append(f)
    (bad / "empty.tif").write_bytes(b"")
    files.append(bad / "empty.tif")
    (bad / "text.png").write_text("not an image\n")
    files.append(bad / "text.png")
    # Absurd headers: far beyond the memory limit; or within it but unbacked by the stored data.
    (bad / "huge.tif").write_bytes(tiff_header(100000, 100000))
    (bad / "huge_be.tif").write_bytes(tiff_header(4000000000, 4000000000, le=False))
    (bad / "unbacked.tif").write_bytes(tiff_header(30000, 30000, bits=8, compression=8, count=200))
    (bad / "unbacked_raw.tif").write_bytes(tiff_header(30000, 20000, bits=8, compression=1, count=200))
    (bad / "zero_width.tif").write_bytes(tiff_header(0, 10))
    (bad / "bits12.tif").write_bytes(tiff_header(10, 10, bits=12))
    (bad / "huge.png").write_bytes(png_header(100000, 100000, 16, 6))
    (bad / "unbacked.png").write_bytes(png_header(20000, 20000, 8, 0))
    (bad / "zero.png").write_bytes(png_header(0, 0))
    files += [bad / n for n in ["huge.tif", "huge_be.tif", "unbacked.tif", "unbacked_raw.tif", "zero_width.tif",
                                "bits12.tif", "huge.png", "unbacked.png", "zero.png"]]
    # A PNG with a bad CRC in IHDR and one whose pixels are cut short inside a valid stream.
    good = (folder / "own_uint16_3.png").read_bytes()
    f = bad / "crc.png"
    f.write_bytes(good[:29] + bytes([good[29] ^ 0xFF]) + good[30:])
    files.append(f)
    a = layouts.pixels((10, 10), "uint8")
    short = b"".join(b"\x00" + r.tobytes() for r in a[:5])
    (bad / "short_idat.png").write_bytes(png_header(10, 10, 8, 0, zlib.compress(short)))
    files.append(bad / "short_idat.png")
    messages = {f.name: assert_clean_error(f, tmp_path) for f in files}
    assert "too large" in messages["huge.tif"] and "too large" in messages["huge.png"]
    assert "stores only" in messages["unbacked.tif"] or "holds only" in messages["unbacked.tif"]
    assert "holds only" in messages["unbacked.png"]
    assert "empty" in messages["empty.tif"]
    assert "unsupported sample format" in messages["bits12.tif"]
    assert "not a TIFF or PNG" in messages["text.png"]
    # Not a single libtiff/libpng message went to stdout (checked above) and the process exited 1.


def test_missing_file_is_named(cytogan, tmp_path):
    p = cytogan("image", "dump", tmp_path / "nope.tif", "--npy", tmp_path / "x.npy", check=False)
    assert p.returncode == 1 and "nope.tif" in p.stderr and "no such file" in p.stderr


def test_unsupported_sample_format_is_named(cytogan, tmp_path):
    tifffile.imwrite(tmp_path / "c64.tif", np.zeros((8, 8), np.complex64))
    tifffile.imwrite(tmp_path / "f16.tif", np.zeros((8, 8), np.float16))
    for name in ["c64.tif", "f16.tif"]:
        p = cytogan("image", "dump", tmp_path / name, "--npy", tmp_path / "x.npy", check=False)
        assert p.returncode == 1 and name in p.stderr and "unsupported sample format" in p.stderr, p.stderr
