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
    /// Stride-1 layers with few output channels (the generator's 32 -> 3 layer) are lowered the
    /// other way round (`transposedForward`): a GEMM with those channels as M would run at a
    /// few GFLOP/s.
    var transposed: Bool { strideH == 1 && strideW == 1 && outChannels <= 8 && kernelH * kernelW > 1 }

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

    /// Geometry of the transposed convolution T (input gradient of this one): from the output
    /// (outChannels, ho x wo) back to the input's shape, kernel rotated by 180 degrees, padding
    /// k - 1 - pad before.
    private func transposedGeometry(_ g: ConvGeometry) -> ConvGeometry {
        ConvGeometry(n: g.n, c: outChannels, h: g.ho, w: g.wo, kh: kernelH, kw: kernelW, sh: 1, sw: 1,
                     padTop: kernelH - 1 - g.padTop, padLeft: kernelW - 1 - g.padLeft, ho: g.h, wo: g.w)
    }

    /// Packs T's weights: W'[c][o][ky][kx] = W[o][c][kh-1-ky][kw-1-kx] (GEMM rows = input channels).
    private func packTransposedWeights() {
        let L = lowering
        packed.resize(Shape(L.packedCount))
        let w = weight.value.data, p = packed.data
        for o in 0..<outChannels {
            for c in 0..<inChannels {
                for ky in 0..<kernelH {
                    for kx in 0..<kernelW {
                        p[L.weightIndex(ky: kernelH - 1 - ky, row: c, c: o, kx: kernelW - 1 - kx)] =
                            w[((o * inChannels + c) * kernelH + ky) * kernelW + kx]
                    }
                }
            }
        }
    }

    /// y = conv(x) computed as T's input gradient: U = W'^T x (a GEMM with M = out * kh * kw,
    /// K = in channels), folded (col2im) onto the bias.
    private func transposedForward(_ x: Tensor, _ geo: ConvGeometry) -> Tensor {
        let L = lowering, tg = transposedGeometry(geo)
        L.plan(tg, rows: inChannels, allowDirect: true)
        packTransposedWeights()
        out.resize(Shape(geo.n, outChannels, geo.ho, geo.wo))
        input = x
        forwarded = true
        let C = inChannels, O = outChannels, hw = geo.h * geo.w, ohw = geo.ho * geo.wo
        let b = bias.map { UnsafePointer($0.value.data) }
        let xp = UnsafePointer(x.data), op = out.data, wp = UnsafePointer(packed.data)
        L.forEachChunk { w, n0, m in
            let dC: UnsafePointer<Float>
            if L.direct {
                dC = xp + n0 * C * hw
            } else {
                L.gather(xp, m: m, n0: n0, channels: C, into: w.cbuf.data)
                dC = UnsafePointer(w.cbuf.data)
            }
            w.gemmInputGradient(L, weights: wp, dC: dC, m: m)
            for i in 0..<m {
                for o in 0..<O { (op + ((n0 + i) * O + o) * ohw).update(repeating: b?[o] ?? 0, count: ohw) }
            }
            w.fold(L, into: op, n0: n0, m: m)
        }
        return out
    }

    /// Backward of the transposed form: the output gradient is T's input, unfolded once; the
    /// input gradient is T's forward GEMM and the weight gradient T's weight-gradient GEMM.
    private func transposedBackward(_ gradOut: Tensor, _ x: Tensor, inputGradient: Bool, parameterGradients: Bool) -> Tensor? {
        let L = lowering, geo = try! geometry(for: x.shape)
        let C = inChannels, O = outChannels, hw = geo.h * geo.w, ohw = geo.ho * geo.wo
        let gp = UnsafePointer(gradOut.data), xp = UnsafePointer(x.data), wp = UnsafePointer(packed.data)
        if parameterGradients {
            L.clearWeightGradients()
            if let bias { addBiasGradient(gp, images: geo.n, channels: O, plane: ohw, into: bias.grad.data) }
        }
        if inputGradient { dx.resize(x.shape) }
        let dxp = dx.data
        L.forEachChunk(balanced: parameterGradients) { w, n0, m in
            w.unfold(L, gp, n0: n0, m: m, reuse: false)
            if parameterGradients {
                let dC: UnsafePointer<Float>
                if L.direct {
                    dC = xp + n0 * C * hw
                } else {
                    L.gather(xp, m: m, n0: n0, channels: C, into: w.cbuf.data)
                    dC = UnsafePointer(w.cbuf.data)
                }
                w.gemmWeightGradient(L, dC: dC, m: m)
            }
            if inputGradient {
                if L.direct {
                    w.gemmForward(L, weights: wp, m: 1, out: dxp + n0 * C * hw, beta0: 0)
                } else {
                    w.gemmForward(L, weights: wp, m: m, out: w.cbuf.data, beta0: 0)
                    L.scatter(w.cbuf.data, m: m, n0: n0, channels: C, bias: nil, into: dxp)
                }
            }
        }
        if parameterGradients {
            let gw = weight.grad.data, p = L.summedWeightGradient()
            for o in 0..<O {
                for c in 0..<C {
                    for ky in 0..<kernelH {
                        for kx in 0..<kernelW {
                            gw[((o * C + c) * kernelH + ky) * kernelW + kx] += p[L.weightIndex(ky: kernelH - 1 - ky, row: c, c: o, kx: kernelW - 1 - kx)]
                        }
                    }
                }
            }
        }
        return inputGradient ? dx : nil
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
        if transposed { return transposedForward(x, geo) }
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
                w.gemmForward(L, weights: wp, m: 1, out: dst, beta0: b == nil ? 0 : 1)
            } else {
                w.gemmForward(L, weights: wp, m: m, out: w.cbuf.data, beta0: 0)
                L.scatter(w.cbuf.data, m: m, n0: n0, channels: O, bias: b, into: op)
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        if transposed { return transposedBackward(gradOut, x, inputGradient: inputGradient, parameterGradients: parameterGradients) }
        let L = lowering, geo = L.geo
        let hw = geo.ho * geo.wo, O = outChannels, C = inChannels
        let gp = UnsafePointer(gradOut.data), xp = UnsafePointer(x.data), wp = UnsafePointer(packed.data)
        if parameterGradients {
            L.clearWeightGradients()
            if let bias { addBiasGradient(gp, images: geo.n, channels: O, plane: hw, into: bias.grad.data) }
        }
        if inputGradient { dx.resize(x.shape) }
        let dxp = dx.data
        L.forEachChunk(reverse: true, balanced: parameterGradients) { w, n0, m in
            let dC: UnsafePointer<Float>
            if L.direct {
                dC = gp + n0 * O * hw
            } else {
                L.gather(gp, m: m, n0: n0, channels: O, into: w.cbuf.data)
                dC = UnsafePointer(w.cbuf.data)
            }
            if parameterGradients {
                w.unfold(L, xp, n0: n0, m: m, reuse: true)
                w.gemmWeightGradient(L, dC: dC, m: m)
            }
            if inputGradient {
                w.gemmInputGradient(L, weights: wp, dC: dC, m: m)
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
