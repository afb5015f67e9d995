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
    private var input: Tensor?
    private var forwarded = false
    /// Direct-path buffers: packed and flipped weights, per-thread padded planes.
    private let flipped = Tensor(Shape(0))
    private let scratch = Tensor(Shape(0))

    /// Stride-1 layers with at most 8 output channels run the direct kernels (`DirectConv`).
    var usesDirectKernels: Bool { strideH == 1 && strideW == 1 && outChannels <= 8 && kernelH * kernelW > 1 }

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
        if usesDirectKernels { return directForward(x, geo) }
        let L = lowering
        L.plan(geo, rows: outChannels, allowDirect: true)
        packWeights()
        out.resize(Shape(geo.n, outChannels, geo.ho, geo.wo))
        input = x
        forwarded = true
        let hw = geo.ho * geo.wo, O = outChannels
        let b = bias.map { UnsafePointer($0.value.data) }
        let xp = UnsafePointer(x.data), op = out.data, wp = UnsafePointer(packed.data)
        L.forEachChunk { w, n0, m in
            w.unfold(L, xp, n0: n0, m: m, reuse: false)
            if L.direct {
                let dst = op + n0 * O * hw
                if let b {
                    for o in 0..<O { (dst + o * hw).update(repeating: b[o], count: hw) }
                }
                w.gemmForward(L, weights: wp, m: 1, out: dst, ldc: hw, beta0: b == nil ? 0 : 1)
            } else {
                let cb = w.cbuf.data, cs = L.cStride, slot = L.slot
                w.gemmForward(L, weights: wp, m: m, out: cb, ldc: cs, beta0: 0)
                for i in 0..<m {
                    for o in 0..<O {
                        let src = cb + o * cs + i * slot, dst = op + ((n0 + i) * O + o) * hw
                        let bo = b?[o] ?? 0
                        for j in 0..<hw { dst[j] = src[j] + bo }
                    }
                }
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        if usesDirectKernels { return directBackward(gradOut, x, inputGradient: inputGradient, parameterGradients: parameterGradients) }
        let L = lowering, geo = L.geo
        let hw = geo.ho * geo.wo, O = outChannels, C = inChannels
        let gp = UnsafePointer(gradOut.data), xp = UnsafePointer(x.data), wp = UnsafePointer(packed.data)
        if parameterGradients {
            L.clearWeightGradients()
            if let bias { addBiasGradient(gp, images: geo.n, channels: O, plane: hw, into: bias.grad.data) }
        }
        if inputGradient { dx.resize(x.shape) }
        let dxp = dx.data
        L.forEachChunk(reverse: true) { w, n0, m in
            let dC: UnsafePointer<Float>, ldc: Int
            if L.direct {
                dC = gp + n0 * O * hw; ldc = hw
            } else {
                // The output gradient in the GEMM layout, spare rows between images zeroed.
                let cb = w.cbuf.data, cs = L.cStride, slot = L.slot
                for i in 0..<m {
                    for o in 0..<O {
                        let dst = cb + o * cs + i * slot
                        dst.update(from: gp + ((n0 + i) * O + o) * hw, count: hw)
                        if slot > hw { (dst + hw).update(repeating: 0, count: slot - hw) }
                    }
                }
                dC = UnsafePointer(cb); ldc = cs
            }
            if parameterGradients {
                w.unfold(L, xp, n0: n0, m: m, reuse: true)
                w.gemmWeightGradient(L, dC: dC, ldc: ldc, m: m)
            }
            if inputGradient {
                w.gemmInputGradient(L, weights: wp, dC: dC, ldc: ldc, m: m)
                (dxp + n0 * C * geo.h * geo.w).update(repeating: 0, count: m * C * geo.h * geo.w)
                w.fold(L, into: dxp, n0: n0, m: m)
            }
        }
        if parameterGradients {
            let gw = weight.grad.data, p = L.summedWeightGradient()
            for o in 0..<O {
                for c in 0..<C {
                    for ky in 0..<kernelH {
                        for kx in 0..<kernelW {
                            gw[((o * C + c) * kernelH + ky) * kernelW + kx] += p[L.weightIndex(ky: ky, row: o, c: c, kx: kx)]
                        }
                    }
                }
            }
        }
        return inputGradient ? dx : nil
    }

    /// Geometry of the direct path: padded input (hp x wp) for the forward, padded output
    /// gradient (ghp x gwp) for the input gradient.
    private func directSizes(_ geo: ConvGeometry) -> (hp: Int, wp: Int, ghp: Int, gwp: Int) {
        (geo.ho + kernelH - 1, DirectConv.paddedWidth(outputWidth: geo.wo, kw: kernelW),
         geo.h + kernelH - 1, DirectConv.paddedWidth(outputWidth: geo.w, kw: kernelW))
    }

    /// Sizes the per-thread scratch planes; returns the floats each thread owns.
    private func directScratch(_ geo: ConvGeometry) -> Int {
        let (hp, wp, ghp, gwp) = directSizes(geo)
        let per = max(inChannels * hp * wp, outChannels * ghp * gwp)
        scratch.resize(Shape(Engine.threads * per))
        return per
    }

    private func directForward(_ x: Tensor, _ geo: ConvGeometry) -> Tensor {
        let (hp, wp, _, _) = directSizes(geo)
        let C = inChannels, O = outChannels
        let per = directScratch(geo)
        packed.resize(Shape((O + DirectConv.tile - 1) / DirectConv.tile * DirectConv.tile * C * kernelH * kernelW))
        DirectConv.pack(weight.value.data, o: O, c: C, kh: kernelH, kw: kernelW, flipped: false, into: packed.data)
        out.resize(Shape(geo.n, O, geo.ho, geo.wo))
        input = x
        forwarded = true
        let xp = UnsafePointer(x.data), op = out.data, sp = scratch.data, wp_ = UnsafePointer(packed.data)
        let b = bias.map { UnsafePointer($0.value.data) }
        let kh = kernelH, kw = kernelW
        parallelChunks(geo.n, work: out.count * C * kh * kw) { t, range in
            let pad = sp + t * per
            for n in range {
                DirectConv.pad(xp + n * C * geo.h * geo.w, channels: C, h: geo.h, w: geo.w, into: pad, hp: hp, wp: wp,
                               top: geo.padTop, left: geo.padLeft)
                DirectConv.convolve(pad: pad, ins: C, hp: hp, wp: wp, packed: wp_, outs: O, kh: kh, kw: kw, bias: b,
                                    out: op + n * O * geo.ho * geo.wo, ho: geo.ho, wo: geo.wo)
            }
        }
        return out
    }

    private func directBackward(_ gradOut: Tensor, _ x: Tensor, inputGradient: Bool, parameterGradients: Bool) -> Tensor? {
        let geo = try! geometry(for: x.shape)
        let (_, _, ghp, gwp) = directSizes(geo)
        let C = inChannels, O = outChannels, kh = kernelH, kw = kernelW
        let hw = geo.ho * geo.wo
        let per = directScratch(geo)
        let gp = UnsafePointer(gradOut.data), xp = UnsafePointer(x.data), sp = scratch.data
        if parameterGradients {
            if let bias { addBiasGradient(gp, images: geo.n, channels: O, plane: hw, into: bias.grad.data) }
            // One input channel per task: each writes only its own weights' gradients.
            let hp = geo.ho + kh - 1, wp = DirectConv.paddedWidth(outputWidth: geo.wo, kw: kw)
            let dw = weight.grad.data
            parallelChunks(C, work: geo.n * hw * O * kh * kw) { t, range in
                let pad = sp + t * per
                for c in range {
                    for n in 0..<geo.n {
                        DirectConv.pad(xp + (n * C + c) * geo.h * geo.w, channels: 1, h: geo.h, w: geo.w, into: pad, hp: hp, wp: wp,
                                       top: geo.padTop, left: geo.padLeft)
                        DirectConv.weightGradient(pad: pad, wp: wp, grad: gp + n * O * hw, outs: O, ho: geo.ho, wo: geo.wo,
                                                  c: c, channels: C, kh: kh, kw: kw, into: dw)
                    }
                }
            }
        }
        guard inputGradient else { return nil }
        // dx = the output gradient, padded by (k - 1 - pad before), convolved with the rotated,
        // transposed kernel.
        flipped.resize(Shape((C + DirectConv.tile - 1) / DirectConv.tile * DirectConv.tile * O * kh * kw))
        DirectConv.pack(weight.value.data, o: O, c: C, kh: kh, kw: kw, flipped: true, into: flipped.data)
        dx.resize(x.shape)
        let dp = dx.data, fp = UnsafePointer(flipped.data)
        parallelChunks(geo.n, work: x.count * O * kh * kw) { t, range in
            let pad = sp + t * per
            for n in range {
                DirectConv.pad(gp + n * O * hw, channels: O, h: geo.ho, w: geo.wo, into: pad, hp: ghp, wp: gwp,
                               top: kh - 1 - geo.padTop, left: kw - 1 - geo.padLeft)
                DirectConv.convolve(pad: pad, ins: O, hp: ghp, wp: gwp, packed: fp, outs: C, kh: kh, kw: kw, bias: nil,
                                    out: dp + n * C * geo.h * geo.w, ho: geo.h, wo: geo.w)
            }
        }
        return dx
    }
}

/// db[o] += sum over images and pixels of g[n][o][...], for NCHW `g` with `plane` pixels per
/// channel (channels split among threads; each sum in a fixed order).
func addBiasGradient(_ g: UnsafePointer<Float>, images n: Int, channels: Int, plane: Int, into db: UnsafeMutablePointer<Float>) {
    parallelFor(channels, work: n * channels * plane) { range in
        for o in range {
            var s: Float = 0
            for i in 0..<n {
                let p = g + (i * channels + o) * plane
                var t: Float = 0
                for j in 0..<plane { t += p[j] }
                s += t
            }
            db[o] += s
        }
    }
}
