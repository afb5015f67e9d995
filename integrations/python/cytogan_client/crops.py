"""CropSpec builders (protocol section 7) and a standard-library manifest reader.

A crop is a plain JSON-ready dict; these functions only spare typing and check the shape early:

    crop_file("a.tif", metadata={"Metadata_Well": "B02"})
    crop_channels(["dna.tif", "tub.tif", "actin.tif"])
    crop_field("field.tif", centre=(120.5, 88), mask="labels.tif", label=7)
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


def crop_file(path, *, channels=None, metadata=None, id=None):
    """One image holding every channel of a crop; `channels` picks and orders its channels."""
    d = {"path": os.fspath(path)}
    if channels is not None:
        d["channels"] = [int(c) for c in channels]
    return _extras(d, metadata, id)


def crop_channels(paths, *, metadata=None, id=None):
    """One single-channel image per channel, in the model's channel order."""
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("crop_channels needs at least one path")
    return _extras({"paths": paths}, metadata, id)


def crop_field(field, *, centre=None, center=None, box=None, mask=None, label=None, channels=None, metadata=None,
               id=None):
    """A window of a whole field image: `field` is a path (multi-channel; `channels` picks them)
    or a list of per-channel paths; exactly one of `centre=(x, y)` (a square of the model's crop
    size around the point; `center` is accepted too) or `box=(x0, y0, x1, y1)` (pixels, end
    exclusive: a window of the crop size centred on the box, or its square envelope). x is the
    column, y the row, from the top-left, as CellProfiler's Location_Center_X/Y. `mask` is a label
    image of the field's size; pixels whose label is not `label` (default: the label under the
    centre) are set to 0."""
    if centre is not None and center is not None:
        raise ValueError("give centre or center, not both")
    centre = centre if centre is not None else center
    if (centre is None) == (box is None):
        raise ValueError("crop_field needs exactly one of centre=(x, y) or box=(x0, y0, x1, y1)")
    if isinstance(field, (list, tuple)):
        d = {"paths": [os.fspath(p) for p in field]}
        if channels is not None:
            raise ValueError("channels picks channels of one multi-channel file, not of per-channel files")
    else:
        d = {"path": os.fspath(field)}
        if channels is not None:
            d["channels"] = [int(c) for c in channels]
    if centre is not None:
        x, y = centre
        d["centre"] = [_num(x), _num(y)]
    else:
        d["box"] = [int(v) for v in box]
        if len(d["box"]) != 4:
            raise ValueError("box is (x0, y0, x1, y1)")
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
