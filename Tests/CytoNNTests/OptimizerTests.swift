import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite("Optimizers")
struct OptimizerTests {
    func parameter(_ v: Float) -> Parameter {
        let p = Parameter(name: "w", shape: Shape(1))
        p.value[0] = v
        return p
    }

    @Test("staircase exponential decay")
    func decay() {
        let lr = LearningRate.paper(0.1)
        #expect(lr.at(step: 0) == 0.1 && lr.at(step: 99) == 0.1)
        // Rates are Float: compare to within Float's relative precision.
        #expect(abs(Double(lr.at(step: 100)) / 0.09999 - 1) < 1e-7)
        #expect(abs(Double(lr.at(step: 250)) / (0.1 * 0.9999 * 0.9999) - 1) < 1e-7)
        #expect(abs(Double(lr.at(step: 1_000_000)) / (0.1 * pow(0.9999, 10_000)) - 1) < 1e-6)
        let smooth = LearningRate(1, decayRate: 0.5, decaySteps: 10, staircase: false)
        #expect(abs(Double(smooth.at(step: 5)) - pow(0.5, 0.5)) < 1e-7)
    }

    @Test("Adam steps by hand (beta1 0.5), bias correction and decayed rate")
    func adam() {
        let p = parameter(1)
        let adam = Adam(parameters: [p], learningRate: LearningRate(0.1), beta1: 0.5, beta2: 0.999, epsilon: 1e-8)
        p.grad[0] = 0.5
        adam.update()
        // m = 0.25, v = 0.00025, m_hat = 0.5, v_hat = 0.25: step 0.1 * 0.5 / (0.5 + 1e-8).
        #expect(abs(Double(p.value[0]) - (1 - 0.1 * 0.5 / (0.5 + 1e-8))) < 1e-6)
        p.grad[0] = -1
        adam.update()
        // m = -0.375, v = 0.999 * 0.00025 + 0.001; m_hat = m / 0.75, v_hat = v / (1 - 0.999^2).
        let m = -0.375, v = 0.999 * 0.00025 + 0.001
        let expected = (1 - 0.1 * 0.5 / (0.5 + 1e-8)) - 0.1 * (m / 0.75) / ((v / (1 - 0.999 * 0.999)).squareRoot() + 1e-8)
        #expect(abs(Double(p.value[0]) - expected) < 1e-6)
        #expect(adam.step == 2 && abs(adam.m[0][0] - Float(m)) < 1e-7 && abs(Double(adam.v[0][0]) / v - 1) < 1e-4)
        // After 100 updates the staircase rate drops by 0.9999: the 101st step uses 0.09999.
        let q = parameter(0)
        let decayed = Adam(parameters: [q], learningRate: .paper(0.1), beta1: 0.5)
        decayed.step = 100
        q.grad[0] = 2
        decayed.update()
        // t = 101: m_hat = (0.5 * 2) / (1 - 0.5^101) ~ 2, v_hat = 0.004 / (1 - 0.999^101).
        let t = 101.0
        let mh = 1.0 / (1 - pow(0.5, t)), vh = 0.004 / (1 - pow(0.999, t))
        #expect(abs(Double(q.value[0]) - (-0.09999 * mh / (vh.squareRoot() + 1e-8))) < 1e-6)
    }

    @Test("RMSProp and SGD steps by hand")
    func rmspropAndSGD() {
        let p = parameter(1)
        let rms = RMSProp(parameters: [p], learningRate: LearningRate(0.01), rho: 0.9, epsilon: 1e-8)
        p.grad[0] = 2
        rms.update()
        let s1 = 1 - 0.01 * 2 / (0.4.squareRoot() + 1e-8)
        #expect(abs(Double(p.value[0]) - s1) < 1e-6)
        p.grad[0] = -1
        rms.update()
        #expect(abs(Double(p.value[0]) - (s1 + 0.01 / (0.46.squareRoot() + 1e-8))) < 1e-6)

        let q = parameter(1)
        let sgd = SGD(parameters: [q], learningRate: LearningRate(0.1), momentum: 0.9)
        q.grad[0] = 1
        sgd.update(); sgd.update()
        #expect(abs(q.value[0] - 0.71) < 1e-6)
        let r = parameter(1)
        let plain = SGD(parameters: [r], learningRate: LearningRate(0.5))
        r.grad[0] = 0.5
        plain.update()
        #expect(r.value[0] == 0.75 && plain.stateTensors.isEmpty)
    }

    @Test("optimizer state round-trips exactly through its named tensors")
    func stateRoundTrip() throws {
        let net = try Network([Dense(name: "dense0", inputs: 3, outputs: 2)])
        var rng = RandomStream(seed: 1, purpose: "init")
        net.initialize(.glorotUniform, rng: &rng)
        let adam = Adam(parameters: net.parameters, learningRate: .paper(1e-2), beta1: 0.5)
        let x = randomTensor(Shape(4, 3), seed: 2)
        func step(_ net: Network, _ opt: Adam) throws {
            net.zeroGradients()
            let y = try net.forward(x)
            _ = try net.backward(y)  // gradient of sum(y^2) / 2
            opt.update()
        }
        for _ in 0..<3 { try step(net, adam) }
        #expect(adam.stateTensors.map { $0.name } == ["m.dense0.weight", "m.dense0.bias", "v.dense0.weight", "v.dense0.bias"])
        // Copy parameters and optimizer state into a fresh pair; both continue identically.
        let net2 = try Network([Dense(name: "dense0", inputs: 3, outputs: 2)])
        try net2.load(Dictionary(uniqueKeysWithValues: net.namedTensors.map { ($0.name, $0.tensor.clone()) }))
        let adam2 = Adam(parameters: net2.parameters, learningRate: .paper(1e-2), beta1: 0.5)
        try adam2.loadState(Dictionary(uniqueKeysWithValues: adam.stateTensors.map { ("opt." + $0.name, $0.tensor.clone()) }), prefix: "opt.")
        adam2.step = adam.step
        for _ in 0..<3 { try step(net, adam); try step(net2, adam2) }
        for (a, b) in zip(net.parameters, net2.parameters) { #expect(a.value.values == b.value.values) }
        #expect(throws: CytoError.self) { try adam2.loadState([:]) }
    }
}
