import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import CytoNN
import Foundation

/// `cytogan encode`: real cells into the generator's noise space (optimizing z to reconstruct
/// each crop in pixels and discriminator features), so `cytogan sample --vectors` can
/// interpolate between, and do algebra on, real cells.
struct EncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Map real crops into noise space: z vectors, reconstructions, and a montage of originals above reconstructions.",
        discussion: """
        For each crop, Adam on z minimizes the pixel error of G(z) plus --feature-weight times the \
        relative error of the discriminator's representation, plus --prior-weight times the \
        squared distance of |z|/sqrt(latent) from 1 (the shell of Gaussian noise), from \
        --restarts random starts (the best is kept). Written to --out: z.npy (n x latent, in \
        input order), recon-*.tif, encode.png (each original above its reconstruction) and \
        errors.csv (pixel mean squared error in [-1, 1] units, relative feature error). Then e.g. \
        `cytogan sample --model M --vectors OUT/z.npy --interpolate 0,1 --out DIR`.
        """)

    @Option(help: "Model checkpoint (.safetensors).") var model: String
    @Argument(help: "Crop files (TIFF or PNG).") var crops: [String] = []
    @Option(help: "Or a crop manifest (CSV with a path column).") var manifest: String?
    @Option(help: "With --manifest: encode only the first N crops.") var limit: Int?
    @Option(help: "Output folder.") var out: String
    @Option(help: "Adam iterations.") var iterations: Int = 300
    @Option(name: .customLong("learning-rate"), help: "Adam's step size on z.") var learningRate: Float = 0.05
    @Option(name: .customLong("feature-weight"), help: "Weight of the discriminator-feature term.") var featureWeight: Float = 1
    @Option(name: .customLong("prior-weight"), help: "Weight of the noise-shell term.") var priorWeight: Float = 0.1
    @Option(help: "Random starts per crop.") var restarts: Int = 2
    @Option(help: "Seed of the starting points.") var seed: UInt64 = 1
    @Option(help: "Montage columns.") var columns: Int = 8
    @Option(help: "Threads for the engine (default: all cores).") var threads: Int?

    func validate() throws {
        if crops.isEmpty == (manifest == nil) { throw ValidationError("give crop files or --manifest (not both)") }
        if iterations < 0 || restarts < 1 || columns < 1 { throw ValidationError("--iterations >= 0, --restarts >= 1, --columns >= 1") }
        if let limit, limit < 1 { throw ValidationError("--limit must be >= 1") }
    }

    func run() throws {
        try reportingErrors {
            Engine.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let m = try GANModel.load(from: model)
            let a = m.config.architecture
            var specs: [(String, CropSpec)] = crops.map { ($0, CropSpec.file($0)) }
            if let manifest {
                let source = try StreamingManifest(path: manifest, log: { stderrLine($0) })
                for i in 0..<min(limit ?? source.count, source.count) { specs.append((source.name(at: i), try source.spec(at: i))) }
            }
            let loader = CropLoader(preprocessing: m.config.preprocessing)
            var images: [Float] = [], names: [String] = []
            for (name, spec) in specs {
                do { images += try loader.load(spec); names.append(name) } catch let e as CytoError {
                    stderrLine("skipped crop \(name): \(e.message)")
                }
            }
            guard !names.isEmpty else { throw CytoError(.invalidInput, "none of the crops could be read") }
            let n = names.count
            let encoder = try NoiseEncoder(model: m, options: .init(iterations: iterations, learningRate: learningRate, featureWeight: featureWeight,
                                                                     priorWeight: priorWeight, restarts: restarts, seed: seed))
            let t0 = Date()
            let r = try encoder.encode(images, count: n)
            try makeDirectories(out)
            try SampleImages.writeVectors(r.z, width: a.latent, to: out + "/z.npy")
            try SampleImages.writeTIFFs(r.reconstructions, count: n, channels: a.channels, size: a.size, directory: out, prefix: "recon-")
            // Montage: a row of originals above the row of their reconstructions.
            let both = images + r.reconstructions
            var rows: [[Int]] = []
            for s in stride(from: 0, to: n, by: columns) {
                let cols = Array(s..<min(s + columns, n))
                rows.append(cols)
                rows.append(cols.map { $0 + n })
            }
            try SampleImages.writeMontage(both, rows: rows, channels: a.channels, size: a.size, to: out + "/encode.png")
            let csv = try CSVWriter(path: out + "/errors.csv", header: ["index", "path", "pixel_mse", "feature_relative_error"])
            for i in 0..<n { try csv.write([String(i), names[i], shortest(r.pixelError[i]), shortest(r.featureError[i])]) }
            try csv.finish()
            let meanPixel = r.pixelError.reduce(0, +) / Float(n), meanFeature = r.featureError.reduce(0, +) / Float(n)
            stderrLine(String(format: "encoded %d crop(s) in %.1f s: pixel MSE %.4f (first iteration's loss %.4f, last %.4f), relative feature error %.4f",
                              n, Date().timeIntervalSince(t0), meanPixel, r.lossCurve.first ?? .nan, r.lossCurve.last ?? .nan, meanFeature))
            print(JSON.object(["crops": JSON(n), "out": .string(out), "mean_pixel_mse": .float(meanPixel),
                               "mean_feature_relative_error": .float(meanFeature),
                               "loss_first": .float(r.lossCurve.first ?? .nan), "loss_last": .float(r.lossCurve.last ?? .nan)]).serialized)
        }
    }
}
