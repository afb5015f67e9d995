import CytoCore

/// Spectral normalization (Miyato et al. 2018) of weight tensors: each weight is used as
/// W = V / sigma(V), where V is what the optimizer updates and sigma(V) its largest singular
/// value (the tensor seen as a matrix of its first dimension's rows), estimated by one power
/// iteration per update with the singular vectors carried from update to update.
///
/// The parameter's `value` always holds the normalized W (what forward passes use and
/// checkpoints store); V is held only during the optimizer's update:
/// `prepareUpdate` turns dL/dW into dL/dV = (G - <G, W> u v^T) / sigma and scales W back to V,
/// `finishUpdate` runs the power iteration on the updated V and divides it by its new sigma.
public final class SpectralNormalization {
    private struct Entry {
        let parameter: Parameter
        let rows: Int
        let cols: Int
        /// Left and right singular vectors of the last power iteration, and the singular value.
        let u: Tensor
        let v: Tensor
        let sigma: Tensor
    }
    private let entries: [Entry]

    /// Normalizes `parameters` in place (their current values taken as V), after `iterations`
    /// power iterations from a random start drawn from `rng`.
    public init(parameters: [Parameter], rng: inout RandomStream, iterations: Int = 100) {
        entries = parameters.map { p in
            let rows = p.value.shape[0]
            let cols = p.value.count / max(rows, 1)
            let u = Tensor(Shape(rows))
            for i in 0..<rows { u.data[i] = rng.normal() }
            return Entry(parameter: p, rows: rows, cols: cols, u: u, v: Tensor(Shape(cols)), sigma: Tensor(Shape(1), repeating: 1))
        }
        for e in entries {
            SpectralNormalization.normalize(e.u.data, e.rows)
            for _ in 0..<iterations { powerIteration(e) }
            divide(e)
        }
    }

    /// The current estimate of each weight's largest singular value before normalization.
    public var sigmas: [(name: String, sigma: Float)] { entries.map { ($0.parameter.name, $0.sigma.data[0]) } }

    /// The state a checkpoint keeps for an exact resume, named "<slot>.<parameter name>":
    /// the singular vectors `u` and `v` and the singular value `sigma` of each weight.
    public var stateTensors: [(name: String, tensor: Tensor)] {
        entries.flatMap { e in [("u." + e.parameter.name, e.u), ("v." + e.parameter.name, e.v), ("sigma." + e.parameter.name, e.sigma)] }
    }

    /// Restores `stateTensors` from `tensors` (each name prefixed by `prefix`); every one must be
    /// present with its shape and finite, each sigma positive.
    public func loadState(_ tensors: [String: Tensor], prefix: String = "") throws {
        try restoreState(stateTensors, from: tensors, prefix: prefix, kind: "spectral normalization") { name, t in
            let finite = (0..<t.count).allSatisfy { t.data[$0].isFinite }
            return finite && (!name.hasPrefix("sigma.") || t.data[0] > 0) ? nil : "must be finite (a sigma positive)"
        }
    }

    /// Before the optimizer's update: gradients with respect to W become gradients with respect
    /// to V, and each value becomes V.
    public func prepareUpdate() {
        for e in entries {
            let w = e.parameter.value.data, g = e.parameter.grad.data
            let r = e.rows, c = e.cols
            var dot: Float = 0
            for k in 0..<(r * c) { dot += g[k] * w[k] }
            let s = e.sigma.data[0], inv = 1 / s, u = e.u.data, v = e.v.data
            for i in 0..<r {
                let a = dot * u[i]
                let gi = g + i * c
                for j in 0..<c { gi[j] = (gi[j] - a * v[j]) * inv }
            }
            for k in 0..<(r * c) { w[k] *= s }
        }
    }

    /// After the optimizer's update: one power iteration on each V, which is then divided by
    /// its largest singular value.
    public func finishUpdate() {
        for e in entries {
            powerIteration(e)
            divide(e)
        }
    }

    /// v = normalize(V^T u); u = V v; sigma = |u|; u /= sigma.
    private func powerIteration(_ e: Entry) {
        let w = e.parameter.value.data, r = e.rows, c = e.cols, u = e.u.data, v = e.v.data
        for j in 0..<c { v[j] = 0 }
        for k in 0..<r {
            let uk = u[k], wk = w + k * c
            for j in 0..<c { v[j] += uk * wk[j] }
        }
        SpectralNormalization.normalize(v, c)
        var s: Float = 0
        for k in 0..<r {
            let wk = w + k * c
            var acc: Float = 0
            for j in 0..<c { acc += wk[j] * v[j] }
            u[k] = acc
            s += acc * acc
        }
        s = s.squareRoot()
        if s > 0 { for k in 0..<r { u[k] /= s } }
        e.sigma.data[0] = s > 0 ? s : 1
    }

    private func divide(_ e: Entry) {
        let w = e.parameter.value.data, inv = 1 / e.sigma.data[0]
        for k in 0..<(e.rows * e.cols) { w[k] *= inv }
    }

    private static func normalize(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        var s: Float = 0
        for k in 0..<n { s += x[k] * x[k] }
        s = s.squareRoot()
        if s > 0 { for k in 0..<n { x[k] /= s } }
    }
}
