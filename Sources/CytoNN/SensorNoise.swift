import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A camera's noise on an image in [-1, 1]: y = x + s * e, e ~ N(0, 1) per pixel, with the
/// Poisson-Gaussian variance s^2 = read[c]^2 + shot[c]^2 * u, u = (x + 1) / 2 clamped to [0, 1]
/// (a constant read noise plus shot noise growing with the signal). `read` and `shot` are
/// learned per channel. A generator's convolutions cannot draw pixel-independent noise, which
/// every fluorescence image carries; without this layer they imitate its energy with a fine mesh.
///
/// Noise is drawn in training and in inference. In training, each forward pass takes one word of
/// `rng` as a key and item i draws from a stream seeded by (key, global index of i), as
/// `GaussianNoise` does, so it does not depend on the thread or process count. In inference,
/// item i's stream is seeded by a hash of its own pixels, so one latent vector always gives the
/// same picture, whatever batch it is drawn in.
public final class SensorNoise: Layer {
    public let name: String
    public var kind: String { "SensorNoise" }
    public let channels: Int
    public var training = true
    public var rng: RandomStream
    /// In data-parallel training, where this process's items sit in the global batch.
    public var slice: BatchSlice?
    /// Reuses the last noise drawn (gradient checks by finite differences).
    public var holdSample = false
    /// Per-channel read-noise and shot-noise scales (the value at initialisation: `initialScale`).
    public let read: Parameter
    public let shot: Parameter
    public static let initialScale: Float = 0.01

    private let noise = Tensor(Shape(0))
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var input: Tensor?
    /// Per-plane partial sums of the two parameter gradients, added in plane order.
    private var partial: [Double] = []

    public init(name: String, channels: Int, rng: RandomStream) {
        precondition(channels > 0)
        self.name = name
        self.channels = channels
        self.rng = rng
        read = Parameter(name: "\(name).read", shape: Shape(channels))
        shot = Parameter(name: "\(name).shot", shape: Shape(channels))
        read.value.fill(SensorNoise.initialScale)
        shot.value.fill(SensorNoise.initialScale)
        applyFixed()
    }

    var frozen = false
    func applyFixed() {
        guard let e = getenv("CYTOGAN_SENSOR_FIXED") else { return }
        let v = String(cString: e).split(separator: ",").compactMap { Float($0) }
        guard v.count == 2 * channels else { return }
        for k in 0..<channels { read.value.data[k] = v[k]; shot.value.data[k] = v[channels + k] }
        frozen = true
    }

    public var parameters: [Parameter] { [read, shot] }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {
        read.value.fill(SensorNoise.initialScale)
        shot.value.fill(SensorNoise.initialScale)
        applyFixed()
    }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 4, s[1] == channels else { throw shapeError("expects [N, \(channels), H, W], got \(s)") }
        return s
    }

    public func flops(for s: Shape) -> LayerFLOPs {
        let n = Double(s.count)
        return LayerFLOPs(forward: 6 * n, backwardInput: 6 * n, backwardParameters: 6 * n)
    }

    /// 64 bits from an item's pixels (FNV-1a over their bit patterns, then a final mix).
    static func contentKey(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        let raw = UnsafeRawPointer(p).assumingMemoryBound(to: UInt32.self)
        for i in 0..<count { h = (h ^ UInt64(raw[i])) &* 0x0000_0100_0000_01B3 }
        h ^= h >> 33; h = h &* 0xFF51_AFD7_ED55_8CCD; h ^= h >> 33
        return h
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let s = try outputShape(for: x.shape)
        input = x
        let per = s.itemCount, plane = s[2] * s[3], c = channels
        if !holdSample || noise.shape != s {
            noise.resize(s)
            let key = training ? rng.next() : 0, train = training, slice = slice, np = noise.data, xp = x.data
            parallelFor(s.batch, work: x.count * 8) { items in
                for i in items {
                    let seed = train ? key ^ (UInt64(slice?.globalIndex(i) ?? i) &* 0x9E37_79B9_7F4A_7C15)
                                     : SensorNoise.contentKey(xp + i * per, count: per)
                    var item = RandomStream(seed: seed, purpose: "sensor-noise-item")
                    fillNormal(np + i * per, count: per, std: 1, rng: &item)
                }
            }
        }
        out.resize(s)
        let xp = x.data, np = noise.data, op = out.data, rp = read.value.data, sp = shot.value.data
        parallelFor(s.batch * c, work: x.count * 4) { planes in
            for p in planes {
                let a = rp[p % c], b = sp[p % c], a2 = a * a, b2 = b * b
                let base = p * plane
                for k in base..<(base + plane) {
                    let u = min(max((xp[k] + 1) * 0.5, 0), 1)
                    op[k] = xp[k] + (a2 + b2 * u).squareRoot() * np[k]
                }
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: input == nil ? nil : out, forwarded: input != nil)
        guard let x = input else { return nil }
        let s = x.shape, plane = s[2] * s[3], c = channels, planes = s.batch * c
        if inputGradient { dx.resize(s) }
        if parameterGradients {
            if partial.count < 2 * planes { partial = [Double](repeating: 0, count: 2 * planes) }
        }
        let xp = x.data, np = noise.data, gp = gradOut.data, dp = dx.data, rp = read.value.data, sp = shot.value.data
        let wantInput = inputGradient, wantParams = parameterGradients && !frozen
        partial.withUnsafeMutableBufferPointer { part in
            let pp = part.baseAddress!
            parallelFor(planes, work: x.count * 6) { range in
                for p in range {
                    let a = rp[p % c], b = sp[p % c], a2 = a * a, b2 = b * b
                    let base = p * plane
                    var sa: Double = 0, sb: Double = 0
                    for k in base..<(base + plane) {
                        let t = (xp[k] + 1) * 0.5
                        let u = min(max(t, 0), 1)
                        let sd = (a2 + b2 * u).squareRoot()
                        let ge = gp[k] * np[k]
                        if wantInput {
                            // d s / d x = b^2 / (4 s) inside the clamp, 0 outside.
                            let inside = t > 0 && t < 1 && sd > 0
                            dp[k] = gp[k] + (inside ? ge * b2 / (4 * sd) : 0)
                        }
                        if wantParams && sd > 0 {
                            sa += Double(ge * a / sd)
                            sb += Double(ge * b * u / sd)
                        }
                    }
                    if wantParams { pp[2 * p] = sa; pp[2 * p + 1] = sb }
                }
            }
            if wantParams {
                for k in 0..<c {
                    var ga: Double = 0, gb: Double = 0
                    for p in stride(from: k, to: planes, by: c) { ga += pp[2 * p]; gb += pp[2 * p + 1] }
                    read.grad.data[k] += Float(ga)
                    shot.grad.data[k] += Float(gb)
                }
            }
        }
        return inputGradient ? dx : nil
    }
}
