import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nearest-neighbour upsampling x2 followed by a k x k convolution with 'same' padding and
/// stride 1, computed on the LOW-resolution input: output pixel (2y + a, 2x + b) sees input
/// rows y + floor((a + ky - p) / 2), so each of the four output phases (a, b) is a small
/// convolution (3 x 3 for k = 5) whose weights are sums of the k x k weights. For k = 5 this does
/// 9/25 of the multiply-adds of the literal upsample + convolution, forward and backward.
/// When the phase kernels are 3 x 3 with one pixel of padding (k = 3 to 6), the forward pass and
/// both gradients run on Winograd's F(2x2, 3x3) (`Winograd3x3`): 16 instead of 36 multiply-adds
/// per 2 x 2 outputs. Other kernels (and `CYTOGAN_WINOGRAD=none`) take unfolding + GEMM.
/// The weights are stored as an ordinary Conv2D's ([out, in, k, k] + bias), so checkpoints are
/// interchangeable with `Upsample2x` followed by `Conv2D(kernel: k, padding: .same)`.
public final class UpsampleConv2D: Layer {
    public let name: String
    public var kind: String { "UpsampleConv2D" }
    public let inChannels: Int, outChannels: Int, kernel: Int
    public let weight: Parameter
    public let bias: Parameter?

    /// TensorFlow 'same' padding before, for stride 1: (k - 1) / 2.
    private let padBefore: Int
    /// Smallest low-resolution offset over both phases.
    private let minOffset: Int
    /// Side of the four phase kernels (largest low-resolution offset - smallest + 1; 3 for k = 5).
    public let phaseKernel: Int
    let lowering = ConvLowering()
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private let packed = Tensor(Shape(0))
    private var input: Tensor?
    private var forwarded = false
    /// Whether `packed` holds this forward pass's weights (the GEMM path's; a Winograd forward
    /// leaves it stale).
    private var packedCurrent = false
    /// Whether the forward pass runs on Winograd's algorithm (see above); tests turn it off to
    /// compare.
    var winograd: Bool
    /// The weights the phase kernels were last summed from.
    private let summedWeights = WeightSnapshot()
    private let phaseWeights = Tensor(Shape(0))
    private let phaseBias = Tensor(Shape(0))
    /// The forward pass and the weight gradient (in -> 4 * out phase planes).
    private lazy var forwardWinograd = Winograd3x3(inChannels: inChannels, outChannels: 4 * outChannels)
    /// The input gradient on Winograd's algorithm: a 3 x 3 convolution of the output gradient's
    /// 4 * out phase planes with the phase kernels flipped and transposed ([in][4 * out][3][3]).
    private lazy var backwardWinograd = Winograd3x3(inChannels: 4 * outChannels, outChannels: inChannels)
    private let flippedPhaseWeights = Tensor(Shape(0))
    /// Whether each Winograd kernel set still has to be computed from `phaseWeights`.
    private var forwardStale = true, backwardStale = true
    /// The instruction set of the Winograd transforms (tests force each).
    var winogradInstructionSet: Int32 = Conv2D.cpuInstructionSet

    public init(name: String, inChannels: Int, outChannels: Int, kernel: Int = 5, bias: Bool = true) {
        precondition(inChannels > 0 && outChannels > 0 && kernel > 0)
        self.name = name
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel
        weight = Parameter(name: "\(name).weight", shape: Shape(outChannels, inChannels, kernel, kernel))
        self.bias = bias ? Parameter(name: "\(name).bias", shape: Shape(outChannels)) : nil
        padBefore = (kernel - 1) / 2
        minOffset = UpsampleConv2D.floorDiv(-padBefore, 2)
        let maxOffset = UpsampleConv2D.floorDiv(1 + kernel - 1 - padBefore, 2)
        phaseKernel = maxOffset - minOffset + 1
        winograd = phaseKernel == 3 && minOffset == -1 && UpsampleConv2D.winogradAllowed
    }

    /// CYTOGAN_WINOGRAD=none turns Winograd's algorithm off everywhere, to compare.
    static let winogradAllowed: Bool = getenv("CYTOGAN_WINOGRAD").map { String(cString: $0) } != "none"

    /// The four phase kernels, summed from the k x k weights: [(a * out + o) * 2 + b][in][3][3]
    /// for phase (a, b) (row a, column b of each 2 x 2 output block) of output channel o.
    private func sumPhaseWeights() {
        let O = outChannels, C = inChannels
        phaseWeights.resize(Shape(4 * O, C, 3, 3))
        phaseWeights.fill(0)
        let p = phaseWeights.data
        sumIntoPhases { o, c, a, b, ty, tx, v in p[(((a * O + o) * 2 + b) * C + c) * 9 + ty * 3 + tx] += v }
    }

    /// Calls `add(o, c, a, b, ty, tx, v)` for every k x k weight v (output o, input c) and each
    /// phase (a, b): v is one term of that phase kernel's tap (ty, tx).
    @inline(__always)
    private func sumIntoPhases(_ add: (Int, Int, Int, Int, Int, Int, Float) -> Void) {
        let O = outChannels, C = inChannels, k = kernel, w = weight.value.data
        for o in 0..<O {
            for c in 0..<C {
                for ky in 0..<k {
                    for kx in 0..<k {
                        let v = w[((o * C + c) * k + ky) * k + kx]
                        for a in 0..<2 {
                            for b in 0..<2 { add(o, c, a, b, phaseTap(a, ky), phaseTap(b, kx), v) }
                        }
                    }
                }
            }
        }
    }

    /// gw[o][c][ky][kx] += the gradients of the four phase-kernel taps that k x k weight fed:
    /// `phase(o, c, a, b, ty, tx)` reads tap (ty, tx) of phase (a, b)'s kernel for (o, c).
    @inline(__always)
    private func addPhaseGradients(_ phase: (Int, Int, Int, Int, Int, Int) -> Float) {
        let O = outChannels, C = inChannels, k = kernel, gw = weight.grad.data
        for o in 0..<O {
            for c in 0..<C {
                for ky in 0..<k {
                    for kx in 0..<k {
                        var s: Float = 0
                        for a in 0..<2 {
                            for b in 0..<2 { s += phase(o, c, a, b, phaseTap(a, ky), phaseTap(b, kx)) }
                        }
                        gw[((o * C + c) * k + ky) * k + kx] += s
                    }
                }
            }
        }
    }

    /// Plane views of a low-resolution input [N, C, h, w] and of the four phases of the
    /// full-resolution output [N, O, 2h, 2w] as 4 * O low-resolution planes (phase (a, b) of
    /// channel o is plane (a * O + o) * 2 + b; planes b = 0 and 1 interleave by column).
    private func views(h: Int, w: Int) -> (low: Winograd3x3.PlaneView, phases: Winograd3x3.PlaneView) {
        if let v = cachedViews, v.h == h, v.w == w { return (v.low, v.phases) }
        let O = outChannels, C = inChannels, hw = h * w
        let low = Winograd3x3.PlaneView(image: C * hw, channel: (0..<C).map { $0 * hw }, row: w, column: 1)
        var channel = [Int](repeating: 0, count: 4 * O)
        for a in 0..<2 {
            for b in 0..<2 {
                for o in 0..<O { channel[(a * O + o) * 2 + b] = o * 4 * hw + a * 2 * w + b }
            }
        }
        let phases = Winograd3x3.PlaneView(image: O * 4 * hw, channel: channel, row: 4 * w, column: 2)
        cachedViews = (h, w, low, phases)
        return (low, phases)
    }
    private var cachedViews: (h: Int, w: Int, low: Winograd3x3.PlaneView, phases: Winograd3x3.PlaneView)?

    /// Sums the phase kernels again if the weights changed since they were last summed.
    private func refreshPhaseWeights() {
        if summedWeights.unchanged(weight.value) { return }
        sumPhaseWeights()
        forwardStale = true; backwardStale = true
    }

    private func winogradForward(_ x: Tensor, h: Int, w: Int) {
        let O = outChannels, C = inChannels
        let wg = forwardWinograd
        wg.instructionSet = winogradInstructionSet
        refreshPhaseWeights()
        if forwardStale {
            let p = UnsafePointer(phaseWeights.data)
            wg.setWeights { o, c in p + (o * C + c) * 9 }
            forwardStale = false
        }
        // The bias of output channel o serves all four of its phases.
        if let b = bias {
            phaseBias.resize(Shape(4 * O))
            for p in 0..<4 * O { phaseBias.data[p] = b.value.data[(p / 2) % O] }
        }
        let v = views(h: h, w: w)
        wg.run(images: x.shape[0], height: h, width: w, input: x.data, v.low, output: out.data, v.phases,
               bias: bias == nil ? nil : UnsafePointer(phaseBias.data))
    }

    private func winogradInputGradient(_ gradOut: Tensor, h: Int, w: Int) {
        let wg = backwardWinograd
        wg.instructionSet = winogradInstructionSet
        refreshPhaseWeights()
        if backwardStale {
            wg.setTransposedWeights(of: phaseWeights.data, scratch: flippedPhaseWeights)
            backwardStale = false
        }
        let v = views(h: h, w: w)
        wg.run(images: gradOut.shape[0], height: h, width: w, input: gradOut.data, v.phases, output: dx.data, v.low, bias: nil)
    }

    /// The phase kernels' gradient on Winograd's algorithm, summed into the k x k weights' (each
    /// k x k weight fed one tap of each of the four phase kernels).
    private func winogradWeightGradient(_ x: Tensor, _ gradOut: Tensor, h: Int, w: Int) {
        let O = outChannels, C = inChannels
        let wg = forwardWinograd
        wg.instructionSet = winogradInstructionSet
        phaseGradient.resize(Shape(4 * O, C, 3, 3))
        phaseGradient.fill(0)
        let v = views(h: h, w: w)
        wg.weightGradient(images: x.shape[0], height: h, width: w, input: x.data, v.low,
                          gradient: gradOut.data, v.phases, into: phaseGradient.data)
        let p = UnsafePointer(phaseGradient.data)
        addPhaseGradients { o, c, a, b, ty, tx in p[(((a * O + o) * 2 + b) * C + c) * 9 + ty * 3 + tx] }
    }
    private let phaseGradient = Tensor(Shape(0))

    private static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Tap of the phase kernel that kernel row (or column) `k` of phase `a` lands on.
    @inline(__always)
    private func phaseTap(_ a: Int, _ k: Int) -> Int { UpsampleConv2D.floorDiv(a + k - padBefore, 2) - minOffset }

    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {
        let k = kernel * kernel
        scheme.fill(weight.value, fanIn: inChannels * k, fanOut: outChannels * k, rng: &rng)
        bias?.value.fill(0)
    }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 4, s[1] == inChannels, s[2] > 0, s[3] > 0 else {
            throw shapeError("expected input [N, \(inChannels), H, W], got \(s)")
        }
        return Shape(s[0], outChannels, 2 * s[2], 2 * s[3])
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        guard (try? outputShape(for: input)) != nil else { return LayerFLOPs() }
        let pixels = Double(input[0] * input[2] * input[3])
        let macs = pixels * 4 * Double(outChannels * inChannels * phaseKernel * phaseKernel)
        let literal = pixels * 4 * Double(outChannels * inChannels * kernel * kernel)
        return LayerFLOPs(forward: 2 * macs, backwardInput: 2 * macs, backwardParameters: 2 * macs, effectiveForward: 2 * literal)
    }

    /// Sums the k x k weights into the four phase kernels, packed for the lowering
    /// (GEMM row = phase * out + o, phase = 2a + b).
    private func packWeights() {
        let L = lowering, O = outChannels
        packedCurrent = true
        packed.resize(Shape(L.packedCount))
        packed.fill(0)
        let p = packed.data
        sumIntoPhases { o, c, a, b, ty, tx, v in p[L.weightIndex(ky: ty, row: (2 * a + b) * O + o, c: c, kx: tx)] += v }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        let n = x.shape[0], h = x.shape[2], w = x.shape[3], O = outChannels
        let geo = ConvGeometry(n: n, c: inChannels, h: h, w: w, kh: phaseKernel, kw: phaseKernel, sh: 1, sw: 1,
                               padTop: -minOffset, padLeft: -minOffset, ho: h, wo: w)
        let L = lowering
        L.plan(geo, rows: 4 * O, allowDirect: false)
        out.resize(os)
        input = x
        forwarded = true
        if winograd {
            L.forgetUnfolding()
            packedCurrent = false
            winogradForward(x, h: h, w: w)
            return out
        }
        packWeights()
        let b = bias.map { UnsafePointer($0.value.data) }
        let xp = UnsafePointer(x.data), op = out.data, wp = UnsafePointer(packed.data)
        let W2 = 2 * w, plane = 4 * h * w
        L.forEachChunk { worker, n0, m in
            let cb = worker.cbuf.data, cs = L.columns(m)
            worker.unfold(L, xp, n0: n0, m: m, reuse: false)
            worker.gemmForward(L, weights: wp, m: m, out: cb, beta0: 0)
            // Interleave the four phases into the full-resolution output, adding the bias.
            for i in 0..<m {
                for o in 0..<O {
                    let bo = b?[o] ?? 0
                    let dst = op + ((n0 + i) * O + o) * plane
                    for a in 0..<2 {
                        let s0 = cb + ((2 * a) * O + o) * cs + i * w
                        let s1 = cb + ((2 * a + 1) * O + o) * cs + i * w
                        for y in 0..<h {
                            let d = dst + (2 * y + a) * W2, r0 = s0 + y * m * w, r1 = s1 + y * m * w
                            for xx in 0..<w {
                                d[2 * xx] = r0[xx] + bo
                                d[2 * xx + 1] = r1[xx] + bo
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        let L = lowering, geo = L.geo
        let n = geo.n, h = geo.h, w = geo.w, O = outChannels, C = inChannels
        let W2 = 2 * w, plane = 4 * h * w
        let gp = UnsafePointer(gradOut.data), xp = UnsafePointer(x.data)
        if parameterGradients, let bias { addBiasGradient(gp, images: n, channels: O, plane: plane, into: bias.grad.data) }
        if inputGradient { dx.resize(x.shape) }
        if winograd {
            if inputGradient { winogradInputGradient(gradOut, h: h, w: w) }
            if parameterGradients { winogradWeightGradient(x, gradOut, h: h, w: w) }
            return inputGradient ? dx : nil
        }
        if !packedCurrent { packWeights() }
        let wp = UnsafePointer(packed.data), dxp = dx.data
        if parameterGradients { L.clearWeightGradients() }
        L.forEachChunk(reverse: true, balanced: parameterGradients) { worker, n0, m in
            let cb = worker.cbuf.data, cs = L.columns(m)
            // Split the output gradient into its four phases (GEMM layout).
            for i in 0..<m {
                for o in 0..<O {
                    let src = gp + ((n0 + i) * O + o) * plane
                    for a in 0..<2 {
                        let d0 = cb + ((2 * a) * O + o) * cs + i * w
                        let d1 = cb + ((2 * a + 1) * O + o) * cs + i * w
                        for y in 0..<h {
                            let s = src + (2 * y + a) * W2, r0 = d0 + y * m * w, r1 = d1 + y * m * w
                            for xx in 0..<w {
                                r0[xx] = s[2 * xx]
                                r1[xx] = s[2 * xx + 1]
                            }
                        }
                    }
                }
            }
            if parameterGradients {
                worker.unfold(L, xp, n0: n0, m: m, reuse: true)
                worker.gemmWeightGradient(L, dC: cb, m: m)
            }
            if inputGradient {
                worker.gemmInputGradient(L, weights: wp, dC: cb, m: m)
                (dxp + n0 * C * h * w).update(repeating: 0, count: m * C * h * w)
                worker.fold(L, into: dxp, n0: n0, m: m)
            }
        }
        if parameterGradients {
            let p = L.summedWeightGradient()
            addPhaseGradients { o, c, a, b, ty, tx in p[L.weightIndex(ky: ty, row: (2 * a + b) * O + o, c: c, kx: tx)] }
        }
        return inputGradient ? dx : nil
    }
}

/// Nearest-neighbour upsampling by 2 in height and width (NCHW). The literal form; networks use
/// `UpsampleConv2D` when a convolution follows.
public final class Upsample2x: Layer {
    public let name: String
    public var kind: String { "Upsample2x" }
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var forwarded = false

    public init(name: String) { self.name = name }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 4 else { throw shapeError("expected input [N, C, H, W], got \(s)") }
        return Shape(s[0], s[1], 2 * s[2], 2 * s[3])
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        out.resize(os)
        forwarded = true
        let planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3]
        let xp = x.data, op = out.data
        parallelFor(planes, work: os.count) { range in
            for p in range {
                let src = xp + p * h * w, dst = op + p * 4 * h * w
                for y in 0..<h {
                    let r = src + y * w, d0 = dst + 2 * y * 2 * w, d1 = d0 + 2 * w
                    for xx in 0..<w {
                        let v = r[xx]
                        d0[2 * xx] = v; d0[2 * xx + 1] = v; d1[2 * xx] = v; d1[2 * xx + 1] = v
                    }
                }
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard inputGradient else { return nil }
        let s = out.shape
        let planes = s[0] * s[1], h = s[2] / 2, w = s[3] / 2
        dx.resize(Shape(s[0], s[1], h, w))
        let gp = gradOut.data, dp = dx.data
        parallelFor(planes, work: s.count) { range in
            for p in range {
                let src = gp + p * 4 * h * w, dst = dp + p * h * w
                for y in 0..<h {
                    let g0 = src + 2 * y * 2 * w, g1 = g0 + 2 * w, d = dst + y * w
                    for xx in 0..<w { d[xx] = g0[2 * xx] + g0[2 * xx + 1] + g1[2 * xx] + g1[2 * xx + 1] }
                }
            }
        }
        return dx
    }
}
