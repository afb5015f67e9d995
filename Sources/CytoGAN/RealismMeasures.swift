import CytoCore
import Foundation
import Profiling

/// Per-image measurements of the realism measure: 12 per channel (intensity distribution, radial
/// profile, sharpness, texture) and 5 of the nucleus on channel 0, on u = (v + 1) / 2 of an image
/// in the model's space. Cheap, interpretable numbers whose distribution real cells pin down.
/// One measurer per thread: it keeps scratch buffers.
public final class ImageMeasurer {
    /// Names of the per-channel measurements, in order (each gets the suffix `_<channel>`).
    public static let channelNames = ["mean", "std", "q05", "q50", "q95", "high", "ring0", "ring1", "ring2", "ring3", "grad", "lap"]
    /// Names of the nucleus measurements (channel 0, the DNA stain), after the channels'.
    public static let nucleusNames = ["nuc_area", "nuc_offset", "nuc_ecc", "nuc_compact", "nuc_contrast"]
    /// Pixels at or above this value of u count as saturated (`high_c`).
    public static let highThreshold = 0.98

    /// Every measurement's name, in the order `measure` writes them.
    public static func names(channels: Int) -> [String] {
        (0..<channels).flatMap { c in channelNames.map { "\($0)_\(c)" } } + nucleusNames
    }

    /// The measurements by kind, as column indexes into `names(channels:)`: each per-channel kind
    /// over the channels, then "nucleus" (the nucleus's five).
    public static func kinds(channels: Int) -> [(kind: String, columns: [Int])] {
        let per = channelNames.count, start = channels * per
        return channelNames.indices.map { k in (channelNames[k], (0..<channels).map { $0 * per + k }) }
            + [("nucleus", Array(start..<(start + nucleusNames.count)))]
    }

    /// A reader's name for each kind of `kinds(channels:)`.
    public static let kindLabels: [String: String] = [
        "mean": "mean intensity", "std": "intensity spread", "q05": "background (5th percentile)", "q50": "median intensity",
        "q95": "bright end (95th percentile)", "high": "saturated pixels", "ring0": "centre intensity", "ring1": "inner ring",
        "ring2": "middle ring", "ring3": "outer ring", "grad": "sharpness", "lap": "fine texture", "nucleus": "nucleus shape",
    ]

    public let channels: Int
    public let size: Int
    /// Measurements per image: 12 per channel + 5.
    public var count: Int { channels * ImageMeasurer.channelNames.count + ImageMeasurer.nucleusNames.count }

    /// Ring (0...3) of each pixel, or -1 beyond the outer ring; and the pixels in each ring.
    private let ring: [Int8]
    private let ringCounts: [Int]
    private var plane: [Double]
    private var sorted: [Double]
    private var mask: [Bool]

    /// A measurer of images of `channels` planes of `size` x `size` (size at least 8, so that
    /// every ring holds pixels).
    public init(channels: Int, size: Int) throws {
        guard channels >= 1 else { throw CytoError(.invalidInput, "realism measurements need at least 1 channel", field: "channels") }
        guard size >= 8 else {
            throw CytoError(.invalidInput, "realism measurements need images of side 8 or more, not \(size)", field: "size")
        }
        self.channels = channels
        self.size = size
        let s = Double(size), c = (s - 1) / 2
        var ring = [Int8](repeating: -1, count: size * size)
        var counts = [0, 0, 0, 0]
        for y in 0..<size {
            for x in 0..<size {
                let dy = Double(y) - c, dx = Double(x) - c
                let r = (dy * dy + dx * dx).squareRoot()
                for k in 0..<4 where Double(k) * s / 8 <= r && r < Double(k + 1) * s / 8 {
                    ring[y * size + x] = Int8(k)
                    counts[k] += 1
                }
            }
        }
        self.ring = ring
        ringCounts = counts
        plane = [Double](repeating: 0, count: size * size)
        sorted = plane
        mask = [Bool](repeating: false, count: size * size)
    }

    /// The `p`-th percentile (0...100) of ascending `a` with linear interpolation, computed as
    /// NumPy's default method does (so the two agree to the last bits).
    static func percentile(_ a: UnsafeBufferPointer<Double>, _ p: Double) -> Double {
        let n = a.count
        let h = Double(n - 1) * (p / 100)
        let lo = Int(h.rounded(.down)), hi = min(lo + 1, n - 1)
        let t = h - Double(lo), d = a[hi] - a[lo]
        return t >= 0.5 ? a[hi] - d * (1 - t) : a[lo] + d * t
    }

    /// Measures one image (channels x size x size floats in [-1, 1], channel-major) into `out`
    /// (`count` values, in `names` order).
    public func measure(_ image: UnsafePointer<Float>, into out: UnsafeMutablePointer<Double>) {
        let s = size, n = s * s
        var o = 0
        var nucleusPlane: [Double] = []
        var q50DNA = 0.0, q99DNA = 0.0
        for c in 0..<channels {
            let v = image + c * n
            for i in 0..<n { plane[i] = (Double(v[i]) + 1) / 2 }
            var sum = 0.0
            for i in 0..<n { sum += plane[i] }
            let mean = sum / Double(n)
            var ss = 0.0, high = 0
            for i in 0..<n {
                let d = plane[i] - mean
                ss += d * d
                if plane[i] >= ImageMeasurer.highThreshold { high += 1 }
            }
            for i in 0..<n { sorted[i] = plane[i] }
            sorted.sort()
            var ringSums = [0.0, 0.0, 0.0, 0.0]
            for i in 0..<n where ring[i] >= 0 { ringSums[Int(ring[i])] += plane[i] }
            var gh = 0.0, gv = 0.0, lap = 0.0
            for y in 0..<s {
                for x in 0..<(s - 1) { let d = plane[y * s + x + 1] - plane[y * s + x]; gh += d * d }
            }
            for y in 0..<(s - 1) {
                for x in 0..<s { let d = plane[(y + 1) * s + x] - plane[y * s + x]; gv += d * d }
            }
            for y in 1..<(s - 1) {
                for x in 1..<(s - 1) {
                    let i = y * s + x
                    lap += abs(4 * plane[i] - plane[i - s] - plane[i + s] - plane[i - 1] - plane[i + 1])
                }
            }
            sorted.withUnsafeBufferPointer { a in
                out[o] = mean
                out[o + 1] = (ss / Double(n)).squareRoot()
                out[o + 2] = ImageMeasurer.percentile(a, 5)
                out[o + 3] = ImageMeasurer.percentile(a, 50)
                out[o + 4] = ImageMeasurer.percentile(a, 95)
                if c == 0 { q50DNA = out[o + 3]; q99DNA = ImageMeasurer.percentile(a, 99) }
            }
            out[o + 5] = Double(high) / Double(n)
            for k in 0..<4 { out[o + 6 + k] = ringSums[k] / Double(ringCounts[k]) }
            out[o + 10] = gh / Double(s * (s - 1)) + gv / Double((s - 1) * s)
            out[o + 11] = lap / Double((s - 2) * (s - 2))
            o += ImageMeasurer.channelNames.count
            if c == 0 { nucleusPlane = plane }
        }
        measureNucleus(nucleusPlane, q50: q50DNA, q99: q99DNA, into: out + o)
    }

    /// The nucleus: the pixels of channel 0 above (q50 + q99) / 2; its area, offset from the
    /// centre, eccentricity, compactness (perimeter^2 / (4 pi area)) and contrast.
    private func measureNucleus(_ p: [Double], q50: Double, q99: Double, into out: UnsafeMutablePointer<Double>) {
        let s = size, n = s * s, centre = Double(s - 1) / 2
        let t = (q50 + q99) / 2
        var area = 0, sy = 0.0, sx = 0.0, inside = 0.0, outside = 0.0
        for y in 0..<s {
            for x in 0..<s {
                let i = y * s + x
                mask[i] = p[i] > t
                if mask[i] { area += 1; sy += Double(y); sx += Double(x); inside += p[i] } else { outside += p[i] }
            }
        }
        guard area > 0 else { for k in 0..<5 { out[k] = 0 }; return }
        let a = Double(area), my = sy / a, mx = sx / a
        var cyy = 0.0, cxx = 0.0, cxy = 0.0, perimeter = 0
        for y in 0..<s {
            for x in 0..<s where mask[y * s + x] {
                let dy = Double(y) - my, dx = Double(x) - mx
                cyy += dy * dy; cxx += dx * dx; cxy += dy * dx
                let edge = y == 0 || x == 0 || y == s - 1 || x == s - 1
                    || !mask[(y - 1) * s + x] || !mask[(y + 1) * s + x] || !mask[y * s + x - 1] || !mask[y * s + x + 1]
                if edge { perimeter += 1 }
            }
        }
        cyy /= a; cxx /= a; cxy /= a
        let half = (cyy + cxx) / 2, spread = (((cyy - cxx) / 2) * ((cyy - cxx) / 2) + cxy * cxy).squareRoot()
        let l1 = half + spread, l2 = half - spread
        out[0] = a / Double(n)
        out[1] = ((my - centre) * (my - centre) + (mx - centre) * (mx - centre)).squareRoot() / Double(s)
        out[2] = area < 2 || l1 <= 0 ? 0 : max(0, 1 - l2 / l1).squareRoot()
        out[3] = Double(perimeter * perimeter) / (4 * Double.pi * a)
        out[4] = area == n ? 0 : inside / a - outside / Double(n - area)
    }

    /// The measurements of `images` (count x channels x size x size), row-major count x `count`,
    /// spread over `threads` measurers.
    public static func measure(_ images: [Float], count: Int, channels: Int, size: Int, threads: Int) throws -> [Double] {
        let per = channels * size * size
        precondition(images.count >= count * per)
        let d = try ImageMeasurer(channels: channels, size: size).count
        var out = [Double](repeating: 0, count: count * d)
        let t = max(1, min(threads, count))
        let measurers = try (0..<t).map { _ in try ImageMeasurer(channels: channels, size: size) }
        images.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let box = Unchecked((src: src.baseAddress!, dst: dst.baseAddress!, measurers: measurers))
                DispatchQueue.concurrentPerform(iterations: t) { k in
                    let (src, dst, measurers) = box.value
                    for i in (count * k / t)..<(count * (k + 1) / t) {
                        measurers[k].measure(src + i * per, into: dst + i * d)
                    }
                }
            }
        }
        return out
    }
}

/// Carries pointers and per-thread objects into a concurrent loop whose iterations touch
/// disjoint memory.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// The Frechet distance between two sets of measurement vectors, each summarized by its mean and
/// sample covariance: |mu_x - mu_y|^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2)), the trace of
/// the square root taken from the symmetric matrix S_x^(1/2) S_y S_x^(1/2) (LAPACK's dsyevd).
public enum FrechetDistance {
    /// Column means and sample covariance (divided by n - 1) of the row-major n x d matrix.
    public static func statistics(_ x: [Double], rows n: Int, columns d: Int) throws -> (mean: [Double], covariance: [Double]) {
        guard n >= 2 else { throw CytoError(.invalidInput, "a covariance needs at least 2 rows, got \(n)", field: "count") }
        let mean = LinearAlgebra.columnMeans(x, rows: n, columns: d)
        return (mean, LinearAlgebra.covariance(x, rows: n, columns: d, mean: mean))
    }

    /// FD between the rows of `x` (n x d) and of `y` (m x d).
    public static func distance(_ x: [Double], rows n: Int, _ y: [Double], rows m: Int, columns d: Int) throws -> Double {
        let a = try statistics(x, rows: n, columns: d), b = try statistics(y, rows: m, columns: d)
        return try distance(meanX: a.mean, covarianceX: a.covariance, meanY: b.mean, covarianceY: b.covariance, dimension: d)
    }

    /// FD between two Gaussians given by their means and covariances (d x d, row-major).
    public static func distance(meanX: [Double], covarianceX sx: [Double], meanY: [Double], covarianceY sy: [Double],
                                dimension d: Int) throws -> Double {
        precondition(meanX.count == d && meanY.count == d && sx.count == d * d && sy.count == d * d)
        var fd = 0.0
        for j in 0..<d { let e = meanX[j] - meanY[j]; fd += e * e }
        for j in 0..<d { fd += sx[j * d + j] + sy[j * d + j] }
        return fd - 2 * (try traceOfSquareRoot(sx, sy, dimension: d))
    }

    /// FD restricted to the measurements `columns` (indexes into d): the same formula on the
    /// means' entries and the covariances' sub-matrices.
    public static func distance(meanX: [Double], covarianceX sx: [Double], meanY: [Double], covarianceY sy: [Double],
                                dimension d: Int, columns: [Int]) throws -> Double {
        let k = columns.count
        func sub(_ m: [Double]) -> [Double] { columns.flatMap { i in columns.map { j in m[i * d + j] } } }
        return try distance(meanX: columns.map { meanX[$0] }, covarianceX: sub(sx), meanY: columns.map { meanY[$0] },
                            covarianceY: sub(sy), dimension: k)
    }

    /// tr((S_x S_y)^(1/2)) = sum of sqrt(max(eigenvalue, 0)) of R S_y R with R = S_x^(1/2) (negative
    /// eigenvalues of S_x clamped to 0): R S_y R is symmetric and has the eigenvalues of S_x S_y.
    public static func traceOfSquareRoot(_ sx: [Double], _ sy: [Double], dimension d: Int) throws -> Double {
        guard d > 0 else { return 0 }
        let ex = try LinearAlgebra.symmetricEigen(sx, n: d)
        let r = LinearAlgebra.spectralFunction(values: ex.values, vectors: ex.vectors, n: d) { max($0, 0).squareRoot() }
        var product = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for k in 0..<d where r[i * d + k] != 0 {
                let rik = r[i * d + k]
                for j in 0..<d { product[i * d + j] += rik * sy[k * d + j] }
            }
        }
        var m = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            for k in 0..<d where product[i * d + k] != 0 {
                let pik = product[i * d + k]
                for j in 0..<d { m[i * d + j] += pik * r[k * d + j] }
            }
        }
        // Exactly symmetric for the solver (rounding leaves the two triangles a few ulps apart).
        for i in 0..<d { for j in 0..<i { let v = (m[i * d + j] + m[j * d + i]) / 2; m[i * d + j] = v; m[j * d + i] = v } }
        let values = try LinearAlgebra.symmetricEigen(m, n: d).values
        return values.reduce(0) { $0 + max($1, 0).squareRoot() }
    }
}
