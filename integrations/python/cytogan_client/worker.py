"""`Worker`: a `cytogan serve` process (started here or attached to), with a typed helper for every
method of protocol/PROTOCOL.md, jobs, streaming and feature tables.

    from cytogan_client import Worker
    with Worker.start() as w:                       # cytogan from $CYTOGAN_BIN, PATH or ~/.local/bin
        w.model_load("model.safetensors")
        df = w.extract(manifest="crops.csv")        # pandas: Metadata_* and key columns, then Cytogan_*
"""
import os
import subprocess
import tempfile
import threading
import time

from . import tables
from .connection import (CLIENT_NAME, CLIENT_VERSION, PROTOCOL_VERSION, Batch, Connection,
                         _merge_params, spawn, stop_process)
from .errors import error_from_response


def _camel(name):
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def params_of(**kwargs):
    """Protocol params from snake_case keyword arguments: None values left out (the protocol takes
    no null), names camelCased (`batch_size` -> `batchSize`, `from_` -> `from`)."""
    return {_camel(k): v for k, v in kwargs.items() if v is not None}


def usable_cores():
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_threads(workers=1):
    """A worker's thread budget when `workers` workers share this machine: $CYTOGAN_THREADS when
    set, else the usable cores divided among the workers (at least 1)."""
    env = os.environ.get("CYTOGAN_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"CYTOGAN_THREADS must be a whole number, not {env!r}") from None
        if n < 1:
            raise ValueError(f"CYTOGAN_THREADS must be at least 1, not {n}")
        return n
    return max(1, usable_cores() // max(1, int(workers)))


class Job:
    """A background job of the worker (training, background extraction): its status, waiting for
    it, pausing, resuming and cancelling it."""

    def __init__(self, worker, status):
        self.worker = worker
        self.id = status["jobId"]
        self.kind = status.get("kind")
        self.last_status = status
        self._ended = worker.connection.job_event(self.id)

    ENDED = ("done", "failed", "cancelled", "stopped")

    def status(self):
        """The job's current JobStatus (`jobs/status`)."""
        self.last_status = self.worker.jobs_status(self.id)
        return self.last_status

    @property
    def state(self):
        return self.status()["state"]

    def wait(self, timeout=None, poll=1.0):
        """Waits until the job ends (or `timeout` seconds pass) and returns its JobStatus (check
        `state`). Waits on `notifications/jobs/ended`, polling `jobs/status` meanwhile, so it does
        not occupy the worker's work thread as `jobs/wait` would."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ended = self.worker.connection.ended_jobs.get(self.id)
            if ended is not None:
                self.last_status = ended
                return ended
            st = self.status()
            if st["state"] in self.ENDED:
                return st
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return st
            try:
                self._ended.wait(poll if left is None else min(poll, left))
            except KeyboardInterrupt:
                self.cancel("KeyboardInterrupt")
                raise

    def result(self, timeout=None):
        """Waits for the job and returns its `result`; raises its error (typed, e.g. `Cancelled`)
        if it failed or was cancelled, TimeoutError if it has not ended in time."""
        st = self.wait(timeout)
        if st["state"] not in self.ENDED:
            raise TimeoutError(f"job {self.id} still {st['state']} after {timeout} s")
        if st.get("error") is not None:
            raise error_from_response(st["error"], f"job {self.id}")
        return st.get("result")

    def pause(self):
        """Parks the job at its next pause point; returns its status once paused."""
        self.last_status = self.worker.jobs_pause(self.id)
        return self.last_status

    def resume(self):
        self.last_status = self.worker.jobs_resume(self.id)
        return self.last_status

    def cancel(self, reason=None):
        """Cancels the job; returns its final status."""
        self.last_status = self.worker.jobs_cancel(self.id, reason=reason)
        return self.last_status

    def __repr__(self):
        return f"<Job {self.id} {self.kind} {self.last_status.get('state')}>"


class Stream:
    """The items of a streamed result (`notifications/partial`), as they come, in order:

        s = w.stream("features/extract", crops=crops)
        for item in s: ...
        s.result          # the final response, once iteration ends

    Leaving early (`close()`, `break` inside `with`) cancels the request."""

    def __init__(self, call):
        self.call = call
        self._result = None
        self._finished = False

    def chunks(self, timeout=None):
        """`(offset, items)` pieces, then the final result is read (raising its error)."""
        for piece in self.call.partials(timeout):
            yield piece
        self._result = self.call.result(timeout)
        self._finished = True

    def __iter__(self):
        for _, items in self.chunks():
            yield from items

    @property
    def result(self):
        """The final response's result (waits for it)."""
        if not self._finished:
            self._result = self.call.result()
            self._finished = True
        return self._result

    def close(self, reason="stream closed by the client"):
        """Cancels the request if it is still running."""
        if not self.call.done():
            self.call.cancel(reason)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Worker:
    """A connection to a `cytogan serve` worker, with typed helpers for its methods.

    `Worker.start(...)` launches the binary; `Worker.attach(reader, writer)` speaks over given
    pipes or file objects (a worker started elsewhere, a socket's files). Both perform
    `initialize` unless `initialize=False`. Use as a context manager, or call `close()`."""

    def __init__(self, connection, *, process=None):
        self.connection = connection
        self.process = process
        self.server_info = None
        self.protocol_version = None
        self.capabilities = {}
        self.limits = {}
        self.versions = {}
        self._closed = False

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def start(cls, binary=None, args=(), *, threads=None, initialize=True, log_level="warning", stderr=None, env=None,
              cwd=None, client_name=CLIENT_NAME, client_version=CLIENT_VERSION, timeout=60):
        """Starts `BINARY serve --threads N ARGS...` (binary: given, $CYTOGAN_BIN, `cytogan` on PATH,
        or ~/.local/bin/cytogan) and initializes it. `threads` bounds the worker's computing threads; by default
        `default_threads()`: $CYTOGAN_THREADS, else every core this process may use. When you
        start several workers on one machine, give each its share (`default_threads(workers=n)`).
        The worker's log goes to a temporary file (see `log()`) unless `stderr` is given."""
        n = default_threads() if threads is None else int(threads)
        if n < 1:
            raise ValueError(f"threads must be at least 1, not {threads!r}")
        args = ["--threads", str(n), *args]
        proc, log_file = spawn(binary, args, log_level=log_level, stderr=stderr, env=env, cwd=cwd)
        conn = Connection(proc.stdout, proc.stdin, process=proc, log_file=log_file)
        w = cls(conn, process=proc)
        if initialize:
            try:
                w.initialize(client_name=client_name, client_version=client_version, timeout=timeout)
            except BaseException:
                w.close(timeout=5)
                raise
        return w

    @classmethod
    def attach(cls, reader, writer, *, initialize=True, client_name=CLIENT_NAME, client_version=CLIENT_VERSION,
               timeout=60):
        """Speaks to a worker over `reader` (its stdout) and `writer` (its stdin): binary or text
        file objects, or file descriptors."""
        w = cls(Connection(reader, writer))
        if initialize:
            w.initialize(client_name=client_name, client_version=client_version, timeout=timeout)
        return w

    def initialize(self, *, client_name=CLIENT_NAME, client_version=CLIENT_VERSION, protocol_version=PROTOCOL_VERSION,
                   capabilities=None, timeout=60):
        """`initialize`, then `notifications/initialized`. Records server info, capabilities,
        limits and versions; returns the result."""
        r = self.connection.request("initialize", params_of(
            protocol_version=protocol_version, client_info={"name": client_name, "version": client_version},
            capabilities=capabilities), timeout=timeout)
        self.protocol_version = r.get("protocolVersion")
        self.server_info = r.get("serverInfo")
        self.capabilities = r.get("capabilities") or {}
        self.limits = r.get("limits") or {}
        self.versions = r.get("versions") or {}
        self.connection.limits = self.limits
        self.connection.notify("notifications/initialized")
        return r

    @property
    def methods(self):
        """The request methods this worker serves (`capabilities.methods`)."""
        return frozenset(self.capabilities.get("methods") or ())

    def supports(self, method):
        return method in self.methods

    def shutdown(self, timeout=120):
        """`shutdown`: running jobs stop (checkpointing what they can); returns the final status of
        the jobs that had not ended; then the worker exits and this client closes."""
        try:
            r = self.connection.request("shutdown", timeout=timeout)
        finally:
            self._finish(timeout)
        return r

    def close(self, timeout=60):
        """Ends the session: closes the worker's input (it answers what it has read, stops running
        jobs and exits 0) and waits for it; kills it after `timeout` seconds. Idempotent."""
        self._finish(timeout)

    def _finish(self, timeout):
        if self._closed:
            return
        self._closed = True
        self.connection.close_input()
        if self.process is not None:
            stop_process(self.process, timeout)
        self.connection.wait_closed(timeout)

    @property
    def returncode(self):
        return None if self.process is None else self.process.poll()

    def log(self):
        """The worker's log so far (stderr), when this client started it with the default stderr."""
        f = self.connection._log_file
        if f is None:
            return None
        with open(f.name, "rb") as g:
            return g.read().decode("utf-8", "replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---------------------------------------------------------------- generic
    def call(self, method, params=None, *, timeout=None, progress=None, on_partial=None, **kwargs):
        """Calls `method` with `params` (a dict) and/or keyword parameters (protocol names, as
        given) and returns its result. `progress(progress, total, message)` receives
        `notifications/progress`; raises the typed `WorkerError` of an error response."""
        return self.connection.request(method, _merge_params(params, kwargs), timeout=timeout, progress=progress,
                                       on_partial=on_partial)

    def send(self, method, params=None, *, progress=None, on_partial=None, **kwargs):
        """Sends a request without waiting; returns its `Call` (`result()`, `cancel()`)."""
        return self.connection.send_request(method, _merge_params(params, kwargs), progress=progress,
                                            on_partial=on_partial)

    def notify(self, method, params=None, **kwargs):
        """Sends a notification."""
        self.connection.notify(method, _merge_params(params, kwargs))

    def batch(self):
        """A `Batch` of requests sent as one line (use as a context manager)."""
        return Batch(self.connection)

    def call_batch(self, calls, *, timeout=None, return_exceptions=False):
        """Sends `[(method, params), ...]` as one batch; returns the results in order."""
        b = Batch(self.connection)
        for method, params in calls:
            b.call(method, params)
        return b.results(timeout, return_exceptions)

    def stream(self, method, params=None, *, progress=None, **kwargs):
        """Sends a request with `stream: true` and returns a `Stream` of its partial items."""
        p = _merge_params(params, kwargs)
        p["stream"] = True
        return Stream(self.connection.send_request(method, p, progress=progress))

    def on_notification(self, method, callback):
        """Calls `callback(params)` for every notification `method` (returns a remover)."""
        return self.connection.on_notification(method, callback)

    def _job(self, method, params, progress, timeout):
        status = self.connection.request(method, params, timeout=timeout, progress=progress, starts_job=True)
        return Job(self, status)

    # ---------------------------------------------------------------- control (section 8.1, 8.2)
    def ping(self, timeout=None):
        return self.call("ping", timeout=timeout)

    def methods_list(self):
        return self.call("methods/list")

    def jobs_list(self, state=None):
        """JobStatus of every job (optionally in one state), oldest first."""
        return self.call("jobs/list", params_of(state=state))["jobs"]

    def jobs_status(self, job_id):
        return self.call("jobs/status", jobId=_job_id(job_id))

    def jobs_wait(self, job_id, timeout_seconds=None):
        """`jobs/wait` (it runs on the worker's work thread, in turn; `Job.wait` does not)."""
        return self.call("jobs/wait", params_of(job_id=_job_id(job_id), timeout_seconds=timeout_seconds))

    def jobs_pause(self, job_id):
        return self.call("jobs/pause", jobId=_job_id(job_id))

    def jobs_resume(self, job_id):
        return self.call("jobs/resume", jobId=_job_id(job_id))

    def jobs_cancel(self, job_id, reason=None):
        return self.call("jobs/cancel", params_of(job_id=_job_id(job_id), reason=reason))

    def job(self, job_id):
        """A `Job` handle for an existing job id."""
        return Job(self, self.jobs_status(job_id))

    # ---------------------------------------------------------------- model (8.3)
    def model_create(self, preset=None, *, loss=None, config=None, seed=None, timeout=None):
        """A new model from a preset (`paper-96`: CytoGAN's networks; `small-64`: half the widths
        on 64x64, for CPUs), a loss (`lsgan`, `dcgan`, `wgangp`) and `config` overrides (the
        checkpoint's snake_case GANConfig keys); returns ModelInfo."""
        return self.call("model/create", params_of(preset=preset, loss=loss, config=config, seed=seed),
                         timeout=timeout)

    def model_load(self, path, *, timeout=None):
        """Loads a checkpoint (from model/save, training, or `cytogan train`); returns ModelInfo."""
        return self.call("model/load", path=os.fspath(path), timeout=timeout)

    def model_save(self, path, *, timeout=None):
        """Writes the whole model (optimizer and random state included) atomically."""
        return self.call("model/save", path=os.fspath(path), timeout=timeout)

    def feature_columns(self):
        """The names the worker gives the current model's features (ModelInfo's `featureNames`):
        `Cytogan_<layer>_<i>`, as in `cytogan extract`'s tables."""
        return tables.feature_names(self.model_info())

    def model_info(self):
        return self.call("model/info")

    # ---------------------------------------------------------------- features (8.4)
    def features_extract(self, crops=None, *, manifest=None, channels=None, metadata=None, keep=None, table=None,
                         return_features=None, stream=None, on_error=None, batch_size=None, progress=None,
                         on_partial=None, timeout=None):
        """`features/extract` as the protocol has it: returns the raw result
        (`{"count", "dim", "features", "errors", "kept"}`). `manifest` is a path or the
        protocol's manifest object. See `extract` for tables and `extract_job` for a job."""
        params = self._extract_params(crops, manifest, channels, metadata, keep, table, return_features, stream,
                                      on_error, batch_size)
        return self.call("features/extract", params, timeout=timeout, progress=progress, on_partial=on_partial)

    @staticmethod
    def _extract_params(crops, manifest, channels, metadata, keep, table, return_features, stream, on_error,
                        batch_size, background=None):
        if (crops is None) == (manifest is None):
            raise ValueError("give exactly one of crops or manifest")
        if manifest is not None and not isinstance(manifest, dict):
            manifest = {"path": os.fspath(manifest)}
        return params_of(crops=None if crops is None else list(crops), manifest=manifest, channels=channels,
                         metadata=metadata, keep=keep, table=table, return_features=return_features, stream=stream,
                         on_error=on_error, batch_size=batch_size, background=background)

    def extract(self, crops=None, *, manifest=None, output="auto", channels=None, metadata=None, keep=None,
                table=None, on_error=None, batch_size=None, progress=None, timeout=None):
        """Features of crops (a list of CropSpec dicts) or of a manifest CSV, as `output`:
        "pandas" — a DataFrame in pycytominer's layout (`Metadata_*` columns and a manifest's key
        columns ImageNumber, ObjectNumber, Location_*, then the features under the worker's names,
        `Cytogan_<layer>_<i>`: `infer_cp_features(df, compartments=["Cytogan"])` finds them);
        "numpy" — a float32 (n, dim) array; "list" — lists; "auto" (default) — the first of those
        installed. With `on_error="skip"`, failed crops are NaN rows (None in lists) and the
        errors are in `self.last_errors` (and in a DataFrame's `attrs["errors"]`)."""
        r = self.features_extract(crops, manifest=manifest, channels=channels, metadata=metadata, keep=keep,
                                  table=table, on_error=on_error, batch_size=batch_size, progress=progress,
                                  timeout=timeout)
        self.last_errors = r.get("errors") or []
        kind = tables.resolve_output(output)
        meta = None
        if kind == "pandas":
            meta = self._metadata_for(crops, manifest, metadata)
        cols = tables.feature_names(r) if kind == "pandas" else None
        out = tables.format_features(r["features"], r["dim"], kind, meta, columns=cols)
        if kind == "pandas":
            out.attrs["errors"] = self.last_errors
        return out

    def extract_stream(self, crops=None, *, manifest=None, output="auto", channels=None, metadata=None,
                       keep=None, table=None, on_error=None, batch_size=None, progress=None):
        """Features as they are computed: yields `(offset, block)` per batch, block in `output`'s
        form (a DataFrame indexed by crop position for pandas). Closing the generator early
        cancels the extraction. After the last block the final result is in `self.last_result`."""
        params = self._extract_params(crops, manifest, channels, metadata, keep, table, None, True, on_error,
                                      batch_size)
        kind = tables.resolve_output(output)
        meta = self._metadata_for(crops, manifest, metadata) if kind == "pandas" else None
        names = self.feature_columns() if kind == "pandas" else None
        call = self.connection.send_request("features/extract", params, progress=progress)
        dim = cols = None
        try:
            for offset, items in call.partials():
                if dim is None:
                    dim = next((len(v) for v in items if v is not None), None)
                    cols = names if dim and kind == "pandas" else None
                if kind == "pandas":
                    m = meta.iloc[offset:offset + len(items)] if hasattr(meta, "iloc") else meta[offset:offset + len(items)]
                    block = tables.format_features(items, dim or 0, kind, m, index=range(offset, offset + len(items)),
                                                   columns=cols)
                else:
                    block = tables.format_features(items, dim or 0, kind)
                yield offset, block
            self.last_result = call.result()
        finally:
            if not call.done():
                call.cancel("extract_stream closed by the client")

    def extract_job(self, crops=None, *, manifest=None, table=None, channels=None, metadata=None, on_error=None,
                    batch_size=None, progress=None):
        """A background extraction (`background: true`, which keeps the rows in `table`): a `Job`."""
        params = self._extract_params(crops, manifest, channels, metadata, True, table, None, None, on_error,
                                      batch_size, background=True)
        return self._job("features/extract", params, progress, None)

    def _metadata_for(self, crops, manifest, metadata):
        if crops is not None:
            return tables.crops_metadata(crops, metadata)
        path = manifest["path"] if isinstance(manifest, dict) else os.fspath(manifest)
        meta = tables.manifest_metadata(path, manifest.get("keepColumns") if isinstance(manifest, dict) else None)
        for k, v in (metadata or {}).items():  # request-wide metadata; the manifest's own columns win
            if k not in meta:
                meta[k] = v
        return meta

    def cells_encode(self, crops, *, channels=None, steps=None, learning_rate=None, restarts=None,
                     feature_weight=None, prior_weight=None, seed=None, return_images=None, output=None,
                     progress=None, timeout=None):
        """Noise vectors whose generated cells are closest to real crops:
        `{"latents", "pixelError", "featureError", ...}`."""
        return self.call("cells/encode", params_of(crops=list(crops), channels=channels, steps=steps,
                                                   learning_rate=learning_rate, restarts=restarts,
                                                   feature_weight=feature_weight, prior_weight=prior_weight, seed=seed,
                                                   return_images=return_images, output=output),
                         progress=progress, timeout=timeout)

    # ---------------------------------------------------------------- samples (8.5)
    def samples_generate(self, count=None, *, latents=None, seed=None, output=None, return_latents=None,
                         return_images=None, timeout=None):
        return self.call("samples/generate", params_of(count=count, latents=latents, seed=seed, output=output,
                                                       return_latents=return_latents, return_images=return_images),
                         timeout=timeout)

    def samples_interpolate(self, from_, to, *, steps=None, mode=None, output=None, return_latents=None,
                            return_images=None, timeout=None):
        """Points from `from_` to `to` (Latents, e.g. {"seed": 1}), linear or slerp."""
        return self.call("samples/interpolate", params_of(from_=from_, to=to, steps=steps, mode=mode, output=output,
                                                          return_latents=return_latents, return_images=return_images),
                         timeout=timeout)

    def samples_algebra(self, a, b, c, *, output=None, return_images=None, timeout=None):
        """z = a - b + c in noise space."""
        return self.call("samples/algebra", params_of(a=a, b=b, c=c, output=output, return_images=return_images),
                         timeout=timeout)

    # ---------------------------------------------------------------- training (8.6)
    def train_start(self, data, steps, *, channels=None, minutes=None, checkpoint=None, resume=None, progress=None):
        """Starts a training job of the current model up to model step `steps`; returns its `Job`.
        `data` is one of {"manifest": {"path", ...}}, {"crops": [...]}, {"directory": dir}, or a
        manifest path; `checkpoint` is {"directory", "every", "keep"} (a folder alone is accepted);
        `resume` continues from the newest checkpoint there. Losses, rates, batch size and seed are
        the model's configuration (`model_create`). `progress` keeps receiving the job's progress
        until it ends."""
        if isinstance(data, (str, os.PathLike)):
            data = {"manifest": {"path": os.fspath(data)}}
        if isinstance(checkpoint, (str, os.PathLike)):
            checkpoint = {"directory": os.fspath(checkpoint)}
        params = params_of(data=data, steps=steps, channels=channels, minutes=minutes, checkpoint=checkpoint,
                           resume=resume)
        return self._job("train/start", params, progress, None)

    # ---------------------------------------------------------------- realism (8.8)
    def realism_evaluate(self, manifest, *, model=None, generated=None, count=None, seed=None, folds=None, epochs=None,
                         background=None, progress=None, timeout=None):
        """How real the generated cells look against the real crops of `manifest` (a path or
        {"path", ...}): `{"frechet": {"distance", "floor", "ratio", "parts"}, "classifier": {...}, ...}`.
        `model`: a checkpoint instead of the current model; `generated`: a manifest of images to
        compare instead of its samples. With `background=True`, a `Job` whose result that is."""
        def ref(m):
            return {"path": os.fspath(m)} if isinstance(m, (str, os.PathLike)) else m
        params = params_of(manifest=ref(manifest), model=os.fspath(model) if model is not None else None,
                           generated=ref(generated) if generated is not None else None, count=count, seed=seed,
                           folds=folds, epochs=epochs, background=background)
        if background:
            return self._job("realism/evaluate", params, progress, timeout)
        return self.call("realism/evaluate", params, progress=progress, timeout=timeout)

    # ---------------------------------------------------------------- profiles (8.7)
    def profiles_list(self):
        return self.call("profiles/list")["tables"]

    def profiles_aggregate(self, source, *, by=None, method=None, join=None, into=None, timeout=None):
        """One row per group of `by` columns (mean or median); `join` columns keep their distinct
        values joined with ';' (e.g. the batch, for NSCB). Returns TableInfo."""
        return self.call("profiles/aggregate", params_of(source=_table_ref(source), by=by, method=method, join=join,
                                                         into=into), timeout=timeout)

    def profiles_normalize(self, source, controls, *, method=None, by=None, into=None, epsilon=None, lambda_=None,
                           spherize_method=None, timeout=None):
        """Normalize to control rows: `controls` is {"column", "values"} or a (column, [values])
        pair; `method` standardize, robustize, tvn, spherize or coral. Returns TableInfo."""
        if isinstance(controls, tuple):
            column, values = controls
            controls = {"column": column, "values": list(values)}
        return self.call("profiles/normalize", params_of(source=_table_ref(source), controls=controls, method=method,
                                                         by=by, into=into, epsilon=epsilon, lambda_=lambda_,
                                                         spherize_method=spherize_method), timeout=timeout)

    def profiles_score(self, source, *, moa=None, compound=None, concentration=None, batch=None, exclude=None,
                       metrics=None, confusion=None, distance=None, neighbors=None, timeout=None):
        """MOA matching of profiles (NSC, NSCB, per-compound accuracy, mAP, confusion; with
        `neighbors`, each treatment's nearest treatments of other compounds).
        `exclude` is {"column", "values"} or a (column, [values]) pair."""
        if isinstance(exclude, tuple):
            column, values = exclude
            exclude = {"column": column, "values": list(values)}
        return self.call("profiles/score", params_of(source=_table_ref(source), moa=moa, compound=compound,
                                                     concentration=concentration, batch=batch, exclude=exclude,
                                                     metrics=metrics, confusion=confusion, distance=distance,
                                                     neighbors=neighbors),
                         timeout=timeout)

    def profiles_export(self, source, path, *, format=None, timeout=None):
        return self.call("profiles/export", params_of(source=_table_ref(source), path=os.fspath(path), format=format),
                         timeout=timeout)

    def profiles_drop(self, table):
        return self.call("profiles/drop", table=table)

    # The MCP methods (protocol/PROTOCOL.md section 8.10), for scripts that want a tool's answer
    # as an agent sees it; a tool's failure comes back as a result with "isError": true.

    def tools_list(self, cursor=None):
        return self.call("tools/list", params_of(cursor=cursor))

    def tools_call(self, name, arguments=None, *, timeout=None, progress=None):
        return self.call("tools/call", params_of(name=name, arguments=arguments), timeout=timeout, progress=progress)

    def resources_list(self, cursor=None):
        return self.call("resources/list", params_of(cursor=cursor))

    def resources_read(self, uri):
        return self.call("resources/read", params_of(uri=uri))

    def prompts_list(self, cursor=None):
        return self.call("prompts/list", params_of(cursor=cursor))

    def prompts_get(self, name, arguments=None):
        return self.call("prompts/get", params_of(name=name, arguments=arguments))

    def table(self, name, output="auto"):
        """A profile table held by the worker, read back through `profiles/export` to a temporary
        CSV: a DataFrame (pandas), else `(columns, rows)` with rows as lists of strings."""
        with tempfile.TemporaryDirectory(prefix="cytogan-table-") as d:
            path = os.path.join(d, "table.csv")
            self.profiles_export({"table": name}, path, format="csv")
            if tables.resolve_output(output) == "pandas":
                return tables.pd.read_csv(path)
            import csv
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            return rows[0], rows[1:]


def _job_id(j):
    return j.id if isinstance(j, Job) else j


def _table_ref(source):
    """A TableRef from a table name ("cells"), a path-like (a CSV file), or the dict itself."""
    if isinstance(source, dict):
        return source
    if isinstance(source, os.PathLike):
        return {"path": os.fspath(source)}
    if isinstance(source, str) and (os.sep in source or source.endswith((".csv", ".csv.gz", ".gz"))):
        return {"path": source}
    return {"table": source}


