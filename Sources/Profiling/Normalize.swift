import CBLAS
import CytoCore

/// The four whitening variants of pycytominer's `Spherize` (PCA or ZCA, on the covariance or,
/// with `-cor`, on the correlation matrix).
public enum SpherizeMethod: String, Sendable, CaseIterable {
    case pca = "PCA", zca = "ZCA", pcaCor = "PCA-cor", zcaCor = "ZCA-cor"
    var isZCA: Bool { self == .zca || self == .zcaCor }
    var isCor: Bool { self == .pcaCor || self == .zcaCor }
}

/// How features are normalized against control rows.
public enum NormalizationMethod: Sendable, Equatable {
    /// (x - mean) / sample standard deviation of the controls (ddof = 1).
    case standardize
    /// (x - median) / (1.4826 * MAD) of the controls: pycytominer's `mad_robustize`.
    case robustize
    /// pycytominer's `spherize` (version 1.7): centre on the controls (and for `-cor` divide by
    /// their population standard deviation), then whiten with the controls' eigenvectors, scaling
    /// direction k by sqrt(n-1) / (s_k + epsilon) where s_k are the singular values of the centred
    /// control matrix; directions beyond the controls' rank take the smallest retained s_k.
    case spherize(SpherizeMethod, epsilon: Double, center: Bool)
    /// Typical variation normalization (Ando et al. 2017): standardize to each group's controls,
    /// then whiten with (C + epsilon I)^(-1/2), C the covariance of all controls so standardized.
    case tvn(epsilon: Double)
    /// CORAL (Sun et al. 2016) per group (batch): x' = (x - mean_b) (C_b + lambda I)^(-1/2)
    /// (C + lambda I)^(1/2) + mean, C_b and mean_b from the batch's controls, C and mean from all.
    case coral(lambda: Double)

    /// Short name, as on the command line.
    public var name: String {
        switch self {
        case .standardize: return "standardize"
        case .robustize: return "robustize"
        case .spherize(let m, _, _): return "spherize-\(m.rawValue)"
        case .tvn: return "tvn"
        case .coral: return "coral"
        }
    }
}

/// What to normalize, against which rows, in which groups.
public struct NormalizationOptions: Sendable {
    public var method: NormalizationMethod
    /// The reference rows (for example `Metadata_Compound=DMSO`); nil means every row, as
    /// pycytominer's `samples="all"`.
    public var control: RowCondition?
    /// Normalize each group of this column (for example `Metadata_Plate`, or the batch column
    /// for CORAL) against its own controls; nil means one global group.
    public var groupColumn: String?

    public init(method: NormalizationMethod, control: RowCondition?, groupColumn: String?) {
        self.method = method; self.control = control; self.groupColumn = groupColumn
    }
}

/// A feature left out of the output, and why (for example zero variance among one plate's controls).
public struct DroppedFeature: Sendable, Equatable {
    public var name: String
    public var reason: String
    /// The first group where the reason holds (nil for a global normalization).
    public var group: String?

    public var json: JSON {
        ["feature": .string(name), "reason": .string(reason), "group": group.map { JSON.string($0) } ?? .null]
    }
}

/// y = ((x - center) / scale) * matrix + offset, for row vectors x; the matrix and the offset
/// are optional. One of these per group and stage is all a fitted normalization is.
struct AffineMap: Sendable {
    var center: [Double]
    var scale: [Double]?
    var matrix: [Double]?     // inputs x outputs, row-major
    var outputs: Int
    var offset: [Double]?

    /// Maps `n` rows in place of `x` (n x inputs) into `y` (n x outputs).
    func apply(_ x: UnsafeMutablePointer<Double>, rows n: Int, into y: UnsafeMutablePointer<Double>) {
        let d = center.count
        for r in 0..<n {
            let row = x + r * d
            if let scale { for j in 0..<d { row[j] = (row[j] - center[j]) / scale[j] } }
            else { for j in 0..<d { row[j] -= center[j] } }
        }
        if let matrix {
            matrix.withUnsafeBufferPointer { m in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(outputs), Int32(d),
                            1, x, Int32(d), m.baseAddress, Int32(outputs), 0, y, Int32(outputs))
            }
        } else {
            y.update(from: x, count: n * d)
        }
        if let offset { for r in 0..<n { for j in 0..<outputs { y[r * outputs + j] += offset[j] } } }
    }
}

/// A normalization fitted on control rows: per group (and, for TVN, a second global stage) an
/// affine map. It transforms any row whose group had controls, one block at a time, so files of
/// millions of cells stream through it.
public final class Normalizer: Sendable {
    public let options: NormalizationOptions
    public let inputFeatures: [String]
    /// Indices into `inputFeatures` of the features that are kept.
    public let keptFeatures: [Int]
    public let outputFeatures: [String]
    public let droppedFeatures: [DroppedFeature]
    /// Control rows used per group.
    public let controlCounts: [String: Int]
    private let stages: [[String: AffineMap]]   // group key ("" when global) -> map
    private let stageGlobal: [Bool]

    private init(options: NormalizationOptions, inputFeatures: [String], keptFeatures: [Int], outputFeatures: [String],
                 droppedFeatures: [DroppedFeature], controlCounts: [String: Int], stages: [[String: AffineMap]], stageGlobal: [Bool]) {
        self.options = options; self.inputFeatures = inputFeatures; self.keptFeatures = keptFeatures
        self.outputFeatures = outputFeatures; self.droppedFeatures = droppedFeatures
        self.controlCounts = controlCounts; self.stages = stages; self.stageGlobal = stageGlobal
    }

    /// Fits on `controls` (the reference rows only, all features of the table). `allGroups`,
    /// when given, are the groups of every row to be transformed: a group without controls is an
    /// error here, before anything is written.
    public static func fit(controls: ProfileTable, options: NormalizationOptions, allGroups: [String]? = nil) throws -> Normalizer {
        let groupOf: [String]
        if let g = options.groupColumn {
            groupOf = try controls.metadataValues(g)
        } else {
            groupOf = [String](repeating: "", count: controls.count)
        }
        var members: [String: [Int]] = [:]
        var order: [String] = []
        for (r, g) in groupOf.enumerated() {
            if members[g] == nil { order.append(g) }
            members[g, default: []].append(r)
        }
        if controls.count == 0 {
            throw CytoError(.invalidInput, "no control rows\(options.control.map { " match \($0)" } ?? "")",
                            field: options.control?.column)
        }
        if let allGroups {
            var missing: [String] = []
            var seen = Set<String>()
            for g in allGroups where members[g] == nil && seen.insert(g).inserted { missing.append(g) }
            if !missing.isEmpty {
                let what = options.groupColumn ?? "group"
                throw CytoError(.invalidInput,
                                "\(missing.count) \(what) value(s) have no control rows\(options.control.map { " (\($0))" } ?? ""): \(missing.prefix(10).joined(separator: ", "))\(missing.count > 10 ? ", ..." : ""); remove those rows or normalize globally",
                                field: options.groupColumn)
            }
        }
        for g in order where members[g]!.count < 2 {
            throw CytoError(.invalidInput,
                            "\(options.groupColumn.map { "\($0) '\(g)'" } ?? "the table") has \(members[g]!.count) control row; at least 2 are needed to estimate a spread",
                            field: options.groupColumn)
        }
        let d = controls.featureCount
        let perGroup = order.map { (g: $0, x: controls.rows(members[$0]!).features, n: members[$0]!.count) }

        // Features without spread among some group's controls cannot be scaled: drop them.
        var dropped: [DroppedFeature] = []
        var keep = [Bool](repeating: true, count: d)
        switch options.method {
        case .coral: break
        case .robustize:
            for (g, x, n) in perGroup {
                let med = LinearAlgebra.columnMedians(x, rows: n, columns: d)
                let mad = madColumns(x, rows: n, columns: d, median: med)
                for j in 0..<d where keep[j] && mad[j] == 0 {
                    keep[j] = false
                    dropped.append(DroppedFeature(name: controls.featureNames[j], reason: "median absolute deviation is 0 among the controls", group: options.groupColumn == nil ? nil : g))
                }
            }
        default:
            for (g, x, n) in perGroup {
                let constant = LinearAlgebra.constantColumns(x, rows: n, columns: d)
                for j in 0..<d where keep[j] && constant[j] {
                    keep[j] = false
                    dropped.append(DroppedFeature(name: controls.featureNames[j], reason: "zero variance among the controls", group: options.groupColumn == nil ? nil : g))
                }
            }
        }
        let kept = (0..<d).filter { keep[$0] }
        guard !kept.isEmpty else {
            throw CytoError(.invalidInput, "every feature has zero spread among the controls of some group; nothing is left to normalize")
        }
        // Keep dropped features in input order.
        dropped.sort { a, b in controls.featureNames.firstIndex(of: a.name)! < controls.featureNames.firstIndex(of: b.name)! }
        let k = kept.count
        let reduced = perGroup.map { (g: $0.g, x: selectColumns($0.x, rows: $0.n, columns: d, kept), n: $0.n) }

        var stages: [[String: AffineMap]] = []
        var stageGlobal: [Bool] = []
        var outputNames = kept.map { controls.featureNames[$0] }
        switch options.method {
        case .standardize, .tvn:
            var maps: [String: AffineMap] = [:]
            for (g, x, n) in reduced {
                let mean = LinearAlgebra.columnMeans(x, rows: n, columns: k)
                maps[g] = AffineMap(center: mean, scale: LinearAlgebra.columnStd(x, rows: n, columns: k, mean: mean, ddof: 1),
                                    matrix: nil, outputs: k, offset: nil)
            }
            stages.append(maps); stageGlobal.append(false)
            if case .tvn(let eps) = options.method {
                // Second stage: whiten with the covariance of all controls after the first.
                var all: [Double] = []
                var total = 0
                for (g, x, n) in reduced {
                    var y = [Double](repeating: 0, count: n * k)
                    var xx = x
                    xx.withUnsafeMutableBufferPointer { xp in
                        y.withUnsafeMutableBufferPointer { maps[g]!.apply(xp.baseAddress!, rows: n, into: $0.baseAddress!) }
                    }
                    all += y; total += n
                }
                let mean = LinearAlgebra.columnMeans(all, rows: total, columns: k)
                let cov = LinearAlgebra.covariance(all, rows: total, columns: k, mean: mean)
                let e = try LinearAlgebra.symmetricEigen(cov, n: k)
                let w = LinearAlgebra.spectralFunction(values: e.values, vectors: e.vectors, n: k) { 1 / (max($0, 0) + eps).squareRoot() }
                stages.append(["": AffineMap(center: mean, scale: nil, matrix: w, outputs: k, offset: nil)])
                stageGlobal.append(true)
            }
        case .robustize:
            var maps: [String: AffineMap] = [:]
            for (g, x, n) in reduced {
                let med = LinearAlgebra.columnMedians(x, rows: n, columns: k)
                let mad = madColumns(x, rows: n, columns: k, median: med).map { $0 * 1.4826 }
                maps[g] = AffineMap(center: med, scale: mad, matrix: nil, outputs: k, offset: nil)
            }
            stages.append(maps); stageGlobal.append(false)
        case .spherize(let method, let eps, let center):
            var maps: [String: AffineMap] = [:]
            for (g, x, n) in reduced {
                maps[g] = try spherizeMap(x, rows: n, columns: k, method: method, epsilon: eps, center: center,
                                          group: options.groupColumn == nil ? nil : g)
            }
            stages.append(maps); stageGlobal.append(false)
            if !method.isZCA { outputNames = (1...k).map { "PC\($0)" } }
        case .coral(let lambda):
            var all: [Double] = []
            var total = 0
            for (_, x, n) in reduced { all += x; total += n }
            let mean = LinearAlgebra.columnMeans(all, rows: total, columns: k)
            var target = LinearAlgebra.covariance(all, rows: total, columns: k, mean: mean)
            for j in 0..<k { target[j * k + j] += lambda }
            let te = try LinearAlgebra.symmetricEigen(target, n: k)
            let colour = LinearAlgebra.spectralFunction(values: te.values, vectors: te.vectors, n: k) { max($0, 0).squareRoot() }
            var maps: [String: AffineMap] = [:]
            for (g, x, n) in reduced {
                let mb = LinearAlgebra.columnMeans(x, rows: n, columns: k)
                var cb = LinearAlgebra.covariance(x, rows: n, columns: k, mean: mb)
                for j in 0..<k { cb[j * k + j] += lambda }
                let be = try LinearAlgebra.symmetricEigen(cb, n: k)
                let whiten = LinearAlgebra.spectralFunction(values: be.values, vectors: be.vectors, n: k) { 1 / max($0, lambda).squareRoot() }
                var a = [Double](repeating: 0, count: k * k)
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(k), Int32(k), Int32(k),
                            1, whiten, Int32(k), colour, Int32(k), 0, &a, Int32(k))
                maps[g] = AffineMap(center: mb, scale: nil, matrix: a, outputs: k, offset: mean)
            }
            stages.append(maps); stageGlobal.append(false)
        }
        var counts: [String: Int] = [:]
        for (g, _, n) in perGroup { counts[g] = n }
        return Normalizer(options: options, inputFeatures: controls.featureNames, keptFeatures: kept, outputFeatures: outputNames,
                          droppedFeatures: dropped, controlCounts: counts, stages: stages, stageGlobal: stageGlobal)
    }

    /// Normalizes every row of `table` (whose features are `inputFeatures`); rows keep their
    /// order and metadata. A row whose group had no controls is an error naming it.
    public func transform(_ table: ProfileTable) throws -> ProfileTable {
        guard table.featureNames == inputFeatures else {
            throw CytoError(.shapeMismatch, "the table's features differ from those the normalization was fitted on")
        }
        let groups: [String]
        if let g = options.groupColumn { groups = try table.metadataValues(g) } else { groups = [String](repeating: "", count: table.count) }
        var x = table.selectingFeatures(keptFeatures).features
        var width = keptFeatures.count
        for (s, maps) in stages.enumerated() {
            let out = stages[s].values.first!.outputs
            var y = [Double](repeating: 0, count: table.count * out)
            // Rows of one group are gathered, mapped with one matrix product, and scattered back.
            var rowsOf: [String: [Int]] = [:]
            for (r, g) in groups.enumerated() { rowsOf[stageGlobal[s] ? "" : g, default: []].append(r) }
            for (g, rows) in rowsOf {
                guard let map = maps[g] else {
                    throw CytoError(.invalidInput, "\(options.groupColumn ?? "group") '\(g)' has no control rows to normalize against",
                                    line: table.sourceLines[rows[0]], field: options.groupColumn)
                }
                var bx = [Double](repeating: 0, count: rows.count * width)
                for (i, r) in rows.enumerated() { for j in 0..<width { bx[i * width + j] = x[r * width + j] } }
                var by = [Double](repeating: 0, count: rows.count * out)
                bx.withUnsafeMutableBufferPointer { xp in
                    by.withUnsafeMutableBufferPointer { map.apply(xp.baseAddress!, rows: rows.count, into: $0.baseAddress!) }
                }
                for (i, r) in rows.enumerated() { for j in 0..<out { y[r * out + j] = by[i * out + j] } }
            }
            x = y
            width = out
        }
        var t = table
        t.featureNames = outputFeatures
        t.features = x
        return t
    }

    /// The fitted normalization as JSON (method, groups, controls per group, dropped features).
    public var summary: JSON {
        [
            "method": .string(options.method.name),
            "control": options.control.map { JSON.string($0.description) } ?? .null,
            "per": options.groupColumn.map { JSON.string($0) } ?? .null,
            "groups": JSON(controlCounts.count),
            "features_in": JSON(inputFeatures.count),
            "features_out": JSON(outputFeatures.count),
            "features_dropped": .array(droppedFeatures.map { .string($0.name) }),
            "features_dropped_detail": .array(droppedFeatures.map { $0.json }),
        ]
    }
}

/// Fits on the rows of `table` matching `options.control` and normalizes the whole table.
public func normalize(_ table: ProfileTable, options: NormalizationOptions) throws -> (table: ProfileTable, normalizer: Normalizer) {
    let isControl = try options.control?.matches(table) ?? [Bool](repeating: true, count: table.count)
    let controls = table.rows(isControl.indices.filter { isControl[$0] })
    let groups = try options.groupColumn.map { try table.metadataValues($0) }
    let n = try Normalizer.fit(controls: controls, options: options, allGroups: groups)
    return (try n.transform(table), n)
}

/// Median absolute deviation per column (unscaled).
func madColumns(_ x: [Double], rows n: Int, columns d: Int, median: [Double]) -> [Double] {
    var col = [Double](repeating: 0, count: n)
    return (0..<d).map { j in
        for r in 0..<n { col[r] = abs(x[r * d + j] - median[j]) }
        return LinearAlgebra.median(&col)
    }
}

func selectColumns(_ x: [Double], rows n: Int, columns d: Int, _ keep: [Int]) -> [Double] {
    if keep.count == d { return x }
    var out = [Double](repeating: 0, count: n * keep.count)
    for r in 0..<n { for (j, c) in keep.enumerated() { out[r * keep.count + j] = x[r * d + c] } }
    return out
}

/// pycytominer's Spherize fit (see `NormalizationMethod.spherize`) from an eigendecomposition
/// of Xᵀ X / (n - 1), X the centred (and for -cor scaled) controls.
func spherizeMap(_ x: [Double], rows n: Int, columns d: Int, method: SpherizeMethod, epsilon: Double,
                 center: Bool, group: String?) throws -> AffineMap {
    let mean = (center || method.isCor) ? LinearAlgebra.columnMeans(x, rows: n, columns: d) : [Double](repeating: 0, count: d)
    let sd = method.isCor ? LinearAlgebra.columnStd(x, rows: n, columns: d, mean: mean, ddof: 0) : nil
    var xt = x
    for r in 0..<n { for j in 0..<d { xt[r * d + j] = (xt[r * d + j] - mean[j]) / (sd?[j] ?? 1) } }
    let gram = LinearAlgebra.covariance(xt, rows: n, columns: d, mean: [Double](repeating: 0, count: d))
    let e = try LinearAlgebra.symmetricEigen(gram, n: d)
    // Descending order, as singular values come.
    let order = Array((0..<d).reversed())
    let singular = order.map { (max(e.values[$0], 0) * Double(n - 1)).squareRoot() }
    let rank = min(d, (center || method.isCor) ? n - 1 : n)
    let lambdaMax = e.values[order[0]]
    if rank == 0 || e.values[order[rank - 1]] <= lambdaMax * 1e-12 {
        throw CytoError(.invalidInput,
                        "the controls\(group.map { " of '\($0)'" } ?? "") are linearly dependent (rank below \(rank) for \(n) rows and \(d) features): remove collinear features or duplicated control rows, or use tvn, which regularizes")
    }
    let scale = (0..<d).map { k in Double(n - 1).squareRoot() / (singular[min(k, rank - 1)] + epsilon) }
    var m = [Double](repeating: 0, count: d * d)
    if method.isZCA {
        // U diag(scale) Uᵀ, with the scale of each eigenvector in its descending position.
        var byAscending = [Double](repeating: 0, count: d)
        for (pos, k) in order.enumerated() { byAscending[k] = scale[pos] }
        m = LinearAlgebra.spectralProduct(scales: byAscending, vectors: e.vectors, n: d)
    } else {
        // Column k of the map is eigenvector order[k] scaled: output k = scale_k * u_kᵀ x.
        for (pos, k) in order.enumerated() {
            for j in 0..<d { m[j * d + pos] = e.vectors[k * d + j] * scale[pos] }
        }
    }
    return AffineMap(center: mean, scale: sd, matrix: m, outputs: d, offset: nil)
}
