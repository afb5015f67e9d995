import CytoCore

#if canImport(Glibc)
import Glibc
#endif

/// A contrastive term for the discriminator (issue 8; SimCLR's NT-Xent loss, Chen et al. 2020, as
/// ContraD and SS-GAN add self-supervision to a GAN's discriminator): D also sees a second view
/// of every real crop (another square symmetry and its own translation and cutout), and the
/// globally average-pooled outputs of its convolution blocks, the features `pooled` reads, learn
/// to tell each crop's two views from every other crop in the batch. The GAN loss alone only asks
/// D to tell real from generated cells; this asks its features to tell cells apart.
public struct ContrastiveTerm: Sendable, Equatable {
    /// Weight of the NT-Xent loss beside the GAN loss.
    public var weight: Float
    /// Softmax temperature of the cosine similarities.
    public var temperature: Float
    /// The temperature when none is given.
    public static let defaultTemperature: Float = 0.2

    public init(weight: Float, temperature: Float = defaultTemperature) {
        self.weight = weight
        self.temperature = temperature
    }
}

extension Loss {
    /// NT-Xent (normalized temperature-scaled cross-entropy) of `features` [2m, d], whose rows i
    /// and i + m are the two views of item i: with z the rows scaled to unit length and
    /// s_ij = z_i . z_j / temperature, the mean over rows i of
    /// -s_i,pair(i) + log sum_{j != i} exp(s_ij). Writes d(loss)/d(features) into `gradient`;
    /// `scratch` holds the unit rows and the similarities (no allocation once sized).
    public static func ntXent(features: Tensor, temperature: Float, gradient: Tensor, scratch: Tensor) throws -> Float {
        guard features.shape.rank == 2, features.shape[0] >= 2, features.shape[0] % 2 == 0, features.shape[1] > 0 else {
            throw CytoError(.shapeMismatch, "NT-Xent: features \(features.shape) are not [2m, d] with m >= 1")
        }
        guard temperature > 0, temperature.isFinite else { throw CytoError(.invalidInput, "NT-Xent: temperature must be positive") }
        let n = features.shape[0], d = features.shape[1], m = n / 2
        gradient.resize(features.shape)
        scratch.resize(Shape(n * d + n + n * n + n * d))
        let h = features.data, g = gradient.data
        let z = scratch.data, norm = z + n * d, p = norm + n, gz = p + n * n
        for i in 0..<n {
            var s = 0.0
            for k in 0..<d { s += Double(h[i * d + k]) * Double(h[i * d + k]) }
            let r = Float(max(s.squareRoot(), 1e-12))
            norm[i] = r
            for k in 0..<d { z[i * d + k] = h[i * d + k] / r }
        }
        // p: the softmax over j != i of s_ij, row by row; the loss from the pair's similarity.
        let invT = 1 / temperature
        var loss = 0.0
        for i in 0..<n {
            var top = -Float.infinity
            for j in 0..<n where j != i {
                var dot: Float = 0
                for k in 0..<d { dot += z[i * d + k] * z[j * d + k] }
                p[i * n + j] = dot * invT
                top = max(top, dot * invT)
            }
            let pair = i < m ? i + m : i - m
            let pairSimilarity = p[i * n + pair]
            var sum = 0.0
            for j in 0..<n where j != i {
                let e = expf(p[i * n + j] - top)
                p[i * n + j] = e
                sum += Double(e)
            }
            loss += -Double(pairSimilarity - top) + log(sum)
            for j in 0..<n where j != i { p[i * n + j] = Float(Double(p[i * n + j]) / sum) }
            p[i * n + i] = 0
        }
        // d/dz_i = (sum_j (p_ij + p_ji) z_j - 2 z_pair(i)) / (n temperature); then through z = h / |h|.
        let scale = invT / Float(n)
        for i in 0..<n {
            let pair = i < m ? i + m : i - m
            let gi = gz + i * d
            for k in 0..<d { gi[k] = -2 * z[pair * d + k] }
            for j in 0..<n where j != i {
                let w = p[i * n + j] + p[j * n + i]
                for k in 0..<d { gi[k] += w * z[j * d + k] }
            }
            var radial: Float = 0
            for k in 0..<d { radial += gi[k] * z[i * d + k] }
            for k in 0..<d { g[i * d + k] = scale * (gi[k] - radial * z[i * d + k]) / norm[i] }
        }
        return Float(loss / Double(n))
    }
}

/// Evaluates a `ContrastiveTerm` on a network after its forward pass: pools the outputs of the
/// named layers (each [N, C, H, W]) over H and W for the rows that hold the pairs, takes the
/// weighted NT-Xent loss of the concatenated features, and leaves its gradient w.r.t. each
/// layer's output in `additions`, ready for `Network.backward(adding:)`. Buffers are sized on
/// the first call; later calls with the same shapes allocate nothing.
public final class PooledContrast {
    public let term: ContrastiveTerm
    /// Indices of the pooled layers in the network.
    public var layers: [Int] { pooling.layers }
    /// The gradients to add at those layers' outputs after `evaluate` (zero outside the pairs' rows).
    public var additions: [(layer: Int, gradient: Tensor)] { pooling.additions }
    private let pooling: BlockPooling
    private let featureGradient = Tensor(Shape(0))
    private let scratch = Tensor(Shape(0))

    /// A term over the outputs of `layerNames` in `network`.
    public init(term: ContrastiveTerm, network: Network, layerNames: [String]) throws {
        self.term = term
        pooling = try BlockPooling(network: network, layerNames: layerNames, user: "contrastive term")
    }

    /// The weighted NT-Xent loss of the pooled features of rows `first ..< first + 2 * pairs`
    /// (row first + i paired with row first + pairs + i) in the network's last forward pass.
    public func evaluate(first: Int, pairs m: Int) throws -> Float {
        let features = try pooling.pool(first: first, count: 2 * m)
        let loss = try Loss.ntXent(features: features, temperature: term.temperature, gradient: featureGradient, scratch: scratch)
        try pooling.spread(featureGradient, first: first, count: 2 * m, scale: term.weight)
        return term.weight * loss
    }
}
