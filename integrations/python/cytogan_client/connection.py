"""The JSON-RPC 2.0 connection to a `cytogan serve` worker (protocol/PROTOCOL.md): one JSON message
per line on the worker's stdin/stdout, responses matched to requests by id, notifications
(progress, partial results, ended jobs) dispatched to whoever waits for them.

One reader thread reads the worker's output; callers on any thread send requests and wait on
their `Call`. Callbacks (progress, partial results, notification listeners) run on the reader
thread, in the order the worker sent the messages: they must not wait for another response
(doing so raises `RuntimeError` instead of deadlocking), but may send (e.g. `Call.cancel`).
"""
import io
import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from .errors import ConnectionLost, ProtocolViolation, error_from_response

PROTOCOL_VERSION = "1.0"
CLIENT_NAME = "cytogan_client"
CLIENT_VERSION = "0.1.0"

_END = object()


class Call:
    """One request in flight: wait for it (`result`), cancel it, or read its partial results."""

    def __init__(self, conn, id, method, params):
        self._conn = conn
        self.id = id
        self.method = method
        self.params = params
        self._done = threading.Event()
        self._response = None
        self._partials = queue.Queue()
        self.on_partial = None
        self.progress_token = None
        self.starts_job = False

    # -- completion (reader thread) --
    def _finish(self, response):
        self._response = response
        self._partials.put(_END)
        self._done.set()

    def _partial(self, offset, items):
        if self.on_partial is not None:
            self.on_partial(offset, items)
        else:
            self._partials.put((offset, items))

    # -- caller side --
    def done(self):
        """Whether the response (or a connection failure) has arrived."""
        return self._done.is_set()

    def wait(self, timeout=None):
        """Waits for the response; True if it came within `timeout` seconds."""
        self._conn._check_not_reader_thread()
        return self._done.wait(timeout)

    def result(self, timeout=None):
        """The `result` member of the response; raises the typed `WorkerError` of an error
        response, `ConnectionLost` if the worker went away, `TimeoutError` after `timeout`
        seconds (the request goes on; cancel it if you no longer want it). Ctrl-C while waiting
        cancels the request and re-raises."""
        try:
            if not self.wait(timeout):
                raise TimeoutError(f"{self.method} (id {self.id}) not answered within {timeout} s")
        except KeyboardInterrupt:
            self.cancel("KeyboardInterrupt")
            raise
        r = self._response
        if isinstance(r, BaseException):
            raise r
        if "error" in r:
            raise error_from_response(r["error"], self.method)
        return r.get("result")

    def exception(self, timeout=None):
        """The exception `result()` would raise, or None."""
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except Exception as e:  # noqa: BLE001 - returned, not swallowed
            return e
        return None

    def cancel(self, reason=None):
        """Sends `notifications/cancelled` for this request (if it is still in flight). The
        request then answers with `Cancelled`, or with its normal result if it finished first."""
        if self.done():
            return
        params = {"requestId": self.id}
        if reason is not None:
            params["reason"] = str(reason)
        self._conn.notify("notifications/cancelled", params)

    def partials(self, timeout=None):
        """Iterates over `(offset, items)` pieces of a streamed result (`notifications/partial`)
        until the response arrives; then `result()` gives the final counts."""
        while True:
            try:
                piece = self._partials.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no partial result of {self.method} (id {self.id}) within {timeout} s") from None
            if piece is _END:
                self._partials.put(_END)  # later iterations end too
                return
            yield piece

    def __repr__(self):
        state = "done" if self.done() else "pending"
        return f"<Call {self.method} id={self.id} {state}>"


class Batch:
    """Requests sent together as one JSON-RPC batch line (answered as one array, in order):

        with worker.batch() as b:
            a = b.call("ping")
            c = b.call("model/info")
        a.result(), c.result()
    """

    def __init__(self, conn):
        self._conn = conn
        self._messages = []
        self._calls = []
        self._sent = False

    def call(self, method, params=None, **kwargs):
        """Adds a request; returns its `Call` (answered once the batch is sent)."""
        self._check_open()
        params = _merge_params(params, kwargs)
        msg, call = self._conn._new_call(method, params)
        self._messages.append(msg)
        self._calls.append(call)
        return call

    def notify(self, method, params=None, **kwargs):
        """Adds a notification (never answered)."""
        self._check_open()
        params = _merge_params(params, kwargs)
        msg = {"jsonrpc": "2.0", "method": method}
        if params:
            msg["params"] = params
        self._messages.append(msg)

    def send(self):
        """Writes the batch (once); returns the list of its calls."""
        self._check_open()
        self._sent = True
        if not self._messages:
            return []
        limit = self._conn.limits.get("maxBatch")
        if limit is not None and len(self._messages) > limit:
            self._conn._forget(self._calls)
            raise ValueError(f"batch of {len(self._messages)} messages exceeds the worker's maxBatch {limit}")
        try:
            self._conn._write(self._messages)
        except BaseException:
            self._conn._forget(self._calls)
            raise
        return list(self._calls)

    def results(self, timeout=None, return_exceptions=False):
        """Sends the batch if not yet sent; the results in order (exceptions raised, or returned in
        place with `return_exceptions`)."""
        if not self._sent:
            self.send()
        out = []
        for c in self._calls:
            if return_exceptions:
                try:
                    out.append(c.result(timeout))
                except Exception as e:  # noqa: BLE001
                    out.append(e)
            else:
                out.append(c.result(timeout))
        return out

    def _check_open(self):
        if self._sent:
            raise RuntimeError("this batch has been sent already")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self._sent:
            self.send()
        elif exc_type is not None and not self._sent:
            self._conn._forget(self._calls)
        return False


def _merge_params(params, kwargs):
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise TypeError("params must be a dict (the protocol takes parameters by name only)")
    else:
        params = dict(params)
    dup = set(params) & set(kwargs)
    if dup:
        raise TypeError(f"parameter {sorted(dup)[0]!r} given twice")
    params.update(kwargs)
    return params


class Connection:
    """A JSON-RPC 2.0 line connection to a worker over two file objects (binary or text)."""

    def __init__(self, reader, writer, *, process=None, log_file=None):
        self._reader = _as_binary_reader(reader)
        self._writer = _as_binary_writer(writer)
        self.process = process
        self._log_file = log_file
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._pending = {}  # id -> Call
        self._progress = {}  # token -> callback
        self._job_tokens = {}  # jobId -> token kept alive until the job ends
        self._listeners = {}  # method -> [callback]
        self._lost = None  # ConnectionLost once the output ended
        self.limits = {}
        self.orphans = []  # responses that matched no request (e.g. id null), newest last
        self.ended_jobs = {}  # jobId -> final JobStatus from notifications/jobs/ended (latest 1000)
        self._job_events = {}  # jobId -> threading.Event set when it ends
        self._reader_thread = threading.Thread(target=self._read_loop, name="cytogan-reader", daemon=True)
        self._reader_thread.start()

    # -- sending --
    def _new_call(self, method, params):
        with self._lock:
            if self._lost is not None:
                raise self._lost
            id = next(self._ids)
            call = Call(self, id, method, params)
            self._pending[id] = call
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params:
            msg["params"] = params
        return msg, call

    def _forget(self, calls):
        with self._lock:
            for c in calls:
                self._pending.pop(c.id, None)

    def _write(self, msg):
        line = json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        limit = self.limits.get("maxLineBytes")
        if limit is not None and len(line) > limit:
            raise ValueError(f"message of {len(line)} bytes exceeds the worker's maxLineBytes {limit}: send it in parts")
        with self._write_lock:
            if self._lost is not None:
                raise self._lost
            try:
                self._writer.write(line + b"\n")
                self._writer.flush()
            except (BrokenPipeError, OSError, ValueError) as e:
                raise self._connection_lost(f"cannot write to the worker: {e}") from e

    def job_event(self, job_id):
        """An Event set when `notifications/jobs/ended` arrives for `job_id` (set already if it has)."""
        with self._lock:
            ev = self._job_events.get(job_id)
            if ev is None:
                ev = self._job_events[job_id] = threading.Event()
                if job_id in self.ended_jobs:
                    ev.set()
            return ev

    def send_request(self, method, params=None, *, progress=None, on_partial=None, starts_job=False):
        """Sends a request without waiting; returns its `Call`. `progress(progress, total, message)`
        is called for each `notifications/progress` of it; `on_partial(offset, items)` for each
        piece of a streamed result (otherwise they queue for `Call.partials()`)."""
        params = dict(params or {})
        token = None
        if progress is not None:
            token = f"py-{os.getpid()}-{next(self._tokens)}"
            meta = dict(params.get("_meta") or {})
            meta["progressToken"] = token
            params["_meta"] = meta
            with self._lock:
                self._progress[token] = progress
        msg, call = self._new_call(method, params)
        call.on_partial = on_partial
        call.progress_token = token
        call.starts_job = starts_job
        try:
            self._write(msg)
        except BaseException:
            self._forget([call])
            self._drop_token(token)
            raise
        return call

    def request(self, method, params=None, *, timeout=None, progress=None, on_partial=None, starts_job=False):
        """Sends a request and waits for its result (see `Call.result`). On timeout the request is
        cancelled and `TimeoutError` raised."""
        call = self.send_request(method, params, progress=progress, on_partial=on_partial, starts_job=starts_job)
        try:
            return call.result(timeout)
        except TimeoutError:
            call.cancel(f"client timeout after {timeout} s")
            raise

    def notify(self, method, params=None):
        """Sends a notification (no answer). From a callback (the reader thread) the write is
        handed to a short-lived thread, so the reader never blocks on a full pipe while the
        worker waits for it to read."""
        msg = {"jsonrpc": "2.0", "method": method}
        if params:
            msg["params"] = params
        if threading.current_thread() is self._reader_thread:
            threading.Thread(target=self._write_quietly, args=(msg,), daemon=True).start()
        else:
            self._write(msg)

    def _write_quietly(self, msg):
        try:
            self._write(msg)
        except Exception as e:  # noqa: BLE001 - the connection is going away; nothing to tell
            print(f"cytogan_client: could not send {msg.get('method')}: {e}", file=sys.stderr)

    def on_notification(self, method, callback):
        """Calls `callback(params)` for every notification `method` the worker sends (on the
        reader thread). Returns a function that removes the listener."""
        with self._lock:
            self._listeners.setdefault(method, []).append(callback)

        def remove():
            with self._lock:
                lst = self._listeners.get(method, [])
                if callback in lst:
                    lst.remove(callback)
        return remove

    def _drop_token(self, token):
        if token is not None:
            with self._lock:
                self._progress.pop(token, None)

    # -- reading --
    def _read_loop(self):
        reason = "the worker closed its output"
        try:
            for line in iter(self._reader.readline, b""):
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    self._violation(f"the worker wrote a line that is not JSON: {line[:200]!r}")
                    continue
                if isinstance(msg, list):
                    for m in msg:
                        self._dispatch(m)
                else:
                    self._dispatch(msg)
        except Exception as e:  # noqa: BLE001 - the connection ends either way
            reason = f"reading from the worker failed: {e}"
        self._connection_lost(reason)

    def _dispatch(self, msg):
        if not isinstance(msg, dict):
            self._violation(f"the worker wrote a message that is not an object: {msg!r:.200}")
            return
        if "method" in msg:
            self._notification(msg["method"], msg.get("params") or {})
            return
        id = msg.get("id")
        with self._lock:
            call = self._pending.pop(id, None) if id is not None else None
        if call is None:
            self.orphans.append(msg)
            del self.orphans[:-100]
            if id is not None:
                self._violation(f"a response for unknown id {id!r}")
            else:
                print(f"cytogan_client: the worker answered an unidentified message: {json.dumps(msg)[:300]}", file=sys.stderr)
            return
        token = call.progress_token
        if token is not None:
            with self._lock:
                job_id = _job_id_of(msg) if call.starts_job else None
                if job_id is not None and job_id not in self.ended_jobs:
                    self._job_tokens[job_id] = token  # the job's progress keeps coming (section 5)
                else:
                    self._progress.pop(token, None)
        call._finish(msg)

    def _notification(self, method, params):
        if method == "notifications/progress":
            with self._lock:
                cb = self._progress.get(params.get("progressToken"))
            if cb is not None:
                _safe(cb, params.get("progress"), params.get("total"), params.get("message"))
        elif method == "notifications/partial":
            with self._lock:
                call = self._pending.get(params.get("requestId"))
            if call is not None:
                try:
                    call._partial(params.get("offset", 0), params.get("items") or [])
                except Exception as e:  # noqa: BLE001 - a callback's bug must not kill the reader
                    print(f"cytogan_client: partial-result callback failed: {e!r}", file=sys.stderr)
        elif method == "notifications/jobs/ended":
            job = params.get("job") or {}
            jid = job.get("jobId")
            with self._lock:
                self.ended_jobs[jid] = job
                while len(self.ended_jobs) > 1000:
                    self.ended_jobs.pop(next(iter(self.ended_jobs)))
                token = self._job_tokens.pop(jid, None)
                if token is not None:
                    self._progress.pop(token, None)
                event = self._job_events.get(jid)
            if event is not None:
                event.set()
        with self._lock:
            listeners = list(self._listeners.get(method, ()))
        for cb in listeners:
            _safe(cb, params)

    def _violation(self, text):
        print(f"cytogan_client: protocol violation: {text}", file=sys.stderr)

    def _connection_lost(self, reason):
        rc = None
        if self.process is not None and self._lost is None:
            try:  # outside the lock: other threads keep failing fast meanwhile
                rc = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = None
        with self._lock:
            if self._lost is None:
                self._lost = ConnectionLost(reason, rc, self.log_tail())
            lost = self._lost
            pending = list(self._pending.values())
            self._pending.clear()
            self._progress.clear()
        for call in pending:
            call._finish(lost)
        return lost

    def _check_not_reader_thread(self):
        if threading.current_thread() is self._reader_thread:
            raise RuntimeError("a callback of cytogan_client waited for a response: callbacks run on the "
                               "reader thread, so that would deadlock; send without waiting instead")

    @property
    def alive(self):
        """Whether the worker's output is still open."""
        return self._lost is None

    def log_tail(self, lines=20):
        """The last lines of the worker's log (stderr), when this client captured it."""
        f = self._log_file
        if f is None:
            return None
        try:
            with open(f.name, "rb") as g:
                data = g.read()[-16384:]
        except OSError:
            return None
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def close_input(self):
        """Closes the worker's stdin (end of input: it answers what it read, then exits)."""
        with self._write_lock:
            try:
                self._writer.close()
            except OSError:
                pass

    def wait_closed(self, timeout=None):
        """Waits for the reader to see the end of the worker's output."""
        self._reader_thread.join(timeout)
        return not self._reader_thread.is_alive()


def _job_id_of(msg):
    r = msg.get("result")
    return r.get("jobId") if isinstance(r, dict) else None


def _safe(cb, *args):
    try:
        cb(*args)
    except RuntimeError as e:
        print(f"cytogan_client: callback failed: {e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - a callback's bug must not kill the reader
        print(f"cytogan_client: callback failed: {e!r}", file=sys.stderr)


def _as_binary_reader(f):
    if isinstance(f, int):
        return os.fdopen(f, "rb")
    if isinstance(f, io.TextIOBase):
        return f.buffer if hasattr(f, "buffer") else _TextReaderAdapter(f)
    return f


def _as_binary_writer(f):
    if isinstance(f, int):
        return os.fdopen(f, "wb")
    if isinstance(f, io.TextIOBase):
        return f.buffer if hasattr(f, "buffer") else _TextWriterAdapter(f)
    return f


class _TextReaderAdapter:
    def __init__(self, f):
        self.f = f

    def readline(self):
        return self.f.readline().encode("utf-8")


class _TextWriterAdapter:
    def __init__(self, f):
        self.f = f

    def write(self, b):
        self.f.write(b.decode("utf-8"))

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


# Where `make install` and the release's install.sh put cytogan by default. Programs started
# without a login shell (CellProfiler from a desktop menu, Dask workers started by a batch system)
# often lack ~/.local/bin on PATH, so it is also looked for there.
DEFAULT_INSTALL = os.path.join("~", ".local", "bin", "cytogan")


def find_binary(binary=None):
    """The cytogan executable: `binary`, else $CYTOGAN_BIN, else `cytogan` on PATH, else the
    default install location ~/.local/bin/cytogan."""
    installed = os.path.expanduser(DEFAULT_INSTALL)
    cand = binary or os.environ.get("CYTOGAN_BIN") or shutil.which("cytogan")
    if not cand and os.access(installed, os.X_OK):
        cand = installed
    if not cand:
        raise FileNotFoundError("cytogan binary not found: pass binary=..., set CYTOGAN_BIN, put cytogan on PATH, "
                                "or install it (make install, or a release's install.sh) into ~/.local")
    cand = os.fspath(cand)
    if not os.path.exists(cand):
        raise FileNotFoundError(f"cytogan binary not found at {cand}")
    return cand


def spawn(binary=None, args=(), *, log_level="warning", stderr=None, env=None, cwd=None):
    """Starts `cytogan serve`; returns (process, log_file). stderr goes to a temporary file unless
    `stderr` is given (a file object, or subprocess.DEVNULL), so a chatty log never blocks it."""
    exe = find_binary(binary)
    log_file = None
    if stderr is None:
        log_file = tempfile.NamedTemporaryFile(prefix="cytogan-worker-", suffix=".log", delete=False)
        stderr = log_file
    cmd = [exe, "serve", "--log-level", log_level, *map(str, args)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd)
    if log_file is not None:
        weakref.finalize(proc, _remove_quietly, log_file.name)
    return proc, log_file


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def stop_process(proc, timeout=30):
    """Waits for a worker process to exit after its input closed; terminates, then kills it if it
    does not within `timeout` seconds. Returns its exit status."""
    deadline = time.monotonic() + timeout
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.terminate()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
