"""cytogan_client: a Python client for the cytogan worker (`cytogan serve`, JSON-RPC 2.0 over
stdin/stdout; protocol/PROTOCOL.md). Standard library only; NumPy and pandas are used when
installed, for feature matrices and DataFrames in pycytominer's layout.

    from cytogan_client import Worker, crop_file
    with Worker.start() as w:
        w.model_create("small-64", seed=1)
        df = w.extract([crop_file("a.tif", metadata={"Metadata_Well": "B02"})])
"""
from .connection import PROTOCOL_VERSION, Batch, Call, Connection, find_binary
from .crops import crop_channels, crop_field, crop_file, read_manifest
from .errors import (AlreadyInitialized, Cancelled, ConnectionLost, CytoganError, FileNotFound, InternalError,
                     InvalidInput, InvalidParams, InvalidRequest, IOFailure, JobConflict, MethodNotFound, NoModel,
                     NotInitialized, ParseError, ProtocolViolation, ShapeMismatch, ShuttingDown, Undecodable,
                     UnknownJob, Unsupported, WorkerError, error_from_response)
from .tables import FEATURE_PREFIX, KEY_COLUMNS, feature_names, format_features
from .worker import Job, Stream, Worker, default_threads, params_of, usable_cores

__version__ = "0.1.0"

__all__ = [
    "Worker", "Job", "Stream", "Call", "Batch", "Connection", "PROTOCOL_VERSION", "find_binary", "params_of",
    "crop_file", "crop_channels", "crop_field", "read_manifest", "FEATURE_PREFIX", "KEY_COLUMNS", "feature_names",
    "default_threads", "usable_cores",
    "format_features", "CytoganError", "WorkerError", "ConnectionLost", "ProtocolViolation", "error_from_response",
    "ParseError", "InvalidRequest", "MethodNotFound", "InvalidParams", "InternalError", "NotInitialized",
    "AlreadyInitialized", "ShuttingDown", "FileNotFound", "Undecodable", "Unsupported", "ShapeMismatch",
    "InvalidInput", "NoModel", "JobConflict", "IOFailure", "UnknownJob", "Cancelled",
]
