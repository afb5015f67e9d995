import CConvKernels
import CytoCore
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// 2-D convolution (cross-correlation, as every framework) on NCHW input with any kernel,
/// stride and TensorFlow padding. Weight [out, in, kh, kw] (PyTorch's layout), bias [out].
/// Computed by `ConvLowering` (unfolding + sgemm) with buffers reused across calls; thin layers
/// (few input channels) run forward and backward on direct kernels instead (`CConvKernels`), and
/// 5 x 5 stride-2 layers on Winograd's algorithm through a polyphase split (`PolyphaseWinograd`).
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
    /// Whether `packed` holds the weights of the last forward pass (a direct forward skips it).
    private var packedCurrent = false
    private var input: Tensor?
    private var forwarded = false
    /// Stride-1 layers with few output channels (a generator's last layer) that the direct
    /// kernels do not serve are lowered the other way round (`transposedForward`): a GEMM with
    /// those channels as M would run at a few GFLOP/s. Where the direct kernels serve them they
    /// win every pass (small-64's 16 -> 3 layer, one thread, AMD Zen 4: 12.4 ms against 26.5
    /// with AVX-512, 19.7 against 26.9 with AVX2; forward, input and weight gradients summed).
    var transposed: Bool {
        strideH == 1 && strideW == 1 && outChannels <= 8 && kernelH * kernelW > 1 && preferredInstructionSet == 0
    }

    /// The direct kernels' instruction set: the CPU's best (0: none), or a lower one named by
    /// CYTOGAN_CONV_KERNELS (avx2, or none for unfolding + GEMM everywhere), to compare them.
    static let cpuInstructionSet: Int32 = {
        let best = ck_conv_cpu_isa()
        switch getenv("CYTOGAN_CONV_KERNELS").map({ String(cString: $0) }) {
        case "none": return 0
        case "avx2": return min(best, 1)
        default: return best
        }
    }()
    /// The direct kernels' instruction set by name (avx512, avx2 or none), for logs and benchmarks.
    public static var directKernelName: String { ["none", "avx2", "avx512"][Int(cpuInstructionSet)] }
    /// The instruction set of the direct kernels this layer uses: nil chooses (the CPU's best,
    /// for layers where unfolding costs more than it saves), 0 never; tests set it.
    var directInstructionSet: Int32? = nil
    /// The instruction set of the Winograd transforms (tests force each).
    var winogradInstructionSet: Int32 = Conv2D.cpuInstructionSet
    /// Direct kernels beat unfolding + GEMM up to this many weights per output (C * kh * kw):
    /// measured per layer against OpenBLAS's own kernels for the same instruction set, AVX-512
    /// wins up to 800 (the discriminators' second layers), AVX2 up to 400.
    static func directMaxTaps(_ isa: Int32) -> Int { isa >= 2 ? 800 : 400 }
    /// The weight gradient takes the direct kernels (within `directMaxTaps`) up to 400 weights per
    /// output, and beyond where the matrix product is thin (at most 8 outputs) or each image's
    /// output plane is large enough (1,024 pixels) to pay for the kernel's per-image sums across
    /// its vectors. Measured the same way, with OpenBLAS's Cooperlake and Haswell kernels: both
    /// instruction sets win at 400 (small-64's second layer), AVX-512 loses at 800 on 16 x 16
    /// outputs (small-64's third) and wins on 48 x 48 (paper-96's second) and with 3 outputs
    /// (paper-96's last generator layer).
    static func directWeightGradient(taps: Int, outputs: Int, plane: Int) -> Bool {
        taps <= 400 || outputs <= 8 || plane >= 1024
    }
    /// Whether the 5 x 5, stride-2 layers run on `PolyphaseWinograd`: nil chooses per pass (see
    /// `polyphase(for:pass:)`), false never, true in every pass the geometry allows; tests set it.
    var winograd: Bool? = UpsampleConv2D.winogradAllowed ? nil : false
    private var polyphaseAlgorithm: PolyphaseWinograd?

    /// The polyphase Winograd algorithm for one pass over this geometry, or nil. It replaces
    /// unfolding + GEMM in every pass, and the direct kernels in the input gradient, where it
    /// measured faster on every layer of at least 16 input channels. With AVX-512 the direct
    /// kernels keep the forward passes and weight gradients they serve (small-64's second and
    /// third layers, at batch 64, one thread: forward 18.5 and 17.3 ms direct against 19.1 and
    /// 19.5); with AVX2 Winograd takes those too (an AMD EPYC Zen 3, small-64's second layer:
    /// weight gradient 25.1 ms against 39.9 direct, forward 24.7 against 26.8, at batch 256 99.2
    /// against 108.1).
    private func polyphase(for geo: ConvGeometry, pass: Pass) -> PolyphaseWinograd? {
        guard winograd != false,
              PolyphaseWinograd.applies(kernel: (kernelH, kernelW), stride: (strideH, strideW), h: geo.h, w: geo.w,
                                        padTop: geo.padTop, padLeft: geo.padLeft, ho: geo.ho, wo: geo.wo)
        else { return nil }
        if winograd == nil {
            guard inChannels >= 16 else { return nil }
            switch pass {
            case .forward: if directKernel(for: geo) >= 2 { return nil }
            case .inputGradient: break
            case .weightGradient: if directKernel(for: geo, pass: .weightGradient) >= 2 { return nil }
            }
        }
        let p = polyphaseAlgorithm ?? PolyphaseWinograd(inChannels: inChannels, outChannels: outChannels)
        polyphaseAlgorithm = p
        p.instructionSet = winogradInstructionSet
        return p
    }

    /// Direct-path buffers: packed weights, per-thread padded planes.
    private let directPacked = Tensor(Shape(0))
    private var directScratch: [Tensor] = []

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
        packedCurrent = true
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

    /// The passes of a convolution that may each take the direct kernels or the GEMM path.
    enum Pass { case forward, inputGradient, weightGradient }

    /// The direct kernels' instruction set for this layer before its geometry is known (0: none).
    private var preferredInstructionSet: Int32 {
        directInstructionSet
            ?? (inChannels * kernelH * kernelW <= Conv2D.directMaxTaps(Conv2D.cpuInstructionSet) ? Conv2D.cpuInstructionSet : 0)
    }

    /// The direct kernel's instruction set for one pass over this geometry, or 0 for the GEMM
    /// path. The input gradient follows the forward pass; the weight gradient has its own limit.
    func directKernel(for geo: ConvGeometry, pass: Pass = .forward) -> Int32 {
        let taps = inChannels * kernelH * kernelW, isa = preferredInstructionSet
        guard isa > 0, isa <= Conv2D.cpuInstructionSet, strideH <= 2, strideW <= 2,
              geo.padTop <= kernelH, geo.padLeft <= kernelW else { return 0 }
        if pass == .weightGradient && directInstructionSet == nil
            && !Conv2D.directWeightGradient(taps: taps, outputs: outChannels, plane: geo.ho * geo.wo) { return 0 }
        return isa
    }

    /// This layer's geometry in the direct kernels' terms.
    private func kernelGeometry(_ geo: ConvGeometry) -> ck_conv {
        ck_conv(c: Int32(geo.c), h: Int32(geo.h), w: Int32(geo.w), o: Int32(outChannels),
                kh: Int32(kernelH), kw: Int32(kernelW), sh: Int32(strideH), sw: Int32(strideW),
                pad_top: Int32(geo.padTop), pad_left: Int32(geo.padLeft), ho: Int32(geo.ho), wo: Int32(geo.wo))
    }

    /// Gives each of the engine's threads a scratch buffer of at least `count` floats.
    private func reserveScratch(_ buffers: inout [Tensor], _ count: Int) {
        let threads = Engine.threads
        while buffers.count < threads { buffers.append(Tensor(Shape(0))) }
        for b in buffers.prefix(threads) where b.count < count { b.resize(Shape(count)) }
    }

    /// The bookkeeping of a forward pass that does not unfold (direct kernels, polyphase
    /// Winograd): the lowering is still planned (the backward pass may use it) and told that it
    /// holds no unfolding of `x`; the GEMM-packed weights are left stale until a backward pass
    /// needs them; the output is sized and the input kept for the backward pass.
    private func beginForwardWithoutUnfolding(_ x: Tensor, _ geo: ConvGeometry) {
        lowering.plan(geo, rows: outChannels, allowDirect: true)
        lowering.forgetUnfolding()
        packedCurrent = false
        out.resize(Shape(geo.n, outChannels, geo.ho, geo.wo))
        input = x
        forwarded = true
    }

    /// Forward through the direct kernel, image by image on the engine's threads.
    private func directForward(_ x: Tensor, _ geo: ConvGeometry, isa: Int32) -> Tensor {
        beginForwardWithoutUnfolding(x, geo)
        var g = kernelGeometry(geo)
        directPacked.resize(Shape(ck_conv_packed_count(&g, isa)))
        ck_conv_pack(&g, isa, weight.value.data, directPacked.data)
        reserveScratch(&directScratch, ck_conv_scratch_count(&g))
        let inPlane = geo.c * geo.h * geo.w, outPlane = outChannels * geo.ho * geo.wo
        let xp = UnsafePointer(x.data), op = out.data, wp = UnsafePointer(directPacked.data)
        let b = bias.map { UnsafePointer($0.value.data) }
        parallelChunks(geo.n, work: geo.n * outPlane * inChannels * kernelH * kernelW) { t, images in
            var gg = g
            let scratch = self.directScratch[t].data
            for i in images {
                let rc = ck_conv_forward(&gg, isa, xp + i * inPlane, wp, b, op + i * outPlane, scratch)
                precondition(rc == 0, "direct convolution kernel refused \(geo)")
            }
        }
        return out
    }

    /// One phase of the input gradient through the direct kernel: the input pixels (sh * Y + py,
    /// sw * X + px) receive a stride-1 convolution of the output gradient with the kernel taps
    /// (ky0 + sh * t, kx0 + sw * u), flipped. `g` is that convolution's geometry (nil: no tap
    /// reaches these pixels, their gradient is 0); its packed weights start at `offset`.
    struct InputPhase {
        var py = 0, px = 0
        var g: ck_conv?
        var ky0 = 0, kx0 = 0
        var offset = 0
    }

    /// The input gradient's phases for one geometry and instruction set, with the sizes of their
    /// packed weights and buffers.
    struct InputGradientPlan {
        var geo: ConvGeometry
        var isa: Int32
        var phases: [InputPhase]
        var packedCount = 0, flippedCount = 0, scratchCount = 0, outCount = 0
    }
    private var inputPlan: InputGradientPlan?
    private let phasePacked = Tensor(Shape(0))
    private let phaseFlipped = Tensor(Shape(0))
    private var phaseOut: [Tensor] = []

    /// The plan of the input gradient through the direct kernel, or nil when this layer's forward
    /// pass does not use it (or a phase's geometry is out of the kernel's range).
    func directInputPlan(_ geo: ConvGeometry) -> InputGradientPlan? {
        let isa = directKernel(for: geo)
        guard isa > 0 else { return nil }
        if let p = inputPlan, p.geo == geo, p.isa == isa { return p }
        var plan = InputGradientPlan(geo: geo, isa: isa, phases: [])
        for py in 0..<strideH {
            for px in 0..<strideW {
                let ky0 = (py + geo.padTop) % strideH, kx0 = (px + geo.padLeft) % strideW
                let nt = ky0 < kernelH ? (kernelH - ky0 + strideH - 1) / strideH : 0
                let nu = kx0 < kernelW ? (kernelW - kx0 + strideW - 1) / strideW : 0
                let hq = (geo.h - py + strideH - 1) / strideH, wq = (geo.w - px + strideW - 1) / strideW
                var phase = InputPhase(py: py, px: px, g: nil, ky0: ky0, kx0: kx0, offset: plan.packedCount)
                if nt > 0 && nu > 0 && hq > 0 && wq > 0 {
                    let padTop = nt - 1 - (py + geo.padTop - ky0) / strideH
                    let padLeft = nu - 1 - (px + geo.padLeft - kx0) / strideW
                    guard padTop >= 0, padTop <= nt, padLeft >= 0, padLeft <= nu else { return nil }
                    var g = ck_conv(c: Int32(outChannels), h: Int32(geo.ho), w: Int32(geo.wo), o: Int32(inChannels),
                                    kh: Int32(nt), kw: Int32(nu), sh: 1, sw: 1, pad_top: Int32(padTop), pad_left: Int32(padLeft),
                                    ho: Int32(hq), wo: Int32(wq))
                    plan.packedCount += ck_conv_packed_count(&g, isa)
                    plan.flippedCount = max(plan.flippedCount, inChannels * outChannels * nt * nu)
                    plan.scratchCount = max(plan.scratchCount, ck_conv_scratch_count(&g))
                    plan.outCount = max(plan.outCount, inChannels * hq * wq)
                    phase.g = g
                }
                plan.phases.append(phase)
            }
        }
        inputPlan = plan
        return plan
    }

    /// dx = the input gradient of this convolution for every image, phase by phase through the
    /// direct kernel (see `InputPhase`), on the engine's threads.
    private func directInputGradient(_ gp: UnsafePointer<Float>, plan: InputGradientPlan, into dxp: UnsafeMutablePointer<Float>) {
        let geo = plan.geo, isa = plan.isa, C = inChannels, O = outChannels
        // Each phase's taps flipped to [C][O][nt][nu], then packed for the kernel.
        phasePacked.resize(Shape(plan.packedCount))
        phaseFlipped.resize(Shape(plan.flippedCount))
        let w = weight.value.data, flipped = phaseFlipped.data
        for ph in plan.phases {
            guard var g = ph.g else { continue }
            let nt = Int(g.kh), nu = Int(g.kw)
            for c in 0..<C {
                for o in 0..<O {
                    for t in 0..<nt {
                        for u in 0..<nu {
                            let ky = ph.ky0 + strideH * (nt - 1 - t), kx = ph.kx0 + strideW * (nu - 1 - u)
                            flipped[((c * O + o) * nt + t) * nu + u] = w[((o * C + c) * kernelH + ky) * kernelW + kx]
                        }
                    }
                }
            }
            ck_conv_pack(&g, isa, flipped, phasePacked.data + ph.offset)
        }
        reserveScratch(&phaseScratch, plan.scratchCount)
        reserveScratch(&phaseOut, plan.outCount)
        let packed = UnsafePointer(phasePacked.data)
        let inPlane = geo.h * geo.w, gradPlane = O * geo.ho * geo.wo, sh = strideH, sw = strideW
        let single = plan.phases.count == 1
        parallelChunks(geo.n, work: geo.n * gradPlane * C * kernelH * kernelW) { t, images in
            let sbuf = self.phaseScratch[t].data, obuf = self.phaseOut[t].data
            for i in images {
                let dst = dxp + i * C * inPlane
                if !single { dst.update(repeating: 0, count: C * inPlane) }
                for ph in plan.phases {
                    guard var g = ph.g else { continue }
                    let rc = ck_conv_forward(&g, isa, gp + i * gradPlane, packed + ph.offset, nil, single ? dst : obuf, sbuf)
                    precondition(rc == 0, "direct convolution kernel refused the input gradient of \(geo)")
                    if single { continue }
                    let hq = Int(g.ho), wq = Int(g.wo)
                    for c in 0..<C {
                        for y in 0..<hq {
                            let s = obuf + (c * hq + y) * wq
                            let d = dst + c * inPlane + (sh * y + ph.py) * geo.w + ph.px
                            for x in 0..<wq { d[sw * x] = s[x] }
                        }
                    }
                }
            }
        }
    }

    private var phaseScratch: [Tensor] = []
    private var weightPartials: [Tensor] = []

    /// weight.grad += the weight gradient over every image through the direct kernel: each
    /// thread sums its own run of images, the threads' sums are added in a fixed order.
    private func directWeightGradient(_ gp: UnsafePointer<Float>, _ xp: UnsafePointer<Float>, geo: ConvGeometry, isa: Int32) {
        var g = kernelGeometry(geo)
        let threads = Engine.threads, count = weight.value.count
        reserveScratch(&directScratch, ck_conv_scratch_count(&g))
        reserveScratch(&weightPartials, count)
        for t in weightPartials.prefix(threads) { t.data.update(repeating: 0, count: count) }
        let inPlane = geo.c * geo.h * geo.w, gradPlane = outChannels * geo.ho * geo.wo
        parallelChunks(geo.n, work: geo.n * gradPlane * inChannels * kernelH * kernelW) { t, images in
            var gg = g
            let scratch = self.directScratch[t].data, partial = self.weightPartials[t].data
            for i in images {
                let rc = ck_conv_weight_gradient(&gg, isa, xp + i * inPlane, gp + i * gradPlane, partial, scratch)
                precondition(rc == 0, "direct convolution kernel refused the weight gradient of \(geo)")
            }
        }
        let gw = weight.grad.data
        for t in weightPartials.prefix(threads) {
            let p = t.data
            for j in 0..<count { gw[j] += p[j] }
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let geo = try geometry(for: x.shape)
        if transposed { return transposedForward(x, geo) }
        if let p = polyphase(for: geo, pass: .forward) {
            beginForwardWithoutUnfolding(x, geo)
            p.forward(x.data, images: geo.n, h: geo.h, w: geo.w, weight: weight.value,
                      bias: bias.map { UnsafePointer($0.value.data) }, into: out.data)
            return out
        }
        let isa = directKernel(for: geo)
        if isa > 0 { return directForward(x, geo, isa: isa) }
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
        let gp = UnsafePointer(gradOut.data), xp = UnsafePointer(x.data)
        if parameterGradients {
            L.clearWeightGradients()
            if let bias { addBiasGradient(gp, images: geo.n, channels: O, plane: hw, into: bias.grad.data) }
        }
        if inputGradient { dx.resize(x.shape) }
        let dxp = dx.data
        // The polyphase Winograd algorithm where it serves a pass (see `polyphase(for:pass:)`).
        var inputLeft = inputGradient, weightsLeft = parameterGradients
        if inputLeft, let p = polyphase(for: geo, pass: .inputGradient) {
            p.inputGradient(gp, images: geo.n, h: geo.h, w: geo.w, weight: weight.value, into: dxp)
            inputLeft = false
        }
        if weightsLeft, let p = polyphase(for: geo, pass: .weightGradient) {
            p.weightGradient(xp, gp, images: geo.n, h: geo.h, w: geo.w, into: weight.grad.data)
            weightsLeft = false
        }
        if !inputLeft && !weightsLeft { return inputGradient ? dx : nil }
        // Direct kernels where the forward pass used one; the rest unfolds and multiplies.
        let plan = inputLeft ? directInputPlan(geo) : nil
        if let plan { directInputGradient(gp, plan: plan, into: dxp) }
        let isa = directKernel(for: geo, pass: .weightGradient)
        if weightsLeft && isa > 0 && (plan != nil || !inputLeft) {
            directWeightGradient(gp, xp, geo: geo, isa: isa)
            return inputGradient ? dx : nil
        }
        if plan != nil && !weightsLeft { return dx }
        let chunkInputGradient = inputLeft && plan == nil
        if chunkInputGradient && !packedCurrent { packWeights() }
        let wp = UnsafePointer(packed.data)
        L.forEachChunk(reverse: true, balanced: weightsLeft) { w, n0, m in
            let dC: UnsafePointer<Float>
            if L.direct {
                dC = gp + n0 * O * hw
            } else {
                L.gather(gp, m: m, n0: n0, channels: O, into: w.cbuf.data)
                dC = UnsafePointer(w.cbuf.data)
            }
            if weightsLeft {
                w.unfold(L, xp, n0: n0, m: m, reuse: true)
                w.gemmWeightGradient(L, dC: dC, m: m)
            }
            if chunkInputGradient {
                w.gemmInputGradient(L, weights: wp, dC: dC, m: m)
                (dxp + n0 * C * geo.h * geo.w).update(repeating: 0, count: m * C * geo.h * geo.w)
                w.fold(L, into: dxp, n0: n0, m: m)
            }
        }
        if weightsLeft {
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
            for i in 0..<n { s += laneSum(g + (i * channels + o) * plane, plane) }
            db[o] += s
        }
    }
}
