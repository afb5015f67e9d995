"""
MeasureObjectCytoGAN
====================

**MeasureObjectCytoGAN** measures each object of a segmentation with a CytoGAN discriminator:
a square crop around the object's centre, from the chosen channel images (in the model's channel
order), goes through a cytogan worker (`cytogan serve`), and the discriminator's representation
layer is stored as per-object measurements ``CytoGAN_0`` ... ``CytoGAN_{d-1}``.

The crops are cut either here, from the images as they are in the pipeline (after any
illumination correction or other processing upstream), or by the worker from the image files on
disk (the fields as loaded by NamesAndTypes). Either way each crop is a window of *crop size*
pixels centred on the object's centre (the mean of its pixel coordinates, as
Location_Center_X/Y), zero outside the image, and optionally masked to the object (other objects'
and background pixels set to 0). *Crop size* 0 means the model's own (its preprocessing crop
size, else its input size); the worker always cuts that size. The worker then normalizes each crop as the model says (CytoGAN: each
channel divided by its maximum, mapped to [-1, 1]) and resizes it to the model's input size.

Needs the ``cytogan_client`` package (integrations/python of cytogan) in CellProfiler's Python,
and the ``cytogan`` binary (the setting, $CYTOGAN_BIN, or on PATH). One worker process is kept per
(binary, model) for the whole run.

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

-  *CytoGAN_0 ... CytoGAN_{d-1}*: the discriminator's representation of the object's crop (d is
   the model's feature dimension, 100 for the paper's representation layer). An
   object whose crop could not be made (no pixels) gets NaN.
"""
import atexit
import os
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

C_CYTOGAN = "CytoGAN"
CUT_HERE = "Here, from the images in the pipeline"
CUT_WORKER = "By the worker, from the image files"

_pool = {}
_pool_lock = threading.Lock()


def worker_for(binary, model):
    """The worker serving `model` (started on first use, kept for the run): (Worker, ModelInfo)."""
    key = (binary or "", os.path.abspath(model))
    with _pool_lock:
        entry = _pool.get(key)
        if entry is not None and entry[0].connection.alive:
            return entry
        w = cytogan_client.Worker.start(binary or None, client_name="cellprofiler-measureobjectcytogan")
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


def measure_objects(worker, info, labels, channels=None, field_paths=None, crop_size=0, use_mask=True,
                    batch_size=64, tmpdir=None):
    """The GAN features of objects 1..N of `labels`: a float32 (N, d) array, NaN rows for objects
    without pixels. Crops are cut here from `channels` ((H, W) arrays in model channel order), or,
    with `field_paths` (one file per channel), by the worker from those files."""
    labels = np.asarray(labels)
    count = int(labels.max()) if labels.size else 0
    dim = int(info["featureDim"])
    out = np.full((count, dim), np.nan, dtype=np.float32)
    if count == 0:
        return out
    cfg = info["config"]
    model_crop = int(cfg.get("preprocessing", {}).get("crop_size") or cfg["architecture"]["size"])
    size = int(crop_size) or model_crop
    if field_paths is not None and size != model_crop:
        raise ValueError(f"the worker cuts windows of the model's crop size ({model_crop} pixels): set the crop "
                         f"size to 0 or {model_crop}, or cut the crops here")
    centres = arrays.object_centres(labels, count)
    present = [i for i in range(count) if np.isfinite(centres[i]).all()]
    if not present:
        return out
    with tempfile.TemporaryDirectory(prefix="cytogan-cp-", dir=tmpdir) as d:
        crops = []
        if field_paths is None:
            stack = np.stack([np.asarray(c, dtype=np.float32) for c in channels])
            for i in present:
                crop = arrays.cut(stack, centres[i], size, labels if use_mask else None, i + 1)
                crops.append(cytogan_client.crop_file(arrays.write_tiff(os.path.join(d, f"object-{i + 1}.tif"), crop)))
        else:
            mask = None
            if use_mask:
                dtype = np.uint16 if count < 65536 else np.float32
                mask = arrays.write_tiff(os.path.join(d, "labels.tif"), labels.astype(dtype))
            for i in present:
                crops.append(cytogan_client.crop_field(list(field_paths), centre=tuple(centres[i]), mask=mask,
                                                       label=(i + 1) if use_mask else None))
        feats = worker.extract(crops, output="numpy", batch_size=batch_size)
    out[present] = feats
    return out


class MeasureObjectCytoGAN(Module):
    module_name = "MeasureObjectCytoGAN"
    category = "Measurement"
    variable_revision_number = 1

    def create_settings(self):
        self.objects_name = LabelSubscriber(
            "Select the objects to measure", "None",
            doc="The objects (e.g. nuclei) whose crops are measured; each crop is centred on its object.")
        self.images_list = ImageListSubscriber(
            "Select the channel images, in the model's channel order", [],
            doc="One grayscale image per model channel (BBBC021 / CytoGAN: DNA, tubulin, actin).")
        self.divider = Divider()
        self.model_path = Text(
            "Model checkpoint (.safetensors)", "",
            doc="A cytogan checkpoint (written by `cytogan train` or the worker's model/save).")
        self.binary = Text(
            "cytogan binary (empty: $CYTOGAN_BIN or PATH)", "",
            doc="Path of the cytogan executable that serves the model.")
        self.cut_mode = Choice(
            "Where are the crops cut?", [CUT_HERE, CUT_WORKER],
            doc=f"*{CUT_HERE}*: from the images as they are at this point of the pipeline. "
                f"*{CUT_WORKER}*: the worker reads the image files named by NamesAndTypes (unprocessed).")
        self.crop_size = Integer(
            "Crop size in pixels (0: the model's crop size)", 0, minval=0,
            doc="Side of the square window cut around each object's centre (the worker resizes it to the "
                "model's input). When the worker cuts, it is the model's crop size.")
        self.use_mask = Binary(
            "Mask each crop to its object?", True,
            doc="Set pixels that do not belong to the object (background, neighbours) to 0.")
        self.batch_size = Integer("Crops per batch", 64, minval=1, maxval=1024)

    def settings(self):
        return [self.objects_name, self.images_list, self.model_path, self.binary, self.cut_mode, self.crop_size,
                self.use_mask, self.batch_size]

    def visible_settings(self):
        return [self.objects_name, self.images_list, self.divider, self.model_path, self.binary, self.cut_mode,
                self.crop_size, self.use_mask, self.batch_size]

    def validate_module(self, pipeline):
        if not self.images_list.value:
            raise ValidationError("Select at least one channel image", self.images_list)
        if not self.model_path.value:
            raise ValidationError("Give the model checkpoint (.safetensors)", self.model_path)
        if not os.path.isfile(self.model_path.value):
            raise ValidationError(f"No model checkpoint at {self.model_path.value}", self.model_path)

    def _worker(self):
        return worker_for(self.binary.value.strip() or None, self.model_path.value)

    def feature_dim(self):
        """The model's feature dimension (asks the worker; 0 when the model cannot be loaded)."""
        if not self.model_path.value or not os.path.isfile(self.model_path.value):
            return 0
        try:
            return int(self._worker()[1]["featureDim"])
        except Exception:  # noqa: BLE001 - reported by validate/run; columns stay empty meanwhile
            return 0

    def get_measurement_columns(self, pipeline):
        name = self.objects_name.value
        return [(name, f"{C_CYTOGAN}_{j}", COLTYPE_FLOAT) for j in range(self.feature_dim())]

    def get_categories(self, pipeline, object_name):
        return [C_CYTOGAN] if object_name == self.objects_name.value else []

    def get_measurements(self, pipeline, object_name, category):
        if object_name == self.objects_name.value and category == C_CYTOGAN:
            return [str(j) for j in range(self.feature_dim())]
        return []

    def run(self, workspace):
        objects = workspace.object_set.get_objects(self.objects_name.value)
        labels = objects.segmented
        worker, info = self._worker()
        field_paths = channels = None
        if self.cut_mode.value == CUT_WORKER:
            field_paths = []
            for name in self.images_list.value:
                image = workspace.image_set.get_image(name)
                if not image.file_name:
                    raise ValueError(f"image {name} was not loaded from a file: choose '{CUT_HERE}'")
                field_paths.append(os.path.join(image.path_name, image.file_name))
        else:
            channels = [workspace.image_set.get_image(name, must_be_grayscale=True).pixel_data
                        for name in self.images_list.value]
        feats = measure_objects(worker, info, labels, channels=channels, field_paths=field_paths,
                                crop_size=self.crop_size.value, use_mask=self.use_mask.value,
                                batch_size=self.batch_size.value)
        m = workspace.measurements
        for j in range(feats.shape[1]):
            m.add_measurement(self.objects_name.value, f"{C_CYTOGAN}_{j}", feats[:, j].astype(np.float64))
        if self.show_window:
            workspace.display_data.statistics = [[self.objects_name.value, str(feats.shape[0]), str(feats.shape[1])]]

    def display(self, workspace, figure):
        figure.set_subplots((1, 1))
        figure.subplot_table(0, 0, workspace.display_data.statistics, col_labels=["Objects", "Count", "Features"])

    def volumetric(self):
        return False
