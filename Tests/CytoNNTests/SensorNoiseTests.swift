import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

@Suite("SensorNoise")
struct SensorNoiseTests {
    /// Input values in (-1, 1) away from the clamp's ends, so difference quotients stay on one piece.
    func interior(_ shape: Shape, seed: UInt64) -> Tensor {
        let x = randomTensor(shape, seed: seed)
        for i in 0..<x.count { x.data[i] = 0.9 * x.data[i] / (1 + abs(x.data[i])) }
        return x
    }

    @Test("variance read^2 + shot^2 (x + 1) / 2 per channel, measured on constant planes")
    func variance() throws {
        let layer = SensorNoise(name: "sensor", channels: 3, rng: RandomStream(seed: 3, purpose: "t"))
        layer.read.value.data[0] = 0.05; layer.read.value.data[1] = 0.0; layer.read.value.data[2] = 0.02
        layer.shot.value.data[0] = 0.0; layer.shot.value.data[1] = 0.1; layer.shot.value.data[2] = 0.04
        for level: Float in [-1, 0, 0.6, 1.5] {
            let x = Tensor(Shape(32, 3, 16, 16), repeating: level)
            let y = try layer.forward(x)
            let plane = 256
            for c in 0..<3 {
                var s = 0.0, s2 = 0.0, n = 0.0
                for i in 0..<32 {
                    for k in 0..<plane {
                        let v = Double(y.data[(i * 3 + c) * plane + k] - level)
                        s += v; s2 += v * v; n += 1
                    }
                }
                let a = Double(layer.read.value.data[c]), b = Double(layer.shot.value.data[c])
                let u = min(max((Double(level) + 1) / 2, 0), 1)
                let expected = (a * a + b * b * u).squareRoot()
                let sd = (s2 / n - (s / n) * (s / n)).squareRoot()
                #expect(abs(s / n) <= 4 * expected / n.squareRoot() + 1e-9, "level \(level) channel \(c): mean \(s / n)")
                #expect(abs(sd - expected) <= 0.03 * expected + 1e-9, "level \(level) channel \(c): std \(sd), expected \(expected)")
            }
        }
    }

    @Test("input and parameter gradients against central differences")
    func gradients() throws {
        do {
            let layer = SensorNoise(name: "sensor", channels: 3, rng: RandomStream(seed: 4, purpose: "t"))
            layer.read.value.data[0] = 0.3; layer.read.value.data[1] = -0.2; layer.read.value.data[2] = 0.05
            layer.shot.value.data[0] = 0.4; layer.shot.value.data[1] = 0.25; layer.shot.value.data[2] = -0.5
            let x = interior(Shape(5, 3, 7, 6), seed: 11)
            _ = try layer.forward(x)
            layer.holdSample = true
            try checkLayer(layer, input: x, h: 1e-3, rtol: 2e-2, atol: 2e-3, probes: 60, parameterProbes: 6)
        }
    }

    @Test("training noise follows the stream and the global item index; inference noise follows the pixels")
    func keys() throws {
        let x = interior(Shape(4, 2, 5, 5), seed: 2)
        let a = SensorNoise(name: "s", channels: 2, rng: RandomStream(seed: 9, purpose: "t"))
        let b = SensorNoise(name: "s", channels: 2, rng: RandomStream(seed: 9, purpose: "t"))
        let ya = try a.forward(x).values
        #expect(try b.forward(x).values == ya)
        #expect(try a.forward(x).values != ya, "a fresh draw each training pass")
        // Items 2 and 3 as the second process's slice of a global batch of 4 draw what the whole batch draws there.
        let c = SensorNoise(name: "s", channels: 2, rng: RandomStream(seed: 9, purpose: "t"))
        c.slice = try BatchSlice(rank: 1, ranks: 2, global: 4)
        let half = Tensor(Shape(2, 2, 5, 5))
        half.data.update(from: x.data + 2 * 50, count: 100)
        #expect(try c.forward(half).values == Array(ya[100..<200]))
        // Inference: the same pixels give the same noise whatever the batch and its order.
        a.training = false
        let whole = try a.forward(x).values
        #expect(try a.forward(x).values == whole)
        let swapped = Tensor(Shape(2, 2, 5, 5))
        swapped.data.update(from: x.data + 50, count: 50)
        (swapped.data + 50).update(from: x.data, count: 50)
        let ys = try a.forward(swapped).values
        #expect(Array(ys[0..<50]) == Array(whole[50..<100]) && Array(ys[50..<100]) == Array(whole[0..<50]))
        #expect(Array(whole[0..<50]) != Array(x.values[0..<50]), "inference draws noise too")
    }
}
