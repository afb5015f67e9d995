import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Additive Gaussian noise N(0, std^2) on the input, active only in training mode and when
/// `enabled` (the discriminator's input noise, std 0.1). Draws from its own stream, so noise
/// never shifts another purpose's random numbers; `rng` can be saved and restored.
/// `holdSample` reuses the last drawn noise (the gradient penalty evaluates the critic several
/// times at one noise sample).
///
/// Each forward pass takes one word from `rng` as a key and gives item i of the batch its own
/// stream seeded by (key, i), so items are drawn in parallel and the noise does not depend on
/// the thread count. Values come from Marsaglia's polar method in single precision.
public final class GaussianNoise: Layer {
    public let name: String
    public var kind: String { "GaussianNoise" }
    public var std: Float
    public var enabled = true
    public var training = true
    public var holdSample = false
    public var rng: RandomStream
    /// In data-parallel training, where this process's items sit in the global batch: item i is
    /// seeded by its global index, so the noise matches a single process's (nil: the whole batch).
    public var slice: BatchSlice?

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
            let key = rng.next(), per = x.shape.itemCount, np = noise.data, sd = std, slice = slice
            parallelFor(x.shape.batch, work: x.count * 8) { items in
                for i in items {
                    let g = slice?.globalIndex(i) ?? i
                    var item = RandomStream(seed: key ^ (UInt64(g) &* 0x9E37_79B9_7F4A_7C15), purpose: "noise-item")
                    fillNormal(np + i * per, count: per, std: sd, rng: &item)
                }
            }
        }
        out.resize(x.shape)
        let xp = x.data, np = noise.data, op = out.data
        parallelFor(x.count, work: x.count) { r in for i in r { op[i] = xp[i] + np[i] } }
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
    private var view = ViewOfInput()

    public init(name: String) { self.name = name }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank >= 1 else { throw shapeError("cannot flatten a scalar") }
        return Shape(s.batch, s.itemCount)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        view.forward(x, as: try outputShape(for: x.shape))
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try view.backward(gradOut, of: self, inputGradient: inputGradient)
    }
}

/// Reshapes each item of the batch: [N, ...] -> [N, dims...] with the same number of elements
/// (the generator's dense output to [N, 256, 12, 12]). A view: no copy.
public final class Reshape: Layer {
    public let name: String
    public var kind: String { "Reshape" }
    /// The new shape of one item (without the batch dimension), at most 3 dimensions.
    public let itemDims: [Int]
    private var view = ViewOfInput()

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
        view.forward(x, as: try outputShape(for: x.shape))
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try view.backward(gradOut, of: self, inputGradient: inputGradient)
    }
}

/// What a layer whose output is its input under another shape keeps (Flatten, Reshape): forward
/// and backward alias the tensors and copy nothing.
struct ViewOfInput {
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var inputShape: Shape?

    mutating func forward(_ x: Tensor, as shape: Shape) -> Tensor {
        inputShape = x.shape
        out.alias(x, as: shape)
        return out
    }

    /// The gradient as the input's shape, after `layer` checked it against the last output.
    func backward(_ gradOut: Tensor, of layer: some Layer, inputGradient: Bool) throws -> Tensor? {
        try layer.checkGradient(gradOut, against: inputShape == nil ? nil : out, forwarded: inputShape != nil)
        guard inputGradient, let s = inputShape else { return nil }
        dx.alias(gradOut, as: s)
        return dx
    }
}

/// [N, C, H, W] -> [N, C, H - 2m, W - 2m]: drops `margin` pixels from every side. A generator
/// that draws a slightly larger image and keeps its centre has no zero-padding rim at the edges
/// of what it shows. The backward pass puts the gradient back in the centre, zeros in the rim.
public final class CenterCrop2D: Layer {
    public let name: String
    public var kind: String { "CenterCrop2D" }
    public let margin: Int
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var inputShape: Shape?

    public init(name: String, margin: Int) {
        precondition(margin >= 0)
        self.name = name
        self.margin = margin
    }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 4, s[2] > 2 * margin, s[3] > 2 * margin else {
            throw shapeError("cannot crop \(margin) pixels from each side of \(s)")
        }
        return Shape(s[0], s[1], s[2] - 2 * margin, s[3] - 2 * margin)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        inputShape = x.shape
        out.resize(os)
        let h = x.shape[2], w = x.shape[3], oh = os[2], ow = os[3], m = margin
        let xp = x.data, op = out.data
        parallelFor(os[0] * os[1], work: out.count) { planes in
            for p in planes {
                for y in 0..<oh { (op + (p * oh + y) * ow).update(from: xp + (p * h + y + m) * w + m, count: ow) }
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: inputShape == nil ? nil : out, forwarded: inputShape != nil)
        guard inputGradient, let s = inputShape else { return nil }
        dx.resize(s)
        let h = s[2], w = s[3], oh = h - 2 * margin, ow = w - 2 * margin, m = margin
        let gp = gradOut.data, dp = dx.data
        parallelFor(s[0] * s[1], work: dx.count) { planes in
            for p in planes {
                (dp + p * h * w).update(repeating: 0, count: h * w)
                for y in 0..<oh { (dp + (p * h + y + m) * w + m).update(from: gp + (p * oh + y) * ow, count: ow) }
            }
        }
        return dx
    }
}

/// Fills `count` values with N(0, std^2) by Marsaglia's polar method: pairs (u, v) uniform in
/// the unit disc give u * f and v * f with f = sqrt(-2 ln s / s), s = u^2 + v^2.
func fillNormal(_ p: UnsafeMutablePointer<Float>, count: Int, std: Float, rng: inout RandomStream) {
    var i = 0
    while i < count {
        var u: Float = 0, v: Float = 0, s: Float = 0
        repeat {
            let bits = rng.next()
            u = Float(bits >> 40) * 0x1p-23 - 1           // 24 bits each, in [-1, 1)
            v = Float((bits >> 16) & 0xFF_FFFF) * 0x1p-23 - 1
            s = u * u + v * v
        } while s >= 1 || s == 0
        let f = std * (-2 * logf(s) / s).squareRoot()
        p[i] = u * f
        if i + 1 < count { p[i + 1] = v * f }
        i += 2
    }
}
