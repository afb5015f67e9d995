import CytoCore

/// Additive Gaussian noise N(0, std^2) on the input, active only in training mode and when
/// `enabled` (the discriminator's input noise, std 0.1). Draws from its own stream, so noise
/// never shifts another purpose's random numbers; `rng` can be saved and restored.
/// `holdSample` reuses the last drawn noise (the gradient penalty evaluates the critic several
/// times at one noise sample).
public final class GaussianNoise: Layer {
    public let name: String
    public var kind: String { "GaussianNoise" }
    public var std: Float
    public var enabled = true
    public var training = true
    public var holdSample = false
    public var rng: RandomStream

    private let noise = Tensor(Shape(0))
    private let out = Tensor(Shape(0))
    private var lastOutput: Tensor?
    private var forwarded = false

    public init(name: String, std: Float, rng: RandomStream) {
        self.name = name
        self.std = std
        self.rng = rng
    }

    /// True when the next forward adds noise.
    public var isActive: Bool { enabled && training && std > 0 }

    public func outputShape(for input: Shape) throws -> Shape { input }

    public func forward(_ x: Tensor) throws -> Tensor {
        forwarded = true
        guard isActive else { lastOutput = x; return x }
        if !holdSample || noise.shape != x.shape {
            noise.resize(x.shape)
            rng.fillNormal(noise.buffer, mean: 0, std: std)
        }
        out.resize(x.shape)
        let xp = x.data, np = noise.data, op = out.data
        for i in 0..<x.count { op[i] = xp[i] + np[i] }
        lastOutput = out
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: lastOutput, forwarded: forwarded)
        return inputGradient ? gradOut : nil
    }
}

/// [N, C, H, W] -> [N, C * H * W] (row-major, so the order matches PyTorch's flatten). A view:
/// no copy, forward or backward.
public final class Flatten: Layer {
    public let name: String
    public var kind: String { "Flatten" }
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var inputShape: Shape?

    public init(name: String) { self.name = name }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank >= 1 else { throw shapeError("cannot flatten a scalar") }
        return Shape(s.batch, s.itemCount)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        inputShape = x.shape
        out.alias(x, as: os)
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: inputShape == nil ? nil : out, forwarded: inputShape != nil)
        guard inputGradient, let s = inputShape else { return nil }
        dx.alias(gradOut, as: s)
        return dx
    }
}

/// Reshapes each item of the batch: [N, ...] -> [N, dims...] with the same number of elements
/// (the generator's dense output to [N, 256, 12, 12]). A view: no copy.
public final class Reshape: Layer {
    public let name: String
    public var kind: String { "Reshape" }
    /// The new shape of one item (without the batch dimension), at most 3 dimensions.
    public let itemDims: [Int]
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var inputShape: Shape?

    public init(name: String, to itemDims: [Int]) {
        precondition(itemDims.count >= 1 && itemDims.count <= 3 && itemDims.allSatisfy { $0 > 0 })
        self.name = name
        self.itemDims = itemDims
    }

    public func outputShape(for s: Shape) throws -> Shape {
        let per = itemDims.reduce(1, *)
        guard s.rank >= 1, s.itemCount == per else {
            throw shapeError("cannot reshape \(s) to [N, \(itemDims.map(String.init).joined(separator: ", "))]")
        }
        switch itemDims.count {
        case 1: return Shape(s.batch, itemDims[0])
        case 2: return Shape(s.batch, itemDims[0], itemDims[1])
        default: return Shape(s.batch, itemDims[0], itemDims[1], itemDims[2])
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        inputShape = x.shape
        out.alias(x, as: os)
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: inputShape == nil ? nil : out, forwarded: inputShape != nil)
        guard inputGradient, let s = inputShape else { return nil }
        dx.alias(gradOut, as: s)
        return dx
    }
}
