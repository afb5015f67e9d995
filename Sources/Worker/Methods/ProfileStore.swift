import CytoCore
import Foundation
import Profiling

/// The worker's named profile tables (PROTOCOL.md §8.7): `features/extract` with `keep` appends
/// cells to one, `profiles/aggregate` and `profiles/normalize` derive new ones. Shared by method
/// groups through `server.service(ProfileStore.self)`. Tables are values: a reader takes a copy
/// (copy-on-write, so free until someone writes), and a method replaces or appends only once its
/// work has succeeded, so a failed or cancelled request leaves every table as it was.
final class ProfileStore: @unchecked Sendable {
    private let tables = Locked<[String: ProfileTable]>([:])

    /// The table named `name`; -32014 naming the parameter `field` when there is none.
    func table(_ name: String, field: String) throws -> ProfileTable {
        if let t = tables.withLock({ $0[name] }) { return t }
        let have = names
        throw CytoError(.invalidInput, "no table \(quoted(name)) in the worker (\(have.isEmpty ? "it holds none" : "it holds " + have.map { quoted($0) }.joined(separator: ", ")))",
                        field: field)
    }

    /// Stores `table` under `name`, replacing any table of that name.
    func put(_ name: String, _ table: ProfileTable) {
        tables.withLock { $0[name] = table }
    }

    /// Removes a table; false when there was none.
    func drop(_ name: String) -> Bool {
        tables.withLock { $0.removeValue(forKey: name) != nil }
    }

    var names: [String] { tables.withLock { $0.keys.sorted(by: codePointOrder) } }

    /// Every table, by name in code point order.
    var all: [(name: String, table: ProfileTable)] {
        tables.withLock { t in t.keys.sorted(by: codePointOrder).map { ($0, t[$0]!) } }
    }

    /// Appends rows to table `name` (created when absent), all or nothing. New metadata columns
    /// are added (earlier rows get "" there); the features must have the table's names.
    /// Returns the table's row count afterwards.
    func append(_ name: String, metadataColumns: [String], metadata: [[String]], featureNames: [String],
                features: [Double]) throws -> Int {
        try tables.withLock { all in
            var t = all[name] ?? ProfileTable(metadataColumns: [], featureNames: featureNames)
            guard t.featureNames == featureNames else {
                throw CytoError(.shapeMismatch,
                                "table \(quoted(name)) holds \(t.featureCount) features (\(t.featureNames.first ?? "")...), these rows have \(featureNames.count) (\(featureNames.first ?? "")...): keep them in another table",
                                field: "table")
            }
            for c in metadataColumns where !t.metadataColumns.contains(c) {
                t.metadataColumns.append(c)
                for r in t.metadata.indices { t.metadata[r].append("") }
            }
            let position = metadataColumns.map { t.metadataColumns.firstIndex(of: $0)! }
            let width = t.metadataColumns.count
            for m in metadata {
                var row = [String](repeating: "", count: width)
                for (i, v) in m.enumerated() { row[position[i]] = v }
                t.metadata.append(row)
                t.sourceLines.append(t.count)
            }
            t.features.append(contentsOf: features)
            precondition(t.features.count == t.count * t.featureCount && metadata.allSatisfy { $0.count == metadataColumns.count })
            all[name] = t
            return t.count
        }
    }
}

/// Byte-wise order of names, as Python sorts them.
func codePointOrder(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

/// TableInfo (PROTOCOL.md §7): a table's name, size and metadata columns.
func tableInfo(_ name: String, _ t: ProfileTable) -> [String: JSON] {
    ["name": .string(name), "rows": JSON(t.count), "features": JSON(t.featureCount),
     "metadataColumns": .array(t.metadataColumns.map { .string($0) })]
}

/// A TableRef decoded (PROTOCOL.md §7): a table held in the worker, or a feature table file
/// (CSV with `Metadata_*` columns, or a .npy matrix with its metadata CSV).
enum TableRef {
    case held(String)
    case file(String, FeatureReadOptions)

    /// Decodes `params[key]`: `{"table"}` or `{"path", "metadataColumns", "metadataPath"}`.
    init(_ params: Params, _ key: String) throws {
        let p = try params.object(key)
        if try p.exactlyOne(of: ["table", "path"]) == "table" {
            try p.rejectUnknown(allowed: ["table"])
            self = .held(try nonEmpty(p, "table"))
        } else {
            try p.rejectUnknown(allowed: ["path", "metadataColumns", "metadataPath"])
            let path = try nonEmpty(p, "path")
            var o = FeatureReadOptions()
            o.extraMetadataColumns = Set(try p.optionalStrings("metadataColumns") ?? [])
            o.metadataPath = try p.optionalString("metadataPath")
            self = .file(path, o)
        }
    }

    /// The file this table comes from, to name in errors; nil for a held table.
    var path: String? {
        if case .file(let p, _) = self { return p }
        return nil
    }

    /// The table: a copy of the held one, or the file read whole (checking for cancellation
    /// every few thousand rows, so a long read can be stopped).
    func load(_ store: ProfileStore, field: String, cancellation: CancellationToken) throws -> ProfileTable {
        switch self {
        case .held(let name):
            return try store.table(name, field: field + ".table")
        case .file(let path, let options):
            let r = try FeatureRowReader(path: path, options: options)
            var t = ProfileTable(metadataColumns: r.metadataColumns, featureNames: r.featureNames)
            var buf = [Double](repeating: 0, count: r.featureNames.count)
            while let got = try buf.withUnsafeMutableBufferPointer({ try r.next(into: $0) }) {
                buf.withUnsafeBufferPointer { t.append(metadata: got.metadata, features: $0, line: got.line) }
                if t.count % 4096 == 0 { try cancellation.check() }
            }
            return t
        }
    }

    /// Runs `body`, naming this reference's file in a library error that names none.
    func located<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch var e as CytoError {
            if e.path == nil, let path { e.path = path }
            throw e
        }
    }
}

/// A required string parameter that may not be empty.
func nonEmpty(_ p: Params, _ key: String) throws -> String {
    let s = try p.string(key)
    guard !s.isEmpty else { throw p.error(key, "must not be empty") }
    return s
}

/// An optional string parameter that may not be empty.
func optionalNonEmpty(_ p: Params, _ key: String) throws -> String? {
    p.has(key) ? try nonEmpty(p, key) : nil
}

/// A metadata column named by a parameter must exist in the table: -32014 naming the parameter.
func requireColumn(_ table: ProfileTable, _ column: String, field: String, source: TableRef) throws {
    guard table.metadataColumns.contains(column) else {
        throw CytoError(.invalidInput,
                        "the table has no metadata column \(quoted(column)) (it has \(table.metadataColumns.isEmpty ? "none" : table.metadataColumns.joined(separator: ", ")))",
                        path: source.path, field: field)
    }
}

/// The values of `{"column", "values"}` (controls, exclusions): strings match a cell exactly,
/// numbers match a cell that reads as the same number ("5", "5.0" and "5e0" all match 5).
struct ValueMatch {
    var column: String
    var strings: Set<String>
    var numbers: Set<Double>
    var text: String

    init(_ params: Params, _ key: String) throws {
        let p = try params.object(key)
        try p.rejectUnknown(allowed: ["column", "values"])
        column = try nonEmpty(p, "column")
        let values = try p.array("values")
        guard !values.isEmpty else { throw p.error("values", "must have at least 1 element, not 0") }
        strings = []
        numbers = []
        for (i, v) in values.enumerated() {
            if let s = v.stringValue { strings.insert(s) }
            else if let d = v.doubleValue { numbers.insert(d) }
            else {
                let name = p.field("values") + "[\(i)]"
                throw RPCError.invalidParams(field: name, "\(name) must be a string or a number, not \(v.isNull ? "null" : "a " + v.typeName)")
            }
        }
        text = values.map { $0.stringValue ?? $0.serialized }.joined(separator: " or ")
    }

    /// For each row, whether its value in `column` is one of the values.
    func matches(_ table: ProfileTable) throws -> [Bool] {
        let c = try table.metadataIndex(column)
        return table.metadata.map { m in
            let v = m[c]
            if strings.contains(v) { return true }
            if !numbers.isEmpty, let d = Double(v.trimmingCharacters(in: .whitespaces)) { return numbers.contains(d) }
            return false
        }
    }
}
