import Foundation
import CytoCore

/// What to do with a feature value that is empty, NaN or infinite: fail naming the line and the
/// column (the default), or drop the whole row and report it.
public enum NonFinitePolicy: String, Sendable, CaseIterable {
    case error
    case dropRow = "drop-row"
}

/// How a feature table file is read.
public struct FeatureReadOptions: Sendable {
    /// Columns treated as metadata besides `Metadata_*` and the key columns ImageNumber,
    /// ObjectNumber, Location_* (`TableColumns`), for example `path`.
    public var extraMetadataColumns: Set<String> = []
    /// For a .npy matrix: the CSV of its rows' metadata (default: `X.metadata.csv` beside `X.npy`).
    public var metadataPath: String? = nil
    public var nonFinite: NonFinitePolicy = .error
    public init(extraMetadataColumns: Set<String> = [], metadataPath: String? = nil, nonFinite: NonFinitePolicy = .error) {
        self.extraMetadataColumns = extraMetadataColumns
        self.metadataPath = metadataPath
        self.nonFinite = nonFinite
    }
}

/// A row dropped while reading because a feature was missing or not finite.
public struct DroppedRow: Sendable, Equatable {
    /// File line (CSV) or 0-based row index (.npy) of the row.
    public var line: Int
    public var field: String
    public var value: String
}

/// Streams a feature table one row at a time: a CSV (`Metadata_*` columns, then numeric
/// features) or a .npy matrix with a metadata CSV beside it. Every value is checked: a
/// non-numeric feature is an error naming path, line and column; empty, NaN and infinite values
/// follow `NonFinitePolicy`.
public final class FeatureRowReader {
    public let path: String
    public let metadataColumns: [String]
    public let featureNames: [String]
    /// Rows dropped under `.dropRow` (all of them are counted; the first 1,000 are kept here).
    public private(set) var droppedRows: [DroppedRow] = []
    public private(set) var droppedRowCount = 0
    private let policy: NonFinitePolicy

    private enum Source {
        case csv(CSVReader, featureColumns: [Int], metadataColumns: [Int])
        case npy(NPYRowReader, meta: CSVReader)
    }
    private var source: Source

    /// The path a .npy matrix's metadata CSV has when none is given: `X.metadata.csv` for `X.npy`.
    public static func defaultMetadataPath(for npyPath: String) -> String {
        let stem = npyPath.hasSuffix(".npy") ? String(npyPath.dropLast(4)) : npyPath
        return stem + ".metadata.csv"
    }

    public init(path: String, options: FeatureReadOptions = FeatureReadOptions()) throws {
        self.path = path
        policy = options.nonFinite
        if path.lowercased().hasSuffix(".npy") {
            let npy = try NPYRowReader(path: path)
            let metaPath = options.metadataPath ?? FeatureRowReader.defaultMetadataPath(for: path)
            guard fileExists(metaPath) else {
                throw CytoError(.fileNotFound, "no metadata CSV for the .npy matrix \(path): give one with --meta", path: metaPath)
            }
            let meta = try CSVReader(path: metaPath)
            metadataColumns = meta.columns
            featureNames = (0..<npy.columns).map { "feature_\($0)" }
            source = .npy(npy, meta: meta)
        } else {
            let csv = try CSVReader(path: path)
            var fc: [Int] = [], mc: [Int] = []
            var seen = Set<String>()
            for (i, name) in csv.columns.enumerated() {
                guard seen.insert(name).inserted else {
                    throw CytoError(.invalidInput, "column '\(name)' appears twice in the header", path: path, line: 1, field: name)
                }
                if TableColumns.isMetadataByDefault(name) || options.extraMetadataColumns.contains(name) { mc.append(i) } else { fc.append(i) }
            }
            metadataColumns = mc.map { csv.columns[$0] }
            featureNames = fc.map { csv.columns[$0] }
            source = .csv(csv, featureColumns: fc, metadataColumns: mc)
        }
        if featureNames.isEmpty {
            throw CytoError(.invalidInput, "no feature columns (every column is metadata)", path: path)
        }
    }

    /// The next kept row: its metadata, with its features written into `features`
    /// (`featureNames.count` values) and its line (CSV) or row index (.npy). Nil at the end.
    public func next(into features: UnsafeMutableBufferPointer<Double>) throws -> (metadata: [String], line: Int)? {
        precondition(features.count == featureNames.count)
        while true {
            switch source {
            case .csv(let csv, let fc, let mc):
                guard let rec = try csv.next() else { return nil }
                var bad: DroppedRow? = nil
                for (j, c) in fc.enumerated() {
                    let text = rec[c]
                    if let v = Double(text) ?? Double(text.trimmingCharacters(in: .whitespaces)), v.isFinite {
                        features[j] = v
                        continue
                    }
                    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
                    let missing = t.isEmpty || ["nan", "-nan", "na", "n/a", "null", "none", "inf", "+inf", "-inf",
                                                "infinity", "+infinity", "-infinity"].contains(t)
                    if !missing {
                        throw CytoError(.invalidInput, "non-numeric feature value '\(text)' (columns other than Metadata_*, ImageNumber, ObjectNumber and Location_* are features; declare others with --metadata-column)", path: path, line: csv.line, field: featureNames[j])
                    }
                    if policy == .error {
                        throw CytoError(.invalidInput,
                                        "feature value '\(text)' is missing or not finite (use --on-nonfinite drop-row to drop such rows)",
                                        path: path, line: csv.line, field: featureNames[j])
                    }
                    if bad == nil { bad = DroppedRow(line: csv.line, field: featureNames[j], value: text) }
                }
                if let bad { record(bad); continue }
                return (mc.map { rec[$0] }, csv.line)
            case .npy(let npy, let meta):
                let row = npy.rowIndex
                let have = try npy.next(into: features)
                let m = try meta.next()
                if !have {
                    if m != nil {
                        throw CytoError(.shapeMismatch, "the metadata CSV has more rows than the matrix's \(npy.rows)", path: meta.path, line: meta.line)
                    }
                    return nil
                }
                guard let m else {
                    throw CytoError(.shapeMismatch, "the metadata CSV has \(row) rows, the matrix \(npy.rows)", path: meta.path)
                }
                if let j = (0..<features.count).first(where: { !features[$0].isFinite }) {
                    let d = DroppedRow(line: row, field: featureNames[j], value: String(features[j]))
                    if policy == .error {
                        throw CytoError(.invalidInput, "feature value \(features[j]) is not finite (use --on-nonfinite drop-row to drop such rows)",
                                        path: path, field: featureNames[j], index: row)
                    }
                    record(d); continue
                }
                return (m, row)
            }
        }
    }

    private func record(_ d: DroppedRow) {
        droppedRowCount += 1
        if droppedRows.count < 1000 { droppedRows.append(d) }
    }

    /// Reads a whole table into memory (for well- or treatment-level tables, and for tests).
    public static func readTable(path: String, options: FeatureReadOptions = FeatureReadOptions()) throws -> (table: ProfileTable, reader: FeatureRowReader) {
        let r = try FeatureRowReader(path: path, options: options)
        var t = ProfileTable(metadataColumns: r.metadataColumns, featureNames: r.featureNames)
        var buf = [Double](repeating: 0, count: r.featureNames.count)
        while true {
            let got = try buf.withUnsafeMutableBufferPointer { try r.next(into: $0) }
            guard let got else { break }
            buf.withUnsafeBufferPointer { t.append(metadata: got.metadata, features: $0, line: got.line) }
        }
        return (t, r)
    }
}

/// Writes a feature table as it is produced: a CSV (metadata columns, then features, values in
/// shortest round-trip form), or a float32 .npy matrix plus its metadata CSV. Both are atomic:
/// nothing appears at the destination until `finish()`.
public final class FeatureRowWriter {
    public let path: String
    public let metadataColumns: [String]
    public let featureNames: [String]
    private var csv: CSVWriter?
    private var npy: NPYRowWriter?
    private var floats: [Float]

    /// `metadataPath` is used for .npy output only (default `X.metadata.csv`).
    public init(path: String, metadataColumns: [String], featureNames: [String], metadataPath: String? = nil) throws {
        self.path = path
        self.metadataColumns = metadataColumns
        self.featureNames = featureNames
        floats = [Float](repeating: 0, count: featureNames.count)
        if path.lowercased().hasSuffix(".npy") {
            npy = try NPYRowWriter(path: path, columns: featureNames.count)
            csv = try CSVWriter(path: metadataPath ?? FeatureRowReader.defaultMetadataPath(for: path), header: metadataColumns)
        } else {
            csv = try CSVWriter(path: path, header: metadataColumns + featureNames)
        }
    }

    public func write(metadata: [String], features: UnsafeBufferPointer<Double>) throws {
        precondition(metadata.count == metadataColumns.count && features.count == featureNames.count)
        if let npy {
            for j in 0..<features.count { floats[j] = Float(features[j]) }
            try npy.append(floats)
            try csv!.write(metadata)
        } else {
            var rec = metadata
            rec.reserveCapacity(metadata.count + features.count)
            for v in features { rec.append(formatNumber(v)) }
            try csv!.write(rec)
        }
    }

    public func finish() throws {
        try npy?.finish()
        try csv?.finish()
    }

    /// Writes a whole in-memory table.
    public static func write(_ table: ProfileTable, to path: String, metadataPath: String? = nil) throws {
        let w = try FeatureRowWriter(path: path, metadataColumns: table.metadataColumns, featureNames: table.featureNames,
                                     metadataPath: metadataPath)
        try table.features.withUnsafeBufferPointer { all in
            for r in 0..<table.count {
                let d = table.featureCount
                try w.write(metadata: table.metadata[r], features: UnsafeBufferPointer(rebasing: all[(r * d)..<((r + 1) * d)]))
            }
        }
        try w.finish()
    }
}

/// Shortest text that reads back as the same Double ("0.1", "1e-05", "12").
func formatNumber(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
    return v.description
}
