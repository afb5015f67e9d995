import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

/// The channel sums equal the squared output of a reference cross-correlation with the 5-point
/// kernel (no padding), summed per channel; the backward pass matches central differences of a
/// weighted sum of the channel energies.
@Test func laplacianEnergyMatchesAReferenceConvolutionAndFiniteDifferences() throws {
    let (n, c, h, w) = (3, 2, 7, 9)
    let x = randomTensor(Shape(n, c, h, w), seed: 31)
    let energy = LaplacianEnergy()
    var sums = [Double](repeating: .nan, count: c + 1)
    energy.forward(x, into: &sums, offset: 1)
    // One channel at a time through a 1 -> 1 convolution with the kernel.
    let kernel = try Tensor(Shape(1, 1, 3, 3), [0, -1, 0, -1, 4, -1, 0, -1, 0])
    for ch in 0..<c {
        let plane = Tensor(Shape(n, 1, h, w))
        for b in 0..<n { for i in 0..<(h * w) { plane.data[b * h * w + i] = x.data[(b * c + ch) * h * w + i] } }
        let y = referenceConv(plane, weight: kernel, bias: nil, stride: (1, 1), pad: (0, 0), out: (h - 2, w - 2))
        let expected = y.reduce(0.0) { $0 + Double($1) * Double($1) }
        #expect(abs(sums[1 + ch] - expected) <= 1e-4 * expected, "channel \(ch): \(sums[1 + ch]) vs \(expected)")
    }
    #expect(sums[0].isNaN, "the slots before the offset are left alone")

    let weights = [0.7, -1.3]
    func loss() -> Double {
        var s = [Double](repeating: 0, count: c)
        energy.forward(x, into: &s)
        return zip(s, weights).reduce(0) { $0 + $1.0 * $1.1 }
    }
    let gradient = Tensor(Shape(n, c, h, w), repeating: 0.25)
    energy.backward(x, sumGradient: weights, into: gradient)
    let analytic = gradient.values.map { $0 - 0.25 }  // it adds to what is there
    checkGradient("Laplacian energy", value: x, analytic: analytic, h: 1e-2, rtol: 1e-2, atol: 1e-3, probes: 80) { loss() }
}
