"""The worker's profiles/* methods: scores through the worker equal `cytogan profile moa` on the
same file (a generated screen, and the real Ljosa 2013 BBBC021 wells when ../shared/data is there);
normalize and aggregate equal NumPy/pandas computed from the definitions; exports read back with
pandas and NumPy; errors name the parameter or file at fault and leave the tables as they were."""
import json

import numpy as np
import pandas as pd
import pytest

from profile_tables import META, ljosa_wells
from test_worker_support import Worker, err, ok

DMSO = {"column": "Metadata_Compound", "values": ["DMSO"]}


def screen(seed=7, plates=4, features=12):
    """A small screen: DMSO wells and 8 compounds of 4 MOAs at 2 doses, on `plates` plates in 2
    batches, features = plate offset + MOA signature * dose + noise."""
    rng = np.random.default_rng(seed)
    moas = {f"c{i}": f"moa{i % 4}" for i in range(8)}
    sig = {m: rng.normal(0, 1, features) for m in set(moas.values())}
    rows = []
    for p in range(plates):
        offset = rng.normal(0, 3, features)
        scale = rng.uniform(0.5, 2, features)
        batch = f"B{p // 2}"
        for w in range(6):
            rows.append([f"P{p}", f"A{w:02d}", "DMSO", 0.0, "", batch, *(offset + scale * rng.normal(0, 1, features))])
        for i, (c, m) in enumerate(moas.items()):
            if (i + p) % 2:  # each compound on half the plates, so NSCB has candidates
                continue
            for k, dose in enumerate([1.0, 3.0]):
                x = offset + scale * (sig[m] * dose + rng.normal(0, 0.7, features))
                rows.append([f"P{p}", f"B{i:02d}{k}", c, dose, m, batch, *x])
    return pd.DataFrame(rows, columns=META + [f"f{j}" for j in range(features)])


@pytest.fixture(scope="module")
def screen_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "wells.csv"
    df = screen()
    df.to_csv(path, index=False)
    return path, df


@pytest.fixture()
def worker():
    w = Worker()
    w.initialize()
    yield w
    w.kill()


def moa_cli(cytogan, path, *args):
    return json.loads(cytogan("profile", "moa", "--wells", path, *args).stdout)


def compare_scores(got, moa):
    """profiles/score against `profile moa`: the same numbers, and the counts behind them."""
    assert got["nsc"]["accuracy"] == moa["nsc"]
    assert got["treatments"] == moa["treatment_count"] == got["nsc"]["total"]
    assert got["nsc"]["correct"] == sum(t["nsc_correct"] for t in moa["treatments"])
    if moa["nscb"] is None:
        assert got["nscb"] is None
    else:
        assert got["nscb"]["accuracy"] == moa["nscb"]
        kept = [t["nscb_correct"] for t in moa["treatments"] if t["nscb_correct"] is not None]
        assert (got["nscb"]["correct"], got["nscb"]["total"]) == (sum(kept), len(kept))
    assert got["perCompound"]["mean"] == moa["per_compound"]
    per = pd.DataFrame(moa["treatments"]).groupby("compound").nsc_correct.mean()
    assert got["perCompound"]["compounds"] == pytest.approx(per.to_dict(), abs=0)
    assert got["map"] == moa["map"]


@pytest.mark.parametrize("method,distance", [("standardize", "cosine"), ("robustize", "correlation"),
                                             ("tvn", "euclidean")])
def test_score_through_worker_equals_profile_moa(cytogan, worker, screen_csv, method, distance):
    path, df = screen_csv
    moa = moa_cli(cytogan, path, "--normalize", method, "--distance", distance)
    norm = ok(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO, "method": method,
                                                 "by": ["Metadata_Plate"], "into": "z"}))
    assert norm["rows"] == len(df) and norm["controlRows"] == int((df.Metadata_Compound == "DMSO").sum())
    got = ok(worker.call("profiles/score", {"source": {"table": "z"}, "batch": "Metadata_Batch", "exclude": DMSO,
                                            "distance": distance, "confusion": True}))
    compare_scores(got, moa)
    assert got["confusion"]["labels"] == moa["confusion"]["moas"]
    assert got["confusion"]["matrix"] == moa["confusion"]["nsc"]


def test_score_of_an_unnormalized_file_equals_moa_without_normalization(cytogan, worker, screen_csv):
    path, _ = screen_csv
    moa = moa_cli(cytogan, path, "--normalize", "none")
    compare_scores(ok(worker.call("profiles/score", {"source": {"path": str(path)}, "batch": "Metadata_Batch"})), moa)
    # Only the metrics asked for come back; without a batch column named, Metadata_Plate is the batch.
    only = ok(worker.call("profiles/score", {"source": {"path": str(path)}, "metrics": ["map"]}))
    assert set(only) == {"treatments", "map"} and only["map"] == moa["map"]
    by_plate = moa_cli(cytogan, path, "--normalize", "none", "--batch-column", "Metadata_Plate")
    compare_scores(ok(worker.call("profiles/score", {"source": {"path": str(path)}})), by_plate)


def test_ljosa_bbbc021_scores_equal_profile_moa(cytogan, worker, shared_data, tmp_path):
    """The real Ljosa 2013 per-well CellProfiler profiles of BBBC021, joined with their MOAs."""
    path = tmp_path / "ljosa.csv"
    ljosa_wells(shared_data).to_csv(path, index=False)
    ref = moa_cli(cytogan, path)
    norm = ok(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO, "by": ["Metadata_Plate"]}))
    assert [f["feature"] for f in norm["featuresDropped"]] == ref["features_dropped"]
    assert norm["features"] == ref["features_used"] == 513
    got = ok(worker.call("profiles/score", {"source": {"table": "normalized"}, "batch": "Metadata_Batch", "exclude": DMSO}))
    compare_scores(got, ref)
    assert got["treatments"] == 103


def test_normalize_and_aggregate_equal_numpy_and_pandas(worker, screen_csv, tmp_path):
    path, df = screen_csv
    feats = [c for c in df.columns if c.startswith("f")]
    ok(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO,
                                          "by": ["Metadata_Batch", "Metadata_Plate"], "method": "robustize", "into": "r"}))
    ok(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO, "into": "g"}))
    out = tmp_path / "sub" / "r.csv"
    res = ok(worker.call("profiles/export", {"source": {"table": "r"}, "path": str(out)}))
    assert res == {"path": str(out), "format": "csv", "rows": len(df), "features": len(feats), "metadataColumns": META}
    got = pd.read_csv(out, keep_default_na=False)
    assert list(got.columns) == META + feats
    # Robustize per plate (the two `by` columns: one group per combination), from the definition.
    X = df[feats].to_numpy(float)
    want = np.empty_like(X)
    for _, idx in df.groupby(["Metadata_Batch", "Metadata_Plate"]).groups.items():
        rows = df.index.isin(idx)
        c = X[rows & (df.Metadata_Compound == "DMSO").to_numpy()]
        med = np.median(c, axis=0)
        want[rows] = (X[rows] - med) / (1.4826 * np.median(np.abs(c - med), axis=0))
    np.testing.assert_allclose(got[feats].to_numpy(float), want, rtol=1e-12, atol=1e-12)
    # Global standardization, exported as float32 .npy with its metadata beside it.
    res = ok(worker.call("profiles/export", {"source": {"table": "g"}, "path": str(tmp_path / "g.npy")}))
    assert res["format"] == "npy" and res["metadataPath"] == str(tmp_path / "g.metadata.csv")
    ctl = X[(df.Metadata_Compound == "DMSO").to_numpy()]
    z = (X - ctl.mean(axis=0)) / ctl.std(axis=0, ddof=1)
    m = np.load(tmp_path / "g.npy")
    assert m.dtype == np.float32 and m.shape == z.shape
    np.testing.assert_allclose(m, z.astype(np.float32), rtol=1e-6, atol=1e-6)
    assert pd.read_csv(tmp_path / "g.metadata.csv").Metadata_Well.tolist() == df.Metadata_Well.tolist()
    # Aggregation by treatment, mean and median, against pandas.
    for method in ["mean", "median"]:
        info = ok(worker.call("profiles/aggregate", {"source": {"path": str(path)}, "method": method, "into": method,
                                                     "join": ["Metadata_Batch"]}))
        assert set(info["metadataColumnsDropped"]) == {"Metadata_Plate", "Metadata_Well"}
        ok(worker.call("profiles/export", {"source": {"table": method}, "path": str(tmp_path / f"{method}.csv")}))
        agg = pd.read_csv(tmp_path / f"{method}.csv", keep_default_na=False)
        ref = df.groupby(["Metadata_Compound", "Metadata_Concentration"], sort=False)[feats].agg(method).reset_index()
        assert agg.Metadata_Compound.tolist() == ref.Metadata_Compound.tolist()
        assert agg.Metadata_Count.tolist() == df.groupby(["Metadata_Compound", "Metadata_Concentration"], sort=False).size().tolist()
        np.testing.assert_allclose(agg[feats].to_numpy(float), ref[feats].to_numpy(float), rtol=1e-12, atol=1e-12)
        batches = df.groupby(["Metadata_Compound", "Metadata_Concentration"], sort=False).Metadata_Batch.unique()
        assert [set(b.split(";")) for b in agg.Metadata_Batch] == [set(b) for b in batches]
    names = [t["name"] for t in ok(worker.call("profiles/list"))["tables"]]
    assert names == ["g", "mean", "median", "r"]


def test_an_exported_npy_table_reads_back_as_a_source(worker, screen_csv, tmp_path):
    path, df = screen_csv
    ok(worker.call("profiles/export", {"source": {"path": str(path)}, "path": str(tmp_path / "w.npy")}))
    a = ok(worker.call("profiles/score", {"source": {"path": str(path)}, "batch": "Metadata_Batch"}))
    b = ok(worker.call("profiles/score", {"source": {"path": str(tmp_path / "w.npy")}, "batch": "Metadata_Batch"}))
    # float32 storage moves the numbers a little, not the neighbours of this screen.
    assert a["nsc"] == b["nsc"] and a["perCompound"]["compounds"] == b["perCompound"]["compounds"]


def test_errors_name_what_is_wrong_and_change_nothing(worker, screen_csv, tmp_path):
    path, _ = screen_csv
    ok(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO, "into": "z"}))
    before = ok(worker.call("profiles/list"))
    missing = str(tmp_path / "absent.csv")
    assert err(worker.call("profiles/aggregate", {"source": {"path": missing}, "into": "z"}), -32010)["path"] == missing
    bad = tmp_path / "bad.csv"
    bad.write_text("Metadata_Compound,f1\nDMSO,1\nx,oops\n")
    d = err(worker.call("profiles/aggregate", {"source": {"path": str(bad)}, "by": ["Metadata_Compound"], "into": "z"}), -32014)
    assert (d["path"], d["line"], d["field"]) == (str(bad), 3, "f1")
    assert err(worker.call("profiles/aggregate", {"source": {"table": "z"}, "by": ["Metadata_Plate", "Metadata_Dose"], "into": "z"}),
               -32014)["field"] == "by[1]"
    assert err(worker.call("profiles/score", {"source": {"table": "nope"}}), -32014)["field"] == "source.table"
    assert err(worker.call("profiles/score", {"source": {"table": "z"}, "batch": "Metadata_Lot"}), -32014)["field"] == "batch"
    assert err(worker.call("profiles/score", {"source": {"table": "z"}, "exclude": {"column": "X", "values": ["a"]}}),
               -32014)["field"] == "exclude.column"
    assert err(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": {"column": "Metadata_Compound", "values": ["PBS"]},
                                                  "into": "z"}), -32014)["field"] == "controls"
    assert err(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO, "by": ["Metadata_Well"],
                                                  "into": "z"}), -32014)["field"] == "by"
    assert err(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": DMSO, "lambda": 2}), -32602)["field"] == "lambda"
    assert err(worker.call("profiles/normalize", {"source": {"path": str(path)}, "controls": {"column": "Metadata_Compound", "values": [None]}}),
               -32602)["field"] == "controls.values[0]"
    assert err(worker.call("profiles/normalize", {"source": {"path": str(path)}}), -32602)["field"] == "controls"
    assert err(worker.call("profiles/score", {"source": {"table": "z", "path": "x.csv"}}), -32602)["field"] == "source.path"
    assert err(worker.call("profiles/score", {"source": {"table": "z"}, "metrics": ["auc"]}), -32602)["field"] == "metrics"
    assert err(worker.call("profiles/export", {"source": {"table": "z"}, "path": str(tmp_path / "x.npy"), "format": "csv"}),
               -32602)["field"] == "format"
    assert err(worker.call("profiles/export", {"source": {"table": "z"}, "path": "/proc/cytogan/x.csv"}), -32017)
    single = tmp_path / "one.csv"
    single.write_text("Metadata_Compound,Metadata_Concentration,Metadata_MOA,f1\na,1,m,1\na,2,m,2\n")
    assert err(worker.call("profiles/score", {"source": {"path": str(single)}}), -32014)["field"] == "compound"
    assert err(worker.call("profiles/drop", {"table": "nope"}), -32014)["field"] == "table"
    assert ok(worker.call("profiles/list")) == before
    assert ok(worker.call("profiles/drop", {"table": "z"})) == {"dropped": "z"}
    assert ok(worker.call("profiles/list")) == {"tables": []}


def test_a_cancelled_normalize_keeps_no_table(worker, tmp_path):
    """A long read keeps the work thread busy; the request queued behind it is cancelled before it
    runs: it is answered -32800 and no table appears."""
    rng = np.random.default_rng(1)
    n = 20_000
    big = pd.DataFrame({"Metadata_Compound": np.where(np.arange(n) % 5 == 0, "DMSO", "x"),
                        **{f"f{j}": rng.normal(size=n) for j in range(20)}})
    path = tmp_path / "big.csv"
    big.to_csv(path, index=False)
    worker.send({"jsonrpc": "2.0", "id": "slow", "method": "profiles/normalize",
                 "params": {"source": {"path": str(path)}, "controls": DMSO, "into": "first"}})
    worker.send({"jsonrpc": "2.0", "id": "victim", "method": "profiles/normalize",
                 "params": {"source": {"path": str(path)}, "controls": DMSO, "into": "second"}})
    worker.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "victim", "reason": "test"}})
    answers = {}
    while len(answers) < 2:
        r = worker.recv(timeout=120)
        answers[r["id"]] = r
    assert answers["slow"]["result"]["rows"] == n
    assert answers["victim"]["error"]["code"] == -32800 and answers["victim"]["error"]["data"]["reason"] == "test"
    assert [t["name"] for t in ok(worker.call("profiles/list"))["tables"]] == ["first"]
