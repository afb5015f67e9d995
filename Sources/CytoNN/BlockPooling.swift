import CytoCore

/// The globally average-pooled outputs of some of a network's layers (each [N, C, H, W]) for a
/// range of batch rows, concatenated per row: the features `pooled` reads, as the training step's
/// extra terms see them (`PooledContrast`, `FeatureMatching`). It also spreads a gradient w.r.t.
/// those features back onto the layers' outputs, ready for `Network.backward(adding:)`. Buffers
/// are sized on first use; later calls with the same shapes allocate nothing.
public final class BlockPooling {
    /// Indices of the pooled layers in the network.
    public let layers: [Int]
    /// Gradients to add at those layers' outputs after `spread` (zero outside its rows).
    public private(set) var additions: [(layer: Int, gradient: Tensor)]
    /// The pooled features of the last `pool`: [rows, featureCount].
    private let features = Tensor(Shape(0))
    private let network: Network

    /// Pools the outputs of `layerNames` in `network`; `user` names the caller in errors.
    public init(network: Network, layerNames: [String], user: String) throws {
        guard !layerNames.isEmpty else { throw CytoError(.invalidInput, "\(user): no layers to pool") }
        self.network = network
        layers = try layerNames.map { name in
            guard let i = network.index(of: name) else { throw CytoError(.invalidInput, "\(user): no layer '\(name)'", field: name) }
            return i
        }
        additions = layers.map { ($0, Tensor(Shape(0))) }
    }

    private func outputs(first: Int, count: Int) throws -> [Tensor] {
        try layers.map { i -> Tensor in
            guard let t = network.output(of: network.layers[i].name), t.shape.rank == 4, first + count <= t.shape.batch else {
                throw CytoError(.shapeMismatch, "pooled blocks: layer \(network.layers[i].name) has no [N, C, H, W] output holding rows \(first)..<\(first + count)")
            }
            return t
        }
    }

    /// Pools rows `first ..< first + count` of the network's last forward pass into `features`
    /// (the same Double-accumulated mean the feature extractor's `pooled` reads).
    @discardableResult
    public func pool(first: Int, count: Int) throws -> Tensor {
        let outs = try outputs(first: first, count: count)
        let d = outs.reduce(0) { $0 + $1.shape[1] }
        features.resize(Shape(count, d))
        var offset = 0
        for t in outs {
            let c = t.shape[1], hw = t.shape[2] * t.shape[3]
            for r in 0..<count {
                for k in 0..<c {
                    let plane = t.data + ((first + r) * c + k) * hw
                    features.data[r * d + offset + k] = Float(PlaneStatistics.meanAndMax(plane, count: hw).mean)
                }
            }
            offset += c
        }
        return features
    }

    /// Fills `additions` with `scale` times the gradient `featureGradient` [count, d] w.r.t. the
    /// pooled features of rows `first ..< first + count`, spread evenly over each plane (the
    /// mean's derivative), and zero on every other row.
    public func spread(_ featureGradient: Tensor, first: Int, count: Int, scale: Float = 1) throws {
        let outs = try outputs(first: first, count: count)
        let d = outs.reduce(0) { $0 + $1.shape[1] }
        guard featureGradient.shape == Shape(count, d) else {
            throw CytoError(.shapeMismatch, "pooled blocks: gradient \(featureGradient.shape) is not [\(count), \(d)]")
        }
        var offset = 0
        for (t, a) in zip(outs, additions) {
            let c = t.shape[1], hw = t.shape[2] * t.shape[3]
            a.gradient.resize(t.shape)
            let g = a.gradient.data
            g.update(repeating: 0, count: first * c * hw)
            (g + (first + count) * c * hw).update(repeating: 0, count: (t.shape.batch - first - count) * c * hw)
            for r in 0..<count {
                for k in 0..<c {
                    let v = scale * featureGradient.data[r * d + offset + k] / Float(hw)
                    (g + ((first + r) * c + k) * hw).update(repeating: v, count: hw)
                }
            }
            offset += c
        }
    }
}
