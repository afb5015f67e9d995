import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Batch normalisation over channels of NCHW input (statistics over N, H, W) or over the
/// features of [N, F] input (statistics over N).
///
/// Training: y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta with the batch's mean and
/// BIASED variance (divided by the count m), as Keras and PyTorch normalise. The running
/// statistics are then updated as running = momentum * running + (1 - momentum) * batch, where
/// the variance that enters `running_var` is the UNBIASED batch variance (times m / (m - 1)), as
/// PyTorch and TensorFlow's fused kernel do, so a checkpoint behaves the same in PyTorch.
/// Inference: the running statistics replace the batch's. Defaults are the paper's (Keras):
/// momentum 0.9, epsilon 1e-3. With a `collective` the statistics are synchronized over ranks
/// (data-parallel training). Parameters "weight" (gamma) and "bias" (beta), state
/// "running_mean" and "running_var" (PyTorch's names).
public final class BatchNorm: Layer {
    public let name: String
    public var kind: String { "BatchNorm" }
    public let features: Int
    public var momentum: Float
    public var epsilon: Float
    public var training = true
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Tensor
    public let runningVar: Tensor
    /// Synchronized BatchNorm: when set (and of more than one rank), the batch statistics and the
    /// backward pass's per-channel sums are taken over the items of every rank, so N ranks with
    /// B/N items each normalize exactly as one process with the batch of B.
    public var collective: (any Collective)?

    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private let mean = Tensor(Shape(0))
    private let invStd = Tensor(Shape(0))
    /// Per-channel sums exchanged with the other ranks: [sum | count | squared deviations] in the
    /// forward pass, [sum dy | sum dy xhat] in the backward pass (allocated once).
    private let stats: UnsafeMutablePointer<Double>
    /// Values per channel behind the last training forward's statistics (over all ranks).
    private var statisticsCount = 0.0
    private var input: Tensor?
    private var forwarded = false
    private var forwardTraining = true

    public init(name: String, features: Int, momentum: Float = 0.9, epsilon: Float = 1e-3) {
        precondition(features > 0)
        self.name = name
        self.features = features
        self.momentum = momentum
        self.epsilon = epsilon
        weight = Parameter(name: "\(name).weight", shape: Shape(features))
        bias = Parameter(name: "\(name).bias", shape: Shape(features))
        runningMean = Tensor(Shape(features))
        runningVar = Tensor(Shape(features), repeating: 1)
        weight.value.fill(1)
        mean.resize(Shape(features))
        invStd.resize(Shape(features))
        stats = UnsafeMutablePointer<Double>.allocate(capacity: 2 * features + 1)
        stats.initialize(repeating: 0, count: 2 * features + 1)
    }

    deinit { stats.deallocate() }

    public var parameters: [Parameter] { [weight, bias] }
    public var stateTensors: [(name: String, tensor: Tensor)] {
        [("\(name).running_mean", runningMean), ("\(name).running_var", runningVar)]
    }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {
        weight.value.fill(1); bias.value.fill(0)
        runningMean.fill(0); runningVar.fill(1)
    }

    public func outputShape(for s: Shape) throws -> Shape {
        guard (s.rank == 2 || s.rank == 4), s[1] == features else {
            throw shapeError("expected input [N, \(features)] or [N, \(features), H, W], got \(s)")
        }
        return s
    }

    /// (batch, inner) of an input: element (n, c, j) is at (n * features + c) * inner + j.
    private func layout(_ s: Shape) -> (Int, Int) { (s[0], s.rank == 4 ? s[2] * s[3] : 1) }

    public func forward(_ x: Tensor) throws -> Tensor {
        let s = try outputShape(for: x.shape)
        let (n, inner) = layout(s)
        let m = n * inner
        if training && m < 2 {
            throw shapeError("training needs more than one value per feature, got input \(s)")
        }
        out.resize(s)
        input = x
        forwarded = true
        forwardTraining = training
        let C = features
        let xp = x.data, yp = out.data, mp = mean.data, ip = invStd.data
        let gamma = weight.value.data, beta = bias.value.data
        let rm = runningMean.data, rv = runningVar.data
        let eps = Double(epsilon), mom = momentum
        let st = stats
        if training {
            // Phase 1: per-channel sums (and the count), summed over the ranks when synchronized.
            parallelFor(C, work: s.count) { range in
                for c in range {
                    var sum = 0.0
                    for i in 0..<n {
                        let p = xp + (i * C + c) * inner
                        sum += Double(laneSum(p, inner))
                    }
                    st[c] = sum
                }
            }
            st[C] = Double(m)
            try reduce(st, count: C + 1)
            let total = st[C]
            statisticsCount = total
            for c in 0..<C { mp[c] = Float(st[c] / total) }
            // Phase 2: squared deviations about the (global) mean.
            parallelFor(C, work: s.count) { range in
                for c in range {
                    let muF = mp[c]
                    var sq = 0.0
                    for i in 0..<n {
                        let p = xp + (i * C + c) * inner
                        sq += Double(laneSquaredDeviation(p, inner, from: muF))
                    }
                    st[C + 1 + c] = sq
                }
            }
            try reduce(st + C + 1, count: C)
            for c in 0..<C {
                let mu = st[c] / total, variance = st[C + 1 + c] / total
                rm[c] = mom * rm[c] + (1 - mom) * Float(mu)
                rv[c] = mom * rv[c] + (1 - mom) * Float(variance * total / (total - 1))
                ip[c] = Float(1.0 / (variance + eps).squareRoot())
            }
        } else {
            for c in 0..<C { mp[c] = rm[c]; ip[c] = Float(1.0 / (Double(rv[c]) + eps).squareRoot()) }
        }
        // Phase 3: normalize.
        parallelFor(C, work: s.count) { range in
            for c in range {
                let scale = gamma[c] * ip[c], shift = beta[c] - mp[c] * scale
                for i in 0..<n {
                    let p = xp + (i * C + c) * inner, q = yp + (i * C + c) * inner
                    for j in 0..<inner { q[j] = p[j] * scale + shift }
                }
            }
        }
        return out
    }

    /// Sums `count` statistics over the collective's ranks (nothing alone).
    private func reduce(_ p: UnsafeMutablePointer<Double>, count: Int) throws {
        guard let collective, collective.size > 1 else { return }
        try collective.allreduceSum(p, count: count)
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        let s = x.shape
        let (n, inner) = layout(s)
        let C = features
        if inputGradient { dx.resize(s) }
        let xp = x.data, gp = gradOut.data, dp = dx.data, mp = mean.data, ip = invStd.data
        let gamma = weight.value.data, dg = weight.grad.data, db = bias.grad.data
        let wasTraining = forwardTraining
        let st = stats
        // Phase 1: this process's sum(dy) and sum(dy * xhat) per channel; they are its share of
        // the parameter gradients (which the caller sums over the ranks with the others).
        parallelFor(C, work: s.count) { range in
            for c in range {
                let mu = mp[c], inv = ip[c]
                var sumDy = 0.0, sumDyXhat = 0.0
                for i in 0..<n {
                    let p = xp + (i * C + c) * inner, g = gp + (i * C + c) * inner
                    let (a, b) = laneSumAndMoment(g, p, inner, center: mu)
                    sumDy += Double(a); sumDyXhat += Double(b)
                }
                sumDyXhat *= Double(inv)
                if parameterGradients {
                    dg[c] += Float(sumDyXhat)
                    db[c] += Float(sumDy)
                }
                st[c] = sumDy; st[C + c] = sumDyXhat
            }
        }
        guard inputGradient else { return nil }
        // Phase 2: the input gradient needs the sums over the whole (global) batch.
        if wasTraining { try reduce(st, count: 2 * C) }
        let m = Float(wasTraining ? statisticsCount : Double(n * inner))
        parallelFor(C, work: s.count) { range in
            for c in range {
                let mu = mp[c], inv = ip[c]
                let k = gamma[c] * inv
                if wasTraining {
                    // dx = gamma * inv / m * (m * dy - sum(dy) - xhat * sum(dy * xhat))
                    let meanDy = Float(st[c]) / m, meanDyXhat = Float(st[C + c]) / m
                    for i in 0..<n {
                        let p = xp + (i * C + c) * inner, g = gp + (i * C + c) * inner, d = dp + (i * C + c) * inner
                        for j in 0..<inner {
                            let xhat = (p[j] - mu) * inv
                            d[j] = k * (g[j] - meanDy - xhat * meanDyXhat)
                        }
                    }
                } else {
                    for i in 0..<n {
                        let g = gp + (i * C + c) * inner, d = dp + (i * C + c) * inner
                        for j in 0..<inner { d[j] = k * g[j] }
                    }
                }
            }
        }
        return dx
    }
}
