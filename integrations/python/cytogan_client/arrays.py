"""In-memory images to crops the worker can read (needs NumPy): object centres from a label image,
square windows cut around them (zero outside the field, optionally masked to the object), and a
small TIFF writer so crops held in memory (CellProfiler's images, a NumPy pipeline) can be sent as
files. The windows follow the worker's own rule (CellImage `Cropping.window`): columns
round(x) - S/2 ..< round(x) - S/2 + S, rounding halves away from zero.
"""
import struct

import numpy as np


def object_centres(labels, count=None):
    """Centres (x = column, y = row) of objects 1..count of a label image, as CellProfiler's
    Location_Center_X/Y: the mean coordinates of each object's pixels. An object with no pixels
    gets NaN. Returns a float64 array of shape (count, 2)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label image, not shape {labels.shape}")
    if count is None:
        count = int(labels.max()) if labels.size else 0
    flat = labels.ravel().astype(np.int64)
    keep = (flat > 0) & (flat <= count)
    rows, cols = np.divmod(np.nonzero(keep)[0], labels.shape[1])
    ids = flat[keep]
    n = np.bincount(ids, minlength=count + 1)[1:].astype(np.float64)
    sx = np.bincount(ids, weights=cols, minlength=count + 1)[1:]
    sy = np.bincount(ids, weights=rows, minlength=count + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([sx / n, sy / n], axis=1)


def round_half_away(v):
    """Rounding as Swift's `.rounded()` (halves away from zero), not Python's banker's rounding."""
    return int(np.sign(v) * np.floor(abs(v) + 0.5))


def window(center, size):
    """(x0, y0) of the size x size window the worker cuts around `center` = (x, y)."""
    return round_half_away(center[0]) - size // 2, round_half_away(center[1]) - size // 2


def cut(channels, center, size, labels=None, label=None):
    """A (C, size, size) float32 crop of `channels` (a (C, H, W) array or a list of (H, W)
    arrays) around `center`, zero outside the field; with `labels`, pixels whose label differs
    from `label` (default: the label under the centre) are zeroed."""
    chans = np.stack([np.asarray(c, dtype=np.float32) for c in channels]) if isinstance(channels, (list, tuple)) \
        else np.asarray(channels, dtype=np.float32)
    if chans.ndim != 3:
        raise ValueError(f"channels must be (C, H, W), not shape {chans.shape}")
    _, h, w = chans.shape
    if not (np.isfinite(center[0]) and np.isfinite(center[1])):
        raise ValueError(f"object centre {tuple(center)} is not a finite point (an object without pixels?)")
    cx, cy = round_half_away(center[0]), round_half_away(center[1])
    if not (0 <= cx < w and 0 <= cy < h):
        raise ValueError(f"object centre {tuple(center)} is outside the {w}x{h} field")
    x0, y0 = cx - size // 2, cy - size // 2
    out = np.zeros((chans.shape[0], size, size), dtype=np.float32)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + size, w), min(y0 + size, h)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = chans[:, sy0:sy1, sx0:sx1]
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (h, w):
            raise ValueError(f"labels of shape {labels.shape} do not fit the {w}x{h} field")
        if label is None:
            label = int(labels[cy, cx])
            if label == 0:
                raise ValueError(f"no object under the centre {tuple(center)} (background there)")
        lab = np.zeros((size, size), dtype=labels.dtype)
        if sx1 > sx0 and sy1 > sy0:
            lab[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = labels[sy0:sy1, sx0:sx1]
        out[:, lab != label] = 0
    return out


def per_crop_max_normalize(crop):
    """The paper's preprocessing of one (C, H, W) crop: each channel divided by its own maximum,
    then mapped to [-1, 1] (a channel whose maximum is not positive maps to -1)."""
    crop = np.asarray(crop, dtype=np.float32)
    m = crop.reshape(crop.shape[0], -1).max(axis=1).astype(np.float32)
    scaled = np.where(m[:, None, None] > 0, crop / np.where(m > 0, m, 1)[:, None, None], 0).astype(np.float32)
    return scaled * 2 - 1


_DTYPES = {np.dtype(np.uint8): (8, 1), np.dtype(np.uint16): (16, 1), np.dtype(np.float32): (32, 3)}


def write_tiff(path, image):
    """Writes a (H, W) or (C, H, W) uint8, uint16 or float32 array as one uncompressed TIFF page
    with C samples per pixel (contiguous, little-endian). The file is written to a temporary name
    and renamed, so readers never see half a file."""
    import os
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"image must be (H, W) or (C, H, W), not shape {a.shape}")
    if a.dtype not in _DTYPES:
        a = a.astype(np.float32)
    bits, fmt = _DTYPES[a.dtype]
    c, h, w = a.shape
    data = np.ascontiguousarray(np.moveaxis(a, 0, -1)).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    entries = []  # (tag, type, count, value-or-bytes)
    SHORT, LONG = 3, 4

    def shorts(vals):
        return struct.pack(f"<{len(vals)}H", *vals)

    entries.append((256, LONG, 1, w))
    entries.append((257, LONG, 1, h))
    entries.append((258, SHORT, c, [bits] * c))
    entries.append((259, SHORT, 1, 1))  # no compression
    entries.append((262, SHORT, 1, 1))  # BlackIsZero
    entries.append((273, LONG, 1, None))  # strip offset, patched below
    entries.append((277, SHORT, 1, c))
    entries.append((278, LONG, 1, h))
    entries.append((279, LONG, 1, len(data)))
    entries.append((284, SHORT, 1, 1))  # contiguous
    if c > 1:
        entries.append((338, SHORT, c - 1, [0] * (c - 1)))  # unspecified extra samples
    entries.append((339, SHORT, c, [fmt] * c))
    n = len(entries)
    ifd_offset = 8
    ifd_size = 2 + n * 12 + 4
    extra = bytearray()
    extra_base = ifd_offset + ifd_size
    blobs = []
    for tag, typ, count, val in entries:
        if isinstance(val, list) and count * 2 > 4:
            off = extra_base + len(extra)
            extra += shorts(val)
            if len(extra) % 2:
                extra += b"\0"
            blobs.append((tag, typ, count, ("offset", off)))
        else:
            blobs.append((tag, typ, count, val))
    data_offset = extra_base + len(extra)
    ifd = bytearray(struct.pack("<H", n))
    for tag, typ, count, val in blobs:
        if tag == 273:
            val = data_offset
        if isinstance(val, tuple):
            field = struct.pack("<I", val[1])
        elif isinstance(val, list):
            field = shorts(val).ljust(4, b"\0")
        elif typ == SHORT:
            field = struct.pack("<HH", val, 0)
        else:
            field = struct.pack("<I", val)
        ifd += struct.pack("<HHI", tag, typ, count) + field
    ifd += struct.pack("<I", 0)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", ifd_offset))
        f.write(ifd)
        f.write(extra)
        f.write(data)
    os.replace(tmp, path)
    return path
