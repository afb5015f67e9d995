import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

@Suite("Convolution")
struct ConvTests {
    @Test("'same' padding is TensorFlow's: extra padding goes to the bottom/right")
    func samePadding() {
        // Values from TensorFlow's definition: out = ceil(in / s), total = max((out-1) s + k - in, 0).
        let cases: [(Int, Int, Int, Int, Int, Int)] = [
            // in, k, s, out, before, after
            (5, 3, 2, 3, 1, 1), (6, 3, 2, 3, 0, 1), (96, 5, 2, 48, 1, 2), (96, 5, 1, 96, 2, 2),
            (7, 4, 1, 7, 1, 2), (7, 1, 3, 3, 0, 0), (4, 5, 2, 2, 1, 2), (2, 5, 3, 1, 1, 2),
        ]
        for (i, k, s, o, b, a) in cases {
            let r = Padding.same.output(input: i, kernel: k, stride: s)!
            #expect(r.size == o && r.padBefore == b && r.padAfter == a, "in \(i) k \(k) s \(s): got \(r)")
        }
        #expect(Padding.valid.output(input: 7, kernel: 3, stride: 2)! == (3, 0, 0))
        #expect(Padding.valid.output(input: 2, kernel: 3, stride: 1) == nil)
    }

    struct ConvCase: CustomStringConvertible {
        var n, c, h, w, o, kh, kw, sh, sw: Int
        var padding: Padding
        /// GEMM columns per chunk (small values force several chunks per batch).
        var chunk = 2048
        var description: String { "n\(n) c\(c) \(h)x\(w) -> o\(o) k\(kh)x\(kw) s\(sh)x\(sw) \(padding) chunk \(chunk)" }

        /// `direct`: the direct kernels' instruction set (nil: the layer chooses; 0: the GEMM paths);
        /// `winograd`: the polyphase Winograd algorithm for 5 x 5 stride-2 layers (nil: the layer
        /// chooses; off unless a test asks, so that the other paths are tested on those shapes too).
        func make(direct: Int32? = nil, winograd: Bool? = false) -> Conv2D {
            let conv = Conv2D(name: "conv", inChannels: c, outChannels: o, kernel: (kh, kw), stride: (sh, sw), padding: padding)
            conv.lowering.targetColumns = chunk
            conv.directInstructionSet = direct
            conv.winograd = winograd
            return conv
        }
    }

    static let cases: [ConvCase] = [
        // Unfolding + GEMM (more than 8 output channels, or stride above 1):
        ConvCase(n: 2, c: 3, h: 9, w: 11, o: 10, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same),    // im2col, one chunk
        ConvCase(n: 20, c: 24, h: 10, w: 10, o: 8, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),  // per-tap, one chunk
        ConvCase(n: 7, c: 24, h: 10, w: 10, o: 8, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same, chunk: 70),  // per-tap, 4 chunks
        ConvCase(n: 5, c: 3, h: 6, w: 5, o: 9, kh: 3, kw: 3, sh: 1, sw: 1, padding: .same, chunk: 60),     // im2col, 3 chunks
        ConvCase(n: 3, c: 32, h: 12, w: 9, o: 6, kh: 5, kw: 3, sh: 2, sw: 1, padding: .same),    // per-tap, odd strides
        ConvCase(n: 2, c: 2, h: 42, w: 40, o: 9, kh: 3, kw: 3, sh: 1, sw: 1, padding: .same),    // im2col, direct output (>= 1536 px)
        ConvCase(n: 2, c: 40, h: 41, w: 40, o: 12, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same),  // per-tap, direct output
        ConvCase(n: 2, c: 5, h: 8, w: 7, o: 3, kh: 4, kw: 2, sh: 3, sw: 2, padding: .same),      // even kernel, stride 3
        ConvCase(n: 2, c: 4, h: 12, w: 29, o: 10, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),  // stride 2, rows wide enough for 8-float windows
        ConvCase(n: 2, c: 4, h: 8, w: 9, o: 3, kh: 3, kw: 3, sh: 2, sw: 2, padding: .valid),
        ConvCase(n: 3, c: 30, h: 7, w: 7, o: 4, kh: 5, kw: 5, sh: 2, sw: 2, padding: .valid),    // per-tap valid
        ConvCase(n: 1, c: 6, h: 5, w: 5, o: 2, kh: 1, kw: 1, sh: 1, sw: 1, padding: .same),      // 1x1
        // Transposed lowering (stride 1, at most 8 output channels):
        ConvCase(n: 3, c: 32, h: 13, w: 19, o: 3, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same),   // the generator's last layer
        ConvCase(n: 2, c: 5, h: 9, w: 8, o: 8, kh: 3, kw: 3, sh: 1, sw: 1, padding: .same),      // two full tiles, exact blocks
        ConvCase(n: 2, c: 3, h: 7, w: 10, o: 5, kh: 4, kw: 2, sh: 1, sw: 1, padding: .same),     // even kernel, partial tile
        ConvCase(n: 2, c: 4, h: 9, w: 11, o: 2, kh: 3, kw: 5, sh: 1, sw: 1, padding: .valid),
    ]

    // The GEMM paths (unfolding, transposed lowering) on every CPU; `directKernels` runs the same
    // cases through the direct kernels.
    @Test("Conv2D forward equals the definition", arguments: cases)
    func forwardMatchesReference(_ k: ConvCase) throws {
        let conv = k.make(direct: 0)
        randomize(conv, seed: 3)
        let x = randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 4)
        let y = try conv.forward(x)
        let py = k.padding.output(input: k.h, kernel: k.kh, stride: k.sh)!, px = k.padding.output(input: k.w, kernel: k.kw, stride: k.sw)!
        #expect(y.shape == Shape(k.n, k.o, py.size, px.size))
        let ref = referenceConv(x, weight: conv.weight.value, bias: conv.bias!.value, stride: (k.sh, k.sw),
                                pad: (py.padBefore, px.padBefore), out: (py.size, px.size))
        #expect(maxAbsDiff(y.values, ref) < 1e-4, "\(k)")
        // A second call with a smaller batch reuses the buffers and still agrees.
        if k.n > 1 {
            let x1 = randomTensor(Shape(1, k.c, k.h, k.w), seed: 5)
            let y1 = try conv.forward(x1)
            let ref1 = referenceConv(x1, weight: conv.weight.value, bias: conv.bias!.value, stride: (k.sh, k.sw),
                                     pad: (py.padBefore, px.padBefore), out: (py.size, px.size))
            #expect(maxAbsDiff(y1.values, ref1) < 1e-4, "\(k) batch 1")
        }
    }

    @Test("Conv2D gradients (input, weight, bias) match finite differences", arguments: cases)
    func gradients(_ k: ConvCase) throws {
        let conv = k.make(direct: 0)
        randomize(conv, seed: 11, scale: 0.3)
        let x = randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 12)
        // Convolution is linear in x and in the weights: central differences are exact up to rounding.
        try checkLayer(conv, input: x, h: 1e-2, rtol: 2e-3, atol: 2e-3, probes: 30, parameterProbes: 30)
    }

    /// Shapes for the direct kernels: the discriminators' thin first layers, widths that are not
    /// a multiple of the vector length, output channels that are not a multiple of the block.
    static let directCases: [ConvCase] = [
        ConvCase(n: 3, c: 3, h: 64, w: 64, o: 16, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same),   // small-64's first layer
        ConvCase(n: 2, c: 3, h: 96, w: 96, o: 10, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),   // stride 2, partial block
        ConvCase(n: 2, c: 3, h: 21, w: 37, o: 9, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same),    // ragged rows
        ConvCase(n: 2, c: 4, h: 19, w: 23, o: 5, kh: 3, kw: 5, sh: 2, sw: 1, padding: .same),    // mixed strides
        ConvCase(n: 2, c: 2, h: 13, w: 50, o: 12, kh: 4, kw: 4, sh: 1, sw: 2, padding: .same),   // even kernel
        ConvCase(n: 2, c: 3, h: 11, w: 12, o: 9, kh: 3, kw: 3, sh: 2, sw: 2, padding: .valid),
        ConvCase(n: 1, c: 6, h: 5, w: 5, o: 2, kh: 1, kw: 1, sh: 1, sw: 1, padding: .same),      // 1x1
    ] + cases.filter { $0.kh * $0.kw > 1 && $0.sh <= 2 && $0.sw <= 2 }

    /// Instruction sets this CPU can run (AVX2 = 1, AVX-512 = 2).
    static let instructionSets = [Int32(1), 2].filter { $0 <= Conv2D.cpuInstructionSet }

    @Test("direct kernels (each instruction set the CPU has): forward equals the definition, gradients match finite differences",
          .enabled(if: Conv2D.cpuInstructionSet > 0, "this CPU has neither AVX2 nor AVX-512: the GEMM path serves every layer"),
          arguments: directCases)
    func directKernels(_ k: ConvCase) throws {
        for isa in ConvTests.instructionSets {
            let conv = k.make()
            conv.directInstructionSet = isa
            randomize(conv, seed: 3)
            let x = randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 4)
            let geo = try conv.geometry(for: x.shape)
            #expect(conv.directKernel(for: geo) == isa, "\(k) isa \(isa) not taken")
            let y = try conv.forward(x)
            let py = k.padding.output(input: k.h, kernel: k.kh, stride: k.sh)!, px = k.padding.output(input: k.w, kernel: k.kw, stride: k.sw)!
            let ref = referenceConv(x, weight: conv.weight.value, bias: conv.bias!.value, stride: (k.sh, k.sw),
                                    pad: (py.padBefore, px.padBefore), out: (py.size, px.size))
            #expect(y.shape == Shape(k.n, k.o, py.size, px.size))
            #expect(maxAbsDiff(y.values, ref) < 1e-4, "\(k) isa \(isa)")
            // Backward after a direct forward must use this input, not an unfolding left from an older one.
            let stale = randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 9)
            conv.directInstructionSet = 0
            _ = try conv.forward(stale)
            conv.directInstructionSet = isa
            randomize(conv, seed: 11, scale: 0.3)
            try checkLayer(conv, input: randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 12), h: 1e-2, rtol: 2e-3, atol: 2e-3,
                           probes: 20, parameterProbes: 20)
            // Parameter gradients accumulate; each part is computed only when asked.
            let r = randomTensor(try conv.forward(x).shape, seed: 21)
            for p in conv.parameters { p.grad.fill(0) }
            #expect(try conv.backward(r, inputGradient: false, parameterGradients: true) == nil)
            let once = conv.weight.grad.values
            let dx = try #require(try conv.backward(r, inputGradient: true, parameterGradients: true)).values
            #expect(maxAbsDiff(conv.weight.grad.values, once.map { 2 * $0 }) < 1e-3, "\(k) isa \(isa)")
            let dxAlone = try #require(try conv.backward(r, inputGradient: true, parameterGradients: false)).values
            #expect(maxAbsDiff(dxAlone, dx) == 0 && maxAbsDiff(conv.weight.grad.values, once.map { 2 * $0 }) < 1e-3)
        }
    }

    @Test("the automatic choice of kernels per pass (direct forward, direct or GEMM gradients) matches finite differences",
          arguments: [ConvCase(n: 2, c: 32, h: 16, w: 16, o: 16, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),  // 800 taps
                      ConvCase(n: 2, c: 16, h: 20, w: 20, o: 12, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),  // 400 taps
                      ConvCase(n: 2, c: 3, h: 20, w: 20, o: 16, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same),  // 75 taps
                      ConvCase(n: 2, c: 32, h: 12, w: 12, o: 3, kh: 5, kw: 5, sh: 1, sw: 1, padding: .same)])  // 800 taps, 3 outputs
    func automaticKernels(_ k: ConvCase) throws {
        let conv = k.make()
        randomize(conv, seed: 11, scale: 0.3)
        try checkLayer(conv, input: randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 12), h: 1e-2, rtol: 2e-3, atol: 2e-3,
                       probes: 20, parameterProbes: 20)
    }

    /// 5 x 5, stride-2 'same' layers on even-sized inputs: the discriminators' downsampling layers.
    static let polyphaseCases: [ConvCase] = [
        ConvCase(n: 3, c: 16, h: 16, w: 16, o: 32, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),
        ConvCase(n: 2, c: 5, h: 10, w: 14, o: 7, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),   // rectangular
        ConvCase(n: 5, c: 3, h: 6, w: 4, o: 3, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),     // 3 x 2 parity planes
        ConvCase(n: 2, c: 4, h: 68, w: 36, o: 6, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),   // vectors and remainders
        ConvCase(n: 2, c: 3, h: 10, w: 70, o: 4, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same),   // rows of whole shuffle vectors
    ]

    @Test("5 x 5 stride-2 layers on polyphase Winograd (plain C and each instruction set): forward equals the definition, gradients equal the GEMM path's and match finite differences",
          arguments: polyphaseCases)
    func polyphaseWinograd(_ k: ConvCase) throws {
        let x = randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 4)
        let ref = k.make(direct: 0)
        randomize(ref, seed: 3)
        let yRef = try ref.forward(x).values
        let r = randomTensor(Shape(k.n, k.o, k.h / 2, k.w / 2), seed: 21)
        let dxRef = try ref.backward(r).values
        for isa in [Int32(0)] + ConvTests.instructionSets {
            let conv = k.make(winograd: true)
            conv.winogradInstructionSet = isa
            conv.weight.value.copy(from: ref.weight.value)
            conv.bias!.value.copy(from: ref.bias!.value)
            let y = try conv.forward(x).values
            let ref0 = referenceConv(x, weight: conv.weight.value, bias: conv.bias!.value, stride: (2, 2), pad: (1, 1),
                                     out: (k.h / 2, k.w / 2))
            #expect(maxAbsDiff(y, ref0) < 1e-4 && maxAbsDiff(y, yRef) < 1e-4, "\(k) isa \(isa)")
            #expect(maxAbsDiff(try conv.backward(r).values, dxRef) < 1e-4, "input gradient \(k) isa \(isa)")
            #expect(maxAbsDiff(conv.weight.grad.values, ref.weight.grad.values) < 2e-4, "weight gradient \(k) isa \(isa)")
            #expect(maxAbsDiff(conv.bias!.grad.values, ref.bias!.grad.values) < 2e-4, "bias gradient \(k) isa \(isa)")
            // Weights changed in place between two forward passes are seen.
            conv.weight.value.data[conv.weight.count / 2] += 0.25
            let y1 = referenceConv(x, weight: conv.weight.value, bias: conv.bias!.value, stride: (2, 2), pad: (1, 1),
                                   out: (k.h / 2, k.w / 2))
            #expect(maxAbsDiff(try conv.forward(x).values, y1) < 1e-4, "after a weight change \(k) isa \(isa)")
            randomize(conv, seed: 11, scale: 0.3)
            try checkLayer(conv, input: randomTensor(Shape(k.n, k.c, k.h, k.w), seed: 12), h: 1e-2, rtol: 2e-3, atol: 2e-3,
                           probes: 20, parameterProbes: 20)
        }
        // Odd sizes do not take it, and are still right.
        let odd = ConvCase(n: 2, c: k.c, h: k.h + 1, w: k.w, o: k.o, kh: 5, kw: 5, sh: 2, sw: 2, padding: .same).make(winograd: true)
        randomize(odd, seed: 3)
        let xo = randomTensor(Shape(2, k.c, k.h + 1, k.w), seed: 5)
        let po = Padding.same.output(input: k.h + 1, kernel: 5, stride: 2)!
        #expect(maxAbsDiff(try odd.forward(xo).values,
                           referenceConv(xo, weight: odd.weight.value, bias: odd.bias!.value, stride: (2, 2),
                                         pad: (po.padBefore, 1), out: (po.size, k.w / 2))) < 1e-4)
    }

    @Test("backward skips what is not asked and accumulates parameter gradients")
    func backwardOptions() throws {
        let conv = Conv2D(name: "c", inChannels: 3, outChannels: 2, kernel: 3, stride: 1)
        randomize(conv, seed: 1)
        let x = randomTensor(Shape(2, 3, 6, 6), seed: 2)
        let y = try conv.forward(x)
        let r = randomTensor(y.shape, seed: 3)
        #expect(try conv.backward(r, inputGradient: false, parameterGradients: true) == nil)
        let once = conv.weight.grad.values
        _ = try conv.backward(r, inputGradient: true, parameterGradients: true)
        let twice = conv.weight.grad.values
        #expect(maxAbsDiff(twice, once.map { 2 * $0 }) < 1e-4)
        _ = try conv.backward(r, inputGradient: true, parameterGradients: false)
        #expect(maxAbsDiff(conv.weight.grad.values, twice) == 0)
    }

    struct PhaseCase: CustomStringConvertible {
        var n, c, h, w, o, k: Int
        var chunk = 2048
        var description: String { "n\(n) c\(c) \(h)x\(w) -> o\(o) k\(k) chunk \(chunk)" }
    }

    @Test("upsample x2 + conv 'same' as four phase convolutions equals the literal composition",
          arguments: [PhaseCase(n: 3, c: 40, h: 6, w: 5, o: 7, k: 5),   // per-tap lowering
                      PhaseCase(n: 2, c: 4, h: 5, w: 6, o: 3, k: 5),    // im2col lowering
                      PhaseCase(n: 2, c: 3, h: 4, w: 4, o: 2, k: 3),
                      PhaseCase(n: 2, c: 3, h: 4, w: 5, o: 2, k: 4),    // even kernel (asymmetric padding)
                      PhaseCase(n: 1, c: 2, h: 3, w: 3, o: 2, k: 1),
                      PhaseCase(n: 7, c: 32, h: 3, w: 3, o: 4, k: 5, chunk: 30), // several chunks
                      PhaseCase(n: 3, c: 5, h: 29, w: 30, o: 3, k: 5),  // odd height; one image per Winograd chunk
                      PhaseCase(n: 2, c: 3, h: 5, w: 37, o: 3, k: 5),   // rows of whole shuffle vectors
                      PhaseCase(n: 2, c: 6, h: 1, w: 2, o: 2, k: 6)])
    func phaseConvolution(_ p: PhaseCase) throws {
        // Winograd's algorithm where it applies (kernels 3 to 6), its transforms in plain C and
        // each instruction set the CPU has; and unfolding + GEMM.
        for isa in [Int32(0)] + ConvTests.instructionSets {
            let fused = UpsampleConv2D(name: "conv1", inChannels: p.c, outChannels: p.o, kernel: p.k)
            if !fused.winograd { break }
            fused.winogradInstructionSet = isa
            try phaseConvolution(p, fused, label: "winograd isa \(isa)")
        }
        let fused = UpsampleConv2D(name: "conv1", inChannels: p.c, outChannels: p.o, kernel: p.k)
        fused.winograd = false
        try phaseConvolution(p, fused, label: "gemm")
    }

    func phaseConvolution(_ p: PhaseCase, _ fused: UpsampleConv2D, label: String) throws {
        fused.lowering.targetColumns = p.chunk
        let up = Upsample2x(name: "up1")
        let conv = Conv2D(name: "conv1", inChannels: p.c, outChannels: p.o, kernel: p.k, stride: 1, padding: .same)
        randomize(fused, seed: 21)
        conv.weight.value.copy(from: fused.weight.value)
        conv.bias!.value.copy(from: fused.bias!.value)
        let x = randomTensor(Shape(p.n, p.c, p.h, p.w), seed: 22)

        let yf = try fused.forward(x).values
        let yl = try conv.forward(try up.forward(x)).values
        #expect(yf.count == yl.count)
        #expect(maxAbsDiff(yf, yl) < 1e-4, "forward \(p) \(label)")

        let r = randomTensor(Shape(p.n, p.o, 2 * p.h, 2 * p.w), seed: 23)
        let dxf = try fused.backward(r).values
        let dxl = try up.backward(try conv.backward(r)).values
        #expect(maxAbsDiff(dxf, dxl) < 1e-4, "input gradient \(p) \(label)")
        #expect(maxAbsDiff(fused.weight.grad.values, conv.weight.grad.values) < 2e-4, "weight gradient \(p) \(label)")
        #expect(maxAbsDiff(fused.bias!.grad.values, conv.bias!.grad.values) < 2e-4, "bias gradient \(p) \(label)")
        // Each part is computed only when asked: the input gradient alone leaves the parameters'
        // gradients as they were, and the parameters' alone give no input gradient.
        let weightGrad = fused.weight.grad.values
        _ = try fused.forward(x)
        #expect(maxAbsDiff(try fused.backward(r, inputGradient: true, parameterGradients: false)!.values, dxl) < 1e-4)
        #expect(fused.weight.grad.values == weightGrad)
        #expect(try fused.backward(r, inputGradient: false, parameterGradients: true) == nil)
        #expect(maxAbsDiff(fused.weight.grad.values, weightGrad.map { 2 * $0 }) < 4e-4, "accumulated \(p) \(label)")
        // Weights changed in place (as an optimizer does) between two forward passes are seen.
        for (t, v) in [(fused.weight.value, conv.weight.value), (fused.bias!.value, conv.bias!.value)] {
            t.data[t.count / 2] += 0.25; v.data[v.count / 2] += 0.25
            let y = try conv.forward(try up.forward(x)).values
            #expect(maxAbsDiff(try fused.forward(x).values, y) < 1e-4, "after a weight change \(p) \(label)")
        }
    }

    @Test("phase convolution gradients match finite differences (Winograd and GEMM)")
    func phaseGradients() throws {
        for winograd in [true, false] {
            let fused = UpsampleConv2D(name: "up", inChannels: 3, outChannels: 2, kernel: 5)
            #expect(fused.winograd || !UpsampleConv2D.winogradAllowed)
            fused.winograd = winograd
            randomize(fused, seed: 31, scale: 0.3)
            try checkLayer(fused, input: randomTensor(Shape(2, 3, 4, 5), seed: 32), rtol: 2e-3, atol: 2e-3)
        }
    }

    @Test("Upsample2x repeats each pixel and sums gradients over its 2x2 block")
    func upsample() throws {
        let up = Upsample2x(name: "up")
        let x = try Tensor(Shape(1, 1, 2, 2), [1, 2, 3, 4])
        #expect(try up.forward(x).values == [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        let g = try Tensor(Shape(1, 1, 4, 4), (0..<16).map(Float.init))
        let expected: [Float] = [10, 18, 42, 50]  // 0+1+4+5, 2+3+6+7, 8+9+12+13, 10+11+14+15
        #expect(try up.backward(g).values == expected)
    }

    @Test("shapes that do not fit give an error naming the layer and the shapes")
    func shapeErrors() throws {
        let conv = Conv2D(name: "conv7", inChannels: 3, outChannels: 4, kernel: 5, stride: 2)
        do {
            _ = try conv.forward(Tensor(Shape(2, 4, 8, 8)))
            Issue.record("no error")
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch)
            #expect(e.message.contains("conv7") && e.message.contains("[2, 4, 8, 8]") && e.message.contains("[N, 3, H, W]"), "\(e.message)")
        }
        let valid = Conv2D(name: "v", inChannels: 1, outChannels: 1, kernel: 5, padding: .valid)
        #expect(throws: CytoError.self) { _ = try valid.forward(Tensor(Shape(1, 1, 3, 3))) }
        let fused = UpsampleConv2D(name: "up3", inChannels: 8, outChannels: 4)
        #expect(throws: CytoError.self) { _ = try fused.forward(Tensor(Shape(2, 8, 5))) }
        // Backward before forward, and a gradient of the wrong shape.
        let fresh = Conv2D(name: "fresh", inChannels: 1, outChannels: 1, kernel: 3)
        #expect(throws: CytoError.self) { _ = try fresh.backward(Tensor(Shape(1, 1, 3, 3))) }
        _ = try fresh.forward(Tensor(Shape(1, 1, 3, 3)))
        do {
            _ = try fresh.backward(Tensor(Shape(1, 1, 4, 3)))
            Issue.record("no error")
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.message.contains("fresh") && e.message.contains("[1, 1, 4, 3]"))
        }
    }
}
