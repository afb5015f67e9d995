"""BBBC021 end to end with cytogan: download images and metadata from the Broad Bioimage Benchmark
Collection, find nuclei, cut single-cell crops around them, train a GAN, extract per-cell
features, average them per well, and score mechanism-of-action matching (NSC, NSCB,
per-compound accuracy, mAP), beside the published CellProfiler profiles as a baseline.

    python bbbc021.py all --data data --work work --plates Week4_27481 Week4_27521 --steps 2000

Each step is also a subcommand (`python bbbc021.py STEP --help`): download, fields, segment,
train, extract, profile, score, evaluate, baseline. Needs numpy, scipy, tifffile and pandas, the
`cytogan` binary ($CYTOGAN_BIN or PATH), and for `download` an internet connection.
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integrations", "python"))

BBBC = "https://data.broadinstitute.org/bbbc/BBBC021"
METADATA_FILES = ["BBBC021_v1_image.csv", "BBBC021_v1_compound.csv", "BBBC021_v1_moa.csv"]
LJOSA_PROFILES = ("https://raw.githubusercontent.com/cytomining/cytominergallery/master/inst/extdata/"
                  "ljosa_jbiomolscreen_2013_per_well_mean.csv.gz")
CHANNELS = ["DAPI", "Tubulin", "Actin"]  # model channel order: DNA, tubulin, actin (the paper's R, G, B)


def cytogan_bin():
    b = os.environ.get("CYTOGAN_BIN") or shutil.which("cytogan")
    if not b:
        sys.exit("bbbc021: cytogan not found: set CYTOGAN_BIN or put cytogan on PATH")
    return b


def run(*args, capture=False):
    cmd = [cytogan_bin(), *map(str, args)]
    print("+ cytogan " + " ".join(map(str, args)), file=sys.stderr)
    p = subprocess.run(cmd, stdout=subprocess.PIPE if capture else None, text=True)
    if p.returncode != 0:
        sys.exit(f"bbbc021: `cytogan {' '.join(map(str, args))}` failed with status {p.returncode}")
    return p.stdout


# ----------------------------------------------------------------------------- download
def fetch(url, dest):
    """Downloads url to dest (through a temporary name) unless dest exists."""
    if os.path.exists(dest):
        return dest
    os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
    print(f"download {url}", file=sys.stderr)
    tmp = dest + ".part"
    with urllib.request.urlopen(url) as r, open(tmp, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    os.replace(tmp, dest)
    return dest


def plates_of(image_csv):
    with open(image_csv, newline="") as f:
        return sorted({r["Image_Metadata_Plate_DAPI"] for r in csv.DictReader(f)})


def cmd_download(a):
    """Metadata, the images of the chosen plates (zips of ~500 MB-1 GB each; 55 plates in all),
    and the published per-well CellProfiler profiles."""
    meta = os.path.join(a.data, "metadata")
    for name in METADATA_FILES:
        fetch(f"{BBBC}/{name}", os.path.join(meta, name))
    fetch(LJOSA_PROFILES, os.path.join(a.data, "profiles", "ljosa2013_per_well_mean.csv.gz"))
    plates = a.plates or plates_of(os.path.join(meta, "BBBC021_v1_image.csv"))
    for plate in plates:
        week = plate.split("_")[0]
        z = fetch(f"{BBBC}/BBBC021_v1_images_{plate}.zip", os.path.join(a.data, "zips", f"{plate}.zip"))
        out = os.path.join(a.data, "images", week)
        if not os.path.isdir(os.path.join(out, plate)):
            with zipfile.ZipFile(z) as zf:
                zf.extractall(out)


# ----------------------------------------------------------------------------- fields
def moa_table(path):
    """{(compound, concentration): moa} from BBBC021_v1_moa.csv."""
    with open(path, newline="") as f:
        return {(r["compound"], float(r["concentration"])): r["moa"] for r in csv.DictReader(f)}


def cmd_fields(a):
    """One row per field of view: the three channel files and its metadata (plate, well, site,
    compound, concentration, MOA, batch = the week). Only treatments with an annotated MOA and
    DMSO controls are kept (the BBBC021 MOA benchmark's 103 treatments)."""
    meta = os.path.join(a.data, "metadata")
    moas = moa_table(os.path.join(meta, "BBBC021_v1_moa.csv"))
    images = os.path.join(a.data, "images")
    plates = set(a.plates or [])
    rows = []
    with open(os.path.join(meta, "BBBC021_v1_image.csv"), newline="") as f:
        for r in csv.DictReader(f):
            plate = r["Image_Metadata_Plate_DAPI"]
            if plates and plate not in plates:
                continue
            compound, conc = r["Image_Metadata_Compound"], float(r["Image_Metadata_Concentration"])
            moa = "DMSO" if compound == "DMSO" else moas.get((compound, conc))
            if moa is None:
                continue
            paths = [os.path.join(images, r[f"Image_PathName_{c}"], r[f"Image_FileName_{c}"]) for c in CHANNELS]
            if a.require_files and not all(os.path.exists(p) for p in paths):
                continue
            m = re.search(r"_s(\d+)_w", r["Image_FileName_DAPI"])
            site = m.group(1) if m else ""
            rows.append({"DNA": paths[0], "Tubulin": paths[1], "Actin": paths[2], "Metadata_Plate": plate,
                         "Metadata_Well": r["Image_Metadata_Well_DAPI"], "Metadata_Site": site,
                         "Metadata_Compound": compound, "Metadata_Concentration": repr(conc), "Metadata_MOA": moa,
                         "Metadata_Batch": plate.split("_")[0]})
    write_csv(a.out, rows)
    print(f"fields: {len(rows)} fields -> {a.out}", file=sys.stderr)


def write_csv(path, rows, header=None):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    header = header or (list(rows[0]) if rows else [])
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- segment
def otsu_threshold(values, bins=256):
    """Otsu's threshold of a 1-D array (maximum between-class variance over a histogram)."""
    import numpy as np
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = m / w0
        mu1 = (m[-1] - m) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between[~np.isfinite(between)] = -1
    return float(centres[int(np.argmax(between))])


def segment_nuclei(dna, *, sigma=1.0, min_area=60, max_area=5000, drop_border=True):
    """Nuclei of a DNA image: Gaussian smoothing, Otsu threshold, hole filling, connected
    components; objects smaller than min_area or larger than max_area pixels, or touching the
    border, are dropped. Returns a label image (objects numbered 1..n)."""
    import numpy as np
    from scipy import ndimage as ndi
    img = ndi.gaussian_filter(np.asarray(dna, dtype=np.float64), sigma)
    fg = ndi.binary_fill_holes(img > otsu_threshold(img.ravel()))
    labels, n = ndi.label(fg)
    if n == 0:
        return labels.astype(np.int32)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = (area >= min_area) & (area <= max_area)
    keep[0] = False
    if drop_border:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[edge] = False
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1)
    return remap[labels]


def cmd_segment(a):
    """Finds nuclei on each field's DNA channel and cuts a crop of --crop-size pixels (all three
    channels, uint16 as in the files, zero outside the field) centred on each nucleus, as
    CytoGAN's crops; writes crops/PLATE/WELL/sSITE_NNNN.tif and a crops.csv manifest with the
    field's metadata, the object number and its centre."""
    import numpy as np
    import tifffile
    from cytogan_client import arrays
    out_dir = os.path.abspath(a.out)
    rows = []
    with open(a.fields, newline="") as f:
        fields = list(csv.DictReader(f))
    for fr in fields:
        chans = [tifffile.imread(fr[c]) for c in ("DNA", "Tubulin", "Actin")]
        labels = segment_nuclei(chans[0], min_area=a.min_area, max_area=a.max_area)
        n = int(labels.max())
        centres = arrays.object_centres(labels, n)
        stack = np.stack(chans)
        meta = {k: v for k, v in fr.items() if k.startswith("Metadata_")}
        sub = os.path.join(fr["Metadata_Plate"], fr["Metadata_Well"])
        os.makedirs(os.path.join(out_dir, "crops", sub), exist_ok=True)
        for i in range(min(n, a.max_per_field) if a.max_per_field else n):
            crop = arrays.cut(stack, centres[i], a.crop_size, labels if a.mask else None, i + 1)
            rel = os.path.join("crops", sub, f"s{fr['Metadata_Site']}_{i:04d}.tif")
            arrays.write_tiff(os.path.join(out_dir, rel), crop.astype(stack.dtype))
            rows.append({"path": rel, **meta, "Metadata_ObjectNumber": i + 1,
                         "Location_Center_X": f"{centres[i][0]:.3f}", "Location_Center_Y": f"{centres[i][1]:.3f}"})
        print(f"segment: {fr['Metadata_Plate']} {fr['Metadata_Well']} s{fr['Metadata_Site']}: {n} nuclei",
              file=sys.stderr)
    if not rows:
        sys.exit("segment: no nuclei found")
    header = ["path"] + [k for k in rows[0] if k.startswith("Metadata_")] + ["Location_Center_X", "Location_Center_Y"]
    write_csv(os.path.join(out_dir, "crops.csv"), rows, header)
    print(f"segment: {len(rows)} crops -> {out_dir}/crops.csv", file=sys.stderr)


# ----------------------------------------------------------------------------- model, features, profiles
def cmd_train(a):
    """Trains a GAN on the crops (`cytogan train`) and copies the final checkpoint to --model."""
    ckdir = a.model + ".checkpoints"
    run("train", "--manifest", a.crops, "--preset", a.preset, "--steps", a.steps, "--batch-size", a.batch_size,
        "--seed", a.seed, "--checkpoint-dir", ckdir, "--progress", "lines" if not sys.stderr.isatty() else "auto",
        *(["--loss", a.loss] if a.loss else []))
    ckpts = sorted((os.path.join(ckdir, f) for f in os.listdir(ckdir) if f.endswith(".safetensors")),
                   key=os.path.getmtime)
    if not ckpts:
        sys.exit(f"train: no checkpoint in {ckdir}")
    shutil.copyfile(ckpts[-1], a.model + ".tmp")
    os.replace(a.model + ".tmp", a.model)
    print(f"train: model -> {a.model}", file=sys.stderr)


def cmd_extract(a):
    """Per-cell features (the discriminator's representation) of every crop: `cytogan extract`."""
    run("extract", "--model", a.model, "--manifest", a.crops, "--out", a.out)


def cmd_profile(a):
    """Per-well profiles: the mean of each well's cell features (`cytogan profile aggregate`)."""
    run("profile", "aggregate", "--input", a.cells, "--output", a.out, "--by", "Metadata_Plate", "Metadata_Well",
        "--join", "Metadata_Batch")


def cmd_score(a):
    """MOA matching on a wells table (`cytogan profile moa`: normalize per plate to DMSO,
    aggregate treatments, 1-NN by cosine leaving each compound out): NSC, NSCB, per-compound
    accuracy (CytoGAN's Table 1) and mAP, printed and written to --out."""
    out = run("profile", "moa", "--wells", a.wells, "--batch-column", a.batch_column, capture=True)
    report = json.loads(out)
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            json.dump(report, f, indent=1)
        os.replace(a.out + ".tmp", a.out)
    summary = {k: report.get(k) for k in ("nsc", "nscb", "per_compound", "map")}
    print(json.dumps(summary, indent=1))


def cmd_evaluate(a):
    """How much biology single-cell features carry without MOA labels: DMSO vs treatment
    classification, well nearest neighbours, dose response (`cytogan profile evaluate-crops`)."""
    print(run("profile", "evaluate-crops", "--features", a.cells, capture=True))


def cmd_baseline(a):
    """The published CellProfiler per-well profiles (Ljosa et al. 2013) as a wells table in the
    layout `score` takes (metadata from BBBC021_v1_image.csv and the MOA table): the baseline that
    CytoGAN's Table 1 compares with."""
    import pandas as pd
    prof = pd.read_csv(a.profiles)
    img = pd.read_csv(os.path.join(a.metadata, "BBBC021_v1_image.csv"))
    wells = img.groupby(["Image_Metadata_Plate_DAPI", "Image_Metadata_Well_DAPI"], as_index=False).agg(
        Metadata_Compound=("Image_Metadata_Compound", "first"),
        Metadata_Concentration=("Image_Metadata_Concentration", "first"))
    wells = wells.rename(columns={"Image_Metadata_Plate_DAPI": "Metadata_Plate", "Image_Metadata_Well_DAPI": "Metadata_Well"})
    moa = pd.read_csv(os.path.join(a.metadata, "BBBC021_v1_moa.csv")).rename(
        columns={"compound": "Metadata_Compound", "concentration": "Metadata_Concentration", "moa": "Metadata_MOA"})
    wells = wells.merge(moa, on=["Metadata_Compound", "Metadata_Concentration"], how="left")
    wells["Metadata_Batch"] = wells["Metadata_Plate"].str.split("_").str[0]
    prof = prof.rename(columns={"Image_Metadata_Plate": "Metadata_Plate", "Image_Metadata_Well": "Metadata_Well"})
    t = wells.merge(prof, on=["Metadata_Plate", "Metadata_Well"], how="inner")
    keep = (t["Metadata_Compound"] == "DMSO") | t["Metadata_MOA"].notna()
    t = t[keep].copy()
    t["Metadata_MOA"] = t["Metadata_MOA"].fillna("")
    feats = [c for c in t.columns if not c.startswith("Metadata_")]
    t = t[[c for c in t.columns if c.startswith("Metadata_")] + feats]
    t.to_csv(a.out + ".tmp", index=False)
    os.replace(a.out + ".tmp", a.out)
    print(f"baseline: {len(t)} wells, {len(feats)} CellProfiler features -> {a.out}", file=sys.stderr)


def cmd_all(a):
    w = a.work
    os.makedirs(w, exist_ok=True)
    steps = [
        (cmd_download, dict(data=a.data, plates=a.plates)),
        (cmd_fields, dict(data=a.data, plates=a.plates, out=f"{w}/fields.csv", require_files=True)),
        (cmd_segment, dict(fields=f"{w}/fields.csv", out=w, crop_size=a.crop_size, mask=False, min_area=60,
                           max_area=5000, max_per_field=a.max_per_field)),
        (cmd_train, dict(crops=f"{w}/crops.csv", model=f"{w}/model.safetensors", preset=a.preset, steps=a.steps,
                         batch_size=64, seed=0, loss=None)),
        (cmd_extract, dict(model=f"{w}/model.safetensors", crops=f"{w}/crops.csv", out=f"{w}/cells.csv")),
        (cmd_profile, dict(cells=f"{w}/cells.csv", out=f"{w}/wells.csv")),
        (cmd_score, dict(wells=f"{w}/wells.csv", out=f"{w}/scores.json", batch_column="Metadata_Batch")),
        (cmd_baseline, dict(profiles=f"{a.data}/profiles/ljosa2013_per_well_mean.csv.gz",
                            metadata=f"{a.data}/metadata", out=f"{w}/cellprofiler_wells.csv")),
        (cmd_score, dict(wells=f"{w}/cellprofiler_wells.csv", out=f"{w}/cellprofiler_scores.json",
                         batch_column="Metadata_Batch")),
    ]
    for fn, kw in steps:
        print(f"== {fn.__name__[4:]}", file=sys.stderr)
        fn(argparse.Namespace(**kw))


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, fn, **kw):
        p = sub.add_parser(name, help=fn.__doc__.split(".")[0] if fn.__doc__ else None, **kw)
        p.set_defaults(fn=fn)
        return p

    p = add("download", cmd_download)
    p.add_argument("--data", required=True)
    p.add_argument("--plates", nargs="*", help="plates to download (default: all 55)")
    p = add("fields", cmd_fields)
    p.add_argument("--data", required=True, help="folder with metadata/ and images/")
    p.add_argument("--plates", nargs="*")
    p.add_argument("--out", required=True)
    p.add_argument("--require-files", action=argparse.BooleanOptionalAction, default=True,
                   help="keep only fields whose three files exist (default on)")
    p = add("segment", cmd_segment)
    p.add_argument("--fields", required=True)
    p.add_argument("--out", required=True, help="folder for crops/ and crops.csv")
    p.add_argument("--crop-size", type=int, default=96)
    p.add_argument("--mask", action="store_true", help="zero the pixels of other objects and background")
    p.add_argument("--min-area", type=int, default=60)
    p.add_argument("--max-area", type=int, default=5000)
    p.add_argument("--max-per-field", type=int, default=0, help="at most this many crops per field (0: all)")
    p = add("train", cmd_train)
    p.add_argument("--crops", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--preset", default="paper-96")
    p.add_argument("--loss", help="lsgan, dcgan or wgangp (default: the preset's)")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p = add("extract", cmd_extract)
    p.add_argument("--model", required=True)
    p.add_argument("--crops", required=True)
    p.add_argument("--out", required=True)
    p = add("profile", cmd_profile)
    p.add_argument("--cells", required=True)
    p.add_argument("--out", required=True)
    p = add("score", cmd_score)
    p.add_argument("--wells", required=True)
    p.add_argument("--out")
    p.add_argument("--batch-column", default="Metadata_Batch")
    p = add("evaluate", cmd_evaluate)
    p.add_argument("--cells", required=True)
    p = add("baseline", cmd_baseline)
    p.add_argument("--profiles", required=True)
    p.add_argument("--metadata", required=True)
    p.add_argument("--out", required=True)
    p = add("all", cmd_all)
    p.add_argument("--data", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--plates", nargs="*", help="default: all 55 plates (about 40 GB of zips)")
    p.add_argument("--preset", default="paper-96")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--crop-size", type=int, default=96)
    p.add_argument("--max-per-field", type=int, default=0)
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    a.fn(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
