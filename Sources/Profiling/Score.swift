import Foundation
import CBLAS
import CytoCore

/// Distance between two profiles.
public enum DistanceMetric: String, Sendable, CaseIterable {
    /// 1 - cos(a, b).
    case cosine
    /// 1 - Pearson correlation of the two profiles' values (each centred on its own mean).
    case correlation
    /// Euclidean distance.
    case euclidean
}

/// A treatment: one compound at one concentration, with its mechanism of action, the batches
/// its wells came from (for NSCB) and how many rows were aggregated into it.
public struct Treatment: Sendable, Equatable {
    public var compound: String
    public var concentration: Double
    public var moa: String
    public var batches: [String]
    public var count: Int

    public init(compound: String, concentration: Double, moa: String, batches: [String], count: Int) {
        self.compound = compound; self.concentration = concentration; self.moa = moa
        self.batches = batches; self.count = count
    }

    /// The order ties are broken in: compound (code point order), then concentration.
    public static func precedes(_ a: Treatment, _ b: Treatment) -> Bool {
        if a.compound != b.compound { return codePointLess(a.compound, b.compound) }
        return a.concentration < b.concentration
    }

    var keyJSON: JSON { ["compound": .string(compound), "concentration": .double(concentration)] }
}

/// Which metadata columns give a row's treatment.
public struct TreatmentColumns: Sendable {
    public var compound = "Metadata_Compound"
    public var concentration = "Metadata_Concentration"
    public var moa = "Metadata_MOA"
    /// The batch column for NSCB (values may list several batches separated by ';'); nil: no NSCB.
    public var batch: String? = "Metadata_Batch"
    public init(compound: String = "Metadata_Compound", concentration: String = "Metadata_Concentration",
                moa: String = "Metadata_MOA", batch: String? = "Metadata_Batch") {
        self.compound = compound; self.concentration = concentration; self.moa = moa; self.batch = batch
    }
}

/// Treatment profiles aggregated from rows (wells), sorted by (compound, concentration).
public struct TreatmentProfiles: Sendable {
    public var treatments: [Treatment]
    /// Row-major, one row per treatment.
    public var profiles: [Double]
    public var featureNames: [String]
    /// Rows left out: controls, and rows with no MOA.
    public var controlRows: Int
    public var unannotatedRows: Int
}

/// Groups the non-control rows that have a MOA into treatments (compound, concentration) and
/// aggregates each group's features. A treatment whose rows disagree on the MOA, or a
/// concentration that is not a number, is an error naming the line.
public func treatmentProfiles(from table: ProfileTable, columns: TreatmentColumns = TreatmentColumns(),
                              control: RowCondition?, aggregation: AggregationMethod) throws -> TreatmentProfiles {
    let ci = try table.metadataIndex(columns.compound)
    let ki = try table.metadataIndex(columns.concentration)
    let mi = try table.metadataIndex(columns.moa)
    let bi = try columns.batch.map { try table.metadataIndex($0) }
    let isControl = try control?.matches(table) ?? [Bool](repeating: false, count: table.count)
    struct Key: Hashable { var compound: String; var concentration: Double }
    var index: [Key: Int] = [:]
    var treatments: [Treatment] = []
    var members: [[Int]] = []
    var firstLine: [Int] = []
    var controls = 0, unannotated = 0
    for r in 0..<table.count {
        if isControl[r] { controls += 1; continue }
        let m = table.metadata[r]
        let moa = m[mi].trimmingCharacters(in: .whitespaces)
        if moa.isEmpty { unannotated += 1; continue }
        let compound = m[ci]
        guard let conc = Double(m[ki].trimmingCharacters(in: .whitespaces)), conc.isFinite else {
            throw CytoError(.invalidInput, "concentration '\(m[ki])' is not a number", line: table.sourceLines[r], field: columns.concentration)
        }
        let key = Key(compound: compound, concentration: conc)
        let batches = bi.map { m[$0].split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } } ?? []
        if let t = index[key] {
            guard treatments[t].moa == moa else {
                throw CytoError(.invalidInput,
                                "treatment \(compound) at \(m[ki]) has MOA '\(moa)' here but '\(treatments[t].moa)' on line \(firstLine[t])",
                                line: table.sourceLines[r], field: columns.moa)
            }
            for b in batches where !treatments[t].batches.contains(b) { treatments[t].batches.append(b) }
            treatments[t].count += 1
            members[t].append(r)
        } else {
            index[key] = treatments.count
            treatments.append(Treatment(compound: compound, concentration: conc, moa: moa, batches: batches, count: 1))
            members.append([r])
            firstLine.append(table.sourceLines[r])
        }
    }
    let order = treatments.indices.sorted { Treatment.precedes(treatments[$0], treatments[$1]) }
    let d = table.featureCount
    var profiles = [Double](repeating: 0, count: order.count * d)
    var sorted: [Treatment] = []
    for (pos, t) in order.enumerated() {
        var tr = treatments[t]
        tr.batches.sort(by: codePointLess)
        sorted.append(tr)
        let rows = table.rows(members[t])
        let p: [Double]
        switch aggregation {
        case .mean: p = LinearAlgebra.columnMeans(rows.features, rows: rows.count, columns: d)
        case .median: p = LinearAlgebra.columnMedians(rows.features, rows: rows.count, columns: d)
        }
        for j in 0..<d { profiles[pos * d + j] = p[j] }
    }
    return TreatmentProfiles(treatments: sorted, profiles: profiles, featureNames: table.featureNames,
                             controlRows: controls, unannotatedRows: unannotated)
}

/// One treatment's outcome: its nearest neighbours (index into the treatments, distance) and
/// its average precision.
public struct TreatmentScore: Sendable {
    public var nscNeighbor: Int?
    public var nscDistance: Double?
    public var nscCorrect: Bool
    /// Nil when the treatment is dropped from NSCB (no same-MOA candidate outside its batches).
    public var nscbNeighbor: Int?
    public var nscbDistance: Double?
    public var nscbCorrect: Bool?
    /// Nil when no other compound shares its MOA.
    public var averagePrecision: Double?
    /// The nearest treatments of other compounds, nearest first (index, distance), as many as asked.
    public var neighbors: [(index: Int, distance: Double)] = []
}

/// MOA scores of a set of treatment profiles (see `scoreMOA`).
public struct MOAScore: Sendable {
    public var treatments: [Treatment]
    public var scores: [TreatmentScore]
    public var distance: DistanceMetric
    /// Share of treatments whose nearest other-compound neighbour has their MOA.
    public var nsc: Double
    /// The same, the neighbour also sharing no batch, over the treatments not dropped; nil
    /// without batches or when every treatment is dropped.
    public var nscb: Double?
    /// Mean over compounds of each compound's share of NSC-correct treatments (CytoGAN Table 1).
    public var perCompound: Double
    /// The same for NSCB, over compounds with a treatment kept in NSCB.
    public var nscbPerCompound: Double?
    /// Mean average precision over the treatments that have a same-MOA other-compound treatment.
    public var map: Double?
    /// Indices of the treatments dropped from NSCB.
    public var nscbDropped: [Int]
    /// MOA labels in code-point order, and confusion counts [true MOA][predicted MOA].
    public var moas: [String]
    public var confusionNSC: [[Int]]
    public var confusionNSCB: [[Int]]?

    /// The report as JSON: nsc, nscb, per_compound, map, treatments, nscb_dropped, confusion.
    public var json: JSON {
        func neighbor(_ i: Int?, _ d: Double?) -> JSON {
            guard let i else { return .null }
            return ["compound": .string(treatments[i].compound), "concentration": .double(treatments[i].concentration),
                    "moa": .string(treatments[i].moa), "distance": .double(d!)]
        }
        let rows: [JSON] = treatments.indices.map { i in
            let t = treatments[i], s = scores[i]
            return [
                "compound": .string(t.compound), "concentration": .double(t.concentration), "moa": .string(t.moa),
                "count": JSON(t.count), "batches": .array(t.batches.map { .string($0) }),
                "nsc_neighbor": neighbor(s.nscNeighbor, s.nscDistance), "nsc_correct": .bool(s.nscCorrect),
                "nscb_neighbor": neighbor(s.nscbNeighbor, s.nscbDistance),
                "nscb_correct": s.nscbCorrect.map { JSON.bool($0) } ?? .null,
                "average_precision": s.averagePrecision.map { JSON.double($0) } ?? .null,
                "neighbors": .array(s.neighbors.map { neighbor($0.index, $0.distance) }),
            ]
        }
        return [
            "nsc": .double(nsc), "nscb": nscb.map { JSON.double($0) } ?? .null,
            "per_compound": .double(perCompound),
            "nscb_per_compound": nscbPerCompound.map { JSON.double($0) } ?? .null,
            "map": map.map { JSON.double($0) } ?? .null,
            "distance": .string(distance.rawValue),
            "treatment_count": JSON(treatments.count),
            "compound_count": JSON(Set(treatments.map(\.compound)).count),
            "treatments": .array(rows),
            "nscb_dropped": .array(nscbDropped.map { treatments[$0].keyJSON }),
            "confusion": [
                "moas": .array(moas.map { .string($0) }),
                "nsc": .array(confusionNSC.map { .array($0.map { JSON($0) }) }),
                "nscb": confusionNSCB.map { m in .array(m.map { .array($0.map { JSON($0) }) }) } ?? .null,
            ],
        ]
    }

    /// A few readable lines for a terminal.
    public var summaryText: String {
        func pct(_ v: Double?) -> String { v.map { String(format: "%.1f%%", $0 * 100) } ?? "n/a" }
        let kept = treatments.count - nscbDropped.count
        var s = "\(treatments.count) treatments, \(Set(treatments.map(\.compound)).count) compounds, \(moas.count) MOAs, distance \(distance.rawValue)\n"
        s += "NSC \(pct(nsc))   NSCB \(pct(nscb)) (\(kept) treatments, \(nscbDropped.count) dropped)   per-compound \(pct(perCompound))   mAP \(map.map { String(format: "%.3f", $0) } ?? "n/a")\n"
        return s
    }
}

/// Pairwise distances between the rows of a row-major n x d matrix.
public func pairwiseDistances(_ profiles: [Double], count n: Int, features d: Int, metric: DistanceMetric,
                              names: [String]? = nil) throws -> [Double] {
    var dist = [Double](repeating: 0, count: n * n)
    switch metric {
    case .euclidean:
        profiles.withUnsafeBufferPointer { p in
            for i in 0..<n {
                for j in (i + 1)..<max(n, i + 1) {
                    var s = 0.0
                    for k in 0..<d { let e = p[i * d + k] - p[j * d + k]; s += e * e }
                    dist[i * n + j] = s.squareRoot(); dist[j * n + i] = dist[i * n + j]
                }
            }
        }
    case .cosine, .correlation:
        var u = profiles
        for i in 0..<n {
            if metric == .correlation {
                var m = 0.0
                for k in 0..<d { m += u[i * d + k] }
                m /= Double(d)
                for k in 0..<d { u[i * d + k] -= m }
            }
            var s = 0.0
            for k in 0..<d { s += u[i * d + k] * u[i * d + k] }
            guard s > 0 else {
                let what = names?[i] ?? "row \(i)"
                throw CytoError(.invalidInput, metric == .cosine
                                ? "the profile of \(what) is all zeros: cosine distance is undefined"
                                : "the profile of \(what) is constant: correlation distance is undefined", index: i)
            }
            let inv = 1 / s.squareRoot()
            for k in 0..<d { u[i * d + k] *= inv }
        }
        var g = [Double](repeating: 0, count: n * n)
        if n > 0 && d > 0 {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(n), Int32(d),
                        1, u, Int32(d), u, Int32(d), 0, &g, Int32(n))
        }
        for i in 0..<n { for j in 0..<n where i != j { dist[i * n + j] = 1 - g[i * n + j] } }
    }
    return dist
}

/// Scores treatment profiles (sorted by (compound, concentration), as `treatmentProfiles`
/// gives them) by leave-one-compound-out nearest neighbours:
/// - NSC: the nearest treatment of another compound; correct when it has the same MOA.
/// - NSCB: the nearest treatment of another compound sharing none of the query's batches; a
///   query with no same-MOA treatment among those candidates is dropped from NSCB and listed.
/// - per-compound accuracy: the mean over compounds of their share of NSC-correct treatments.
/// - mAP: per treatment, the average precision of same-MOA treatments when all other-compound
///   treatments are ranked by distance; the mean over treatments that have any.
/// Ties in distance go to the candidate that comes first in (compound, concentration) order.
/// `neighborCount` nearest other-compound treatments are listed per treatment.
public func scoreMOA(treatments: [Treatment], profiles: [Double], featureCount d: Int,
                     distance metric: DistanceMetric, useBatches: Bool = true, neighborCount: Int = 5) throws -> MOAScore {
    let n = treatments.count
    guard profiles.count == n * d else {
        throw CytoError(.shapeMismatch, "\(profiles.count) values do not fill \(n) treatments x \(d) features")
    }
    guard n > 0 else { throw CytoError(.invalidInput, "no treatments to score (no non-control rows with a MOA)") }
    for i in 1..<max(n, 1) where !Treatment.precedes(treatments[i - 1], treatments[i]) {
        throw CytoError(.invalidInput, "treatments must be sorted by (compound, concentration) without repeats", index: i)
    }
    let names = treatments.map { "\($0.compound) at \(formatNumber($0.concentration))" }
    let dist = try pairwiseDistances(profiles, count: n, features: d, metric: metric, names: names)
    let batchSets = treatments.map { Set($0.batches) }
    var scores: [TreatmentScore] = []
    var dropped: [Int] = []
    for i in 0..<n {
        var s = TreatmentScore(nscNeighbor: nil, nscDistance: nil, nscCorrect: false)
        var bestB: Int? = nil
        var hasSameMOAB = false
        var ranked: [Int] = []
        for j in 0..<n where treatments[j].compound != treatments[i].compound {
            ranked.append(j)
            if s.nscNeighbor == nil || dist[i * n + j] < s.nscDistance! { s.nscNeighbor = j; s.nscDistance = dist[i * n + j] }
            if useBatches && batchSets[j].isDisjoint(with: batchSets[i]) {
                if treatments[j].moa == treatments[i].moa { hasSameMOAB = true }
                if bestB == nil || dist[i * n + j] < dist[i * n + bestB!] { bestB = j }
            }
        }
        if let j = s.nscNeighbor { s.nscCorrect = treatments[j].moa == treatments[i].moa }
        if useBatches {
            if hasSameMOAB, let j = bestB {
                s.nscbNeighbor = j; s.nscbDistance = dist[i * n + j]; s.nscbCorrect = treatments[j].moa == treatments[i].moa
            } else {
                dropped.append(i)
            }
        }
        // Average precision: ranks by (distance, index), relevant = same MOA.
        ranked.sort { a, b in dist[i * n + a] != dist[i * n + b] ? dist[i * n + a] < dist[i * n + b] : a < b }
        var hits = 0, sum = 0.0
        for (rank, j) in ranked.enumerated() where treatments[j].moa == treatments[i].moa {
            hits += 1
            sum += Double(hits) / Double(rank + 1)
        }
        if hits > 0 { s.averagePrecision = sum / Double(hits) }
        s.neighbors = ranked.prefix(max(neighborCount, 0)).map { (index: $0, distance: dist[i * n + $0]) }
        scores.append(s)
    }
    let moas = Array(Set(treatments.map(\.moa))).sorted(by: codePointLess)
    let moaIndex = Dictionary(uniqueKeysWithValues: moas.enumerated().map { ($1, $0) })
    var confusion = [[Int]](repeating: [Int](repeating: 0, count: moas.count), count: moas.count)
    var confusionB = confusion
    for i in 0..<n {
        let t = moaIndex[treatments[i].moa]!
        if let j = scores[i].nscNeighbor { confusion[t][moaIndex[treatments[j].moa]!] += 1 }
        if let j = scores[i].nscbNeighbor { confusionB[t][moaIndex[treatments[j].moa]!] += 1 }
    }
    // Per-compound shares, compounds in order of appearance (sorted already).
    var compounds: [String] = []
    var nscBy: [String: (Int, Int)] = [:], nscbBy: [String: (Int, Int)] = [:]
    for i in 0..<n {
        let c = treatments[i].compound
        if nscBy[c] == nil { compounds.append(c) }
        nscBy[c, default: (0, 0)].0 += scores[i].nscCorrect ? 1 : 0
        nscBy[c, default: (0, 0)].1 += 1
        if let ok = scores[i].nscbCorrect {
            nscbBy[c, default: (0, 0)].0 += ok ? 1 : 0
            nscbBy[c, default: (0, 0)].1 += 1
        }
    }
    let perCompound = compounds.map { Double(nscBy[$0]!.0) / Double(nscBy[$0]!.1) }.reduce(0, +) / Double(compounds.count)
    let bCompounds = compounds.filter { nscbBy[$0] != nil }
    let nscbPerCompound = bCompounds.isEmpty ? nil
        : bCompounds.map { Double(nscbBy[$0]!.0) / Double(nscbBy[$0]!.1) }.reduce(0, +) / Double(bCompounds.count)
    let kept = scores.compactMap(\.nscbCorrect)
    let aps = scores.compactMap(\.averagePrecision)
    return MOAScore(
        treatments: treatments, scores: scores, distance: metric,
        nsc: Double(scores.filter(\.nscCorrect).count) / Double(n),
        nscb: kept.isEmpty ? nil : Double(kept.filter { $0 }.count) / Double(kept.count),
        perCompound: perCompound, nscbPerCompound: nscbPerCompound,
        map: aps.isEmpty ? nil : aps.reduce(0, +) / Double(aps.count),
        nscbDropped: dropped, moas: moas, confusionNSC: confusion, confusionNSCB: useBatches ? confusionB : nil)
}
