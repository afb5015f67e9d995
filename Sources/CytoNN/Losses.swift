import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Losses over a batch of predictions: each returns the mean loss and writes d(loss)/d(prediction)
/// into `gradient` (resized to the prediction's shape; no allocation once sized). Sums are
/// taken in double precision.
public enum Loss {
    private static func check(_ name: String, _ p: Tensor, _ t: Tensor) throws {
        guard p.shape == t.shape else {
            throw CytoError(.shapeMismatch, "\(name): prediction \(p.shape) and targets \(t.shape) differ")
        }
        guard p.count > 0 else { throw CytoError(.invalidInput, "\(name): empty batch") }
    }

    /// Binary cross-entropy of sigmoid(logits) against targets in [0, 1], from the logits:
    /// mean of max(z, 0) - z t + log(1 + exp(-|z|)); gradient (sigmoid(z) - t) / count.
    public static func binaryCrossEntropy(logits: Tensor, targets: Tensor, gradient: Tensor) throws -> Float {
        try check("binary cross-entropy", logits, targets)
        gradient.resize(logits.shape)
        let n = logits.count, z = logits.data, t = targets.data, g = gradient.data
        let inv = 1 / Float(n)
        var sum = 0.0
        for i in 0..<n {
            let zi = z[i], ti = t[i]
            sum += Double(max(zi, 0) - zi * ti + log1pf(expf(-abs(zi))))
            g[i] = (sigmoid(zi) - ti) * inv
        }
        return Float(sum / Double(n))
    }

    /// Mean squared error, mean (p - t)^2; gradient 2 (p - t) / count.
    public static func meanSquaredError(_ prediction: Tensor, targets: Tensor, gradient: Tensor) throws -> Float {
        try check("mean squared error", prediction, targets)
        gradient.resize(prediction.shape)
        let n = prediction.count, p = prediction.data, t = targets.data, g = gradient.data
        let k = 2 / Float(n)
        var sum = 0.0
        for i in 0..<n {
            let d = p[i] - t[i]
            sum += Double(d) * Double(d)
            g[i] = k * d
        }
        return Float(sum / Double(n))
    }

    /// Wasserstein critic loss: mean score of the fakes (label 0) minus mean score of the reals
    /// (label 1). With all labels 1 it is the generator's loss, -mean D(G(z)). Labels must be 0 or 1.
    public static func wasserstein(scores: Tensor, labels: Tensor, gradient: Tensor) throws -> Float {
        try check("Wasserstein loss", scores, labels)
        gradient.resize(scores.shape)
        let n = scores.count, s = scores.data, l = labels.data, g = gradient.data
        var nReal = 0
        for i in 0..<n {
            guard l[i] == 0 || l[i] == 1 else {
                throw CytoError(.invalidInput, "Wasserstein loss: label \(l[i]) at item \(i) is neither 0 (fake) nor 1 (real)", index: i)
            }
            if l[i] == 1 { nReal += 1 }
        }
        let nFake = n - nReal
        var real = 0.0, fake = 0.0
        for i in 0..<n {
            if l[i] == 1 { real += Double(s[i]); g[i] = -1 / Float(nReal) } else { fake += Double(s[i]); g[i] = 1 / Float(nFake) }
        }
        let lossFake = nFake > 0 ? fake / Double(nFake) : 0
        let lossReal = nReal > 0 ? real / Double(nReal) : 0
        return Float(lossFake - lossReal)
    }
}

/// A gradient penalty, weight * mean_i (||grad_x D(x_i)|| - centre)^2 over the items of a batch x,
/// and its gradient w.r.t. the critic's parameters: WGAN-GP's (centre 1, at interpolates of real
/// and generated items) or R1 (centre 0 at real items: weight gamma / 2, Mescheder et al. 2018).
///
/// That gradient needs second derivatives of D. With u_i = dP/d(grad_x D(x_i)) held fixed,
/// grad_theta P = grad_theta sum_i u_i . grad_x D(x_i), a Hessian-vector product, which is taken
/// as a central finite difference along x: with v = u / ||u|| and step h,
///   grad_theta P ~ ||u|| * (grad_theta sum D(x + h v) - grad_theta sum D(x - h v)) / (2 h).
/// For a critic made of convolutions, LeakyReLU and dense layers, D is piecewise linear in x, so
/// the difference is exact up to rounding unless a LeakyReLU changes side within h; its accuracy
/// against a full finite difference of the penalty is shown in the tests. Cost: one forward and
/// backward for grad_x D, and two forwards and backwards for the product. The critic's noise
/// layers keep one sample across the three evaluations (and hold none afterwards). A critic mixing items of a batch
/// (BatchNorm in training mode) is refused: per-item gradients would not be separable.
public final class GradientPenalty {
    /// The penalty's weight (lambda, 10 in WGAN-GP).
    public var weight: Float
    /// The gradient norm the penalty pulls towards: 1 (WGAN-GP) or 0 (R1).
    public var centre: Float
    /// Finite-difference step per element of x: h = step * sqrt(number of elements of x).
    public var step: Float

    private let ones = Tensor(Shape(0))
    private let gradX = Tensor(Shape(0))
    private let shifted = Tensor(Shape(0))
    private let direction = Tensor(Shape(0))
    private let scaled = Tensor(Shape(0))

    public init(weight: Float = 10, centre: Float = 1, step: Float = 1e-3) {
        self.weight = weight
        self.centre = centre
        self.step = step
    }

    /// What one evaluation found.
    public struct Result: Sendable {
        /// weight * mean (||g|| - centre)^2.
        public var penalty: Float
        /// Mean over the batch of ||grad_x D||.
        public var meanGradientNorm: Float
    }

    /// Evaluates the penalty of `critic` at `x` and ADDS its gradient w.r.t. the
    /// critic's parameters into their `grad`. Leaves the critic's buffers holding the last
    /// evaluation, so run it after back-propagating the critic's main loss. `x` is not changed.
    public func accumulate(critic: Network, at x: Tensor) throws -> Result {
        guard !critic.mixesBatch else {
            throw CytoError(.unsupported, "gradient penalty: the critic has BatchNorm in training mode, which mixes the items of a batch")
        }
        let out = try critic.forward(x)
        let b = x.shape.batch
        guard out.shape.rank >= 1, out.shape.batch == b, out.shape.itemCount == 1 else {
            throw CytoError(.shapeMismatch, "gradient penalty: the critic's output \(out.shape) is not one score per item of \(x.shape)")
        }
        for l in critic.layers { (l as? GaussianNoise)?.holdSample = true }
        defer { for l in critic.layers { (l as? GaussianNoise)?.holdSample = false } }

        ones.resize(out.shape)
        ones.fill(1)
        let g = try critic.backward(ones, inputGradient: true, parameterGradients: false)!
        gradX.copy(from: g)

        // Per item: norm, penalty term, and u_i = weight * 2/B * (n_i - c) / n_i * g_i.
        let per = x.shape.itemCount
        direction.resize(x.shape)
        let gp = gradX.data, up = direction.data
        let c = Double(centre)
        var penalty = 0.0, normSum = 0.0, uNorm2 = 0.0
        for i in 0..<b {
            var s = 0.0
            for j in 0..<per { let v = Double(gp[i * per + j]); s += v * v }
            let norm = s.squareRoot()
            normSum += norm
            penalty += (norm - c) * (norm - c)
            let k = norm > 0 ? Double(weight) * 2 / Double(b) * (norm - c) / norm : 0
            for j in 0..<per { up[i * per + j] = Float(k * Double(gp[i * per + j])) }
            uNorm2 += k * k * s
        }
        let result = Result(penalty: Float(Double(weight) * penalty / Double(b)), meanGradientNorm: Float(normSum / Double(b)))
        let uNorm = uNorm2.squareRoot()
        guard uNorm > 0 else { return result }

        let h = Double(step) * Double(x.count).squareRoot()
        let invU = Float(1 / uNorm)
        for i in 0..<x.count { up[i] *= invU }
        scaled.resize(out.shape)
        shifted.resize(x.shape)
        for side in 0..<2 {
            let sign: Float = side == 0 ? 1 : -1
            let xp = x.data, sp = shifted.data
            let hs = Float(h) * sign
            for i in 0..<x.count { sp[i] = xp[i] + hs * up[i] }
            _ = try critic.forward(shifted)
            scaled.fill(sign * Float(uNorm / (2 * h)))
            _ = try critic.backward(scaled, inputGradient: false, parameterGradients: true)
        }
        return result
    }
}
