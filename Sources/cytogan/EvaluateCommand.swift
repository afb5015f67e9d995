import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import CytoNN
import Foundation

/// `cytogan evaluate`: how good a trained model is, in numbers.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a model: how real its generated cells look.",
        subcommands: [RealismCommand.self])
}

/// `cytogan evaluate realism`: the realism measure of a model's generated cells (or of images
/// given as files) against real crops, as one JSON line per checkpoint.
struct RealismCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realism",
        abstract: "How real generated cells look: a Frechet distance of per-cell measurements against the real-vs-real floor, and two-sample classifiers.",
        discussion: """
        Real crops of --manifest, shuffled by --seed and read through the model's own \
        preprocessing, make two sets A and B of --count each; the generated set G is --count \
        cells of the model's generator (the first ones `cytogan sample --seed` draws), or with \
        --generated the images of another manifest (e.g. blurred crops, or samples saved as \
        TIFF), read the same way. Each image gets 41 measurements (per channel: intensity \
        percentiles, radial profile, sharpness, texture; the nucleus's area, offset, \
        eccentricity, compactness, contrast). Printed on stdout, one JSON line per checkpoint: \
        frechet.distance FD(A, G) of the standardized measurements, frechet.floor FD(A, B), \
        frechet.ratio (1: G is as close to A as the other half of the real crops), \
        frechet.parts (per kind of measurement: the distance on it alone and without it), \
        classifier.accuracy of a small CNN telling A from G over --folds folds (0.5: \
        indistinguishable; null_accuracy and null_std: the same for A vs B over 3 seeds), \
        measurement_classifier.accuracy (a logistic regression on the measurements), the \
        measurements' means, per-channel sharpness (G over A) and background shift. --model \
        DIR evaluates every checkpoint-*.safetensors in it in step order. Progress goes to \
        stderr. The same seed and thread count give the same numbers.
        """)

    @Option(help: "Model checkpoint (.safetensors), or a folder of checkpoint-*.safetensors (each is evaluated, in step order).")
    var model: String
    @Option(help: "Manifest of real crops (CSV with a path column).") var manifest: String
    @Option(help: "Folder that the manifest's relative paths start from (default: the manifest's folder).") var root: String?
    @OptionGroup var manifestColumns: ManifestColumnOptions
    @Option(help: "Images per set (n): real sets A and B, generated set G.") var count: Int = RealismOptions.defaultCount
    @Option(help: "Seed of the real crops' order, the samples and the classifiers.") var seed: UInt64 = 1
    @Option(help: "Folds of the classifier two-sample tests.") var folds: Int = 4
    @Option(help: "Training epochs of the CNN classifier per fold.") var epochs: Int = RealismOptions.defaultEpochs
    @Option(help: "Threads for the engine (default: all cores).") var threads: Int?
    @Option(help: "Manifest of images to compare instead of the model's samples (a path column; paths from its own folder).")
    var generated: String?
    @Option(help: "Write every image's measurements to this CSV (step, set A/B/G, index, path, then the measurements).")
    var measurements: String?

    func validate() throws {
        if folds < 2 { throw ValidationError("--folds must be >= 2") }
        if count < max(2, folds) { throw ValidationError("--count must be >= 2 and >= --folds") }
        if epochs < 1 { throw ValidationError("--epochs must be >= 1") }
    }

    func run() throws {
        try reportingErrors {
            Engine.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let checkpoints = try modelFiles()
            let source = try StreamingManifest(path: manifest, root: root, columns: try manifestColumns.columns(), log: { stderrLine($0) })
            let generatedSource = try generated.map { try StreamingManifest(path: $0, log: { stderrLine($0) }) }
            let options = RealismOptions(count: count, seed: seed, folds: folds, epochs: epochs)
            let bar = ProgressBar()
            let units = options.units
            let total = Double(units.reference + checkpoints.count * units.comparison)
            let monitor = RealismMonitor(log: { bar.log($0) }, progress: { done, message in
                bar.update("realism", fraction: Double(done) / total, detail: message)
            })
            var reference: RealismReference?
            var referencePreprocessing: Preprocessing?
            var files: RealismImages?
            var table: CSVWriter?
            for path in checkpoints {
                let m = try GANModel.load(from: path)
                let pre = try RealismData.preprocessing(of: m.config, source: source, log: { bar.log($0) })
                if reference == nil || pre != referencePreprocessing {
                    var n = count
                    if let generatedSource, let generated {
                        let g = try RealismData.read(generatedSource, origin: generated, preprocessing: pre, limit: count, seed: seed,
                                                     purpose: "realism-generated", monitor: monitor)
                        if g.count < n { bar.log("\(generated): \(g.count) usable image(s): n = \(g.count)") }
                        n = min(n, g.count)
                        files = g
                    }
                    let real = try RealismData.read(source, origin: manifest, preprocessing: pre, limit: 2 * n, seed: seed,
                                                    purpose: "realism-real", monitor: monitor)
                    if real.count < 2 * n { bar.log("\(manifest): \(real.count) usable crop(s): n = \(real.count / 2)") }
                    var o = options
                    o.count = max(real.count / 2, 1)
                    reference = try RealismReference(real: real, options: o, monitor: monitor)
                    referencePreprocessing = pre
                }
                let ref = reference!
                let g = try files ?? RealismData.samples(of: m, count: ref.count, seed: seed, monitor: monitor)
                let report = try ref.compare(g, monitor: monitor)
                if let measurements {
                    if table == nil { table = try CSVWriter(path: measurements, header: ["step", "set", "index", "path"] + ref.names) }
                    let d = ref.names.count
                    for (set, images, values) in [("A", ref.a, ref.measurementsA), ("B", ref.b, ref.measurementsB),
                                                  ("G", report.generated, report.generatedMeasurements)] {
                        for i in 0..<ref.count {
                            try table!.write([String(m.step), set, String(i), images.names[i]] + values[(i * d)..<((i + 1) * d)].map { "\($0)" })
                        }
                    }
                }
                bar.finish()
                writeStdout(report.json(step: m.step).serialized + "\n")
            }
            try table?.finish()
        }
    }

    /// The checkpoint given, or every checkpoint of the folder given, oldest step first.
    func modelFiles() throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory) else {
            throw CytoError(.fileNotFound, "no such checkpoint or folder (--model)", path: model)
        }
        guard isDirectory.boolValue else { return [model] }
        let list = CheckpointDirectory(path: model).list()
        guard !list.isEmpty else { throw CytoError(.fileNotFound, "no checkpoint-*.safetensors in the folder (--model)", path: model) }
        return list.map(\.path)
    }
}
