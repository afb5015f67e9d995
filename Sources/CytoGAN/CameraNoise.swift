import CellImage
import CytoCore
import CytoNN
import Foundation

/// The camera's pixel noise in the model's input space, measured from the training crops.
///
/// A microscope image is the specimen plus the camera's noise (shot noise grows with the signal,
/// read noise does not). A generator of BatchNorm'd convolutions draws the specimen well and the
/// noise badly: its cells come out smooth, the finest texture (Laplacian) is what tells them from
/// real crops. With a camera model the generator draws the specimen, the measured noise is added
/// to every generated image the discriminator sees (so it cannot reward or punish the noise, only
/// the specimen), and to every generated picture.
///
/// Per channel the noise's standard deviation is a piecewise-linear function of the local
/// intensity through `levels` (increasing, model units) and `std` (constant beyond the ends).
public struct CameraNoise: Sendable, Equatable {
    public var levels: [[Float]]
    public var std: [[Float]]

    public init(levels: [[Float]], std: [[Float]]) throws {
        guard !levels.isEmpty, levels.count == std.count else {
            throw CytoError(.invalidInput, "camera noise: 'levels' and 'std' need one list per channel", field: "camera_noise")
        }
        for c in 0..<levels.count {
            guard !levels[c].isEmpty, levels[c].count == std[c].count else {
                throw CytoError(.invalidInput, "camera noise: channel \(c) needs as many levels as standard deviations", field: "camera_noise")
            }
            guard levels[c].allSatisfy({ $0.isFinite }), zip(levels[c], levels[c].dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw CytoError(.invalidInput, "camera noise: channel \(c)'s levels must be finite and increasing", field: "camera_noise")
            }
            guard std[c].allSatisfy({ $0.isFinite && $0 >= 0 && $0 < 1 }) else {
                throw CytoError(.invalidInput, "camera noise: channel \(c)'s standard deviations must be in [0, 1)", field: "camera_noise")
            }
        }
        self.levels = levels; self.std = std
    }

    public var channels: Int { levels.count }

    /// The noise's standard deviation in channel `c` at intensity `x`.
    @inline(__always)
    public func sigma(channel c: Int, at x: Float) -> Float {
        let l = levels[c], s = std[c]
        if x <= l[0] { return s[0] }
        let last = l.count - 1
        if x >= l[last] { return s[last] }
        var k = 1
        while l[k] < x { k += 1 }
        let t = (x - l[k - 1]) / (l[k] - l[k - 1])
        return s[k - 1] + t * (s[k] - s[k - 1])
    }

    /// Adds the camera's noise to `count` images (C x S x S each, NCHW) in place, each value
    /// moved by sigma(its intensity) times a draw from `normals`, then clamped to [-1, 1] like
    /// the crops' own range. `normals` holds one N(0, 1) draw per value.
    public func apply(_ images: UnsafeMutablePointer<Float>, count: Int, plane: Int, normals: UnsafePointer<Float>) {
        let c = channels
        for i in 0..<count {
            for ch in 0..<c {
                let base = (i * c + ch) * plane
                // A table of sigma over [-1, 1] would be faster; the planes are small next to a training step.
                for j in 0..<plane {
                    let x = images[base + j]
                    let y = x + sigma(channel: ch, at: x) * normals[base + j]
                    images[base + j] = min(1, max(-1, y))
                }
            }
        }
    }

    /// Adds noise drawn from `rng` to `values` (count x C x S x S, row-major).
    public func apply(to values: inout [Float], plane: Int, rng: inout RandomStream) {
        var normals = [Float](repeating: 0, count: values.count)
        normals.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        let n = values.count / (plane * channels)
        values.withUnsafeMutableBufferPointer { v in normals.withUnsafeBufferPointer { apply(v.baseAddress!, count: n, plane: plane, normals: $0.baseAddress!) } }
    }

    /// Bins per channel of the estimate.
    public static let bins = 16
    /// Pixels above the floor a channel needs for its noise to be measured (else it gets none).
    public static let minimumPixels = bins * 50

    /// Channels whose noise is zero everywhere (too few pixels above the floor to measure).
    public var silentChannels: [Int] { std.indices.filter { std[$0].allSatisfy { $0 == 0 } } }

    /// Measures the noise from crops in model units (count x C x S x S): at every interior pixel
    /// whose 3 x 3 neighbourhood lies above the range's floor, the discrete Laplacian
    /// (4 x - the 4 neighbours) and the 3 x 3 mean. Pixels are binned by the mean into
    /// `bins` equally filled bins; in each, the Laplacian's robust spread (1.4826 times its median
    /// absolute deviation) over sqrt(20) is the noise's standard deviation (independent noise of
    /// variance v gives the Laplacian variance 20 v; the median ignores the edges of structures).
    /// A channel with fewer than `minimumPixels` such pixels gets no noise.
    public static func estimate(_ values: [Float], count: Int, channels: Int, size: Int) throws -> CameraNoise {
        let s = size, plane = s * s
        guard count > 0, s >= 3, values.count == count * channels * plane else {
            throw CytoError(.invalidInput, "camera noise: no crops to measure the noise from", field: "camera_noise")
        }
        var levels: [[Float]] = [], stds: [[Float]] = []
        for ch in 0..<channels {
            var pairs: [(m: Float, l: Float)] = []
            pairs.reserveCapacity(count * (s - 2) * (s - 2))
            values.withUnsafeBufferPointer { v in
                for i in 0..<count {
                    let p = v.baseAddress! + (i * channels + ch) * plane
                    for y in 1..<(s - 1) {
                        for x in 1..<(s - 1) {
                            var sum: Float = 0, low: Float = 1
                            for dy in -1...1 { for dx in -1...1 { let u = p[(y + dy) * s + x + dx]; sum += u; low = min(low, u) } }
                            guard low > -0.999 else { continue }   // clipped at the floor: no noise left to see
                            let c = p[y * s + x]
                            let lap = 4 * c - p[(y - 1) * s + x] - p[(y + 1) * s + x] - p[y * s + x - 1] - p[y * s + x + 1]
                            pairs.append((sum / 9, lap))
                        }
                    }
                }
            }
            guard pairs.count >= minimumPixels else {
                // Nothing to measure (a channel dark almost everywhere): no noise is added there.
                levels.append([0]); stds.append([0])
                continue
            }
            pairs.sort { $0.m < $1.m }
            var l: [Float] = [], sd: [Float] = []
            for b in 0..<bins {
                let lo = b * pairs.count / bins, hi = (b + 1) * pairs.count / bins
                let part = pairs[lo..<hi]
                let mean = part.reduce(Float(0)) { $0 + $1.m } / Float(part.count)
                let laps = part.map(\.l).sorted()
                let med = laps[laps.count / 2]
                let dev = laps.map { abs($0 - med) }.sorted()
                let sigma = 1.4826 * dev[dev.count / 2] / Float(20).squareRoot()
                // Equal means can repeat where many pixels share a level; keep levels increasing.
                if let last = l.last, mean <= last { sd[sd.count - 1] = max(sd[sd.count - 1], sigma); continue }
                l.append(mean); sd.append(min(sigma, 0.5))
            }
            levels.append(l); stds.append(sd)
        }
        return try CameraNoise(levels: levels, std: stds)
    }

    public var json: JSON {
        ["levels": .array(levels.map { .array($0.map { JSON.float($0) }) }),
         "std": .array(std.map { .array($0.map { JSON.float($0) }) })]
    }

    public init(json: JSON) throws {
        func lists(_ k: String) throws -> [[Float]] {
            guard let a = json[k]?.arrayValue else { throw CytoError(.invalidInput, "camera noise: '\(k)' must be a list of lists of numbers", field: "camera_noise") }
            return try a.map { row in
                guard let r = row.arrayValue else { throw CytoError(.invalidInput, "camera noise: '\(k)' must be a list of lists of numbers", field: "camera_noise") }
                return try r.map { v in
                    guard let x = v.doubleValue else { throw CytoError(.invalidInput, "camera noise: '\(k)' holds a value that is not a number", field: "camera_noise") }
                    return Float(x)
                }
            }
        }
        try self.init(levels: try lists("levels"), std: try lists("std"))
    }
}

/// Whether a configuration models the camera: not at all, to be measured from the training crops
/// before the first step, or measured.
public enum CameraNoiseSetting: Sendable, Equatable {
    case estimate
    case measured(CameraNoise)

    public var json: JSON {
        switch self {
        case .estimate: return "estimate"
        case .measured(let n): return n.json
        }
    }

    public init(json: JSON) throws {
        if let s = json.stringValue {
            guard s == "estimate" else {
                throw CytoError(.invalidInput, "config: 'camera_noise' must be \"estimate\", {levels, std} or null, got \"\(s)\"", field: "camera_noise")
            }
            self = .estimate
            return
        }
        guard case .object = json else {
            throw CytoError(.invalidInput, "config: 'camera_noise' must be \"estimate\", {levels, std} or null", field: "camera_noise")
        }
        self = .measured(try CameraNoise(json: json))
    }

    /// The measured model (nil while it waits to be estimated).
    public var measured: CameraNoise? { if case .measured(let n) = self { return n }; return nil }
}

/// Crops read to measure the camera's noise (about 2 million pixels per channel at 64 x 64).
public let cameraNoiseSample = 512

extension GANModel {
    /// Measures the camera's noise the configuration asks for (`camera_noise` "estimate") from up
    /// to `cameraNoiseSample` crops of `source` spread over it, in the model's input space (so
    /// after `resolveDatasetScale`). Does nothing when none is asked for or it is measured; an
    /// error after training has begun. Crops that cannot be read are skipped.
    public func resolveCameraNoise(from source: CropSource, log: (String) -> Void = { _ in }) throws {
        guard config.cameraNoise == .estimate else { return }
        guard step == 0 else {
            throw CytoError(.invalidInput, "the model has trained \(step) step(s) without its camera noise; it cannot be measured now", field: "camera_noise")
        }
        guard !config.needsDatasetScale else {
            throw CytoError(.invalidInput, "the camera noise is measured in the model's input space: estimate the dataset scale first", field: "camera_noise")
        }
        let p = config.preprocessing
        let loader = CropLoader(preprocessing: p)
        let per = p.channels * p.size * p.size
        let n = min(cameraNoiseSample, source.count)
        var values: [Float] = [], read = 0
        values.reserveCapacity(n * per)
        for k in 0..<n {
            guard let crop = try? loader.load(try source.spec(at: k * source.count / n)), crop.count == per else { continue }
            values += crop; read += 1
        }
        let noise = try CameraNoise.estimate(values, count: read, channels: p.channels, size: p.size)
        setCameraNoise(noise)
        let mid = noise.levels.indices.map { c in String(format: "%.4f", noise.sigma(channel: c, at: 0)) }.joined(separator: ", ")
        let silent = noise.silentChannels.isEmpty ? "" : "; channel(s) \(noise.silentChannels.map(String.init).joined(separator: ", ")) too dark to measure: none added there"
        log("camera noise (measured on \(read) crops): standard deviation at mid-range \(mid) (model units)\(silent)")
    }
}
