"""Feature matrices in the shapes Python users expect: a pandas DataFrame in pycytominer's layout
(`Metadata_*` columns, then the features, `representation_0` ... for the paper's layer), a float32 NumPy array, or plain
lists, whichever is installed (`output="auto"`) or asked for."""
import csv

try:  # optional
    import numpy as np
except ImportError:  # pragma: no cover - exercised in the stdlib-only venv test
    np = None
try:
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None

FEATURE_PREFIX = "representation_"  # the paper's layer; the worker names columns after the model's feature layer
OUTPUTS = ("auto", "pandas", "numpy", "list")


def resolve_output(output):
    """The concrete output kind for `output` ("auto" picks pandas, then numpy, then list)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if output == "auto":
        return "pandas" if pd is not None else ("numpy" if np is not None else "list")
    if output == "pandas" and pd is None:
        raise ImportError("output='pandas' needs pandas installed")
    if output == "numpy" and np is None:
        raise ImportError("output='numpy' needs numpy installed")
    return output


def feature_names(dim, layer="representation"):
    """Feature column names as the worker and `cytogan extract` name them for a model whose
    `featureLayer` is `layer`: "<layer>_<i>" for one named layer (the paper's "representation").
    For pooled or several layers, whose exact names the protocol does not report, "feature_<i>"."""
    if layer and all(ch.isalnum() or ch == "_" for ch in layer) and layer != "pooled":
        return [f"{layer}_{i}" for i in range(dim)]
    return [f"feature_{i}" for i in range(dim)]


def to_array(features, dim):
    """float32 (n, dim) array; a skipped crop (None) becomes a row of NaN."""
    a = np.full((len(features), dim), np.nan, dtype=np.float32)
    for i, v in enumerate(features):
        if v is not None:
            a[i] = v
    return a


def format_features(features, dim, output="auto", metadata=None, index=None, columns=None):
    """`features` (list of vectors or None) as `output`. For pandas, `metadata` is a DataFrame or a
    list of dicts (one per row) whose columns come first, `columns` names the features (default
    `feature_names(dim)`), `index` labels the rows."""
    kind = resolve_output(output)
    if kind == "list":
        return [None if v is None else list(v) for v in features]
    arr = to_array(features, dim)
    if kind == "numpy":
        return arr
    feats = pd.DataFrame(arr, columns=columns or feature_names(dim), index=index)
    if metadata is None:
        return feats
    meta = metadata if isinstance(metadata, pd.DataFrame) else pd.DataFrame(list(metadata))
    meta = meta.set_axis(feats.index, axis=0) if len(meta) == len(feats) else meta
    if len(meta) != len(feats):
        raise ValueError(f"{len(meta)} metadata rows for {len(feats)} feature rows")
    return pd.concat([meta, feats], axis=1)


def crops_metadata(crops, extra=None):
    """Each crop's metadata merged over the request-wide `extra` (a crop's own wins), as the worker
    keeps them."""
    rows = []
    for c in crops:
        m = dict(extra or {})
        m.update(c.get("metadata") or {})
        rows.append(m)
    return rows


def manifest_metadata(path):
    """The `Metadata_*` columns of a manifest: a DataFrame (types as pandas infers them, the way
    pycytominer reads CSVs) when pandas is installed, else a list of dicts of strings."""
    if pd is not None:
        head = pd.read_csv(path, nrows=0)
        cols = [c for c in head.columns if str(c).startswith("Metadata_")]
        return pd.read_csv(path, usecols=cols)[cols]
    from .crops import open_text
    with open_text(path) as f:
        r = csv.DictReader(f)
        return [{k: v for k, v in row.items() if k.startswith("Metadata_")} for row in r]
