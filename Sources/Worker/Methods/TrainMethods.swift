import CellImage
import CytoCore
import CytoGAN
import Foundation

/// Training (PROTOCOL.md §8.6): `train/start` runs CytoGAN's Trainer on the current model as a
/// background job of kind `train` (conflict key `model`): progress every step, pause and resume
/// between steps, numbered checkpoints every N steps and when it stops, and exact resume from the
/// newest checkpoint of a folder, also after the worker was killed.
extension Server {
    func registerTrainMethods() {
        register("train/start", params: ["data", "channels", "steps", "minutes", "checkpoint", "resume"],
                 summary: "Start training the current model (or resume from a checkpoint folder) as a background job.") { req in
            let p = req.params
            let data = try p.object("data")
            let kind = try data.exactlyOne(of: ["manifest", "crops", "directory"])
            try data.rejectUnknown(allowed: [kind])
            let channels = try decodeChannels(p)
            if channels != nil && kind == "manifest" { throw p.error("channels", "applies to data.crops and data.directory") }
            let steps = try p.int("steps", in: 1...100_000_000)
            let minutes = try p.optionalNumber("minutes", in: 1e-6...1e7)
            let checkpoint = try p.optionalObject("checkpoint")
            try checkpoint?.rejectUnknown(allowed: ["directory", "every", "keep"])
            let directory = try checkpoint.map { try nonEmpty($0, "directory") }
            let every = try checkpoint?.optionalInt("every", in: 1...100_000_000)
            let keep = try checkpoint?.int("keep", default: 3, in: 1...1_000_000) ?? 3
            let resume = try p.bool("resume", default: false)
            if resume && directory == nil { throw p.error("resume", "needs checkpoint.directory: the folder to resume from") }

            // The data, decoded (a manifest is indexed only once the model is known).
            var manifest: (path: String, root: String?, columns: [String])? = nil
            var specs: [CropSpec] = []
            switch kind {
            case "manifest":
                let m = try data.object("manifest")
                try m.rejectUnknown(allowed: ["path", "pathColumn", "pathColumns", "root"])
                let path = try nonEmpty(m, "path")
                if m.has("pathColumn") && m.has("pathColumns") { throw m.error("pathColumns", "give pathColumn or pathColumns, not both") }
                let columns = try m.optionalStrings("pathColumns", count: 1...64) ?? [try optionalNonEmpty(m, "pathColumn") ?? "path"]
                manifest = (path, try optionalNonEmpty(m, "root"), columns)
            case "crops":
                specs = try decodeCrops(data, "crops", count: 1...10_000_000, channels: channels).specs
            default:
                _ = try nonEmpty(data, "directory")
            }

            let slot = req.server.models
            try slot.refuseWhileTraining()
            if !resume { _ = try slot.config() }
            let source: any CropSource
            if let manifest {
                let log = req.server.log
                source = try StreamingManifest(path: manifest.path, root: manifest.root, channelColumns: manifest.columns,
                                               log: { log.warning($0) })
            } else if kind == "directory" {
                source = CytoGAN.CropList(try imageFiles(under: try nonEmpty(data, "directory"), channels: channels))
            } else {
                source = CytoGAN.CropList(specs)
            }
            guard source.count > 0 else {
                throw CytoError(.invalidInput, "no crops to train on", field: "data." + kind)
            }
            // Resuming: the newest checkpoint of the folder becomes the current model (once
            // everything else has been checked: a failed or cancelled request changes nothing).
            let latest = resume ? directory.flatMap { CheckpointDirectory(path: $0, keep: keep).latest } : nil
            let resumed = try latest.map { (model: try GANModel.load(from: $0), path: $0) }
            let config = try resumed?.model.config ?? slot.config()
            // The first crop must load, so a wrong folder or channel count is an error now, not
            // a job that skips every crop.
            do {
                _ = try CropLoader(preprocessing: config.preprocessing).load(try source.spec(at: 0))
            } catch var e as CytoError {
                if e.field == nil { e.field = "data." + kind }
                e.index = 0
                throw e
            }
            try req.checkCancelled()
            if let r = resumed {
                try slot.replace(with: r.model, preset: r.model.config.name, checkpoint: r.path)
                req.server.log.info("train/start: resuming \(r.path) at step \(r.model.step)")
            }

            let server = req.server
            let plan = TrainingPlan(steps: steps, minutes: minutes, directory: directory, every: every, keep: keep)
            let status = try req.server.jobs.start(kind: "train", conflictKey: "model", pausable: true,
                                                   progressToken: req.progressToken) { ctx in
                try plan.run(ctx, server: server, source: source)
            }
            if let id = status["jobId"]?.stringValue { slot.reserve(job: id) }
            return status
        }
    }
}

/// Every image file below a folder (.tif, .tiff, .png), in path order, as crops.
func imageFiles(under directory: String, channels: [Int]?) throws -> [CropSpec] {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
        throw CytoError(.fileNotFound, "no such folder", path: directory, field: "data.directory")
    }
    guard let walk = FileManager.default.enumerator(atPath: directory) else {
        throw CytoError(.io, "cannot list the folder", path: directory, field: "data.directory")
    }
    var files: [String] = []
    while let name = walk.nextObject() as? String {
        let ext = (name as NSString).pathExtension.lowercased()
        if ["tif", "tiff", "png"].contains(ext) { files.append(name) }
    }
    return files.sorted(by: codePointOrder).map { CropSpec.file(directory + "/" + $0, channels: channels) }
}

/// How long to train and where checkpoints go; runs the job.
struct TrainingPlan: Sendable {
    /// The model step to reach (counting steps done before).
    var steps: Int
    var minutes: Double?
    var directory: String?
    var every: Int?
    var keep: Int

    /// The job's body: the Trainer on the current model, reporting every step, parking at
    /// pauses and stopping (with a checkpoint) when cancelled or when the worker shuts down.
    func run(_ ctx: JobContext, server: Server, source: any CropSource) throws -> JobOutcome {
        let slot = server.models
        let model = try slot.beginTraining(job: ctx.id)
        defer { slot.endTraining(job: ctx.id) }
        let options = Trainer.Options(steps: max(0, steps - model.step), minutes: minutes, checkpointDirectory: directory,
                                      checkpointEverySteps: every, keep: keep, progressInterval: 1)
        let log = server.log
        let trainer = Trainer(model: model, source: source, options: options, log: { log.warning("training: \($0)") })
        let state = Locked<(imagesPerSecond: Double, checkpoint: String?, losses: Trainer.StepLosses?)>((0, nil, nil))
        let target = steps
        let rates = (model.config.discriminatorRate, model.config.generatorRate)
        trainer.onProgress = { p in state.withLock { $0.imagesPerSecond = p.imagesPerSecond } }
        trainer.onCheckpoint = { path in
            state.withLock { $0.checkpoint = path }
            slot.setCheckpoint(path, of: model)
        }
        trainer.onStep = { [unowned trainer] step, losses in
            let ips = state.withLock { s -> Double in s.losses = losses; return s.imagesPerSecond }
            ctx.setMetrics([
                "step": JSON(step), "discriminatorLoss": .float(losses.discriminator), "generatorLoss": .float(losses.generator),
                "gradientPenalty": .float(losses.gradientPenalty), "imagesPerSecond": .double((ips * 10).rounded() / 10),
                "learningRates": ["discriminator": .float(rates.0.at(step: step)), "generator": .float(rates.1.at(step: step))],
            ])
            ctx.progress(Double(step), total: Double(target),
                         message: "step \(step)/\(target) D \(fixed(losses.discriminator)) G \(fixed(losses.generator))")
            slot.stepBoundary(step: step)
            // Between two steps: park here while paused, lending the model to requests meanwhile.
            slot.releaseForPause()
            defer { slot.reacquireAfterPause() }
            do { try ctx.pausePoint() } catch { trainer.requestStop() }
            if ctx.isStopRequested { trainer.requestStop() }
        }
        defer { trainer.onStep = nil; trainer.onProgress = nil; trainer.onCheckpoint = nil }
        if ctx.isStopRequested || ctx.isCancelled { trainer.requestStop() }
        let summary = try trainer.run()
        let s = state.withLock { $0 }
        var result: [String: JSON] = ["step": JSON(model.step), "stepsRun": JSON(summary.stepsRun),
                                      "checkpoint": s.checkpoint.map { .string($0) } ?? .null,
                                      "imagesPerSecond": .double((summary.imagesPerSecond * 10).rounded() / 10)]
        if let l = s.losses { result["losses"] = ["discriminator": .float(l.discriminator), "generator": .float(l.generator)] }
        if ctx.isCancelled {
            throw CytoError(.cancelled, "training cancelled at step \(model.step)\(s.checkpoint.map { "; last checkpoint \($0)" } ?? "")")
        }
        return summary.reason == .requested ? .stopped(.object(result)) : .done(.object(result))
    }
}

/// A loss for a progress message: 4 decimals.
private func fixed(_ x: Float) -> String {
    let v = (Double(x) * 10_000).rounded() / 10_000
    return String(v)
}
