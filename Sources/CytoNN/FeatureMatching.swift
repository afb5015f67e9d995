import CytoCore

/// Feature matching for the generator (Salimans et al. 2016, "Improved techniques for training
/// GANs"; issue 8): beside its adversarial loss, G also pays weight x ||E f(real) - E f(G(z))||^2,
/// f being the discriminator's pooled block features (the 240 numbers `pooled` reads). G then
/// chases the statistics D's features measure on real cells, so D has to keep finding new ones:
/// the objective Salimans et al. found gave the discriminator features that serve classification.
public struct FeatureMatchingTerm: Sendable, Equatable {
    /// Weight of the feature-matching loss beside the generator's adversarial loss.
    public var weight: Float
    public init(weight: Float) { self.weight = weight }
}

/// Evaluates a `FeatureMatchingTerm`: `recordReal` keeps the mean pooled features of the real
/// rows of D's forward pass in its own update, `evaluate` compares the generated rows of the
/// generator's pass with them and leaves the gradient in `additions` for
/// `Network.backward(adding:)`. The real mean is the one D had just before its update (the
/// generator's pass sees D one update later), so the step costs no extra forward pass.
/// Allocation-free once sized.
public final class FeatureMatching {
    public let term: FeatureMatchingTerm
    /// The gradients to add at the pooled layers' outputs after `evaluate`.
    public var additions: [(layer: Int, gradient: Tensor)] { pooling.additions }
    /// Mean pooled features of the last recorded real rows.
    public let realMean = Tensor(Shape(0))
    private let pooling: BlockPooling
    private let featureGradient = Tensor(Shape(0))

    /// A term over the outputs of `layerNames` in `network` (the discriminator).
    public init(term: FeatureMatchingTerm, network: Network, layerNames: [String]) throws {
        self.term = term
        pooling = try BlockPooling(network: network, layerNames: layerNames, user: "feature matching")
    }

    /// Column means of `features` [n, d] (Double accumulation) into `out` [d].
    private static func columnMeans(_ features: Tensor, into out: Tensor) {
        let n = features.shape[0], d = features.shape[1]
        out.resize(Shape(d))
        for k in 0..<d {
            var s = 0.0
            for r in 0..<n { s += Double(features.data[r * d + k]) }
            out.data[k] = Float(s / Double(n))
        }
    }

    /// Keeps the mean pooled features of rows `first ..< first + count` (real crops) of the
    /// network's last forward pass.
    public func recordReal(first: Int, count: Int) throws {
        guard count > 0 else { throw CytoError(.invalidInput, "feature matching: no real rows") }
        FeatureMatching.columnMeans(try pooling.pool(first: first, count: count), into: realMean)
    }

    /// weight x the squared distance between the mean pooled features of rows
    /// `first ..< first + count` (generated crops) of the last forward pass and the recorded real
    /// mean; its gradient w.r.t. the pooled layers' outputs goes to `additions`.
    public func evaluate(first: Int, count: Int) throws -> Float {
        guard count > 0 else { throw CytoError(.invalidInput, "feature matching: no generated rows") }
        let features = try pooling.pool(first: first, count: count)
        let d = features.shape[1]
        guard realMean.shape == Shape(d) else {
            throw CytoError(.invalidInput, "feature matching: no real features recorded for \(d) features")
        }
        featureGradient.resize(features.shape)
        var loss = 0.0
        let inv = 1 / Double(count)
        for k in 0..<d {
            var s = 0.0
            for r in 0..<count { s += Double(features.data[r * d + k]) }
            let diff = s * inv - Double(realMean.data[k])
            loss += diff * diff
            // d/d f_rk of (mean_k - real_k)^2 = 2 (mean_k - real_k) / count, the same for every row.
            let g = Float(2 * diff * inv)
            for r in 0..<count { featureGradient.data[r * d + k] = g }
        }
        try pooling.spread(featureGradient, first: first, count: count, scale: term.weight)
        return term.weight * Float(loss)
    }
}
