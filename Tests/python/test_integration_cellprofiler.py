"""integrations/cellprofiler: the MeasureObjectCytoGAN plugin.

1. Its crop cutting (cytogan_client.arrays) against the worker's own (`cytogan image prepare`), the
   centres against SciPy, its TIFF writer against tifffile and the worker's decoder.
2. The module run on a fake minimal CellProfiler workspace (stand-in classes for cellprofiler_core),
   both ways of cutting, against the worker's features for the same crops asked directly; its
   checks before a run; a failing image set.
3. CellProfiler 5 itself (the venv install-headless.sh makes; scripts/python-tests.sh installs it):
   the shipped example pipeline saved through CellProfiler, reloaded and run by the plain
   `cellprofiler -c -r` command on ExampleHuman (8-bit) and ExampleSpeckles (16-bit), both ways of
   cutting, with a model that has a dataset scale; per-object features against `cytogan extract`
   on the same centres. Old (revision 1) saved settings upgrade; validation refuses bad settings.
"""
import json
import os
import pathlib
import subprocess
import sys
import time
import types

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from test_integration_support import (BIN, INTEGRATIONS, ROOT, cytogan_client, require, small_model)  # noqa: F401
from cytogan_client import arrays

PLUGIN_DIR = INTEGRATIONS / "cellprofiler" / "plugins"


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

    class ValidationError(Exception):
        def __init__(self, message, setting):
            super().__init__(message)
            self.setting = setting

    mods = {
        "cellprofiler_core": {},
        "cellprofiler_core.constants": {},
        "cellprofiler_core.constants.measurement": {"COLTYPE_FLOAT": "float"},
        "cellprofiler_core.module": {"Module": Module},
        "cellprofiler_core.setting": {"Binary": Setting, "Divider": Setting, "ValidationError": ValidationError},
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
    """As CellProfiler gives a 16-bit image: pixels divided by 65535, `scale` 65535."""
    def __init__(self, path):
        self.pixel_data = tifffile.imread(path).astype(np.float32) / 65535.0
        self.scale = 65535.0
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


def scaled_model(path, channels, scale, seed=3):
    """A cells-64 checkpoint (untrained) whose preprocessing divides each channel by a fixed dataset
    scale, in the files' intensity units: crops handed over in CellProfiler's 0-1 units would reach
    it almost black."""
    with cytogan_client.Worker.start(BIN, threads=2) as w:
        info = w.model_create("cells-64", seed=seed, config={
            "architecture": {"channels": channels},
            "preprocessing": {"normalization": {"kind": "fixed_scale", "scale": [float(s) for s in scale]}}})
        w.model_save(path)
    return path, info


@pytest.fixture(scope="module")
def scale_model(tmp_path_factory):
    require("model/create", "model/save")
    return scaled_model(tmp_path_factory.mktemp("scaled") / "scaled.safetensors", 3, [200, 180, 220])


def module_with(plugin, model, mode, images, size=0, mask=True, batch=16):
    module = plugin.MeasureObjectCytoGAN()
    module.objects_name.value = "Nuclei"
    module.images_list.value = list(images)
    module.model_path.value = str(model)
    module.binary.value = BIN
    module.cut_mode.value = mode
    module.crop_size.value = size
    module.use_mask.value = mask
    module.batch_size.value = batch
    module.threads.value = 2
    return module


def test_module_on_a_fake_workspace_matches_the_worker(plugin, stardist, small_model, scale_model, tmp_path):
    require("model/load", "features/extract")
    img_path, mask_path, img, labels = stardist
    # Three channels: the nuclei image, a derived one (its square root), the nuclei again.
    second = tmp_path / "sqrt.tif"
    arrays.write_tiff(second, np.sqrt(img.astype(np.float64)).astype(np.uint16) * 200)
    images = {"DNA": FakeImage(img_path), "Other": FakeImage(second)}
    centres = arrays.object_centres(labels)
    ids = [i for i in range(1, labels.max() + 1) if np.isfinite(centres[i - 1]).all()]
    missing = [i for i in range(1, labels.max() + 1) if i not in ids]
    # The per-crop-max model (scale-free) and one with a fixed dataset scale (file units).
    for model in (small_model, scale_model[0]):
        with cytogan_client.Worker.start(BIN, threads=2) as w:
            info = w.model_load(model)
            assert info["config"]["architecture"]["channels"] == 3
            size = info["config"]["preprocessing"].get("crop_size") or info["config"]["architecture"]["size"]
            crops = [cytogan_client.crop_field([str(img_path), str(second), str(img_path)], centre=tuple(centres[i - 1]),
                                               mask=str(mask_path), label=i) for i in ids]
            r = w.features_extract(crops, batch_size=16)  # the module's batches below: equal to the bit
        ref = np.array(r["features"], dtype=np.float32)
        assert r["names"] == info["featureNames"] and all(n.startswith("Cytogan_") for n in r["names"])
        for mode in (plugin.CUT_WORKER, plugin.CUT_HERE):
            module = module_with(plugin, model, mode, ["DNA", "Other", "DNA"], size)
            assert [c[1] for c in module.get_measurement_columns(None)] == r["names"]
            ws = FakeWorkspace(images, labels)
            module.run(ws)
            got = np.stack([ws.measurements.values[("Nuclei", n)] for n in r["names"]], axis=1)
            assert got.shape == (labels.max(), len(r["names"]))
            assert np.isnan(got[np.array(missing) - 1]).all()
            # Cut here, the 0-1 pixels go back to the files' 16-bit units: the very same crops.
            np.testing.assert_array_equal(got[np.array(ids) - 1], ref, err_msg=f"{model.name} {mode}")
    plugin.close_workers()


def test_original_units_undo_cellprofilers_scaling(plugin):
    rng = np.random.default_rng(1)
    raw8 = rng.integers(0, 256, (2, 5, 6)).astype(np.uint8)
    raw16 = rng.integers(0, 4096, (2, 5, 6)).astype(np.uint16)
    fixed = {"kind": "fixed_scale", "scale": [2100.0, 2100.0]}
    # As CellProfiler loads them: float32 divided by the scale (255; 65535 or the maximum sample value).
    for raw, scale in ((raw8, 255.0), (raw16, 65535.0), (raw16, 4095.0)):
        pixels = [(c.astype(np.float64) / scale).astype(np.float32) for c in raw]
        back = plugin.original_units(pixels, [scale, scale], fixed)
        assert back.dtype == raw.dtype
        np.testing.assert_array_equal(back, raw)
    # A processed image (not whole numbers any more) comes back as float32 in file units...
    smooth = [(c.astype(np.float64) / 255 * 0.37).astype(np.float32) for c in raw8]
    back = plugin.original_units(smooth, [255.0, 255.0], fixed)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, np.stack(smooth).astype(np.float64) * 255, rtol=1e-6)
    # ... except for a bit-depth model without bits, which reads a float crop as 0-1.
    back = plugin.original_units(smooth, [255.0, 255.0], {"kind": "bit_depth"})
    np.testing.assert_array_equal(back, np.stack(smooth))
    with pytest.raises(ValueError, match="H2AX.*no intensity scale"):
        plugin.original_units(smooth, [255.0, None], fixed, ["DNA", "H2AX"])


def test_module_refuses_bad_settings_before_the_run(plugin, scale_model, tmp_path):
    model = scale_model[0]
    module = module_with(plugin, model, plugin.CUT_HERE, ["DNA", "PH3", "cellbody"])
    module.validate_module(None)  # three images for a three-channel model, binary and model exist
    module.images_list.value = ["DNA", "PH3"]
    with pytest.raises(Exception, match=r"model takes 3 channel\(s\) but 2 image\(s\)") as e:
        module.validate_module(None)
    assert e.value.setting is module.images_list
    module.images_list.value = ["DNA", "PH3", "cellbody"]
    module.model_path.value = str(tmp_path / "absent.safetensors")
    with pytest.raises(Exception, match="No model checkpoint at .*absent.safetensors") as e:
        module.validate_module(None)
    assert e.value.setting is module.model_path
    not_a_model = tmp_path / "notes.safetensors"
    not_a_model.write_bytes(b"hello")
    module.model_path.value = str(not_a_model)
    with pytest.raises(Exception, match="Cannot read the model checkpoint.*notes.safetensors"):
        module.validate_module(None)
    module.model_path.value = str(model)
    module.binary.value = str(tmp_path / "no-cytogan")
    with pytest.raises(Exception, match="No executable cytogan binary at .*no-cytogan") as e:
        module.validate_module(None)
    assert e.value.setting is module.binary
    module.binary.value = ""
    env = dict(os.environ)
    try:
        os.environ["CYTOGAN_BIN"] = str(tmp_path / "gone")
        with pytest.raises(Exception, match=r"\$CYTOGAN_BIN names .*gone"):
            module.validate_module(None)
        os.environ.pop("CYTOGAN_BIN")
        os.environ["PATH"] = str(tmp_path)
        with pytest.raises(Exception, match="No cytogan binary"):
            module.validate_module(None)
        os.environ["PATH"] = os.path.dirname(BIN) + os.pathsep + env.get("PATH", "")
        module.validate_module(None)
    finally:
        os.environ.clear()
        os.environ.update(env)


def test_a_failing_image_set_gets_nan_and_the_next_one_its_features(plugin, stardist, scale_model, caplog):
    require("model/load", "features/extract")
    img_path, _, _, labels = stardist
    model, info = scale_model
    module = module_with(plugin, model, plugin.CUT_WORKER, ["DNA", "DNA", "DNA"], mask=False)
    broken = FakeImage(img_path)
    broken.file_name = ""  # an image made inside the pipeline: the worker has no file to cut from
    ws = FakeWorkspace({"DNA": broken}, labels)
    with caplog.at_level("ERROR"):
        module.run(ws)  # logs, does not raise: the run goes on
    assert "was not loaded from a file" in caplog.text
    names = info["featureNames"]
    bad = np.stack([ws.measurements.values[("Nuclei", n)] for n in names], axis=1)
    assert bad.shape == (labels.max(), len(names)) and np.isnan(bad).all()
    ws = FakeWorkspace({"DNA": FakeImage(img_path)}, labels)
    module.run(ws)
    good = np.stack([ws.measurements.values[("Nuclei", n)] for n in names], axis=1)
    present = np.isfinite(arrays.object_centres(labels)).all(axis=1)
    assert np.isfinite(good[present]).all() and np.isnan(good[~present]).all()
    plugin.close_workers()


# ------------------------------------------------------------------ CellProfiler itself

CP_VENV = pathlib.Path(os.environ.get("CYTOGAN_CP_VENV") or ROOT / ".venv-cp")
EXAMPLE = INTEGRATIONS / "cellprofiler" / "examples" / "ExampleHumanCytoGAN.cppipe"


@pytest.fixture(scope="module")
def cp_venv():
    """The headless CellProfiler venv; a skip saying why when it could not be made."""
    why = os.environ.get("CYTOGAN_CP_UNAVAILABLE")
    if why:
        pytest.skip(f"headless CellProfiler is not installed: {why}")
    py = CP_VENV / "bin" / "python"
    if not py.exists():
        pytest.skip(f"no CellProfiler venv at {CP_VENV}: run integrations/cellprofiler/install-headless.sh "
                    "(scripts/python-tests.sh does it when the package registry is reachable)")
    p = subprocess.run([str(py), "-c", "import cellprofiler_core, cellprofiler.modules, cytogan_client"],
                       capture_output=True, text=True)
    assert p.returncode == 0, f"the venv at {CP_VENV} lacks CellProfiler or cytogan_client: {p.stderr[-600:]}"
    return CP_VENV


# Run in CellProfiler's Python: loads pipelines as the GUI's File > Import does, applies setting
# values, validates, saves (Pipeline.dump, what File > Save writes), reloads the saved file, and
# prints the plugin's settings and validation outcomes as JSON.
CP_EDIT = r"""
import json, sys
spec = json.load(open(sys.argv[1]))
from cellprofiler_core.preferences import set_headless, set_plugin_directory
set_headless()
set_plugin_directory(spec["plugins"], globally=False)
from cellprofiler_core.utilities.core.modules import fill_modules
fill_modules()
from cellprofiler_core.pipeline import Pipeline
from cellprofiler_core.setting import ValidationError

def load(path):
    p = Pipeline()
    p.load(path)
    return p, next(m for m in p.modules() if m.module_name == "MeasureObjectCytoGAN")

out = []
for job in spec["jobs"]:
    p, m = load(job["load"])
    r = {"loaded": [s.value_text for s in m.settings()], "revision": m.variable_revision_number}
    for k, v in job.get("set", {}).items():
        next(s for s in m.settings() if s.text == k).value = v
    if job.get("validate"):
        try:
            m.validate_module(p)
            r["error"] = None
        except ValidationError as e:
            r["error"] = [e.message, e.get_setting().text]
    if job.get("save"):
        with open(job["save"], "w") as f:
            p.dump(f)
        r["reloaded"] = [s.value_text for s in load(job["save"])[1].settings()]
    out.append(r)
print("CP_EDIT " + json.dumps(out))
"""


def cp_edit(venv, tmp_path, jobs, env=None):
    spec = tmp_path / "edit.json"
    spec.write_text(json.dumps({"plugins": str(PLUGIN_DIR), "jobs": jobs}))
    script = tmp_path / "cp_edit.py"
    script.write_text(CP_EDIT)
    p = subprocess.run([str(venv / "bin" / "python"), str(script), str(spec)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(l for l in p.stdout.splitlines() if l.startswith("CP_EDIT "))
    return json.loads(line[len("CP_EDIT "):])


def run_cellprofiler(venv, pipeline, images, out, env):
    """The plain command line a user runs: `cellprofiler -c -r` with the ImageIO reader (no Java)."""
    t0 = time.monotonic()
    p = subprocess.run([str(venv / "bin" / "cellprofiler"), "-c", "-r", "-p", str(pipeline), "-i", str(images),
                        "-o", str(out), "--plugins-directory", str(PLUGIN_DIR), "-e", "imageio_reader", "-L", "ERROR"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "Traceback" not in p.stderr, p.stderr[-4000:]
    return pd.read_csv(out / "Nuclei.csv"), time.monotonic() - t0


def settings_env(binary_setting):
    """The environment of a run whose binary setting is `binary_setting`: an explicit path (no
    $CYTOGAN_BIN, cytogan not on PATH), "$CYTOGAN_BIN", or "PATH"."""
    env = {k: v for k, v in os.environ.items() if k not in ("CYTOGAN_BIN", "CYTOGAN_MODEL", "CYTOGAN_THREADS")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not os.path.isfile(os.path.join(p, "cytogan")))
    env["CYTOGAN_THREADS"] = "2"
    if binary_setting == "$CYTOGAN_BIN":
        env["CYTOGAN_BIN"] = BIN
    elif binary_setting == "PATH":
        bindir = pathlib.Path(env.get("TMPDIR", "/tmp")) / f"cytogan-path-{os.getpid()}"
        bindir.mkdir(exist_ok=True)
        link = bindir / "cytogan"
        if not link.exists():
            link.symlink_to(BIN)
        env["PATH"] = str(bindir) + os.pathsep + env["PATH"]
    return env


def extract_reference(tmp_path, model, fields, table):
    """`cytogan extract` on windows around CellProfiler's own object centres, joined back to the
    object table by the key columns extract carries (ImageNumber, ObjectNumber)."""
    man = tmp_path / "centres.csv"
    cols = [f"Channel{i}" for i in range(len(fields))]
    m = table[["ImageNumber", "ObjectNumber", "Location_Center_X", "Location_Center_Y"]].copy()
    for c, f in zip(cols, fields):
        m[c] = str(f)
    m.to_csv(man, index=False)
    out = tmp_path / "extract.csv"
    subprocess.run([BIN, "extract", "--model", str(model), "--manifest", str(man), "--channel-columns", ",".join(cols),
                    "--centre-columns", "Location_Center_X,Location_Center_Y", "--out", str(out), "--threads", "2"],
                   check=True, capture_output=True)
    ref = pd.read_csv(out)
    assert list(ref.columns[:4]) == ["ImageNumber", "ObjectNumber", "Location_Center_X", "Location_Center_Y"]
    return ref


def agreement(got, ref, names):
    """Largest per-object difference of each feature, as a fraction of that feature's spread
    (standard deviation) between objects, over the features that vary."""
    a = got.set_index(["ImageNumber", "ObjectNumber"]).loc[:, names].to_numpy(np.float64)
    b = ref.set_index(["ImageNumber", "ObjectNumber"]).loc[got.set_index(["ImageNumber", "ObjectNumber"]).index, names]
    b = b.to_numpy(np.float64)
    spread = b.std(axis=0)
    varying = spread > 0
    return float((np.abs(a - b)[:, varying] / spread[varying]).max()), int(varying.sum())


def check_measurements(table, names, count=None):
    """One row per object, the model's features as CytoGAN columns, finite and varying."""
    feat = [c for c in table.columns if c.startswith("Cytogan_")]
    assert sorted(feat) == sorted(names)
    if count is not None:
        assert len(table) == count
    x = table[names].to_numpy(np.float64)
    assert np.isfinite(x).all()
    assert (x.std(axis=0) > 0).mean() > 0.9, "the features barely vary between objects"


def speckles_pipeline(tmp_path):
    """The example pipeline for ExampleSpeckles' two 16-bit channels: nuclei from the Hoechst
    image, CytoGAN on Hoechst and H2AX."""
    text = EXAMPLE.read_text()
    text = text.replace('file does contain "d0.tif"', 'file does contain "hoe"')
    text = text.replace('file does contain "d1.tif"', 'file does contain "h2ax"')
    text = text.replace("Name to assign these images:PH3", "Name to assign these images:H2AX")
    third = text.index('    Select the rule criteria:and (file does contain "d2.tif")')
    end = text.index("Maximum intensity:255.0\n", third) + len("Maximum intensity:255.0\n")
    text = text[:third] + text[end:]
    text = text.replace("Assignments count:3", "Assignments count:2")
    text = text.replace("Select the channel images, in the model's channel order:DNA, PH3, cellbody",
                        "Select the channel images, in the model's channel order:DNA, H2AX")
    path = tmp_path / "ExampleSpecklesCytoGAN.cppipe"
    path.write_text(text)
    return path


MODES = {"here": "Here, from the images in the pipeline", "worker": "By the worker, from the image files"}
BIN_SETTING = "Path of the cytogan binary (empty for $CYTOGAN_BIN or PATH)"


@pytest.mark.parametrize("dataset", ["ExampleHuman", "ExampleSpeckles"])
def test_saved_example_pipeline_runs_in_cellprofiler_and_matches_extract(cp_venv, shared_data, dataset, tmp_path):
    require("model/create", "features/extract")
    images = shared_data / "fields" / dataset
    if dataset == "ExampleHuman":
        source = EXAMPLE
        fields = [images / f"AS_09125_050116030001_D03f00d{i}.tif" for i in range(3)]
        scale, count = [200, 180, 220], 290
    else:
        source = speckles_pipeline(tmp_path)
        fields = [images / "1-162hrhoe2.tif", images / "1-162hrh2ax2.tif"]
        scale, count = [2400, 4095], None
    model, info = scaled_model(tmp_path / "model.safetensors", len(fields), scale)
    names = info["featureNames"]
    # Each run: a way of cutting, masks or not, and one way of finding the binary; the settings
    # are saved through CellProfiler and the saved file is what `cellprofiler -c -r` runs.
    runs = {"here": ("here", "No", BIN), "worker": ("worker", "No", "$CYTOGAN_BIN")}
    if dataset == "ExampleHuman":
        runs.update({"here-masked": ("here", "Yes", "PATH"), "worker-masked": ("worker", "Yes", BIN)})
    jobs = []
    for name, (mode, mask, binary) in runs.items():
        values = {"Model checkpoint (.safetensors)": str(model), BIN_SETTING: binary if binary == BIN else "",
                  "Where are the crops cut?": MODES[mode], "Mask each crop to its object?": mask}
        jobs.append({"load": str(source), "set": values, "save": str(tmp_path / f"{name}.cppipe"), "validate": True})
    edits = cp_edit(cp_venv, tmp_path, jobs, env=settings_env("$CYTOGAN_BIN"))
    tables = {}
    for (name, (mode, mask, binary)), r in zip(runs.items(), edits):
        assert r["error"] is None, r["error"]
        assert r["reloaded"][2] == str(model) and r["reloaded"][3] == (binary if binary == BIN else "")
        assert r["reloaded"][4] == MODES[mode] and r["reloaded"][6] == mask and r["reloaded"][8] == "0"
        out = tmp_path / f"out-{name}"
        out.mkdir()
        tables[name], secs = run_cellprofiler(cp_venv, tmp_path / f"{name}.cppipe", images, out, settings_env(binary))
        check_measurements(tables[name], names, count)
        print(f"{dataset} {name}: {len(tables[name])} objects in {secs:.1f} s")
    ref = extract_reference(tmp_path, model, fields, tables["here"])
    assert [c for c in ref.columns if c.startswith("Cytogan_")] == names
    for name in ("here", "worker"):
        worst, varying = agreement(tables[name], ref, names)
        print(f"{dataset} {name} vs cytogan extract: worst difference {worst:.3g} of the spread ({varying} features)")
        assert worst <= 0.01, f"{dataset}, cut {name}: {worst:.3g} of the spread between objects"
    if "here-masked" in tables:
        worst, _ = agreement(tables["here-masked"], tables["worker-masked"], names)
        print(f"{dataset} masked, here vs worker: worst difference {worst:.3g} of the spread")
        assert worst <= 0.01
        assert agreement(tables["here-masked"], ref, names)[0] > 0.01  # masks change the crops: not vacuous


def test_revision_1_settings_upgrade_and_validation_refuses_bad_ones(cp_venv, tmp_path, shared_data):
    require("model/create")
    model, _ = scaled_model(tmp_path / "model.safetensors", 3, [200, 200, 200])
    # The module as revision 1 saved it: labels with colons. As shipped (never saved again), and
    # after a load and a save, which wrote each label's tail again in front of the value.
    text = EXAMPLE.read_text()
    block = text[text.index("MeasureObjectCytoGAN:[module_num"):]
    head = block.splitlines()[0].replace("variable_revision_number:2", "variable_revision_number:1")
    shipped = [head, "    Select the objects to measure:Nuclei",
               "    Select the channel images, in the model's channel order:DNA, PH3, cellbody",
               "    Model checkpoint (.safetensors):model.safetensors",
               "    cytogan binary (empty: $CYTOGAN_BIN or PATH):",
               "    Where are the crops cut?:Here, from the images in the pipeline",
               "    Crop size in pixels (0: the model's input size):0",
               "    Mask each crop to its object?:Yes", "    Crops per batch:64"]
    resaved = list(shipped)
    resaved[4] = "    cytogan binary (empty: $CYTOGAN_BIN or PATH): $CYTOGAN_BIN or PATH): $CYTOGAN_BIN or PATH):/opt/cg/cytogan"
    resaved[6] = "    Crop size in pixels (0: the model's crop size): the model's crop size):48"
    rev1, plain = tmp_path / "rev1.cppipe", tmp_path / "rev1-plain.cppipe"
    cut = text[:text.index("MeasureObjectCytoGAN:[module_num")]
    # The other modules stay (ExportToSpreadsheet after it): only the plugin's block changes.
    rest = block[block.index("\n\n") + 2:] if "\n\n" in block else ""
    rev1.write_text(cut + "\n".join(resaved) + "\n\n" + rest)
    plain.write_text(cut + "\n".join(shipped) + "\n\n" + rest)
    jobs = [{"load": str(rev1)}, {"load": str(plain)},
            {"load": str(EXAMPLE), "set": {"Model checkpoint (.safetensors)": str(model)}, "validate": True},
            {"load": str(EXAMPLE), "set": {"Model checkpoint (.safetensors)": str(tmp_path / "none.safetensors")},
             "validate": True},
            {"load": str(EXAMPLE), "set": {"Model checkpoint (.safetensors)": str(model),
                                           "Select the channel images, in the model's channel order": "DNA, PH3"},
             "validate": True},
            {"load": str(EXAMPLE), "set": {"Model checkpoint (.safetensors)": str(model),
                                           BIN_SETTING: str(tmp_path / "nowhere" / "cytogan")}, "validate": True}]
    r = cp_edit(cp_venv, tmp_path, jobs, env=settings_env("$CYTOGAN_BIN"))
    assert r[0]["loaded"][3:6] == ["/opt/cg/cytogan", MODES["here"], "48"] and r[0]["loaded"][8] == "0"
    assert r[1]["loaded"][3] == "" and r[1]["loaded"][5] == "0" and len(r[1]["loaded"]) == 9
    assert r[0]["revision"] == r[1]["revision"] == 2
    assert r[2]["error"] is None
    assert r[3]["error"][1] == "Model checkpoint (.safetensors)" and "none.safetensors" in r[3]["error"][0]
    assert r[4]["error"][1].startswith("Select the channel images") and "3 channel(s) but 2 image(s)" in r[4]["error"][0]
    assert r[5]["error"][1] == BIN_SETTING and "nowhere" in r[5]["error"][0]
