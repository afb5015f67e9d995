import CellImage
import CytoCore
import CytoNN
import Foundation

/// Where training stands in its data: the epoch, how many positions of the epoch's shuffled
/// order have been consumed, and the data-order stream's state at the epoch's start (from which
/// the epoch's order is re-drawn on resume). `datasetCount` is the number of crops the order
/// permutes; `augmentation` is the augmentation stream's state after the last consumed crop.
public struct DataCursor: Sendable, Equatable {
    public var epoch: Int
    public var position: Int
    public var datasetCount: Int
    public var orderAtEpochStart: RandomStream
    public var augmentation: RandomStream

    /// The cursor of a run that has not started: epoch 0, position 0, streams from `seed`.
    public init(seed: UInt64, datasetCount: Int = 0) {
        epoch = 0; position = 0; self.datasetCount = datasetCount
        orderAtEpochStart = RandomStream(seed: seed, purpose: "data-order")
        augmentation = RandomStream(seed: seed, purpose: "augmentation")
    }

    public init(epoch: Int, position: Int, datasetCount: Int, orderAtEpochStart: RandomStream, augmentation: RandomStream) {
        self.epoch = epoch; self.position = position; self.datasetCount = datasetCount
        self.orderAtEpochStart = orderAtEpochStart; self.augmentation = augmentation
    }
}

/// A GAN and everything needed to continue training it exactly: configuration, generator and
/// discriminator, their Adam optimizers, the engine's training step with its random streams
/// (latent, label smoothing, interpolation), the discriminator's input-noise stream, the data
/// cursor (epoch, position, data-order and augmentation streams) and the step counter.
///
/// `save(to:)` writes one safetensors file (atomically): tensors "generator.<name>",
/// "discriminator.<name>" (weights and BatchNorm running statistics), "discriminator_average.<name>"
/// and "generator_average.<name>" (when the config keeps moving averages), "optimizer.generator.<m|v>.<name>",
/// "optimizer.discriminator.<m|v>.<name>"; `__metadata__` holds the config and the counters and
/// streams as JSON strings (see `CheckpointKeys`). `load(from:)` restores all of it.
public final class GANModel {
    /// The configuration; only `resolveDatasetScale` changes it (its normalization, before step 1).
    public internal(set) var config: GANConfig
    public let generator: Network
    public let discriminator: Network
    public let generatorOptimizer: Adam
    public let discriminatorOptimizer: Adam
    public let trainingStep: GANTrainingStep
    /// The moving average of the discriminator's weights, when the config keeps one.
    public let discriminatorAverage: WeightAverage?
    /// The moving average of the generator's weights, when the config keeps one.
    public let generatorAverage: WeightAverage?
    /// Spectral normalization of the discriminator's weights, when the config asks for it.
    public let spectralNormalization: SpectralNormalization?
    /// Generator updates done (a step = criticSteps discriminator updates + one generator update).
    public var step: Int
    /// Where the data stream stands (saved so a resumed run reads the same crops in the same order).
    public var cursor: DataCursor
    /// Where this model was loaded from, if it was.
    public private(set) var path: String?

    /// A freshly initialised model (weights from the "init" stream of `config.seed`).
    public init(config: GANConfig) throws {
        try config.validate()
        self.config = config
        let arch = config.architecture
        generator = try arch.makeGenerator()
        for case let t as Tanh in generator.layers { t.inwardGradientFloor = config.outputGradientFloor }
        discriminator = try arch.makeDiscriminator(noise: RandomStream(seed: config.seed, purpose: "discriminator-noise"))
        var rng = RandomStream(seed: config.seed, purpose: "init")
        generator.initialize(config.initialization, rng: &rng)
        discriminator.initialize(config.initialization, rng: &rng)
        if config.spectralNorm {
            let weights = discriminator.parameters.filter { $0.name.hasSuffix(".weight") }
            var snRNG = RandomStream(seed: config.seed, purpose: "spectral-norm")
            spectralNormalization = SpectralNormalization(parameters: weights, rng: &snRNG)
        } else {
            spectralNormalization = nil
        }
        generatorOptimizer = Adam(parameters: generator.parameters, learningRate: config.generatorRate,
                                  beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon)
        discriminatorOptimizer = Adam(parameters: discriminator.parameters, learningRate: config.discriminatorRate,
                                      beta1: config.beta1, beta2: config.beta2, epsilon: config.epsilon)
        let d = discriminator
        discriminatorAverage = try config.discriminatorAverage.map { decay in
            let twin = try arch.makeDiscriminator(noise: RandomStream(seed: config.seed, purpose: "discriminator-average-noise"))
            return try WeightAverage(source: d, average: twin, decay: decay)
        }
        let g = generator
        generatorAverage = try config.generatorAverage.map { decay in
            try WeightAverage(source: g, average: try arch.makeGenerator(), decay: decay, rampup: GANModel.generatorAverageRampup)
        }
        trainingStep = GANTrainingStep(generator: generator, discriminator: discriminator,
                                       generatorOptimizer: generatorOptimizer, discriminatorOptimizer: discriminatorOptimizer,
                                       loss: config.loss, latent: arch.latent, seed: config.seed, penaltyWeight: config.gradientPenalty,
                                       diffAugment: config.diffAugment, discriminatorAverage: discriminatorAverage,
                                       generatorAverage: generatorAverage,
                                       textureMatching: config.textureMatching > 0 ? TextureMatching(weight: config.textureMatching) : nil,
                                       tailMatching: config.tailMatching > 0 ? TailMatching(weight: config.tailMatching) : nil,
                                       spectralNormalization: spectralNormalization)
        step = 0
        cursor = DataCursor(seed: config.seed)
    }

    /// The generator's average spans at most a tenth of the updates so far: a plain mean from the
    /// first update drew the same grey blob for every vector after 225 steps (what a slow
    /// machine reaches in the demo), where the ramped average draws nuclei, cytoplasm and outline.
    /// From 1,000 updates on (decay 0.99, `cells-64`) the two are the same exponential average.
    static let generatorAverageRampup: Float = 0.1

    /// The network features are read from: the discriminator's moving average when kept, else
    /// the discriminator itself.
    public var featureDiscriminator: Network { discriminatorAverage?.average ?? discriminator }

    /// The network generated images come from: the generator's moving average when kept, else
    /// the generator itself.
    public var outputGenerator: Network { generatorAverage?.average ?? generator }

    /// The discriminator's input-noise layer (its stream is part of the checkpoint).
    public var noiseLayer: GaussianNoise? { discriminator.noiseLayers.first }

    /// Crops the trainer has shown the discriminator (batch x critic steps x generator steps).
    public var imagesSeen: Int { discriminatorOptimizer.step * config.batchSize }

    /// Every named random stream of the model and its data cursor.
    public var randomStreams: [String: RandomStream] {
        var s: [String: RandomStream] = [
            "latent": trainingStep.latentRNG,
            "label_smoothing": trainingStep.labelRNG,
            "interpolation": trainingStep.mixRNG,
            "data_order_epoch_start": cursor.orderAtEpochStart,
            "augmentation": cursor.augmentation,
        ]
        if let n = noiseLayer { s["discriminator_noise"] = n.rng }
        if let a = trainingStep.diffAugment { s["diff_augment"] = a.rng }
        return s
    }

    // MARK: Checkpoints

    /// Metadata keys of a checkpoint's `__metadata__` (each value a string; JSON where noted).
    public enum CheckpointKeys {
        public static let format = "format"                  // "cytogan.gan"
        public static let formatVersion = "format_version"   // "1"
        public static let config = "config"                  // JSON: GANConfig.json
        public static let architecture = "architecture"      // JSON: DCGANArchitecture.json
        public static let loss = "loss"                      // "dcgan" | "lsgan" | "wgangp"
        public static let preprocessing = "preprocessing"    // JSON: Preprocessing.json
        public static let featureLayer = "feature_layer"     // FeatureLayer text
        public static let step = "step"                      // decimal
        public static let epoch = "epoch"                    // decimal
        public static let position = "position"              // decimal: crops consumed of the epoch's order
        public static let datasetCount = "dataset_count"     // decimal: crops the order permutes
        public static let optimizerSteps = "optimizer_steps" // JSON {"generator": n, "discriminator": n}
        public static let randomState = "random_state"       // JSON {stream: [4 words as decimal strings]}
        public static let created = "created"                // ISO 8601 time of writing
    }

    public static let formatName = "cytogan.gan"

    /// Every tensor of the checkpoint with its name, in file order.
    public var namedTensors: [(name: String, tensor: Tensor)] {
        generator.namedTensors.map { ("generator." + $0.name, $0.tensor) }
            + discriminator.namedTensors.map { ("discriminator." + $0.name, $0.tensor) }
            + (discriminatorAverage?.average.namedTensors ?? []).map { ("discriminator_average." + $0.name, $0.tensor) }
            + (generatorAverage?.average.namedTensors ?? []).map { ("generator_average." + $0.name, $0.tensor) }
            + generatorOptimizer.stateTensors.map { ("optimizer.generator." + $0.name, $0.tensor) }
            + discriminatorOptimizer.stateTensors.map { ("optimizer.discriminator." + $0.name, $0.tensor) }
            + (spectralNormalization?.stateTensors ?? []).map { ("spectral_norm." + $0.name, $0.tensor) }
    }

    /// The `__metadata__` map of a checkpoint of this model now.
    public var checkpointMetadata: [String: String] {
        let streams = JSON.object(randomStreams.mapValues { s in .array(s.stateWords.map { .string(String($0)) }) })
        let iso = ISO8601DateFormatter().string(from: Date())
        return [
            CheckpointKeys.format: GANModel.formatName,
            CheckpointKeys.formatVersion: "1",
            CheckpointKeys.config: config.json.serialized,
            CheckpointKeys.architecture: config.architecture.json.serialized,
            CheckpointKeys.loss: config.loss.rawValue,
            CheckpointKeys.preprocessing: config.preprocessing.json.serialized,
            CheckpointKeys.featureLayer: config.featureLayer.description,
            CheckpointKeys.step: String(step),
            CheckpointKeys.epoch: String(cursor.epoch),
            CheckpointKeys.position: String(cursor.position),
            CheckpointKeys.datasetCount: String(cursor.datasetCount),
            CheckpointKeys.optimizerSteps: JSON.object(["generator": JSON(generatorOptimizer.step),
                                                        "discriminator": JSON(discriminatorOptimizer.step)]).serialized,
            CheckpointKeys.randomState: streams.serialized,
            CheckpointKeys.created: iso,
        ]
    }

    /// Writes the whole model to `path` (safetensors, atomically: temporary file, fsync, rename).
    public func save(to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try makeDirectories(dir) }
        try SafeTensors.write(namedTensors, metadata: checkpointMetadata, to: path)
    }

    /// Reads a model written by `save(to:)`: the config from its metadata, then every tensor,
    /// the counters and the random streams. Errors name the file and the missing or bad entry.
    public static func load(from path: String) throws -> GANModel {
        let file = try SafeTensors.read(path)
        let meta = file.metadata
        func fail(_ field: String, _ m: String) -> CytoError { CytoError(.invalidInput, "checkpoint: \(m)", path: path, field: field) }
        guard meta[CheckpointKeys.format] == formatName else {
            throw CytoError(.undecodable, "not a cytogan GAN checkpoint (its __metadata__ lacks format '\(formatName)')", path: path, field: CheckpointKeys.format)
        }
        guard let configText = meta[CheckpointKeys.config] else { throw fail(CheckpointKeys.config, "no config in the metadata") }
        let config: GANConfig
        do { config = try GANConfig(json: try JSON.parse(configText)) } catch var e as CytoError {
            e.path = path; e.message = "checkpoint config: " + e.message; throw e
        }
        let model = try GANModel(config: config)
        do {
            try model.generator.load(file.tensors, prefix: "generator.")
            try model.discriminator.load(file.tensors, prefix: "discriminator.")
            try model.discriminatorAverage?.average.load(file.tensors, prefix: "discriminator_average.")
            try model.generatorAverage?.average.load(file.tensors, prefix: "generator_average.")
            try model.generatorOptimizer.loadState(file.tensors, prefix: "optimizer.generator.")
            try model.discriminatorOptimizer.loadState(file.tensors, prefix: "optimizer.discriminator.")
            try model.spectralNormalization?.loadState(file.tensors, prefix: "spectral_norm.")
        } catch var e as CytoError { e.path = path; throw e }
        func int(_ k: String) throws -> Int {
            guard let s = meta[k] else { throw fail(k, "no '\(k)' in the metadata") }
            guard let v = Int(s), v >= 0 else { throw fail(k, "'\(k)' is '\(s)', not a count") }
            return v
        }
        model.step = try int(CheckpointKeys.step)
        let steps = try meta[CheckpointKeys.optimizerSteps].map { try JSON.parse($0) }
        guard let gs = steps?["generator"]?.intValue, let ds = steps?["discriminator"]?.intValue, gs >= 0, ds >= 0 else {
            throw fail(CheckpointKeys.optimizerSteps, "optimizer steps missing or malformed")
        }
        model.generatorOptimizer.step = gs
        model.discriminatorOptimizer.step = ds
        guard let streamText = meta[CheckpointKeys.randomState], let streams = try JSON.parse(streamText).objectValue else {
            throw fail(CheckpointKeys.randomState, "no random state in the metadata")
        }
        func stream(_ name: String) throws -> RandomStream {
            guard let words = streams[name]?.arrayValue, words.count == 4 else {
                throw fail(CheckpointKeys.randomState, "random stream '\(name)' is missing or not 4 words")
            }
            let w = try words.map { j -> UInt64 in
                if let s = j.stringValue, let v = UInt64(s) { return v }
                throw fail(CheckpointKeys.randomState, "random stream '\(name)' has a word that is not a decimal UInt64")
            }
            guard w != [0, 0, 0, 0] else { throw fail(CheckpointKeys.randomState, "random stream '\(name)' is all zero") }
            return RandomStream(stateWords: w)
        }
        model.trainingStep.latentRNG = try stream("latent")
        model.trainingStep.labelRNG = try stream("label_smoothing")
        model.trainingStep.mixRNG = try stream("interpolation")
        model.noiseLayer?.rng = try stream("discriminator_noise")
        if let a = model.trainingStep.diffAugment { a.rng = try stream("diff_augment") }
        model.cursor = DataCursor(epoch: try int(CheckpointKeys.epoch), position: try int(CheckpointKeys.position),
                                  datasetCount: try int(CheckpointKeys.datasetCount),
                                  orderAtEpochStart: try stream("data_order_epoch_start"), augmentation: try stream("augmentation"))
        model.path = path
        return model
    }

    /// A summary for humans and the worker's model/info: config, counters, parameter counts.
    public var info: JSON {
        var o: [String: JSON] = [
            "config": config.json,
            "step": JSON(step), "epoch": JSON(cursor.epoch), "position": JSON(cursor.position),
            "dataset_count": JSON(cursor.datasetCount),
            "images_seen": JSON(imagesSeen),
            "generator_parameters": JSON(generator.parameterCount),
            "discriminator_parameters": JSON(discriminator.parameterCount),
            "feature_layer": .string(config.featureLayer.description),
        ]
        if let path { o["path"] = .string(path) }
        if let n = try? FeatureExtractor.featureCount(of: self) { o["feature_count"] = JSON(n) }
        return .object(o)
    }
}

/// A folder of numbered checkpoints, "checkpoint-<step>.safetensors", of which the newest `keep`
/// are kept.
public struct CheckpointDirectory: Sendable {
    public let path: String
    public let keep: Int

    public init(path: String, keep: Int = 3) {
        self.path = path
        self.keep = max(1, keep)
    }

    /// The file name for a step (zero-padded so names sort by step).
    public func file(step: Int) -> String {
        let s = String(step)
        return "\(path)/checkpoint-\(String(repeating: "0", count: max(0, 9 - s.count)))\(s).safetensors"
    }

    /// Checkpoints present, oldest first (by step number in the name).
    public func list() -> [(step: Int, path: String)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else { return [] }
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("checkpoint-"), n.hasSuffix(".safetensors"),
                  let s = Int(n.dropFirst("checkpoint-".count).dropLast(".safetensors".count)) else { return nil }
            return (s, "\(path)/\(n)")
        }.sorted { $0.0 < $1.0 }.map { (step: $0.0, path: $0.1) }
    }

    /// The newest checkpoint, if any.
    public var latest: String? { list().last?.path }

    /// Saves `model` as the checkpoint of its step, then removes all but the newest `keep`.
    /// Returns the path written.
    @discardableResult
    public func save(_ model: GANModel) throws -> String {
        try makeDirectories(path)
        let p = file(step: model.step)
        try model.save(to: p)
        let all = list()
        if all.count > keep {
            for old in all.prefix(all.count - keep) where old.path != p { try? FileManager.default.removeItem(atPath: old.path) }
        }
        return p
    }
}
