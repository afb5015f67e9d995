import CytoCore
import CytoNN
import CytoNNTestSupport
import Foundation
import Testing
@testable import CytoGAN

/// The bright-tail matching term, against a reference that sorts every plane in full (double
/// precision): the term it returns, its gradient against central differences at every element
/// (probes that move a pixel into or out of a plane's brightest, or swap two cells' ranks, are
/// skipped: there the term has a kink), and a batch against itself costing 0.
@Test func tailMatchingMatchesAFullSortAndFiniteDifferences() throws {
    let b = 5, c = 2, side = 16, n = side * side
    let m = TailMatching.count(plane: n)
    #expect(m == 3)
    let fake = randomTensor(Shape(b, c, side, side), seed: 7)
    let real = randomTensor(Shape(b, c, side, side), seed: 8, scale: 1.3)

    /// Per channel, each cell's mean of its m largest values, and which pixels those are.
    func reference(_ t: Tensor) -> (means: [[Double]], chosen: [[Set<Int>]]) {
        var means = [[Double]](repeating: [], count: c), chosen = [[Set<Int>]](repeating: [], count: c)
        for ch in 0..<c {
            for i in 0..<b {
                let base = (i * c + ch) * n
                let top = (0..<n).sorted { t.data[base + $0] > t.data[base + $1] }.prefix(m)
                means[ch].append(top.reduce(0.0) { $0 + Double(t.data[base + $1]) } / Double(m))
                chosen[ch].append(Set(top))
            }
        }
        return (means, chosen)
    }
    func referenceTerm(weight: Double) -> Double {
        let f = reference(fake).means, r = reference(real).means
        return (0..<c).reduce(0.0) { s, ch in
            let fs = f[ch].sorted(), rs = r[ch].sorted()
            return s + zip(fs, rs).reduce(0.0) { $0 + weight * ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(b)
        }
    }
    /// Which pixels are chosen and in which order the cells rank: the pieces of the term.
    func pieces() -> Int {
        var h = Hasher()
        let (means, chosen) = reference(fake)
        for ch in 0..<c {
            h.combine(chosen[ch])
            h.combine((0..<b).sorted { means[ch][$0] < means[ch][$1] })
        }
        return h.finalize()
    }

    let term = TailMatching(weight: 0.8)
    let gradient = Tensor(fake.shape, repeating: 0)
    let loss = try term.accumulate(fake: fake, real: real, into: gradient)
    let expected = referenceTerm(weight: 0.8)
    #expect(expected > 0)
    #expect(abs(Double(loss) - expected) <= 1e-5 * expected, "term \(loss) vs \(expected)")
    #expect(gradient.values.filter { $0 != 0 }.count == b * c * m)

    let scratch = Tensor(fake.shape)
    try checkGradient("tail matching", value: fake, analytic: gradient.values, h: 1e-3, rtol: 1e-2, atol: 1e-5,
                      probes: fake.count, pattern: pieces) {
        scratch.fill(0)
        return Double(try term.accumulate(fake: fake, real: real, into: scratch))
    }
    scratch.fill(0)
    #expect(try term.accumulate(fake: real, real: real, into: scratch) == 0)
    #expect(scratch.values.allSatisfy { $0 == 0 })
}

/// A generated batch whose cells are all dimmer than the real ones is pushed up at exactly each
/// cell's brightest pixels, and only there.
@Test func tailMatchingRaisesTheBrightestPixelsOfDimCells() throws {
    let fake = randomTensor(Shape(3, 1, 10, 10), seed: 3, scale: 0.2)
    let real = randomTensor(Shape(3, 1, 10, 10), seed: 4, scale: 0.2)
    for i in 0..<3 { real.data[i * 100 + 17] = 0.9 }
    let gradient = Tensor(fake.shape, repeating: 0)
    _ = try TailMatching(weight: 1).accumulate(fake: fake, real: real, into: gradient)
    for i in 0..<3 {
        let plane = Array(fake.values[(i * 100)..<(i * 100 + 100)])
        let brightest = plane.indices.max { plane[$0] < plane[$1] }!
        for k in 0..<100 {
            let g = gradient.data[i * 100 + k]
            // Gradient descent lowers the term: a negative gradient raises the pixel.
            if k == brightest { #expect(g < 0) } else { #expect(g == 0) }
        }
    }
}
