import CellImage
import CytoCore
import CytoNN

/// Turns crops into feature vectors with a model's discriminator: the layer(s) a `FeatureLayer`
/// names, in inference mode, batched. Deterministic by default (the input noise is off); `noisy`
/// reproduces CytoGAN's noisy encoding, drawing the noise from its own seeded stream so the
/// model's training streams are untouched.
public final class FeatureExtractor {
    public let model: GANModel
    public let layer: FeatureLayer
    public let noisy: Bool
    /// Column names of the features, in order ("representation_0", "pool_lrelu2_17", ...).
    public let names: [String]
    /// Features per crop.
    public var count: Int { names.count }

    private struct Piece { let layer: String; let pooled: Bool; let width: Int }
    private let pieces: [Piece]
    private let deepest: String
    private var noiseRNG: RandomStream
    private let input = Tensor(Shape(0))

    /// An extractor for `model` reading `layer` (default: the model's configured feature layer).
    public init(model: GANModel, layer: FeatureLayer? = nil, noisy: Bool = false, noiseSeed: UInt64 = 0) throws {
        guard !model.config.needsDatasetScale else {
            throw CytoError(.invalidInput, "the model's dataset scale has not been estimated yet: train it first (`cytogan extract --manifest` estimates it from the manifest's crops)", field: "normalization")
        }
        self.model = model
        let layer = layer ?? model.config.featureLayer
        self.layer = layer
        self.noisy = noisy
        noiseRNG = RandomStream(seed: noiseSeed, purpose: "extract-noise")
        let (pieces, deepest) = try FeatureExtractor.resolve(layer, in: model)
        self.pieces = pieces
        self.deepest = deepest
        names = pieces.flatMap { p in
            (0..<p.width).map { p.pooled ? "pool_\(p.layer)_\($0)" : "\(p.layer)_\($0)" }
        }
    }

    /// Features per crop for `model`'s configured layer.
    public static func featureCount(of model: GANModel, layer: FeatureLayer? = nil) throws -> Int {
        try resolve(layer ?? model.config.featureLayer, in: model).0.reduce(0) { $0 + $1.width }
    }

    private static func resolve(_ layer: FeatureLayer, in model: GANModel) throws -> ([Piece], String) {
        let d = model.discriminator, a = model.config.architecture
        let input = Shape(1, a.channels, a.size, a.size)
        var pieces: [Piece] = []
        var deepest = 0
        func add(_ name: String, pooled: Bool) throws {
            guard let i = d.index(of: name) else {
                let known = d.layers.map(\.name).joined(separator: ", ")
                throw CytoError(.invalidInput, "the discriminator has no layer '\(name)' (layers: \(known); or 'pooled')", field: "feature_layer")
            }
            let s = try d.outputShape(for: input, through: name)
            if pooled {
                guard s.rank == 4 else {
                    throw CytoError(.invalidInput, "layer '\(name)' gives \(s), not an image that can be pooled", field: "feature_layer")
                }
                pieces.append(Piece(layer: name, pooled: true, width: s[1]))
            } else {
                pieces.append(Piece(layer: name, pooled: false, width: s.itemCount))
            }
            deepest = max(deepest, i)
        }
        for part in layer.parts {
            switch part {
            case .layer(let n): try add(n, pooled: false)
            case .pooled(let n): try add(n, pooled: true)
            case .allBlocksPooled:
                for i in 0..<a.discriminatorWidths.count { try add("lrelu\(i)", pooled: true) }
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
        let d = model.discriminator
        let wasTraining = d.training
        d.training = noisy
        var saved: RandomStream? = nil
        if noisy, let layer = model.noiseLayer { saved = layer.rng; layer.rng = noiseRNG }
        defer {
            if let saved, let layer = model.noiseLayer { noiseRNG = layer.rng; layer.rng = saved }
            d.training = wasTraining
        }
        _ = try d.forward(batch, through: deepest)
        var offset = 0
        for p in pieces {
            guard let t = d.output(of: p.layer) else { throw CytoError(.internal, "features: layer '\(p.layer)' did not run") }
            let src = t.data
            if p.pooled {
                let c = t.shape[1], hw = t.shape[2] * t.shape[3]
                let inv = 1 / Float(hw)
                for i in 0..<n {
                    for k in 0..<c {
                        let q = src + (i * c + k) * hw
                        var s: Float = 0
                        for j in 0..<hw { s += q[j] }
                        out[i * count + offset + k] = s * inv
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
