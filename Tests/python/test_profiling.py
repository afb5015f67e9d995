"""cytogan profile: MOA scoring on real BBBC021 CellProfiler profiles, checked neighbour by neighbour
against independent NumPy/pandas computations, normalizations against pycytominer, and bad input.

The reference computations here are written from the definitions (Ljosa et al. 2013 for NSC and
NSCB), not from the Swift code.
"""
import json

import numpy as np
import pandas as pd
import pytest

from profile_tables import CONTROL, META, ljosa_wells


def run_json(cytogan, *args):
    p = cytogan(*args)
    return json.loads(p.stdout), p.stderr


# ---------------------------------------------------------------------------------------------
# The Ljosa per-well table in the layout `cytogan profile moa` takes.

@pytest.fixture(scope="module")
def ljosa(shared_data, tmp_path_factory):
    """(WELLS.csv path, DataFrame): Ljosa 2013 per-well means joined with the BBBC021 metadata."""
    df = ljosa_wells(shared_data)
    path = tmp_path_factory.mktemp("ljosa") / "wells.csv"
    df.to_csv(path, index=False)
    return path, df


def features_of(df):
    return [c for c in df.columns if not c.startswith("Metadata_")]


def ref_normalize(df, method, per="Metadata_Plate", eps=1.0):
    """Normalized features (DataFrame) and the dropped feature names, from the definitions."""
    feats = features_of(df)
    ctl = (df.Metadata_Compound == CONTROL).to_numpy()
    groups = df[per].to_numpy() if per else np.zeros(len(df))
    X = df[feats].to_numpy(float)
    drop = np.zeros(len(feats), bool)
    for g in np.unique(groups):
        c = X[(groups == g) & ctl]
        if method == "robustize":
            med = np.median(c, axis=0)
            drop |= np.median(np.abs(c - med), axis=0) == 0
        elif method in ("standardize", "tvn"):
            drop |= np.ptp(c, axis=0) == 0
    keep = [f for f, dr in zip(feats, drop) if not dr]
    X = df[keep].to_numpy(float)
    Y = np.empty_like(X)
    for g in np.unique(groups):
        rows = groups == g
        c = X[rows & ctl]
        if method in ("standardize", "tvn"):
            Y[rows] = (X[rows] - c.mean(axis=0)) / c.std(axis=0, ddof=1)
        elif method == "robustize":
            med = np.median(c, axis=0)
            Y[rows] = (X[rows] - med) / (1.4826 * np.median(np.abs(c - med), axis=0))
        else:
            Y[rows] = X[rows]
    if method == "tvn":
        c = Y[ctl]
        mu = c.mean(axis=0)
        lam, U = np.linalg.eigh(np.cov(c, rowvar=False))
        W = (U / np.sqrt(np.clip(lam, 0, None) + eps)) @ U.T
        Y = (Y - mu) @ W
    return Y, [f for f, dr in zip(feats, drop) if dr]


def ref_score(df, Y, agg="mean", dist="cosine"):
    """NSC / NSCB neighbours, accuracies and mAP from their definitions."""
    from sklearn.metrics import average_precision_score

    treated = (df.Metadata_Compound != CONTROL) & df.Metadata_MOA.notna()
    keys = sorted(set(zip(df.Metadata_Compound[treated], df.Metadata_Concentration[treated].astype(float))))
    P, moas, batches = [], [], []
    for comp, conc in keys:
        sel = ((df.Metadata_Compound == comp) & (df.Metadata_Concentration.astype(float) == conc) & treated).to_numpy()
        P.append(Y[sel].mean(axis=0) if agg == "mean" else np.median(Y[sel], axis=0))
        moas.append(df.Metadata_MOA[sel].iloc[0])
        batches.append(set(df.Metadata_Batch[sel]))
    P = np.array(P)
    if dist == "cosine":
        U = P / np.linalg.norm(P, axis=1, keepdims=True)
        D = 1 - U @ U.T
    elif dist == "correlation":
        Q = P - P.mean(axis=1, keepdims=True)
        U = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        D = 1 - U @ U.T
    else:
        D = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1))
    n = len(keys)
    comp = [k[0] for k in keys]
    nsc, nscb, dropped, aps = {}, {}, [], []
    for i in range(n):
        cand = [j for j in range(n) if comp[j] != comp[i]]
        nsc[keys[i]] = keys[cand[int(np.argmin(D[i, cand]))]]   # argmin: first of equal minima
        cb = [j for j in cand if not (batches[j] & batches[i])]
        if any(moas[j] == moas[i] for j in cb):
            nscb[keys[i]] = keys[cb[int(np.argmin(D[i, cb]))]]
        else:
            dropped.append(keys[i])
        rel = np.array([moas[j] == moas[i] for j in cand])
        if rel.any():
            aps.append(average_precision_score(rel, -D[i, cand]))
    moa_of = dict(zip(keys, moas))
    ok = {k: moa_of[v] == moa_of[k] for k, v in nsc.items()}
    per_comp = pd.Series(ok).groupby(level=0).mean().mean()
    return dict(
        keys=keys, nsc_neighbor=nsc, nscb_neighbor=nscb, dropped=dropped,
        nsc=np.mean(list(ok.values())),
        nscb=np.mean([moa_of[v] == moa_of[k] for k, v in nscb.items()]),
        per_compound=per_comp, map=np.mean(aps))


def key(o):
    return (o["compound"], float(o["concentration"]))


def check_against_reference(out, ref):
    assert [key(t) for t in out["treatments"]] == ref["keys"]
    assert len(out["treatments"]) == 103
    for t in out["treatments"]:
        k = key(t)
        assert key(t["nsc_neighbor"]) == ref["nsc_neighbor"][k], f"NSC neighbour of {k}"
        assert t["neighbors"][0] == t["nsc_neighbor"] and len(t["neighbors"]) == 5
        if k in ref["nscb_neighbor"]:
            assert t["nscb_neighbor"] is not None and key(t["nscb_neighbor"]) == ref["nscb_neighbor"][k], f"NSCB neighbour of {k}"
        else:
            assert t["nscb_neighbor"] is None
    assert sorted(key(t) for t in out["nscb_dropped"]) == sorted(ref["dropped"])
    for name in ["nsc", "nscb", "per_compound", "map"]:
        assert abs(out[name] - ref[name]) < 1e-9, name


@pytest.mark.parametrize("normalize,aggregate,distance", [
    ("standardize", "mean", "cosine"),
    ("standardize", "median", "cosine"),
    ("standardize", "mean", "correlation"),
    ("tvn", "mean", "cosine"),
    ("tvn", "median", "correlation"),
    ("robustize", "median", "euclidean"),
])
def test_moa_on_ljosa_matches_reference(cytogan, ljosa, normalize, aggregate, distance):
    path, df = ljosa
    out, err = run_json(cytogan, "profile", "moa", "--wells", path, "--control", "Metadata_Compound=DMSO",
                        "--normalize", normalize, "--per", "Metadata_Plate", "--aggregate", aggregate,
                        "--distance", distance, "--batch-column", "Metadata_Batch")
    Y, dropped = ref_normalize(df, normalize)
    assert out["features_dropped"] == dropped
    check_against_reference(out, ref_score(df, Y, aggregate, distance))
    assert "NSC" in err and "NSCB" in err
    # The MOA x MOA confusion matrix counts every treatment once, with the neighbour's MOA.
    conf = np.array(out["confusion"]["nsc"])
    assert conf.sum() == 103 and abs(np.trace(conf) / 103 - out["nsc"]) < 1e-12


def test_standardize_figures_and_exclusions(cytogan, ljosa):
    """The zero-variance features are named, and the NSCB exclusions are the statin/PD-169316 ones."""
    path, _ = ljosa
    out, _ = run_json(cytogan, "profile", "moa", "--wells", path)
    assert out["features_dropped"] == ["Cells_Children_Cytoplasm_Count", "Nuclei_Children_Cells_Count",
                                       "Nuclei_Children_Cytoplasm_Count"]
    assert out["wells"] == {"total": 632, "controls": 330, "unannotated": 0, "treated": 302}
    assert {t["compound"] for t in out["nscb_dropped"]} >= {"simvastatin", "mevinolin/lovastatin"}


def test_feature_selected_table_scored_without_normalization(cytogan, shared_data, tmp_path):
    """The pycytominer-normalized, feature-selected table (MOA column 'Metadata_moa', controls
    labelled DMSO) scored as is; NSCB with batch = the WeekN prefix of the plate."""
    src = shared_data / "bbbc021" / "profiles" / "feature_selected_mad_robustize.csv"
    df = pd.read_csv(src)
    df = df.rename(columns={"Metadata_moa": "Metadata_MOA"})
    df.insert(5, "Metadata_Batch", df.Metadata_Plate.str.split("_").str[0])
    path = tmp_path / "fs.csv"
    df.to_csv(path, index=False)
    out, _ = run_json(cytogan, "profile", "moa", "--wells", path, "--normalize", "none")
    assert out["features_dropped"] == [] and out["features_used"] == 189
    check_against_reference(out, ref_score(df, df[features_of(df)].to_numpy(float)))
    # The original file directly, without batches: NSC only.
    raw, _ = run_json(cytogan, "profile", "score", "--profiles", src, "--moa-column", "Metadata_moa",
                      "--batch-column", "none")
    assert raw["nscb"] is None and abs(raw["nsc"] - out["nsc"]) < 1e-12


# ---------------------------------------------------------------------------------------------
# Normalization against pycytominer.

def pycytominer_per_plate(df, feats, **kwargs):
    from pycytominer import normalize
    parts = []
    for _, g in df.groupby("Metadata_Plate", sort=False):
        out = normalize(profiles=g.reset_index(drop=True), features=feats, meta_features=META,
                        samples="Metadata_Compound == 'DMSO'", **kwargs)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def cytogan_normalize(cytogan, df, tmp_path, *args):
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    dst = tmp_path / "out.csv"
    summary, _ = run_json(cytogan, "profile", "normalize", "--input", src, "--output", dst, *args)
    return pd.read_csv(dst), summary


def test_robustize_equals_pycytominer(cytogan, ljosa, tmp_path):
    _, df = ljosa
    df = df.copy()
    df["Metadata_MOA"] = df.Metadata_MOA.fillna("")
    out, summary = cytogan_normalize(cytogan, df, tmp_path, "--method", "robustize", "--per", "Metadata_Plate")
    _, dropped = ref_normalize(df, "robustize")
    assert summary["features_dropped"] == dropped and len(dropped) > 0
    feats = [f for f in features_of(df) if f not in dropped]
    ref = pycytominer_per_plate(df, feats, method="mad_robustize")
    assert list(out.columns) == META + feats
    assert (out.Metadata_Well.to_numpy() == ref.Metadata_Well.to_numpy()).all()
    np.testing.assert_allclose(out[feats].to_numpy(), ref[feats].to_numpy(float), rtol=1e-9, atol=1e-5)


@pytest.mark.parametrize("method", ["ZCA", "ZCA-cor"])
def test_spherize_per_plate_equals_pycytominer(cytogan, ljosa, tmp_path, method):
    """Six control wells per plate against 513 features: rank-deficient controls, where
    pycytominer gives the directions beyond the rank the smallest retained singular value."""
    _, df = ljosa
    df = df[df.Metadata_Batch.isin(["Week1", "Week2"])].copy()     # 12 plates keep the test quick
    df["Metadata_MOA"] = df.Metadata_MOA.fillna("")
    _, dropped = ref_normalize(df, "standardize")
    df = df.drop(columns=dropped)
    out, _ = cytogan_normalize(cytogan, df, tmp_path, "--method", "spherize", "--spherize-method", method,
                               "--per", "Metadata_Plate")
    feats = features_of(df)
    ref = pycytominer_per_plate(df, feats, method="spherize", spherize_method=method, spherize_epsilon=1e-6)
    np.testing.assert_allclose(out[feats].to_numpy(), ref[feats].to_numpy(float), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("method", ["ZCA", "PCA", "PCA-cor"])
def test_spherize_global_full_rank_equals_pycytominer(cytogan, shared_data, tmp_path, method):
    """330 control wells, 189 features: full rank. PCA components agree up to sign."""
    from pycytominer import normalize
    df = pd.read_csv(shared_data / "bbbc021" / "profiles" / "feature_selected_mad_robustize.csv")
    feats = features_of(df)
    meta = [c for c in df.columns if c.startswith("Metadata_")]
    out, _ = cytogan_normalize(cytogan, df, tmp_path, "--method", "spherize", "--spherize-method", method,
                               "--per", "none")
    ref = normalize(profiles=df, features=feats, meta_features=meta, samples="Metadata_Compound == 'DMSO'",
                    method="spherize", spherize_method=method, spherize_epsilon=1e-6)
    a = out[[c for c in out.columns if not c.startswith("Metadata_")]].to_numpy()
    b = ref[[c for c in ref.columns if not c.startswith("Metadata_")]].to_numpy(float)
    assert a.shape == b.shape == (632, 189)
    if method.startswith("PCA"):
        assert list(out.columns[len(meta):]) == [f"PC{i}" for i in range(1, 190)]
        b = b * np.sign((a * b).sum(axis=0))     # each component's sign is arbitrary
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


def test_coral_matches_numpy(cytogan, shared_data, tmp_path):
    df = pd.read_csv(shared_data / "bbbc021" / "profiles" / "feature_selected_mad_robustize.csv")
    df.insert(5, "Metadata_Batch", df.Metadata_Plate.str.split("_").str[0])
    feats = features_of(df)[:40]
    df = df[[c for c in df.columns if c.startswith("Metadata_")] + feats]
    lam = 0.5
    out, _ = cytogan_normalize(cytogan, df, tmp_path, "--method", "coral", "--per", "Metadata_Batch",
                               "--lambda", str(lam))
    X = df[feats].to_numpy(float)
    ctl = (df.Metadata_Compound == CONTROL).to_numpy()

    def power(C, p):
        lam_, U = np.linalg.eigh(C)
        return (U * lam_ ** p) @ U.T

    target = np.cov(X[ctl], rowvar=False) + lam * np.eye(len(feats))
    mu = X[ctl].mean(axis=0)
    Y = np.empty_like(X)
    for b in df.Metadata_Batch.unique():
        rows = (df.Metadata_Batch == b).to_numpy()
        c = X[rows & ctl]
        A = power(np.cov(c, rowvar=False) + lam * np.eye(len(feats)), -0.5) @ power(target, 0.5)
        Y[rows] = (X[rows] - c.mean(axis=0)) @ A + mu
    np.testing.assert_allclose(out[feats].to_numpy(), Y, rtol=1e-8, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Tables: CSV and .npy, aggregation.

def small_cells(rng, n=60):
    plates = np.repeat(["P1", "P2", "P3"], n // 3)
    wells = np.tile(["A01", "A02", "B01", "B02"], n // 4)
    comp = np.where(np.isin(wells, ["A01", "B01"]), "DMSO", "drugX")
    df = pd.DataFrame({"Metadata_Plate": plates, "Metadata_Well": wells, "Metadata_Compound": comp,
                       "Metadata_ObjectNumber": np.arange(n)})
    for j in range(5):
        df[f"f{j}"] = rng.normal(size=n) * (j + 1) + (comp == "drugX") * j
    return df


def test_aggregate_csv_and_npy_match_pandas(cytogan, tmp_path):
    rng = np.random.default_rng(1)
    df = small_cells(rng)
    feats = [f"f{j}" for j in range(5)]
    csv = tmp_path / "cells.csv"
    df.to_csv(csv, index=False)
    npy = tmp_path / "cells.npy"
    np.save(npy, df[feats].to_numpy(np.float64))
    df[[c for c in df.columns if c.startswith("Metadata_")]].to_csv(tmp_path / "cells.metadata.csv", index=False)
    for method in ["mean", "median"]:
        ref = df.groupby(["Metadata_Plate", "Metadata_Well"], sort=False)
        ref = (ref[feats].mean() if method == "mean" else ref[feats].median()).reset_index()
        counts = df.groupby(["Metadata_Plate", "Metadata_Well"], sort=False).size().to_numpy()
        for src in [csv, npy]:
            dst = tmp_path / f"wells_{method}_{src.suffix[1:]}.csv"
            summary, _ = run_json(cytogan, "profile", "aggregate", "--input", src, "--output", dst,
                                  "--by", "Metadata_Plate", "Metadata_Well", "--method", method)
            out = pd.read_csv(dst)
            assert summary["groups"] == 12 and summary["metadata_columns_dropped"] == ["Metadata_ObjectNumber"]
            names = feats if src == csv else [f"feature_{j}" for j in range(5)]   # a .npy has no names
            assert list(out.columns) == ["Metadata_Plate", "Metadata_Well", "Metadata_Count", "Metadata_Compound"] + names
            assert (out.Metadata_Count.to_numpy() == counts).all()
            np.testing.assert_allclose(out[names].to_numpy(), ref[feats].to_numpy(), rtol=1e-12, atol=1e-12)
    # .npy output: float32 matrix + metadata CSV beside it.
    dst = tmp_path / "wells.npy"
    run_json(cytogan, "profile", "aggregate", "--input", csv, "--output", dst, "--by", "Metadata_Plate,Metadata_Well")
    m = np.load(dst)
    assert m.dtype == np.float32 and m.shape == (12, 5)
    meta = pd.read_csv(tmp_path / "wells.metadata.csv")
    assert list(meta.columns) == ["Metadata_Plate", "Metadata_Well", "Metadata_Count", "Metadata_Compound"]


def test_normalize_streams_npy_and_matches_numpy(cytogan, tmp_path):
    rng = np.random.default_rng(2)
    df = small_cells(rng, n=120)
    feats = [f"f{j}" for j in range(5)]
    np.save(tmp_path / "c.npy", df[feats].to_numpy(np.float32))
    df[[c for c in df.columns if c.startswith("Metadata_")]].to_csv(tmp_path / "c.metadata.csv", index=False)
    summary, _ = run_json(cytogan, "profile", "normalize", "--input", tmp_path / "c.npy", "--output", tmp_path / "z.csv",
                          "--method", "standardize", "--per", "Metadata_Plate")
    out = pd.read_csv(tmp_path / "z.csv")
    X = df[feats].to_numpy(np.float32).astype(np.float64)
    ref = np.empty_like(X)
    for p in df.Metadata_Plate.unique():
        rows = (df.Metadata_Plate == p).to_numpy()
        c = X[rows & (df.Metadata_Compound == CONTROL).to_numpy()]
        ref[rows] = (X[rows] - c.mean(0)) / c.std(0, ddof=1)
    assert out.columns.tolist()[-5:] == [f"feature_{j}" for j in range(5)]
    np.testing.assert_allclose(out.iloc[:, -5:].to_numpy(), ref, rtol=1e-10, atol=1e-12)
    assert summary["rows"] == 120 and summary["control_rows"] == 60


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming the fault, or a documented, reported exclusion.

def tiny_wells():
    rows = []
    for plate in ["P1", "P2"]:
        for i, (comp, conc, moa) in enumerate([("DMSO", 0, ""), ("DMSO", 0, ""), ("DMSO", 0, ""),
                                               ("a", 1, "M1"), ("b", 1, "M1"), ("c", 1, "M2"), ("d", 1, "M2")]):
            rows.append({"Metadata_Plate": plate, "Metadata_Well": f"W{i}", "Metadata_Compound": comp,
                         "Metadata_Concentration": conc, "Metadata_MOA": moa, "Metadata_Batch": "B" + plate,
                         "f1": i + (plate == "P2") * 0.5 + (i * i) % 3, "f2": (i * 7) % 5 - 2.0, "f3": i * 0.25 + 1})
    return pd.DataFrame(rows)


def write(df, tmp_path, name="w.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def test_tiny_table_scores(cytogan, tmp_path):
    out, _ = run_json(cytogan, "profile", "moa", "--wells", write(tiny_wells(), tmp_path))
    assert len(out["treatments"]) == 4
    # Every treatment's wells are on both plates: all batches shared, so NSCB drops everything.
    assert out["nscb"] is None and len(out["nscb_dropped"]) == 4


def test_missing_column_is_an_error(cytogan, tmp_path):
    p = cytogan("profile", "moa", "--wells", write(tiny_wells().drop(columns="Metadata_Batch"), tmp_path), check=False)
    assert p.returncode != 0 and "Metadata_Batch" in p.stderr and p.stdout == ""


def test_non_numeric_value_names_line_and_field(cytogan, tmp_path):
    df = tiny_wells().astype({"f2": object})
    df.loc[4, "f2"] = "abc"
    p = cytogan("profile", "moa", "--wells", write(df, tmp_path), check=False)
    assert p.returncode != 0 and "abc" in p.stderr and ":6" in p.stderr and "f2" in p.stderr


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_value_is_an_error_or_a_reported_exclusion(cytogan, tmp_path, bad):
    df = tiny_wells()
    df.loc[10, "f1"] = bad
    path = write(df, tmp_path)
    p = cytogan("profile", "moa", "--wells", path, check=False)
    assert p.returncode != 0 and ":12" in p.stderr and "f1" in p.stderr
    out, err = run_json(cytogan, "profile", "moa", "--wells", path, "--on-nonfinite", "drop-row")
    assert out["rows_dropped"]["count"] == 1 and out["rows_dropped"]["rows"][0]["line"] == 12
    assert out["wells"]["total"] == 13 and "dropped 1 wells" in err
    # Same result as if the row had not been there.
    ref, _ = run_json(cytogan, "profile", "moa", "--wells", write(df.drop(index=10), tmp_path, "ref.csv"))
    assert ref["nsc"] == out["nsc"] and ref["treatments"] == out["treatments"]


def test_plate_without_controls_is_an_error(cytogan, tmp_path):
    df = tiny_wells()
    df = df[~((df.Metadata_Plate == "P2") & (df.Metadata_Compound == "DMSO"))]
    p = cytogan("profile", "moa", "--wells", write(df, tmp_path), check=False)
    assert p.returncode != 0 and "P2" in p.stderr and "no control" in p.stderr
    # Globally it can be normalized.
    cytogan("profile", "moa", "--wells", write(df, tmp_path), "--per", "none")


def test_duplicated_well_is_an_error(cytogan, tmp_path):
    df = tiny_wells()
    df = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    p = cytogan("profile", "moa", "--wells", write(df, tmp_path), check=False)
    assert p.returncode != 0 and "W3" in p.stderr and "twice" in p.stderr


def test_conflicting_moa_and_bad_concentration_are_errors(cytogan, tmp_path):
    df = tiny_wells()
    df.loc[10, "Metadata_MOA"] = "M9"     # compound b on plate P2, M1 on P1
    p = cytogan("profile", "moa", "--wells", write(df, tmp_path), check=False)
    assert p.returncode != 0 and "M9" in p.stderr and "M1" in p.stderr
    df = tiny_wells().astype({"Metadata_Concentration": object})
    df.loc[4, "Metadata_Concentration"] = "high"
    p = cytogan("profile", "moa", "--wells", write(df, tmp_path), check=False)
    assert p.returncode != 0 and "high" in p.stderr and "Metadata_Concentration" in p.stderr


# ---------------------------------------------------------------------------------------------
# Crop-level evaluation (cytogan profile evaluate-crops) against scikit-learn and NumPy.

def synthetic_crops(rng):
    """Four plates, each with a DMSO well and drug wells at three doses (the BBBC021 crop layout)."""
    rows = []
    for p in range(4):
        plate_shift = rng.normal(size=6) * 2
        for well, comp, conc, n in [("B02", "DMSO", 0.0, 60), ("B03", "drug", 50.0, 25), ("B04", "drug", 15.0, 30),
                                    ("B05", "drug", 5.0, 30)]:
            if p == 3 and conc == 5.0:
                continue                      # a plate without the lowest dose
            effect = np.array([1, -0.5, 0.3, 0, 0, 0.2]) * np.log1p(conc) * 0.6
            x = rng.normal(size=(n, 6)) * [1, 2, 0.5, 1, 3, 1] + plate_shift + effect
            for v in x:
                rows.append({"Metadata_Plate": f"P{p}", "Metadata_Well": well, "Metadata_Compound": comp,
                             "Metadata_Concentration": conc, **{f"g{j}": v[j] for j in range(6)}})
    return pd.DataFrame(rows)


def test_evaluate_crops_matches_sklearn_and_numpy(cytogan, tmp_path):
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    df = synthetic_crops(np.random.default_rng(3))
    path = write(df, tmp_path, "crops.csv")
    out, err = run_json(cytogan, "profile", "evaluate-crops", "--features", path, "--C", "0.1")
    feats = [f"g{j}" for j in range(6)]
    X = df[feats].to_numpy(float)
    ctl = (df.Metadata_Compound == CONTROL).to_numpy()
    plate = df.Metadata_Plate.to_numpy()
    Z = np.empty_like(X)
    for p in np.unique(plate):
        c = X[(plate == p) & ctl]
        Z[plate == p] = (X[plate == p] - c.mean(0)) / c.std(0, ddof=1)
    # (a) leave-one-plate-out, pooled predictions.
    y = ~ctl
    pred = np.empty(len(df), bool)
    for p in np.unique(plate):
        tr, te = plate != p, plate == p
        m = LogisticRegression(C=0.1, class_weight="balanced", tol=1e-12, max_iter=10000).fit(Z[tr], y[tr])
        pred[te] = m.predict(Z[te])
    ref_a = balanced_accuracy_score(y, pred)
    assert abs(out["logistic"]["balanced_accuracy"] - ref_a) < 1e-3
    assert 0.6 < ref_a < 0.99                    # the test separates well from badly, not trivially
    # (b) wells: features z-scored to all control cells, cosine 1-NN on other plates.
    G = (X - X[ctl].mean(0)) / X[ctl].std(0, ddof=1)
    w = df.assign(**{f: G[:, j] for j, f in enumerate(feats)}).groupby(["Metadata_Plate", "Metadata_Well"])
    wm = w[feats].mean()
    lab = w.Metadata_Concentration.first().to_numpy()
    wp = wm.index.get_level_values(0).to_numpy()
    U = wm.to_numpy() / np.linalg.norm(wm.to_numpy(), axis=1, keepdims=True)
    D = 1 - U @ U.T
    hits = []
    for i in range(len(wm)):
        cand = np.where(wp != wp[i])[0]
        hits.append(lab[cand[np.argmin(D[i, cand])]] == lab[i])
    assert abs(out["well_nn"]["accuracy"] - np.mean(hits)) < 1e-12
    # (c) distances to the plate's control centre in per-plate z-scores, Spearman per plate.
    zdf = df.assign(**{f: Z[:, j] for j, f in enumerate(feats)})
    rhos = []
    for s in out["dose"]["series"]:
        g = zdf[(zdf.Metadata_Plate == s["plate"])]
        centre = g[g.Metadata_Compound == CONTROL][feats].mean().to_numpy()
        for wj in s["wells"]:
            m = g[g.Metadata_Well == wj["well"]][feats].mean().to_numpy()
            assert abs(np.linalg.norm(m - centre) - wj["distance"]) < 1e-9
        rho = spearmanr([v["concentration"] for v in s["wells"]], [v["distance"] for v in s["wells"]]).statistic
        assert abs(rho - s["spearman"]) < 1e-12
        rhos.append(rho)
    assert len(out["dose"]["series"]) == 4 and abs(np.mean(rhos) - out["dose"]["mean_spearman"]) < 1e-12
    assert "(a)" in err and "(c)" in err


def test_normalize_aggregate_score_pipeline_equals_moa(cytogan, ljosa, tmp_path):
    """The three batch commands in a row give what `moa` gives: batches of a treatment survive
    aggregation joined with ';' and `score` splits them again."""
    path, _ = ljosa
    z, w = tmp_path / "z.csv", tmp_path / "t.csv"
    cytogan("profile", "normalize", "--input", path, "--output", z, "--method", "standardize")
    agg, _ = run_json(cytogan, "profile", "aggregate", "--input", z, "--output", w, "--by",
                      "Metadata_Compound", "Metadata_Concentration", "--join", "Metadata_Batch")
    assert set(agg["metadata_columns_dropped"]) == {"Metadata_Plate", "Metadata_Well"}
    assert any(";" in b for b in pd.read_csv(w).Metadata_Batch)
    scored, _ = run_json(cytogan, "profile", "score", "--profiles", w)
    moa, _ = run_json(cytogan, "profile", "moa", "--wells", path)
    for k in ["nsc", "nscb", "per_compound", "map", "nscb_dropped"]:
        assert scored[k] == moa[k], k
    assert [t["nsc_neighbor"] for t in scored["treatments"]] == [t["nsc_neighbor"] for t in moa["treatments"]]
    assert [t["nscb_neighbor"] for t in scored["treatments"]] == [t["nscb_neighbor"] for t in moa["treatments"]]
