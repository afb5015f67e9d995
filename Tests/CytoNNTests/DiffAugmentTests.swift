import CytoCore
import Testing
@testable import CytoNN

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

/// The backward is the forward's transpose: <A x, y> = <x, A^T y> for random transforms (the
/// affine fill taken out by subtracting A 0), the dot-product test.
@Test func diffAugmentBackwardIsTheTranspose() throws {
    let policy = DiffAugmentPolicy(translation: 0.2, cutout: 0.4, fill: -1)
    let a = DiffAugment(policy: policy, rng: RandomStream(seed: 3, purpose: "t"))
    let x = randomTensor(Shape(6, 2, 9, 7), seed: 1), y = randomTensor(Shape(6, 2, 9, 7), seed: 2)
    let ax = try a.forward(x).clone()
    let a0 = try a.forward(Tensor(Shape(6, 2, 9, 7)), transforms: a.transforms).clone()
    let aty = try a.backward(y)
    var left = 0.0, right = 0.0
    for i in 0..<x.count {
        left += Double(ax.data[i] - a0.data[i]) * Double(y.data[i])
        right += Double(x.data[i]) * Double(aty.data[i])
    }
    #expect(abs(left - right) < 1e-9 * max(1, abs(left)))
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
