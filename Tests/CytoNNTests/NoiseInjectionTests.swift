import CytoCore
import Testing
@testable import CytoNN

/// Fills a new tensor of `shape` with N(0, 1) from `seed`.
private func normal(_ shape: Shape, seed: UInt64) -> Tensor {
    let t = Tensor(shape)
    var rng = RandomStream(seed: seed, purpose: "test")
    rng.fillNormal(t.buffer)
    return t
}

/// The noise an item gets depends on that item's key row alone (not on the batch around it), is
/// N(0, 1) by its sample moments, is one map shared by the channels (scaled per channel), and
/// differs between items and between layers.
@Test func noiseInjectionDrawsOneStandardNormalMapPerItemFromItsKey() throws {
    let keys = ItemKeys()
    let tap = ItemKeyTap(name: "keys", table: keys)
    let a = NoiseInjection(name: "noise1", channels: 2, table: keys)
    let b = NoiseInjection(name: "noise2", channels: 2, table: keys)
    a.scale.value.data[0] = 1; a.scale.value.data[1] = -2
    b.scale.value.data[0] = 1; b.scale.value.data[1] = 1
    let z = normal(Shape(3, 5), seed: 1)
    let x = Tensor(Shape(3, 2, 64, 64))  // zeros: the output is the scaled noise
    _ = try tap.forward(z)
    let y = try a.forward(x)
    let plane = 64 * 64
    // Channel 1 is -2 times channel 0, item by item.
    for i in 0..<3 {
        for p in 0..<plane { #expect(y.data[(i * 2 + 1) * plane + p] == -2 * y.data[i * 2 * plane + p]) }
    }
    // Moments of the 3 x 4096 draws: mean within 5 standard errors of 0, variance within 10%.
    var s = 0.0, s2 = 0.0
    for i in 0..<3 { for p in 0..<plane { let v = Double(y.data[i * 2 * plane + p]); s += v; s2 += v * v } }
    let n = Double(3 * plane), mean = s / n, variance = s2 / n - mean * mean
    #expect(abs(mean) < 5 / n.squareRoot())
    #expect(abs(variance - 1) < 0.1)
    // Items differ; the other layer draws another map for the same item.
    let first = Array(UnsafeBufferPointer(start: y.data, count: plane))
    let second = Array(UnsafeBufferPointer(start: y.data + 2 * plane, count: plane))
    #expect(first != second)
    let yb = try b.forward(x)
    #expect(Array(UnsafeBufferPointer(start: yb.data, count: plane)) != first)
    // Item 1 alone (its key row in a batch of one) draws what it drew as the second of three.
    let z1 = Tensor(Shape(1, 5))
    z1.data.update(from: z.data + 5, count: 5)
    _ = try tap.forward(z1)
    let y1 = try a.forward(Tensor(Shape(1, 2, 64, 64)))
    #expect(Array(UnsafeBufferPointer(start: y1.data, count: plane)) == second)
}

/// The scale's gradient against central finite differences of L = <g, y>, and the input
/// gradient is the identity.
@Test func noiseInjectionGradientsMatchFiniteDifferences() throws {
    let keys = ItemKeys()
    let tap = ItemKeyTap(name: "keys", table: keys)
    let layer = NoiseInjection(name: "noise", channels: 3, table: keys)
    var rng = RandomStream(seed: 4, purpose: "test")
    rng.fillNormal(layer.scale.value.buffer)
    let x = normal(Shape(2, 3, 7, 6), seed: 2), g = normal(Shape(2, 3, 7, 6), seed: 3)
    _ = try tap.forward(normal(Shape(2, 4), seed: 5))
    func loss() throws -> Double {
        let y = try layer.forward(x)
        var l = 0.0
        for i in 0..<y.count { l += Double(y.data[i]) * Double(g.data[i]) }
        return l
    }
    _ = try loss()
    layer.scale.grad.fill(0)
    let dx = try layer.backward(g)
    for i in 0..<g.count { #expect(dx.data[i] == g.data[i]) }
    for c in 0..<3 {
        let s0 = layer.scale.value.data[c], h: Float = 0.25
        layer.scale.value.data[c] = s0 + h
        let up = try loss()
        layer.scale.value.data[c] = s0 - h
        let down = try loss()
        layer.scale.value.data[c] = s0
        let numeric = (up - down) / Double(2 * h), analytic = Double(layer.scale.grad.data[c])
        #expect(abs(numeric - analytic) <= 1e-3 * max(1, abs(numeric)))
    }
    #expect(throws: CytoError.self) { try layer.outputShape(for: Shape(2, 4, 7, 6)) }
}

/// The Laplacian view: the input copied, then gain * (4 x - neighbours inside the image), checked
/// pixel by pixel (corners, edges, inside); the backward pass is the exact adjoint.
@Test func laplacianChannelsAppendTheHighPassAndTransposeExactly() throws {
    let layer = LaplacianChannels(name: "highpass", gain: 2)
    let x = normal(Shape(2, 3, 5, 4), seed: 7)
    let y = try layer.forward(x)
    #expect(y.shape == Shape(2, 6, 5, 4))
    func at(_ t: Tensor, _ i: Int, _ c: Int, _ r: Int, _ q: Int) -> Double {
        guard r >= 0, r < t.shape[2], q >= 0, q < t.shape[3] else { return 0 }
        return Double(t.data[((i * t.shape[1] + c) * t.shape[2] + r) * t.shape[3] + q])
    }
    for i in 0..<2 {
        for c in 0..<3 {
            for r in 0..<5 {
                for q in 0..<4 {
                    #expect(at(y, i, c, r, q) == at(x, i, c, r, q))
                    let lap = 4 * at(x, i, c, r, q) - at(x, i, c, r - 1, q) - at(x, i, c, r + 1, q) - at(x, i, c, r, q - 1) - at(x, i, c, r, q + 1)
                    #expect(abs(at(y, i, c + 3, r, q) - 2 * lap) < 1e-5)
                }
            }
        }
    }
    let g = normal(Shape(2, 6, 5, 4), seed: 8)
    var forwardDot = 0.0, backwardDot = 0.0
    for i in 0..<g.count { forwardDot += Double(y.data[i]) * Double(g.data[i]) }
    let dx = try layer.backward(g)
    #expect(dx.shape == x.shape)
    for i in 0..<x.count { backwardDot += Double(dx.data[i]) * Double(x.data[i]) }
    #expect(abs(forwardDot - backwardDot) <= 1e-5 * max(1, abs(forwardDot)))
}
