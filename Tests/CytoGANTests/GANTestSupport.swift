import CellImage
import CytoCore
import CytoNN
import Foundation
import Testing
@testable import CytoGAN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Small fixtures for the GAN tests: a tiny configuration (16 x 16 x 3, a few filters) and
/// folders of synthetic 16-bit crops with a manifest.
enum Fixture {
    /// A configuration small enough for many training steps in a test.
    static func tinyConfig(loss: GANLoss = .lsgan, seed: UInt64 = 5, augmentation: Augmentation = .dihedral,
                           criticSteps: Int = 1, batch: Int = 4) -> GANConfig {
        let arch = DCGANArchitecture(size: 16, channels: 3, latent: 8, generatorWidths: [16, 8, 4],
                                     discriminatorWidths: [4, 8, 8], discriminatorStrides: [1, 2, 2], representation: 6)
        return GANConfig(name: "tiny", architecture: arch, loss: loss, discriminatorRate: .paper(1e-3), generatorRate: .paper(1e-3),
                         batchSize: batch, criticSteps: criticSteps,
                         preprocessing: Preprocessing(size: 16, channels: 3, normalization: .perCropMax, resize: .resample),
                         augmentation: augmentation, seed: seed)
    }

    static func tempDir(_ tag: String) throws -> String {
        let d = NSTemporaryDirectory() + "cytogan-gan-tests-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try makeDirectories(d)
        return d
    }

    /// Writes `count` 3-channel uint16 crops of `side` x `side` (a blob at a seeded position) as
    /// TIFFs under `dir`/crops and returns their paths relative to `dir`.
    static func writeCrops(in dir: String, count: Int, side: Int = 18, seed: UInt64 = 3) throws -> [String] {
        try makeDirectories(dir + "/crops")
        var rng = RandomStream(seed: seed, purpose: "fixture")
        var paths: [String] = []
        for i in 0..<count {
            var v = [UInt16](repeating: 0, count: 3 * side * side)
            let cx = 4 + Double(rng.uniformFloat()) * Double(side - 8), cy = 4 + Double(rng.uniformFloat()) * Double(side - 8)
            for c in 0..<3 {
                let r = 2.0 + Double(c) + Double(rng.uniformFloat()) * 2
                for y in 0..<side {
                    for x in 0..<side {
                        let d2 = (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy)
                        v[(c * side + y) * side + x] = UInt16(min(65535, 200 + 3000 * exp(-d2 / (2 * r * r)) + Double(rng.below(100))))
                    }
                }
            }
            let bytes = v.withUnsafeBytes { Array($0) }
            let im = PixelImage(width: side, height: side, channels: 3, sampleType: .uint16, storage: bytes)
            let rel = "crops/c\(i).tif"
            try ImageWriter.writeTIFF(im, to: dir + "/" + rel)
            paths.append(rel)
        }
        return paths
    }

    /// A manifest at `dir`/crops.csv for `paths` with plate and compound metadata.
    static func writeManifest(in dir: String, paths: [String], extraLines: [String] = []) throws -> String {
        var text = "path,Metadata_Plate,Metadata_Compound,Metadata_Index\n"
        for (i, p) in paths.enumerated() { text += "\(p),P\(i % 2),\(i % 3 == 0 ? "DMSO" : "X"),\(i)\n" }
        for l in extraLines { text += l + "\n" }
        let path = dir + "/crops.csv"
        try AtomicFile.write(Array(text.utf8), to: path)
        return path
    }

    /// `steps` training steps of `config` on seeded batches (one thread), checking the moving
    /// average that `average` reads against one kept here in Double from `network`'s weights after
    /// every update (decay 0 while `rampup` t <= 1, else min(`decay`, 1 - 1/(`rampup` t))).
    /// Returns the model, the average's tensors by name, and the batch tensor with its stream for
    /// further draws.
    static func trainCheckingAverage(_ config: GANConfig, decay: Double, rampup: Double = 1, steps: Int = 6,
                                     network: (GANModel) -> Network, average: (GANModel) -> WeightAverage?) throws
        -> (model: GANModel, tensors: [String: Tensor], real: Tensor, rng: RandomStream) {
        Engine.setThreads(1)
        let model = try GANModel(config: config)
        var rng = RandomStream(seed: 4, purpose: "test-batch")
        let a = config.architecture
        let real = Tensor(Shape(4, a.channels, a.size, a.size))
        var expected: [String: [Double]] = [:]
        for t in 1...steps {
            rng.fillNormal(real.buffer, std: 0.5)
            _ = try model.trainingStep.step(real: real)
            let horizon = rampup * Double(t)
            let d = horizon <= 1 ? 0 : min(decay, 1 - 1 / horizon)
            for (name, tensor) in network(model).namedTensors {
                let now = tensor.values.map(Double.init)
                expected[name] = zip(expected[name] ?? now, now).map { d * $0 + (1 - d) * $1 }
            }
        }
        var tensors: [String: Tensor] = [:]
        for (name, tensor) in try #require(average(model)).average.namedTensors {
            let e = expected[name]!
            #expect(zip(tensor.values, e).allSatisfy { abs(Double($0) - $1) <= 1e-6 * max(1, abs($1)) }, "\(name)")
            tensors[name] = tensor
        }
        return (model, tensors, real, rng)
    }

    /// Bit patterns of every tensor of a model's checkpoint, by name.
    static func bits(_ model: GANModel) -> [String: [UInt32]] {
        Dictionary(uniqueKeysWithValues: model.namedTensors.map { ($0.name, $0.tensor.values.map(\.bitPattern)) })
    }
}
