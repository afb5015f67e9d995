import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import CytoNN
import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `cytogan train`: trains a GAN on the crops of a manifest, with progress, checkpoints and
/// exact resume.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a DCGAN, LSGAN or WGAN-GP on single-cell crops (checkpoints, exact resume).",
        discussion: """
        Crops stream from disk in a seeded shuffled order (a new one each epoch), decoded and \
        augmented in a background thread. Unreadable crops are skipped and named on stderr. \
        Progress goes to stderr (a bar on a terminal, plain lines otherwise). Checkpoints are \
        safetensors files in --checkpoint-dir, written every --checkpoint-every steps and/or \
        --checkpoint-minutes, on SIGINT/SIGTERM/SIGUSR1 (then the run exits) and at the end; the newest \
        --keep are kept. --resume continues a checkpoint exactly: N steps, resume, N steps gives \
        the weights of 2N steps in one run (one thread). A JSON summary is printed on stdout. \
        Started by mpirun or srun as several processes, it trains data-parallel: each process \
        takes an equal slice of every batch (--batch-size stays the global batch), BatchNorm \
        statistics and gradients are summed over the processes, and rank 0 alone prints and \
        writes checkpoints, which resume with any number of processes.
        """)

    @Option(help: "Crop manifest (CSV with a path column and Metadata_* columns).") var manifest: String
    @Option(help: "Folder that relative paths start from (default: the manifest's folder).") var root: String?
    @OptionGroup var manifestColumns: ManifestColumnOptions
    @Option(help: "Configuration preset: \(GANConfig.presetNames.joined(separator: ", ")).") var preset: String?
    @Option(help: "A GANConfig JSON file (instead of a preset).") var config: String?
    @Option(help: "The GAN objective (sets the paper's learning rates for it).") var loss: GANLoss?
    @Option(help: "Random seed of the run (weights, noise, order, augmentation).") var seed: UInt64?
    @Option(name: .customLong("batch-size"), help: "Crops per batch.") var batchSize: Int?
    @Option(name: .customLong("critic-steps"), help: "WGAN-GP: discriminator updates per generator update.") var criticSteps: Int?
    @Option(help: "Normalization: per_crop_max, bit_depth[:BITS], fixed_scale:A,B,C, percentile:LO,HI, dataset[:P] (a per-channel scale estimated from the crops: their P-th percentile, default 99.9), or JSON.") var normalization: String?
    @Option(help: "Intensity transfer after the normalization: linear, or sqrt:C (a square root with offset C that spreads the dark end; cells-64: sqrt:0.04).") var transfer: String?
    @Option(help: "How crops reach the model size.") var resize: ResizeMode?
    @Option(help: "Augmentation: flips, quarter-turn rotations, or dihedral (both).") var augment: AugmentOption?
    @Option(name: .customLong("feature-layer"), help: "Features stored with the model: representation, pooled, pooled-max, pooled-std, pool:LAYER, max:LAYER, std:LAYER, a layer name, or a comma list; suffix @dihedral averages over the crop's 8 mirrors and quarter turns.")
    var featureLayer: String?
    @Option(name: .customLong("discriminator-average"), help: "Keep a moving average of the discriminator's weights with this decay (e.g. 0.999) and read features from it; 'none' to keep none.")
    var discriminatorAverage: String?
    @Option(name: .customLong("generator-average"), help: "Keep a moving average of the generator's weights with this decay (e.g. 0.999) and generate every image from it; 'none' to keep none.")
    var generatorAverage: String?
    @Option(name: .customLong("texture-matching"), help: "Weight of the loss term that asks the generator for the real crops' finest texture (cells-64: 1; 0: none).")
    var textureMatching: Float?
    @Option(name: .customLong("tail-matching"), help: "Weight of the loss term that asks the generator for cells as bright as the real crops' brightest, rank by rank over the batch (cells-64: 1; 0: none).")
    var tailMatching: Float?
    @Flag(inversion: .prefixedNo, help: "Spectral normalization of the discriminator's weights (on or off; default: the preset's).")
    var spectralNorm: Bool?
    @Option(name: .customLong("output-gradient-floor"), help: "Share of the gradient the generator's output tanh passes at least where it points back into the range, so saturated pixels can leave (cells-64: 0.1; 0: the exact derivative).")
    var outputGradientFloor: Float?
    @Option(help: "Generator steps to run.") var steps: Int?
    @Option(help: "Minutes to run (with --steps: whichever comes first).") var minutes: Double?
    @Option(name: .customLong("checkpoint-dir"), help: "Folder of checkpoints.") var checkpointDir: String = "checkpoints"
    @Option(name: .customLong("checkpoint-every"), help: "Checkpoint every N steps.") var checkpointEvery: Int?
    @Option(name: .customLong("checkpoint-minutes"), help: "Checkpoint every M minutes.") var checkpointMinutes: Double?
    @Option(help: "Checkpoints kept (the newest).") var keep: Int = 3
    @Option(help: "Continue from a checkpoint file, or the newest in a folder (its configuration is used).") var resume: String?
    @Option(help: "Threads for the engine (default: all cores).") var threads: Int?
    @Option(name: .customLong("log-csv"), help: "Append step, losses and speed to this CSV every --log-every steps.") var logCSV: String?
    @Option(name: .customLong("log-every"), help: "Steps between --log-csv rows.") var logEvery: Int = 10
    @Option(help: "Progress display (auto: a bar on a terminal, lines otherwise).") var progress: ProgressOption = .auto
    @Flag(name: .customLong("fixed-batch"), help: "Train on the first batch over and over without loading data: the engine's own speed, to compare with a normal run.")
    var fixedBatch = false

    /// A moving average's decay as given on the command line: a number, or 'none' for no average.
    static func decay(_ text: String, option: String) throws -> Float? {
        if text == "none" { return nil }
        guard let d = Float(text) else { throw ValidationError("\(option) takes a decay or 'none'") }
        return d
    }

    /// Options that change a preset's training recipe (its name then gains "+custom").
    var overridesPreset: Bool {
        batchSize != nil || criticSteps != nil || normalization != nil || transfer != nil || resize != nil || augment != nil
            || discriminatorAverage != nil || generatorAverage != nil || textureMatching != nil || tailMatching != nil
            || spectralNorm != nil || outputGradientFloor != nil
    }

    func validate() throws {
        if let steps, steps < 0 { throw ValidationError("--steps must be >= 0") }
        if let minutes, !(minutes > 0) { throw ValidationError("--minutes must be > 0") }
        if steps == nil && minutes == nil { throw ValidationError("give --steps N and/or --minutes M") }
        if keep < 1 { throw ValidationError("--keep must be >= 1") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be >= 1") }
        if logEvery < 1 { throw ValidationError("--log-every must be >= 1") }
        if preset != nil && config != nil { throw ValidationError("give --preset or --config, not both") }
        if resume != nil, preset != nil || config != nil || loss != nil || seed != nil || featureLayer != nil || overridesPreset {
            throw ValidationError("--resume continues a checkpoint with its own configuration: drop --preset, --config, --loss, --seed and the other model options")
        }
    }

    /// The configuration from the preset or file, with the command-line overrides applied.
    func makeConfig() throws -> GANConfig {
        var c: GANConfig
        if let config {
            let text = String(decoding: try readFileBytes(config), as: UTF8.self)
            do { c = try GANConfig(json: try JSON.parse(text)) } catch var e as CytoError { e.path = config; throw e }
            if let l = loss, l != c.loss {
                let (d, g) = GANConfig.paperRates(l)
                c.loss = l
                c.discriminatorRate.base = d; c.generatorRate.base = g
            }
        } else {
            c = try GANConfig.preset(preset ?? "small-64", loss: loss ?? .lsgan)
        }
        if let seed { c.seed = seed }
        if let batchSize { c.batchSize = batchSize }
        if let criticSteps { c.criticSteps = criticSteps }
        if let normalization {
            if normalization == "dataset" || normalization.hasPrefix("dataset:") {
                let p = normalization == "dataset" ? "99.9" : String(normalization.dropFirst(8))
                guard let v = Double(p) else { throw ValidationError("--normalization dataset:P needs a number P") }
                c.datasetScalePercentile = v
                if !c.needsDatasetScale { c.preprocessing.normalization = .perCropMax }
            } else {
                c.preprocessing.normalization = try parseNormalization(normalization)
                c.datasetScalePercentile = nil
                c.datasetFloorPercentile = nil
            }
        }
        if let transfer { c.preprocessing.transfer = try parseTransfer(transfer) }
        if let resize { c.preprocessing.resize = resize }
        if let augment { c.augmentation = augment.augmentation }
        if let featureLayer { c.featureLayer = try FeatureLayer(parsing: featureLayer) }
        // Decay ranges are checked with the rest of the config below.
        if let discriminatorAverage { c.discriminatorAverage = try TrainCommand.decay(discriminatorAverage, option: "--discriminator-average") }
        if let generatorAverage { c.generatorAverage = try TrainCommand.decay(generatorAverage, option: "--generator-average") }
        if let textureMatching { c.textureMatching = textureMatching }
        if let tailMatching { c.tailMatching = tailMatching }
        if let spectralNorm { c.spectralNorm = spectralNorm }
        if let outputGradientFloor { c.outputGradientFloor = outputGradientFloor }
        if c.name != "custom" && overridesPreset {
            c.name += "+custom"
        }
        try c.validate()
        return c
    }

    func run() throws {
        // Several processes started by mpirun or srun train one model together.
        var mpi: MPICollective? = nil
        let env = ProcessInfo.processInfo.environment
        if !MPICollective.launchedByMPI, let n = env["SLURM_STEP_NUM_TASKS"].flatMap({ Int($0) }), n > 1 {
            // Several srun tasks without PMI would each train alone and write the same checkpoints.
            stderrLine("cytogan: error: started by srun as one of \(n) tasks without MPI process management: run srun --mpi=pmix (or pmi2), or one task")
            throw ExitCode(1)
        }
        if MPICollective.launchedByMPI {
            do { mpi = try MPICollective.start() } catch let e as CytoError {
                stderrLine("cytogan: error: \(e.description)")
                throw ExitCode(1)
            }
        }
        let group = (mpi?.size ?? 1) > 1 ? mpi : nil
        do {
            try reportingErrors { try train(group) }
        } catch {
            // One failed process must not leave the others waiting in a collective.
            if let group {
                stderrLine("cytogan: error: process \(group.rank) of \(group.size) failed: ending every process of the job")
                group.abort(1)
            }
            throw error
        }
        mpi?.finish()
    }

    /// Processes of the job on this machine (from the launcher's environment), to share its cores.
    static var processesOnThisNode: Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE", "PMIX_LOCAL_SIZE"] {
            if let v = env[key], let n = Int(v), n > 0 { return n }
        }
        return 1
    }

    func train(_ group: MPICollective?) throws {
        do {
            let rank = group?.rank ?? 0
            // Other ranks than 0 print errors only.
            let stderrLine: (String) -> Void = rank == 0 ? { cytogan.stderrLine($0) } : { _ in }
            let cores = ProcessInfo.processInfo.activeProcessorCount
            Engine.setThreads(threads ?? max(1, group == nil ? cores : cores / TrainCommand.processesOnThisNode))
            let model: GANModel
            if let resume {
                var isDir: ObjCBool = false
                var file = resume
                if FileManager.default.fileExists(atPath: resume, isDirectory: &isDir), isDir.boolValue {
                    guard let latest = CheckpointDirectory(path: resume).latest else {
                        throw CytoError(.fileNotFound, "no checkpoint-*.safetensors in the folder", path: resume)
                    }
                    file = latest
                }
                model = try GANModel.load(from: file)
                stderrLine("resuming \(file) at step \(model.step), epoch \(model.cursor.epoch), position \(model.cursor.position)")
            } else {
                model = try GANModel(config: try makeConfig())
            }
            if let group {
                if fixedBatch { throw ValidationError("--fixed-batch runs in one process, not under mpirun or srun") }
                try model.trainingStep.distribute(over: group, globalBatch: model.config.batchSize)
                stderrLine("data-parallel: \(group.size) processes (\(group.library)), \(model.config.batchSize / group.size) crops each per batch of \(model.config.batchSize)")
            }
            let c = model.config
            let source = try StreamingManifest(path: manifest, root: root, columns: try manifestColumns.columns(),
                                               log: { stderrLine($0) })
            if source.skippedRowCount > 0 { stderrLine("\(source.skippedRowCount) manifest row(s) skipped") }
            stderrLine("training \(c.name): \(c.loss.rawValue), \(c.architecture.size)x\(c.architecture.size)x\(c.architecture.channels), "
                       + "batch \(c.batchSize), \(source.count) crops, \(Engine.threads) thread(s), BLAS kernels \(BLASKernels.current), convolution kernels \(Conv2D.directKernelName), "
                       + "G \(model.generator.parameterCount) / D \(model.discriminator.parameterCount) parameters")

            if fixedBatch { try runFixedBatch(model, source); return }
            let trainer = Trainer(model: model, source: source,
                                  options: Trainer.Options(steps: steps, minutes: minutes, checkpointDirectory: checkpointDir,
                                                           checkpointEverySteps: checkpointEvery, checkpointEveryMinutes: checkpointMinutes,
                                                           keep: keep, progressInterval: progressMode == .bar ? 0.5 : 10),
                                  log: { stderrLine($0) })
            let display = ProgressDisplay(mode: rank == 0 ? progressMode : .none)
            trainer.onProgress = { display.show($0) }
            trainer.onCheckpoint = { p in display.message("checkpoint \(p)") }
            var lossLog: LossLog? = nil
            if let logCSV, rank == 0 { lossLog = try LossLog(path: logCSV) }
            let started = Date()
            trainer.onStep = { step, losses in
                if step % logEvery == 0 { lossLog?.append(step: step, model: model, losses: losses, seconds: Date().timeIntervalSince(started)) }
            }
            let signals = SignalStop { signal in
                if rank == 0 { display.message("signal \(signal): checkpointing and stopping after this step") }
                trainer.requestStop()
            }
            defer { signals.cancel() }
            let summary = try trainer.run()
            display.finish()
            let p = summary.last
            stderrLine(String(format: "done: %d step(s) (%@), step %d, %.1f images/s, %.0f%% of the time waiting for data, %d crop(s) skipped",
                              summary.stepsRun, summary.reason.rawValue, summary.finalStep, summary.imagesPerSecond,
                              100 * summary.dataWaitFraction, summary.skippedCrops))
            var out: [String: JSON] = [
                "steps_run": JSON(summary.stepsRun), "step": JSON(summary.finalStep), "stop_reason": .string(summary.reason.rawValue),
                "images_per_second": .double(summary.imagesPerSecond), "elapsed_seconds": .double(summary.elapsedSeconds),
                "data_wait_fraction": .double(summary.dataWaitFraction), "skipped_crops": JSON(summary.skippedCrops),
                "skipped_manifest_rows": JSON(source.skippedRowCount), "threads": JSON(Engine.threads),
                "checkpoints": .array(summary.checkpoints.map { .string($0) }),
                "epoch": JSON(model.cursor.epoch), "position": JSON(model.cursor.position),
            ]
            if let p { out["discriminator_loss"] = .float(p.discriminatorLoss); out["generator_loss"] = .float(p.generatorLoss) }
            if let last = summary.checkpoints.last { out["checkpoint"] = .string(last) }
            if let group { out["processes"] = JSON(group.size) }
            if rank == 0 { print(JSON.object(out).serialized) }
            try lossLog?.close()
        }
    }

    /// The engine alone: one batch decoded once, then --steps training steps on it, timed.
    /// Nothing is saved (the model did not learn from real data).
    func runFixedBatch(_ model: GANModel, _ source: StreamingManifest) throws {
        try model.resolveDatasetScale(from: source, log: { stderrLine($0) })
        let c = model.config
        let loader = CropLoader(preprocessing: c.preprocessing)
        var specs: [CropSpec] = []
        var i = 0
        while specs.count < c.batchSize && i < source.count { specs.append(try source.spec(at: i)); i += 1 }
        let batch = Tensor(Shape(specs.count, c.architecture.channels, c.architecture.size, c.architecture.size))
        for e in loader.loadBatch(specs, into: batch.buffer) { if let e { throw e } }
        guard let steps else { throw ValidationError("--fixed-batch needs --steps") }
        _ = try model.trainingStep.step(real: batch)  // warm-up: buffers sized
        let t0 = Date()
        for _ in 0..<steps { _ = try model.trainingStep.step(real: batch) }
        let secs = Date().timeIntervalSince(t0)
        let ips = Double(steps * specs.count) / secs
        stderrLine(String(format: "fixed batch: %d step(s) of %d in %.2f s, %.1f images/s (engine only, no data loading)", steps, specs.count, secs, ips))
        print(JSON.object(["steps_run": JSON(steps), "batch": JSON(specs.count), "elapsed_seconds": .double(secs),
                           "images_per_second": .double(ips), "threads": JSON(Engine.threads), "fixed_batch": .bool(true)]).serialized)
    }

    var progressMode: ProgressDisplay.Mode {
        switch progress {
        case .bar: return .bar
        case .lines: return .lines
        case .none: return .none
        case .auto: return isatty(2) != 0 ? .bar : .lines
        }
    }
}

/// `--progress`: how training progress is shown on stderr.
enum ProgressOption: String, CaseIterable, ExpressibleByArgument {
    case auto, bar, lines, none
}

/// `--augment`: the flips and quarter turns applied to real crops.
enum AugmentOption: String, CaseIterable, ExpressibleByArgument {
    case none, flips, rotations, dihedral

    var augmentation: Augmentation {
        switch self {
        case .none: return .none
        case .flips: return Augmentation(flips: true)
        case .rotations: return Augmentation(rotations: true)
        case .dihedral: return .dihedral
        }
    }
}

/// An intensity transfer from its short form (linear, sqrt:C) or JSON.
func parseTransfer(_ text: String) throws -> IntensityTransfer {
    if text == "linear" { return .linear }
    if text.hasPrefix("sqrt:") {
        guard let c = Double(text.dropFirst(5)) else { throw ValidationError("--transfer sqrt:C needs a number C in (0, 100]") }
        // The offset's bounds live in one place: the transfer's own parser.
        return try IntensityTransfer(json: ["kind": "square_root", "offset": .double(c)])
    }
    if text.hasPrefix("{") { return try IntensityTransfer(json: try JSON.parse(text)) }
    throw ValidationError("--transfer must be linear, sqrt:C or JSON")
}

/// A normalization from its short form (per_crop_max, bit_depth[:BITS], fixed_scale:A,B,C,
/// percentile:LO,HI) or its JSON form.
func parseNormalization(_ text: String) throws -> Normalization {
    if text.hasPrefix("{") { return try Normalization(json: try JSON.parse(text)) }
    let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
    let numbers = try parts.count > 1 ? parseList(parts[1]).map { s -> Double in
        guard let v = Double(s), v.isFinite else { throw ValidationError("--normalization: '\(s)' is not a number") }
        return v
    } : []
    switch parts[0] {
    case "per_crop_max": return .perCropMax
    case "bit_depth": return .bitDepth(bits: numbers.first.map { Int($0) })
    case "fixed_scale":
        return try Normalization(json: ["kind": "fixed_scale", "scale": .array(numbers.map { .double($0) })])
    case "percentile":
        guard numbers.count == 2 else { throw ValidationError("--normalization percentile:LO,HI takes two numbers") }
        return try Normalization(json: ["kind": "percentile", "low": .double(numbers[0]), "high": .double(numbers[1])])
    default:
        throw ValidationError("--normalization must be per_crop_max, bit_depth[:BITS], fixed_scale:A,B,C, percentile:LO,HI or JSON")
    }
}

/// Training progress in words (step, epoch, losses, speed, ETA), drawn by a `ProgressBar`.
final class ProgressDisplay: @unchecked Sendable {
    typealias Mode = ProgressBar.Mode
    let bar: ProgressBar

    init(mode: Mode) { bar = ProgressBar(mode: mode, lineInterval: 0) }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }

    func text(_ p: Trainer.Progress) -> String {
        var s = "step \(p.step)"
        if let l = p.stepLimit { s += " (\(p.stepsThisRun)/\(l))" }
        s += " epoch \(p.epoch) \(p.datasetCount > 0 ? 100 * p.position / p.datasetCount : 0)%"
        s += String(format: "  D %.4f  G %.4f", p.discriminatorLoss, p.generatorLoss)
        if p.gradientPenalty != 0 { s += String(format: "  gp %.4f", p.gradientPenalty) }
        s += String(format: "  %.1f img/s", p.imagesPerSecond)
        if let eta = p.etaSeconds { s += "  ETA \(ProgressDisplay.duration(eta))" }
        if p.skippedCrops > 0 { s += "  skipped \(p.skippedCrops)" }
        return s
    }

    /// The share of the run done: by steps when limited by steps, else by elapsed time and ETA.
    static func fraction(_ p: Trainer.Progress) -> Double? {
        var fraction: Double? = nil
        if let l = p.stepLimit, l > 0 { fraction = Double(p.stepsThisRun) / Double(l) }
        if let eta = p.etaSeconds, p.elapsedSeconds + eta > 0 { fraction = max(fraction ?? 0, p.elapsedSeconds / (p.elapsedSeconds + eta)) }
        return fraction
    }

    func show(_ p: Trainer.Progress) {
        // Lines carry the full text without a percentage, as before; the bar adds one.
        bar.update("", fraction: bar.mode == .bar ? ProgressDisplay.fraction(p) : nil, detail: text(p))
    }

    /// A log line (always shown, also with progress off), clearing the bar first.
    func message(_ s: String) { bar.log(s) }

    func finish() { bar.finish() }
}

/// Loss curve rows appended to a CSV (header written when the file is new), flushed as they come.
final class LossLog {
    private let handle: FileHandle
    static let header = "step,epoch,position,discriminator_loss,generator_loss,gradient_penalty,elapsed_seconds"
    init(path: String) throws {
        if FileManager.default.fileExists(atPath: path) {
            // Appending rows of these columns under another header would misalign them; only the
            // header's bytes and its line end are read.
            guard let reader = FileHandle(forReadingAtPath: path) else { throw CytoError(.io, "cannot read the loss log", path: path) }
            let start = try reader.read(upToCount: LossLog.header.utf8.count + 1) ?? Data()
            try reader.close()
            guard start.isEmpty || start == Data((LossLog.header + "\n").utf8) else {
                throw CytoError(.invalidInput, "the loss log's header is not this version's (\(LossLog.header)): give a new --log-csv file", path: path, line: 1)
            }
            if start.isEmpty { try Data((LossLog.header + "\n").utf8).write(to: URL(fileURLWithPath: path)) }
        } else {
            guard FileManager.default.createFile(atPath: path, contents: Data((LossLog.header + "\n").utf8)) else {
                throw CytoError(.io, "cannot create the loss log", path: path)
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw CytoError(.io, "cannot open the loss log", path: path) }
        h.seekToEndOfFile()
        handle = h
    }
    func append(step: Int, model: GANModel, losses: Trainer.StepLosses, seconds: Double) {
        let line = "\(step),\(model.cursor.epoch),\(model.cursor.position),\(losses.discriminator),\(losses.generator),\(losses.gradientPenalty),\(String(format: "%.2f", seconds))\n"
        handle.write(Data(line.utf8))
    }
    func close() throws { try handle.close() }
}

/// SIGINT, SIGTERM and SIGUSR1 delivered to a handler on a dispatch queue (the first time); a second
/// signal ends the process at once.
final class SignalStop {
    private var sources: [DispatchSourceSignal] = []
    init(_ handler: @escaping @Sendable (Int32) -> Void) {
        let queue = DispatchQueue(label: "cytogan.signals")
        let count = SignalCounter()
        // SIGUSR1 too: mpirun passes it on to every process (it ends the job on SIGTERM).
        for sig in [SIGINT, SIGTERM, SIGUSR1] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler {
                if count.next() > 1 { stderrLine("second signal: exiting without a checkpoint"); exit(128 + sig) }
                handler(sig)
            }
            s.resume()
            sources.append(s)
        }
    }
    func cancel() {
        for s in sources { s.cancel() }
        signal(SIGINT, SIG_DFL); signal(SIGTERM, SIG_DFL); signal(SIGUSR1, SIG_DFL)
    }
}

private final class SignalCounter: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    func next() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
