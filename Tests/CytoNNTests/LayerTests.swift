import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Layers")
struct LayerTests {
    @Test("Dense gradients match finite differences")
    func dense() throws {
        let d = Dense(name: "dense0", inputs: 7, outputs: 5)
        randomize(d, seed: 1)
        try checkLayer(d, input: randomTensor(Shape(4, 7), seed: 2), rtol: 2e-3, atol: 1e-3)
        // y = x W^T + b by hand for one item.
        let x = try Tensor(Shape(1, 7), [1, 0, 0, 2, 0, 0, -1])
        let y = try d.forward(x)
        for j in 0..<5 {
            let w = d.weight.value
            let expected = w[j * 7 + 0] + 2 * w[j * 7 + 3] - w[j * 7 + 6] + d.bias!.value[j]
            #expect(abs(y[j] - expected) < 1e-5)
        }
    }

    @Test("BatchNorm over channels: gradients in training and inference modes")
    func batchNormChannels() throws {
        let bn = BatchNorm(name: "bn0", features: 3)
        randomize(bn, seed: 3)
        for p in bn.parameters { for i in 0..<p.count { p.value.data[i] += 1 } }  // gamma near 1
        let x = randomTensor(Shape(2, 3, 3, 4), seed: 4, scale: 2)
        bn.training = true
        try checkLayer(bn, input: x, h: 1e-2, rtol: 1e-2, atol: 2e-3)
        bn.runningMean.copy(from: randomTensor(Shape(3), seed: 5))
        bn.runningVar.fill(0.7)
        bn.training = false
        try checkLayer(bn, input: x, h: 1e-2, rtol: 1e-2, atol: 1e-3)
    }

    @Test("BatchNorm over dense features: gradients")
    func batchNormFeatures() throws {
        let bn = BatchNorm(name: "bn", features: 5)
        randomize(bn, seed: 6)
        try checkLayer(bn, input: randomTensor(Shape(6, 5), seed: 7, scale: 3), rtol: 1e-2, atol: 2e-3)
    }

    @Test("BatchNorm training output, running statistics and inference output by hand")
    func batchNormSemantics() throws {
        let bn = BatchNorm(name: "bn", features: 2)  // momentum 0.9, epsilon 1e-3
        bn.weight.value.copy(from: try Tensor(Shape(2), [2, 1]))
        bn.bias.value.copy(from: try Tensor(Shape(2), [0.5, 0]))
        // Feature 0: 1, 2, 3, 4 (mean 2.5, biased var 1.25, unbiased 5/3).
        // Feature 1: -1, 0, 0, 5 (mean 1, biased var 5.5, unbiased 22/3).
        let x = try Tensor(Shape(4, 2), [1, -1, 2, 0, 3, 0, 4, 5])
        let y = try bn.forward(x)
        let f0 = [1.0, 2, 3, 4].map { 2 * ($0 - 2.5) / (1.25 + 1e-3).squareRoot() + 0.5 }
        let f1 = [-1.0, 0, 0, 5].map { ($0 - 1) / (5.5 + 1e-3).squareRoot() }
        for i in 0..<4 {
            #expect(abs(Double(y[2 * i]) - f0[i]) < 1e-5)
            #expect(abs(Double(y[2 * i + 1]) - f1[i]) < 1e-5)
        }
        // running = 0.9 * old + 0.1 * batch, from mean 0 and variance 1; the unbiased variance.
        #expect(abs(bn.runningMean[0] - 0.25) < 1e-6 && abs(bn.runningMean[1] - 0.1) < 1e-6)
        #expect(abs(Double(bn.runningVar[0]) - (0.9 + 0.1 * 5.0 / 3)) < 1e-6)
        #expect(abs(Double(bn.runningVar[1]) - (0.9 + 0.1 * 22.0 / 3)) < 1e-5)
        // A second batch moves them again.
        _ = try bn.forward(try Tensor(Shape(2, 2), [0, 0, 2, 2]))  // means 1, 1; unbiased var 2, 2
        #expect(abs(Double(bn.runningMean[0]) - (0.9 * 0.25 + 0.1)) < 1e-6)
        let rv0 = 0.9 * (0.9 + 0.1 * 5.0 / 3) + 0.1 * 2
        #expect(abs(Double(bn.runningVar[0]) - rv0) < 1e-6)
        // Inference uses the running statistics and leaves them alone.
        bn.training = false
        let z = try bn.forward(try Tensor(Shape(1, 2), [3, 3]))
        let rm0 = 0.9 * 0.25 + 0.1
        #expect(abs(Double(z[0]) - (2 * (3 - rm0) / (rv0 + 1e-3).squareRoot() + 0.5)) < 1e-5)
        #expect(abs(Double(bn.runningMean[0]) - rm0) < 1e-6)
    }

    @Test("BatchNorm over channels pools N, H and W")
    func batchNormChannelStatistics() throws {
        let bn = BatchNorm(name: "bn", features: 2, momentum: 0.5)
        // Channel 0 holds 0, 1, 2, 3 (over 2 items x 2 pixels); channel 1 holds 10 everywhere.
        let x = try Tensor(Shape(2, 2, 1, 2), [0, 1, 10, 10, 2, 3, 10, 10])
        let y = try bn.forward(x)
        let sd = (1.25 + 1e-3).squareRoot()
        let expected: [Double] = [-1.5 / sd, -0.5 / sd, 0, 0, 0.5 / sd, 1.5 / sd, 0, 0]
        for i in 0..<8 { #expect(abs(Double(y[i]) - expected[i]) < 1e-5) }
        #expect(abs(bn.runningMean[0] - 0.75) < 1e-6 && abs(bn.runningMean[1] - 5) < 1e-6)
        #expect(abs(Double(bn.runningVar[0]) - (0.5 + 0.5 * 5.0 / 3)) < 1e-6 && abs(bn.runningVar[1] - 0.5) < 1e-6)
    }

    @Test("BatchNorm refuses to train on a single value per feature")
    func batchNormSingle() {
        let bn = BatchNorm(name: "bn9", features: 3)
        #expect(throws: CytoError.self) { _ = try bn.forward(Tensor(Shape(1, 3))) }
        do {
            _ = try bn.forward(Tensor(Shape(4, 2)))
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.message.contains("bn9") && e.message.contains("[4, 2]"))
        } catch { Issue.record("\(error)") }
    }

    @Test("activations: values and gradients")
    func activations() throws {
        let x = randomTensor(Shape(3, 2, 2, 3), seed: 8, scale: 2, gap: 0.1)
        for layer in [LeakyReLU(name: "l", alpha: 0.2), ReLU(name: "r"), Tanh(name: "t"), Sigmoid(name: "s")] as [any Layer] {
            try checkLayer(layer, input: x, h: 1e-2, rtol: 1e-2, atol: 1e-3, probes: 36)
        }
        let v = try Tensor(Shape(4), [-2, -0.5, 0.5, 3])
        #expect(try LeakyReLU(name: "l", alpha: 0.2).forward(v).values == [-0.4, -0.1, 0.5, 3])
        #expect(try ReLU(name: "r").forward(v).values == [0, 0, 0.5, 3])
        let t = try Tanh(name: "t").forward(v).values
        let s = try Sigmoid(name: "s").forward(v).values
        for i in 0..<4 {
            let d = Double(v[i])
            #expect(abs(Double(t[i]) - (exp(d) - exp(-d)) / (exp(d) + exp(-d))) < 1e-6)
            #expect(abs(Double(s[i]) - 1 / (1 + exp(-d))) < 1e-6)
        }
        let big = try Sigmoid(name: "s").forward(try Tensor(Shape(2), [-200, 200])).values
        #expect(big[0] == 0 && big[1] == 1)
    }

    @Test("Tanh's inward gradient floor: slope at least the floor only where the gradient points back into the range")
    func tanhInwardGradientFloor() throws {
        let x = try Tensor(Shape(8), [-6, -6, -0.3, -0.3, 0.2, 0.2, 5, 5])
        let g = try Tensor(Shape(8), [-1, 1, -2, 2, 0.5, -0.5, 3, -3])
        let layer = Tanh(name: "t")
        layer.inwardGradientFloor = 0.1
        _ = try layer.forward(x)
        let d = try #require(try layer.backward(g, inputGradient: true, parameterGradients: false)).values
        for i in 0..<8 {
            let y = tanh(Double(x[i])), exact = 1 - y * y
            // Inward: y < 0 with the loss falling as y rises (g < 0), or y > 0 with g > 0.
            let slope = y * Double(g[i]) > 0 ? max(exact, 0.1) : exact
            #expect(abs(Double(d[i]) - Double(g[i]) * slope) <= 1e-6 * max(1, abs(Double(g[i]))), "x \(x[i]) g \(g[i])")
        }
        // Saturated at -1: the inward gradient passes at the floor, the outward one stays tiny.
        #expect(abs(d[0] + 0.1) < 1e-6 && abs(d[1]) < 1e-4)
        #expect(abs(d[6] - 0.3) < 1e-6 && abs(d[7]) < 1e-3)
    }

    @Test("GaussianNoise: std, switching off, own stream, held sample, identity gradient")
    func gaussianNoise() throws {
        let noise = GaussianNoise(name: "noise", std: 0.1, rng: RandomStream(seed: 5, purpose: "noise"))
        let x = Tensor(Shape(64, 3, 8, 8), repeating: 1)
        let y = try noise.forward(x).values
        var s = 0.0, s2 = 0.0
        for v in y { s += Double(v - 1); s2 += Double(v - 1) * Double(v - 1) }
        let n = Double(y.count), sd = (s2 / n - (s / n) * (s / n)).squareRoot()
        #expect(abs(s / n) < 0.005 && abs(sd - 0.1) < 0.005, "mean \(s / n) std \(sd)")
        // Normal shape: about 68.27% within one std, 95.45% within two (12288 values).
        let within1 = Double(y.filter { abs($0 - 1) < 0.1 }.count) / n, within2 = Double(y.filter { abs($0 - 1) < 0.2 }.count) / n
        #expect(abs(within1 - 0.6827) < 0.015 && abs(within2 - 0.9545) < 0.008, "\(within1) \(within2)")
        // The same stream state gives the same noise; holdSample repeats it.
        noise.holdSample = true
        #expect(try noise.forward(x).values == y)
        noise.holdSample = false
        #expect(try noise.forward(x).values != y)
        let g = randomTensor(x.shape, seed: 1)
        #expect(try noise.backward(g).values == g.values)
        noise.enabled = false
        #expect(try noise.forward(x).values == x.values)
        noise.enabled = true
        noise.training = false
        #expect(try noise.forward(x).values == x.values)
    }

    @Test("Flatten and Reshape are views with matching gradients")
    func flattenReshape() throws {
        let x = randomTensor(Shape(2, 3, 2, 2), seed: 9)
        let f = Flatten(name: "flatten")
        let y = try f.forward(x)
        #expect(y.shape == Shape(2, 12) && y.values == x.values && y.sharesStorage(with: x))
        let g = randomTensor(Shape(2, 12), seed: 10)
        let dx = try f.backward(g)
        #expect(dx.shape == x.shape && dx.values == g.values)
        let r = Reshape(name: "reshape0", to: [3, 4])
        let z = try r.forward(y)
        #expect(z.shape == Shape(2, 3, 4) && z.values == x.values)
        do {
            _ = try Reshape(name: "reshape9", to: [5, 5]).forward(y)
            Issue.record("no error")
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.message.contains("reshape9") && e.message.contains("[2, 12]") && e.message.contains("[N, 5, 5]"))
        }
    }

    @Test("GlobalAveragePool: each plane's mean, its gradient spread evenly")
    func globalAveragePool() throws {
        let pool = GlobalAveragePool(name: "pool")
        let x = try Tensor(Shape(2, 2, 2, 2), [1, 2, 3, 4, -1, -1, -1, 5, 0, 0, 0, 0, 8, 0, 0, 0])
        #expect(try pool.forward(x).values == [2.5, 0.5, 0, 2])
        #expect(try pool.backward(try Tensor(Shape(2, 2), [4, -8, 0, 2])).values == [1, 1, 1, 1, -2, -2, -2, -2, 0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5])
        try checkLayer(pool, input: randomTensor(Shape(3, 4, 5, 3), seed: 11), rtol: 1e-3, atol: 1e-4)
        #expect(throws: CytoError.self) { try pool.forward(Tensor(Shape(2, 3))) }
    }

    @Test("weight initialisers draw the documented distributions from the stream")
    func initialisers() {
        var rng = RandomStream(seed: 1, purpose: "init")
        let conv = Conv2D(name: "c", inChannels: 64, outChannels: 64, kernel: 5)
        func stats(_ t: Tensor) -> (Double, Double, Float) {
            let v = t.values
            let m = v.reduce(0.0) { $0 + Double($1) } / Double(v.count)
            let s = (v.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(v.count) - m * m).squareRoot()
            return (m, s, v.map { abs($0) }.max()!)
        }
        conv.initialize(.normal(std: 0.02), rng: &rng)
        var (m, s, _) = stats(conv.weight.value)
        #expect(abs(m) < 1e-3 && abs(s - 0.02) < 5e-4)
        conv.initialize(.heNormal, rng: &rng)
        (m, s, _) = stats(conv.weight.value)
        #expect(abs(s - (2.0 / 1600).squareRoot()) < 1e-3)
        conv.initialize(.glorotUniform, rng: &rng)
        let limit = (6.0 / 3200).squareRoot()
        var mx: Float
        (m, s, mx) = stats(conv.weight.value)
        #expect(Double(mx) <= limit && Double(mx) > 0.99 * limit && abs(s - limit / 3.0.squareRoot()) < 1e-3)
        #expect(conv.bias!.value.values.allSatisfy { $0 == 0 })
        // Same seed, same weights.
        var a = RandomStream(seed: 9, purpose: "init"), b = RandomStream(seed: 9, purpose: "init")
        let c1 = Conv2D(name: "c", inChannels: 2, outChannels: 2, kernel: 3), c2 = Conv2D(name: "c", inChannels: 2, outChannels: 2, kernel: 3)
        c1.initialize(.normal(std: 0.02), rng: &a)
        c2.initialize(.normal(std: 0.02), rng: &b)
        #expect(c1.weight.value.values == c2.weight.value.values)
    }
}
