import CytoCore
@testable import CytoNN
import CytoNNTestSupport
import Testing
@testable import CytoGAN

@Suite("Networks")
struct NetworkTests {
    static let tiny = DCGANArchitecture(size: 8, channels: 2, latent: 5, generatorWidths: [6, 4], discriminatorWidths: [3, 4],
                                        discriminatorStrides: [1, 2], representation: 6)

    @Test("the paper's networks: parameter names, counts and shapes")
    func paperNetworks() throws {
        let arch = DCGANArchitecture.paper96
        let g = try arch.makeGenerator()
        let d = try arch.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        #expect(g.parameters.map { $0.name } == [
            "dense0.weight", "dense0.bias", "bn0.weight", "bn0.bias", "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias",
            "conv2.weight", "conv2.bias", "bn2.weight", "bn2.bias", "conv3.weight", "conv3.bias", "bn3.weight", "bn3.bias",
            "conv4.weight", "conv4.bias"])
        #expect(g.stateTensors.map { $0.name } == ["bn0.running_mean", "bn0.running_var", "bn1.running_mean", "bn1.running_var",
                                                   "bn2.running_mean", "bn2.running_var", "bn3.running_mean", "bn3.running_var"])
        let gCount = 100 * 36864 + 36864 + 512 + (128 * 256 * 25 + 128) + 256 + (64 * 128 * 25 + 64) + 128 + (32 * 64 * 25 + 32) + 64 + (3 * 32 * 25 + 3)
        #expect(g.parameterCount == gCount)
        #expect(d.parameters.map { $0.name } == ["conv0.weight", "conv0.bias", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                                 "conv3.weight", "conv3.bias", "representation.weight", "representation.bias", "output.weight", "output.bias"])
        let dCount = (32 * 3 * 25 + 32) + (64 * 32 * 25 + 64) + (128 * 64 * 25 + 128) + (256 * 128 * 25 + 256) + (36864 * 100 + 100) + 101
        #expect(d.parameterCount == dCount)
        #expect(try g.outputShape(for: Shape(7, 100)) == Shape(7, 3, 96, 96))
        #expect(try d.outputShape(for: Shape(7, 3, 96, 96)) == Shape(7, 1))
        #expect(try d.outputShape(for: Shape(7, 3, 96, 96), through: DCGANArchitecture.representationLayer) == Shape(7, 100))
        #expect(try DCGANArchitecture.small64.makeGenerator().outputShape(for: Shape(1, 100)) == Shape(1, 3, 64, 64))
        #expect(throws: CytoError.self) { _ = try DCGANArchitecture(size: 90).makeGenerator() }
    }

    @Test("whole networks: input and parameter gradients match finite differences")
    func networkGradients() throws {
        let arch = NetworkTests.tiny
        let d = try arch.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        d.noiseLayers.first!.enabled = false
        var rng = RandomStream(seed: 2, purpose: "init")
        d.initialize(.glorotUniform, rng: &rng)
        let x = randomTensor(Shape(3, 2, 8, 8), seed: 3)
        try checkNetwork(d, x, seed: 4, h: 1e-3)

        // In the generator, BatchNorm couples every unit to every input, so almost any step moves
        // some LeakyReLU input across zero. Its composition is checked with leak 1 (LeakyReLU the
        // identity; everything else unchanged), with a step where float rounding is negligible.
        var linear = arch
        linear.leak = 1
        let g = try linear.makeGenerator()
        g.initialize(.glorotUniform, rng: &rng)
        try checkNetwork(g, randomTensor(Shape(4, 5), seed: 5), seed: 6, h: 1e-2)
    }

    func checkNetwork(_ net: Network, _ x: Tensor, seed: UInt64, h: Float) throws {
        let out = try net.forward(x)
        let r = randomTensor(out.shape, seed: seed)
        net.zeroGradients()
        let dx = try net.backward(r).values
        let grads = net.parameters.map { $0.grad.values }
        let loss = { () throws -> Double in weightedSum(try net.forward(x), r) }
        let pattern = { activationPattern(net, input: x) }
        try checkGradient("input", value: x, analytic: dx, h: h, rtol: 1e-2, atol: 1e-2, probes: 30, pattern: pattern, loss)
        for (p, g) in zip(net.parameters, grads) {
            try checkGradient(p.name, value: p.value, analytic: g, h: h, rtol: 1e-2, atol: 1e-2, probes: 12, pattern: pattern, loss)
        }
    }

    @Test("forward through a named layer, intermediate outputs, and backward from there")
    func partialForward() throws {
        let d = try NetworkTests.tiny.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        var rng = RandomStream(seed: 2, purpose: "init")
        d.initialize(.heNormal, rng: &rng)
        d.training = false
        let x = randomTensor(Shape(2, 2, 8, 8), seed: 3)
        let full = try d.forward(x).values
        let rep = d.output(of: "representation")!.values
        let conv1 = try #require(d.output(of: "conv1"))
        #expect(conv1.shape == Shape(2, 4, 4, 4))
        let features = try d.forward(x, through: "representation")
        #expect(features.shape == Shape(2, 6) && features.values == rep)
        #expect(d.output(of: "output") == nil)
        // Backward from the representation reaches the input.
        let dx = try d.backward(Tensor(Shape(2, 6), repeating: 1))
        #expect(dx.shape == x.shape)
        // The score equals output.weight . representation + bias.
        let w = (d.layer(named: "output") as! Dense).weight.value, b = (d.layer(named: "output") as! Dense).bias!.value
        for i in 0..<2 {
            var s = Double(b[0])
            for j in 0..<6 { s += Double(w[j]) * Double(rep[i * 6 + j]) }
            #expect(abs(s - Double(full[i])) < 1e-5)
        }
        #expect(throws: CytoError.self) { _ = try d.forward(x, through: "nope") }
    }

    @Test("mode switch reaches every layer; inference is deterministic")
    func modes() throws {
        let g = try NetworkTests.tiny.makeGenerator()
        let d = try NetworkTests.tiny.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        var rng = RandomStream(seed: 2, purpose: "init")
        g.initialize(.normal(std: 0.02), rng: &rng)
        d.initialize(.normal(std: 0.02), rng: &rng)
        g.training = false
        d.training = false
        #expect(g.layers.allSatisfy { !$0.training } && !d.noiseLayers[0].isActive)
        let z = randomTensor(Shape(3, 5), seed: 1)
        let a = try g.forward(z).values
        #expect(try g.forward(z).values == a)
        let x = randomTensor(Shape(3, 2, 8, 8), seed: 1)
        let s = try d.forward(x).values
        #expect(try d.forward(x).values == s)
        d.training = true
        #expect(d.noiseLayers[0].isActive && (g.layer(named: "bn0") as! BatchNorm).training == false)
        #expect(try d.forward(x).values != s)
    }

    @Test("shape errors inside a network name the layer; duplicate names are refused; load checks names")
    func errors() throws {
        let d = try NetworkTests.tiny.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        do {
            _ = try d.forward(Tensor(Shape(2, 3, 8, 8)))
            Issue.record("no error")
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.field == "conv0" && e.message.contains("[2, 3, 8, 8]"), "\(e)")
        }
        do {
            _ = try d.forward(Tensor(Shape(2, 2, 16, 16)))
            Issue.record("no error")
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.field == "representation" && e.message.contains("[2, 256]"), "\(e)")
        }
        #expect(throws: CytoError.self) { _ = try Network([ReLU(name: "a"), ReLU(name: "a")]) }
        #expect(throws: CytoError.self) { _ = try Network([ReLU(name: "a")]).backward(Tensor(Shape(1))) }
        #expect(throws: CytoError.self) { try d.load([:]) }
    }

    @Test("a network's checkpoint loads into a fresh network; wrong shapes are refused by name")
    func networkCheckpoint() throws {
        let arch = DCGANArchitecture(size: 16, channels: 1, latent: 8, generatorWidths: [16, 8, 4], discriminatorWidths: [4, 8, 16],
                                     discriminatorStrides: [1, 2, 2], representation: 10)
        let g = try arch.makeGenerator()
        var rng = RandomStream(seed: 3, purpose: "init")
        g.initialize(.normal(std: 0.02), rng: &rng)
        _ = try g.forward(randomTensor(Shape(4, 8), seed: 1))  // moves BatchNorm running statistics
        let path = try Fixture.tempDir("checkpoint") + "/g.safetensors"
        try SafeTensors.write(g.namedTensors, metadata: ["architecture": "test"], to: path)
        let g2 = try arch.makeGenerator()
        try g2.load(try SafeTensors.read(path).tensors)
        for ((n1, t1), (n2, t2)) in zip(g.namedTensors, g2.namedTensors) {
            #expect(n1 == n2 && t1.values == t2.values)
        }
        g.training = false; g2.training = false
        let z = randomTensor(Shape(2, 8), seed: 5)
        #expect(try g.forward(z).values == g2.forward(z).values)
        // The unfused generator (Upsample2x + Conv2D) reads the same checkpoint and agrees.
        var literal = arch
        literal.fusedUpsample = false
        let g3 = try literal.makeGenerator()
        try g3.load(try SafeTensors.read(path).tensors)
        g3.training = false
        #expect(maxAbsDiff(try g.forward(z).values, try g3.forward(z).values) < 1e-5)
        let other = try DCGANArchitecture(size: 16, channels: 1, latent: 8, generatorWidths: [16, 8, 5], discriminatorWidths: [4, 8, 16],
                                          discriminatorStrides: [1, 2, 2], representation: 10).makeGenerator()
        do {
            try other.load(try SafeTensors.read(path).tensors)
            Issue.record("no error")
        } catch let e as CytoError {
            #expect(e.kind == .shapeMismatch && e.field == "conv2.weight", "\(e)")
        }
    }
}
