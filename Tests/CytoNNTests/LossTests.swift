import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Losses and gradient penalty")
struct LossTests {
    /// Checks a loss's gradient w.r.t. the predictions by central differences.
    func checkLoss(_ name: String, _ p: Tensor, _ loss: (Tensor) throws -> Float, analytic: [Float]) throws {
        try checkGradient(name, value: p, analytic: analytic, h: 1e-2, rtol: 1e-3, atol: 1e-5, probes: 100) {
            Double(try loss(p))
        }
    }

    @Test("binary cross-entropy from logits: value against the textbook formula, gradient, extremes")
    func bce() throws {
        let z = try Tensor(Shape(3, 1), [0, 2, -3])
        let t = try Tensor(Shape(3, 1), [1, 0, 0.5])
        let g = Tensor(Shape(0))
        let l = try Loss.binaryCrossEntropy(logits: z, targets: t, gradient: g)
        var ref = 0.0
        for i in 0..<3 {
            let s = 1 / (1 + exp(-Double(z[i]))), ti = Double(t[i])
            ref -= ti * log(s) + (1 - ti) * log(1 - s)
        }
        #expect(abs(Double(l) - ref / 3) < 1e-6)
        let p = randomTensor(Shape(8, 1), seed: 1, scale: 4)
        let tt = randomTensor(Shape(8, 1), seed: 2, scale: 0.5)
        for i in 0..<8 { tt.data[i] += 0.5 }
        _ = try Loss.binaryCrossEntropy(logits: p, targets: tt, gradient: g)
        try checkLoss("bce", p, { try Loss.binaryCrossEntropy(logits: $0, targets: tt, gradient: Tensor(Shape(0))) }, analytic: g.values)
        // Saturated logits stay finite.
        let e = try Loss.binaryCrossEntropy(logits: try Tensor(Shape(2), [100, -100]), targets: try Tensor(Shape(2), [1, 1]), gradient: g)
        #expect(abs(e - 50) < 1e-3)
        #expect(g.values.allSatisfy { $0.isFinite })
    }

    @Test("mean squared error: value and gradient")
    func mse() throws {
        let p = try Tensor(Shape(2, 2), [1, 2, 3, 4]), t = try Tensor(Shape(2, 2), [0, 2, 5, 4.5])
        let g = Tensor(Shape(0))
        #expect(abs(try Loss.meanSquaredError(p, targets: t, gradient: g) - (1 + 0 + 4 + 0.25) / 4) < 1e-6)
        #expect(g.values == [0.5, 0, -1, -0.25])
        let q = randomTensor(Shape(10), seed: 3)
        let tq = randomTensor(Shape(10), seed: 4)
        _ = try Loss.meanSquaredError(q, targets: tq, gradient: g)
        try checkLoss("mse", q, { try Loss.meanSquaredError($0, targets: tq, gradient: Tensor(Shape(0))) }, analytic: g.values)
    }

    @Test("Wasserstein critic loss: mean fake minus mean real, gradient, label checks")
    func wasserstein() throws {
        let s = try Tensor(Shape(4, 1), [1, 2, 3, 4]), labels = try Tensor(Shape(4, 1), [0, 0, 1, 1])
        let g = Tensor(Shape(0))
        #expect(try Loss.wasserstein(scores: s, labels: labels, gradient: g) == -2)
        #expect(g.values == [0.5, 0.5, -0.5, -0.5])
        let gen = try Loss.wasserstein(scores: s, labels: Tensor(Shape(4, 1), repeating: 1), gradient: g)
        #expect(gen == -2.5)
        let q = randomTensor(Shape(6, 1), seed: 5)
        let l6 = try Tensor(Shape(6, 1), [0, 1, 1, 0, 1, 1])
        _ = try Loss.wasserstein(scores: q, labels: l6, gradient: g)
        try checkLoss("wasserstein", q, { try Loss.wasserstein(scores: $0, labels: l6, gradient: Tensor(Shape(0))) }, analytic: g.values)
        #expect(throws: CytoError.self) { _ = try Loss.wasserstein(scores: s, labels: Tensor(Shape(4, 1), repeating: 0.5), gradient: g) }
        #expect(throws: CytoError.self) { _ = try Loss.meanSquaredError(s, targets: Tensor(Shape(3, 1)), gradient: g) }
    }

    /// A small critic: optional noise, conv (stride 2), activation, flatten, dense, activation, dense.
    func critic(smooth: Bool, noise: Bool) throws -> Network {
        func act(_ n: String) -> any Layer { smooth ? Tanh(name: n) : LeakyReLU(name: n, alpha: 0.2) }
        var layers: [any Layer] = []
        if noise { layers.append(GaussianNoise(name: "noise", std: 0.1, rng: RandomStream(seed: 1, purpose: "noise"))) }
        layers += [Conv2D(name: "conv0", inChannels: 2, outChannels: 3, kernel: 3, stride: 2), act("a0"), Flatten(name: "flatten"),
                   Dense(name: "dense0", inputs: 3 * 3 * 3, outputs: 4), act("a1"), Dense(name: "dense1", inputs: 4, outputs: 1)]
        let net = try Network(layers)
        var rng = RandomStream(seed: 4, purpose: "init")
        net.initialize(.heNormal, rng: &rng)
        for p in net.parameters where p.name.hasSuffix("bias") { for i in 0..<p.count { p.value.data[i] = 0.1 * rng.normal() } }
        return net
    }

    /// Compares the penalty's parameter gradient (finite-difference Hessian-vector product) with a
    /// full central difference of the penalty value w.r.t. every parameter.
    func checkPenalty(smooth: Bool, noise: Bool, centre: Float = 1) throws -> Double {
        let net = try critic(smooth: smooth, noise: noise)
        let x = randomTensor(Shape(3, 2, 6, 6), seed: 7)
        let gp = GradientPenalty(weight: 10, centre: centre)
        let noiseLayer = net.noiseLayers.first
        let noiseState = noiseLayer?.rng
        // Each evaluation starts from the same noise stream state, so it sees the same sample.
        func penalty() throws -> Double {
            if let noiseLayer, let noiseState { noiseLayer.rng = noiseState }
            net.zeroGradients()
            return Double(try gp.accumulate(critic: net, at: x).penalty)
        }
        // The activation pattern at x with the evaluation's noise sample: the penalty jumps where
        // a LeakyReLU input changes sign, so probes across such a jump are skipped.
        func pattern() -> Int {
            noiseLayer?.holdSample = true
            defer { noiseLayer?.holdSample = false }
            _ = try? net.forward(x)
            return activationPattern(net, input: x)
        }
        let p0 = try penalty()
        #expect(p0 > 0.1, "penalty \(p0) too small to test")
        let analytic = net.parameters.map { $0.grad.values }
        var worst = 0.0
        for (p, a) in zip(net.parameters, analytic) {
            worst = max(worst, try checkGradient("penalty d/d \(p.name)", value: p.value, analytic: a, h: 1e-3, rtol: 1e-2, atol: 1e-3,
                                                 probes: 200, pattern: smooth ? nil : pattern) { try penalty() })
        }
        return worst
    }

    @Test("gradient penalty: parameter gradient of a LeakyReLU critic with input noise matches finite differences")
    func penaltyLeaky() throws { _ = try checkPenalty(smooth: false, noise: true) }

    @Test("gradient penalty: parameter gradient of a smooth (tanh) critic matches finite differences")
    func penaltySmooth() throws { _ = try checkPenalty(smooth: true, noise: false) }

    @Test("R1 penalty (centre 0): parameter gradient of a LeakyReLU critic with input noise matches finite differences")
    func r1Leaky() throws { _ = try checkPenalty(smooth: false, noise: true, centre: 0) }

    @Test("R1 penalty (centre 0): value is weight * mean ||grad_x D||^2 of a linear critic, gradient 2 weight w")
    func r1Value() throws {
        let dense = Dense(name: "d", inputs: 4, outputs: 1)
        try dense.weight.value.setValues([1, 2, 2, 0])  // norm 3
        let net = try Network([Flatten(name: "f"), dense])
        let r = try GradientPenalty(weight: 0.5, centre: 0).accumulate(critic: net, at: randomTensor(Shape(5, 1, 2, 2), seed: 1))
        #expect(abs(r.penalty - 4.5) < 1e-4 && abs(r.meanGradientNorm - 3) < 1e-5)
        let expected: [Float] = [1, 2, 2, 0]  // d/dw 0.5 ||w||^2 = w
        #expect(maxAbsDiff(dense.weight.grad.values, expected) < 2e-3, "\(dense.weight.grad.values)")
    }

    @Test("gradient penalty: value is weight * mean (||grad_x D|| - 1)^2 of a linear critic")
    func penaltyValue() throws {
        // D(x) = w . flatten(x) + b has grad_x D = w for every item: penalty = 10 (||w|| - 1)^2.
        let dense = Dense(name: "d", inputs: 4, outputs: 1)
        try dense.weight.value.setValues([1, 2, 2, 0])  // norm 3
        let net = try Network([Flatten(name: "f"), dense])
        let r = try GradientPenalty(weight: 10).accumulate(critic: net, at: randomTensor(Shape(5, 1, 2, 2), seed: 1))
        #expect(abs(r.penalty - 40) < 1e-4 && abs(r.meanGradientNorm - 3) < 1e-5)
        // d/dw of 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||; the bias has none.
        let expected: [Float] = [1, 2, 2, 0].map { 20 * 2 * $0 / 3 }
        #expect(maxAbsDiff(dense.weight.grad.values, expected) < 2e-3, "\(dense.weight.grad.values)")
        #expect(abs(dense.bias!.grad[0]) < 1e-3)
        // A critic with BatchNorm in training mode is refused.
        let bnNet = try Network([Flatten(name: "f"), BatchNorm(name: "bn", features: 4), Dense(name: "d", inputs: 4, outputs: 1)])
        #expect(throws: CytoError.self) { _ = try GradientPenalty().accumulate(critic: bnNet, at: Tensor(Shape(2, 1, 2, 2))) }
    }
}
