import CytoCore
import CytoNN
import CytoNNTestSupport
import Foundation
import Testing
@testable import CytoGAN

/// The texture-matching term: its gradient with respect to the generated batch matches central
/// differences of the term it returns; a batch against itself costs 0 and gets no gradient; and
/// the term equals weight x (sqrt of the ratio of energies computed here independently - 1)^2.
@Test func textureMatchingGradientMatchesFiniteDifferences() throws {
    let fake = randomTensor(Shape(3, 2, 8, 8), seed: 5)
    let real = randomTensor(Shape(3, 2, 8, 8), seed: 6, scale: 1.5)
    let term = TextureMatching(weight: 0.7)
    let gradient = Tensor(fake.shape, repeating: 0)
    let loss = try term.accumulate(fake: fake, real: real, into: gradient)

    func energy(_ t: Tensor, _ ch: Int) -> Double {
        var e = 0.0
        for b in 0..<3 {
            for y in 1..<7 {
                for x in 1..<7 {
                    let v = { (yy: Int, xx: Int) in Double(t[b, ch, yy, xx]) }
                    let l = 4 * v(y, x) - v(y - 1, x) - v(y + 1, x) - v(y, x - 1) - v(y, x + 1)
                    e += l * l
                }
            }
        }
        return e
    }
    let expected = (0..<2).reduce(0.0) { s, ch in s + 0.7 * pow((energy(fake, ch) / energy(real, ch)).squareRoot() - 1, 2) }
    #expect(abs(Double(loss) - expected) <= 1e-4 * expected, "term \(loss) vs \(expected)")

    let scratch = Tensor(fake.shape)
    try checkGradient("texture matching", value: fake, analytic: gradient.values, h: 1e-2, rtol: 2e-2, atol: 1e-4, probes: 60) {
        scratch.fill(0)
        return Double(try term.accumulate(fake: fake, real: real, into: scratch))
    }
    scratch.fill(0)
    #expect(try term.accumulate(fake: real, real: real, into: scratch) == 0)
    #expect(scratch.values.allSatisfy { $0 == 0 })
}
