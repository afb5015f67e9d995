/// The one error type that crosses module boundaries: a kind the worker maps to a protocol code,
/// a readable message, and where the fault is (path, line, field, index in a list).
public struct CytoError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case fileNotFound = "file_not_found"
        case undecodable = "undecodable"
        case unsupported = "unsupported"
        case shapeMismatch = "shape_mismatch"
        case invalidInput = "invalid_input"
        case noModel = "no_model"
        case jobConflict = "job_conflict"
        case io = "io"
        case cancelled = "cancelled"
        case `internal` = "internal"
    }

    public var kind: Kind
    public var message: String
    public var path: String?
    public var line: Int?
    public var field: String?
    public var index: Int?

    public init(_ kind: Kind, _ message: String, path: String? = nil, line: Int? = nil,
                field: String? = nil, index: Int? = nil) {
        self.kind = kind; self.message = message; self.path = path
        self.line = line; self.field = field; self.index = index
    }

    /// The same error, located at position `index` of a caller's list.
    public func at(index: Int) -> CytoError { var e = self; e.index = index; return e }

    public var description: String {
        var where_: [String] = []
        if let path { where_.append(line.map { "\(path):\($0)" } ?? path) } else if let line { where_.append("line \(line)") }
        if let field { where_.append("field '\(field)'") }
        if let index { where_.append("item \(index)") }
        return where_.isEmpty ? message : "\(where_.joined(separator: ", ")): \(message)"
    }

    /// The location as JSON, for `error.data` in the worker.
    public var data: JSON {
        var o: [String: JSON] = ["kind": .string(kind.rawValue)]
        if let path { o["path"] = .string(path) }
        if let line { o["line"] = .int(Int64(line)) }
        if let field { o["field"] = .string(field) }
        if let index { o["index"] = .int(Int64(index)) }
        return .object(o)
    }
}
