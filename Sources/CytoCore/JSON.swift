import Foundation

import CJSONC

/// A JSON value. Parsing goes through json-c (bounded depth, strict, UTF-8 validated);
/// serialization is done here, with object keys sorted so output is byte-for-byte reproducible.
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    /// A Float32 value, written with the shortest text that round-trips a Float (compact features).
    case float(Float)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    // MARK: Access

    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var arrayValue: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [String: JSON]? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }
    /// Any number as a Double.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .float(let f): return Double(f)
        default: return nil
        }
    }
    /// An integer, or a double with no fractional part that fits.
    public var intValue: Int? {
        switch self {
        case .int(let i): return Int(exactly: i)
        case .double(let d): return d.rounded() == d && abs(d) < 9.0e15 ? Int(d) : nil
        case .float(let f): return f.rounded() == f && abs(f) < 1.0e7 ? Int(f) : nil
        default: return nil
        }
    }
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double, .float: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    // MARK: Parsing

    /// Parses one JSON text. Trailing non-space characters, nesting deeper than `maxDepth`,
    /// invalid UTF-8 and anything json-c's strict mode rejects are errors.
    public static func parse(_ text: String, maxDepth: Int = 64) throws -> JSON {
        var bytes = Array(text.utf8)
        return try parse(bytes: &bytes, maxDepth: maxDepth)
    }

    /// The version of json-c, the library behind `parse` (the worker reports it in `initialize`).
    public static var parserVersion: String { String(cString: json_c_version()) }

    public static func parse(bytes: inout [UInt8], maxDepth: Int = 64) throws -> JSON {
        guard let tok = json_tokener_new_ex(Int32(maxDepth)) else {
            throw CytoError(.internal, "json-c could not allocate a tokener")
        }
        defer { json_tokener_free(tok) }
        json_tokener_set_flags(tok, Int32(JSON_TOKENER_STRICT) | Int32(JSON_TOKENER_VALIDATE_UTF8))
        // json-c's UTF-8 check lets encoded surrogates through; Swift's validation does not.
        if bytes.contains(where: { $0 >= 0x80 }), String(validating: bytes, as: UTF8.self) == nil {
            throw CytoError(.invalidInput, "invalid JSON: the text is not valid UTF-8")
        }
        // A trailing space ends a bare top-level number ("1"), which json-c would otherwise take
        // as unfinished; JSON allows trailing whitespace.
        bytes.append(0x20)
        defer { bytes.removeLast() }
        let count = bytes.count
        // json-c's strict mode still takes single-quoted strings; JSON does not.
        var inString = false, escaped = false
        for (i, b) in bytes.enumerated() {
            if inString {
                if escaped { escaped = false } else if b == 0x5C { escaped = true } else if b == 0x22 { inString = false }
            } else if b == 0x22 { inString = true } else if b == 0x27 {
                throw CytoError(.invalidInput, "invalid JSON at byte \(i): single quotes are not JSON")
            }
        }
        let obj: OpaquePointer? = bytes.withUnsafeBufferPointer { buf -> OpaquePointer? in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: max(count, 1)) {
                json_tokener_parse_ex(tok, $0, Int32(count))
            }
        }
        let err = json_tokener_get_error(tok)
        if err == json_tokener_continue {
            // The text ended inside a value (or was empty).
            throw CytoError(.invalidInput, count == 1 ? "empty JSON text" : "unexpected end of JSON text")
        }
        guard err == json_tokener_success else {
            let reason = String(cString: json_tokener_error_desc(err))
            throw CytoError(.invalidInput, "invalid JSON at byte \(json_tokener_get_parse_end(tok)): \(reason)")
        }
        defer { json_object_put(obj) }
        let end = Int(json_tokener_get_parse_end(tok))
        if end < count {
            for b in bytes[end...] where !(b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D) {
                throw CytoError(.invalidInput, "unexpected text after the JSON value at byte \(end)")
            }
        }
        return try convert(obj)
    }

    private static func convert(_ o: OpaquePointer?) throws -> JSON {
        guard let o else { return .null }
        switch json_object_get_type(o) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(o) != 0)
        case json_type_int: return .int(json_object_get_int64(o))
        case json_type_double:
            let d = json_object_get_double(o)
            guard d.isFinite else { throw CytoError(.invalidInput, "invalid JSON: NaN and Infinity are not JSON numbers") }
            return .double(d)
        case json_type_string:
            let n = Int(json_object_get_string_len(o))
            guard let p = json_object_get_string(o) else { return .string("") }
            let buf = UnsafeRawBufferPointer(start: p, count: n)
            return .string(String(decoding: buf, as: UTF8.self))
        case json_type_array:
            let n = json_object_array_length(o)
            var a: [JSON] = []
            a.reserveCapacity(n)
            for i in 0..<n { a.append(try convert(json_object_array_get_idx(o, i))) }
            return .array(a)
        case json_type_object:
            var d: [String: JSON] = [:]
            var it = json_object_iter_begin(o)
            var end = json_object_iter_end(o)
            while json_object_iter_equal(&it, &end) == 0 {
                let k = String(cString: json_object_iter_peek_name(&it))
                d[k] = try convert(json_object_iter_peek_value(&it))
                json_object_iter_next(&it)
            }
            return .object(d)
        default: return .null
        }
    }

    // MARK: Serialization

    /// Compact JSON text on one line (no newline characters: strings escape them).
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    public func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += JSON.numberText(d)
        case .float(let f): out += f.isFinite ? JSON.trimmed(f.description) : "null"
        case .string(let s): JSON.writeString(s, to: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() { if i > 0 { out += "," }; v.write(to: &out) }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                JSON.writeString(k, to: &out)
                out += ":"
                o[k]!.write(to: &out)
            }
            out += "}"
        }
    }

    /// JSON has no NaN or infinity: those become null.
    static func numberText(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d.rounded() == d && abs(d) < 1e15 { return String(Int64(d)) }
        return trimmed(d.description)
    }

    /// Swift's shortest round-trip text is valid JSON ("1e-05", "1.5"); "e+" is shortened to "e".
    private static func trimmed(_ s: String) -> String {
        // Most numbers have no "+": skip Foundation's search (a few % of a worker streaming features).
        s.utf8.contains(UInt8(ascii: "+")) ? s.replacingOccurrences(of: "e+", with: "e") : s
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{2028}": out += "\\u2028"
            case "\u{2029}": out += "\\u2029"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
                ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral,
                ExpressibleByNilLiteral {
    public init(stringLiteral v: String) { self = .string(v) }
    public init(integerLiteral v: Int64) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(arrayLiteral v: JSON...) { self = .array(v) }
    public init(dictionaryLiteral v: (String, JSON)...) { self = .object(Dictionary(v, uniquingKeysWith: { $1 })) }
    public init(nilLiteral: ()) { self = .null }
}

extension JSON {
    public init(_ v: Int) { self = .int(Int64(v)) }
    public init(_ v: String) { self = .string(v) }
    public init(_ v: [Float]) { self = .array(v.map { .float($0) }) }
}
