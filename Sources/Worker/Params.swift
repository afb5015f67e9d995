import CytoCore

/// A method's named parameters (or a nested object inside them), read through typed accessors
/// that throw -32602 errors naming the field at fault: "crops[3].box.width must be an integer".
/// Decode every parameter before doing any work, so a bad one is reported before anything happens.
/// `null` is not a value for any parameter: an optional one is left out instead.
public struct Params: Sendable {
    /// The members of this object.
    public let values: [String: JSON]
    /// Where this object sits in the request's params: "" at the top, "crops[3]" inside a list.
    public let path: String
    /// The index in the top-level list this object came from, reported as `error.data.index`.
    public let index: Int?

    public init(_ values: [String: JSON], path: String = "", index: Int? = nil) {
        self.values = values
        self.path = path
        self.index = index
    }

    /// The full name of a member, for error messages: "crops[3].box".
    public func field(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// A -32602 error about member `key`, for checks the typed accessors cannot make.
    public func error(_ key: String, _ message: String) -> RPCError {
        RPCError.invalidParams(field: field(key), "\(field(key)) \(message)", index: index)
    }

    public func has(_ key: String) -> Bool { values[key] != nil }

    /// Rejects members other than `allowed` (and `_meta` at the top level).
    public func rejectUnknown(allowed: Set<String>) throws {
        for key in values.keys.sorted() where !allowed.contains(key) && !(path.isEmpty && key == "_meta") {
            let list = allowed.isEmpty ? "takes no parameters" : "takes " + allowed.sorted().joined(separator: ", ")
            throw RPCError.invalidParams(field: field(key), "unknown parameter \(quoted(field(key))) (\(path.isEmpty ? "this method" : path) \(list))", index: index)
        }
    }

    /// Requires exactly one of `keys` to be present and returns it ("preset" or "config").
    public func exactlyOne(of keys: [String]) throws -> String {
        let present = keys.filter { values[$0] != nil }
        guard present.count == 1 else {
            let names = keys.map(field).joined(separator: " or ")
            if present.isEmpty { throw RPCError.invalidParams(field: field(keys[0]), "give one of \(names)", index: index) }
            throw RPCError.invalidParams(field: field(present[1]), "give only one of \(names)", index: index)
        }
        return present[0]
    }

    // MARK: Raw access

    private func required(_ key: String) throws -> JSON {
        guard let v = values[key] else { throw error(key, "is required") }
        return v
    }

    private func mismatch(_ key: String, _ expected: String, _ got: JSON) -> RPCError {
        error(key, "must be \(expected), not \(got.isNull ? "null" : "a " + got.typeName)")
    }

    // MARK: Strings

    public func string(_ key: String) throws -> String {
        let v = try required(key)
        guard let s = v.stringValue else { throw mismatch(key, "a string", v) }
        return s
    }

    public func optionalString(_ key: String) throws -> String? {
        values[key] == nil ? nil : try string(key)
    }

    public func string(_ key: String, default d: String) throws -> String {
        try optionalString(key) ?? d
    }

    /// A string from a fixed set ("linear" or "slerp").
    public func choice(_ key: String, _ allowed: [String]) throws -> String {
        let s = try string(key)
        guard allowed.contains(s) else {
            throw error(key, "must be one of \(allowed.joined(separator: ", ")), not \(quoted(s))")
        }
        return s
    }

    public func optionalChoice(_ key: String, _ allowed: [String]) throws -> String? {
        values[key] == nil ? nil : try choice(key, allowed)
    }

    public func choice(_ key: String, _ allowed: [String], default d: String) throws -> String {
        try optionalChoice(key, allowed) ?? d
    }

    // MARK: Numbers

    /// An integer (a JSON number without a fractional part), optionally within `range`.
    public func int(_ key: String, in range: ClosedRange<Int>? = nil) throws -> Int {
        let v = try required(key)
        guard let i = v.intValue else { throw mismatch(key, "an integer", v) }
        if let range, !range.contains(i) { throw error(key, Params.outOfRange(range, Double(i))) }
        return i
    }

    public func optionalInt(_ key: String, in range: ClosedRange<Int>? = nil) throws -> Int? {
        values[key] == nil ? nil : try int(key, in: range)
    }

    public func int(_ key: String, default d: Int, in range: ClosedRange<Int>? = nil) throws -> Int {
        try optionalInt(key, in: range) ?? d
    }

    /// Any finite JSON number, optionally within `range`.
    public func number(_ key: String, in range: ClosedRange<Double>? = nil) throws -> Double {
        let v = try required(key)
        guard let d = v.doubleValue else { throw mismatch(key, "a number", v) }
        if let range, !range.contains(d) {
            throw error(key, Params.outOfRange(range, d))
        }
        return d
    }

    public func optionalNumber(_ key: String, in range: ClosedRange<Double>? = nil) throws -> Double? {
        values[key] == nil ? nil : try number(key, in: range)
    }

    public func number(_ key: String, default d: Double, in range: ClosedRange<Double>? = nil) throws -> Double {
        try optionalNumber(key, in: range) ?? d
    }

    // MARK: Booleans

    public func bool(_ key: String) throws -> Bool {
        let v = try required(key)
        guard let b = v.boolValue else { throw mismatch(key, "true or false", v) }
        return b
    }

    public func optionalBool(_ key: String) throws -> Bool? {
        values[key] == nil ? nil : try bool(key)
    }

    public func bool(_ key: String, default d: Bool) throws -> Bool {
        try optionalBool(key) ?? d
    }

    // MARK: Objects and lists

    /// A nested object, with its own accessors that name fields by their full path.
    public func object(_ key: String) throws -> Params {
        let v = try required(key)
        guard let o = v.objectValue else { throw mismatch(key, "an object", v) }
        return Params(o, path: field(key), index: index)
    }

    public func optionalObject(_ key: String) throws -> Params? {
        values[key] == nil ? nil : try object(key)
    }

    public func array(_ key: String) throws -> [JSON] {
        let v = try required(key)
        guard let a = v.arrayValue else { throw mismatch(key, "an array", v) }
        return a
    }

    public func optionalArray(_ key: String) throws -> [JSON]? {
        values[key] == nil ? nil : try array(key)
    }

    /// A list of objects ("crops"): each element as Params named "crops[i]". At the top level
    /// the element's position becomes the error's `index`.
    public func objects(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [Params] {
        let a = try array(key)
        try checkCount(key, a.count, range)
        return try a.enumerated().map { i, v in
            let name = "\(field(key))[\(i)]"
            guard let o = v.objectValue else {
                throw RPCError.invalidParams(field: name, "\(name) must be an object, not \(v.isNull ? "null" : "a " + v.typeName)", index: index ?? i)
            }
            return Params(o, path: name, index: index ?? i)
        }
    }

    public func optionalObjects(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [Params]? {
        values[key] == nil ? nil : try objects(key, count: range)
    }

    public func strings(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [String] {
        let a = try array(key)
        try checkCount(key, a.count, range)
        return try a.enumerated().map { i, v in
            guard let s = v.stringValue else { throw element(key, i, "a string", v) }
            return s
        }
    }

    public func optionalStrings(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [String]? {
        values[key] == nil ? nil : try strings(key, count: range)
    }

    public func numbers(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [Double] {
        let a = try array(key)
        try checkCount(key, a.count, range)
        return try a.enumerated().map { i, v in
            guard let d = v.doubleValue else { throw element(key, i, "a number", v) }
            return d
        }
    }

    /// A vector of numbers as Float32 (latent vectors, features).
    public func floats(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [Float] {
        try numbers(key, count: range).map { Float($0) }
    }

    public func ints(_ key: String, count range: ClosedRange<Int>? = nil) throws -> [Int] {
        let a = try array(key)
        try checkCount(key, a.count, range)
        return try a.enumerated().map { i, v in
            guard let n = v.intValue else { throw element(key, i, "an integer", v) }
            return n
        }
    }

    /// A request id (string or integer), as `notifications/cancelled` names one.
    public func requestID(_ key: String) throws -> RequestID {
        let v = try required(key)
        guard let id = RequestID(json: v) else { throw mismatch(key, "a string or an integer", v) }
        return id
    }

    /// "must be at least 0, not -1": bounds as JSON writes numbers, open ends left unsaid.
    static func outOfRange<T: BinaryInteger>(_ range: ClosedRange<T>, _ value: Double) -> String {
        outOfRange(ClosedRange(uncheckedBounds: (Double(range.lowerBound), Double(range.upperBound))), value)
    }

    static func outOfRange(_ range: ClosedRange<Double>, _ value: Double) -> String {
        let text = { (d: Double) in JSON.double(d).serialized }
        let lowOpen = range.lowerBound <= -1e15, highOpen = range.upperBound >= 1e9
        let bound = highOpen ? "at least \(text(range.lowerBound))"
            : lowOpen ? "at most \(text(range.upperBound))"
            : "between \(text(range.lowerBound)) and \(text(range.upperBound))"
        return "must be \(bound), not \(text(value))"
    }

    private func checkCount(_ key: String, _ n: Int, _ range: ClosedRange<Int>?) throws {
        guard let range, !range.contains(n) else { return }
        if range.lowerBound == range.upperBound { throw error(key, "must have \(range.lowerBound) elements, not \(n)") }
        if range.upperBound == Int.max { throw error(key, "must have at least \(range.lowerBound) elements, not \(n)") }
        throw error(key, "must have between \(range.lowerBound) and \(range.upperBound) elements, not \(n)")
    }

    private func element(_ key: String, _ i: Int, _ expected: String, _ got: JSON) -> RPCError {
        let name = "\(field(key))[\(i)]"
        return RPCError.invalidParams(field: name, "\(name) must be \(expected), not \(got.isNull ? "null" : "a " + got.typeName)", index: index ?? i)
    }
}
