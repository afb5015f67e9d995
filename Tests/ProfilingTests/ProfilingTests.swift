import Foundation
import Testing
import CytoCore
@testable import Profiling

/// A table from rows of (metadata, features).
func makeTable(_ meta: [String], _ feats: [String], _ rows: [([String], [Double])]) throws -> ProfileTable {
    try ProfileTable(metadataColumns: meta, metadata: rows.map(\.0), featureNames: feats, features: rows.flatMap(\.1))
}

func close(_ a: Double, _ b: Double, _ tol: Double = 1e-12) -> Bool { abs(a - b) <= tol * max(1, abs(b)) }

@Suite struct AggregationTests {
    @Test func meanMedianCountsAndCarriedColumns() throws {
        let t = try makeTable(["Metadata_Well", "Metadata_Compound", "Metadata_Object"], ["f", "g"], [
            (["A", "x", "1"], [1, 2]), (["A", "x", "2"], [3, 4]), (["B", "y", "3"], [10, 0]), (["A", "x", "4"], [5, 9]),
        ])
        let mean = try aggregate(t, by: ["Metadata_Well"], method: .mean)
        #expect(mean.table.metadataColumns == ["Metadata_Well", "Metadata_Count", "Metadata_Compound"])
        #expect(mean.droppedColumns == ["Metadata_Object"])
        #expect(mean.table.metadata == [["A", "3", "x"], ["B", "1", "y"]])
        #expect(mean.table.features == [3, 5, 10, 0])
        let median = try aggregate(t, by: ["Metadata_Well"], method: .median, joinColumns: ["Metadata_Object"])
        #expect(median.table.features == [3, 4, 10, 0])
        #expect(median.table.metadata[0] == ["A", "3", "x", "1;2;4"])
        // An even count takes the mean of the two middle values.
        let two = try aggregate(t.rows([0, 1]), by: ["Metadata_Compound"], method: .median)
        #expect(two.table.features == [2, 3])
    }

    @Test func missingStrataColumnIsAnError() throws {
        let t = try makeTable(["Metadata_Well"], ["f"], [(["A"], [1])])
        #expect(throws: CytoError.self) { try aggregate(t, by: ["Metadata_Plate"], method: .mean) }
    }
}

@Suite struct NormalizationTests {
    let meta = ["Metadata_Plate", "Metadata_Compound"]

    @Test func standardizePerPlateAndDropsConstantFeature() throws {
        // Plate P: controls f = 1, 2, 3 (mean 2, sample sd 1); plate Q: controls 10, 14 (mean 12, sd 2.828...).
        // g is constant among Q's controls: dropped everywhere and reported with the plate.
        let t = try makeTable(meta, ["f", "g"], [
            (["P", "DMSO"], [1, 0]), (["P", "DMSO"], [2, 1]), (["P", "DMSO"], [3, 5]), (["P", "drug"], [4, 7]),
            (["Q", "DMSO"], [10, 3]), (["Q", "DMSO"], [14, 3]), (["Q", "drug"], [16, 1]),
        ])
        let r = try normalize(t, options: NormalizationOptions(method: .standardize, control: RowCondition(column: "Metadata_Compound", value: "DMSO"),
                                                              groupColumn: "Metadata_Plate"))
        #expect(r.table.featureNames == ["f"])
        #expect(r.normalizer.droppedFeatures == [DroppedFeature(name: "g", reason: "zero variance among the controls", group: "Q")])
        let z = r.table.features
        #expect(close(z[3], 2))                       // (4 - 2) / 1
        #expect(close(z[6], 4 / 8.0.squareRoot()))    // (16 - 12) / sqrt(8)
        #expect(close(z[0], -1) && close(z[4], -2 / 8.0.squareRoot()))
    }

    @Test func robustizeIsMedianAndScaledMAD() throws {
        // Controls 1, 2, 4, 10: median 3, deviations 2, 1, 1, 7, MAD 1.5, scale 1.5 * 1.4826.
        let t = try makeTable(meta, ["f"], [
            (["P", "DMSO"], [1]), (["P", "DMSO"], [2]), (["P", "DMSO"], [4]), (["P", "DMSO"], [10]), (["P", "drug"], [6]),
        ])
        let r = try normalize(t, options: NormalizationOptions(method: .robustize, control: RowCondition(column: "Metadata_Compound", value: "DMSO"), groupColumn: nil))
        #expect(close(r.table.features[4], 3 / (1.5 * 1.4826)))
    }

    @Test func plateWithoutControlsIsAnError() throws {
        let t = try makeTable(meta, ["f"], [
            (["P", "DMSO"], [1]), (["P", "DMSO"], [2]), (["Q", "drug"], [3]),
        ])
        let e = #expect(throws: CytoError.self) {
            try normalize(t, options: NormalizationOptions(method: .standardize, control: RowCondition(column: "Metadata_Compound", value: "DMSO"), groupColumn: "Metadata_Plate"))
        }
        #expect(e?.message.contains("Q") == true)
    }

    @Test func spherizeOnAHandCase() throws {
        // Controls (±1, 0) and (0, ±2): centred, XᵀX/(n-1) = diag(2/3, 8/3), singular values √2 and √8;
        // the scale of each axis is √3/s (epsilon 0).
        let rows: [([String], [Double])] = [
            (["P", "DMSO"], [1, 0]), (["P", "DMSO"], [-1, 0]), (["P", "DMSO"], [0, 2]), (["P", "DMSO"], [0, -2]), (["P", "drug"], [1, 2]),
        ]
        let t = try makeTable(meta, ["f", "g"], rows)
        let zca = try normalize(t, options: NormalizationOptions(method: .spherize(.zca, epsilon: 0, center: true),
                                                                control: RowCondition(column: "Metadata_Compound", value: "DMSO"), groupColumn: nil)).table
        #expect(zca.featureNames == ["f", "g"])
        #expect(close(zca.features[8], 1.5.squareRoot(), 1e-10) && close(zca.features[9], 2 * (3.0 / 8).squareRoot(), 1e-10))
        let pca = try normalize(t, options: NormalizationOptions(method: .spherize(.pca, epsilon: 0, center: true),
                                                                control: RowCondition(column: "Metadata_Compound", value: "DMSO"), groupColumn: nil)).table
        // PC1 is the g axis (the larger variance); signs are arbitrary.
        #expect(pca.featureNames == ["PC1", "PC2"])
        #expect(close(abs(pca.features[8]), 2 * (3.0 / 8).squareRoot(), 1e-10) && close(abs(pca.features[9]), 1.5.squareRoot(), 1e-10))
    }

    /// Controls spread in three correlated dimensions, with a batch column.
    func correlatedTable(rows n: Int, seed: UInt64) throws -> ProfileTable {
        var rng = RandomStream(seed: seed, purpose: "test")
        var rows: [([String], [Double])] = []
        for i in 0..<n {
            let a = Double(rng.normal()), b = Double(rng.normal()), c = Double(rng.normal())
            let batch = i % 2 == 0 ? "B1" : "B2"
            let s = batch == "B1" ? 1.0 : 3.0
            rows.append(([batch, i % 5 == 4 ? "drug" : "DMSO"], [s * a + 1, s * (a + 0.5 * b), 2 * c - 0.3 * a + (batch == "B2" ? 4 : 0)]))
        }
        return try makeTable(["Metadata_Batch", "Metadata_Compound"], ["f", "g", "h"], rows)
    }

    func covariance(_ t: ProfileTable, rows: [Int]) -> [Double] {
        let d = t.featureCount
        let x = t.rows(rows).features
        let m = LinearAlgebra.columnMeans(x, rows: rows.count, columns: d)
        var c = [Double](repeating: 0, count: d * d)
        for r in 0..<rows.count { for i in 0..<d { for j in 0..<d { c[i * d + j] += (x[r * d + i] - m[i]) * (x[r * d + j] - m[j]) } } }
        return c.map { $0 / Double(rows.count - 1) }
    }

    @Test func tvnWhitensTheControls() throws {
        // With epsilon 0 and full-rank controls, the controls' covariance after TVN is the identity.
        let t = try correlatedTable(rows: 200, seed: 7)
        let r = try normalize(t, options: NormalizationOptions(method: .tvn(epsilon: 0), control: RowCondition(column: "Metadata_Compound", value: "DMSO"), groupColumn: "Metadata_Batch"))
        let controls = (0..<t.count).filter { t.metadata[$0][1] == "DMSO" }
        let c = covariance(r.table, rows: controls)
        for i in 0..<3 { for j in 0..<3 { #expect(abs(c[i * 3 + j] - (i == j ? 1 : 0)) < 1e-9) } }
    }

    @Test func coralGivesEachBatchTheCovarianceOfAllControls() throws {
        let t = try correlatedTable(rows: 400, seed: 11)
        let controls = (0..<t.count).filter { t.metadata[$0][1] == "DMSO" }
        let target = covariance(t, rows: controls)
        let r = try normalize(t, options: NormalizationOptions(method: .coral(lambda: 1e-9), control: RowCondition(column: "Metadata_Compound", value: "DMSO"), groupColumn: "Metadata_Batch"))
        for batch in ["B1", "B2"] {
            let rows = controls.filter { t.metadata[$0][0] == batch }
            let c = covariance(r.table, rows: rows)
            for k in 0..<9 { #expect(abs(c[k] - target[k]) < 1e-6 * max(1, abs(target[k]))) }
            let m = LinearAlgebra.columnMeans(r.table.rows(rows).features, rows: rows.count, columns: 3)
            let all = LinearAlgebra.columnMeans(t.rows(controls).features, rows: controls.count, columns: 3)
            for j in 0..<3 { #expect(abs(m[j] - all[j]) < 1e-9) }
        }
    }
}

@Suite struct ScoringTests {
    /// Five treatments worked out by hand (see the distances in the comments).
    func handTreatments() -> ([Treatment], [Double]) {
        let t = [
            Treatment(compound: "a", concentration: 1, moa: "M1", batches: ["B1"], count: 1),
            Treatment(compound: "a", concentration: 2, moa: "M1", batches: ["B2"], count: 1),
            Treatment(compound: "b", concentration: 1, moa: "M1", batches: ["B1"], count: 1),
            Treatment(compound: "c", concentration: 1, moa: "M2", batches: ["B2"], count: 1),
            Treatment(compound: "d", concentration: 1, moa: "M2", batches: ["B1"], count: 1),
        ]
        return (t, [1, 0, 1, 0.05, 1, 0.2, 0, 1, 0.9, 1])
    }

    @Test func nscNscbPerCompoundAndMAPByHand() throws {
        let (t, p) = handTreatments()
        let s = try scoreMOA(treatments: t, profiles: p, featureCount: 2, distance: .cosine)
        // Cosine distances: a1-b 0.0194, a2-b 0.0109, b-d 0.198, c-d 0.257, a2-d 0.295, a1-d 0.331, ...
        #expect(s.scores.map(\.nscNeighbor) == [2, 2, 1, 4, 2])
        #expect(close(s.scores[0].nscDistance!, 1 - 1 / 1.04.squareRoot()))
        #expect(s.nsc == 0.8)
        #expect(s.perCompound == 0.75)         // a 2/2, b 1/1, c 1/1, d 0/1
        // NSCB: a@1 (batch B1) has only c (B2, M2) outside its batch: dropped.
        #expect(s.nscbDropped == [0])
        #expect(s.scores.map(\.nscbNeighbor) == [nil, 2, 1, 4, 3])
        #expect(s.nscb == 1.0)
        // AP: d ranks b (M1) before c (M2): 1/2; the others 1.
        #expect(s.scores.map(\.averagePrecision) == [1, 1, 1, 1, 0.5])
        #expect(s.scores[4].neighbors.map(\.index) == [2, 3, 1, 0])     // d: b, c, a@2, a@1
        #expect(close(s.map!, 0.9))
        #expect(s.moas == ["M1", "M2"] && s.confusionNSC == [[3, 0], [1, 1]])
    }

    @Test func tiesGoToTheFirstInCompoundOrder() throws {
        // "Zeta" sorts before "alpha" (code points: upper case first). Both are at distance 1 from x.
        let t = [
            Treatment(compound: "Zeta", concentration: 1, moa: "M2", batches: ["B2"], count: 1),
            Treatment(compound: "alpha", concentration: 1, moa: "M1", batches: ["B2"], count: 1),
            Treatment(compound: "x", concentration: 1, moa: "M1", batches: ["B1"], count: 1),
        ]
        let s = try scoreMOA(treatments: t, profiles: [1, 0, 0, 1, 0, 0], featureCount: 2, distance: .euclidean)
        #expect(s.scores[2].nscNeighbor == 0 && !s.scores[2].nscCorrect)
        #expect(s.scores[2].averagePrecision == 0.5)      // alpha ranked second after the tie
    }

    @Test func treatmentsFromWellsSortAggregateAndCheck() throws {
        let meta = ["Metadata_Compound", "Metadata_Concentration", "Metadata_MOA", "Metadata_Batch"]
        let t = try makeTable(meta, ["f"], [
            (["b", "10", "M1", "W1"], [1]), (["b", "2", "M1", "W2"], [2]), (["DMSO", "0", "", "W1"], [0]),
            (["b", "10.0", "M1", "W3"], [5]), (["a", "1", "", "W1"], [7]),
        ])
        let tp = try treatmentProfiles(from: t, control: RowCondition(column: "Metadata_Compound", value: "DMSO"), aggregation: .mean)
        #expect(tp.treatments.map(\.concentration) == [2, 10])          // numeric order; "10" and "10.0" are one
        #expect(tp.treatments[1].batches == ["W1", "W3"] && tp.treatments[1].count == 2)
        #expect(tp.profiles == [2, 3])
        #expect(tp.controlRows == 1 && tp.unannotatedRows == 1)
        var bad = t
        bad.metadata[3][2] = "M9"
        #expect(throws: CytoError.self) { try treatmentProfiles(from: bad, control: nil, aggregation: .mean) }
    }

    @Test func zeroProfileHasNoCosine() throws {
        let t = [Treatment(compound: "a", concentration: 1, moa: "M", batches: [], count: 1),
                 Treatment(compound: "b", concentration: 1, moa: "M", batches: [], count: 1)]
        #expect(throws: CytoError.self) { try scoreMOA(treatments: t, profiles: [0, 0, 1, 1], featureCount: 2, distance: .cosine) }
    }
}

@Suite struct TableIOTests {
    func temp(_ name: String) -> String {
        let dir = NSTemporaryDirectory() + "profiling-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/" + name
    }

    @Test func csvValuesAreCheckedWithLineAndField() throws {
        let path = temp("bad.csv")
        try "Metadata_Well,f,g\nA,1,2\nB,x,3\n".write(toFile: path, atomically: true, encoding: .utf8)
        let e = #expect(throws: CytoError.self) { try FeatureRowReader.readTable(path: path) }
        #expect(e?.line == 3 && e?.field == "f")
        try "Metadata_Well,f,g\nA,1,2\nB,NaN,3\nC, 4 ,inf\nD,5,6\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: CytoError.self) { try FeatureRowReader.readTable(path: path) }
        let r = try FeatureRowReader.readTable(path: path, options: FeatureReadOptions(nonFinite: .dropRow))
        #expect(r.table.features == [1, 2, 5, 6])
        #expect(r.reader.droppedRowCount == 2 && r.reader.droppedRows.map(\.line) == [3, 4])
    }

    @Test func keyColumnsOfAnObjectTableAreMetadata() throws {
        // What `cytogan extract` carries from a CellProfiler object table is metadata, not features.
        let path = temp("keys.csv")
        try "ImageNumber,ObjectNumber,Location_Center_X,Metadata_Well,Cytogan_pool_lrelu0_0\n1,2,3.5,A,0.25\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try FeatureRowReader.readTable(path: path)
        #expect(r.table.metadataColumns == ["ImageNumber", "ObjectNumber", "Location_Center_X", "Metadata_Well"])
        #expect(r.table.featureNames == ["Cytogan_pool_lrelu0_0"] && r.table.features == [0.25])
    }

    @Test func npyRoundTripAndFortranOrder() throws {
        let t = try makeTable(["Metadata_Well"], ["f", "g", "h"], [(["A"], [1, 2, 3]), (["B"], [4, 5, 6])])
        let path = temp("t.npy")
        try FeatureRowWriter.write(t, to: path)
        let back = try FeatureRowReader.readTable(path: path).table
        #expect(back.features == t.features && back.metadata == t.metadata)
        #expect(back.featureNames == ["feature_0", "feature_1", "feature_2"])
        // A column-major file holds 1 4 2 5 3 6 for the same matrix.
        var bytes = NPY.header(shape: [2, 3], type: .float64)
        let text = String(decoding: bytes[10...], as: UTF8.self).replacingOccurrences(of: "False", with: "True ")
        bytes = Array(bytes[0..<10]) + Array(text.utf8)
        for v in [1.0, 4, 2, 5, 3, 6] { withUnsafeBytes(of: v) { bytes += $0 } }
        let fpath = temp("f.npy")
        try Data(bytes).write(to: URL(fileURLWithPath: fpath))
        let f = try FeatureRowReader.readTable(path: fpath, options: FeatureReadOptions(metadataPath: temp("t.metadata.csv"))).table
        #expect(f.features == [1, 2, 3, 4, 5, 6])
    }
}

@Suite struct CropEvaluationTests {
    @Test func logisticRegressionSolutionIsStationary() throws {
        // At the optimum of C Σ s_i log(1 + exp(-y_i m_i)) + ½|w|², the gradient vanishes.
        var rng = RandomStream(seed: 3, purpose: "test")
        let n = 80, d = 3
        var x = [Double](), y = [Bool]()
        for i in 0..<n {
            let label = i % 3 == 0
            y.append(label)
            for j in 0..<d { x.append(Double(rng.normal()) + (label ? Double(j) * 0.7 : 0)) }
        }
        let s = y.map { $0 ? 1.5 : 0.75 }
        let C = 0.3
        let m = try LogisticRegression.fit(x, rows: n, columns: d, labels: y, sampleWeights: s, C: C)
        #expect(m.converged)
        var g = m.weights, gb = 0.0
        let margin = m.decision(x, rows: n)
        for i in 0..<n {
            let r = C * s[i] * (1 / (1 + Foundation.exp(-margin[i])) - (y[i] ? 1 : 0))
            for j in 0..<d { g[j] += r * x[i * d + j] }
            gb += r
        }
        #expect(g.allSatisfy { abs($0) < 1e-8 } && abs(gb) < 1e-8)
    }

    @Test func averageRanksAndSpearman() {
        #expect(averageRanks([3, 1, 2, 2]) == [4, 1, 2.5, 2.5])
        #expect(spearman([1, 2, 3], [1, 3, 2]) == 0.5)
        #expect(spearman([1, 1, 1], [1, 2, 3]) == nil)
    }

    @Test func doseSeriesByHand() throws {
        // Two identical plates; control cells (±1, ±1): mean 0, sample sd √2 per feature. Treated
        // single-cell wells at doses 1, 2, 3 sit at distances 2/√2, 4/√2, 3/√2 from the centre.
        var rows: [([String], [Double])] = []
        // P2 is P1 shifted (per-plate z-scores remove the shift; it keeps the control wells'
        // globally z-scored means off zero, where cosine would be undefined).
        for (plate, shift) in [("P1", 0.0), ("P2", 0.5)] {
            rows.append(([plate, "W0", "DMSO", "0"], [1, 1 + shift]))
            rows.append(([plate, "W0", "DMSO", "0"], [-1, -1 + shift]))
            rows.append(([plate, "W1", "drug", "1"], [2, shift]))
            rows.append(([plate, "W2", "drug", "2"], [4, shift]))
            rows.append(([plate, "W3", "drug", "3"], [3, shift]))
        }
        let t = try makeTable(["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration"], ["f", "g"], rows)
        let e = try evaluateCrops(t)
        #expect(e.doseSeries.count == 2)
        let s = e.doseSeries[0]
        #expect(s.wells.map(\.concentration) == [1, 2, 3])
        #expect(close(s.wells[1].distance, 4 / 2.0.squareRoot()))
        #expect(s.pairs == 3 && s.increasingPairs == 2 && s.spearman == 0.5 && !s.monotonic)
        #expect(close(e.fractionIncreasingPairs!, 2.0 / 3))
        #expect(e.wellNeighbors.count == 8 && e.wellNeighbors.allSatisfy { $0.plate != $0.neighborPlate })
        #expect(e.logisticFolds.count == 2 && e.logisticBalancedAccuracy != nil)
    }
}
