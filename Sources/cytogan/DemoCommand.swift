import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import CytoNN
import Foundation
import Profiling

/// `cytogan demo`: the whole job on built-in data. Generates the synthetic screen, trains the small
/// LSGAN on it, extracts features (trained discriminator, the same discriminator untrained, and
/// intensity/shape measurements), profiles and scores them by MOA, and writes a report folder.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole job on the built-in synthetic screen and write an HTML report.",
        discussion: """
            Steps: synthesize a screen (cytogan synth), train a GAN on its crops, extract per-cell \
            features, aggregate to wells, normalize to each plate's DMSO wells, aggregate to \
            treatments and score NSC, NSCB, per-compound accuracy and mAP against baselines; then \
            draw generated cells, interpolations and noise algebra. Open OUT/index.html.
            """)

    @Option(help: "Report folder.") var out: String = "demo-report"
    @Option(help: "Training budget in minutes.") var minutes: Double = 4
    @Option(help: "Training steps (instead of --minutes).") var steps: Int?
    @Option(help: "GAN preset to train: cells-64, the recipe for realistic generated cells on a CPU budget; cpu-64, the recipe for features (examples/cpu-recipe); or small-64.") var preset: String = "cells-64"
    @Option(help: "The GAN objective.") var loss: GANLoss = .lsgan
    @Option(help: "Cells per well of the synthetic screen.") var cellsPerWell: Int = 16
    @Option(help: "Threads (OpenBLAS and crop writing).") var threads: Int = 2
    @Option(help: "Random seed of the screen and the model.") var seed: UInt64 = 1

    func run() throws {
        guard minutes > 0 || steps != nil else { throw ValidationError("--minutes must be positive") }
        try reportingErrors {
            let demo = Demo(out: out, threads: max(1, threads), seed: seed, cellsPerWell: cellsPerWell)
            try demo.run(preset: preset, loss: loss, minutes: steps == nil ? minutes : nil, steps: steps)
        }
    }
}

/// The demo's pipeline, step by step; each step's output lands in the report folder.
final class Demo {
    let out: String
    let threads: Int
    let seed: UInt64
    let cellsPerWell: Int
    let progress = ProgressBar()
    var timings: [(String, Double)] = []

    init(out: String, threads: Int, seed: UInt64, cellsPerWell: Int) {
        self.out = out; self.threads = threads; self.seed = seed; self.cellsPerWell = cellsPerWell
    }

    /// Times one step for the report.
    func timed<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        let t0 = Date()
        let r = try body()
        let s = Date().timeIntervalSince(t0)
        timings.append((name, s))
        progress.log(String(format: "demo: %@ (%.1f s)", name, s))
        return r
    }

    func run(preset: String, loss: GANLoss, minutes: Double?, steps: Int?) throws {
        let started = Date()
        Engine.setThreads(threads)
        try makeDirectories(out)
        let data = "\(out)/data"

        // 1. The synthetic screen.
        var synth = SynthConfig()
        synth.seed = seed
        synth.cellsPerWell = cellsPerWell
        let cropCount = try timed("synthesize screen") {
            progress.update("synthesize", fraction: 0)
            return try SynthWriter.write(config: synth, to: data, threads: threads)
        }
        let screen = try SynthScreen(config: synth)
        let manifest = try StreamingManifest(path: "\(data)/crops.csv")

        // 2. Train.
        let model = try GANModel(config: try GANConfig.preset(preset, loss: loss, seed: seed))
        var curve: [(step: Int, d: Float, g: Float)] = []
        let summary = try timed("train \(preset) \(loss.rawValue)") { () throws -> Trainer.Summary in
            var opts = Trainer.Options(steps: steps, minutes: minutes, progressInterval: 2)
            opts.checkpointDirectory = "\(out)/checkpoints"
            opts.keep = 1
            let trainer = Trainer(model: model, source: manifest, options: opts, log: { [progress] in progress.log("train: \($0)") })
            let words = ProgressDisplay(mode: .none)
            trainer.onProgress = { [progress] p in
                curve.append((p.step, p.discriminatorLoss, p.generatorLoss))
                progress.update("train", fraction: ProgressDisplay.fraction(p), detail: words.text(p))
            }
            return try trainer.run()
        }
        try model.save(to: "\(out)/model.safetensors")
        // The untrained twin: same seed, so the trained model's initial weights, and the same
        // preprocessing (a dataset scale estimated by the trainer included).
        let config = model.config
        let untrained = try GANModel(config: config)

        // 3. Features for every crop: trained D, untrained D, intensity and shape measurements.
        let loader = CropLoader(preprocessing: config.preprocessing)
        let metadataColumns = manifest.metadataNames
        var metadata: [[String]] = []
        for i in 0..<manifest.count { metadata.append(try manifest.metadata(at: i)) }
        let specs = try (0..<manifest.count).map { try manifest.spec(at: $0) }
        let trainedTable = try timed("extract trained features") {
            try ganFeatures(FeatureExtractor(model: model), specs: specs, loader: loader, metadata: metadata,
                            columns: metadataColumns, stage: "features (trained)")
        }
        let untrainedTable = try timed("extract untrained features") {
            try ganFeatures(FeatureExtractor(model: untrained), specs: specs, loader: loader, metadata: metadata,
                            columns: metadataColumns, stage: "features (untrained)")
        }
        let intensityTable = try timed("measure intensity and shape") {
            try measuredFeatures(specs: specs, loader: loader, metadata: metadata, columns: metadataColumns)
        }

        // 4. Profiles and scores.
        var results: [DemoResult] = []
        try timed("profile and score") {
            for (name, file, table) in [("GAN discriminator, trained", "features-trained.csv", trainedTable),
                                        ("GAN discriminator, untrained", "features-untrained.csv", untrainedTable),
                                        ("Intensity and shape measurements", "features-intensity.csv", intensityTable)] {
                try FeatureRowWriter.write(table, to: "\(out)/\(file)")
                let wells = try aggregate(table, by: ["Metadata_Plate", "Metadata_Well"], method: .mean).table
                let report = try runMOAProtocol(wells: wells, options: MOAOptions())
                let crops = try evaluateCrops(table, options: CropEvaluationOptions())
                results.append(DemoResult(name: name, features: table.featureCount, report: report, crops: crops))
            }
        }

        // 5. How real the generated cells look: measurements and a CNN, real crops against samples.
        let realism = try timed("measure realism") { () throws -> RealismReport in
            var options = RealismOptions(count: min(256, manifest.count / 3), seed: seed, folds: 4, epochs: 3)
            let total = Double(options.units.reference + options.units.comparison)
            let monitor = RealismMonitor(log: { [progress] in progress.log("realism: \($0)") },
                                         progress: { [progress] done, _ in progress.update("realism", fraction: min(1, Double(done) / total)) })
            let real = try RealismData.read(manifest, origin: "\(data)/crops.csv", preprocessing: config.preprocessing,
                                            limit: 2 * options.count, seed: seed, purpose: "realism-real", monitor: monitor)
            options.count = real.count / 2
            let reference = try RealismReference(real: real, options: options, monitor: monitor)
            return try reference.compare(try RealismData.samples(of: model, count: reference.count, seed: seed, monitor: monitor), monitor: monitor)
        }

        // 6. Pictures: real crops, samples, interpolations, encoding real cells and algebra.
        let pictures = try timed("draw cells") {
            try DemoPictures(model: model, loader: loader, screen: screen, manifest: manifest, specs: specs, out: out, seed: seed).draw()
        }

        // 7. The report.
        let report = DemoReport(results: results, pictures: pictures, curve: curve, summary: summary, config: config,
                                crops: cropCount, synth: synth, timings: timings, totalSeconds: Date().timeIntervalSince(started),
                                realism: realism)
        try report.write(to: out)
        progress.log(report.consoleSummary)
        progress.log("demo: report at \(out)/index.html")
    }

    /// Per-cell discriminator features as a table with the manifest's metadata.
    func ganFeatures(_ extractor: FeatureExtractor, specs: [CropSpec], loader: CropLoader, metadata: [[String]],
                     columns: [String], stage: String) throws -> ProfileTable {
        var table = ProfileTable(metadataColumns: columns, featureNames: extractor.names)
        let batch = 256
        var start = 0
        while start < specs.count {
            let end = min(start + batch, specs.count)
            let rows = try extractor.extract(specs: Array(specs[start..<end]), loader: loader)
            for (k, e) in rows.errors.enumerated() { if let e { throw e.at(index: start + k) } }
            for k in 0..<(end - start) {
                table.append(metadata: metadata[start + k], features: Array(rows.features[(k * extractor.count)..<((k + 1) * extractor.count)]),
                             line: start + k + 2)
            }
            start = end
            progress.update(stage, fraction: Double(start) / Double(specs.count))
        }
        return table
    }

    /// Per-cell intensity (per channel: mean, std, max, 90th percentile) and shape measurements.
    func measuredFeatures(specs: [CropSpec], loader: CropLoader, metadata: [[String]], columns: [String]) throws -> ProfileTable {
        var table = ProfileTable(metadataColumns: columns, featureNames: CellFeatures.names(channelNames: ["DNA", "Tubulin", "Actin"]))
        for (i, spec) in specs.enumerated() {
            let raw = try loader.raw(spec)
            table.append(metadata: metadata[i], features: CellFeatures.compute(raw), line: i + 2)
            if i % 200 == 0 { progress.update("measure", fraction: Double(i) / Double(specs.count)) }
        }
        progress.update("measure", fraction: 1)
        return table
    }
}

/// One feature set's scores.
struct DemoResult {
    var name: String
    var features: Int
    var report: MOAReport
    var crops: CropEvaluation
}
