import CytoCore
import CytoNN
import CytoNNTestSupport
import Testing
@testable import CytoGAN

/// Translation + cutout on a 4x4 image, against values worked out by hand.
@Test func diffAugmentMovesAndCutsByHand() throws {
    let x = try Tensor(Shape(1, 1, 4, 4), (1...16).map(Float.init))
    // translation 0.25 of 4 = up to 1 pixel; cutout 0.5 of 4 = a 2x2 square; fill -1.
    let a = DiffAugment(policy: DiffAugmentPolicy(translation: 0.25, cutout: 0.5), rng: RandomStream(seed: 1))
    // Shift down 1 and left 1: out[r][c] = x[r - 1][c + 1]; the square covers rows 0-1, columns 2-3.
    let y = try a.forward(x, transforms: [.init(dy: 1, dx: -1, cy: 0, cx: 2)])
    #expect(y.values == [-1, -1, -1, -1,
                          2, 3, -1, -1,
                          6, 7, 8, -1,
                          10, 11, 12, -1])
    // Backward: each copied pixel's gradient returns to its source; filled ones give nothing.
    let g = try Tensor(Shape(1, 1, 4, 4), (1...16).map { Float($0) * 10 })
    let gx = try a.backward(g)
    #expect(gx.values == [0, 50, 60, 0,
                          0, 90, 100, 110,
                          0, 130, 140, 150,
                          0, 0, 0, 0])
}

/// Colour jitter per channel on a 1x2x2x2 image, against values worked out by hand, then shifted.
@Test func diffAugmentJittersEachChannelByHand() throws {
    // Channel 0: 1, 2, 3, 4 (mean 2.5); channel 1: 0, 0, 4, 8 (mean 3).
    let x = try Tensor(Shape(1, 2, 2, 2), [1, 2, 3, 4, 0, 0, 4, 8])
    let a = DiffAugment(policy: DiffAugmentPolicy(translation: 0.5, brightness: 0.5, contrast: 0.5), rng: RandomStream(seed: 1))
    // Channel 0: factor 2, offset 0.5 -> 2 (x - 2.5) + 2.5 + 0.5 = 0, 2, 4, 6.
    // Channel 1: factor 0.5, offset -1 -> 0.5 (x - 3) + 3 - 1 = 0.5, 0.5, 2.5, 4.5.
    let t = DiffAugment.Transform(dy: 0, dx: 0, cy: 0, cx: 0, offsets: [0.5, -1], factors: [2, 0.5])
    #expect(try a.forward(x, transforms: [t]).values == [0, 2, 4, 6, 0.5, 0.5, 2.5, 4.5])
    // Then a shift right by one: column 0 is fill (-1), column 1 the jittered column 0.
    var shifted = t; shifted.dx = 1
    #expect(try a.forward(x, transforms: [shifted]).values == [-1, 0, -1, 4, -1, 0.5, -1, 2.5])
    // Backward of the shift, then the jitter: of g = 10, 20, 30, 40 per plane only column 1's
    // values return, to column 0 (20, 0, 40, 0 before the jitter; plane mean 15). Channel 0,
    // factor 2: 2 g + (1 - 2) 15 = 25, -15, 65, -15; channel 1, factor 0.5: 0.5 g + 7.5.
    let gx = try a.backward(try Tensor(Shape(1, 2, 2, 2), [10, 20, 30, 40, 10, 20, 30, 40]))
    #expect(gx.values == [25, -15, 65, -15, 17.5, 7.5, 27.5, 7.5])
    // Draws stay inside the policy, one offset and factor per channel.
    for _ in 0..<20 {
        _ = try a.forward(x)
        let d = a.transforms[0]
        #expect(d.offsets.count == 2 && d.offsets.allSatisfy { abs($0) <= 0.5 })
        #expect(d.factors.count == 2 && d.factors.allSatisfy { $0 >= 0.5 && $0 <= 1.5 })
    }
    // JSON: the colour keys round-trip, and a policy without them writes none.
    let p = DiffAugmentPolicy(translation: 0.125, cutout: 0.5, brightness: 0.2, contrast: 0.3)
    #expect(try DiffAugmentPolicy(json: p.json) == p)
    #expect(DiffAugmentPolicy.translationCutout.json.objectValue?["brightness"] == nil)
    #expect(throws: CytoError.self) { try DiffAugmentPolicy(json: ["contrast": 1.5]) }
}

/// The backward is the forward's transpose: <A x, y> = <x, A^T y> for random transforms (the
/// affine fill taken out by subtracting A 0), the dot-product test.
@Test func diffAugmentBackwardIsTheTranspose() throws {
    let policy = DiffAugmentPolicy(translation: 0.2, cutout: 0.4, fill: -1)
    let a = DiffAugment(policy: policy, rng: RandomStream(seed: 3, purpose: "t"))
    let x = randomTensor(Shape(6, 2, 9, 7), seed: 1), y = randomTensor(Shape(6, 2, 9, 7), seed: 2)
    // With and without the colour jitter (its offsets are part of the affine A 0).
    let coloured = DiffAugment(policy: DiffAugmentPolicy(translation: 0.2, cutout: 0.4, brightness: 0.3, contrast: 0.6),
                               rng: RandomStream(seed: 4, purpose: "t"))
    for augment in [a, coloured] {
        let ax = try augment.forward(x).clone()
        let a0 = try augment.forward(Tensor(Shape(6, 2, 9, 7)), transforms: augment.transforms).clone()
        let aty = try augment.backward(y)
        var left = 0.0, right = 0.0
        for i in 0..<x.count {
            left += Double(ax.data[i] - a0.data[i]) * Double(y.data[i])
            right += Double(x.data[i]) * Double(aty.data[i])
        }
        // Exact copies without the jitter; float rounding of the affine part with it.
        #expect(abs(left - right) < (augment === a ? 1e-9 : 1e-5) * max(1, abs(left)))
    }
    // Draws stay inside the policy: shifts up to round(0.2 * side), squares of round(0.4 * side).
    for _ in 0..<50 {
        _ = try a.forward(x)
        for t in a.transforms {
            #expect(abs(t.dy) <= 2 && abs(t.dx) <= 1)
            #expect(t.cy >= -2 && t.cy < 9 && t.cx >= -1 && t.cx < 7)
        }
    }
    // The draws vary, and a zero policy draws nothing and copies.
    #expect(Set(a.transforms.map { $0.dy }).count > 1)
    let identity = DiffAugment(policy: .none, rng: RandomStream(seed: 1))
    #expect(try identity.forward(x).values == x.values)
}

@Test func diffAugmentRefusesWrongShapes() throws {
    let a = DiffAugment(policy: .translationCutout, rng: RandomStream(seed: 1))
    #expect(throws: CytoError.self) { try a.forward(Tensor(Shape(2, 3))) }
    _ = try a.forward(Tensor(Shape(2, 1, 8, 8)))
    #expect(throws: CytoError.self) { try a.backward(Tensor(Shape(3, 1, 8, 8))) }
    #expect(throws: CytoError.self) { try a.forward(Tensor(Shape(2, 1, 8, 8)), transforms: []) }
}
