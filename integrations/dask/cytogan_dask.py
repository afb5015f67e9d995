"""Batch feature extraction sharded over a Dask cluster: each Dask worker process drives its own
`cytogan serve` (through cytogan_client) with the same model, shards of the crop list go to
whichever worker is free, and the results come back in the crops' order — bit for bit the
features one process extracting the whole list gives.

Bit for bit needs care: the engine's matrix products round the last bit of a crop's features
differently depending on the crop's position within its batch (and on the BLAS thread count). So
shards are cut at multiples of the batch size: every crop then sits in the same batch, at the same
position, as in a single request with that batch size.

Threads: each cytogan worker runs `cytogan serve --threads N`. By default N is the cores of the
Dask worker's machine divided among the Dask workers on it (so n workers on n cores run n threads,
not n x n); `threads=` (or $CYTOGAN_THREADS on the workers) sets it.

    from distributed import Client, LocalCluster
    import cytogan_dask
    with Client(LocalCluster(n_workers=4, threads_per_worker=1)) as client:
        df = cytogan_dask.extract_manifest(client, "crops.csv", model="model.safetensors")

The model, the binary and the crops must be reachable under the same paths from every Dask worker
(a shared filesystem on a cluster). Command line: `python -m cytogan_dask --help`.
"""
import argparse
import atexit
import functools
import os
import sys
import threading

import numpy as np

import cytogan_client
from cytogan_client import tables

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - dask is needed to use this module, not to import it
    WorkerPlugin = object

_workers = {}
_lock = threading.Lock()


def workers_on_this_host():
    """How many Dask workers of this process's cluster run on this machine (1 outside a Dask
    worker or when the scheduler cannot be asked)."""
    try:
        from distributed import get_client, get_worker
        me = get_worker()
        host = _host(me.address)
        infos = get_client().scheduler_info(n_workers=-1)["workers"]
        return max(1, sum(1 for addr in infos if _host(addr) == host))
    except Exception:  # noqa: BLE001 - not in a Dask worker, or an older distributed: no sharing known
        return 1


def _host(address):
    return address.split("://")[-1].rsplit(":", 1)[0]


def worker_threads(threads=None):
    """The thread budget of this process's cytogan worker: `threads`, else $CYTOGAN_THREADS, else
    this machine's cores divided among the Dask workers on it."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be at least 1, not {threads!r}")
        return int(threads)
    return cytogan_client.default_threads(workers=workers_on_this_host())


def process_worker(model, binary=None, args=(), threads=None):
    """This process's cytogan worker for `model` (started and loaded on first use with
    `worker_threads(threads)` threads, then reused by every task in the process; closed at exit)."""
    key = (os.path.abspath(model), binary or "", tuple(args))
    with _lock:
        w = _workers.get(key)
        if w is None or not w.connection.alive:
            w = cytogan_client.Worker.start(binary, args, threads=worker_threads(threads), client_name="cytogan-dask")
            try:
                w.model_load(model)
            except BaseException:
                w.close()
                raise
            _workers[key] = w
        return w


@atexit.register
def close_process_workers():
    """Closes this process's cytogan workers (each exits 0 after answering what it was sent)."""
    with _lock:
        for w in _workers.values():
            try:
                w.close(timeout=30)
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
        _workers.clear()


class CytoganPlugin(WorkerPlugin):
    """Starts the cytogan worker when a Dask worker joins and closes it when the Dask worker
    leaves, so start-up is not paid inside the first task: `client.register_plugin(plugin)`."""

    name = "cytogan"

    def __init__(self, model, binary=None, args=(), threads=None):
        self.model = os.path.abspath(model)
        self.binary = binary
        self.args = tuple(args)
        self.threads = threads

    def setup(self, worker):
        process_worker(self.model, self.binary, self.args, self.threads)

    def teardown(self, worker):
        close_process_workers()


def extract_shard(crops, model, binary=None, args=(), channels=None, batch_size=None, on_error="fail", threads=None):
    """Runs on a Dask worker: the features of `crops` as a float32 (n, d) array (NaN rows for
    crops skipped with on_error="skip"), the list of per-crop errors (indices in the shard), and
    the feature names the worker sent with them."""
    w = process_worker(model, binary, args, threads)
    r = w.features_extract(crops, channels=channels, batch_size=batch_size, on_error=on_error)
    return tables.to_array(r["features"], r["dim"]), r.get("errors") or [], tables.feature_names(r)


WORKER_BATCH = 64  # features/extract's default batchSize (PROTOCOL.md 8.4)


def shards_of(n, shard_size, batch_size=WORKER_BATCH):
    """(start, stop) ranges covering range(n), each a whole number of batches (`shard_size`
    rounded up to a multiple of `batch_size`), so each crop keeps its place in its batch."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be at least 1")
    step = -(-shard_size // batch_size) * batch_size
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def extract_crops(client, crops, model, **kwargs):
    """Features of `crops` (CropSpec dicts) computed on the cluster of `client`: a float32 (n, d)
    array in the crops' order, and the list of errors (indices into `crops`) when on_error="skip".
    Keyword arguments: binary, args, threads (per cytogan worker; default: cores divided among the
    Dask workers of a machine), shard_size (256), channels, batch_size, on_error ("fail"),
    progress(done, total). See `run_shards`."""
    feats, errors, _ = run_shards(client, crops, model, **kwargs)
    return feats, errors


def run_shards(client, crops, model, *, binary=None, args=(), threads=None, shard_size=256, channels=None,
               batch_size=None, on_error="fail", progress=None):
    """`extract_crops`, also returning the feature names the workers use.
    A crop error with on_error="fail" raises the worker's typed error, its index made global.
    `progress(done, total)` is called as shards finish. Shards are whole batches (see
    `shards_of`); batch_size None is the worker's default, 64."""
    from distributed import as_completed

    crops = list(crops)
    if not crops:
        raise ValueError("no crops to extract")
    model = os.path.abspath(model)
    ranges = shards_of(len(crops), shard_size, batch_size or WORKER_BATCH)
    # The options travel in a partial: Client.map takes `batch_size` (and others) for itself.
    task = functools.partial(extract_shard, model=model, binary=binary, args=tuple(args), channels=channels,
                             batch_size=batch_size, on_error=on_error, threads=threads)
    futures = client.map(task, [crops[a:b] for a, b in ranges], pure=False)
    where = {f.key: r for f, r in zip(futures, ranges)}
    done = 0
    blocks = {}
    for fut in as_completed(futures):
        a, b = where[fut.key]
        try:
            blocks[a] = fut.result()
        except cytogan_client.WorkerError as e:
            if e.index is not None:
                e.data["index"] = e.index + a
            for f in futures:
                f.cancel()
            raise cytogan_client.error_from_response({"code": e.code, "message": e.message, "data": e.data},
                                                     e.method) from None
        done += b - a
        if progress is not None:
            progress(done, len(crops))
    errors = []
    for a, _ in ranges:
        for err in blocks[a][1]:
            err = dict(err)
            err["index"] = err["index"] + a
            errors.append(err)
    return np.concatenate([blocks[a][0] for a, _ in ranges]), errors, blocks[0][2]


def extract_manifest(client, manifest, model, *, path_column="path", path_columns=None, root=None, output="auto",
                     **kwargs):
    """Features of every crop of a manifest CSV, computed on the cluster: a DataFrame in
    pycytominer's layout (the manifest's `Metadata_*` and key columns — ImageNumber, ObjectNumber,
    Location_* — then the features under the worker's names, `Cytogan_<layer>_<i>`) with pandas,
    else a float32 array. Takes `extract_crops`'s keyword arguments; with on_error="skip" the
    errors are in the DataFrame's `attrs["errors"]`."""
    manifest = os.path.abspath(manifest)
    crops = cytogan_client.read_manifest(manifest, path_column=path_column, path_columns=path_columns, root=root)
    feats, errors, columns = run_shards(client, crops, model, **kwargs)
    kind = tables.resolve_output(output)
    if kind == "numpy":
        return feats
    if kind == "list":
        return [None if np.isnan(r).all() else r.tolist() for r in feats]
    df = tables.format_features(list(feats), feats.shape[1], "pandas", tables.manifest_metadata(manifest),
                                columns=columns)
    df.attrs["errors"] = errors
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cytogan_dask",
                                 description="Extract GAN features of a crop manifest on a Dask cluster.")
    ap.add_argument("--manifest", required=True, help="crops CSV (path column, Metadata_* columns)")
    ap.add_argument("--model", required=True, help="checkpoint (.safetensors), same path on every worker")
    ap.add_argument("--out", required=True, help="features CSV (Metadata_* columns, then the features)")
    ap.add_argument("--scheduler", help="scheduler address (tcp://host:8786) or a scheduler file (.json)")
    ap.add_argument("--local", type=int, default=2, help="without --scheduler: a LocalCluster of this many processes")
    ap.add_argument("--binary", help="cytogan binary on the workers (default: $CYTOGAN_BIN or PATH)")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    ap.add_argument("--threads", type=int,
                    help="threads per cytogan worker (default: a machine's cores divided among its Dask workers)")
    args = ap.parse_args(argv)

    from distributed import Client, LocalCluster
    # Under `python -m` this file is __main__, whose functions Dask would pickle by value (with
    # their locks); the importable module's are pickled by reference.
    import cytogan_dask as mod
    if args.scheduler and args.scheduler.endswith(".json"):
        client, cluster = Client(scheduler_file=args.scheduler), None
    elif args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        cluster = LocalCluster(n_workers=args.local, threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        client.register_plugin(mod.CytoganPlugin(args.model, args.binary, threads=args.threads))

        def report(done, total):
            print(f"\rcytogan_dask: {done}/{total} crops", end="", file=sys.stderr, flush=True)

        df = mod.extract_manifest(client, args.manifest, args.model, binary=args.binary, threads=args.threads,
                                  shard_size=args.shard_size,
                              batch_size=args.batch_size, on_error=args.on_error, output="pandas", progress=report)
        print(file=sys.stderr)
        tmp = args.out + ".tmp"
        df.to_csv(tmp, index=False, float_format="%.9g")
        os.replace(tmp, args.out)
        print(f"cytogan_dask: {len(df)} crops, {len(df.attrs['errors'])} errors -> {args.out}", file=sys.stderr)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
