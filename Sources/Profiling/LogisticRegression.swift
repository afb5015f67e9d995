import Foundation
import CBLAS
import CytoCore

/// Binary logistic regression with an L2 penalty on the weights (not the intercept), fitted by
/// Newton's method in double precision. The objective is scikit-learn's:
///     C * Σ_i s_i * log(1 + exp(-y_i (w·x_i + b))) + ½ ||w||²,   y_i ∈ {-1, +1},
/// with per-sample weights s_i (for balanced classes, n / (2 n_class)).
public struct LogisticRegression: Sendable {
    public var weights: [Double]
    public var intercept: Double
    /// Newton steps taken, and whether the gradient fell below the tolerance.
    public var iterations: Int
    public var converged: Bool

    /// Fits on the row-major n x d matrix `x` with labels `y` (true = positive class).
    public static func fit(_ x: [Double], rows n: Int, columns d: Int, labels y: [Bool], sampleWeights s: [Double],
                           C: Double, tolerance: Double = 1e-10, maxIterations: Int = 100) throws -> LogisticRegression {
        precondition(x.count == n * d && y.count == n && s.count == n)
        guard C > 0 else { throw CytoError(.invalidInput, "the inverse regularization C must be positive", field: "C") }
        let p = d + 1                       // weights, then the intercept
        var theta = [Double](repeating: 0, count: p)
        var margin = [Double](repeating: 0, count: n)   // w·x_i + b
        var grad = [Double](repeating: 0, count: p)
        var hess = [Double](repeating: 0, count: p * p)
        var scaled = [Double](repeating: 0, count: n * p)
        var residual = [Double](repeating: 0, count: n)
        let sign = y.map { $0 ? 1.0 : -1.0 }

        func margins(_ t: [Double], into m: inout [Double]) {
            if d > 0 {
                cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(d), 1, x, Int32(d), t, 1, 0, &m, 1)
            } else { for i in 0..<n { m[i] = 0 } }
            for i in 0..<n { m[i] += t[d] }
        }
        func objective(_ t: [Double], _ m: [Double]) -> Double {
            var loss = 0.0
            for i in 0..<n { loss += s[i] * softplus(-sign[i] * m[i]) }
            var r = 0.0
            for j in 0..<d { r += t[j] * t[j] }
            return C * loss + 0.5 * r
        }
        margins(theta, into: &margin)
        var f = objective(theta, margin)
        var iterations = 0
        var converged = false
        var gradient0 = 1.0
        while iterations < maxIterations {
            // Gradient and Hessian of the objective.
            for i in 0..<n {
                let q = sigmoid(margin[i])                 // P(y = +1)
                residual[i] = C * s[i] * (q - (y[i] ? 1 : 0))
                let v = (C * s[i] * q * (1 - q)).squareRoot()
                for j in 0..<d { scaled[i * p + j] = v * x[i * d + j] }
                scaled[i * p + d] = v
            }
            for j in 0..<p { grad[j] = 0 }
            for i in 0..<n {
                let r = residual[i]
                for j in 0..<d { grad[j] += r * x[i * d + j] }
                grad[d] += r
            }
            for j in 0..<d { grad[j] += theta[j] }
            let gmax = grad.map(abs).max() ?? 0
            if iterations == 0 { gradient0 = max(gmax, 1e-300) }
            if gmax <= tolerance * gradient0 { converged = true; break }
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(p), Int32(n), 1, scaled, Int32(p), 0, &hess, Int32(p))
            for j in 0..<d { hess[j * p + j] += 1 }
            for i in 0..<p { for j in 0..<i { hess[i * p + j] = hess[j * p + i] } }
            guard let step = choleskySolve(hess, grad, n: p) else {
                throw CytoError(.internal, "logistic regression: Hessian is not positive definite")
            }
            // Backtracking line search on the objective.
            var alpha = 1.0
            var candidate = theta
            var m = margin
            var fc = f
            var accepted = false
            for _ in 0..<50 {
                for j in 0..<p { candidate[j] = theta[j] - alpha * step[j] }
                margins(candidate, into: &m)
                fc = objective(candidate, m)
                if fc <= f { accepted = true; break }
                alpha *= 0.5
            }
            iterations += 1
            if !accepted { converged = true; break }   // no further decrease at machine precision
            theta = candidate; margin = m; f = fc
            // A step that no longer moves the parameters: the gradient is at its rounding floor.
            let moved = (0..<p).map { abs(alpha * step[$0]) }.max() ?? 0
            if moved <= 1e-13 * (1 + (theta.map(abs).max() ?? 0)) { converged = true; break }
        }
        return LogisticRegression(weights: Array(theta[0..<d]), intercept: theta[d], iterations: iterations, converged: converged)
    }

    /// The decision value w·x + b of each row (positive: predicted positive class).
    public func decision(_ x: [Double], rows n: Int) -> [Double] {
        let d = weights.count
        var m = [Double](repeating: intercept, count: n)
        if d > 0 && n > 0 {
            cblas_dgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(d), 1, x, Int32(d), weights, 1, 1, &m, 1)
        }
        return m
    }
}

@inline(__always) func sigmoid(_ z: Double) -> Double {
    if z >= 0 { return 1 / (1 + Foundation.exp(-z)) }
    let e = Foundation.exp(z)
    return e / (1 + e)
}

/// log(1 + exp(z)) without overflow.
@inline(__always) func softplus(_ z: Double) -> Double {
    z > 0 ? z + Foundation.log1p(Foundation.exp(-z)) : Foundation.log1p(Foundation.exp(z))
}

/// Solves A x = b for a symmetric positive definite A (row-major n x n) by Cholesky; nil if A
/// is not positive definite.
func choleskySolve(_ a: [Double], _ b: [Double], n: Int) -> [Double]? {
    var l = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in 0...i {
            var s = a[i * n + j]
            for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
            if i == j {
                guard s > 0 else { return nil }
                l[i * n + i] = s.squareRoot()
            } else {
                l[i * n + j] = s / l[j * n + j]
            }
        }
    }
    var z = b
    for i in 0..<n {
        var s = z[i]
        for k in 0..<i { s -= l[i * n + k] * z[k] }
        z[i] = s / l[i * n + i]
    }
    for i in stride(from: n - 1, through: 0, by: -1) {
        var s = z[i]
        for k in (i + 1)..<max(n, i + 1) { s -= l[k * n + i] * z[k] }
        z[i] = s / l[i * n + i]
    }
    return z
}
