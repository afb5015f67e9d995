import CellImage
import CytoCore
import CytoNN

/// Turns crops into feature vectors with a model's discriminator (its moving average when the
/// model keeps one): the layer(s) a `FeatureLayer` names, in inference mode, batched.
/// Deterministic by default (the input noise is off); `noisy` reproduces CytoGAN's noisy
/// encoding, drawing the noise from its own seeded stream so the model's training streams are
/// untouched. With the layer's `@dihedral` views, each crop's features are the mean over its 8
/// mirrored and turned copies.
public final class FeatureExtractor {
    public let model: GANModel
    public let layer: FeatureLayer
    public let noisy: Bool
    /// The network read: the model's discriminator or the moving average of its weights.
    public let network: Network
    /// Column names of the features, in order ("Cytogan_representation_0",
    /// "Cytogan_pool_lrelu2_17", ...): the same in `extract`'s tables, the worker's replies, the
    /// Python client's DataFrames and the CellProfiler plugin's measurements.
    public let names: [String]
    /// What every feature name starts with: a CellProfiler-style category, so that pycytominer's
    /// `infer_cp_features(df, compartments=["Cytogan"])` finds the features.
    public static let namePrefix = "Cytogan_"
    /// Features per crop.
    public var count: Int { names.count }

    /// One layer's contribution: flattened (pooling nil) or pooled over H and W.
    private struct Piece { let layer: String; let pooling: FeatureLayer.Pooling?; let width: Int }
    private let pieces: [Piece]
    private let deepest: String
    private var noiseRNG: RandomStream
    private let input = Tensor(Shape(0))
    private let view = Tensor(Shape(0))
    private var viewFeatures: [Float] = []
    private var scratch: [Float] = []

    /// An extractor for `model` reading `layer` (default: the model's configured feature layer) of
    /// its moving-average discriminator when it keeps one and `averaged` is true, else of its
    /// discriminator.
    public init(model: GANModel, layer: FeatureLayer? = nil, noisy: Bool = false, noiseSeed: UInt64 = 0, averaged: Bool = true) throws {
        guard !model.config.needsDatasetScale else {
            throw CytoError(.invalidInput, "the model's dataset scale has not been estimated yet: train it first (`cytogan extract --manifest` estimates it from the manifest's crops)", field: "normalization")
        }
        self.model = model
        let layer = layer ?? model.config.featureLayer
        self.layer = layer
        self.noisy = noisy
        network = averaged ? model.featureDiscriminator : model.discriminator
        noiseRNG = RandomStream(seed: noiseSeed, purpose: "extract-noise")
        let (pieces, deepest) = try FeatureExtractor.resolve(layer, in: network, architecture: model.config.architecture)
        self.pieces = pieces
        self.deepest = deepest
        names = FeatureExtractor.names(of: pieces)
    }

    /// The feature names of `model`'s configured layer (or `layer`), as an extractor gives them;
    /// available before the model's dataset scale is known.
    public static func featureNames(of model: GANModel, layer: FeatureLayer? = nil) throws -> [String] {
        names(of: try resolve(layer ?? model.config.featureLayer, in: model.discriminator, architecture: model.config.architecture).0)
    }

    private static func names(of pieces: [Piece]) -> [String] {
        pieces.flatMap { p in
            (0..<p.width).map { k in namePrefix + (p.pooling.map { "\($0.rawValue)_\(p.layer)_\(k)" } ?? "\(p.layer)_\(k)") }
        }
    }

    /// Features per crop for `model`'s configured layer.
    public static func featureCount(of model: GANModel, layer: FeatureLayer? = nil) throws -> Int {
        try resolve(layer ?? model.config.featureLayer, in: model.discriminator, architecture: model.config.architecture).0.reduce(0) { $0 + $1.width }
    }

    private static func resolve(_ layer: FeatureLayer, in d: Network, architecture a: DCGANArchitecture) throws -> ([Piece], String) {
        let input = Shape(1, a.channels, a.size, a.size)
        var pieces: [Piece] = []
        var deepest = 0
        func add(_ name: String, pooling: FeatureLayer.Pooling?) throws {
            guard let i = d.index(of: name) else {
                let known = d.layers.map(\.name).joined(separator: ", ")
                throw CytoError(.invalidInput, "the discriminator has no layer '\(name)' (layers: \(known); or 'pooled')", field: "feature_layer")
            }
            let s = try d.outputShape(for: input, through: name)
            if pooling != nil {
                guard s.rank == 4 else {
                    throw CytoError(.invalidInput, "layer '\(name)' gives \(s), not an image that can be pooled", field: "feature_layer")
                }
                pieces.append(Piece(layer: name, pooling: pooling, width: s[1]))
            } else {
                pieces.append(Piece(layer: name, pooling: nil, width: s.itemCount))
            }
            deepest = max(deepest, i)
        }
        for part in layer.parts {
            switch part {
            case .layer(let n): try add(n, pooling: nil)
            case .pooled(let n, let pooling): try add(n, pooling: pooling)
            case .allBlocks(let pooling):
                for name in a.discriminatorBlocks { try add(name, pooling: pooling) }
            }
        }
        return (pieces, d.layers[deepest].name)
    }

    /// Features of a batch of model inputs ([N, C, S, S] in [-1, 1]) into `out` (N x count, row-major).
    public func extract(_ batch: Tensor, into out: UnsafeMutableBufferPointer<Float>) throws {
        let a = model.config.architecture
        guard batch.shape.rank == 4, batch.shape[1] == a.channels, batch.shape[2] == a.size, batch.shape[3] == a.size else {
            throw CytoError(.shapeMismatch, "features: inputs are \(batch.shape), the model takes [N, \(a.channels), \(a.size), \(a.size)]")
        }
        let n = batch.shape.batch
        precondition(out.count >= n * count, "feature buffer holds \(out.count) floats, needs \(n * count)")
        guard n > 0 else { return }
        guard layer.views == .dihedral else { return try extractView(batch, into: out) }
        // The mean over the 8 symmetries of the square: each view's features, added in / 8.
        let per = a.channels * a.size * a.size
        view.resize(batch.shape)
        if viewFeatures.count < n * count { viewFeatures = [Float](repeating: 0, count: n * count) }
        if scratch.count < a.size * a.size { scratch = [Float](repeating: 0, count: a.size * a.size) }
        for i in 0..<(n * count) { out[i] = 0 }
        for k in 0..<8 {
            let symmetry = SquareSymmetry(index: k)
            view.data.update(from: batch.data, count: n * per)
            scratch.withUnsafeMutableBufferPointer { sp in
                for i in 0..<n { symmetry.apply(view.data + i * per, channels: a.channels, size: a.size, scratch: sp.baseAddress!) }
            }
            try viewFeatures.withUnsafeMutableBufferPointer { vf in
                try extractView(view, into: vf)
                for i in 0..<(n * count) { out[i] += vf[i] / 8 }
            }
        }
    }

    /// Features of one view of a batch (checked by `extract`).
    private func extractView(_ batch: Tensor, into out: UnsafeMutableBufferPointer<Float>) throws {
        let n = batch.shape.batch
        let d = network
        let wasTraining = d.training
        d.training = noisy
        var saved: RandomStream? = nil
        let noiseLayer = d.noiseLayers.first
        if noisy, let layer = noiseLayer { saved = layer.rng; layer.rng = noiseRNG }
        defer {
            if let saved, let layer = noiseLayer { noiseRNG = layer.rng; layer.rng = saved }
            d.training = wasTraining
        }
        _ = try d.forward(batch, through: deepest)
        var offset = 0
        for p in pieces {
            guard let t = d.output(of: p.layer) else { throw CytoError(.internal, "features: layer '\(p.layer)' did not run") }
            let src = t.data
            if let pooling = p.pooling {
                let c = t.shape[1], hw = t.shape[2] * t.shape[3]
                for i in 0..<n {
                    for k in 0..<c {
                        out[i * count + offset + k] = FeatureExtractor.pool(src + (i * c + k) * hw, hw, pooling)
                    }
                }
            } else {
                let w = t.shape.itemCount
                for i in 0..<n {
                    for k in 0..<w { out[i * count + offset + k] = src[i * w + k] }
                }
            }
            offset += p.width
        }
    }

    /// One channel's `count` activations pooled to a number.
    private static func pool(_ q: UnsafeMutablePointer<Float>, _ count: Int, _ pooling: FeatureLayer.Pooling) -> Float {
        let (mean, mx) = PlaneStatistics.meanAndMax(q, count: count)
        switch pooling {
        case .mean: return Float(mean)
        case .max: return Float(mx)
        case .std: return Float(PlaneStatistics.standardDeviation(q, count: count, mean: mean))
        }
    }

    /// Features of a batch of model inputs, as a new array (N x count).
    public func extract(_ batch: Tensor) throws -> [Float] {
        var out = [Float](repeating: 0, count: batch.shape.batch * count)
        try out.withUnsafeMutableBufferPointer { try extract(batch, into: $0) }
        return out
    }

    /// What `extract(specs:loader:)` returns: one row of `count` features per crop (zeros where the
    /// crop failed) and each crop's error or nil.
    public struct Rows {
        public var features: [Float]
        public var errors: [CytoError?]
    }

    /// Loads `specs` with `loader` (whose preprocessing must be the model's) and extracts their
    /// features in order. A crop that cannot be read gets its error (located at its index) and a
    /// row of zeros; the others are unaffected.
    public func extract(specs: [CropSpec], loader: CropLoader) throws -> Rows {
        let a = model.config.architecture
        guard loader.preprocessing == model.config.preprocessing else {
            throw CytoError(.invalidInput, "features: the crop loader's preprocessing differs from the model's")
        }
        input.resize(Shape(specs.count, a.channels, a.size, a.size))
        let errors = loader.loadBatch(specs, into: input.buffer)
        var features = try extract(input)
        for (i, e) in errors.enumerated() where e != nil {
            for k in 0..<count { features[i * count + k] = 0 }
        }
        return Rows(features: features, errors: errors)
    }
}
