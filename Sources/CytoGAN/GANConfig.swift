import CellImage
import CytoCore
import CytoNN

/// Which data augmentations the trainer applies to real crops, each drawn per crop from the
/// loader's own random stream: horizontal and vertical flips, and rotations by multiples of 90°.
public struct Augmentation: Sendable, Equatable {
    public var flips: Bool
    public var rotations: Bool

    public init(flips: Bool = false, rotations: Bool = false) { self.flips = flips; self.rotations = rotations }

    /// No augmentation (the paper).
    public static let none = Augmentation()
    /// Flips and 90° rotations: the 8 symmetries of the square, for cells that have no orientation.
    public static let dihedral = Augmentation(flips: true, rotations: true)

    public var isIdentity: Bool { !flips && !rotations }

    public var json: JSON { ["flips": .bool(flips), "rotations": .bool(rotations)] }

    public init(json: JSON) throws {
        guard case .object(let o) = json else {
            throw CytoError(.invalidInput, "augmentation must be an object, got \(json.typeName)", field: "augmentation")
        }
        func flag(_ k: String) throws -> Bool {
            guard let v = o[k], !v.isNull else { return false }
            guard let b = v.boolValue else { throw CytoError(.invalidInput, "'\(k)' must be true or false", field: k) }
            return b
        }
        flips = try flag("flips")
        rotations = try flag("rotations")
    }
}

/// Which discriminator activations make a cell's feature vector.
///
/// Written as comma-separated parts: `representation` (the paper's Dense layer), `pooled` (global
/// average pooling of every convolution block's output, "lrelu<i>", concatenated),
/// `pooled-max` / `pooled-std` (the same blocks' spatial maximum / standard deviation, which see
/// the brightest spot and the texture that an average washes out), `pool:<layer>`, `max:<layer>`,
/// `std:<layer>` (one layer's NCHW output pooled so), or any discriminator layer name (its output
/// flattened). Example: "representation,pooled".
/// A suffix `@dihedral` averages each feature over the 8 symmetries of the square of the crop
/// (mirrors and quarter turns): features that do not depend on how a cell happens to lie.
public struct FeatureLayer: Sendable, Equatable, CustomStringConvertible {
    /// How an [N, C, H, W] activation becomes C numbers per image.
    public enum Pooling: String, Sendable, Equatable, CaseIterable {
        /// Mean over H and W (global average pooling).
        case mean = "pool"
        /// Maximum over H and W.
        case max
        /// Population standard deviation over H and W.
        case std
    }

    public enum Part: Sendable, Equatable {
        /// A layer's output, flattened.
        case layer(String)
        /// A layer's [N, C, H, W] output pooled over H and W.
        case pooled(String, Pooling)
        /// Every convolution block ("lrelu0", "lrelu1", ...), pooled over H and W.
        case allBlocks(Pooling)
    }

    /// Which views of a crop the features are averaged over.
    public enum Views: String, Sendable, Equatable, CaseIterable {
        /// The crop as it is.
        case single
        /// The 8 symmetries of the square (written as the suffix `@dihedral`).
        case dihedral
    }

    public var parts: [Part]
    public var views: Views

    public init(parts: [Part], views: Views = .single) { self.parts = parts; self.views = views }

    /// The paper's choice: the 'representation' Dense layer.
    public static let representation = FeatureLayer(parts: [.layer(DCGANArchitecture.representationLayer)])
    /// Every convolution block, globally average pooled and concatenated.
    public static let pooled = FeatureLayer(parts: [.allBlocks(.mean)])

    /// The written name of "every block pooled" for a pooling.
    static func allBlocksName(_ p: Pooling) -> String { p == .mean ? "pooled" : "pooled-\(p.rawValue)" }

    /// Parses the comma-separated form (see the type's documentation).
    public init(parsing whole: String) throws {
        var text = whole[...], views = Views.single
        if let at = whole.firstIndex(of: "@") {
            let suffix = String(whole[whole.index(after: at)...])
            guard let v = Views(rawValue: suffix), v != .single else {
                throw CytoError(.invalidInput, "feature layer '\(whole)': '@\(suffix)' is not a view set (dihedral)", field: "feature_layer")
            }
            text = whole[..<at]
            views = v
        }
        var parts: [Part] = []
        for raw in text.split(separator: ",", omittingEmptySubsequences: false) {
            let p = raw.trimmingCharacters(in: .whitespaces)
            guard !p.isEmpty else {
                throw CytoError(.invalidInput, "feature layer '\(text)' has an empty part", field: "feature_layer")
            }
            if let pooling = Pooling.allCases.first(where: { FeatureLayer.allBlocksName($0) == p }) {
                parts.append(.allBlocks(pooling))
            } else if let colon = p.firstIndex(of: ":") {
                let prefix = String(p[..<colon]), name = String(p[p.index(after: colon)...])
                guard let pooling = Pooling(rawValue: prefix) else {
                    throw CytoError(.invalidInput, "feature layer part '\(p)': '\(prefix):' is not a pooling (pool, max, std)", field: "feature_layer")
                }
                guard !name.isEmpty else { throw CytoError(.invalidInput, "'\(prefix):' needs a layer name", field: "feature_layer") }
                parts.append(.pooled(name, pooling))
            } else { parts.append(.layer(p)) }
        }
        guard !parts.isEmpty else { throw CytoError(.invalidInput, "feature layer is empty", field: "feature_layer") }
        self.parts = parts
        self.views = views
    }

    public var description: String {
        parts.map { p -> String in
            switch p {
            case .layer(let n): return n
            case .pooled(let n, let pooling): return "\(pooling.rawValue):\(n)"
            case .allBlocks(let pooling): return FeatureLayer.allBlocksName(pooling)
            }
        }.joined(separator: ",") + (views == .single ? "" : "@\(views.rawValue)")
    }
}

/// Everything that defines a GAN run: the networks (every size a parameter), the loss, the
/// optimizers and their schedule, the batch, WGAN-GP's critic steps and penalty, how crops become
/// inputs, augmentation, which layer gives features, and the seed. Stored in every checkpoint as
/// JSON (`json`, `init(json:)`), so a model file is self-describing.
public struct GANConfig: Sendable, Equatable {
    /// The preset this came from ("paper-96", "small-64") or "custom".
    public var name: String
    public var architecture: DCGANArchitecture
    public var loss: GANLoss
    /// Discriminator and generator learning-rate schedules (base rate and staircase decay).
    public var discriminatorRate: LearningRate
    public var generatorRate: LearningRate
    /// Adam's moment decays (the paper: beta1 0.5) and epsilon.
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var batchSize: Int
    /// Discriminator (critic) updates per generator update; WGAN-GP only (1 for the others).
    public var criticSteps: Int
    /// WGAN-GP's lambda.
    public var gradientPenalty: Float
    /// Initial weights: N(0, std^2) in the DCGAN manner, or Glorot / He.
    public var initialization: WeightInit
    public var preprocessing: Preprocessing
    public var augmentation: Augmentation
    /// Differentiable augmentation of real and generated batches inside the training step: the
    /// discriminator sees more varied crops without the generator learning the augmentation.
    public var diffAugment: DiffAugmentPolicy
    /// When set, the per-channel scale is estimated from the training crops before the first
    /// step (this percentile of their raw intensities) and stored as a `fixed_scale`
    /// normalization: absolute intensity survives, unlike with the per-crop maximum.
    public var datasetScalePercentile: Double?
    /// With `datasetScalePercentile`: the range starts at this percentile of the training crops
    /// (a `fixed_range` normalization) instead of at 0, so the background is the model's -1.
    public var datasetFloorPercentile: Double?
    /// When set, an exponential moving average of the discriminator's weights with this decay per
    /// update is kept beside it (checkpointed), and features are read from the average: steadier
    /// than the discriminator of whichever step a run stopped at.
    public var discriminatorAverage: Float?
    /// When set, an exponential moving average of the generator's weights (and BatchNorm
    /// statistics) with this decay per update is kept (checkpointed), and every generated image
    /// (samples, interpolation, algebra, encoding) comes from it: smoother and more realistic
    /// than the generator of whichever step a run stopped at. Its horizon is at most a tenth of
    /// the updates so far, so a short run's pictures follow its recent weights.
    public var generatorAverage: Float?
    /// Weight of a generator loss term matching the generated batch's finest texture (the energy
    /// of the 5-point Laplacian, per channel) to the real batch's (0: none; TextureMatching).
    /// Without it a short training draws cells without nuclear granules or fibres.
    public var textureMatching: Float
    /// Weight of a generator loss term matching how bright each generated cell's brightest 1% of
    /// pixels are, rank by rank over the batch, to the real batch's (0: none; TailMatching).
    /// Without it a short training draws too few of the rare bright cells.
    public var tailMatching: Float
    /// Spectral normalization of every discriminator weight (Miyato et al. 2018): each is used
    /// divided by its largest singular value, so the discriminator cannot sharpen its verdict
    /// faster than the generator can answer (without it, runs that let the generator reach the
    /// top of the intensity range ended with the discriminator winning).
    public var spectralNorm: Bool
    /// The generator's output tanh passes at least this share of the gradient where the gradient
    /// points back into the range, so pixels saturated at the bottom (a black background) or the
    /// top can leave (0: the exact derivative; cells-64: 0.1).
    public var outputGradientFloor: Float
    public var featureLayer: FeatureLayer
    public var seed: UInt64

    public init(name: String = "custom", architecture: DCGANArchitecture = .paper96, loss: GANLoss = .lsgan,
                discriminatorRate: LearningRate? = nil, generatorRate: LearningRate? = nil,
                beta1: Float = 0.5, beta2: Float = 0.999, epsilon: Float = 1e-8, batchSize: Int = 64,
                criticSteps: Int = 1, gradientPenalty: Float = 10, initialization: WeightInit = .normal(std: 0.02),
                preprocessing: Preprocessing? = nil, augmentation: Augmentation = .none,
                diffAugment: DiffAugmentPolicy = .none, datasetScalePercentile: Double? = nil, datasetFloorPercentile: Double? = nil,
                discriminatorAverage: Float? = nil, generatorAverage: Float? = nil, textureMatching: Float = 0,
                tailMatching: Float = 0, spectralNorm: Bool = false, outputGradientFloor: Float = 0, featureLayer: FeatureLayer = .representation, seed: UInt64 = 1) {
        self.name = name
        self.architecture = architecture
        self.loss = loss
        let (d, g) = GANConfig.paperRates(loss)
        self.discriminatorRate = discriminatorRate ?? .paper(d)
        self.generatorRate = generatorRate ?? .paper(g)
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        self.batchSize = batchSize
        self.criticSteps = criticSteps
        self.gradientPenalty = gradientPenalty
        self.initialization = initialization
        self.preprocessing = preprocessing ?? Preprocessing(size: architecture.size, channels: architecture.channels)
        self.augmentation = augmentation
        self.diffAugment = diffAugment
        self.datasetScalePercentile = datasetScalePercentile
        self.datasetFloorPercentile = datasetFloorPercentile
        self.discriminatorAverage = discriminatorAverage
        self.generatorAverage = generatorAverage
        self.textureMatching = textureMatching
        self.tailMatching = tailMatching
        self.spectralNorm = spectralNorm
        self.outputGradientFloor = outputGradientFloor
        self.featureLayer = featureLayer
        self.seed = seed
    }

    /// The paper's base learning rates (discriminator, generator) for a loss:
    /// DCGAN 5e-5 / 1e-5; LSGAN and WGAN-GP 7e-5 / 2e-4.
    public static func paperRates(_ loss: GANLoss) -> (Float, Float) {
        switch loss {
        case .dcgan: return (5e-5, 1e-5)
        case .lsgan, .wgangp: return (7e-5, 2e-4)
        }
    }

    /// Names of the presets, for help texts and errors.
    public static let presetNames = ["paper-96", "small-64", "cpu-64", "cells-64"]

    /// A named preset with `loss` (default LSGAN) and `seed`.
    ///
    /// - `paper-96`: CytoGAN exactly: 96x96x3, the paper's widths, the paper's learning rates for
    ///   the loss, Adam beta1 0.5, staircase decay 0.9999 every 100 steps, batch 64, per-crop
    ///   maximum normalization, no augmentation, features from 'representation'; WGAN-GP with
    ///   lambda 10 and one critic step per generator step.
    /// - `small-64`: the same design on 64x64 crops with half the widths, batch 32, flips and
    ///   rotations, and the paper's rates doubled (learning starts sooner on a CPU budget).
    /// - `cpu-64`: the best recipe for features on a CPU budget (measured in
    ///   examples/cpu-recipe): small-64 with a dataset-level intensity scale (each channel's
    ///   95th percentile) instead of the per-crop maximum, differentiable augmentation of both
    ///   real and generated batches (a colour jitter of each channel, brightness and contrast
    ///   0.25, then translation + cutout), and features pooled from every
    ///   convolution block of a moving average of the discriminator's weights (decay 0.999: about
    ///   the last thousand updates), the mean and the standard deviation over each map, averaged
    ///   over the crop's 8 mirrors and quarter turns ("pooled,pooled-std@dihedral").
    /// - `cells-64`: the recipe for realistic generated cells on a CPU budget
    ///   (examples/cpu-recipe): small-64 with the crops' dataset range (1st to 99.99th percentile
    ///   of each channel, so the background is -1 and the brightest nuclei keep their shape below
    ///   the top, where tanh still has slope), crops larger or smaller than 64 x 64 cropped or
    ///   padded about their centre rather than resampled (generated cells then have the crops' own
    ///   pixel texture, which resampling blurs), no input noise and no differentiable augmentation
    ///   in the discriminator (both hid the background level and blurred what it could see), a
    ///   generator that draws 4 pixels beyond each side and crops them (no zero-padding rim), a
    ///   discriminator that learns as fast as the generator (its learning rate raised to the
    ///   generator's: it pushes the generator towards sharp detail sooner) with every weight
    ///   spectrally normalized (without it the wider range ended with the discriminator winning
    ///   in some runs), texture matching at weight 1 (the generator is asked for the real batch's
    ///   finest texture: nuclear granules and fibres), every generated image drawn from a
    ///   moving average of the generator's weights (decay 0.99: its last 100 or so updates; 0.995
    ///   read no better on three seeds, 0.999 worse on two), the square-root transfer (offset
    ///   0.04: the camera's noise about the same size at every intensity, the dark background
    ///   spread out, so the generator draws the crops' fine texture as noise rather than a mesh),
    ///   an output gradient floor of 0.1 (a background drawn black can brighten again to the
    ///   crops' level) and bright-tail matching at weight 1 (each generated cell's brightest
    ///   pixels matched to the real cell of the same rank in the batch: the rare bright cells);
    ///   features as in cpu-64.
    public static func preset(_ name: String, loss: GANLoss = .lsgan, seed: UInt64 = 1) throws -> GANConfig {
        switch name {
        case "paper-96":
            return GANConfig(name: name, architecture: .paper96, loss: loss, batchSize: 64,
                             preprocessing: .cytogan, augmentation: .none, seed: seed)
        case "small-64":
            let (d, g) = paperRates(loss)
            return GANConfig(name: name, architecture: .small64, loss: loss,
                             discriminatorRate: .paper(2 * d), generatorRate: .paper(2 * g), batchSize: 32,
                             preprocessing: Preprocessing(size: 64, channels: 3, normalization: .perCropMax, resize: .resample),
                             augmentation: .dihedral, seed: seed)
        case "cpu-64":
            var c = try preset("small-64", loss: loss, seed: seed)
            c.name = name
            c.datasetScalePercentile = 95
            c.diffAugment = .translationCutout
            c.diffAugment.brightness = 0.25
            c.diffAugment.contrast = 0.25
            c.discriminatorAverage = 0.999
            c.featureLayer = FeatureLayer(parts: [.allBlocks(.mean), .allBlocks(.std)], views: .dihedral)
            return c
        case "cells-64":
            var c = try preset("small-64", loss: loss, seed: seed)
            c.name = name
            c.architecture.noiseStd = 0
            c.architecture.outputMargin = 4
            c.preprocessing.resize = .padCrop
            c.datasetScalePercentile = 99.99
            c.datasetFloorPercentile = 1
            c.generatorAverage = 0.99
            c.discriminatorAverage = 0.999
            c.discriminatorRate = c.generatorRate
            c.textureMatching = 1
            c.tailMatching = 1
            c.spectralNorm = true
            c.preprocessing.transfer = .squareRoot(offset: 0.04)
            c.outputGradientFloor = 0.1
            c.featureLayer = FeatureLayer(parts: [.allBlocks(.mean), .allBlocks(.std)], views: .dihedral)
            return c
        default:
            throw CytoError(.invalidInput, "unknown preset '\(name)' (\(presetNames.joined(separator: ", ")))", field: "preset")
        }
    }

    /// True while the normalization still waits for `datasetScalePercentile` to be estimated.
    public var needsDatasetScale: Bool {
        guard datasetScalePercentile != nil else { return false }
        switch preprocessing.normalization {
        case .fixedScale, .fixedRange: return false
        default: return true
        }
    }

    /// Checks that the configuration describes something trainable.
    public func validate() throws {
        try architecture.validate()
        func bad(_ f: String, _ m: String) -> CytoError { CytoError(.invalidInput, "config: \(m)", field: f) }
        guard preprocessing.size == architecture.size else {
            throw bad("preprocessing", "preprocessing size \(preprocessing.size) differs from the network's input size \(architecture.size)")
        }
        guard preprocessing.channels == architecture.channels else {
            throw bad("preprocessing", "preprocessing has \(preprocessing.channels) channels, the network \(architecture.channels)")
        }
        try preprocessing.normalization.validate(channels: preprocessing.channels)
        guard batchSize >= 2 else { throw bad("batch_size", "batch size must be at least 2 (BatchNorm needs more than one item)") }
        guard criticSteps >= 1 else { throw bad("critic_steps", "critic steps must be at least 1") }
        guard loss == .wgangp || criticSteps == 1 else { throw bad("critic_steps", "extra critic steps are for WGAN-GP only") }
        for (f, r) in [("discriminator_rate", discriminatorRate), ("generator_rate", generatorRate)] {
            guard r.base > 0, r.base.isFinite, r.decayRate > 0, r.decayRate <= 1 else {
                throw bad(f, "learning rate must be positive and its decay rate in (0, 1]")
            }
        }
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1, epsilon > 0 else { throw bad("beta1", "Adam needs 0 <= beta < 1 and epsilon > 0") }
        guard gradientPenalty >= 0, gradientPenalty.isFinite else { throw bad("gradient_penalty", "gradient penalty must be >= 0") }
        guard textureMatching >= 0, textureMatching.isFinite else { throw bad("texture_matching", "texture_matching (a loss weight) must be >= 0") }
        guard tailMatching >= 0, tailMatching.isFinite else { throw bad("tail_matching", "tail_matching (a loss weight) must be >= 0") }
        guard outputGradientFloor >= 0, outputGradientFloor <= 1 else {
            throw bad("output_gradient_floor", "output_gradient_floor (a share of the gradient) must be in [0, 1]")
        }
        try diffAugment.validate()
        if let p = datasetScalePercentile, !(p > 0 && p <= 100) {
            throw bad("dataset_scale_percentile", "dataset_scale_percentile must be in (0, 100]")
        }
        if let f = datasetFloorPercentile {
            guard let p = datasetScalePercentile else {
                throw bad("dataset_floor_percentile", "dataset_floor_percentile needs dataset_scale_percentile (the top of the range)")
            }
            guard f >= 0, f < p else { throw bad("dataset_floor_percentile", "dataset_floor_percentile must be in [0, dataset_scale_percentile)") }
        }
        for (key, decay) in [("discriminator_average", discriminatorAverage), ("generator_average", generatorAverage)] {
            if let d = decay, !(d > 0 && d < 1) { throw bad(key, "\(key) (the moving average's decay) must be in (0, 1)") }
        }
    }

    // MARK: JSON

    public var json: JSON {
        [
            "name": .string(name),
            "architecture": architecture.json,
            "loss": .string(loss.rawValue),
            "discriminator_rate": GANConfig.rateJSON(discriminatorRate),
            "generator_rate": GANConfig.rateJSON(generatorRate),
            "beta1": .float(beta1), "beta2": .float(beta2), "epsilon": .float(epsilon),
            "batch_size": JSON(batchSize),
            "critic_steps": JSON(criticSteps),
            "gradient_penalty": .float(gradientPenalty),
            "initialization": GANConfig.initJSON(initialization),
            "preprocessing": preprocessing.json,
            "augmentation": augmentation.json,
            "diff_augment": diffAugment.json,
            "dataset_scale_percentile": datasetScalePercentile.map { JSON.double($0) } ?? JSON.null,
            "dataset_floor_percentile": datasetFloorPercentile.map { JSON.double($0) } ?? JSON.null,
            "discriminator_average": discriminatorAverage.map { JSON.float($0) } ?? JSON.null,
            "generator_average": generatorAverage.map { JSON.float($0) } ?? JSON.null,
            "texture_matching": .float(textureMatching),
            "tail_matching": .float(tailMatching),
            "spectral_norm": .bool(spectralNorm),
            "output_gradient_floor": .float(outputGradientFloor),
            "feature_layer": .string(featureLayer.description),
            "seed": .string(String(seed)),
        ]
    }

    /// Parses the `json` form. Missing keys take the defaults of `init` (the paper's); wrong
    /// types or values are errors naming the key.
    public init(json: JSON) throws {
        guard case .object(let o) = json else { throw CytoError(.invalidInput, "config must be an object, got \(json.typeName)", field: "config") }
        func bad(_ k: String, _ m: String) -> CytoError { CytoError(.invalidInput, "config: \(m)", field: k) }
        func value(_ k: String) -> JSON? { o[k].flatMap { $0.isNull ? JSON?.none : $0 } }  // JSON is nil-literal-expressible: spell out the Optional
        func float(_ k: String, _ d: Float) throws -> Float {
            guard let v = value(k) else { return d }
            guard let x = v.doubleValue, x.isFinite else { throw bad(k, "'\(k)' must be a number") }
            return Float(x)
        }
        func int(_ k: String, _ d: Int) throws -> Int {
            guard let v = value(k) else { return d }
            guard let x = v.intValue else { throw bad(k, "'\(k)' must be an integer") }
            return x
        }
        func bool(_ k: String, _ d: Bool) throws -> Bool {
            guard let v = value(k) else { return d }
            guard let x = v.boolValue else { throw bad(k, "'\(k)' must be true or false") }
            return x
        }
        /// An optional member: nil when absent or null.
        func number(_ k: String) throws -> Double? {
            guard let v = value(k) else { return nil }
            guard let x = v.doubleValue else { throw bad(k, "'\(k)' must be a number") }
            return x
        }
        for k in GANConfig.retiredKeys where value(k) != nil {
            throw bad(k, "'\(k)' was retired after measurement (see examples/cpu-recipe/README.md); leave it out or null")
        }
        let arch = try value("architecture").map { try DCGANArchitecture(json: $0) } ?? .paper96
        var loss = GANLoss.lsgan
        if let l = value("loss") {
            guard let s = l.stringValue, let v = GANLoss(rawValue: s) else {
                throw bad("loss", "'loss' must be one of \(GANLoss.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            loss = v
        }
        let (d, g) = GANConfig.paperRates(loss)
        var seed: UInt64 = 1
        if let s = value("seed") {
            if let t = s.stringValue, let v = UInt64(t) { seed = v }
            else if let v = s.intValue, v >= 0 { seed = UInt64(v) }
            else { throw bad("seed", "'seed' must be a non-negative integer (or its decimal string)") }
        }
        var featureLayer = FeatureLayer.representation
        if let f = value("feature_layer") {
            guard let s = f.stringValue else { throw bad("feature_layer", "'feature_layer' must be a string") }
            featureLayer = try FeatureLayer(parsing: s)
        }
        var name = "custom"
        if let n = value("name") {
            guard let s = n.stringValue else { throw bad("name", "'name' must be a string") }
            name = s
        }
        self.init(name: name, architecture: arch, loss: loss,
                  discriminatorRate: try value("discriminator_rate").map { try GANConfig.rate($0, "discriminator_rate") } ?? .paper(d),
                  generatorRate: try value("generator_rate").map { try GANConfig.rate($0, "generator_rate") } ?? .paper(g),
                  beta1: try float("beta1", 0.5), beta2: try float("beta2", 0.999), epsilon: try float("epsilon", 1e-8),
                  batchSize: try int("batch_size", 64), criticSteps: try int("critic_steps", 1),
                  gradientPenalty: try float("gradient_penalty", 10),
                  initialization: try value("initialization").map { try GANConfig.initialization($0) } ?? .normal(std: 0.02),
                  preprocessing: try value("preprocessing").map { try Preprocessing(json: $0) },
                  augmentation: try value("augmentation").map { try Augmentation(json: $0) } ?? .none,
                  diffAugment: try value("diff_augment").map { try DiffAugmentPolicy(json: $0) } ?? .none,
                  datasetScalePercentile: try number("dataset_scale_percentile"),
                  datasetFloorPercentile: try number("dataset_floor_percentile"),
                  discriminatorAverage: try number("discriminator_average").map(Float.init),
                  generatorAverage: try number("generator_average").map(Float.init),
                  textureMatching: try float("texture_matching", 0),
                  tailMatching: try float("tail_matching", 0),
                  spectralNorm: try bool("spectral_norm", false),
                  outputGradientFloor: try float("output_gradient_floor", 0),
                  featureLayer: featureLayer, seed: seed)
        try validate()
    }

    /// Members of configs before the feature-matching, contrastive and R1 experiments were
    /// retired (measured: no gain, or R1's loss of feature quality): checkpoints of that time
    /// store them as null, which still parses.
    static let retiredKeys = ["contrastive", "feature_matching", "r1_penalty"]

    static func rateJSON(_ r: LearningRate) -> JSON {
        ["base": .float(r.base), "decay_rate": .double(r.decayRate), "decay_steps": JSON(r.decaySteps), "staircase": .bool(r.staircase)]
    }

    static func rate(_ j: JSON, _ field: String) throws -> LearningRate {
        if let x = j.doubleValue { return .paper(Float(x)) }
        guard case .object(let o) = j, let base = o["base"]?.doubleValue, base > 0, base.isFinite else {
            throw CytoError(.invalidInput, "config: '\(field)' must be a positive number or {base, decay_rate, decay_steps, staircase}", field: field)
        }
        let rate = o["decay_rate"]?.doubleValue ?? 0.9999
        let steps = o["decay_steps"]?.intValue ?? 100
        guard rate > 0, rate <= 1, steps > 0 else {
            throw CytoError(.invalidInput, "config: '\(field)' needs 0 < decay_rate <= 1 and decay_steps > 0", field: field)
        }
        return LearningRate(Float(base), decayRate: rate, decaySteps: steps, staircase: o["staircase"]?.boolValue ?? true)
    }

    static func initJSON(_ w: WeightInit) -> JSON {
        switch w {
        case .normal(let std): return ["kind": "normal", "std": .float(std)]
        case .glorotUniform: return ["kind": "glorot_uniform"]
        case .heNormal: return ["kind": "he_normal"]
        }
    }

    static func initialization(_ j: JSON) throws -> WeightInit {
        switch j["kind"]?.stringValue {
        case "normal":
            guard let s = j["std"]?.doubleValue, s > 0 else {
                throw CytoError(.invalidInput, "config: normal initialization needs a positive 'std'", field: "initialization")
            }
            return .normal(std: Float(s))
        case "glorot_uniform": return .glorotUniform
        case "he_normal": return .heNormal
        default:
            throw CytoError(.invalidInput, "config: 'initialization' kind must be normal, glorot_uniform or he_normal", field: "initialization")
        }
    }
}

extension DCGANArchitecture {
    /// The JSON form stored in checkpoints (every size a key).
    public var json: JSON {
        [
            "size": JSON(size), "channels": JSON(channels), "latent": JSON(latent),
            "generator_widths": .array(generatorWidths.map { JSON($0) }),
            "discriminator_widths": .array(discriminatorWidths.map { JSON($0) }),
            "discriminator_strides": .array(discriminatorStrides.map { JSON($0) }),
            "representation": JSON(representation), "kernel": JSON(kernel),
            "leak": .float(leak), "noise_std": .float(noiseStd), "fused_upsample": .bool(fusedUpsample),
            "output_margin": JSON(outputMargin),
        ]
    }

    /// Parses the `json` form; missing keys take the paper's values.
    public init(json: JSON) throws {
        guard case .object(let o) = json else {
            throw CytoError(.invalidInput, "architecture must be an object, got \(json.typeName)", field: "architecture")
        }
        func bad(_ k: String, _ m: String) -> CytoError { CytoError(.invalidInput, "architecture: \(m)", field: k) }
        let p = DCGANArchitecture.paper96
        func int(_ k: String, _ d: Int) throws -> Int {
            guard let v = o[k], !v.isNull else { return d }
            guard let i = v.intValue else { throw bad(k, "'\(k)' must be an integer") }
            return i
        }
        func ints(_ k: String, _ d: [Int]) throws -> [Int] {
            guard let v = o[k], !v.isNull else { return d }
            guard let a = v.arrayValue, let list = Optional(a.compactMap(\.intValue)), list.count == a.count, !list.isEmpty else {
                throw bad(k, "'\(k)' must be a non-empty array of integers")
            }
            return list
        }
        func float(_ k: String, _ d: Float) throws -> Float {
            guard let v = o[k], !v.isNull else { return d }
            guard let x = v.doubleValue, x.isFinite else { throw bad(k, "'\(k)' must be a number") }
            return Float(x)
        }
        // A camera-noise layer on the generator's output was measured and retired (its cells read
        // worse); a config that asks for it is refused rather than trained without it.
        if let v = o["sensor_noise"], !v.isNull, v.boolValue != false {
            throw bad("sensor_noise", "'sensor_noise' was retired after measurement (see examples/cpu-recipe/README.md); leave it out, null or false")
        }
        var fused = p.fusedUpsample
        if let f = o["fused_upsample"], !f.isNull {
            guard let b = f.boolValue else { throw bad("fused_upsample", "'fused_upsample' must be true or false") }
            fused = b
        }
        self.init(size: try int("size", p.size), channels: try int("channels", p.channels), latent: try int("latent", p.latent),
                  generatorWidths: try ints("generator_widths", p.generatorWidths),
                  discriminatorWidths: try ints("discriminator_widths", p.discriminatorWidths),
                  discriminatorStrides: try ints("discriminator_strides", p.discriminatorStrides),
                  representation: try int("representation", p.representation), kernel: try int("kernel", p.kernel),
                  leak: try float("leak", p.leak), noiseStd: try float("noise_std", p.noiseStd), fusedUpsample: fused,
                  outputMargin: try int("output_margin", p.outputMargin))
        try validate()
    }
}
