"""CropSpec builders (protocol section 7) and a standard-library manifest reader.

A crop is a plain JSON-ready dict; these functions only spare typing and check the shape early:

    crop_file("a.tif", metadata={"Metadata_Well": "B02"})
    crop_channels(["dna.tif", "tub.tif", "actin.tif"])
    crop_field("field.tif", center=(120.5, 88), size=96, mask="labels.tif", label=7)
"""
import csv
import gzip
import io
import os


def _extras(d, metadata, id):
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError("metadata must be a dict of strings, numbers or booleans")
        d["metadata"] = dict(metadata)
    if id is not None:
        d["id"] = id
    return d


def crop_file(path, *, metadata=None, id=None):
    """One image holding every channel of a crop."""
    return _extras({"path": os.fspath(path)}, metadata, id)


def crop_channels(paths, *, metadata=None, id=None):
    """One single-channel image per channel, in channel order."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("crop_channels needs at least one path")
    return _extras({"paths": paths}, metadata, id)


def crop_field(field, *, center=None, box=None, size=None, mask=None, label=None, metadata=None, id=None):
    """A window of a whole field image: `field` is a path or a list of per-channel paths; exactly
    one of `center=(x, y)` (a square of side `size`, default the model's image size) or
    `box=(x, y, width, height)` (pixels, x = column, origin top-left). `mask` is a label image of
    the field's size; pixels whose label is not `label` (default: the label under the centre) are
    set to 0."""
    if (center is None) == (box is None):
        raise ValueError("crop_field needs exactly one of center=(x, y) or box=(x, y, width, height)")
    src = {"paths": [os.fspath(p) for p in field]} if isinstance(field, (list, tuple)) else {"path": os.fspath(field)}
    d = {"field": src}
    if center is not None:
        x, y = center
        d["center"] = {"x": _num(x), "y": _num(y)}
    else:
        x, y, w, h = box
        d["box"] = {"x": int(x), "y": int(y), "width": int(w), "height": int(h)}
    if size is not None:
        d["size"] = int(size)
    if mask is not None:
        d["mask"] = os.fspath(mask)
    if label is not None:
        d["label"] = int(label)
    return _extras(d, metadata, id)


def _num(v):
    f = float(v)
    return int(f) if f.is_integer() else f


def open_text(path):
    """A text file, gzip-compressed or not (by its first two bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_manifest(path, *, path_column="path", path_columns=None, root=None):
    """Crops of a manifest CSV (the pycytominer convention), as the worker would read it: one crop
    per row from `path_column` (or one path per channel from `path_columns`), relative paths taken
    from `root` (default: the manifest's folder), and every `Metadata_*` column as the crop's
    metadata (strings, as in the file). Returns a list of crop dicts."""
    path = os.fspath(path)
    base = os.path.dirname(path) if root is None else os.fspath(root)
    with open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the manifest is empty (no header)") from None
        cols = list(path_columns) if path_columns else [path_column]
        missing = [c for c in cols if c not in header]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)})")
        idx = [header.index(c) for c in cols]
        meta = [(i, c) for i, c in enumerate(header) if c.startswith("Metadata_")]
        crops = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: {len(row)} fields, the header has {len(header)}")
            ps = []
            for i in idx:
                p = row[i]
                if not p:
                    raise ValueError(f"{path}:{lineno}: empty path in column {header[i]!r}")
                ps.append(p if os.path.isabs(p) or not base else os.path.join(base, p))
            m = {c: row[i] for i, c in meta}
            crops.append(crop_channels(ps, metadata=m) if path_columns else crop_file(ps[0], metadata=m))
    return crops
