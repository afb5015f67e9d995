import CytoCore
import CytoGAN
import Foundation

/// The worker's current model (PROTOCOL.md §8.3) and who may touch it. One user at a time: a
/// computing request (extraction, sampling, saving) or the training job's thread. The training
/// thread holds the model for a whole run but steps aside between two steps whenever a request
/// is waiting (and for as long as the job is paused), so features, samples and `model/save` of a
/// model in training see it between steps, never in the middle of one. `model/info` reads a
/// summary kept up to date at every step, so it answers at once.
final class ModelSlot: @unchecked Sendable {
    /// What `model/info` reports, kept beside the model so reading it never waits.
    struct Summary {
        var preset: String?
        var gan: GANConfig
        var config: JSON
        var generatorParameters: Int
        var discriminatorParameters: Int
        var featureDim: Int
        var featureLayer: String
        var featureNames: [String]
        var step: Int
        var checkpoint: String?
    }

    private let cond = NSCondition()
    private var model: GANModel?
    private var summary: Summary?
    private var busy = false
    private var waiting = 0
    private var trainingJob: String?

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        cond.lock()
        defer { cond.unlock() }
        return try body()
    }

    static let noModel = CytoError(.noModel, "no model: create one with model/create or load one with model/load")

    /// The ModelInfo of PROTOCOL.md §7, or -32015.
    func info() throws -> JSON {
        try locked {
            guard let s = summary else { throw ModelSlot.noModel }
            return .object([
                "preset": s.preset.map { .string($0) } ?? .null, "config": s.config,
                "parameters": ["generator": JSON(s.generatorParameters), "discriminator": JSON(s.discriminatorParameters)],
                "featureDim": JSON(s.featureDim), "featureLayer": .string(s.featureLayer),
                "featureNames": .array(s.featureNames.map { .string($0) }), "step": JSON(s.step),
                "checkpoint": s.checkpoint.map { .string($0) } ?? .null,
                "trainingJob": trainingJob.map { .string($0) } ?? .null,
            ])
        }
    }

    var hasModel: Bool { locked { model != nil } }

    /// Requests waiting for the model now (tests watch it).
    var waiters: Int { locked { waiting } }

    /// The current model's configuration (latent size, image size...) without waiting; -32015.
    func config() throws -> GANConfig {
        try locked {
            guard let s = summary else { throw ModelSlot.noModel }
            return s.gan
        }
    }

    /// A model replaces the current one (model/create, model/load, a resumed training).
    /// Refused while a training job holds the model.
    func replace(with m: GANModel, preset: String?, checkpoint: String?) throws {
        let names = try FeatureExtractor.featureNames(of: m)
        let s = Summary(preset: preset, gan: m.config, config: m.config.json, generatorParameters: m.generator.parameterCount,
                        discriminatorParameters: m.discriminator.parameterCount,
                        featureDim: names.count, featureLayer: m.config.featureLayer.description, featureNames: names,
                        step: m.step, checkpoint: checkpoint)
        try locked {
            try checkNotTraining()
            while busy { cond.wait() }
            model = m
            summary = s
        }
    }

    /// Asks whether a job has not ended yet (the job manager's answer); a reservation of a job
    /// that ended without running (cancelled while queued) is dropped by it.
    var isJobActive: @Sendable (String) -> Bool = { _ in true }

    /// -32016 while a training job holds or has reserved the model. Caller holds the lock.
    private func checkNotTraining() throws {
        guard let job = trainingJob else { return }
        if !busy && !isJobActive(job) { trainingJob = nil; return }
        throw ModelSlot.conflict(job)
    }

    /// -32016 while a training job holds the model (model/create, model/load, train/start).
    func refuseWhileTraining() throws { try locked { try checkNotTraining() } }

    /// Reserves the model for a training job that was just started (queued or running), so
    /// nothing replaces it before the job's thread takes it.
    func reserve(job: String) { locked { if trainingJob == nil { trainingJob = job } } }

    static func conflict(_ job: String) -> RPCError {
        RPCError(code: ErrorCode.jobConflict, message: "training job \(job) holds the model: wait for it or cancel it first",
                 kind: "job_conflict", data: ["jobId": .string(job), "conflict": .string("model")])
    }

    /// Runs `body` with the model to itself, after waiting for the training thread's next step
    /// boundary if a training runs. `expected`: fail unless the model is still this one (a long
    /// extraction must not mix two models). -32015 without a model.
    func use<R>(expected: GANModel? = nil, _ body: (GANModel) throws -> R) throws -> R {
        let m: GANModel = try locked {
            waiting += 1
            defer { waiting -= 1 }
            while busy { cond.wait() }
            guard let m = model else { throw ModelSlot.noModel }
            if let expected, expected !== m {
                throw CytoError(.invalidInput, "the model was replaced while this request was using it")
            }
            busy = true
            return m
        }
        defer { locked { busy = false; cond.broadcast() } }
        return try body(m)
    }

    /// Notes the file the current model was last written to or read from.
    func setCheckpoint(_ path: String, of m: GANModel) {
        locked { if model === m { summary?.checkpoint = path } }
    }

    // MARK: The training thread

    /// Claims the model for training job `job` (the thread holds it until `endTraining`).
    func beginTraining(job: String) throws -> GANModel {
        try locked {
            if let other = trainingJob, other != job { throw ModelSlot.conflict(other) }
            waiting += 1
            defer { waiting -= 1 }
            while busy { cond.wait() }
            guard let m = model else { throw ModelSlot.noModel }
            trainingJob = job
            busy = true
            return m
        }
    }

    /// Between two steps: records the step, and lets waiting requests use the model first.
    func stepBoundary(step: Int) {
        locked {
            summary?.step = step
            // Training may have settled the configuration (a dataset scale estimated before step 1).
            if let m = model, let s = summary, s.gan != m.config { summary?.gan = m.config; summary?.config = m.config.json }
            guard waiting > 0 else { return }
            busy = false
            cond.broadcast()
            while busy || waiting > 0 { cond.wait() }
            busy = true
        }
    }

    /// Lends the model out while the job is parked (paused), and takes it back.
    func releaseForPause() { locked { busy = false; cond.broadcast() } }
    func reacquireAfterPause() {
        locked {
            while busy { cond.wait() }
            busy = true
        }
    }

    /// The job is over: the model is free again.
    func endTraining(job: String) {
        locked {
            if trainingJob == job { trainingJob = nil }
            busy = false
            cond.broadcast()
        }
    }
}
