import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

/// Gradients of x and of the per-channel strength against central differences (noise held).
@Test func noiseInjectionGradientsMatchFiniteDifferences() throws {
    let layer = NoiseInjection(name: "noise1", channels: 3, rng: RandomStream(seed: 5, purpose: "test"))
    randomize(layer, seed: 4)
    _ = try layer.forward(randomTensor(Shape(2, 3, 5, 4), seed: 1))
    layer.holdSample = true
    try checkLayer(layer, input: randomTensor(Shape(2, 3, 5, 4), seed: 1), rtol: 2e-3, atol: 1e-4)
}

/// Starts as the identity; in training each pass draws anew, one draw per position shared by the
/// channels; in inference an item's noise depends on the item alone (not its batch or position).
@Test func noiseInjectionDrawsPerPassInTrainingAndPerItemInInference() throws {
    let layer = NoiseInjection(name: "noise2", channels: 2, rng: RandomStream(seed: 9, purpose: "test"))
    var rng = RandomStream(seed: 1, purpose: "init")
    layer.initialize(.normal(std: 0.02), rng: &rng)
    let x = randomTensor(Shape(3, 2, 4, 4), seed: 2)
    #expect(try layer.forward(x).values == x.values)
    layer.weight.value.data[0] = 0.5; layer.weight.value.data[1] = -2
    let a = try layer.forward(x).values, b = try layer.forward(x).values
    #expect(a != b)
    for j in 0..<16 {  // the same z for both channels, scaled by each channel's weight
        let z0 = (a[j] - x.values[j]) / 0.5, z1 = (a[16 + j] - x.values[16 + j]) / -2
        #expect(abs(z0 - z1) <= 1e-5 * max(1, abs(z0)))
    }
    layer.training = false
    let all = try layer.forward(x).values
    #expect(try layer.forward(x).values == all)
    let one = Tensor(Shape(1, 2, 4, 4))
    for i in 0..<32 { one.data[i] = x.data[2 * 32 + i] }
    #expect(try layer.forward(one).values == Array(all[64..<96]))
    #expect(all != x.values)
}
