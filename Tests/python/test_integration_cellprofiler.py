"""integrations/cellprofiler: the MeasureObjectCytoGAN plugin.

1. Its crop cutting (cytogan_client.arrays) against the worker's own (`cytogan image prepare`), the
   centres against SciPy, its TIFF writer against tifffile and the worker's decoder.
2. The module run on a fake minimal CellProfiler workspace (stand-in classes for cellprofiler_core),
   both ways of cutting, against the worker's features for the same crops asked directly.
3. CellProfiler 5 itself, headless, on ExampleHuman: a pipeline segments nuclei and runs the
   plugin; the measurements match the worker's features for the same crops. Needs the venv made
   by integrations/cellprofiler/install-headless.sh (skipped with a message when absent).
"""
import csv
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from test_integration_support import (BIN, INTEGRATIONS, ROOT, cytogan_client, require, small_model)  # noqa: F401
from cytogan_client import arrays

PLUGIN_DIR = INTEGRATIONS / "cellprofiler" / "plugins"
CP_VENV = ROOT / ".venv-cp"


@pytest.fixture(scope="module")
def stardist(shared_data):
    d = shared_data / "fields" / "stardist"
    return d / "img2d.tif", d / "mask2d.tif", tifffile.imread(d / "img2d.tif"), tifffile.imread(d / "mask2d.tif")


def prepare(tmp_path, *args):
    out = tmp_path / "p.npy"
    subprocess.run([BIN, "image", "prepare", *map(str, args), "--npy", str(out)], check=True, capture_output=True)
    return np.load(out)


def test_centres_match_scipy_centre_of_mass(stardist):
    _, _, _, labels = stardist
    ids = [i for i in np.unique(labels) if i]
    ours = arrays.object_centres(labels)
    ref = ndi.center_of_mass(np.ones_like(labels), labels, ids)
    np.testing.assert_allclose(ours[np.array(ids) - 1], np.array(ref)[:, ::-1], rtol=1e-12)
    assert np.isnan(ours[[i - 1 for i in range(1, labels.max() + 1) if i not in ids]]).all()


def test_windows_and_masks_match_the_workers_cutting(stardist, tmp_path):
    img_path, mask_path, img, labels = stardist
    centres = arrays.object_centres(labels)
    ids = [i for i in np.unique(labels) if i]
    # Objects near each border (zero padding) and in the middle.
    picks = {ids[int(np.argmin(centres[np.array(ids) - 1, k] * s))] for k in (0, 1) for s in (1, -1)} | {ids[len(ids) // 2]}
    for label in sorted(picks):
        c = centres[label - 1]
        for size in (48, 31):
            got = arrays.per_crop_max_normalize(arrays.cut([img], c, size, labels, label))
            ref = prepare(tmp_path, img_path, "--size", size, "--centre", f"{c[0]},{c[1]}", "--crop-size", size,
                          "--mask", mask_path, "--label", label)[0]
            np.testing.assert_allclose(got, ref, atol=2e-7, err_msg=f"label {label} size {size}")
            raw = arrays.per_crop_max_normalize(arrays.cut([img], c, size))
            ref = prepare(tmp_path, img_path, "--size", size, "--centre", f"{c[0]},{c[1]}", "--crop-size", size)[0]
            np.testing.assert_allclose(raw, ref, atol=2e-7)
    assert arrays.round_half_away(2.5) == 3 and arrays.round_half_away(-2.5) == -3 and arrays.window((10.5, 3.49), 8) == (7, -1)
    with pytest.raises(ValueError, match="outside"):
        arrays.cut([img], (600, 5), 16)


def test_tiff_writer_reads_back_in_tifffile_and_the_worker(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((3, 20, 30)).astype(np.float32)
    for a in (x, (x * 250).astype(np.uint8), (x * 60000).astype(np.uint16), x[0]):
        p = arrays.write_tiff(tmp_path / "a.tif", a)
        back = tifffile.imread(p)
        np.testing.assert_array_equal(np.moveaxis(back, -1, 0) if back.ndim == 3 else back, a)
        subprocess.run([BIN, "image", "dump", p, "--npy", str(tmp_path / "d.npy")], check=True, capture_output=True)
        d = np.load(tmp_path / "d.npy")
        d = np.moveaxis(d, -1, 0) if d.ndim == 3 and a.ndim == 3 else d.reshape(a.shape)
        np.testing.assert_array_equal(d, a)


# ------------------------------------------------------------------ the module on a fake workspace

def fake_cellprofiler_core():
    """Just enough of cellprofiler_core for the plugin module to import and run."""
    class Setting:
        def __init__(self, text="", value=None, *a, **k):
            self.text, self.value = text, value

    class Choice(Setting):
        def __init__(self, text, choices, *a, **k):
            super().__init__(text, choices[0])

    class Module:
        show_window = False

        def __init__(self):
            self.create_settings()

    mods = {
        "cellprofiler_core": {},
        "cellprofiler_core.constants": {},
        "cellprofiler_core.constants.measurement": {"COLTYPE_FLOAT": "float"},
        "cellprofiler_core.module": {"Module": Module},
        "cellprofiler_core.setting": {"Binary": Setting, "Divider": Setting, "ValidationError": ValueError},
        "cellprofiler_core.setting.choice": {"Choice": Choice},
        "cellprofiler_core.setting.subscriber": {"ImageListSubscriber": Setting, "LabelSubscriber": Setting},
        "cellprofiler_core.setting.text": {"Integer": Setting, "Text": Setting},
    }
    saved = {name: sys.modules.get(name) for name in mods}
    for name, attrs in mods.items():
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
    return saved


class FakeImage:
    def __init__(self, path):
        self.pixel_data = tifffile.imread(path).astype(np.float32) / 65535.0
        self.path_name, self.file_name = os.path.split(str(path))


class FakeWorkspace:
    def __init__(self, images, labels):
        self.image_set = types.SimpleNamespace(get_image=lambda name, must_be_grayscale=False: images[name])
        self.object_set = types.SimpleNamespace(get_objects=lambda name: types.SimpleNamespace(segmented=labels))
        self.measurements = types.SimpleNamespace(values={})
        self.measurements.add_measurement = lambda obj, name, v: self.measurements.values.__setitem__((obj, name), v)
        self.display_data = types.SimpleNamespace()


@pytest.fixture(scope="module")
def plugin():
    saved = fake_cellprofiler_core()
    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        import measureobjectcytogan
        yield measureobjectcytogan
    finally:
        sys.path.remove(str(PLUGIN_DIR))
        sys.modules.pop("measureobjectcytogan", None)
        for name, m in saved.items():
            if m is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = m


def test_module_on_a_fake_workspace_matches_the_worker(plugin, stardist, small_model, tmp_path):
    require("model/load", "features/extract")
    img_path, mask_path, img, labels = stardist
    # Three channels: the nuclei image, a derived one (its square root), the nuclei again.
    second = tmp_path / "sqrt.tif"
    arrays.write_tiff(second, np.sqrt(img.astype(np.float64)).astype(np.uint16) * 200)
    images = {"DNA": FakeImage(img_path), "Other": FakeImage(second)}
    with cytogan_client.Worker.start(BIN) as w:
        info = w.model_load(small_model)
        assert info["config"]["architecture"]["channels"] == 3
        size = info["config"]["preprocessing"].get("crop_size") or info["config"]["architecture"]["size"]
        centres = arrays.object_centres(labels)
        ids = [i for i in range(1, labels.max() + 1) if np.isfinite(centres[i - 1]).all()]
        crops = [cytogan_client.crop_field([str(img_path), str(second), str(img_path)], centre=tuple(centres[i - 1]),
                                           mask=str(mask_path), label=i) for i in ids]
        ref = w.extract(crops, output="numpy", batch_size=16)  # the module's batches below: equal to the bit
    dim = info["featureDim"]
    for mode in (plugin.CUT_WORKER, plugin.CUT_HERE):
        module = plugin.MeasureObjectCytoGAN()
        module.objects_name.value = "Nuclei"
        module.images_list.value = ["DNA", "Other", "DNA"]
        module.model_path.value = str(small_model)
        module.binary.value = BIN
        module.cut_mode.value = mode
        module.crop_size.value = size
        module.use_mask.value = True
        module.batch_size.value = 16
        assert [c[1] for c in module.get_measurement_columns(None)] == [f"CytoGAN_{j}" for j in range(dim)]
        ws = FakeWorkspace(images, labels)
        module.run(ws)
        got = np.stack([ws.measurements.values[("Nuclei", f"CytoGAN_{j}")] for j in range(dim)], axis=1)
        assert got.shape == (labels.max(), dim)
        missing = [i for i in range(1, labels.max() + 1) if i not in ids]
        assert np.isnan(got[np.array(missing) - 1]).all()
        if mode == plugin.CUT_WORKER:
            np.testing.assert_array_equal(got[np.array(ids) - 1], ref)
        else:  # cut here from pixel data scaled to [0, 1]: the same up to float rounding of the scaling
            np.testing.assert_allclose(got[np.array(ids) - 1], ref, rtol=1e-4, atol=1e-7)
    plugin.close_workers()


# ------------------------------------------------------------------ CellProfiler itself

def cp_python():
    py = CP_VENV / "bin" / "python"
    if not py.exists():
        pytest.skip(f"CellProfiler venv not found at {CP_VENV}: run integrations/cellprofiler/install-headless.sh "
                    "(about 5 minutes; CellProfiler 5 nightly wheels from PyPI) to run this test")
    p = subprocess.run([str(py), "-c", "import cellprofiler_core, cellprofiler.modules, cytogan_client"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"the venv at {CP_VENV} lacks CellProfiler or cytogan_client: {p.stderr.strip()[-300:]}")
    return py


DRIVER = """
import sys
sys.path.insert(0, {runner!r})
import run_headless
for mode, out in (("worker", {out_worker!r}), ("here", {out_here!r})):
    rc = run_headless.main(["--pipeline", {pipeline!r}, "--images", {images!r}, "--objects", "Nuclei",
                            "--model", {model!r}, "--binary", {binary!r}, "--cut-mode", mode, "--no-mask",
                            "--out", out])
    assert rc == 0, rc
"""


def test_cellprofiler_pipeline_on_example_human_matches_the_worker(shared_data, small_model, tmp_path):
    require("model/load", "features/extract")
    py = cp_python()
    images = shared_data / "fields" / "ExampleHuman"
    outs = {m: tmp_path / f"nuclei-{m}.csv" for m in ("worker", "here")}
    script = DRIVER.format(runner=str(INTEGRATIONS / "cellprofiler"), out_worker=str(outs["worker"]),
                           out_here=str(outs["here"]), pipeline=str(INTEGRATIONS / "cellprofiler" / "examples" /
                                                                    "ExampleHumanCytoGAN.cppipe"),
                           images=str(images), model=str(small_model), binary=BIN)
    p = subprocess.run([str(py), "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    rows = {m: list(csv.DictReader(open(outs[m]))) for m in outs}
    assert len(rows["worker"]) == len(rows["here"]) > 100  # ExampleHuman has a few hundred nuclei
    r0 = rows["worker"][0]
    feat = [k for k in r0 if k.startswith("CytoGAN_")]
    # The same crops asked of the worker directly: windows around CellProfiler's own object centres.
    fields = [str(images / f"AS_09125_050116030001_D03f00d{i}.tif") for i in range(3)]
    with cytogan_client.Worker.start(BIN) as w:
        w.model_load(small_model)
        crops = [cytogan_client.crop_field(fields, centre=(float(r["Location_Center_X"]), float(r["Location_Center_Y"])))
                 for r in rows["worker"]]
        ref = w.extract(crops, output="numpy")
    got_worker = np.array([[float(r[k]) for k in feat] for r in rows["worker"]], dtype=np.float32)
    got_here = np.array([[float(r[k]) for k in feat] for r in rows["here"]], dtype=np.float32)
    np.testing.assert_array_equal(got_worker, ref)
    np.testing.assert_allclose(got_here, ref, rtol=1e-4, atol=1e-7)
