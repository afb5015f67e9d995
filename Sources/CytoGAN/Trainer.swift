import CellImage
import CytoCore
import CytoNN
import Foundation

/// Trains a `GANModel` on a `CropSource`: batches from a background `BatchLoader`, the engine's
/// training step (WGAN-GP with `criticSteps` discriminator updates per generator update),
/// progress through a callback, checkpoints every N steps and/or M minutes, on request and at the
/// end, and a stop/pause hook for jobs and signals. The model's data cursor follows the batches
/// consumed, so a checkpoint resumes exactly. With a data-parallel training step every process
/// runs a Trainer: they read their slices of the same batches, stop after the same step (a stop
/// request or the time limit on any process stops all), and rank 0 alone writes checkpoints.
public final class Trainer: @unchecked Sendable {
    /// When to stop and when to checkpoint.
    public struct Options: Sendable {
        /// Generator steps to run in this call (nil: no step limit).
        public var steps: Int?
        /// Wall-clock budget in minutes (nil: none).
        public var minutes: Double?
        /// Where numbered checkpoints go (nil: no checkpoints).
        public var checkpointDirectory: String?
        public var checkpointEverySteps: Int?
        public var checkpointEveryMinutes: Double?
        /// Checkpoints kept in the directory (the newest).
        public var keep: Int
        /// Batches the loader prepares ahead.
        public var prefetch: Int
        /// Seconds between progress reports (the callback also runs on the last step).
        public var progressInterval: Double

        public init(steps: Int? = nil, minutes: Double? = nil, checkpointDirectory: String? = nil, checkpointEverySteps: Int? = nil,
                    checkpointEveryMinutes: Double? = nil, keep: Int = 3, prefetch: Int = 3, progressInterval: Double = 1) {
            self.steps = steps; self.minutes = minutes; self.checkpointDirectory = checkpointDirectory
            self.checkpointEverySteps = checkpointEverySteps; self.checkpointEveryMinutes = checkpointEveryMinutes
            self.keep = keep; self.prefetch = prefetch; self.progressInterval = progressInterval
        }
    }

    /// A progress report.
    public struct Progress: Sendable {
        /// The model's step (generator updates since it was created).
        public var step: Int
        /// Steps done in this run, and the run's step limit if any.
        public var stepsThisRun: Int
        public var stepLimit: Int?
        public var epoch: Int
        public var position: Int
        public var datasetCount: Int
        public var discriminatorLoss: Float
        public var generatorLoss: Float
        public var gradientPenalty: Float
        /// Real crops per second through the training step, over this run.
        public var imagesPerSecond: Double
        public var elapsedSeconds: Double
        /// Estimated seconds left (nil when the run has neither a step nor a time limit).
        public var etaSeconds: Double?
        /// Crops skipped so far because they could not be read.
        public var skippedCrops: Int
        /// Share of the run spent waiting for data (0: the loader keeps ahead).
        public var dataWaitFraction: Double
        /// The last checkpoint written, if any.
        public var lastCheckpoint: String?
    }

    /// The losses of one generator step.
    public struct StepLosses: Sendable {
        public var discriminator: Float
        public var generator: Float
        /// WGAN-GP's penalty (included in `discriminator`); 0 for the other losses.
        public var gradientPenalty: Float
    }

    /// Why a run ended.
    public enum StopReason: String, Sendable {
        case steps, time, requested
    }

    /// The outcome of `run()`.
    public struct Summary: Sendable {
        public var reason: StopReason
        public var stepsRun: Int
        public var finalStep: Int
        public var checkpoints: [String]
        public var skippedCrops: Int
        public var imagesPerSecond: Double
        public var elapsedSeconds: Double
        public var dataWaitFraction: Double
        public var last: Progress?
    }

    public let model: GANModel
    public let source: any CropSource
    public let options: Options
    /// Called with progress every `progressInterval` seconds and after the last step.
    public var onProgress: ((Progress) -> Void)?
    /// Called after every generator step with the model's step and the step's losses (the
    /// generator's loss is the one of this step's last critic update).
    public var onStep: ((Int, StepLosses) -> Void)?
    /// Called after every checkpoint with its path.
    public var onCheckpoint: ((String) -> Void)?
    /// Log lines (skipped crops, dataset changes).
    public var log: (String) -> Void

    private let control = NSCondition()
    private var stopFlag = false
    private var checkpointFlag = false
    private var pausedFlag = false

    public init(model: GANModel, source: any CropSource, options: Options, log: @escaping (String) -> Void = { _ in }) {
        self.model = model
        self.source = source
        self.options = options
        self.log = log
    }

    /// Asks the run to checkpoint (when it has a directory) and return after the current step.
    /// Safe from any thread or a signal-handling queue.
    public func requestStop() { control.lock(); stopFlag = true; pausedFlag = false; control.broadcast(); control.unlock() }
    /// Asks for a checkpoint after the current step.
    public func requestCheckpoint() { control.lock(); checkpointFlag = true; control.unlock() }
    /// Holds the run between steps until `resume()` (or `requestStop()`).
    public func pause() { control.lock(); pausedFlag = true; control.unlock() }
    public func resume() { control.lock(); pausedFlag = false; control.broadcast(); control.unlock() }
    /// True while paused.
    public var isPaused: Bool { control.lock(); defer { control.unlock() }; return pausedFlag }

    /// Trains until the step limit, the time limit or a stop request; checkpoints at the end when
    /// a directory is set. Paused time does not count against the time budget.
    /// A configuration that asks for a dataset scale gets it estimated from `source` first.
    public func run() throws -> Summary {
        try model.resolveDatasetScale(from: source, log: log)
        let config = model.config
        let step = model.trainingStep
        // Data-parallel: every process steps in lockstep; they stop together by a vote summed
        // with the gradients, and only rank 0 writes checkpoints.
        let distributed = (step.collective?.size ?? 1) > 1
        let loader = try BatchLoader(source: source, preprocessing: config.preprocessing, augmentation: config.augmentation,
                                     batchSize: config.batchSize, cursor: model.cursor, depth: options.prefetch, slice: step.slice, log: log)
        defer { loader.stop() }
        let writer = (step.collective?.rank ?? 0) == 0
        let directory = writer ? options.checkpointDirectory.map { CheckpointDirectory(path: $0, keep: options.keep) } : nil
        var checkpoints: [String] = []
        var lastCheckpoint: String? = nil
        func checkpoint() throws {
            guard let directory else { return }
            let p = try directory.save(model)
            checkpoints.append(p)
            lastCheckpoint = p
            onCheckpoint?(p)
        }

        var clock = Stopwatch()
        var lastReport = -Double.infinity, lastCheckpointTime = 0.0
        var stepsRun = 0, images = 0
        var last: Progress? = nil
        var reason = StopReason.steps
        var lossD: Float = 0, lossG: Float = 0, gp: Float = 0
        func progress() -> Progress {
            let elapsed = clock.seconds
            let ips = elapsed > 0 ? Double(images) / elapsed : 0
            var eta: Double? = nil
            if let s = options.steps, stepsRun > 0 { eta = elapsed / Double(stepsRun) * Double(max(0, s - stepsRun)) }
            if let m = options.minutes { eta = min(eta ?? .infinity, max(0, m * 60 - elapsed)) }
            return Progress(step: model.step, stepsThisRun: stepsRun, stepLimit: options.steps, epoch: model.cursor.epoch,
                            position: model.cursor.position, datasetCount: source.count, discriminatorLoss: lossD,
                            generatorLoss: lossG, gradientPenalty: gp, imagesPerSecond: ips, elapsedSeconds: elapsed, etaSeconds: eta,
                            skippedCrops: loader.skippedCount, dataWaitFraction: elapsed > 0 ? loader.waitSeconds / elapsed : 0,
                            lastCheckpoint: lastCheckpoint)
        }

        while true {
            if let s = options.steps, stepsRun >= s { reason = .steps; break }
            let timeUp = options.minutes.map { clock.seconds >= $0 * 60 } ?? false
            if timeUp && !distributed { reason = .time; break }
            control.lock()
            if pausedFlag && !stopFlag && !distributed {
                clock.pause()
                while pausedFlag && !stopFlag { control.wait() }
                clock.resume()
            }
            let stop = stopFlag, wantCheckpoint = checkpointFlag
            checkpointFlag = false
            control.unlock()
            if stop && !distributed { reason = .requested; break }
            step.stopVote = stop || timeUp ? 1 : 0
            if wantCheckpoint { try checkpoint(); lastCheckpointTime = clock.seconds }

            for k in 0..<config.criticSteps {
                let batch = try loader.next()
                let result = try step.step(real: batch.tensor, updateGenerator: k == config.criticSteps - 1)
                model.cursor = batch.cursorAfter
                loader.recycle(batch)
                images += config.batchSize
                lossD = result.discriminatorLoss
                gp = result.gradientPenalty
                if k == config.criticSteps - 1 { lossG = result.generatorLoss }
            }
            guard lossD.isFinite, lossG.isFinite else {
                throw CytoError(.internal, "training diverged at step \(model.step + 1): discriminator loss \(lossD), generator loss \(lossG)")
            }
            model.step += 1
            stepsRun += 1
            onStep?(model.step, StepLosses(discriminator: lossD, generator: lossG, gradientPenalty: gp))

            if let every = options.checkpointEverySteps, every > 0, model.step % every == 0 {
                try checkpoint(); lastCheckpointTime = clock.seconds
            } else if let m = options.checkpointEveryMinutes, m > 0, clock.seconds - lastCheckpointTime >= m * 60 {
                try checkpoint(); lastCheckpointTime = clock.seconds
            }
            if clock.seconds - lastReport >= options.progressInterval {
                lastReport = clock.seconds
                last = progress()
                onProgress?(last!)
            }
            if distributed && step.stopAgreed { reason = timeUp ? .time : .requested; break }
        }
        if let directory, lastCheckpoint != directory.file(step: model.step) { try checkpoint() }
        last = progress()
        onProgress?(last!)
        return Summary(reason: reason, stepsRun: stepsRun, finalStep: model.step, checkpoints: checkpoints,
                       skippedCrops: loader.skippedCount, imagesPerSecond: last!.imagesPerSecond, elapsedSeconds: last!.elapsedSeconds,
                       dataWaitFraction: last!.dataWaitFraction, last: last)
    }
}

/// Monotonic elapsed seconds that can be paused.
struct Stopwatch {
    private var start = MonotonicClock.nanoseconds()
    private var pausedAt: UInt64? = nil
    private var pausedTotal: UInt64 = 0

    var seconds: Double {
        let now = pausedAt ?? MonotonicClock.nanoseconds()
        return Double(now - start - pausedTotal) * 1e-9
    }
    mutating func pause() { if pausedAt == nil { pausedAt = MonotonicClock.nanoseconds() } }
    mutating func resume() {
        if let p = pausedAt { pausedTotal += MonotonicClock.nanoseconds() - p; pausedAt = nil }
    }
}
