"""Runs a CellProfiler pipeline headless, in this Python (CellProfiler 5 / cellprofiler-core), with
the MeasureObjectCytoGAN plugin, and writes one object's measurements to a CSV.

    python run_headless.py --pipeline ExampleHumanCytoGAN.cppipe \
        --images ../shared/data/fields/ExampleHuman --objects Nuclei \
        --model model.safetensors --out nuclei.csv

Without Java, CellProfiler's Bio-Formats reader cannot start (it fetches its jars with Maven at
run time), so only the ImageIO reader is enabled here: TIFF and PNG read fine without it.
`--model`, `--binary`, `--cut-mode` and `--crop-size` override the plugin's settings in the
pipeline file, so one pipeline serves any checkpoint.
"""
import argparse
import csv
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_ready = None


def setup(plugins):
    """Headless CellProfiler with only the ImageIO reader and the plugins of `plugins`, once per
    process (loading the modules again would lose the plugins)."""
    global _ready
    plugins = os.path.abspath(plugins)
    if _ready is not None:
        if _ready != plugins:
            raise RuntimeError(f"CellProfiler is already set up with plugins from {_ready}")
        return
    from cellprofiler_core.preferences import set_awt_headless, set_headless, set_plugin_directory
    set_headless()
    set_awt_headless(True)
    set_plugin_directory(plugins, globally=False)
    from cellprofiler_core.reader import fill_readers, filter_active_readers
    fill_readers(check_config=False)
    filter_active_readers(["imageio_reader"])
    from cellprofiler_core.utilities.core.modules import fill_modules
    fill_modules()
    _ready = plugins


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--images", required=True, help="folder of the images (every file in it is offered)")
    ap.add_argument("--objects", default="Nuclei", help="objects whose measurements to write")
    ap.add_argument("--out", required=True, help="CSV: ImageNumber, ObjectNumber, then the objects' measurements")
    ap.add_argument("--plugins", default=os.path.join(HERE, "plugins"), help="plugin folder (default: plugins/ beside this script)")
    ap.add_argument("--model", help="override MeasureObjectCytoGAN's model checkpoint")
    ap.add_argument("--binary", help="override MeasureObjectCytoGAN's cytogan binary")
    ap.add_argument("--cut-mode", choices=["here", "worker"], help="override where crops are cut")
    ap.add_argument("--crop-size", type=int, help="override the crop size")
    ap.add_argument("--no-mask", action="store_true", help="do not mask crops to their object")
    args = ap.parse_args(argv)
    t0 = time.time()

    setup(args.plugins)
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    pipeline.load(args.pipeline)
    with open(args.pipeline, encoding="utf-8", errors="replace") as f:
        named = sum(1 for line in f if re.match(r"^[A-Za-z0-9_]+:\[module_num:", line))
    if len(pipeline.modules()) != named:
        print(f"run_headless: {args.pipeline} names {named} modules but {len(pipeline.modules())} loaded "
              "(a module or plugin is missing; see the log above)", file=sys.stderr)
        return 1
    for module in pipeline.modules():
        if module.module_name == "MeasureObjectCytoGAN":
            import measureobjectcytogan as plugin
            if args.model:
                module.model_path.value = os.path.abspath(args.model)
            if args.binary:
                module.binary.value = os.path.abspath(args.binary)
            if args.cut_mode:
                module.cut_mode.value = plugin.CUT_HERE if args.cut_mode == "here" else plugin.CUT_WORKER
            if args.crop_size is not None:
                module.crop_size.value = args.crop_size
            if args.no_mask:
                module.use_mask.value = False
    failures = []

    def on_event(caller, event):  # a module that raises cancels the run; remember why
        if type(event).__name__ in ("RunException", "PrepareRunException", "PostRunException"):
            failures.append(f"{getattr(event.module, 'module_name', '?')}: {event.error!r}")

    pipeline.add_listener(on_event)
    images = os.path.abspath(args.images)
    pipeline.add_pathnames_to_file_list(
        [os.path.join(images, f) for f in sorted(os.listdir(images)) if os.path.isfile(os.path.join(images, f))])
    measurements = pipeline.run()
    if measurements is None or failures:
        print(f"run_headless: the pipeline failed: {'; '.join(failures) or 'see the log above'}", file=sys.stderr)
        return 1
    names = [f for f in measurements.get_feature_names(args.objects) if f not in ("ImageNumber", "ObjectNumber")]
    if not names:
        print(f"run_headless: no measurements of objects {args.objects!r}", file=sys.stderr)
        return 1
    names.sort(key=lambda f: (not f.startswith("Location_"), f.split("_")[0],
                              int(f.split("_")[-1]) if f.split("_")[-1].isdigit() else -1, f))
    rows = 0
    tmp = args.out + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageNumber", "ObjectNumber"] + names)
        for image_number in measurements.get_image_numbers():
            cols = [measurements.get_measurement(args.objects, n, image_number) for n in names]
            count = len(cols[0]) if cols else 0
            for i in range(count):
                w.writerow([image_number, i + 1] + [repr(float(c[i])) for c in cols])
                rows += 1
    os.replace(tmp, args.out)
    print(f"run_headless: {rows} {args.objects} objects, {len(names)} measurements -> {args.out} "
          f"({time.time() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
