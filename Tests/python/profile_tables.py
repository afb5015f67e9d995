"""Feature tables several Python checks share. No tests here."""
import numpy as np
import pandas as pd

CONTROL = "DMSO"
META = ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration",
        "Metadata_MOA", "Metadata_Batch"]


def ljosa_wells(shared_data):
    """The Ljosa 2013 per-well means of BBBC021 joined with the image metadata and the MOAs, in the
    layout `cytogan profile moa` takes: META (controls without a MOA, the batch from the plate
    name), then the 516 CellProfiler features, one row per well."""
    d = shared_data / "bbbc021"
    prof = pd.read_csv(d / "profiles" / "ljosa2013_per_well_mean.csv.gz")
    image = pd.read_csv(d / "metadata" / "BBBC021_v1_image.csv")
    moa = pd.read_csv(d / "metadata" / "BBBC021_v1_moa.csv")
    wells = image[["Image_Metadata_Plate_DAPI", "Image_Metadata_Well_DAPI", "Image_Metadata_Compound",
                   "Image_Metadata_Concentration"]].drop_duplicates()
    wells.columns = ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration"]
    assert not wells.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    prof = prof.rename(columns={"Image_Metadata_Plate": "Metadata_Plate", "Image_Metadata_Well": "Metadata_Well"})
    df = prof.merge(wells, on=["Metadata_Plate", "Metadata_Well"], how="left", validate="one_to_one")
    assert df.Metadata_Compound.notna().all()
    moa = moa.rename(columns={"compound": "Metadata_Compound", "concentration": "Metadata_Concentration",
                              "moa": "Metadata_MOA"})
    df = df.merge(moa, on=["Metadata_Compound", "Metadata_Concentration"], how="left").copy()  # one block, not fragments
    df.loc[df.Metadata_Compound == CONTROL, "Metadata_MOA"] = np.nan
    df["Metadata_Batch"] = df.Metadata_Plate.str.split("_").str[0]
    feats = [c for c in prof.columns if not c.startswith("Metadata_")]
    df = pd.concat([df[META], df[feats]], axis=1)
    assert len(df) == 632 and len(feats) == 516
    return df
