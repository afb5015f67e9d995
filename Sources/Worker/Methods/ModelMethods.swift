import CytoCore
import CytoGAN
import CytoNN
import Foundation

/// The current model (PROTOCOL.md §8.3): create from a preset and overrides, load and save
/// safetensors checkpoints (CytoGAN's GANModel: weights, Adam moments, BatchNorm statistics,
/// counters and every random stream), and describe it.
extension Server {
    /// The worker's one model, shared by the feature, sample and training methods.
    var models: ModelSlot {
        service(ModelSlot.self) {
            // The engine's own loops (im2col, BatchNorm, GEMM slices) use `serve --threads`, by
            // default every core, as the command line's do.
            Engine.setThreads(self.options.threads ?? ProcessInfo.processInfo.activeProcessorCount)
            let slot = ModelSlot()
            slot.isJobActive = { [weak self] id in
                guard let state = (try? self?.jobs.status(id))?["state"]?.stringValue else { return false }
                return JobState(rawValue: state)?.isFinal == false
            }
            return slot
        }
    }

    func registerModelMethods() {
        register("model/create", params: ["preset", "loss", "config", "seed"],
                 summary: "Create a fresh model from a preset (paper-96, small-64) with optional config overrides; it becomes the current model.") { req in
            let p = req.params
            let preset = try p.choice("preset", GANConfig.presetNames, default: "paper-96")
            let loss = GANLoss(rawValue: try p.choice("loss", GANLoss.allCases.map(\.rawValue), default: GANLoss.lsgan.rawValue))!
            let seed = try p.int("seed", default: 1, in: 0...Int.max)
            let overrides = try p.optionalObject("config")
            try req.server.models.refuseWhileTraining()
            let base = try GANConfig.preset(preset, loss: loss, seed: UInt64(seed))
            let config = try decodeConfig(base: base, overrides: overrides)
            let model = try withConfigErrors { try GANModel(config: config) }
            try req.checkCancelled()
            try req.server.models.replace(with: model, preset: preset, checkpoint: nil)
            return try req.server.models.info()
        }

        register("model/load", params: ["path"],
                 summary: "Load a checkpoint (safetensors with its config in the metadata); it becomes the current model.") { req in
            let path = try nonEmpty(req.params, "path")
            try req.server.models.refuseWhileTraining()
            let model = try GANModel.load(from: path)
            try req.checkCancelled()
            try req.server.models.replace(with: model, preset: model.config.name, checkpoint: path)
            return try req.server.models.info()
        }

        register("model/save", params: ["path"],
                 summary: "Save the current model, with optimizer state and random streams, as a safetensors checkpoint (atomically).") { req in
            let path = try nonEmpty(req.params, "path")
            let step = try req.server.models.use { m -> Int in
                try m.save(to: path)
                req.server.models.setCheckpoint(path, of: m)
                return m.step
            }
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            return .object(["path": .string(path), "bytes": JSON(bytes), "step": JSON(step)])
        }

        register("model/info", params: [], summary: "The current model: config, parameter counts, feature size, step, checkpoint, training job.",
                 execution: .inline) { req in
            try req.server.models.info()
        }
    }
}

/// Keys of the config JSON (GANConfig.json) a client may override, by level. `loss`, `seed` and
/// `name` have parameters of their own.
private let configKeys: Set<String> = ["architecture", "discriminator_rate", "generator_rate", "beta1", "beta2", "epsilon", "batch_size",
                                       "critic_steps", "gradient_penalty", "initialization", "preprocessing", "augmentation", "diff_augment",
                                       "dataset_scale_percentile", "dataset_floor_percentile", "discriminator_average", "generator_average",
                                       "texture_matching", "tail_matching", "spectral_norm", "output_gradient_floor", "feature_layer"]
private let architectureKeys: Set<String> = ["size", "channels", "latent", "generator_widths", "discriminator_widths",
                                             "discriminator_strides", "representation", "kernel", "leak", "noise_std", "fused_upsample", "output_margin"]
private let preprocessingKeys: Set<String> = ["size", "channels", "crop_size", "normalization", "transfer", "resize"]
private let augmentationKeys: Set<String> = ["flips", "rotations"]

/// The preset's config with the client's overrides laid over it: `architecture`, `preprocessing`
/// and `augmentation` member by member, other members whole. When the overrides change the
/// network's input size or channels and not the preprocessing's, the preprocessing follows.
func decodeConfig(base: GANConfig, overrides: Params?) throws -> GANConfig {
    guard let overrides else { return base }
    for key in ["loss", "seed", "name"] where overrides.has(key) {
        throw overrides.error(key, "is set by the method's own parameter (\(key == "name" ? "preset" : key)), not in config")
    }
    try overrides.rejectUnknown(allowed: configKeys)
    try rejectNulls(.object(overrides.values), at: overrides.path)
    guard case .object(var merged) = base.json else { return base }
    for (key, value) in overrides.values {
        if let sub = [("architecture", architectureKeys), ("preprocessing", preprocessingKeys), ("augmentation", augmentationKeys)]
            .first(where: { $0.0 == key }) {
            let o = try overrides.object(key)
            try o.rejectUnknown(allowed: sub.1)
            var inner = merged[key]?.objectValue ?? [:]
            for (k, v) in o.values { inner[k] = v }
            merged[key] = .object(inner)
        } else {
            merged[key] = value
        }
    }
    if let arch = overrides.values["architecture"]?.objectValue {
        var pre = merged["preprocessing"]?.objectValue ?? [:]
        let given = overrides.values["preprocessing"]?.objectValue ?? [:]
        for k in ["size", "channels"] where arch[k] != nil && given[k] == nil { pre[k] = arch[k] }
        merged["preprocessing"] = .object(pre)
    }
    return try withConfigErrors { try GANConfig(json: .object(merged)) }
}

/// `null` is no value for any parameter, also deep inside `config` (CytoGAN would read it as
/// "the default").
private func rejectNulls(_ v: JSON, at field: String) throws {
    switch v {
    case .null: throw RPCError.invalidParams(field: field, "\(field) must not be null: leave it out for the preset's value")
    case .object(let o): for k in o.keys.sorted() { try rejectNulls(o[k]!, at: field + "." + k) }
    case .array(let a): for (i, x) in a.enumerated() { try rejectNulls(x, at: field + "[\(i)]") }
    default: break
    }
}

/// A configuration error from CytoGAN as the protocol names it: -32602 at `config.<key>`.
func withConfigErrors<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as CytoError where e.kind == .invalidInput {
        let field: String
        if e.message.hasPrefix("architecture:") || e.message.hasPrefix("config: architecture") {
            field = "config.architecture" + (e.field.map { architectureKeys.contains($0) ? "." + $0 : "" } ?? "")
        } else if let f = e.field, configKeys.contains(f) {
            field = "config." + f
        } else if let f = e.field, preprocessingKeys.contains(f) {
            field = "config.preprocessing." + f
        } else {
            field = "config"
        }
        throw RPCError.invalidParams(field: field, "\(field): \(e.message)")
    }
}
