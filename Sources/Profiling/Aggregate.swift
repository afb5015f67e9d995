import CytoCore

/// How the rows of a group become one profile.
public enum AggregationMethod: String, Sendable, CaseIterable {
    /// Column means: the accumulator keeps one running sum per group (streams any number of rows).
    case mean
    /// Column medians: the accumulator keeps the group's rows until `finish()`.
    case median
}

/// Collects rows into groups keyed by strata columns (plate, well, compound, ...) as they
/// stream by, then yields one row per group: the strata, `Metadata_Count` (rows in the group),
/// every other metadata column whose value is constant within every group (others are dropped
/// and reported, unless listed in `joinColumns`: then the group's distinct values are joined
/// with ';'), and the aggregated features. Groups come out in order of first appearance.
public final class GroupAccumulator {
    public static let countColumn = "Metadata_Count"
    public let strata: [String]
    public let method: AggregationMethod
    public let featureNames: [String]
    private let inputColumns: [String]
    private let strataIndex: [Int]
    private let carried: [Int]          // input metadata columns other than strata
    private let join: Set<Int>
    private var groupIndex: [[String]: Int] = [:]
    private var keys: [[String]] = []
    private var counts: [Int] = []
    private var sums: [[Double]] = []       // mean
    private var rows: [[Double]] = []       // median: the group's rows, concatenated
    private var carriedValue: [[String]] = []   // per group, per carried column
    private var carriedJoined: [[[String]]] = []
    private var carriedConstant: [Bool]

    /// `metadataColumns` and `featureNames` describe the rows that will be added.
    public init(strata: [String], metadataColumns: [String], featureNames: [String],
                method: AggregationMethod, joinColumns: Set<String> = []) throws {
        guard !strata.isEmpty else { throw CytoError(.invalidInput, "aggregation needs at least one strata column") }
        var idx: [Int] = []
        for s in strata {
            guard let i = metadataColumns.firstIndex(of: s) else {
                throw CytoError(.invalidInput, "missing strata column '\(s)' (metadata columns: \(metadataColumns.joined(separator: ", ")))", field: s)
            }
            idx.append(i)
        }
        for j in joinColumns where !metadataColumns.contains(j) {
            throw CytoError(.invalidInput, "missing column '\(j)' to join", field: j)
        }
        self.strata = strata
        self.method = method
        self.featureNames = featureNames
        inputColumns = metadataColumns
        strataIndex = idx
        carried = metadataColumns.indices.filter { !idx.contains($0) && metadataColumns[$0] != GroupAccumulator.countColumn }
        join = Set(carried.filter { joinColumns.contains(metadataColumns[$0]) })
        carriedConstant = [Bool](repeating: true, count: carried.count)
    }

    /// Number of groups so far.
    public var groupCount: Int { keys.count }

    /// Adds one row to its group.
    public func add(metadata: [String], features: UnsafeBufferPointer<Double>) {
        precondition(metadata.count == inputColumns.count && features.count == featureNames.count)
        let key = strataIndex.map { metadata[$0] }
        let g: Int
        if let i = groupIndex[key] {
            g = i
        } else {
            g = keys.count
            groupIndex[key] = g
            keys.append(key)
            counts.append(0)
            if method == .mean { sums.append([Double](repeating: 0, count: featureNames.count)) } else { rows.append([]) }
            carriedValue.append(carried.map { metadata[$0] })
            carriedJoined.append(carried.map { [metadata[$0]] })
        }
        counts[g] += 1
        switch method {
        case .mean:
            sums[g].withUnsafeMutableBufferPointer { s in
                for j in 0..<features.count { s[j] += features[j] }
            }
        case .median:
            rows[g].append(contentsOf: features)
        }
        for (c, col) in carried.enumerated() where metadata[col] != carriedValue[g][c] {
            carriedConstant[c] = false
            if join.contains(col) && !carriedJoined[g][c].contains(metadata[col]) { carriedJoined[g][c].append(metadata[col]) }
        }
    }

    /// Adds every row of an in-memory table.
    public func add(_ table: ProfileTable) {
        table.features.withUnsafeBufferPointer { all in
            let d = table.featureCount
            for r in 0..<table.count {
                add(metadata: table.metadata[r], features: UnsafeBufferPointer(rebasing: all[(r * d)..<((r + 1) * d)]))
            }
        }
    }

    /// The aggregated table and the metadata columns dropped because they varied within a group.
    public func finish() -> (table: ProfileTable, droppedColumns: [String]) {
        let kept = carried.indices.filter { carriedConstant[$0] || join.contains(carried[$0]) }
        let dropped = carried.indices.filter { !kept.contains($0) }.map { inputColumns[carried[$0]] }
        var t = ProfileTable(metadataColumns: strata + [GroupAccumulator.countColumn] + kept.map { inputColumns[carried[$0]] },
                             featureNames: featureNames)
        let d = featureNames.count
        var out = [Double](repeating: 0, count: d)
        for g in 0..<keys.count {
            let n = counts[g]
            switch method {
            case .mean:
                for j in 0..<d { out[j] = sums[g][j] / Double(n) }
            case .median:
                out = LinearAlgebra.columnMedians(rows[g], rows: n, columns: d)
            }
            let m = keys[g] + [String(n)] + kept.map { c in
                join.contains(carried[c]) ? carriedJoined[g][c].joined(separator: ";") : carriedValue[g][c]
            }
            out.withUnsafeBufferPointer { t.append(metadata: m, features: $0, line: g) }
        }
        return (t, dropped)
    }
}

/// Aggregates an in-memory table by `strata` (see `GroupAccumulator`).
public func aggregate(_ table: ProfileTable, by strata: [String], method: AggregationMethod,
                      joinColumns: Set<String> = []) throws -> (table: ProfileTable, droppedColumns: [String]) {
    let acc = try GroupAccumulator(strata: strata, metadataColumns: table.metadataColumns,
                                   featureNames: table.featureNames, method: method, joinColumns: joinColumns)
    acc.add(table)
    return acc.finish()
}
