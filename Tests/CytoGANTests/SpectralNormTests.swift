import CytoCore
import CytoNN
import CytoNNTestSupport
import Foundation
import Testing
@testable import CytoGAN

/// With `spectral_norm`, every discriminator weight the networks use has largest singular value 1
/// (measured here independently) before and after training; biases and the generator are left
/// alone; the state resumes exactly.
@Test func spectralNormKeepsEveryDiscriminatorWeightAtUnitNorm() throws {
    Engine.setThreads(1)
    var c = Fixture.tinyConfig(loss: .lsgan)
    c.spectralNorm = true
    let model = try GANModel(config: c)
    let weights = model.discriminator.parameters.filter { $0.name.hasSuffix(".weight") }
    #expect(weights.count == 5)
    for p in weights { #expect(abs(largestSingularValue(p.value) - 1) < 1e-3, "\(p.name) at creation") }
    let dir = try Fixture.tempDir("spectral")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = try Fixture.writeCrops(in: dir, count: 9)
    let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths))
    _ = try Trainer(model: model, source: manifest, options: .init(steps: 30)).run()
    // One power iteration per update tracks the singular value as the weights move; it
    // estimates from below, so a normalized weight's norm is 1 or a little above.
    for p in weights {
        let s = largestSingularValue(p.value)
        #expect(s > 1 - 1e-4 && s < 1.05, "\(p.name) after 30 steps: \(s)")
    }
    let plain = try GANModel(config: Fixture.tinyConfig(loss: .lsgan))
    #expect(abs(largestSingularValue(plain.discriminator.parameters.first { $0.name == "conv1.weight" }!.value) - 1) > 0.1)
    #expect(Set(model.namedTensors.map(\.name)).isSuperset(of: ["spectral_norm.u.conv0.weight", "spectral_norm.v.output.weight",
                                                                  "spectral_norm.sigma.representation.weight"]))
}

@Test func resumeIsBitIdenticalWithSpectralNorm() throws {
    var c = Fixture.tinyConfig(loss: .lsgan)
    c.spectralNorm = true
    c.discriminatorAverage = 0.7
    try checkResume(c)
}

@Test func spectralNormKeyIsABoolean() throws {
    let j = try #require(Fixture.tinyConfig(loss: .lsgan).json.objectValue)
    #expect(try GANConfig(json: .object(j)).spectralNorm == false)
    func with(_ v: JSON) -> JSON { var o = j; o["spectral_norm"] = v; return .object(o) }
    #expect(try GANConfig(json: with(.bool(true))).spectralNorm == true)
    for bad: JSON in [.string("yes"), .float(1)] {
        do { _ = try GANConfig(json: with(bad)); Issue.record("accepted spectral_norm \(bad)") } catch let e as CytoError {
            #expect(e.field == "spectral_norm" && e.message.contains("true or false"), "\(e)")
        }
    }
}

/// `output_gradient_floor` reaches the generator's output tanh (and only it), survives a
/// checkpoint, and values outside [0, 1] are refused naming the key.
@Test func outputGradientFloorReachesTheGeneratorsTanh() throws {
    var c = Fixture.tinyConfig(loss: .lsgan)
    #expect(c.outputGradientFloor == 0)
    c.outputGradientFloor = 0.1
    #expect(try GANConfig(json: c.json) == c)
    let model = try GANModel(config: c)
    let tanhs = model.generator.layers.compactMap { $0 as? Tanh }
    #expect(tanhs.count == 1 && tanhs[0].inwardGradientFloor == 0.1)
    let dir = try Fixture.tempDir("gradient-floor")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try model.save(to: dir + "/m.safetensors")
    let loaded = try GANModel.load(from: dir + "/m.safetensors")
    #expect(loaded.generator.layers.compactMap { ($0 as? Tanh)?.inwardGradientFloor } == [0.1])
    let j = try #require(c.json.objectValue)
    for bad: JSON in [.float(-0.1), .float(1.5), .string("some")] {
        var o = j
        o["output_gradient_floor"] = bad
        do { _ = try GANConfig(json: .object(o)); Issue.record("accepted output_gradient_floor \(bad)") } catch let e as CytoError {
            #expect(e.field == "output_gradient_floor", "\(e)")
        }
    }
}
