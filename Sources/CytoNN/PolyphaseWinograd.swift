import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A 5 x 5 convolution with stride 2 on an even-sized input with one pixel of padding before
/// (TensorFlow's 'same': the discriminators' downsampling layers), computed as a 3 x 3, stride-1
/// convolution of the input's four parity planes (pixels (2y + sy, 2x + sx) for sy, sx in {0, 1})
/// on Winograd's F(2x2, 3x3): kernel row ky reads input row 2y + ky - 1, that is parity plane
/// row y + t - 1 with (parity, t) = (1, 0), (0, 1), (1, 1), (0, 2), (1, 2) for ky = 0 ... 4, so each
/// parity plane gets a 3 x 3 kernel of 4 to 9 of the 25 weights (zeros elsewhere). Each output
/// pixel then costs 4 x 16 / 4 = 16 multiply-adds per channel pair instead of 25. The input
/// gradient is the same algorithm on the output gradient with the flipped, transposed kernels,
/// written straight into the input gradient's parity planes; the weight gradient is Winograd's
/// (`Winograd3x3.weightGradient`) on the parity planes.
final class PolyphaseWinograd {
    let inChannels: Int, outChannels: Int
    /// (parity, tap of the 3 x 3 kernel) of each row (or column) of the 5 x 5 kernel.
    static let taps: [(parity: Int, t: Int)] = [(1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]

    private let forwardAlgorithm: Winograd3x3
    private let backwardAlgorithm: Winograd3x3
    /// The 3 x 3 kernels [out][4 * in][3][3], input plane q = (c * 2 + sy) * 2 + sx.
    private let embedded: Tensor
    private let flipped: Tensor
    private let gradient: Tensor
    private let weights = WeightSnapshot()
    private var forwardStale = true, backwardStale = true

    /// Whether a convolution of this shape and geometry is one this class computes.
    static func applies(kernel: (Int, Int), stride: (Int, Int), h: Int, w: Int, padTop: Int, padLeft: Int, ho: Int, wo: Int) -> Bool {
        kernel == (5, 5) && stride == (2, 2) && padTop == 1 && padLeft == 1
            && h % 2 == 0 && w % 2 == 0 && ho == h / 2 && wo == w / 2
    }

    init(inChannels: Int, outChannels: Int) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        forwardAlgorithm = Winograd3x3(inChannels: 4 * inChannels, outChannels: outChannels)
        backwardAlgorithm = Winograd3x3(inChannels: outChannels, outChannels: 4 * inChannels)
        embedded = Tensor(Shape(outChannels, 4 * inChannels, 3, 3))
        flipped = Tensor(Shape(0))
        gradient = Tensor(Shape(outChannels, 4 * inChannels, 3, 3))
    }

    /// The instruction set of the transforms.
    var instructionSet: Int32 = Conv2D.cpuInstructionSet {
        didSet { forwardAlgorithm.instructionSet = instructionSet; backwardAlgorithm.instructionSet = instructionSet }
    }

    /// Index of 5 x 5 weight (o, c, ky, kx) in `embedded`.
    @inline(__always)
    private func embeddedIndex(_ o: Int, _ c: Int, _ ky: Int, _ kx: Int) -> Int {
        let (py, ty) = PolyphaseWinograd.taps[ky], (px, tx) = PolyphaseWinograd.taps[kx]
        return ((o * 4 * inChannels + (c * 2 + py) * 2 + px) * 3 + ty) * 3 + tx
    }

    /// Spreads the 5 x 5 weights [out][in][5][5] into the 3 x 3 kernels if they changed.
    private func refresh(_ weight: Tensor) {
        if weights.unchanged(weight) { return }
        let O = outChannels, C = inChannels, w = weight.data, e = embedded.data
        embedded.fill(0)
        for o in 0..<O {
            for c in 0..<C {
                for ky in 0..<5 {
                    for kx in 0..<5 { e[embeddedIndex(o, c, ky, kx)] = w[((o * C + c) * 5 + ky) * 5 + kx] }
                }
            }
        }
        forwardStale = true; backwardStale = true
    }

    /// Views of an input [n, C, h, w] as 4C parity planes and of the output [n, O, h/2, w/2]
    /// (kept for the last size: every pass of a training step asks for the same).
    private func views(h: Int, w: Int) -> (parity: Winograd3x3.PlaneView, out: Winograd3x3.PlaneView) {
        if let v = cachedViews, v.h == h, v.w == w { return (v.parity, v.out) }
        let C = inChannels, O = outChannels, hw = h * w, plane = hw / 4
        var channel = [Int](repeating: 0, count: 4 * C)
        for c in 0..<C {
            for sy in 0..<2 {
                for sx in 0..<2 { channel[(c * 2 + sy) * 2 + sx] = c * hw + sy * w + sx }
            }
        }
        let parity = Winograd3x3.PlaneView(image: C * hw, channel: channel, row: 2 * w, column: 2)
        let out = Winograd3x3.PlaneView(image: O * plane, channel: (0..<O).map { $0 * plane }, row: w / 2, column: 1)
        cachedViews = (h, w, parity, out)
        return (parity, out)
    }
    private var cachedViews: (h: Int, w: Int, parity: Winograd3x3.PlaneView, out: Winograd3x3.PlaneView)?

    /// y = conv(x, weight) + bias for x [n, in, h, w], y [n, out, h/2, w/2].
    func forward(_ x: UnsafePointer<Float>, images n: Int, h: Int, w: Int, weight: Tensor,
                 bias: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>) {
        refresh(weight)
        if forwardStale {
            let p = UnsafePointer(embedded.data), Q = 4 * inChannels
            forwardAlgorithm.setWeights { o, q in p + (o * Q + q) * 9 }
            forwardStale = false
        }
        let v = views(h: h, w: w)
        forwardAlgorithm.run(images: n, height: h / 2, width: w / 2, input: x, v.parity, output: y, v.out, bias: bias)
    }

    /// dx [n, in, h, w] = the input gradient for the output gradient dy [n, out, h/2, w/2]
    /// (every element written).
    func inputGradient(_ dy: UnsafePointer<Float>, images n: Int, h: Int, w: Int, weight: Tensor,
                       into dx: UnsafeMutablePointer<Float>) {
        refresh(weight)
        if backwardStale {
            backwardAlgorithm.setTransposedWeights(of: embedded.data, scratch: flipped)
            backwardStale = false
        }
        let v = views(h: h, w: w)
        backwardAlgorithm.run(images: n, height: h / 2, width: w / 2, input: dy, v.out, output: dx, v.parity, bias: nil)
    }

    /// gw [out][in][5][5] += the weight gradient for input x and output gradient dy.
    func weightGradient(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, images n: Int, h: Int, w: Int,
                        into gw: UnsafeMutablePointer<Float>) {
        let O = outChannels, C = inChannels
        gradient.fill(0)
        let v = views(h: h, w: w)
        forwardAlgorithm.weightGradient(images: n, height: h / 2, width: w / 2, input: x, v.parity,
                                        gradient: dy, v.out, into: gradient.data)
        let g = UnsafePointer(gradient.data)
        for o in 0..<O {
            for c in 0..<C {
                for ky in 0..<5 {
                    for kx in 0..<5 { gw[((o * C + c) * 5 + ky) * 5 + kx] += g[embeddedIndex(o, c, ky, kx)] }
                }
            }
        }
    }
}

/// A copy of a tensor's bytes, to tell whether the tensor changed since the copy: kernels
/// derived from weights (phase sums, Winograd transforms) are computed again only when it did,
/// since sampling and feature extraction run the same weights batch after batch. Comparing costs
/// far less than deriving.
final class WeightSnapshot {
    private let copy = Tensor(Shape(0))

    /// Whether `tensor` holds what it held at the last call (false the first time); takes a new
    /// copy when it does not.
    func unchanged(_ tensor: Tensor) -> Bool {
        if copy.count == tensor.count && memcmp(copy.data, tensor.data, 4 * tensor.count) == 0 { return true }
        copy.resize(tensor.shape)
        copy.data.update(from: tensor.data, count: tensor.count)
        return false
    }
}
