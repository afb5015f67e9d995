import CytoCore

/// Per-item 64-bit keys taken from a network's input, shared with the layers that draw
/// per-item random numbers (`NoiseInjection`), so a network stays a deterministic function of
/// its input: the same input row gives the same draws, whatever the batch, thread count or rank.
public final class ItemKeys {
    public internal(set) var keys: [UInt64] = []
    public init() {}
}

/// Identity on its input (a view, no copy) that records a key per item: a hash of the item's
/// bits (FNV-1a over the 32-bit words, then a SplitMix finaliser).
public final class ItemKeyTap: Layer {
    public let name: String
    public var kind: String { "ItemKeyTap" }
    public let table: ItemKeys
    private var view = ViewOfInput()

    public init(name: String, table: ItemKeys) {
        self.name = name
        self.table = table
    }

    public func outputShape(for input: Shape) throws -> Shape { input }

    public func forward(_ x: Tensor) throws -> Tensor {
        let n = x.shape.batch, per = x.shape.itemCount
        if table.keys.count != n { table.keys = [UInt64](repeating: 0, count: n) }  // once per batch size
        table.keys.withUnsafeMutableBufferPointer { keys in
            x.data.withMemoryRebound(to: UInt32.self, capacity: x.count) { bits in
                for i in 0..<n {
                    var h: UInt64 = 0xCBF2_9CE4_8422_2325
                    for j in 0..<per { h = (h ^ UInt64(bits[i * per + j])) &* 0x0000_0100_0000_01B3 }
                    h ^= h >> 30; h = h &* 0xBF58_476D_1CE4_E5B9
                    h ^= h >> 27; h = h &* 0x94D0_49BB_1331_11EB
                    keys[i] = h ^ (h >> 31)
                }
            }
        }
        return view.forward(x, as: x.shape)
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try view.backward(gradOut, of: self, inputGradient: inputGradient)
    }
}

/// Learned per-pixel noise (StyleGAN's noise inputs): y[n, c] = x[n, c] + scale[c] * z[n], one
/// N(0, 1) map z per item shared by all channels, drawn from the item's key in `table` and this
/// layer's name. It gives a generator a source of fine, uncorrelated detail (texture, camera
/// grain) that its smooth convolutions cannot draw from the latent vector alone. Drawn in
/// training and inference alike (it is part of what the network draws). `scale` starts at 0.
public final class NoiseInjection: Layer {
    public let name: String
    public var kind: String { "NoiseInjection" }
    public let channels: Int
    public let table: ItemKeys
    public let scale: Parameter
    public var training = true
    private let salt: UInt64
    private let noise = Tensor(Shape(0))
    private let out = Tensor(Shape(0))
    private var forwarded = false

    public init(name: String, channels: Int, table: ItemKeys) {
        precondition(channels > 0)
        self.name = name
        self.channels = channels
        self.table = table
        scale = Parameter(name: "\(name).scale", shape: Shape(channels))
        salt = name.utf8.reduce(0x9E37_79B9_7F4A_7C15 as UInt64) { ($0 ^ UInt64($1)) &* 0x0000_0100_0000_01B3 }
    }

    public var parameters: [Parameter] { [scale] }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) { scale.value.fill(0) }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank == 4, input[1] == channels else {
            throw shapeError("expects [N, \(channels), H, W], got \(input)")
        }
        return input
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        let n = x.shape.batch, plane = x.shape[2] * x.shape[3], c = channels
        guard table.keys.count == n else {
            throw CytoError(.internal, "layer '\(name)' (\(kind)): \(table.keys.count) item keys for a batch of \(n)", field: name)
        }
        noise.resize(Shape(n, plane))
        out.resize(x.shape)
        let keys = table.keys, salt = salt, zp = noise.data, xp = x.data, op = out.data, sp = scale.value.data
        parallelFor(n, work: x.count * 4) { items in
            for i in items {
                var rng = RandomStream(seed: keys[i] ^ salt, purpose: "noise-injection")
                fillNormal(zp + i * plane, count: plane, std: 1, rng: &rng)
                for ch in 0..<c {
                    let s = sp[ch], base = (i * c + ch) * plane, z = zp + i * plane
                    for p in 0..<plane { op[base + p] = xp[base + p] + s * z[p] }
                }
            }
        }
        forwarded = true
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        if parameterGradients {
            let n = gradOut.shape.batch, plane = gradOut.shape[2] * gradOut.shape[3], c = channels
            let gp = gradOut.data, zp = noise.data, dp = scale.grad.data
            for ch in 0..<c {
                var acc: Double = 0
                for i in 0..<n {
                    let g = gp + (i * c + ch) * plane, z = zp + i * plane
                    var s: Float = 0
                    for p in 0..<plane { s += g[p] * z[p] }
                    acc += Double(s)
                }
                dp[ch] += Float(acc)
            }
        }
        return inputGradient ? gradOut : nil
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        let c = Double(input.count)
        return LayerFLOPs(forward: 2 * c, backwardInput: 0, backwardParameters: 2 * c)
    }
}

/// [N, C, H, W] -> [N, 2C, H, W]: the input followed by `gain` times its 5-point Laplacian per
/// channel (4 x - the four neighbours, zero outside the image): a fixed high-pass view that lets a
/// discriminator see the finest texture as directly as the intensities. The operator is
/// symmetric, so the backward pass applies it again to the gradient of the extra channels.
public final class LaplacianChannels: Layer {
    public let name: String
    public var kind: String { "LaplacianChannels" }
    public let gain: Float
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var forwarded = false

    public init(name: String, gain: Float) {
        self.name = name
        self.gain = gain
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank == 4 else { throw shapeError("expects [N, C, H, W], got \(input)") }
        return Shape(input[0], 2 * input[1], input[2], input[3])
    }

    /// dst = gain * L(src) over one h x w plane.
    private static func laplacian(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, h: Int, w: Int, gain: Float) {
        for y in 0..<h {
            let r = src + y * w, o = dst + y * w
            for x in 0..<w {
                var s = 4 * r[x]
                if x > 0 { s -= r[x - 1] }
                if x + 1 < w { s -= r[x + 1] }
                if y > 0 { s -= r[x - w] }
                if y + 1 < h { s -= r[x + w] }
                o[x] = gain * s
            }
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let shape = try outputShape(for: x.shape)
        out.resize(shape)
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], plane = h * w, g = gain
        let xp = x.data, op = out.data
        parallelFor(n, work: x.count * 6) { items in
            for i in items {
                (op + 2 * i * c * plane).update(from: xp + i * c * plane, count: c * plane)
                for ch in 0..<c {
                    LaplacianChannels.laplacian(xp + (i * c + ch) * plane, op + ((2 * i + 1) * c + ch) * plane, h: h, w: w, gain: g)
                }
            }
        }
        forwarded = true
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard inputGradient else { return nil }
        let n = gradOut.shape[0], c = gradOut.shape[1] / 2, h = gradOut.shape[2], w = gradOut.shape[3], plane = h * w, g = gain
        dx.resize(Shape(n, c, h, w))
        let gp = gradOut.data, dp = dx.data
        parallelFor(n, work: gradOut.count * 4) { items in
            for i in items {
                for ch in 0..<c {
                    let d = dp + (i * c + ch) * plane
                    LaplacianChannels.laplacian(gp + ((2 * i + 1) * c + ch) * plane, d, h: h, w: w, gain: g)
                    let direct = gp + (2 * i * c + ch) * plane
                    for p in 0..<plane { d[p] += direct[p] }
                }
            }
        }
        return dx
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        LayerFLOPs(forward: 6 * Double(input.count), backwardInput: 7 * Double(input.count))
    }
}
