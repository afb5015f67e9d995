"""
MeasureObjectCytoGAN
====================

**MeasureObjectCytoGAN** measures each object of a segmentation with a CytoGAN discriminator:
a square crop around the object's centre, from the chosen channel images (in the model's channel
order), goes through a cytogan worker (`cytogan serve`), and the discriminator's features are
stored as per-object measurements named as the worker names them: ``Cytogan_<layer>_<i>`` (for
example ``Cytogan_pool_lrelu0_0``), the same names as ``cytogan extract`` and the Python client.

The crops are cut either here, from the images as they are in the pipeline (after any
illumination correction or other processing upstream), or by the worker from the image files on
disk (the fields as loaded by NamesAndTypes). Either way each crop is a window of *crop size*
pixels centred on the object's centre (the mean of its pixel coordinates, as
Location_Center_X/Y), zero outside the image, and optionally masked to the object (other objects'
and background pixels set to 0). *Crop size* 0 means the model's own (its preprocessing crop
size, else its input size); the worker always cuts that size.

CellProfiler scales pixels to 0-1 when it loads them; crops cut here are put back into the
image's original intensity units (CellProfiler's scale for the image: 255 for 8-bit files, 65535
or the file's maximum sample value for 16-bit ones) and, when they are still whole numbers, into
the file's sample type, so the model normalizes them exactly as it does crops the worker cuts from
the files (a model with a dataset scale, for example, divides by a scale in file units).

Needs the ``cytogan_client`` package (integrations/python of cytogan) in CellProfiler's Python,
and the ``cytogan`` binary (the setting, $CYTOGAN_BIN, or on PATH). One worker process is kept per
(binary, model, threads) for the whole run; its threads default to the cores divided among
CellProfiler's analysis workers.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

-  *Cytogan_<layer>_<i>*: the discriminator's features of the object's crop (as many as the
   model gives). An object whose crop could not be made (no pixels, or the worker could not read
   it) gets NaN; so do all objects of an image set whose measurement failed (the error is logged
   and the other image sets keep their measurements).
"""
import atexit
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import threading

import numpy as np
from cellprofiler_core.constants.measurement import COLTYPE_FLOAT
from cellprofiler_core.module import Module
from cellprofiler_core.setting import Binary, Divider, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.subscriber import ImageListSubscriber, LabelSubscriber
from cellprofiler_core.setting.text import Integer, Text

import cytogan_client
from cytogan_client import arrays

LOGGER = logging.getLogger(__name__)

C_CYTOGAN = cytogan_client.FEATURE_PREFIX.rstrip("_")  # "Cytogan": the measurements' category
CUT_HERE = "Here, from the images in the pipeline"
CUT_WORKER = "By the worker, from the image files"

_pool = {}
_pool_lock = threading.Lock()


def analysis_workers():
    """How many CellProfiler processes run this pipeline at once: its analysis workers when this
    is one of them (GUI runs, batch workers), else 1 (`cellprofiler -c -r` runs in one process)."""
    if not any(a.startswith("--work-server") for a in sys.argv):
        return 1
    try:
        from cellprofiler_core.preferences import get_max_workers
        return max(1, int(get_max_workers()))
    except Exception:  # noqa: BLE001 - an older CellProfiler: assume one
        return 1


def thread_budget(setting=0):
    """The worker's threads: the setting when above 0, else $CYTOGAN_THREADS, else the cores
    divided among CellProfiler's analysis workers."""
    if setting and int(setting) > 0:
        return int(setting)
    return cytogan_client.default_threads(workers=analysis_workers())


def worker_for(binary, model, threads=None):
    """The worker serving `model` (started on first use, kept for the run): (Worker, ModelInfo)."""
    threads = thread_budget(threads or 0)
    key = (binary or "", os.path.abspath(model), threads)
    with _pool_lock:
        entry = _pool.get(key)
        if entry is not None and entry[0].connection.alive:
            return entry
        w = cytogan_client.Worker.start(binary or None, threads=threads, client_name="cellprofiler-measureobjectcytogan")
        try:
            info = w.model_load(model)
        except Exception:
            w.close()
            raise
        _pool[key] = (w, info)
        return _pool[key]


@atexit.register
def close_workers():
    with _pool_lock:
        for w, _ in _pool.values():
            try:
                w.close(timeout=30)
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
        _pool.clear()


def checkpoint_config(path):
    """The model's config (GANConfig JSON) from a checkpoint's safetensors header, without starting
    a worker. Raises ValueError naming the file when it is not a cytogan checkpoint."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > 100 << 20:
            raise ValueError(f"{path}: not a safetensors file (header length {n})")
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.get("__metadata__") or {}
    if "config" not in meta:
        raise ValueError(f"{path}: a safetensors file without a cytogan config (not a cytogan checkpoint)")
    return json.loads(meta["config"])


def resolve_binary(setting):
    """The cytogan executable the module will start: the setting, $CYTOGAN_BIN, or `cytogan` on
    PATH. Raises ValueError saying which one is missing."""
    if setting:
        if not (os.path.isfile(setting) and os.access(setting, os.X_OK)):
            raise ValueError(f"No executable cytogan binary at {setting}")
        return setting
    env = os.environ.get("CYTOGAN_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise ValueError(f"$CYTOGAN_BIN names {env}, which is not an executable file")
        return env
    found = shutil.which("cytogan")
    if not found:
        raise ValueError("No cytogan binary: set this setting, $CYTOGAN_BIN, or put cytogan on PATH")
    return found


def resolve_model(setting):
    """The checkpoint path: the setting (empty: $CYTOGAN_MODEL); a relative path is looked up in
    the current folder, then CellProfiler's Default Input and Output folders. Returns the first
    existing file, else the setting as given (validation reports it)."""
    path = (setting or "").strip() or os.environ.get("CYTOGAN_MODEL", "")
    if not path or os.path.isabs(path):
        return path
    candidates = [os.path.abspath(path)]
    try:
        from cellprofiler_core.preferences import get_default_image_directory, get_default_output_directory
        candidates += [os.path.join(d, path) for d in (get_default_image_directory(), get_default_output_directory()) if d]
    except Exception:  # noqa: BLE001 - outside CellProfiler
        pass
    return next((c for c in candidates if os.path.isfile(c)), path)


def original_units(channels, scales, normalization, names=None):
    """The pipeline's channel images ((H, W) arrays scaled 0-1 by CellProfiler) back in the image
    files' units: a (C, H, W) array. Whole numbers (unprocessed images) come back in the file's
    sample type (uint8 for a scale up to 255, else uint16), so the worker normalizes them exactly as
    the files; processed images as float32 in the files' units. A model normalizing by bit depth
    without a bit count reads a float crop as 0-1: it gets CellProfiler's 0-1 values."""
    names = names or [f"channel {i}" for i in range(len(channels))]
    kind = (normalization or {}).get("kind", "per_crop_max")
    scale_free = kind in ("per_crop_max", "percentile")
    stack = np.stack([np.asarray(c, dtype=np.float64) for c in channels])
    if any(s is None for s in scales):
        missing = [n for n, s in zip(names, scales) if s is None]
        if not scale_free:
            raise ValueError(f"image {', '.join(missing)} has no intensity scale (not derived from a loaded image "
                             f"file), which the model's {kind} normalization needs: cut the crops by the worker")
        scales = [1.0 if s is None else s for s in scales]
    units = stack * np.asarray(scales, dtype=np.float64)[:, None, None]
    rounded = np.rint(units)
    top = max(scales)
    if np.all(np.abs(units - rounded) <= 0.02) and rounded.min() >= 0 and top <= 65535:
        return rounded.astype(np.uint8 if top <= 255 else np.uint16)
    if kind == "bit_depth" and normalization.get("bits") is None:
        return stack.astype(np.float32)
    return units.astype(np.float32)


def measure_objects(worker, info, labels, channels=None, field_paths=None, crop_size=0, use_mask=True,
                    batch_size=64, tmpdir=None, scales=None, channel_names=None):
    """The GAN features of objects 1..N of `labels`: a float32 (N, d) array, NaN rows for objects
    without pixels or whose crop failed, and the list of per-object errors (`object` = label).
    Crops are cut here from `channels` ((H, W) arrays in model channel order, CellProfiler's 0-1
    pixels with their `scales`; scales None: already in the files' units), or, with `field_paths`
    (one file per channel), by the worker from those files."""
    labels = np.asarray(labels)
    count = int(labels.max()) if labels.size else 0
    dim = int(info["featureDim"])
    out = np.full((count, dim), np.nan, dtype=np.float32)
    if count == 0:
        return out, []
    cfg = info["config"]
    pre = cfg.get("preprocessing", {})
    model_crop = int(pre.get("crop_size") or cfg["architecture"]["size"])
    size = int(crop_size) or model_crop
    if field_paths is not None and size != model_crop:
        raise ValueError(f"the worker cuts windows of the model's crop size ({model_crop} pixels): set the crop "
                         f"size to 0 or {model_crop}, or cut the crops here")
    centres = arrays.object_centres(labels, count)
    present = [i for i in range(count) if np.isfinite(centres[i]).all()]
    if not present:
        return out, []
    with tempfile.TemporaryDirectory(prefix="cytogan-cp-", dir=tmpdir) as d:
        crops = []
        if field_paths is None:
            if scales is None:
                stack = np.stack([np.asarray(c, dtype=np.float32) for c in channels])
            else:
                stack = original_units(channels, scales, pre.get("normalization"), channel_names)
            for i in present:
                crop = arrays.cut(stack, centres[i], size, labels if use_mask else None, i + 1).astype(stack.dtype)
                crops.append(cytogan_client.crop_file(arrays.write_tiff(os.path.join(d, f"object-{i + 1}.tif"), crop),
                                                      id=i + 1))
        else:
            mask = None
            if use_mask:
                dtype = np.uint16 if count < 65536 else np.float32
                mask = arrays.write_tiff(os.path.join(d, "labels.tif"), labels.astype(dtype))
            for i in present:
                crops.append(cytogan_client.crop_field(list(field_paths), centre=tuple(centres[i]), mask=mask,
                                                       label=(i + 1) if use_mask else None, id=i + 1))
        r = worker.features_extract(crops, batch_size=batch_size, on_error="skip")
    errors = []
    for i, v in zip(present, r["features"]):
        if v is not None:
            out[i] = v
    for e in r.get("errors") or []:
        errors.append({"object": present[e["index"]] + 1, "message": e.get("message", "")})
    return out, errors


class MeasureObjectCytoGAN(Module):
    module_name = "MeasureObjectCytoGAN"
    category = "Measurement"
    # 2: setting labels without colons (CellProfiler splits each saved setting line at its first
    # colon) and the worker's thread budget.
    variable_revision_number = 2

    def create_settings(self):
        self.objects_name = LabelSubscriber(
            "Select the objects to measure", "None",
            doc="The objects (e.g. nuclei) whose crops are measured; each crop is centred on its object.")
        self.images_list = ImageListSubscriber(
            "Select the channel images, in the model's channel order", [],
            doc="One grayscale image per model channel (BBBC021 / CytoGAN: DNA, tubulin, actin). Their number "
                "must be the model's channel count.")
        self.divider = Divider()
        self.model_path = Text(
            "Model checkpoint (.safetensors)", "",
            doc="A cytogan checkpoint (written by `cytogan train` or the worker's model/save). A relative path is "
                "looked up in the current folder, then the Default Input and Output folders; empty means "
                "$CYTOGAN_MODEL.")
        self.binary = Text(
            "Path of the cytogan binary (empty for $CYTOGAN_BIN or PATH)", "",
            doc="The cytogan executable that serves the model. Leave empty to use $CYTOGAN_BIN, else `cytogan` "
                "on PATH.")
        self.cut_mode = Choice(
            "Where are the crops cut?", [CUT_HERE, CUT_WORKER],
            doc=f"*{CUT_HERE}*: from the images as they are at this point of the pipeline, put back into the "
                f"image files' intensity units. *{CUT_WORKER}*: the worker reads the image files named by "
                f"NamesAndTypes (unprocessed). Both give the model the same crops for unprocessed images.")
        self.crop_size = Integer(
            "Crop size in pixels (0 for the model's crop size)", 0, minval=0,
            doc="Side of the square window cut around each object's centre (the worker resizes it to the "
                "model's input). When the worker cuts, it is the model's crop size.")
        self.use_mask = Binary(
            "Mask each crop to its object?", False,
            doc="Set pixels that do not belong to the object (background, neighbours) to 0. Off by default: "
                "models trained by `cytogan train` on centred crops saw them unmasked.")
        self.batch_size = Integer("Crops per batch", 64, minval=1, maxval=1024)
        self.threads = Integer(
            "Threads of the cytogan worker (0 for automatic)", 0, minval=0,
            doc="Computing threads of the cytogan worker this CellProfiler process starts. 0: $CYTOGAN_THREADS "
                "if set, else the cores divided among CellProfiler's analysis workers, so that n workers on n "
                "cores run n threads in all.")

    def settings(self):
        return [self.objects_name, self.images_list, self.model_path, self.binary, self.cut_mode, self.crop_size,
                self.use_mask, self.batch_size, self.threads]

    def visible_settings(self):
        return [self.objects_name, self.images_list, self.divider, self.model_path, self.binary, self.cut_mode,
                self.crop_size, self.use_mask, self.batch_size, self.threads]

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        if variable_revision_number == 1:
            # Revision 1's labels "cytogan binary (empty: $CYTOGAN_BIN or PATH)" and "Crop size in
            # pixels (0: the model's crop size)" had colons: a saved line was split there, so the
            # value read back starts with the label's tail (" $CYTOGAN_BIN or PATH):"), once per
            # save. Strip those tails; the order of the settings is unchanged; threads are new.
            values = list(setting_values)
            for k in (3, 5):
                v = values[k]
                while "):" in v and v.startswith(" "):
                    v = v.split("):", 1)[1]
                values[k] = v.strip()
            values[5] = values[5] or "0"
            setting_values = values + ["0"]
            variable_revision_number = 2
        return setting_values, variable_revision_number

    def validate_module(self, pipeline):
        if not self.images_list.value:
            raise ValidationError("Select at least one channel image", self.images_list)
        model = resolve_model(self.model_path.value)
        if not model:
            raise ValidationError("Give the model checkpoint (.safetensors), or set $CYTOGAN_MODEL", self.model_path)
        if not os.path.isfile(model):
            raise ValidationError(f"No model checkpoint at {model}", self.model_path)
        try:
            config = checkpoint_config(model)
        except (OSError, ValueError) as e:
            raise ValidationError(f"Cannot read the model checkpoint: {e}", self.model_path)
        channels = int(config.get("preprocessing", {}).get("channels") or config["architecture"]["channels"])
        chosen = len(self.images_list.value)
        if chosen != channels:
            raise ValidationError(f"The model takes {channels} channel(s) but {chosen} image(s) are selected "
                                  f"({', '.join(self.images_list.value)})", self.images_list)
        try:
            resolve_binary(self.binary.value.strip())
        except ValueError as e:
            raise ValidationError(str(e), self.binary)

    def _worker(self):
        return worker_for(self.binary.value.strip() or None, resolve_model(self.model_path.value), self.threads.value)

    def feature_names(self):
        """The worker's names of the model's features ([] when the model cannot be loaded)."""
        model = resolve_model(self.model_path.value)
        if not model or not os.path.isfile(model):
            return []
        try:
            return cytogan_client.feature_names(self._worker()[1])
        except Exception:  # noqa: BLE001 - reported by validate/run; columns stay empty meanwhile
            LOGGER.warning("MeasureObjectCytoGAN: cannot load %s to name its features", model, exc_info=True)
            return []

    def get_measurement_columns(self, pipeline):
        name = self.objects_name.value
        return [(name, f, COLTYPE_FLOAT) for f in self.feature_names()]

    def get_categories(self, pipeline, object_name):
        return [C_CYTOGAN] if object_name == self.objects_name.value else []

    def get_measurements(self, pipeline, object_name, category):
        if object_name == self.objects_name.value and category == C_CYTOGAN:
            return [f[len(C_CYTOGAN) + 1:] for f in self.feature_names()]
        return []

    def run(self, workspace):
        objects = workspace.object_set.get_objects(self.objects_name.value)
        labels = objects.segmented
        count = int(labels.max()) if labels.size else 0
        names = self.feature_names()
        errors = []
        try:
            worker, info = self._worker()
            names = cytogan_client.feature_names(info)
            field_paths = channels = scales = None
            if self.cut_mode.value == CUT_WORKER:
                field_paths = []
                for name in self.images_list.value:
                    image = workspace.image_set.get_image(name)
                    if not image.file_name:
                        raise ValueError(f"image {name} was not loaded from a file: choose '{CUT_HERE}'")
                    field_paths.append(os.path.join(image.path_name, image.file_name))
            else:
                images = [workspace.image_set.get_image(name, must_be_grayscale=True) for name in self.images_list.value]
                channels = [im.pixel_data for im in images]
                scales = [getattr(im, "scale", None) for im in images]
            feats, errors = measure_objects(worker, info, labels, channels=channels, field_paths=field_paths,
                                            crop_size=self.crop_size.value, use_mask=self.use_mask.value,
                                            batch_size=self.batch_size.value, scales=scales,
                                            channel_names=list(self.images_list.value))
        except Exception as e:  # noqa: BLE001 - one image set's failure must not end the run
            number = getattr(workspace.measurements, "image_set_number", "?")
            LOGGER.error("MeasureObjectCytoGAN: image set %s: no features for its %d %s: %s", number, count,
                         self.objects_name.value, e, exc_info=True)
            feats = np.full((count, len(names)), np.nan, dtype=np.float32)
            errors = [{"object": None, "message": str(e)}]
        for err in errors:
            if err["object"] is not None:
                LOGGER.warning("MeasureObjectCytoGAN: %s %d: %s", self.objects_name.value, err["object"], err["message"])
        m = workspace.measurements
        for j, name in enumerate(names):
            m.add_measurement(self.objects_name.value, name, feats[:, j].astype(np.float64))
        if self.show_window:
            workspace.display_data.statistics = [[self.objects_name.value, str(count), str(len(names)),
                                                  str(len(errors))]]

    def display(self, workspace, figure):
        figure.set_subplots((1, 1))
        figure.subplot_table(0, 0, workspace.display_data.statistics,
                             col_labels=["Objects", "Count", "Features", "Failures"])

    def volumetric(self):
        return False
