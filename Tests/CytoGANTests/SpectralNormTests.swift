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
