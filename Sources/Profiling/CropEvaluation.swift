import Foundation
import CytoCore

/// Settings of the crop-level evaluation (`cytogan profile evaluate-crops`).
public struct CropEvaluationOptions: Sendable {
    public var control = RowCondition(column: "Metadata_Compound", value: "DMSO")
    public var plateColumn = "Metadata_Plate"
    public var wellColumn = "Metadata_Well"
    public var compoundColumn = "Metadata_Compound"
    public var concentrationColumn = "Metadata_Concentration"
    /// Inverse L2 regularization strength of the logistic regression (scikit-learn's C).
    public var C = 1.0
    /// Weight classes by n / (2 n_class) in the training loss (scikit-learn's "balanced").
    public var balancedClassWeights = true
    public init() {}
}

/// One held-out plate of the logistic regression.
public struct LogisticFold: Sendable {
    public var plate: String
    public var treated: Int
    public var controls: Int
    /// Nil when the plate has cells of one class only.
    public var balancedAccuracy: Double?
    public var accuracy: Double?
    public var iterations: Int
    public var converged: Bool
    /// Why the fold was not run (the training plates lack a class), or nil.
    public var skipped: String?
}

/// A well's leave-one-plate-out nearest neighbour.
public struct WellNeighbor: Sendable {
    public var plate: String, well: String, label: String
    public var cells: Int
    public var neighborPlate: String, neighborWell: String, neighborLabel: String
    public var distance: Double
}

/// A treated well's distance to its plate's control centre.
public struct DoseWell: Sendable {
    public var plate: String, well: String, compound: String
    public var concentration: Double
    public var cells: Int
    public var distance: Double
}

/// One (plate, compound) dose series: its wells in order of concentration, and how well the
/// distance follows the dose.
public struct DoseSeries: Sendable {
    public var plate: String, compound: String
    public var wells: [DoseWell]
    /// Spearman correlation of concentration and distance (average ranks for ties); nil when constant.
    public var spearman: Double?
    /// Pairs of wells at different concentrations, and how many have the larger distance at the
    /// larger dose (ties in distance count half).
    public var pairs: Int
    public var increasingPairs: Double
    /// Distance strictly increases with concentration across the series' distinct doses.
    public var monotonic: Bool
}

/// Three measures of how much biology single-cell features carry, for comparing training recipes
/// (examples/cpu-recipe): (a) single-cell logistic regression, (b) well nearest neighbours,
/// (c) dose response. See `evaluateCrops`.
public struct CropEvaluation: Sendable {
    public var cells: Int
    public var featuresIn: Int
    public var featuresDropped: [DroppedFeature]
    public var plates: [String]
    public var logisticFolds: [LogisticFold]
    public var logisticBalancedAccuracy: Double?
    public var wellNeighbors: [WellNeighbor]
    public var wellAccuracy: Double?
    public var wellAccuracyTreatedVsControl: Double?
    public var doseSeries: [DoseSeries]
    public var options: CropEvaluationOptions

    public var fractionIncreasingPairs: Double? {
        let p = doseSeries.reduce(0) { $0 + $1.pairs }
        return p == 0 ? nil : doseSeries.reduce(0) { $0 + $1.increasingPairs } / Double(p)
    }
    public var meanSpearman: Double? {
        let v = doseSeries.compactMap(\.spearman)
        return v.isEmpty ? nil : v.reduce(0, +) / Double(v.count)
    }

    public var json: JSON {
        func opt(_ v: Double?) -> JSON { v.map { JSON.double($0) } ?? .null }
        let folds: [JSON] = logisticFolds.map {
            ["plate": .string($0.plate), "treated": JSON($0.treated), "controls": JSON($0.controls),
             "balanced_accuracy": opt($0.balancedAccuracy), "accuracy": opt($0.accuracy),
             "iterations": JSON($0.iterations), "converged": .bool($0.converged), "skipped": $0.skipped.map { JSON.string($0) } ?? .null]
        }
        let wells: [JSON] = wellNeighbors.map {
            ["plate": .string($0.plate), "well": .string($0.well), "label": .string($0.label), "cells": JSON($0.cells),
             "neighbor_plate": .string($0.neighborPlate), "neighbor_well": .string($0.neighborWell),
             "neighbor_label": .string($0.neighborLabel), "distance": .double($0.distance)]
        }
        let series: [JSON] = doseSeries.map { s in
            ["plate": .string(s.plate), "compound": .string(s.compound), "spearman": opt(s.spearman),
             "pairs": JSON(s.pairs), "increasing_pairs": .double(s.increasingPairs), "monotonic": .bool(s.monotonic),
             "wells": .array(s.wells.map { ["well": .string($0.well), "concentration": .double($0.concentration),
                                            "cells": JSON($0.cells), "distance": .double($0.distance)] })]
        }
        return [
            "cells": JSON(cells), "features_in": JSON(featuresIn),
            "features_used": JSON(featuresIn - featuresDropped.count),
            "features_dropped": .array(featuresDropped.map { .string($0.name) }),
            "plates": .array(plates.map { .string($0) }),
            "control": .string(options.control.description),
            "logistic": [
                "balanced_accuracy": opt(logisticBalancedAccuracy), "C": .double(options.C),
                "class_weight": .string(options.balancedClassWeights ? "balanced" : "none"),
                "normalization": "z-score to each plate's control cells (sample std)",
                "folds": .array(folds),
            ],
            "well_nn": [
                "accuracy": opt(wellAccuracy), "accuracy_treated_vs_control": opt(wellAccuracyTreatedVsControl),
                "label": "treatment: compound and concentration (controls one label)",
                "normalization": "z-score to all control cells, then the mean of each well's cells",
                "distance": "cosine", "wells": .array(wells),
            ],
            "dose": [
                "distance": "euclidean, well mean to the plate's control-cell mean, features z-scored to the plate's controls",
                "fraction_increasing_pairs": opt(fractionIncreasingPairs), "mean_spearman": opt(meanSpearman),
                "series_monotonic": JSON(doseSeries.filter(\.monotonic).count), "series": .array(series),
            ],
        ]
    }

    public var summaryText: String {
        func f(_ v: Double?) -> String { v.map { String(format: "%.3f", $0) } ?? "n/a" }
        var s = "\(cells) cells on \(plates.count) plates, \(featuresIn - featuresDropped.count) of \(featuresIn) features\n"
        s += "(a) logistic regression, leave-one-plate-out balanced accuracy \(f(logisticBalancedAccuracy))\n"
        s += "(b) well nearest neighbour (cosine), leave-one-plate-out accuracy \(f(wellAccuracy)) (treatment), \(f(wellAccuracyTreatedVsControl)) (treated vs control), \(wellNeighbors.count) wells\n"
        s += "(c) dose: \(f(fractionIncreasingPairs)) of well pairs farther from control at the higher dose, mean Spearman \(f(meanSpearman)), \(doseSeries.filter(\.monotonic).count)/\(doseSeries.count) series monotonic\n"
        return s
    }
}

/// Evaluates a feature table of single-cell crops (metadata: plate, well, compound,
/// concentration; controls by `options.control`):
/// (a) for each plate, an L2 logistic regression trained on the other plates' cells (treated vs
///     control, features z-scored to each plate's own control cells) predicts the plate's cells;
///     the balanced accuracy (mean of the two classes' recalls) over all held-out cells.
/// (b) each well's mean profile (features z-scored to all control cells: per-plate centring would
///     make a plate's only control well the zero vector, where cosine is undefined) is matched to
///     its cosine-nearest well on other plates; accuracy of the treatment label (compound and
///     concentration, controls one label), and of treated-vs-control.
/// (c) each treated well's Euclidean distance to its plate's control centre (per-plate z-scores),
///     and whether it grows with the dose within each (plate, compound) series.
public func evaluateCrops(_ table: ProfileTable, options: CropEvaluationOptions = CropEvaluationOptions()) throws -> CropEvaluation {
    let plateOf = try table.metadataValues(options.plateColumn)
    let wellOf = try table.metadataValues(options.wellColumn)
    let compoundOf = try table.metadataValues(options.compoundColumn)
    let concText = try table.metadataValues(options.concentrationColumn)
    let isControl = try options.control.matches(table)
    let n = table.count
    guard n > 0 else { throw CytoError(.invalidInput, "the feature table has no rows") }
    var concentration = [Double](repeating: 0, count: n)
    for r in 0..<n where !isControl[r] {
        guard let c = Double(concText[r].trimmingCharacters(in: .whitespaces)), c.isFinite else {
            throw CytoError(.invalidInput, "concentration '\(concText[r])' is not a number", line: table.sourceLines[r], field: options.concentrationColumn)
        }
        concentration[r] = c
    }
    guard isControl.contains(true) else { throw CytoError(.invalidInput, "no control cells match \(options.control)") }
    guard isControl.contains(false) else { throw CytoError(.invalidInput, "every cell is a control (\(options.control)): nothing to evaluate") }

    // Per-plate z-scores against the plate's control cells (also finds zero-variance features).
    let plateNorm = try normalize(table, options: NormalizationOptions(method: .standardize, control: options.control,
                                                                       groupColumn: options.plateColumn))
    let z = plateNorm.table
    let d = z.featureCount
    let plates = Array(Set(plateOf)).sorted(by: codePointLess)

    // (a) Leave-one-plate-out logistic regression on single cells.
    var folds: [LogisticFold] = []
    var tp = 0, tn = 0, nPos = 0, nNeg = 0
    for plate in plates {
        let test = (0..<n).filter { plateOf[$0] == plate }
        let train = (0..<n).filter { plateOf[$0] != plate }
        let pos = train.filter { !isControl[$0] }.count, neg = train.count - pos
        let testPos = test.filter { !isControl[$0] }.count
        var fold = LogisticFold(plate: plate, treated: testPos, controls: test.count - testPos, balancedAccuracy: nil,
                                accuracy: nil, iterations: 0, converged: false, skipped: nil)
        guard pos > 0 && neg > 0 else {
            fold.skipped = "the other plates have no \(pos == 0 ? "treated" : "control") cells"
            folds.append(fold); continue
        }
        let xt = z.rows(train).features
        let labels = train.map { !isControl[$0] }
        let weights = labels.map { l -> Double in
            options.balancedClassWeights ? Double(train.count) / (2 * Double(l ? pos : neg)) : 1
        }
        let model = try LogisticRegression.fit(xt, rows: train.count, columns: d, labels: labels, sampleWeights: weights, C: options.C)
        let scores = model.decision(z.rows(test).features, rows: test.count)
        var ftp = 0, ftn = 0
        for (i, r) in test.enumerated() {
            let predicted = scores[i] > 0
            if !isControl[r] && predicted { ftp += 1 }
            if isControl[r] && !predicted { ftn += 1 }
        }
        tp += ftp; tn += ftn; nPos += testPos; nNeg += test.count - testPos
        fold.iterations = model.iterations
        fold.converged = model.converged
        fold.accuracy = Double(ftp + ftn) / Double(test.count)
        if testPos > 0 && test.count - testPos > 0 {
            fold.balancedAccuracy = (Double(ftp) / Double(testPos) + Double(ftn) / Double(test.count - testPos)) / 2
        }
        folds.append(fold)
    }
    let balanced = (nPos > 0 && nNeg > 0) ? (Double(tp) / Double(nPos) + Double(tn) / Double(nNeg)) / 2 : nil

    // Wells, in (plate, well) order.
    var wellIndex: [[String]: Int] = [:]
    var wellKeys: [[String]] = []
    var wellRows: [[Int]] = []
    for r in 0..<n {
        let k = [plateOf[r], wellOf[r]]
        if let w = wellIndex[k] { wellRows[w].append(r) } else { wellIndex[k] = wellKeys.count; wellKeys.append(k); wellRows.append([r]) }
    }
    let wellOrder = wellKeys.indices.sorted { a, b in
        wellKeys[a][0] != wellKeys[b][0] ? codePointLess(wellKeys[a][0], wellKeys[b][0]) : codePointLess(wellKeys[a][1], wellKeys[b][1])
    }
    for w in wellOrder {
        let rows = wellRows[w]
        let r0 = rows[0]
        for r in rows where isControl[r] != isControl[r0] || compoundOf[r] != compoundOf[r0] || concentration[r] != concentration[r0] {
            throw CytoError(.invalidInput, "well \(wellKeys[w][1]) of plate \(wellKeys[w][0]) mixes treatments (line \(table.sourceLines[r0]) and this one)",
                            line: table.sourceLines[r], field: options.wellColumn)
        }
    }
    func label(_ r: Int) -> String { isControl[r] ? "control" : "\(compoundOf[r]) @ \(formatNumber(concentration[r]))" }

    // (b) Well profiles from features z-scored to all control cells; leave-one-plate-out 1-NN.
    let kept = table.selectingFeatures(plateNorm.normalizer.keptFeatures)
    let global = try normalize(kept, options: NormalizationOptions(method: .standardize, control: options.control, groupColumn: nil)).table
    func wellMeans(_ t: ProfileTable) -> [Double] {
        var out = [Double](repeating: 0, count: wellOrder.count * d)
        for (pos, w) in wellOrder.enumerated() {
            let m = LinearAlgebra.columnMeans(t.rows(wellRows[w]).features, rows: wellRows[w].count, columns: d)
            for j in 0..<d { out[pos * d + j] = m[j] }
        }
        return out
    }
    let wellNames = wellOrder.map { "well \(wellKeys[$0][1]) of plate \(wellKeys[$0][0])" }
    let nw = wellOrder.count
    let dist = try pairwiseDistances(wellMeans(global), count: nw, features: d, metric: .cosine, names: wellNames)
    var neighbors: [WellNeighbor] = []
    var correct = 0, correctBinary = 0
    for (i, w) in wellOrder.enumerated() {
        var best: Int? = nil
        for (j, v) in wellOrder.enumerated() where wellKeys[v][0] != wellKeys[w][0] {
            if best == nil || dist[i * nw + j] < dist[i * nw + best!] { best = j }
        }
        guard let b = best else { continue }
        let r = wellRows[w][0], q = wellRows[wellOrder[b]][0]
        if label(r) == label(q) { correct += 1 }
        if isControl[r] == isControl[q] { correctBinary += 1 }
        neighbors.append(WellNeighbor(plate: wellKeys[w][0], well: wellKeys[w][1], label: label(r), cells: wellRows[w].count,
                                      neighborPlate: wellKeys[wellOrder[b]][0], neighborWell: wellKeys[wellOrder[b]][1],
                                      neighborLabel: label(q), distance: dist[i * nw + b]))
    }

    // (c) Distance of each treated well to its plate's control centre, in per-plate z-scores.
    let zMeans = wellMeans(z)
    var centre: [String: [Double]] = [:]
    for plate in plates {
        let c = (0..<n).filter { plateOf[$0] == plate && isControl[$0] }
        centre[plate] = LinearAlgebra.columnMeans(z.rows(c).features, rows: c.count, columns: d)
    }
    var seriesIndex: [[String]: Int] = [:]
    var series: [DoseSeries] = []
    for (pos, w) in wellOrder.enumerated() {
        let r = wellRows[w][0]
        guard !isControl[r] else { continue }
        let c = centre[plateOf[r]]!
        var s = 0.0
        for j in 0..<d { let e = zMeans[pos * d + j] - c[j]; s += e * e }
        let dw = DoseWell(plate: plateOf[r], well: wellOf[r], compound: compoundOf[r], concentration: concentration[r],
                          cells: wellRows[w].count, distance: s.squareRoot())
        let key = [plateOf[r], compoundOf[r]]
        if let i = seriesIndex[key] { series[i].wells.append(dw) } else {
            seriesIndex[key] = series.count
            series.append(DoseSeries(plate: plateOf[r], compound: compoundOf[r], wells: [dw], spearman: nil, pairs: 0,
                                     increasingPairs: 0, monotonic: false))
        }
    }
    var doseSeries: [DoseSeries] = []
    for var s in series {
        s.wells.sort { $0.concentration != $1.concentration ? $0.concentration < $1.concentration : codePointLess($0.well, $1.well) }
        guard Set(s.wells.map(\.concentration)).count >= 2 else { continue }
        for i in 0..<s.wells.count {
            for j in (i + 1)..<s.wells.count where s.wells[i].concentration != s.wells[j].concentration {
                s.pairs += 1
                let (lo, hi) = s.wells[i].concentration < s.wells[j].concentration ? (i, j) : (j, i)
                if s.wells[hi].distance > s.wells[lo].distance { s.increasingPairs += 1 }
                else if s.wells[hi].distance == s.wells[lo].distance { s.increasingPairs += 0.5 }
            }
        }
        s.spearman = spearman(s.wells.map(\.concentration), s.wells.map(\.distance))
        // Monotonic: the mean distance per dose strictly increases with the dose.
        let doses = Array(Set(s.wells.map(\.concentration))).sorted()
        let means = doses.map { c in
            let v = s.wells.filter { $0.concentration == c }.map(\.distance)
            return v.reduce(0, +) / Double(v.count)
        }
        s.monotonic = zip(means, means.dropFirst()).allSatisfy { $0 < $1 }
        doseSeries.append(s)
    }
    return CropEvaluation(
        cells: n, featuresIn: table.featureCount, featuresDropped: plateNorm.normalizer.droppedFeatures, plates: plates,
        logisticFolds: folds, logisticBalancedAccuracy: balanced, wellNeighbors: neighbors,
        wellAccuracy: neighbors.isEmpty ? nil : Double(correct) / Double(neighbors.count),
        wellAccuracyTreatedVsControl: neighbors.isEmpty ? nil : Double(correctBinary) / Double(neighbors.count),
        doseSeries: doseSeries, options: options)
}

/// Ranks 1...n, tied values sharing their average rank.
func averageRanks(_ v: [Double]) -> [Double] {
    let order = v.indices.sorted { v[$0] < v[$1] }
    var ranks = [Double](repeating: 0, count: v.count)
    var i = 0
    while i < order.count {
        var j = i
        while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
        let r = Double(i + j) / 2 + 1
        for k in i...j { ranks[order[k]] = r }
        i = j + 1
    }
    return ranks
}

/// Spearman's rank correlation (Pearson correlation of average ranks); nil if either is constant.
func spearman(_ a: [Double], _ b: [Double]) -> Double? {
    let ra = averageRanks(a), rb = averageRanks(b)
    let n = Double(a.count)
    let ma = ra.reduce(0, +) / n, mb = rb.reduce(0, +) / n
    var sab = 0.0, saa = 0.0, sbb = 0.0
    for i in 0..<a.count { sab += (ra[i] - ma) * (rb[i] - mb); saa += (ra[i] - ma) * (ra[i] - ma); sbb += (rb[i] - mb) * (rb[i] - mb) }
    guard saa > 0 && sbb > 0 else { return nil }
    return sab / (saa * sbb).squareRoot()
}
