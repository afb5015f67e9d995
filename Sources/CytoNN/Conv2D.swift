import CytoCore

/// 2-D convolution (cross-correlation, as every framework) on NCHW input with any kernel,
/// stride and TensorFlow padding. Weight [out, in, kh, kw] (PyTorch's layout), bias [out].
/// Computed by `ConvLowering` (unfolding + sgemm) with buffers reused across calls.
public final class Conv2D: Layer {
    public let name: String
    public var kind: String { "Conv2D" }
    public let inChannels: Int, outChannels: Int
    public let kernelH: Int, kernelW: Int, strideH: Int, strideW: Int
    public let padding: Padding
    public let weight: Parameter
    public let bias: Parameter?

    let lowering = ConvLowering()
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private let packed = Tensor(Shape(0))
    private let dPacked = Tensor(Shape(0))
    private var input: Tensor?
    private var forwarded = false

    public convenience init(name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1,
                padding: Padding = .same, bias: Bool = true) {
        self.init(name: name, inChannels: inChannels, outChannels: outChannels, kernel: (kernel, kernel),
                  stride: (stride, stride), padding: padding, bias: bias)
    }

    public init(name: String, inChannels: Int, outChannels: Int, kernel: (Int, Int), stride: (Int, Int),
                padding: Padding = .same, bias: Bool = true) {
        precondition(inChannels > 0 && outChannels > 0 && kernel.0 > 0 && kernel.1 > 0 && stride.0 > 0 && stride.1 > 0)
        self.name = name
        self.inChannels = inChannels; self.outChannels = outChannels
        kernelH = kernel.0; kernelW = kernel.1; strideH = stride.0; strideW = stride.1
        self.padding = padding
        weight = Parameter(name: "\(name).weight", shape: Shape(outChannels, inChannels, kernel.0, kernel.1))
        self.bias = bias ? Parameter(name: "\(name).bias", shape: Shape(outChannels)) : nil
    }

    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {
        let k = kernelH * kernelW
        scheme.fill(weight.value, fanIn: inChannels * k, fanOut: outChannels * k, rng: &rng)
        bias?.value.fill(0)
    }

    func geometry(for s: Shape) throws -> ConvGeometry {
        guard s.rank == 4, s[1] == inChannels else {
            throw shapeError("expected input [N, \(inChannels), H, W], got \(s)")
        }
        guard let oy = padding.output(input: s[2], kernel: kernelH, stride: strideH),
              let ox = padding.output(input: s[3], kernel: kernelW, stride: strideW) else {
            throw shapeError("input \(s) is too small for a \(kernelH)x\(kernelW) kernel with '\(padding.rawValue)' padding")
        }
        return ConvGeometry(n: s[0], c: s[1], h: s[2], w: s[3], kh: kernelH, kw: kernelW, sh: strideH, sw: strideW,
                            padTop: oy.padBefore, padLeft: ox.padBefore, ho: oy.size, wo: ox.size)
    }

    public func outputShape(for input: Shape) throws -> Shape {
        let g = try geometry(for: input)
        return Shape(g.n, outChannels, g.ho, g.wo)
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        guard let g = try? geometry(for: input) else { return LayerFLOPs() }
        let macs = Double(g.n * outChannels * g.ho * g.wo) * Double(inChannels * kernelH * kernelW)
        return LayerFLOPs(forward: 2 * macs, backwardInput: 2 * macs, backwardParameters: 2 * macs)
    }

    /// Packs the weights into the lowering's [tap][out][K] layout.
    private func packWeights() {
        let L = lowering
        packed.resize(Shape(L.packedCount))
        let w = weight.value.data, p = packed.data
        for o in 0..<outChannels {
            for c in 0..<inChannels {
                for ky in 0..<kernelH {
                    for kx in 0..<kernelW {
                        p[L.weightIndex(ky: ky, row: o, c: c, kx: kx)] = w[((o * inChannels + c) * kernelH + ky) * kernelW + kx]
                    }
                }
            }
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let geo = try geometry(for: x.shape)
        let L = lowering
        L.plan(geo, rows: outChannels, allowDirect: true)
        packWeights()
        out.resize(Shape(geo.n, outChannels, geo.ho, geo.wo))
        input = x
        forwarded = true
        let hw = geo.ho * geo.wo, O = outChannels
        let b = bias?.value.data
        let xp = UnsafePointer(x.data), op = out.data
        var n0 = 0
        while n0 < geo.n {
            let m = min(L.g, geo.n - n0)
            L.unfold(xp, n0: n0, m: m, reuse: false)
            if L.direct {
                let dst = op + n0 * O * hw
                if let b {
                    for o in 0..<O { (dst + o * hw).update(repeating: b[o], count: hw) }
                }
                L.gemmForward(weights: packed.data, m: 1, out: dst, ldc: hw, beta0: b == nil ? 0 : 1)
            } else {
                L.gemmForward(weights: packed.data, m: m, out: L.cbuf.data, ldc: L.cStride, beta0: 0)
                let cb = L.cbuf.data, cs = L.cStride, slot = L.slot
                parallelFor(m * O, work: m * O * hw) { range in
                    for io in range {
                        let i = io / O, o = io % O
                        let src = cb + o * cs + i * slot, dst = op + ((n0 + i) * O + o) * hw
                        let bo = b?[o] ?? 0
                        for j in 0..<hw { dst[j] = src[j] + bo }
                    }
                }
            }
            n0 += m
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        let L = lowering, geo = L.geo
        let hw = geo.ho * geo.wo, O = outChannels
        let gp = UnsafePointer(gradOut.data)
        if parameterGradients {
            dPacked.resize(Shape(L.packedCount))
            dPacked.fill(0)
            if let bias {
                let db = bias.grad.data
                for o in 0..<O {
                    var s: Float = 0
                    for n in 0..<geo.n {
                        let p = gp + (n * O + o) * hw
                        for j in 0..<hw { s += p[j] }
                    }
                    db[o] += s
                }
            }
        }
        if inputGradient { dx.resize(x.shape); dx.fill(0) }
        // Chunks in reverse order: the last one's unfolding is still in U from the forward pass.
        let chunks = (geo.n + L.g - 1) / L.g
        for chunk in stride(from: chunks - 1, through: 0, by: -1) {
            let n0 = chunk * L.g, m = min(L.g, geo.n - n0)
            let dC: UnsafePointer<Float>, ldc: Int
            if L.direct {
                dC = gp + n0 * O * hw; ldc = hw
            } else {
                gatherGradient(gp, n0: n0, m: m)
                dC = UnsafePointer(L.cbuf.data); ldc = L.cStride
            }
            if parameterGradients {
                L.unfold(UnsafePointer(x.data), n0: n0, m: m, reuse: true)
                L.gemmWeightGradient(dC: dC, ldc: ldc, m: m, into: dPacked.data)
            }
            if inputGradient {
                L.gemmInputGradient(weights: packed.data, dC: dC, ldc: ldc, m: m)
                L.fold(into: dx.data, n0: n0, m: m)
            }
        }
        if parameterGradients {
            let gw = weight.grad.data, p = dPacked.data
            for o in 0..<O {
                for c in 0..<inChannels {
                    for ky in 0..<kernelH {
                        for kx in 0..<kernelW {
                            gw[((o * inChannels + c) * kernelH + ky) * kernelW + kx] += p[L.weightIndex(ky: ky, row: o, c: c, kx: kx)]
                        }
                    }
                }
            }
        }
        return inputGradient ? dx : nil
    }

    /// Copies the output gradient of images n0 ..< n0 + m into the GEMM layout, zeroing the
    /// spare rows between images.
    private func gatherGradient(_ gp: UnsafePointer<Float>, n0: Int, m: Int) {
        let L = lowering, geo = L.geo
        let hw = geo.ho * geo.wo, O = outChannels
        let cb = L.cbuf.data, cs = L.cStride, slot = L.slot
        parallelFor(m * O, work: m * O * hw) { range in
            for io in range {
                let i = io / O, o = io % O
                let dst = cb + o * cs + i * slot
                dst.update(from: gp + ((n0 + i) * O + o) * hw, count: hw)
                if slot > hw { (dst + hw).update(repeating: 0, count: slot - hw) }
            }
        }
    }
}
