import CytoCore

/// An in-memory feature table: rows of cells, wells or treatments, each with string metadata
/// (`Metadata_*` columns, the pycytominer convention) and a dense row of Double features.
/// This is what the worker passes around in-process; files are streamed by `FeatureRowReader`.
public struct ProfileTable: Sendable, Equatable {
    /// Names of the metadata columns, in order.
    public var metadataColumns: [String]
    /// `metadata[row][column]`, one string per metadata column.
    public var metadata: [[String]]
    /// Names of the feature columns, in order.
    public var featureNames: [String]
    /// Row-major features: row `r` is `features[r * featureCount ..< (r + 1) * featureCount]`.
    public var features: [Double]
    /// For each row, where it came from (file line, or row index) so errors can name it.
    public var sourceLines: [Int]

    public var count: Int { metadata.count }
    public var featureCount: Int { featureNames.count }

    /// An empty table with the given columns.
    public init(metadataColumns: [String], featureNames: [String]) {
        self.metadataColumns = metadataColumns
        self.featureNames = featureNames
        metadata = []
        features = []
        sourceLines = []
    }

    /// A table from whole arrays; `features.count` must be `metadata.count * featureNames.count`.
    public init(metadataColumns: [String], metadata: [[String]], featureNames: [String],
                features: [Double], sourceLines: [Int]? = nil) throws {
        guard features.count == metadata.count * featureNames.count else {
            throw CytoError(.shapeMismatch, "\(features.count) feature values do not fill \(metadata.count) rows x \(featureNames.count) features")
        }
        for (i, m) in metadata.enumerated() where m.count != metadataColumns.count {
            throw CytoError(.shapeMismatch, "row has \(m.count) metadata values, expected \(metadataColumns.count)", index: i)
        }
        self.metadataColumns = metadataColumns
        self.metadata = metadata
        self.featureNames = featureNames
        self.features = features
        self.sourceLines = sourceLines ?? Array(0..<metadata.count)
    }

    /// Appends one row.
    public mutating func append(metadata m: [String], features f: UnsafeBufferPointer<Double>, line: Int) {
        precondition(m.count == metadataColumns.count && f.count == featureCount)
        metadata.append(m)
        features.append(contentsOf: f)
        sourceLines.append(line)
    }

    /// Appends one row from an array of features (Double, or Float as extracted features are).
    public mutating func append(metadata m: [String], features f: [Double], line: Int? = nil) {
        f.withUnsafeBufferPointer { append(metadata: m, features: $0, line: line ?? count) }
    }

    public mutating func append(metadata m: [String], features f: [Float], line: Int? = nil) {
        append(metadata: m, features: f.map(Double.init), line: line)
    }

    /// Row `r`'s features.
    public func row(_ r: Int) -> ArraySlice<Double> {
        features[(r * featureCount)..<((r + 1) * featureCount)]
    }

    /// Index of a metadata column, or an error naming it and the columns that exist.
    public func metadataIndex(_ name: String) throws -> Int {
        guard let i = metadataColumns.firstIndex(of: name) else {
            throw CytoError(.invalidInput,
                            "missing metadata column '\(name)' (have: \(metadataColumns.joined(separator: ", ")))",
                            field: name)
        }
        return i
    }

    /// All values of a metadata column.
    public func metadataValues(_ name: String) throws -> [String] {
        let c = try metadataIndex(name)
        return metadata.map { $0[c] }
    }

    /// The rows at `indices`, in that order.
    public func rows(_ indices: [Int]) -> ProfileTable {
        var t = ProfileTable(metadataColumns: metadataColumns, featureNames: featureNames)
        t.metadata.reserveCapacity(indices.count)
        t.features.reserveCapacity(indices.count * featureCount)
        for r in indices {
            t.metadata.append(metadata[r])
            t.features.append(contentsOf: row(r))
            t.sourceLines.append(sourceLines[r])
        }
        return t
    }

    /// The same rows with only the features at `keep` (indices into `featureNames`).
    public func selectingFeatures(_ keep: [Int]) -> ProfileTable {
        var t = self
        t.featureNames = keep.map { featureNames[$0] }
        let d = featureCount
        var out = [Double](repeating: 0, count: count * keep.count)
        for r in 0..<count {
            for (j, k) in keep.enumerated() { out[r * keep.count + j] = features[r * d + k] }
        }
        t.features = out
        return t
    }
}

/// A row filter of the form `Metadata_Compound=DMSO` (exact string match on one metadata
/// column): how controls are named on the command line and in the API.
public struct RowCondition: Sendable, Equatable, CustomStringConvertible {
    public var column: String
    public var value: String

    public init(column: String, value: String) { self.column = column; self.value = value }

    /// Parses `COLUMN=VALUE`; the value may be empty or contain '='.
    public init(parsing text: String) throws {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw CytoError(.invalidInput, "condition '\(text)' is not of the form COLUMN=VALUE")
        }
        column = String(text[..<eq])
        value = String(text[text.index(after: eq)...])
    }

    public var description: String { "\(column)=\(value)" }

    /// For each row of `table`, whether it matches.
    public func matches(_ table: ProfileTable) throws -> [Bool] {
        let c = try table.metadataIndex(column)
        return table.metadata.map { $0[c] == value }
    }
}

/// Byte-wise (Unicode code point) order of strings, the order Python and most tools use; Swift's
/// own `<` orders by canonical equivalence, which can differ outside ASCII.
@inline(__always)
func codePointLess(_ a: String, _ b: String) -> Bool {
    a.utf8.lexicographicallyPrecedes(b.utf8)
}
