"""examples/bbbc021: every step after the download, on ../shared/data — the metadata join
(checked against pandas), nucleus segmentation and crop cutting on real fields (checked against
the StarDist label mask and the worker's own cutting), a tiny training run on real BBBC021 crops,
feature extraction, per-well profiles, crop-level evaluation, and MOA scoring of the published
CellProfiler profiles through the same `score` step."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from test_integration_support import BIN, ROOT, require_command

SCRIPT = ROOT / "examples" / "bbbc021" / "bbbc021.py"


def bbbc(*args, timeout=300):
    p = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "CYTOGAN_BIN": BIN}, timeout=timeout)
    assert p.returncode == 0, f"bbbc021.py {' '.join(map(str, args))}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def test_fields_join_metadata_and_moa(shared_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata").symlink_to(shared_data / "bbbc021" / "metadata")
    bbbc("fields", "--data", data, "--out", tmp_path / "fields.csv", "--no-require-files")
    got = pd.read_csv(tmp_path / "fields.csv")
    # Independently: pandas merge of the image table with the MOA table, plus DMSO.
    img = pd.read_csv(shared_data / "bbbc021" / "metadata" / "BBBC021_v1_image.csv")
    moa = pd.read_csv(shared_data / "bbbc021" / "metadata" / "BBBC021_v1_moa.csv")
    m = img.merge(moa, left_on=["Image_Metadata_Compound", "Image_Metadata_Concentration"],
                  right_on=["compound", "concentration"], how="left")
    m = m[m["moa"].notna() | (m["Image_Metadata_Compound"] == "DMSO")]
    assert len(got) == len(m)
    assert (got["Metadata_MOA"] == "DMSO").sum() == (m["Image_Metadata_Compound"] == "DMSO").sum()
    assert got["Metadata_Compound"].nunique() == m["Image_Metadata_Compound"].nunique()
    assert got["Metadata_MOA"].nunique() == 13  # 12 mechanisms and DMSO
    assert set(got["Metadata_Batch"]) == {p.split("_")[0] for p in got["Metadata_Plate"]}
    assert got["DNA"].str.contains("Week").all() and got["Metadata_Site"].between(1, 4).all()


def fields_csv(tmp_path, dna, other1, other2):
    path = tmp_path / "f.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["DNA", "Tubulin", "Actin", "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Compound",
                    "Metadata_Concentration", "Metadata_MOA", "Metadata_Batch"])
        w.writerow([dna, other1, other2, "P1", "B02", 1, "DMSO", 0.0, "DMSO", "Week0"])
    return path


def test_segmentation_finds_the_stardist_nuclei(shared_data, tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import bbbc021
    img = tifffile.imread(shared_data / "fields" / "stardist" / "img2d.tif")
    truth = tifffile.imread(shared_data / "fields" / "stardist" / "mask2d.tif")
    labels = bbbc021.segment_nuclei(img, min_area=30, drop_border=False)
    # Foreground agreement with the expert mask (intersection over union), and each found object
    # lies on a true nucleus.
    iou = np.logical_and(labels > 0, truth > 0).sum() / np.logical_or(labels > 0, truth > 0).sum()
    assert iou > 0.7, iou
    from cytogan_client import arrays
    centres = arrays.object_centres(labels)
    on_truth = [truth[int(round(y)), int(round(x))] > 0 for x, y in centres]
    assert np.mean(on_truth) > 0.9
    assert abs(bbbc021.otsu_threshold(np.array([0.0] * 50 + [10.0] * 50)) - 5) < 5


def test_segment_cuts_crops_as_the_worker_would(shared_data, tmp_path):
    eh = shared_data / "fields" / "ExampleHuman"
    chans = [eh / f"AS_09125_050116030001_D03f00d{i}.tif" for i in range(3)]
    bbbc("segment", "--fields", fields_csv(tmp_path, *chans), "--out", tmp_path / "seg", "--crop-size", 40,
         "--max-per-field", 25)
    rows = list(csv.DictReader(open(tmp_path / "seg" / "crops.csv")))
    assert len(rows) == 25 and rows[0]["Metadata_Compound"] == "DMSO"
    for r in rows[:5]:
        crop = tifffile.imread(tmp_path / "seg" / r["path"])  # (40, 40, 3) uint8
        assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
        out = tmp_path / "p.npy"
        subprocess.run([BIN, "image", "prepare", *map(str, chans), "--channel-files", "--centre",
                        f"{r['Location_Center_X']},{r['Location_Center_Y']}", "--crop-size", "40", "--size", "40",
                        "--npy", str(out)], check=True, capture_output=True)
        ref = np.load(out)[0]
        from cytogan_client import arrays
        np.testing.assert_allclose(arrays.per_crop_max_normalize(np.moveaxis(crop, -1, 0)), ref, atol=2e-7)


@pytest.fixture(scope="module")
def subset(shared_data, tmp_path_factory):
    """A few real BBBC021 crops per well (DMSO and cyclohexamide), as a manifest over ../shared."""
    d = tmp_path_factory.mktemp("bbbc")
    crops = pd.read_csv(shared_data / "bbbc021" / "crops.csv")
    crops["Metadata_Batch"] = crops["Metadata_Plate"].str.split("_").str[0]
    sub = crops.groupby(["Metadata_Plate", "Metadata_Well"], group_keys=False).head(6).copy()
    sub["path"] = [str(shared_data / "bbbc021" / p) for p in sub["path"]]
    sub.to_csv(d / "crops.csv", index=False)
    return d


def test_train_extract_profile_evaluate_on_real_crops(subset, tmp_path):
    require_command("train")
    require_command("extract")
    model = tmp_path / "model.safetensors"
    bbbc("train", "--crops", subset / "crops.csv", "--model", model, "--preset", "small-64", "--steps", 2,
         "--batch-size", 8)
    assert model.stat().st_size > 1000
    bbbc("extract", "--model", model, "--crops", subset / "crops.csv", "--out", tmp_path / "cells.csv")
    cells = pd.read_csv(tmp_path / "cells.csv")
    n = len(pd.read_csv(subset / "crops.csv"))
    feats = [c for c in cells.columns if not c.startswith("Metadata_")]
    assert len(cells) == n and len(feats) > 0 and np.isfinite(cells[feats].to_numpy()).all()
    bbbc("profile", "--cells", tmp_path / "cells.csv", "--out", tmp_path / "wells.csv")
    wells = pd.read_csv(tmp_path / "wells.csv")
    ref = cells.groupby(["Metadata_Plate", "Metadata_Well"])[feats].mean()
    got = wells.set_index(["Metadata_Plate", "Metadata_Well"]).loc[ref.index, feats]
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-5, atol=1e-7)
    p = bbbc("evaluate", "--cells", tmp_path / "cells.csv")
    report = json.loads(p.stdout)
    assert report  # the crop-level evaluation ran on real features and answered


def test_score_the_published_cellprofiler_profiles(shared_data, tmp_path):
    """The score step on the CellProfiler baseline of CytoGAN's Table 1 (Ljosa et al. 2013 per-well
    profiles): all 103 annotated treatments, NSC as published for these features (~0.9)."""
    bbbc("baseline", "--profiles", shared_data / "bbbc021" / "profiles" / "ljosa2013_per_well_mean.csv.gz",
         "--metadata", shared_data / "bbbc021" / "metadata", "--out", tmp_path / "cp_wells.csv")
    p = bbbc("score", "--wells", tmp_path / "cp_wells.csv", "--out", tmp_path / "scores.json")
    summary = json.loads(p.stdout)
    full = json.loads((tmp_path / "scores.json").read_text())
    assert full["treatment_count"] == 103 - 1 or full["treatment_count"] == 103  # DMSO is the control
    assert summary["nsc"] == full["nsc"] and 0.8 < summary["nsc"] <= 1.0, summary
    assert 0 < summary["nscb"] <= summary["nsc"]
