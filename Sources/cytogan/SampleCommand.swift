import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import CytoNN
import Foundation

/// `cytogan sample`: generated cells from seeds or saved noise vectors, interpolations and noise
/// algebra, as 16-bit TIFFs, PNG montages and the vectors used (.npy, reusable with --vectors).
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Generate cells: samples, interpolations (linear, slerp) and noise algebra a - b + c.",
        discussion: """
        Vectors come from --vectors z.npy (n x latent; e.g. from `cytogan encode`, so real cells \
        work too) or are drawn from --seed (--count of them). --interpolate A,B walks from vector A \
        to vector B (row numbers) in --steps images; --algebra A,B,C makes A - B + C. Both are \
        repeatable, one montage row each. Without them, every vector is drawn. Written to --out: \
        sample-*.tif + samples.png + samples-z.npy, interp-<k>-*.tif + interpolation.png + \
        interpolation-z.npy, algebra-<k>-*.tif (a, b, c, result) + algebra.png + algebra-z.npy.
        """)

    @Option(help: "Model checkpoint (.safetensors).") var model: String
    @Option(help: "Vectors to draw when no --vectors are given.") var count: Int = 16
    @Option(help: "Seed of the drawn vectors.") var seed: UInt64 = 1
    @Option(help: "Noise vectors (.npy, n x latent) instead of drawing them.") var vectors: String?
    @Option(help: "A,B: interpolate from vector A to vector B (row numbers; repeatable).") var interpolate: [String] = []
    @Option(help: "Images per interpolation, ends included.") var steps: Int = 8
    @Option(help: "Interpolation path: a straight line, or a great circle (slerp).") var mode: InterpolationMode = .slerp
    @Option(help: "A,B,C: the vector A - B + C (row numbers; repeatable).") var algebra: [String] = []
    @Option(help: "Montage columns for samples.") var columns: Int = 8
    @Option(help: "Output folder.") var out: String
    @Option(help: "Threads for the engine (default: all cores).") var threads: Int?
    @Option(help: "Units of the TIFFs: model (-1..1 as 0..65535) or crops (the training crops' intensities, through the inverse of the model's normalization).")
    var units: SampleUnits = .model
    @Flag(name: .customLong("current-generator"), help: "Draw with the generator as it was at the checkpoint's step, not the moving average of its weights the model keeps (for comparison).")
    var currentGenerator = false

    func validate() throws {
        if count < 1 { throw ValidationError("--count must be >= 1") }
        if steps < 2 { throw ValidationError("--steps must be >= 2") }
        if columns < 1 { throw ValidationError("--columns must be >= 1") }
    }

    func run() throws {
        try reportingErrors {
            Engine.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let m = try GANModel.load(from: model)
            let a = m.config.architecture, latent = a.latent
            let z = try vectors.map { try SampleImages.readVectors($0, latent: latent) } ?? NoiseSpace.draw(count: count, latent: latent, seed: seed)
            let n = z.count / latent
            func row(_ i: Int) -> [Float] { Array(z[(i * latent)..<((i + 1) * latent)]) }
            func indexes(_ text: String, _ k: Int, _ option: String) throws -> [Int] {
                let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard parts.count == k, parts.allSatisfy({ $0 != nil && $0! >= 0 && $0! < n }) else {
                    throw ValidationError("\(option) '\(text)' needs \(k) row numbers in 0..<\(n) (the vectors available)")
                }
                return parts.map { $0! }
            }
            let pairs = try interpolate.map { try indexes($0, 2, "--interpolate") }
            let triples = try algebra.map { try indexes($0, 3, "--algebra") }
            let sampler = Sampler(model: m, averaged: !currentGenerator)
            let cropUnits = units == .crops ? m.config.preprocessing : nil
            try cropUnits?.checkInvertible()
            try makeDirectories(out)
            var written: [String: JSON] = ["vectors": JSON(n)]

            if pairs.isEmpty && triples.isEmpty {
                let images = try sampler.generate(z)
                try SampleImages.writeTIFFs(images, count: n, channels: a.channels, size: a.size, directory: out, prefix: "sample-", cropUnits: cropUnits)
                let rows = stride(from: 0, to: n, by: columns).map { Array($0..<min($0 + columns, n)) }
                try SampleImages.writeMontage(images, rows: rows, channels: a.channels, size: a.size, to: out + "/samples.png")
                try SampleImages.writeVectors(z, width: latent, to: out + "/samples-z.npy")
                written["samples"] = JSON(n)
            }
            if !pairs.isEmpty {
                var path: [Float] = []
                for p in pairs { for v in try NoiseSpace.interpolate(row(p[0]), row(p[1]), steps: steps, mode: mode) { path += v } }
                let images = try sampler.generate(path)
                for k in pairs.indices {
                    let slice = Array(images[(k * steps * sampler.imageCount)..<((k + 1) * steps * sampler.imageCount)])
                    try SampleImages.writeTIFFs(slice, count: steps, channels: a.channels, size: a.size, directory: out, prefix: "interp-\(k)-", cropUnits: cropUnits)
                }
                let rows = pairs.indices.map { k in Array((k * steps)..<((k + 1) * steps)) }
                try SampleImages.writeMontage(images, rows: rows, channels: a.channels, size: a.size, to: out + "/interpolation.png")
                try SampleImages.writeVectors(path, width: latent, to: out + "/interpolation-z.npy")
                written["interpolations"] = JSON(pairs.count)
            }
            if !triples.isEmpty {
                var all: [Float] = []
                for t in triples { all += row(t[0]) + row(t[1]) + row(t[2]) + (try NoiseSpace.algebra(row(t[0]), minus: row(t[1]), plus: row(t[2]))) }
                let images = try sampler.generate(all)
                for k in triples.indices {
                    let slice = Array(images[(k * 4 * sampler.imageCount)..<((k + 1) * 4 * sampler.imageCount)])
                    try SampleImages.writeTIFFs(slice, count: 4, channels: a.channels, size: a.size, directory: out, prefix: "algebra-\(k)-", cropUnits: cropUnits)
                }
                let rows = triples.indices.map { k in Array((k * 4)..<((k + 1) * 4)) }
                try SampleImages.writeMontage(images, rows: rows, channels: a.channels, size: a.size, to: out + "/algebra.png")
                try SampleImages.writeVectors(all, width: latent, to: out + "/algebra-z.npy")
                written["algebra"] = JSON(triples.count)
            }
            written["out"] = .string(out)
            stderrLine("wrote \(out) (model step \(m.step))")
            print(JSON.object(written).serialized)
        }
    }
}

/// The units `cytogan sample` writes its TIFFs in.
enum SampleUnits: String, ExpressibleByArgument, CaseIterable {
    /// The model's own range, -1...1 stretched over 0...65535.
    case model
    /// The training crops' intensities (the inverse of the model's normalization).
    case crops
}
