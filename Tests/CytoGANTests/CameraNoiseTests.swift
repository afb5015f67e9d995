import CellImage
import CytoCore
import CytoNN
import CytoNNTestSupport
import Foundation
import Testing
@testable import CytoGAN

/// The camera model: its measurement recovers a known noise from noisy smooth images, it is
/// parsed and checked like every config member, the training step adds it to what the
/// discriminator sees of the generated batch, and pictures get it unless asked clean.
@Suite struct CameraNoiseTests {
    /// Smooth images (a bright blob over a dim ramp) plus noise whose standard deviation is a
    /// known function of the intensity: shot noise over a read-noise floor.
    static func noisyImages(count: Int, size: Int, sigma: (Float) -> Float, seed: UInt64) -> [Float] {
        var rng = RandomStream(seed: seed, purpose: "test-images")
        var out: [Float] = []
        for _ in 0..<count {
            let cx = rng.uniform(0.3, 0.7) * Float(size), cy = rng.uniform(0.3, 0.7) * Float(size)
            let r = rng.uniform(0.25, 0.4) * Float(size), peak = rng.uniform(0.5, 1.2)
            for _ in 0..<3 {
                for y in 0..<size {
                    for x in 0..<size {
                        let d2 = (Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)
                        let clean = -0.9 + 0.2 * Float(x) / Float(size) + peak * exp(-d2 / (2 * r * r))
                        out.append(min(1, max(-1, clean + sigma(clean) * rng.normal())))
                    }
                }
            }
        }
        return out
    }

    @Test func estimateRecoversAKnownNoise() throws {
        let sigma: (Float) -> Float = { x in (0.003 * 0.003 + 0.0004 * (x + 1)).squareRoot() }
        let images = Self.noisyImages(count: 120, size: 32, sigma: sigma, seed: 4)
        let noise = try CameraNoise.estimate(images, count: 120, channels: 3, size: 32)
        #expect(noise.channels == 3)
        for c in 0..<3 {
            #expect(noise.levels[c].count >= 8)
            for x: Float in [-0.85, -0.6, -0.2, 0.3] where x > noise.levels[c].first! && x < noise.levels[c].last! {
                let got = noise.sigma(channel: c, at: x), want = sigma(x)
                // The smooth signal's own curvature adds a little where the blob bends most.
                #expect(abs(got - want) / want < 0.15, "channel \(c) at \(x): measured \(got), true \(want)")
            }
        }
        // Clean images measure only what their own curvature leaves: under half the smallest noise above.
        let clean = Self.noisyImages(count: 60, size: 32, sigma: { _ in 0 }, seed: 4)
        let none = try CameraNoise.estimate(clean, count: 60, channels: 3, size: 32)
        let leftover = none.std.flatMap { $0 }.max()!
        #expect(leftover < 0.0015, "clean images measured a noise of up to \(leftover)")
        // A channel dark almost everywhere gets no noise; the others are still measured.
        var dark = images
        for i in 0..<120 { for j in 0..<(32 * 32) { dark[(i * 3 + 1) * 32 * 32 + j] = -1 } }
        let partly = try CameraNoise.estimate(dark, count: 120, channels: 3, size: 32)
        #expect(partly.silentChannels == [1])
        #expect(partly.sigma(channel: 1, at: 0.3) == 0)
        #expect(partly.levels[0] == noise.levels[0] && partly.std[2] == noise.std[2])
        #expect(throws: CytoError.self) { try CameraNoise.estimate([], count: 0, channels: 3, size: 8) }
    }

    @Test func applyAddsTheNoiseOfEachLevelAndKeepsTheRange() throws {
        let noise = try CameraNoise(levels: [[-0.5, 0.5]], std: [[0.01, 0.05]])
        #expect(noise.sigma(channel: 0, at: -0.9) == 0.01)
        #expect(noise.sigma(channel: 0, at: 0.9) == 0.05)
        #expect(abs(noise.sigma(channel: 0, at: 0) - 0.03) < 1e-6)
        let n = 20_000
        for level: Float in [-0.8, 0, 0.99] {
            var values = [Float](repeating: level, count: n)
            var rng = RandomStream(seed: 2, purpose: "t")
            noise.apply(to: &values, plane: n, rng: &rng)
            #expect(values.allSatisfy { $0 >= -1 && $0 <= 1 })
            if level < 0.9 {
                let mean = values.reduce(0, +) / Float(n)
                let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(n)).squareRoot()
                let want = noise.sigma(channel: 0, at: level)
                #expect(abs(sd - want) / want < 0.03, "at \(level): spread \(sd), model \(want)")
                #expect(abs(mean - level) < 4 * want / Float(n).squareRoot() + 1e-6)
            }
        }
    }

    @Test func configParsesChecksAndRoundTrips() throws {
        var o = Fixture.tinyConfig().json.objectValue!
        #expect(o["camera_noise"] == JSON.null)
        o["camera_noise"] = "estimate"
        #expect(try GANConfig(json: .object(o)).cameraNoise == .estimate)
        let measured = try CameraNoise(levels: [[-1, 0], [-1, 0], [-0.5, 0.5]], std: [[0.01, 0.02], [0.01, 0.02], [0.02, 0.03]])
        o["camera_noise"] = measured.json
        let c = try GANConfig(json: .object(o))
        #expect(c.cameraNoise == .measured(measured))
        #expect(try GANConfig(json: c.json).cameraNoise == c.cameraNoise)
        let bad: [JSON] = ["guess", 3, ["levels": [[0, 1]], "std": [[0.1]]], ["levels": [[1, 0]], "std": [[0.1, 0.1]]],
                           ["levels": [[0, 1], [0, 1], [0, 1]], "std": [[0.1, 2], [0.1, 0.1], [0.1, 0.1]]],
                           ["levels": [[0, 1]], "std": [[0.1, 0.1]]]]   // one channel for a 3-channel network
        for b in bad {
            o["camera_noise"] = b
            #expect { try GANConfig(json: .object(o)) } throws: { ($0 as? CytoError)?.field == "camera_noise" }
        }
    }

    /// What the discriminator sees of the generated batch is the generator's output plus the
    /// camera's noise: with a noise too large to miss, the two steps (with and without a camera)
    /// start from the same weights and draws but the discriminator learns differently; with a zero
    /// noise they agree bit for bit (the noise changes nothing else).
    @Test func trainingStepShowsTheDiscriminatorTheRecordedBatch() throws {
        Engine.setThreads(1)
        let real = randomTensor(Shape(4, 3, 16, 16), seed: 7, scale: 0.5)
        func loss(_ noise: CameraNoise?) throws -> (Float, [String: [UInt32]]) {
            let m = try GANModel(config: Fixture.tinyConfig())
            m.trainingStep.cameraNoise = noise
            let r = try m.trainingStep.step(real: real)
            return (r.discriminatorLoss, Fixture.bits(m))
        }
        let (plain, plainBits) = try loss(nil)
        let (zero, zeroBits) = try loss(try CameraNoise(levels: [[0], [0], [0]], std: [[0], [0], [0]]))
        #expect(zero == plain)
        #expect(zeroBits == plainBits)
        let (_, loudBits) = try loss(try CameraNoise(levels: [[0], [0], [0]], std: [[0.4], [0.4], [0.4]]))
        #expect(loudBits.filter { $0.key.hasPrefix("discriminator.") } != plainBits.filter { $0.key.hasPrefix("discriminator.") })
    }

    /// Pictures: the model's camera noise on top of the generator's specimen, reproducible from
    /// the seed whatever the batch size, absent when asked clean; measured, saved and loaded with
    /// the model, and training with it resumes exactly.
    @Test func picturesCarryTheNoiseUnlessClean() throws {
        var c = Fixture.tinyConfig()
        c.cameraNoise = .estimate
        let dir = try Fixture.tempDir("camera")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: try Fixture.writeCrops(in: dir, count: 12)))
        let model = try GANModel(config: c)
        var lines: [String] = []
        _ = try Trainer(model: model, source: manifest, options: .init(steps: 2), log: { lines.append($0) }).run()
        #expect(lines.contains { $0.hasPrefix("camera noise") })
        let noise = try #require(model.cameraNoise)
        #expect(model.trainingStep.cameraNoise == noise)
        let z = NoiseSpace.draw(count: 5, latent: c.architecture.latent, seed: 3)
        let clean = try Sampler(model: model, clean: true).generate(z)
        let noisy = try Sampler(model: model, batchSize: 2, noiseSeed: 8).generate(z)
        #expect(try Sampler(model: model, batchSize: 5, noiseSeed: 8).generate(z) == noisy)
        #expect(try Sampler(model: model, noiseSeed: 9).generate(z) != noisy)
        // Each value moved by about its level's sigma (the clamp at the range's ends aside).
        var ratio: [Double] = []
        let plane = 16 * 16
        for (k, (a, b)) in zip(clean, noisy).enumerated() where abs(b) < 0.999 {
            ratio.append(Double((b - a) * (b - a)) / Double(pow(noise.sigma(channel: (k / plane) % 3, at: a), 2)))
        }
        let meanRatio = ratio.reduce(0, +) / Double(ratio.count)
        #expect(abs(meanRatio - 1) < 0.15, "noise variance over the model's: \(meanRatio)")
        try model.save(to: dir + "/m.safetensors")
        let loaded = try GANModel.load(from: dir + "/m.safetensors")
        #expect(loaded.cameraNoise == noise)
        #expect(try Sampler(model: loaded, batchSize: 2, noiseSeed: 8).generate(z) == noisy)
        try checkResume(c)
    }
}
