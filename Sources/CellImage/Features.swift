import CytoCore

/// Simple per-crop measurements from raw intensities (before normalization), a hand-crafted
/// baseline beside the GAN's features: per channel mean, standard deviation (population), maximum
/// and 90th percentile (NumPy's linear definition); then the shape of the nucleus, found by an
/// Otsu threshold of the DNA channel (256 bins between the crop's minimum and maximum) and the
/// 8-connected foreground component under the crop centre (or nearest to it).
public enum CellFeatures {
    /// Shape features, in output order after the intensity features:
    /// Shape_Area (pixels of the nucleus component), Shape_Eccentricity (of the ellipse with the
    /// same second moments, 0 for a disc), Shape_MajorAxisLength and Shape_MinorAxisLength
    /// (4 sqrt of the moment eigenvalues, as scikit-image), Shape_CentroidOffset (pixels from the
    /// crop centre), Shape_ForegroundFraction (share of the crop above the threshold).
    public static let shapeNames = ["Shape_Area", "Shape_Eccentricity", "Shape_MajorAxisLength",
                                    "Shape_MinorAxisLength", "Shape_CentroidOffset", "Shape_ForegroundFraction"]

    /// Feature names for channels named `channelNames` (e.g. ["DNA", "Tubulin", "Actin"]):
    /// Intensity_{Mean,Std,Max,P90}_<name> per channel, then `shapeNames`.
    public static func names(channelNames: [String]) -> [String] {
        channelNames.flatMap { n in ["Mean", "Std", "Max", "P90"].map { "Intensity_\($0)_\(n)" } } + shapeNames
    }

    /// The feature vector of a raw crop (4 per channel, then 6 shape features).
    public static func compute(_ crop: PixelImage, dnaChannel: Int = 0) -> [Float] {
        precondition(dnaChannel >= 0 && dnaChannel < crop.channels)
        let n = crop.planeCount
        var planes = crop.floatPlanes
        var out: [Float] = []
        out.reserveCapacity(4 * crop.channels + shapeNames.count)
        var scratch = [Float](repeating: 0, count: n)
        for c in 0..<crop.channels {
            let (mean, mx, sd) = planes.withUnsafeBufferPointer { p in
                let q = p.baseAddress! + c * n
                let (mean, mx) = PlaneStatistics.meanAndMax(q, count: n)
                return (mean, mx, PlaneStatistics.standardDeviation(q, count: n, mean: mean))
            }
            let p90: Double = scratch.withUnsafeMutableBufferPointer { s in
                planes.withUnsafeBufferPointer { p in _ = s.initialize(from: UnsafeBufferPointer(rebasing: p[(c * n)..<((c + 1) * n)])) }
                return Percentile.value(s, 90)
            }
            out += [Float(mean), Float(sd), Float(n > 0 ? mx : 0), Float(p90)]
        }
        let dna = Array(planes[(dnaChannel * n)..<((dnaChannel + 1) * n)])
        planes = []
        out += shape(dna, width: crop.width, height: crop.height)
        return out
    }

    /// Otsu's threshold of `values` over 256 bins between their minimum and maximum: the bin edge
    /// maximizing the between-class variance; values above it are foreground.
    public static func otsuThreshold(_ values: [Float]) -> Float? {
        var lo = Double.infinity, hi = -Double.infinity
        for v in values where v.isFinite { lo = min(lo, Double(v)); hi = max(hi, Double(v)) }
        guard hi > lo, (hi - lo).isFinite else { return nil }
        let bins = 256
        var hist = [Double](repeating: 0, count: bins)
        let scale = Double(bins) / (hi - lo)
        for v in values where v.isFinite { hist[min(bins - 1, Int((Double(v) - lo) * scale))] += 1 }
        let total = hist.reduce(0, +)
        var sumAll = 0.0
        for i in 0..<bins { sumAll += Double(i) * hist[i] }
        var wB = 0.0, sumB = 0.0, best = -1.0, bestBin = 0
        for i in 0..<(bins - 1) {
            wB += hist[i]; sumB += Double(i) * hist[i]
            let wF = total - wB
            if wB == 0 || wF == 0 { continue }
            let mB = sumB / wB, mF = (sumAll - sumB) / wF
            let between = wB * wF * (mB - mF) * (mB - mF)
            if between > best { best = between; bestBin = i }
        }
        return Float(lo + Double(bestBin + 1) / scale)
    }

    /// The six shape features of the foreground component nearest the centre of a plane.
    static func shape(_ dna: [Float], width w: Int, height h: Int) -> [Float] {
        guard let t = otsuThreshold(dna) else { return [Float](repeating: 0, count: shapeNames.count) }
        let fg = dna.map { $0 >= t }
        let foreground = fg.reduce(0) { $0 + ($1 ? 1 : 0) }
        // Seed: the centre pixel if foreground, else the foreground pixel nearest to it.
        let cx = Double(w - 1) / 2, cy = Double(h - 1) / 2
        var seed = -1, bestD = Double.infinity
        for y in 0..<h {
            for x in 0..<w where fg[y * w + x] {
                let d = (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy)
                if d < bestD { bestD = d; seed = y * w + x }
            }
        }
        guard seed >= 0 else { return [Float](repeating: 0, count: shapeNames.count) }
        var seen = [Bool](repeating: false, count: w * h)
        var stack = [seed]
        seen[seed] = true
        var count = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0
        while let p = stack.popLast() {
            let x = p % w, y = p / w
            count += 1; sx += Double(x); sy += Double(y)
            sxx += Double(x * x); syy += Double(y * y); sxy += Double(x * y)
            for dy in -1...1 {
                for dx in -1...1 where dx != 0 || dy != 0 {
                    let nx = x + dx, ny = y + dy
                    guard nx >= 0, ny >= 0, nx < w, ny < h else { continue }
                    let q = ny * w + nx
                    if fg[q] && !seen[q] { seen[q] = true; stack.append(q) }
                }
            }
        }
        let mx = sx / count, my = sy / count
        let a = sxx / count - mx * mx, c = syy / count - my * my, b = sxy / count - mx * my
        let root = (((a - c) / 2) * ((a - c) / 2) + b * b).squareRoot()
        let l1 = max((a + c) / 2 + root, 0), l2 = max((a + c) / 2 - root, 0)
        let ecc = l1 > 0 ? (1 - l2 / l1).squareRoot() : 0
        let offset = ((mx - cx) * (mx - cx) + (my - cy) * (my - cy)).squareRoot()
        return [Float(count), Float(ecc), Float(4 * l1.squareRoot()), Float(4 * l2.squareRoot()),
                Float(offset), Float(Double(foreground) / Double(w * h))]
    }
}
