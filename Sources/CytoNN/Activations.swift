import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shared body of the element-wise activations: output and input-gradient buffers, the
/// shape bookkeeping, and a parallel loop over elements.
public class ElementwiseLayer {
    public let name: String
    let out = Tensor(Shape(0))
    let dx = Tensor(Shape(0))
    var input: Tensor?
    var forwarded = false

    init(name: String) { self.name = name }

    public func outputShape(for input: Shape) throws -> Shape { input }

    /// Applies `f` to every element of x into the output buffer.
    func map(_ x: Tensor, _ f: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        out.resize(x.shape)
        input = x
        forwarded = true
        let n = x.count, xp = UnsafePointer(x.data), yp = out.data
        parallelFor(n, work: n) { r in f(xp + r.lowerBound, yp + r.lowerBound, r.count) }
        return out
    }

    /// dx = g(x, y, dy) element-wise.
    func mapGradient(_ gradOut: Tensor, _ f: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        dx.resize(out.shape)
        let n = out.count
        let xp = UnsafePointer(input!.data), yp = UnsafePointer(out.data), gp = UnsafePointer(gradOut.data), dp = dx.data
        parallelFor(n, work: n) { r in
            let lo = r.lowerBound
            f(xp + lo, yp + lo, gp + lo, dp + lo, r.count)
        }
        return dx
    }
}

/// LeakyReLU: y = x for x > 0, alpha * x otherwise (alpha 0.2 in CytoGAN).
public final class LeakyReLU: ElementwiseLayer, Layer {
    public var kind: String { "LeakyReLU" }
    public let alpha: Float
    public init(name: String, alpha: Float = 0.2) { self.alpha = alpha; super.init(name: name) }

    public func forward(_ x: Tensor) throws -> Tensor {
        let a = alpha
        return map(x) { x, y, n in for i in 0..<n { let v = x[i]; y[i] = v > 0 ? v : a * v } }
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard inputGradient else { return nil }
        let a = alpha
        return mapGradient(gradOut) { x, _, g, d, n in for i in 0..<n { d[i] = x[i] > 0 ? g[i] : a * g[i] } }
    }
}

/// ReLU: y = max(x, 0).
public final class ReLU: ElementwiseLayer, Layer {
    public var kind: String { "ReLU" }
    public override init(name: String) { super.init(name: name) }

    public func forward(_ x: Tensor) throws -> Tensor {
        map(x) { x, y, n in for i in 0..<n { y[i] = max(x[i], 0) } }
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard inputGradient else { return nil }
        return mapGradient(gradOut) { x, _, g, d, n in for i in 0..<n { d[i] = x[i] > 0 ? g[i] : 0 } }
    }
}

/// Hyperbolic tangent (the generator's output), as 1 - 2 / (exp(2x) + 1): one exponential
/// instead of libm's tanhf, within 1.2e-7 of the exact value.
public final class Tanh: ElementwiseLayer, Layer {
    public var kind: String { "Tanh" }
    /// Backward only: where the incoming gradient would move an output back towards 0 (y g > 0),
    /// the slope 1 - y^2 is taken as at least this, so outputs saturated at -1 or 1 can still
    /// leave (0: the exact derivative everywhere).
    public var inwardGradientFloor: Float = 0
    public override init(name: String) { super.init(name: name) }

    public func forward(_ x: Tensor) throws -> Tensor {
        map(x) { x, y, n in for i in 0..<n { y[i] = 1 - 2 / (expf(2 * x[i]) + 1) } }
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard inputGradient else { return nil }
        let floor = inwardGradientFloor
        guard floor > 0 else {
            return mapGradient(gradOut) { _, y, g, d, n in for i in 0..<n { d[i] = g[i] * (1 - y[i] * y[i]) } }
        }
        return mapGradient(gradOut) { _, y, g, d, n in
            for i in 0..<n {
                let slope = 1 - y[i] * y[i]
                d[i] = g[i] * (y[i] * g[i] > 0 ? max(slope, floor) : slope)
            }
        }
    }
}

/// Logistic sigmoid, 1 / (1 + exp(-x)), computed without overflow for large |x|.
public final class Sigmoid: ElementwiseLayer, Layer {
    public var kind: String { "Sigmoid" }
    public override init(name: String) { super.init(name: name) }

    public func forward(_ x: Tensor) throws -> Tensor {
        map(x) { x, y, n in for i in 0..<n { y[i] = sigmoid(x[i]) } }
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard inputGradient else { return nil }
        return mapGradient(gradOut) { _, y, g, d, n in for i in 0..<n { d[i] = g[i] * y[i] * (1 - y[i]) } }
    }
}

/// Logistic sigmoid of one value, stable for large |x|.
@inline(__always)
public func sigmoid(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}
