"""Test images in every layout the decoders must read, written by tifffile, Pillow and a small
independent PNG writer (for what Pillow cannot write: 16-bit gray+alpha/RGB/RGBA, interlacing,
gamma chunks). Each case is (file name, expected channels-last array).

Run as a script to write them all into a folder (a seed corpus for `cytogan image fuzz`):
    python Tests/python/image_layouts.py OUTDIR
"""
import pathlib
import struct
import sys
import zlib

import numpy as np
import tifffile
from PIL import Image

RNG = np.random.default_rng(20240603)


def pixels(shape, dtype):
    """Values spanning the dtype's range (floats: negative, fractional, large)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (RNG.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=np.int64).astype(dtype)
    a.flat[0] = info.max
    a.flat[-1] = info.min
    return a


def hwc(a, channels_axis=None):
    """Channels-last view of an array as `image dump` writes it."""
    if a.ndim == 2:
        return a[..., None]
    if channels_axis == 0:
        return np.moveaxis(a, 0, -1)
    return a


def tiff_cases(folder):
    """TIFF files written by tifffile: (name, expected HWC array, needs) where needs names the
    optional codec (None when always available)."""
    folder = pathlib.Path(folder)
    cases = []

    def add(name, data, expected, needs=None, **kw):
        tifffile.imwrite(folder / name, data, **kw)
        cases.append((name, expected, needs))

    h, w = 37, 45  # not multiples of 16: partial tiles and a short last strip
    for dt in ["uint8", "uint16", "uint32", "float32", "int8", "int16", "int32", "float64"]:
        a = pixels((h, w), dt)
        add(f"gray_{dt}.tif", a, hwc(a))
        c = pixels((h, w, 3), dt)
        add(f"contig3_{dt}.tif", c, c, photometric="minisblack", planarconfig="contig")
        p = pixels((3, h, w), dt)
        add(f"planar3_{dt}.tif", p, hwc(p, 0), photometric="minisblack", planarconfig="separate")
        add(f"tiled_contig_{dt}.tif", c, c, photometric="minisblack", planarconfig="contig", tile=(16, 32))
        add(f"tiled_planar_{dt}.tif", p, hwc(p, 0), photometric="minisblack", planarconfig="separate", tile=(16, 16))
        add(f"bigendian_{dt}.tif", c, c, photometric="minisblack", planarconfig="contig", byteorder=">")
        add(f"strips5_{dt}.tif", c, c, photometric="minisblack", planarconfig="contig", rowsperstrip=5)

    u16 = pixels((h, w, 3), "uint16")
    u16p = pixels((3, h, w), "uint16")
    f32 = pixels((h, w, 2), "float32")
    smooth = (np.add.outer(np.arange(h), np.arange(w)) * 37 % 65536).astype("uint16")
    smooth3 = np.stack([smooth, smooth[::-1], smooth[:, ::-1]], -1)
    for comp, needs in [("zlib", None), ("lzw", "imagecodecs"), ("packbits", "imagecodecs"), ("lzma", None),
                        ("zstd", "imagecodecs")]:
        add(f"{comp}_u16.tif", u16, u16, needs, photometric="minisblack", planarconfig="contig", compression=comp)
        add(f"{comp}_smooth.tif", smooth3, smooth3, needs, photometric="minisblack", planarconfig="contig", compression=comp)
        add(f"{comp}_planar_tiled_u16.tif", u16p, hwc(u16p, 0), needs, photometric="minisblack",
            planarconfig="separate", compression=comp, tile=(16, 16))
        if comp in ("zlib", "lzw", "zstd", "lzma"):
            add(f"{comp}_predictor_u16.tif", smooth3, smooth3, needs, photometric="minisblack", planarconfig="contig", compression=comp, predictor=True)
            add(f"{comp}_predictor_be_u16.tif", u16, u16, needs, photometric="minisblack", planarconfig="contig", compression=comp,
                predictor=True, byteorder=">")
            add(f"{comp}_fpredictor_f32.tif", f32, f32, needs, photometric="minisblack", planarconfig="contig", compression=comp,
                predictor=3)
            add(f"{comp}_predictor_u8_rgb.tif", u16.astype("uint8"), u16.astype("uint8"), needs,
                photometric="rgb", compression=comp, predictor=True)

    # Several pages as channels (and pages that each hold several samples).
    pages = pixels((4, h, w), "uint16")
    add("multipage4_u16.tif", pages, hwc(pages, 0), photometric="minisblack", metadata=None)
    with tifffile.TiffWriter(folder / "multipage_contig.tif") as t:
        a, b = pixels((h, w, 2), "uint8"), pixels((h, w, 2), "uint8")
        t.write(a, photometric="minisblack", planarconfig="contig", compression="zlib")
        t.write(b, photometric="minisblack", planarconfig="contig", tile=(16, 16))
    cases.append(("multipage_contig.tif", np.concatenate([a, b], -1), None))
    # A reduced-resolution page (a thumbnail) after the image is skipped, as readers do.
    with tifffile.TiffWriter(folder / "with_thumbnail.tif") as t:
        full = pixels((h, w), "uint16")
        t.write(full, photometric="minisblack")
        t.write(full[::4, ::4].copy(), photometric="minisblack", subfiletype=1)
    cases.append(("with_thumbnail.tif", hwc(full), None))
    big = pixels((h, w, 3), "uint16")
    add("bigtiff_u16.tif", big, big, photometric="minisblack", planarconfig="contig", bigtiff=True, compression="zlib")
    rgb = pixels((h, w, 3), "uint8")
    add("rgb_u8.tif", rgb, rgb, photometric="rgb")
    add("rgba_u8.tif", pixels((h, w, 4), "uint8"), None, photometric="rgb", extrasamples=["unassalpha"])
    cases[-1] = (cases[-1][0], tifffile.imread(folder / "rgba_u8.tif"), None)
    bits = RNG.integers(0, 2, size=(h, w)).astype(bool)
    add("bilevel.tif", bits, hwc(bits.astype("uint8")))
    add("bilevel_packbits.tif", bits, hwc(bits.astype("uint8")), "imagecodecs", compression="packbits")
    add("bilevel_rows3.tif", bits, hwc(bits.astype("uint8")), rowsperstrip=3)
    return cases


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def write_png(path, a, interlace=False, extra_chunks=()):
    """A minimal PNG encoder (filter 0 or Adam7 passes) for uint8/uint16 (H, W, C), C in 1..4."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = a.astype(">u2" if depth == 16 else "u1")

    def scan(img):
        if img.shape[0] == 0 or img.shape[1] == 0:
            return b""
        rows = img.reshape(img.shape[0], -1).view(np.uint8).reshape(img.shape[0], -1)
        return b"".join(b"\x00" + r.tobytes() for r in rows)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b"".join(scan(raw[y0::dy, x0::dx]) for x0, y0, dx, dy in passes)
    else:
        data = scan(raw)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 1 if interlace else 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    for kind, body in extra_chunks:
        out += png_chunk(kind, body)
    out += png_chunk(b"IDAT", zlib.compress(data, 9)) + png_chunk(b"IEND", b"")
    pathlib.Path(path).write_bytes(out)


def png_cases(folder):
    """PNG files: (name, expected HWC array)."""
    folder = pathlib.Path(folder)
    cases = []
    h, w = 29, 41
    for mode, shape in [("L", (h, w)), ("LA", (h, w, 2)), ("RGB", (h, w, 3)), ("RGBA", (h, w, 4))]:
        a = pixels(shape, "uint8")
        Image.fromarray(a, mode=mode).save(folder / f"pil_{mode}.png")
        cases.append((f"pil_{mode}.png", hwc(a)))
    g16 = pixels((h, w), "uint16")
    Image.fromarray(g16.astype(np.uint16)).save(folder / "pil_I16.png")
    cases.append(("pil_I16.png", hwc(g16)))
    bits = RNG.integers(0, 2, size=(h, w)).astype(bool)
    Image.fromarray(bits).save(folder / "pil_1bit.png")
    cases.append(("pil_1bit.png", hwc(bits.astype("uint8") * 255)))
    pal = pixels((h, w), "uint8") % 16
    im = Image.fromarray(pal, mode="P")
    palette = pixels((16, 3), "uint8")
    im.putpalette(palette.flatten().tolist())
    im.save(folder / "pil_palette.png")
    cases.append(("pil_palette.png", palette[pal]))
    for c in (1, 2, 3, 4):
        for dt in ("uint8", "uint16"):
            a = pixels((h, w, c), dt)
            write_png(folder / f"own_{dt}_{c}.png", a)
            cases.append((f"own_{dt}_{c}.png", a))
    a = pixels((h, w, 3), "uint16")
    write_png(folder / "own_interlaced_u16.png", a, interlace=True)
    cases.append(("own_interlaced_u16.png", a))
    a = pixels((h, w, 2), "uint8")
    write_png(folder / "own_interlaced_u8_ga.png", a, interlace=True)
    cases.append(("own_interlaced_u8_ga.png", a))
    # Gamma, chromaticity and text chunks must not alter the samples.
    a = pixels((h, w, 3), "uint8")
    write_png(folder / "own_gamma.png", a, extra_chunks=[(b"gAMA", struct.pack(">I", 100000)),
                                                         (b"cHRM", struct.pack(">8I", *[31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000])),
                                                         (b"tEXt", b"Comment\x00cytogan test")])
    cases.append(("own_gamma.png", a))
    a = pixels((h, w), "uint16")
    write_png(folder / "own_gamma_u16.png", a, extra_chunks=[(b"gAMA", struct.pack(">I", 45455)), (b"sRGB", b"\x00")])
    cases.append(("own_gamma_u16.png", hwc(a)))
    return cases


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    n = len(tiff_cases(out)) + len(png_cases(out))
    print(f"wrote {n} files to {out}")
