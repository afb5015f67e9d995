import CytoCore

/// How raw intensities become model inputs: each channel is mapped linearly from a range
/// [low, high] to [-1, 1], values outside clipped. The variants differ only in where the range
/// comes from. Named and serializable (`json`, `init(json:)`) so a checkpoint stores it.
public enum Normalization: Sendable, Equatable {
    /// CytoGAN: each crop's channel divided by its own maximum (range [0, max]).
    case perCropMax
    /// A fixed scale by bit depth: range [0, 2^bits - 1]; nil bits: the file's sample type
    /// (255, 65535, ...; 1 for floats). Use 12 for a 12-bit camera stored in 16-bit files.
    case bitDepth(bits: Int?)
    /// A dataset-level fixed per-channel scale: range [0, scale[c]].
    case fixedScale([Float])
    /// Per crop and channel: range [P_low, P_high], percentiles (0...100, NumPy's linear
    /// interpolation) of the crop's own values.
    case percentile(low: Double, high: Double)
    /// Per channel, fixed: range [low[c], high[c]], e.g. percentiles estimated once from a dataset
    /// sample (`NormalizationEstimator`).
    case fixedRange(low: [Float], high: [Float])

    /// The CytoGAN default.
    public static let cytogan = Normalization.perCropMax

    // MARK: JSON

    public var json: JSON {
        switch self {
        case .perCropMax: return ["kind": "per_crop_max"]
        case .bitDepth(let bits):
            var o: [String: JSON] = ["kind": "bit_depth"]
            if let bits { o["bits"] = JSON(bits) }
            return .object(o)
        case .fixedScale(let s): return ["kind": "fixed_scale", "scale": JSON(s)]
        case .percentile(let lo, let hi): return ["kind": "percentile", "low": .double(lo), "high": .double(hi)]
        case .fixedRange(let lo, let hi): return ["kind": "fixed_range", "low": JSON(lo), "high": JSON(hi)]
        }
    }

    /// Parses the `json` form; errors name the offending field.
    public init(json: JSON) throws {
        func bad(_ field: String, _ m: String) -> CytoError { CytoError(.invalidInput, m, field: field) }
        guard case .object(let o) = json else { throw bad("normalization", "normalization must be an object, got \(json.typeName)") }
        guard let kind = o["kind"]?.stringValue else { throw bad("kind", "normalization needs a string 'kind'") }
        func floats(_ key: String) throws -> [Float] {
            guard let a = o[key]?.arrayValue, !a.isEmpty else { throw bad(key, "'\(key)' must be a non-empty array of numbers") }
            return try a.map {
                guard let d = $0.doubleValue, d.isFinite else { throw bad(key, "'\(key)' must hold finite numbers") }
                return Float(d)
            }
        }
        switch kind {
        case "per_crop_max": self = .perCropMax
        case "bit_depth":
            if let b = o["bits"], !b.isNull {
                guard let bits = b.intValue, (1...32).contains(bits) else { throw bad("bits", "'bits' must be an integer from 1 to 32") }
                self = .bitDepth(bits: bits)
            } else { self = .bitDepth(bits: nil) }
        case "fixed_scale":
            let s = try floats("scale")
            guard s.allSatisfy({ $0 > 0 }) else { throw bad("scale", "'scale' values must be positive") }
            self = .fixedScale(s)
        case "percentile":
            guard let lo = o["low"]?.doubleValue, let hi = o["high"]?.doubleValue else {
                throw bad("low", "percentile normalization needs numbers 'low' and 'high'")
            }
            guard 0 <= lo, lo < hi, hi <= 100 else { throw bad("low", "percentiles need 0 <= low < high <= 100, got \(lo), \(hi)") }
            self = .percentile(low: lo, high: hi)
        case "fixed_range":
            let lo = try floats("low"), hi = try floats("high")
            guard lo.count == hi.count else { throw bad("high", "'low' has \(lo.count) values, 'high' \(hi.count)") }
            guard zip(lo, hi).allSatisfy({ $0 < $1 }) else { throw bad("high", "each 'high' must exceed its 'low'") }
            self = .fixedRange(low: lo, high: hi)
        default:
            throw bad("kind", "unknown normalization '\(kind)' (per_crop_max, bit_depth, fixed_scale, percentile, fixed_range)")
        }
    }

    // MARK: Applying

    /// The range [low, high] of channel `c` whose values are `plane` (raw intensities of a crop
    /// from a file of `type`). `scratch` (>= plane.count floats) is used by percentiles.
    public func range(channel c: Int, plane: UnsafeBufferPointer<Float>, type: SampleType,
                      scratch: UnsafeMutablePointer<Float>) -> (low: Float, high: Float) {
        switch self {
        case .perCropMax:
            return (0, max(0, Normalization.maximum(plane)))
        case .bitDepth(let bits):
            if let bits { return (0, Float((1 as UInt64) << UInt64(bits) - 1)) }
            return (0, Float(type.fullScale))
        case .fixedScale(let s): return (0, s[c])
        case .fixedRange(let lo, let hi): return (lo[c], hi[c])
        case .percentile(let lo, let hi):
            guard !plane.isEmpty else { return (0, 0) }
            scratch.update(from: plane.baseAddress!, count: plane.count)
            let buf = UnsafeMutableBufferPointer(start: scratch, count: plane.count)
            return (Float(Percentile.value(buf, lo)), Float(Percentile.value(buf, hi)))
        }
    }

    /// The largest value (-infinity for none), 8 lanes at a time.
    @inline(__always)
    static func maximum(_ p: UnsafeBufferPointer<Float>) -> Float {
        guard let base = p.baseAddress else { return -.infinity }
        let raw = UnsafeRawPointer(base)
        var lanes = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= p.count {
            lanes = pointwiseMax(lanes, raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            i += 8
        }
        var m = lanes.max()
        while i < p.count { if p[i] > m { m = p[i] }; i += 1 }
        return m
    }

    /// The fixed range [low, high] of channel `c` that model value -1 and 1 stand for, in the
    /// crops' own intensity units; nil when the range is drawn from each crop (per-crop maximum,
    /// per-crop percentiles) or from each file's sample type, so no single inverse exists.
    public func unitRange(channel c: Int) -> (low: Float, high: Float)? {
        switch self {
        case .perCropMax, .percentile, .bitDepth(bits: nil): return nil
        case .bitDepth(let bits?): return (0, Float((1 as UInt64) << UInt64(bits) - 1))
        case .fixedScale(let s): return (0, s[c])
        case .fixedRange(let lo, let hi): return (lo[c], hi[c])
        }
    }

    /// Throws unless every channel has a fixed range (`unitRange`), naming the normalization.
    public func checkInvertible(channels: Int) throws {
        for c in 0..<channels where unitRange(channel: c) == nil {
            throw CytoError(.invalidInput, "the model's normalization (\(json.serialized)) takes its range from each crop or file, so generated cells have no intensity units of the crops; write them in model units", field: "normalization")
        }
    }

    /// Maps model values in [-1, 1] (CHW, `channels` planes) back to the crops' intensity units
    /// in place: the inverse of `apply` for the fixed normalizations (clipped values stay at the
    /// range's ends).
    public func invert(_ planes: UnsafeMutablePointer<Float>, channels: Int, planeCount: Int) throws {
        try checkInvertible(channels: channels)
        for c in 0..<channels {
            let (lo, hi) = unitRange(channel: c)!
            let p = planes + c * planeCount, a = (hi - lo) / 2
            for i in 0..<planeCount { p[i] = lo + (p[i] + 1) * a }
        }
    }

    /// Checks that fixed per-channel parameters fit `channels`.
    public func validate(channels: Int) throws {
        switch self {
        case .fixedScale(let s) where s.count != channels:
            throw CytoError(.shapeMismatch, "fixed_scale normalization has \(s.count) channel scales but images have \(channels) channels", field: "normalization")
        case .fixedRange(let lo, _) where lo.count != channels:
            throw CytoError(.shapeMismatch, "fixed_range normalization has \(lo.count) channel ranges but images have \(channels) channels", field: "normalization")
        default: break
        }
    }

    /// Normalizes `channels` planes of `planeCount` raw values in place to [-1, 1].
    /// `scratch` holds at least `planeCount` floats.
    public func apply(_ planes: UnsafeMutablePointer<Float>, channels: Int, planeCount: Int, type: SampleType,
                      scratch: UnsafeMutablePointer<Float>) {
        for c in 0..<channels {
            let p = planes + c * planeCount
            let (lo, hi) = range(channel: c, plane: UnsafeBufferPointer(start: p, count: planeCount), type: type, scratch: scratch)
            Normalization.mapToUnit(p, count: planeCount, low: lo, high: hi)
        }
    }

    /// Maps values linearly from [low, high] to [-1, 1], clipping; an empty range (high <= low)
    /// maps everything to -1, and so does NaN.
    @inline(__always)
    public static func mapToUnit(_ p: UnsafeMutablePointer<Float>, count: Int, low: Float, high: Float) {
        guard high > low else {
            p.update(repeating: -1, count: count)
            return
        }
        let a = 2 / (high - low), b = -low * a - 1
        for i in 0..<count {
            var y = p[i] * a + b
            if !(y > -1) { y = -1 }
            if y > 1 { y = 1 }
            p[i] = y
        }
    }
}

/// Percentiles with NumPy's default ('linear') definition: rank p/100*(n-1) between the sorted
/// values, found by selection rather than a full sort.
public enum Percentile {
    /// The `p`-th percentile (0...100) of `values`, which are reordered.
    public static func value(_ values: UnsafeMutableBufferPointer<Float>, _ p: Double) -> Double {
        let n = values.count
        precondition(n > 0)
        let rank = min(max(p, 0), 100) / 100 * Double(n - 1)
        let i = Int(rank.rounded(.down))
        let f = rank - Double(i)
        let a = Double(select(values, i))
        if f == 0 || i + 1 >= n { return a }
        // The next order statistic is the minimum of the part above i after selection.
        var b = Float.infinity
        for j in (i + 1)..<n where values[j] < b { b = values[j] }
        return a + f * (Double(b) - a)
    }

    /// The `k`-th smallest value (0-based); on return values[k] holds it, smaller ones before it,
    /// larger or equal after it (Hoare quickselect with median-of-three pivots).
    public static func select(_ v: UnsafeMutableBufferPointer<Float>, _ k: Int) -> Float {
        var lo = 0, hi = v.count - 1
        while hi > lo {
            let mid = lo + (hi - lo) / 2
            if v[mid] < v[lo] { v.swapAt(mid, lo) }
            if v[hi] < v[lo] { v.swapAt(hi, lo) }
            if v[hi] < v[mid] { v.swapAt(hi, mid) }
            let pivot = v[mid]
            var i = lo, j = hi
            while i <= j {
                while v[i] < pivot { i += 1 }
                while v[j] > pivot { j -= 1 }
                if i <= j { v.swapAt(i, j); i += 1; j -= 1 }
            }
            if k <= j { hi = j } else if k >= i { lo = i } else { return v[k] }
        }
        return v[k]
    }
}

/// Estimates dataset-level normalizations from a sample of crops: per-channel percentiles of all
/// sampled raw values (for `fixedRange`) or a per-channel scale (for `fixedScale`). Values are
/// subsampled evenly to at most `maxValuesPerChannel` per channel.
public final class NormalizationEstimator {
    public let channels: Int
    public let maxValuesPerChannel: Int
    private var values: [[Float]]
    private var seen = 0      // values seen per channel
    private var keepEvery = 1  // keep values whose index is a multiple of this

    public init(channels: Int, maxValuesPerChannel: Int = 4_000_000) {
        self.channels = channels
        self.maxValuesPerChannel = max(2, maxValuesPerChannel)
        values = Array(repeating: [], count: channels)
    }

    /// Adds one crop's raw intensities (CHW, `channels` planes).
    public func add(_ image: PixelImage) throws {
        guard image.channels == channels else {
            throw CytoError(.shapeMismatch, "wrong channel count: \(image.channels), the estimator expects \(channels)")
        }
        let planes = image.floatPlanes, n = image.planeCount
        for c in 0..<channels {
            var i = (keepEvery - seen % keepEvery) % keepEvery
            while i < n { values[c].append(planes[c * n + i]); i += keepEvery }
        }
        seen += n
        // Over budget: keep every other sample (the multiples of twice the stride).
        while values[0].count > maxValuesPerChannel {
            for c in 0..<channels { values[c] = Swift.stride(from: 0, to: values[c].count, by: 2).map { values[c][$0] } }
            keepEvery *= 2
        }
    }

    /// Per-channel percentile `p` of the values seen.
    public func percentile(_ p: Double) throws -> [Float] {
        guard seen > 0 else { throw CytoError(.invalidInput, "no crops were sampled for the normalization estimate") }
        return values.map { v in
            var copy = v
            return copy.withUnsafeMutableBufferPointer { Float(Percentile.value($0, p)) }
        }
    }

    /// `fixedRange` from the low and high percentiles of the sample.
    public func fixedRange(low: Double = 0.5, high: Double = 99.5) throws -> Normalization {
        let lo = try percentile(low), hi = try percentile(high)
        return .fixedRange(low: lo, high: zip(lo, hi).map { max($1, $0 + 1e-6) })
    }

    /// `fixedScale` from the `p`-th percentile of the sample (100: the maximum).
    public func fixedScale(percentile p: Double = 99.9) throws -> Normalization {
        .fixedScale(try percentile(p).map { max($0, 1e-6) })
    }
}
