import CytoCore

/// Per-pixel noise with a learned strength per channel (StyleGAN's noise inputs):
/// y[n, c, h, w] = x[n, c, h, w] + weight[c] * z[n, h, w], z ~ N(0, 1), one draw per item and
/// position shared by every channel. It gives a generator a source of fine, random detail
/// (texture, grain) so that its convolutions need not invent it from the latent vector.
/// `weight` starts at 0: the layer is the identity until training finds a use for it.
///
/// Unlike `GaussianNoise` the layer is active in inference too (it is part of what the
/// generator draws). In training the noise of a forward pass comes from `rng` (one key per pass,
/// item i seeded by (key, i)); in inference item i's noise is seeded by a hash of the item's own
/// input values, so a generator stays a function of its latent vector: the same z gives the same
/// image whatever the batch, the thread count or the call. `holdSample` reuses the last noise.
public final class NoiseInjection: Layer {
    public let name: String
    public var kind: String { "NoiseInjection" }
    public let channels: Int
    public var training = true
    public var rng: RandomStream
    public var holdSample = false
    public let weight: Parameter

    private let noise = Tensor(Shape(0))
    private let out = Tensor(Shape(0))
    private var forwarded = false

    public init(name: String, channels: Int, rng: RandomStream) {
        precondition(channels > 0)
        self.name = name
        self.channels = channels
        self.rng = rng
        weight = Parameter(name: "\(name).weight", shape: Shape(channels))
    }

    public var parameters: [Parameter] { [weight] }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) { weight.value.fill(0) }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 4, s[1] == channels else { throw shapeError("expected input [N, \(channels), H, W], got \(s)") }
        return s
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let s = try outputShape(for: x.shape)
        forwarded = true
        let n = s[0], c = s[1], plane = s[2] * s[3], per = c * plane
        let draw = !(holdSample && noise.shape == Shape(n, plane))
        noise.resize(Shape(n, plane))
        out.resize(s)
        let xp = x.data, zp = noise.data, op = out.data, wp = weight.value.data
        let key: UInt64? = training && draw ? rng.next() : nil
        let salt = NoiseInjection.hash(name.utf8.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 })
        parallelFor(n, work: x.count * 4) { items in
            for i in items {
                if draw {
                    let seed = key.map { $0 ^ (UInt64(i) &* 0x9E37_79B9_7F4A_7C15) } ?? NoiseInjection.hash(xp + i * per, count: per, salt: salt)
                    var item = RandomStream(seed: seed, purpose: "noise-injection")
                    fillNormal(zp + i * plane, count: plane, std: 1, rng: &item)
                }
                for ch in 0..<c {
                    let w = wp[ch], src = xp + i * per + ch * plane, dst = op + i * per + ch * plane, z = zp + i * plane
                    for j in 0..<plane { dst[j] = src[j] + w * z[j] }
                }
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: forwarded ? out : nil, forwarded: forwarded)
        if parameterGradients {
            let s = out.shape, n = s[0], c = s[1], plane = s[2] * s[3]
            let gp = gradOut.data, zp = noise.data, dw = weight.grad.data
            parallelFor(c, work: gradOut.count) { chans in
                for ch in chans {
                    var acc = 0.0
                    for i in 0..<n {
                        let g = gp + (i * c + ch) * plane, z = zp + i * plane
                        var part: Float = 0
                        for j in 0..<plane { part += g[j] * z[j] }
                        acc += Double(part)
                    }
                    dw[ch] += Float(acc)
                }
            }
        }
        return inputGradient ? gradOut : nil
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        let n = Double(input.count)
        return LayerFLOPs(forward: 2 * n, backwardInput: 0, backwardParameters: 2 * n)
    }

    /// A 64-bit mix of one word (splitmix64's finalizer).
    static func hash(_ v: UInt64) -> UInt64 {
        var z = v &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A hash of `count` floats' bit patterns, mixed with `salt`.
    static func hash(_ p: UnsafeMutablePointer<Float>, count: Int, salt: UInt64) -> UInt64 {
        var h = salt
        var j = 0
        while j + 1 < count {
            let word = UInt64(p[j].bitPattern) | (UInt64(p[j + 1].bitPattern) << 32)
            h = hash(h ^ word)
            j += 2
        }
        if j < count { h = hash(h ^ UInt64(p[j].bitPattern)) }
        return h
    }
}
