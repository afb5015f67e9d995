"""Feature matrices in the shapes Python users expect: a pandas DataFrame in pycytominer's layout
(`Metadata_*` and key columns, then the features under the names the worker gives them,
`Cytogan_<layer>_<i>`), a float32 NumPy array, or plain lists, whichever is installed
(`output="auto"`) or asked for."""
import csv

try:  # optional
    import numpy as np
except ImportError:  # pragma: no cover - exercised in the stdlib-only venv test
    np = None
try:
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None

# Every feature name starts with this (`Cytogan_representation_0`, `Cytogan_pool_lrelu0_0`, ...), as
# `cytogan extract` and the worker name them: pycytominer's
# `infer_cp_features(df, compartments=["Cytogan"])` finds exactly these columns.
FEATURE_PREFIX = "Cytogan_"
# The columns of a manifest carried with the features besides Metadata_* (the worker's default):
# the key columns of a CellProfiler object table.
KEY_COLUMNS = ("ImageNumber", "ObjectNumber", "Location_*")
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


def feature_names(reply):
    """The feature column names the worker sent: a `features/extract` result's `names` or a
    ModelInfo's `featureNames`."""
    names = reply.get("names") or reply.get("featureNames")
    if not names:
        raise ValueError("the worker's reply has no feature names (names / featureNames): a worker older than "
                         "this client")
    return list(names)


def carried(column, keep=None):
    """Whether a manifest `column` is carried with the features: `Metadata_*`, then `keep` (names
    or `Prefix*` patterns; default KEY_COLUMNS)."""
    column = str(column)
    if column.startswith("Metadata_"):
        return True
    return any(column.startswith(p[:-1]) if p.endswith("*") else column == p for p in (KEY_COLUMNS if keep is None else keep))


def to_array(features, dim):
    """float32 (n, dim) array; a skipped crop (None) becomes a row of NaN."""
    a = np.full((len(features), dim), np.nan, dtype=np.float32)
    for i, v in enumerate(features):
        if v is not None:
            a[i] = v
    return a


def format_features(features, dim, output="auto", metadata=None, index=None, columns=None):
    """`features` (list of vectors or None) as `output`. For pandas, `metadata` is a DataFrame or a
    list of dicts (one per row) whose columns come first, `columns` names the features (the
    worker's names; required for pandas), `index` labels the rows."""
    kind = resolve_output(output)
    if kind == "list":
        return [None if v is None else list(v) for v in features]
    arr = to_array(features, dim)
    if kind == "numpy":
        return arr
    if columns is None or len(columns) != dim:
        raise ValueError(f"{dim} features need {dim} column names, got {None if columns is None else len(columns)}")
    feats = pd.DataFrame(arr, columns=list(columns), index=index)
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


def manifest_metadata(path, keep=None):
    """The carried columns of a manifest (`Metadata_*` and the key columns, see `carried`), as the
    worker carries them: a DataFrame (types as pandas infers them, the way pycytominer reads CSVs)
    when pandas is installed, else a list of dicts of strings."""
    if pd is not None:
        head = pd.read_csv(path, nrows=0)
        cols = [c for c in head.columns if carried(c, keep)]
        return pd.read_csv(path, usecols=cols)[cols]
    from .crops import open_text
    with open_text(path) as f:
        r = csv.DictReader(f)
        return [{k: v for k, v in row.items() if carried(k, keep)} for row in r]
