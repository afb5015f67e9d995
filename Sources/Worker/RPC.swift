import CytoCore

/// A JSON-RPC request id (or progress token): a string or an integer (never null, never a
/// fraction, as in MCP). Integers must be "safe" (|i| <= 2^53 - 1), so every client language
/// holds them exactly and json-c never clamps them.
public enum RequestID: Hashable, Sendable, CustomStringConvertible {
    case string(String)
    case int(Int64)

    public static let maxSafeInteger: Int64 = (1 << 53) - 1

    /// The id from its JSON form, or nil when the value cannot be an id.
    public init?(json: JSON) {
        switch json {
        case .string(let s): self = .string(s)
        case .int(let i) where i >= -RequestID.maxSafeInteger && i <= RequestID.maxSafeInteger: self = .int(i)
        default: return nil
        }
    }

    public var json: JSON {
        switch self {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        }
    }

    public var description: String {
        switch self {
        case .string(let s): return quoted(s, limit: 40)
        case .int(let i): return String(i)
        }
    }
}

/// The protocol's error codes: JSON-RPC 2.0's own, then cytogan's (see protocol/PROTOCOL.md).
public enum ErrorCode {
    public static let parseError = -32700
    public static let invalidRequest = -32600
    public static let methodNotFound = -32601
    public static let invalidParams = -32602
    public static let internalError = -32603

    public static let notInitialized = -32001
    public static let alreadyInitialized = -32002
    public static let shuttingDown = -32003

    public static let fileNotFound = -32010
    public static let undecodable = -32011
    public static let unsupported = -32012
    public static let shapeMismatch = -32013
    public static let invalidInput = -32014
    public static let noModel = -32015
    public static let jobConflict = -32016
    public static let io = -32017
    public static let unknownJob = -32018

    public static let cancelled = -32800

    /// The code a library error travels under.
    public static func code(for kind: CytoError.Kind) -> Int {
        switch kind {
        case .fileNotFound: return fileNotFound
        case .undecodable: return undecodable
        case .unsupported: return unsupported
        case .shapeMismatch: return shapeMismatch
        case .invalidInput: return invalidInput
        case .noModel: return noModel
        case .jobConflict: return jobConflict
        case .io: return io
        case .cancelled: return cancelled
        case .internal: return internalError
        }
    }
}

/// An error as the protocol sends it: a code, a one-line message, and `data` saying what kind of
/// fault it is and where (field, index, path, line ...). `data["kind"]` is always present.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: [String: JSON]

    public init(code: Int, message: String, kind: String, data: [String: JSON] = [:]) {
        self.code = code
        self.message = message
        var d = data
        d["kind"] = .string(kind)
        self.data = d
    }

    /// A library error, mapped to its protocol code; its location becomes `data`.
    public init(_ e: CytoError) {
        code = ErrorCode.code(for: e.kind)
        message = e.description
        data = e.data.objectValue ?? ["kind": .string(e.kind.rawValue)]
    }

    /// Any thrown error: protocol errors pass, library errors are mapped, the rest is internal.
    public init(any error: Error) {
        if let e = error as? RPCError { self = e; return }
        if let e = error as? CytoError { self.init(e); return }
        self.init(code: ErrorCode.internalError, message: "internal error: \(error)", kind: "internal")
    }

    public var json: JSON {
        .object(["code": .int(Int64(code)), "message": .string(message), "data": .object(data)])
    }

    public var description: String { "\(code) \(message)" }

    // The JSON-RPC errors, with the kinds PROTOCOL.md lists.

    public static func parseError(_ message: String, line: Int?) -> RPCError {
        RPCError(code: ErrorCode.parseError, message: "parse error: \(message)", kind: "parse_error",
                 data: line.map { ["line": .int(Int64($0))] } ?? [:])
    }

    public static func invalidRequest(_ message: String, field: String? = nil, kind: String = "invalid_request") -> RPCError {
        RPCError(code: ErrorCode.invalidRequest, message: "invalid request: \(message)", kind: kind,
                 data: field.map { ["field": .string($0)] } ?? [:])
    }

    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(code: ErrorCode.methodNotFound, message: "method not found: \(quoted(method))",
                 kind: "method_not_found")
    }

    /// A parameter is missing, of the wrong type or out of range. `field` is its path in params
    /// ("crops[3].box.width"); `index` the position in the top-level list it sits in, if any.
    public static func invalidParams(field: String, _ message: String, index: Int? = nil) -> RPCError {
        var d: [String: JSON] = ["field": .string(field)]
        if let index { d["index"] = .int(Int64(index)) }
        return RPCError(code: ErrorCode.invalidParams, message: "invalid params: \(message)",
                        kind: "invalid_params", data: d)
    }

    public static func cancelled(_ id: RequestID?, reason: String?) -> RPCError {
        var d: [String: JSON] = [:]
        if let id { d["requestId"] = id.json }
        if let reason { d["reason"] = .string(reason) }
        return RPCError(code: ErrorCode.cancelled,
                        message: "request cancelled" + (reason.map { ": \($0)" } ?? ""),
                        kind: "cancelled", data: d)
    }

    public static func unknownJob(_ id: String, field: String = "jobId") -> RPCError {
        RPCError(code: ErrorCode.unknownJob, message: "no job with id \(quoted(id))", kind: "unknown_job",
                 data: ["jobId": .string(id), "field": .string(field)])
    }
}

/// The three kinds of outgoing messages, built in one place.
enum Message {
    static func result(_ id: RequestID, _ result: JSON) -> JSON {
        .object(["jsonrpc": "2.0", "id": id.json, "result": result])
    }

    static func error(_ id: RequestID?, _ error: RPCError) -> JSON {
        .object(["jsonrpc": "2.0", "id": id?.json ?? .null, "error": error.json])
    }

    static func notification(_ method: String, _ params: JSON) -> JSON {
        .object(["jsonrpc": "2.0", "method": .string(method), "params": params])
    }
}
