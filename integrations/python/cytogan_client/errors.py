"""Typed exceptions for the worker's JSON-RPC errors (protocol/PROTOCOL.md section 4).

Every error the worker answers becomes an instance of `WorkerError` (or the subclass named by its
code) carrying `code`, `message` and `data` (`data.kind`, and where there is one the input at
fault: `field`, `index`, `path`, `line`, `jobId`, `requestId`). Problems of the connection itself
(the worker exited, its output was not the protocol) are `ConnectionLost` and `ProtocolViolation`.
"""


class CytoganError(Exception):
    """Base of every exception this package raises on purpose."""


class WorkerError(CytoganError):
    """An error response from the worker: `code`, `message` and `data` as the worker sent them."""

    code = None  # set on subclasses; the instance attribute holds the actual code

    def __init__(self, code, message, data=None, method=None):
        self.code = code
        self.message = message
        self.data = data if isinstance(data, dict) else ({} if data is None else {"value": data})
        self.method = method
        where = ", ".join(f"{k}={self.data[k]!r}" for k in ("field", "index", "path", "line", "jobId") if k in self.data)
        text = f"[{code}] {message}"
        if method:
            text = f"{method}: {text}"
        if where:
            text += f" ({where})"
        super().__init__(text)

    @property
    def kind(self):
        """The stable error kind (`data.kind`), e.g. "file_not_found"."""
        return self.data.get("kind")

    @property
    def field(self):
        return self.data.get("field")

    @property
    def index(self):
        return self.data.get("index")

    @property
    def path(self):
        return self.data.get("path")

    @property
    def line(self):
        return self.data.get("line")

    @property
    def job_id(self):
        return self.data.get("jobId")

    def __reduce__(self):  # picklable (Dask ships exceptions between processes)
        return (error_from_response, ({"code": self.code, "message": self.message, "data": self.data}, self.method))


class ParseError(WorkerError):
    """-32700: the line was not one valid JSON text."""


class InvalidRequest(WorkerError):
    """-32600: not a valid JSON-RPC message (also line_too_long, batch_too_large)."""


class MethodNotFound(WorkerError):
    """-32601: the worker does not serve this method (see `Worker.methods`)."""


class InvalidParams(WorkerError):
    """-32602: a parameter is missing, unknown, of the wrong type or out of range (`field`)."""


class InternalError(WorkerError):
    """-32603: a bug in the worker."""


class NotInitialized(WorkerError):
    """-32001: a method other than initialize/ping/shutdown before initialize."""


class AlreadyInitialized(WorkerError):
    """-32002: initialize a second time."""


class ShuttingDown(WorkerError):
    """-32003: a new request after shutdown or end of input."""


class FileNotFound(WorkerError):
    """-32010: a file named in the params does not exist or cannot be opened (`path`)."""


class Undecodable(WorkerError):
    """-32011: a file exists but cannot be decoded."""


class Unsupported(WorkerError):
    """-32012: a valid input this build cannot handle."""


class ShapeMismatch(WorkerError):
    """-32013: sizes do not fit (channels vs the model, a mask vs its field, ...)."""


class InvalidInput(WorkerError):
    """-32014: well-formed but wrong content (a box outside its field, a missing CSV column)."""


class NoModel(WorkerError):
    """-32015: the method needs a model: model/create or model/load first."""


class JobConflict(WorkerError):
    """-32016: the job's state does not allow this, or another job holds what this one needs."""


class IOFailure(WorkerError):
    """-32017: reading or writing failed (disk full, permission denied)."""


class UnknownJob(WorkerError):
    """-32018: no job has this id."""


class Cancelled(WorkerError):
    """-32800: the request or job was cancelled (`data.reason`)."""

    @property
    def reason(self):
        return self.data.get("reason")


ERROR_CLASSES = {
    -32700: ParseError, -32600: InvalidRequest, -32601: MethodNotFound, -32602: InvalidParams,
    -32603: InternalError, -32001: NotInitialized, -32002: AlreadyInitialized, -32003: ShuttingDown,
    -32010: FileNotFound, -32011: Undecodable, -32012: Unsupported, -32013: ShapeMismatch,
    -32014: InvalidInput, -32015: NoModel, -32016: JobConflict, -32017: IOFailure,
    -32018: UnknownJob, -32800: Cancelled,
}


def error_from_response(error, method=None):
    """The typed exception for a JSON-RPC error object {"code", "message", "data"}."""
    if not isinstance(error, dict):
        return ProtocolViolation(f"error member is not an object: {error!r}")
    code = error.get("code")
    cls = ERROR_CLASSES.get(code, WorkerError)
    return cls(code, str(error.get("message", "")), error.get("data"), method)


class ConnectionLost(CytoganError):
    """The worker went away (exited, or closed its output) before answering. `returncode` and the
    tail of its log are included when this client started the process."""

    def __init__(self, message, returncode=None, log_tail=None):
        self.returncode = returncode
        self.log_tail = log_tail
        text = message
        if returncode is not None:
            text += f" (exit status {returncode})"
        if log_tail:
            text += "\n--- worker log (last lines) ---\n" + log_tail
        super().__init__(text)


class ProtocolViolation(CytoganError):
    """The worker wrote something that is not the protocol (a non-JSON line, an unknown id)."""
