import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A learning rate with exponential decay: base * rate^(step / every), the exponent rounded
/// down when `staircase` (CytoGAN: rate 0.9999 every 100 steps). `step` counts the updates
/// applied before the current one, as TensorFlow's global step.
public struct LearningRate: Sendable, Equatable {
    public var base: Float
    /// Kept in double precision: 0.9999 as a Float would drift by 1e-4 over 10^6 steps.
    public var decayRate: Double
    public var decaySteps: Int
    public var staircase: Bool

    public init(_ base: Float, decayRate: Double = 1, decaySteps: Int = 100, staircase: Bool = true) {
        precondition(decaySteps > 0)
        self.base = base; self.decayRate = decayRate; self.decaySteps = decaySteps; self.staircase = staircase
    }

    /// The paper's schedule: `base` decayed by 0.9999 every 100 steps (staircase).
    public static func paper(_ base: Float) -> LearningRate { LearningRate(base, decayRate: 0.9999, decaySteps: 100) }

    /// The rate for the update that follows `step` earlier updates.
    public func at(step: Int) -> Float {
        let e = staircase ? Double(step / decaySteps) : Double(step) / Double(decaySteps)
        return Float(Double(base) * pow(decayRate, e))
    }
}

/// Updates a fixed list of parameters from their accumulated gradients. The whole state
/// (`step` and the named moment tensors) can be saved and restored exactly.
public protocol Optimizer: AnyObject {
    var parameters: [Parameter] { get }
    /// Number of updates applied so far.
    var step: Int { get set }
    var learningRate: LearningRate { get set }
    /// Applies one update from the parameters' gradients (which it leaves unchanged) and
    /// increments `step`.
    func update()
    /// The moment tensors, named "<slot>.<parameter name>" (e.g. "m.conv0.weight").
    var stateTensors: [(name: String, tensor: Tensor)] { get }
}

/// Copies `tensors[prefix + name]` into each tensor of `state` once every one has been found
/// with its shape (and passed `problem`, which names what is wrong with a tensor, or returns nil),
/// so a bad file changes nothing. `kind` names the state in errors ("optimizer").
func restoreState(_ state: [(name: String, tensor: Tensor)], from tensors: [String: Tensor], prefix: String, kind: String,
                  problem: (_ name: String, _ tensor: Tensor) -> String? = { _, _ in nil }) throws {
    for (name, t) in state {
        let key = prefix + name
        guard let src = tensors[key] else {
            throw CytoError(.invalidInput, "missing \(kind) tensor '\(key)'", field: key)
        }
        guard src.shape == t.shape else {
            throw CytoError(.shapeMismatch, "\(kind) tensor '\(key)' has shape \(src.shape), expected \(t.shape)", field: key)
        }
        if let p = problem(name, src) { throw CytoError(.invalidInput, "\(kind) tensor '\(key)' \(p)", field: key) }
    }
    for (name, t) in state { t.copy(from: tensors[prefix + name]!) }
}

extension Optimizer {
    /// Restores the moment tensors from `tensors` (names from `stateTensors`, each prefixed by
    /// `prefix`); every one must be present with its shape. Set `step` separately.
    public func loadState(_ tensors: [String: Tensor], prefix: String = "") throws {
        try restoreState(stateTensors, from: tensors, prefix: prefix, kind: "optimizer")
    }

    /// Sets every parameter gradient to zero.
    public func zeroGradients() { for p in parameters { p.grad.fill(0) } }
}

/// Adam (Kingma & Ba, Algorithm 1): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
/// theta -= lr_t * m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t),
/// t the 1-based update number and lr_t the scheduled rate. CytoGAN: b1 = 0.5.
public final class Adam: Optimizer {
    public let parameters: [Parameter]
    public var step = 0
    public var learningRate: LearningRate
    public var beta1: Float, beta2: Float, epsilon: Float
    public let m: [Tensor], v: [Tensor]

    public init(parameters: [Parameter], learningRate: LearningRate, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        m = parameters.map { Tensor($0.value.shape) }
        v = parameters.map { Tensor($0.value.shape) }
    }

    public var stateTensors: [(name: String, tensor: Tensor)] {
        zip(parameters, m).map { ("m.\($0.name)", $1) } + zip(parameters, v).map { ("v.\($0.name)", $1) }
    }

    public func update() {
        let lr = learningRate.at(step: step)
        step += 1
        let c1 = Float(1 - pow(Double(beta1), Double(step))), c2 = Float(1 - pow(Double(beta2), Double(step)))
        let b1 = beta1, b2 = beta2, eps = epsilon
        for (k, p) in parameters.enumerated() {
            let n = p.count, w = p.value.data, g = p.grad.data, mp = m[k].data, vp = v[k].data
            parallelFor(n, work: n) { r in
                for i in r {
                    let gi = g[i]
                    let mi = b1 * mp[i] + (1 - b1) * gi
                    let vi = b2 * vp[i] + (1 - b2) * gi * gi
                    mp[i] = mi; vp[i] = vi
                    w[i] -= lr * (mi / c1) / ((vi / c2).squareRoot() + eps)
                }
            }
        }
    }
}

/// RMSProp: v = rho v + (1 - rho) g^2, theta -= lr * g / (sqrt(v) + eps), v starting at 0.
public final class RMSProp: Optimizer {
    public let parameters: [Parameter]
    public var step = 0
    public var learningRate: LearningRate
    public var rho: Float, epsilon: Float
    public let v: [Tensor]

    public init(parameters: [Parameter], learningRate: LearningRate, rho: Float = 0.9, epsilon: Float = 1e-8) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.rho = rho; self.epsilon = epsilon
        v = parameters.map { Tensor($0.value.shape) }
    }

    public var stateTensors: [(name: String, tensor: Tensor)] { zip(parameters, v).map { ("v.\($0.name)", $1) } }

    public func update() {
        let lr = learningRate.at(step: step)
        step += 1
        let r = rho, eps = epsilon
        for (k, p) in parameters.enumerated() {
            let n = p.count, w = p.value.data, g = p.grad.data, vp = v[k].data
            parallelFor(n, work: n) { range in
                for i in range {
                    let gi = g[i]
                    let vi = r * vp[i] + (1 - r) * gi * gi
                    vp[i] = vi
                    w[i] -= lr * gi / (vi.squareRoot() + eps)
                }
            }
        }
    }
}

/// Stochastic gradient descent, with optional classical momentum: b = mu b + g, theta -= lr b.
public final class SGD: Optimizer {
    public let parameters: [Parameter]
    public var step = 0
    public var learningRate: LearningRate
    public var momentum: Float
    public let velocity: [Tensor]

    public init(parameters: [Parameter], learningRate: LearningRate, momentum: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        velocity = momentum == 0 ? [] : parameters.map { Tensor($0.value.shape) }
    }

    public var stateTensors: [(name: String, tensor: Tensor)] { zip(parameters, velocity).map { ("velocity.\($0.name)", $1) } }

    public func update() {
        let lr = learningRate.at(step: step)
        step += 1
        for (k, p) in parameters.enumerated() {
            let n = p.count, w = p.value.data, g = p.grad.data
            if velocity.isEmpty {
                for i in 0..<n { w[i] -= lr * g[i] }
            } else {
                let b = velocity[k].data, mu = momentum
                for i in 0..<n { b[i] = mu * b[i] + g[i]; w[i] -= lr * b[i] }
            }
        }
    }
}
