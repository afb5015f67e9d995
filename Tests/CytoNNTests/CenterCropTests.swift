import CytoCore
import Testing
@testable import CytoNN

/// The crop keeps the centre of every plane (checked value by value) and its backward pass is the
/// exact transpose: <crop(x), g> = <x, crop^T(g)> for random x and g, with zeros in the rim.
@Test func centerCropKeepsTheCentreAndTransposesExactly() throws {
    let layer = CenterCrop2D(name: "crop", margin: 2)
    let x = Tensor(Shape(2, 3, 9, 8))
    var rng = RandomStream(seed: 3, purpose: "test")
    rng.fillNormal(x.buffer)
    let y = try layer.forward(x)
    #expect(y.shape == Shape(2, 3, 5, 4))
    for p in 0..<6 {
        for r in 0..<5 {
            for c in 0..<4 { #expect(y.data[(p * 5 + r) * 4 + c] == x.data[(p * 9 + r + 2) * 8 + c + 2]) }
        }
    }
    let g = Tensor(Shape(2, 3, 5, 4))
    rng.fillNormal(g.buffer)
    var forwardDot = 0.0
    for i in 0..<g.count { forwardDot += Double(y.data[i]) * Double(g.data[i]) }
    let dx = try layer.backward(g)
    #expect(dx.shape == x.shape)
    var backwardDot = 0.0, rim = 0.0
    for p in 0..<6 {
        for r in 0..<9 {
            for c in 0..<8 {
                let v = Double(dx.data[(p * 9 + r) * 8 + c])
                backwardDot += v * Double(x.data[(p * 9 + r) * 8 + c])
                if r < 2 || r >= 7 || c < 2 || c >= 6 { rim += abs(v) }
            }
        }
    }
    #expect(abs(forwardDot - backwardDot) <= 1e-9 * max(1, abs(forwardDot)))
    #expect(rim == 0)
    #expect(throws: CytoError.self) { try layer.outputShape(for: Shape(1, 1, 4, 9)) }
}
