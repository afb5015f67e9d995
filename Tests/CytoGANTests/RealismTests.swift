import CytoCore
import CytoNN
import Foundation
import Testing
@testable import CytoGAN

/// An image of `planes` (each size x size values of u in [0, 1], row-major) in the model's
/// space, v = 2 u - 1.
private func modelImage(_ planes: [[Double]]) -> [Float] {
    planes.flatMap { $0.map { Float(2 * $0 - 1) } }
}

private func plane(_ size: Int, _ u: (Int, Int) -> Double) -> [Double] {
    (0..<(size * size)).map { u($0 / size, $0 % size) }
}

private func measure(_ planes: [[Double]], size: Int) throws -> [Double] {
    let m = try ImageMeasurer(channels: planes.count, size: size)
    var out = [Double](repeating: .nan, count: m.count)
    modelImage(planes).withUnsafeBufferPointer { m.measure($0.baseAddress!, into: &out) }
    return out
}

private func expectClose(_ got: [Double], _ want: [Double], tolerance: Double = 1e-12, _ names: [String]) {
    #expect(got.count == want.count)
    for k in 0..<min(got.count, want.count) {
        #expect(abs(got[k] - want[k]) <= tolerance, "\(names[k]): \(got[k]) vs \(want[k])")
    }
}

@Suite("Realism")
struct RealismTests {
    @Test("Measurement names: 12 per channel then 5 of the nucleus")
    func names() {
        let n = ImageMeasurer.names(channels: 3)
        #expect(n.count == 41)
        #expect(Array(n.prefix(12)) == ["mean_0", "std_0", "q05_0", "q50_0", "q95_0", "high_0", "ring0_0", "ring1_0", "ring2_0", "ring3_0", "grad_0", "lap_0"])
        #expect(n[12] == "mean_1" && n[35] == "lap_2")
        #expect(Array(n.suffix(5)) == ["nuc_area", "nuc_offset", "nuc_ecc", "nuc_compact", "nuc_contrast"])
        #expect(throws: CytoError.self) { try ImageMeasurer(channels: 3, size: 7) }
    }

    @Test("Percentiles interpolate linearly between ranks, as NumPy's default")
    func percentiles() {
        let a: [Double] = [0, 1, 2, 3, 4]
        a.withUnsafeBufferPointer { p in
            #expect(abs(ImageMeasurer.percentile(p, 5) - 0.2) < 1e-15)
            #expect(ImageMeasurer.percentile(p, 50) == 2)
            #expect(abs(ImageMeasurer.percentile(p, 95) - 3.8) < 1e-15)
            #expect(ImageMeasurer.percentile(p, 100) == 4 && ImageMeasurer.percentile(p, 0) == 0)
        }
    }

    @Test("A flat image: its value everywhere, no edges, no nucleus")
    func flat() throws {
        let got = try measure([plane(8) { _, _ in 0.5 }], size: 8)
        expectClose(got, [0.5, 0, 0.5, 0.5, 0.5, 0, 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0], ImageMeasurer.names(channels: 1))
    }

    /// 8 x 8, centre (3.5, 3.5), rings of width 1. Channel 0: a bright 2 x 2 nucleus on the
    /// centre; channel 1: a ramp u = x / 8; channel 2: a checkerboard. (Values exact in Float.)
    @Test("Three hand-made channels, worked out by hand")
    func handMade() throws {
        let dna = plane(8) { y, x in (3...4).contains(y) && (3...4).contains(x) ? 1 : 0 }
        let ramp = plane(8) { _, x in Double(x) / 8 }
        let checker = plane(8) { y, x in Double((x + y) % 2) }
        let got = try measure([dna, ramp, checker], size: 8)
        let want: [Double] = [
            // 4 bright pixels of 64; sorted: 60 zeros, 4 ones, so q95 sits at rank 59.85 -> 0.85.
            // Ring 0 holds exactly the 4 centre pixels (r = 0.71; the next pixels are at 1.58).
            // Edges: 4 horizontal and 4 vertical unit steps of 56 each; Laplacian: 4 centre
            // pixels of 2 and 8 neighbours of 1 over 36 interior pixels.
            0.0625, 15.0.squareRoot() / 16, 0, 0, 0.85, 0.0625, 1, 0, 0, 0, 8.0 / 56, 16.0 / 36,
            // Each of 0/8 ... 7/8 eight times: variance 5.25 / 64; q50 between 3/8 and 4/8; none
            // saturated; x -> 7 - x maps u to 7/8 - u, so every ring averages 7/16; steps of 1/8
            // across, none down; a flat Laplacian.
            0.4375, 5.25.squareRoot() / 8, 0, 0.4375, 0.875, 0, 0.4375, 0.4375, 0.4375, 0.4375, 1.0 / 64, 0,
            // Half ones: every step is 1, every Laplacian 4; x -> 7 - x swaps the colours in
            // every ring.
            0.5, 0.5, 0, 0.5, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 2, 4,
            // Threshold (0 + 1) / 2: the 4 centre pixels, centred, round, all on the edge:
            // P^2 / (4 pi A) = 16 / (16 pi).
            0.0625, 0, 0, 1 / Double.pi, 1,
        ]
        expectClose(got, want, ImageMeasurer.names(channels: 3))
    }

    @Test("Nucleus shape: a bar is fully eccentric; a 3 x 3 square has an inner pixel")
    func nucleusShapes() throws {
        // A 1 x 4 bar on row 3, columns 2...5: centroid (3, 3.5), variance only along x.
        let bar = try measure([plane(8) { y, x in y == 3 && (2...5).contains(x) ? 0.875 : 0.125 }], size: 8)
        expectClose(Array(bar.suffix(5)), [4.0 / 64, 0.5 / 8, 1, 1 / Double.pi, 0.75], tolerance: 1e-12, ImageMeasurer.nucleusNames)
        // Rows and columns 2...4: centroid (3, 3), 8 edge pixels of 9.
        let square = try measure([plane(8) { y, x in (2...4).contains(y) && (2...4).contains(x) ? 0.75 : 0.25 }], size: 8)
        expectClose(Array(square.suffix(5)), [9.0 / 64, 0.5.squareRoot() / 8, 0, 64 / (36 * Double.pi), 0.5],
                    tolerance: 1e-12, ImageMeasurer.nucleusNames)
    }

    @Test("Frechet distance of diagonal covariances: |mu diff|^2 + sum (sqrt a - sqrt b)^2")
    func frechetDiagonal() throws {
        let a = [1.0, 4, 9], b = [4.0, 1, 0.25]
        func diag(_ v: [Double]) -> [Double] { (0..<9).map { $0 % 4 == 0 ? v[$0 / 4] : 0 } }
        let fd = try FrechetDistance.distance(meanX: [0, 0, 0], covarianceX: diag(a), meanY: [1, 2, 2], covarianceY: diag(b), dimension: 3)
        #expect(abs(fd - (9 + 1 + 1 + 6.25)) < 1e-12)
        // A rotation of both covariances changes nothing.
        let c = cos(0.3), s = sin(0.3)
        let q: [Double] = [c, -s, 0, s, c, 0, 0, 0, 1]
        func rotate(_ m: [Double]) -> [Double] {
            (0..<9).map { ij in
                let i = ij / 3, j = ij % 3
                var v = 0.0
                for k in 0..<3 { for l in 0..<3 { v += q[i * 3 + k] * m[k * 3 + l] * q[j * 3 + l] } }
                return v
            }
        }
        let rotated = try FrechetDistance.distance(meanX: [0, 0, 0], covarianceX: rotate(diag(a)), meanY: [1, 2, 2],
                                                   covarianceY: rotate(diag(b)), dimension: 3)
        #expect(abs(rotated - 17.25) < 1e-10)
        // On a subset of the measurements: the diagonal formula over those alone.
        let part = try FrechetDistance.distance(meanX: [0, 0, 0], covarianceX: diag(a), meanY: [1, 2, 2], covarianceY: diag(b),
                                                dimension: 3, columns: [0, 2])
        #expect(abs(part - (1 + 4 + 1 + 6.25)) < 1e-12)
    }

    @Test("The trace term of covariances that do not commute: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for 2 x 2")
    func frechetTraceTerm() throws {
        // S_x S_y = [[2, 3], [1, 6]]: trace 8, determinant 9.
        let t = try FrechetDistance.traceOfSquareRoot([2, 1, 1, 2], [1, 0, 0, 3], dimension: 2)
        #expect(abs(t - 14.0.squareRoot()) < 1e-12)
        // A singular S_x: its zero eigenvalue (or a tiny negative one) adds nothing.
        #expect(abs(try FrechetDistance.traceOfSquareRoot([1, 1, 1, 1], [1, 0, 0, 1], dimension: 2) - 2.0.squareRoot()) < 1e-12)
    }

    @Test("Frechet distance from rows uses the sample covariance; a set against itself is 0")
    func frechetRows() throws {
        // x: (0, 0), (2, 0), (0, 2), (2, 2): mean (1, 1), sample variances 4/3, no covariance.
        let x: [Double] = [0, 0, 2, 0, 0, 2, 2, 2]
        let stats = try FrechetDistance.statistics(x, rows: 4, columns: 2)
        #expect(stats.mean == [1, 1])
        #expect(zip(stats.covariance, [4.0 / 3, 0, 0, 4.0 / 3]).allSatisfy { abs($0 - $1) < 1e-15 })
        #expect(abs(try FrechetDistance.distance(x, rows: 4, x, rows: 4, columns: 2)) < 1e-12)
        // y = 2 x + 1: mean (3, 3), variances 16/3: 8 + 2 (sqrt(16/3) - sqrt(4/3))^2 = 8 + 8/3.
        let y = x.map { 2 * $0 + 1 }
        #expect(abs(try FrechetDistance.distance(x, rows: 4, y, rows: 4, columns: 2) - (8 + 8.0 / 3)) < 1e-12)
        #expect(throws: CytoError.self) { try FrechetDistance.statistics([1, 2], rows: 1, columns: 2) }
    }

    /// Noise images (8 x 8, 2 channels) around `level`.
    private func noise(_ count: Int, level: Float, seed: UInt64) -> RealismImages {
        var rng = RandomStream(seed: seed, purpose: "test")
        let values = (0..<(count * 2 * 64)).map { _ in max(-1, min(1, level + 0.3 * rng.normal())) }
        return RealismImages(values: values, channels: 2, size: 8, names: (0..<count).map { "img\($0)" })
    }

    @Test("Classifiers tell bright from dark cells, and cannot tell a set from itself")
    func classifiers() throws {
        let dark = noise(24, level: -0.5, seed: 1), bright = noise(24, level: 0.2, seed: 2)
        var rng = RandomStream(seed: 3, purpose: "t")
        let monitor = RealismMonitor()
        #expect(try TwoSampleClassifier.accuracy(dark, bright, folds: 3, epochs: 8, rng: &rng, monitor: monitor, label: "t") >= 0.9)
        // Identical images under both labels: every pair gets one right and one wrong.
        rng = RandomStream(seed: 3, purpose: "t")
        #expect(try TwoSampleClassifier.accuracy(dark, dark, folds: 3, epochs: 2, rng: &rng, monitor: monitor, label: "t") == 0.5)
        let rows: [Double] = (0..<24).flatMap { i -> [Double] in [Double(i % 5), 1] }
        let shifted: [Double] = (0..<24).flatMap { i -> [Double] in [Double(i % 5) + 10, 1] }
        #expect(try TwoSampleClassifier.measurementAccuracy(rows, shifted, rows: 24, columns: 2, folds: 4) == 1)
        #expect(try TwoSampleClassifier.measurementAccuracy(rows, rows, rows: 24, columns: 2, folds: 4) == 0.5)
    }

    @Test("The whole measure: A vs itself sits at the bottom, the same seed gives the same numbers")
    func reference() throws {
        let options = RealismOptions(count: 12, seed: 5, folds: 3, epochs: 2)
        let real = noise(25, level: -0.3, seed: 4)   // an odd crop left out: n = 12
        let monitor = RealismMonitor()
        let ref = try RealismReference(real: real, options: options, monitor: monitor)
        #expect(ref.count == 12 && ref.names.count == 2 * 12 + 5)
        #expect(ref.floor > 0 && ref.nullAccuracies.count == RealismOptions.nullRuns)
        let same = try ref.compare(ref.a, monitor: monitor)
        // 12 images in 29 dimensions: singular covariances, whose null eigenvalues come out of
        // the solver as +-1e-14 and their square roots as 1e-7 each.
        #expect(abs(same.distance) < 1e-5, "\(same.distance)")
        #expect(same.accuracy == 0.5 && same.measurementAccuracy == 0.5, "\(same.accuracy) \(same.measurementAccuracy)")
        #expect(same.sharpness.allSatisfy { abs($0 - 1) < 1e-12 } && same.background.allSatisfy { abs($0) < 1e-12 })
        let far = try ref.compare(noise(12, level: 0.4, seed: 9), monitor: monitor)
        #expect(far.ratio! > 10 && far.background.allSatisfy { $0 > 1 })
        let again = try RealismReference(real: real, options: options, monitor: monitor).compare(noise(12, level: 0.4, seed: 9), monitor: monitor)
        #expect(again.json(step: 3).serialized == far.json(step: 3).serialized)
        let json = far.json(step: 3)
        #expect(json["count"]?.intValue == 12 && json["size"]?.intValue == 8 && json["step"]?.intValue == 3)
        #expect(json["classifier"]?["folds"]?.intValue == 3 && json["measurements"]?["names"]?.arrayValue?.count == 29)
        // The distance by kind: 12 per-channel kinds and the nucleus; neither a kind alone nor the
        // rest exceeds the whole, and the largest parts come first.
        #expect(far.parts.map(\.measurement) == ImageMeasurer.channelNames + ["nucleus"])
        #expect(far.parts.allSatisfy { $0.alone <= far.distance + 1e-9 && $0.without <= far.distance + 1e-9 && $0.alone >= -1e-9 })
        #expect(json["frechet"]?["parts"]?.arrayValue?.count == 13)
        #expect(ImageMeasurer.kinds(channels: 2).flatMap(\.columns).sorted() == Array(0..<29))
        #expect(ImageMeasurer.kinds(channels: 2).allSatisfy { k in k.columns.allSatisfy { ref.names[$0].hasPrefix(k.kind == "nucleus" ? "nuc_" : k.kind + "_") } })
        #expect(ImageMeasurer.kinds(channels: 2).allSatisfy { ImageMeasurer.kindLabels[$0.kind] != nil })
        let top = far.largestParts(3)
        #expect(top.count == 3 && top[0].adds >= top[1].adds && top[1].adds >= top[2].adds)
        #expect(same.parts.allSatisfy { abs($0.alone) < 1e-5 && abs($0.without) < 1e-5 })
        // Too few generated images, too few real ones, and settings out of range name the setting.
        #expect(throws: CytoError.self) { try ref.compare(noise(5, level: 0, seed: 1), monitor: monitor) }
        #expect(throws: CytoError.self) { try RealismReference(real: noise(5, level: 0, seed: 1), options: options, monitor: monitor) }
        do { try RealismOptions(count: 10, folds: 1).validate(); Issue.record("1 fold accepted") } catch let e as CytoError { #expect(e.field == "folds") }
        do { try RealismOptions(count: 3, folds: 4).validate(); Issue.record("count < folds accepted") } catch let e as CytoError { #expect(e.field == "count") }
    }
}
