import CytoCore

/// A trainable tensor and the gradient accumulated for it. `name` is stable across runs
/// ("conv0.weight"), so optimizers and checkpoints can address it.
public final class Parameter {
    public let name: String
    public let value: Tensor
    public let grad: Tensor

    public init(name: String, shape: Shape) {
        self.name = name
        value = Tensor(shape)
        grad = Tensor(shape)
    }

    /// Number of scalars.
    public var count: Int { value.count }
}

/// Floating-point operations of one layer for a given input shape (a multiply-add counts 2),
/// for the benchmark's GFLOP/s. `effectiveForward` is what the literal computation would cost
/// (differs from `forward` only where the engine takes a shortcut, as the phase convolution).
public struct LayerFLOPs: Sendable {
    public var forward: Double = 0
    public var backwardInput: Double = 0
    public var backwardParameters: Double = 0
    public var effectiveForward: Double = 0
    public init(forward: Double = 0, backwardInput: Double = 0, backwardParameters: Double = 0, effectiveForward: Double? = nil) {
        self.forward = forward; self.backwardInput = backwardInput; self.backwardParameters = backwardParameters
        self.effectiveForward = effectiveForward ?? forward
    }
}

/// Weight initialisation schemes. Biases start at zero, BatchNorm at scale 1 and shift 0.
public enum WeightInit: Sendable, Equatable {
    /// N(0, std^2), the DCGAN default with std 0.02.
    case normal(std: Float)
    /// Glorot (Xavier) uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)).
    case glorotUniform
    /// He (Kaiming) normal: N(0, 2 / fan_in).
    case heNormal

    /// Fills `t` for a weight with the given fans, drawing from `rng`.
    public func fill(_ t: Tensor, fanIn: Int, fanOut: Int, rng: inout RandomStream) {
        switch self {
        case .normal(let std):
            rng.fillNormal(t.buffer, mean: 0, std: std)
        case .glorotUniform:
            let a = (6.0 / Float(max(fanIn + fanOut, 1))).squareRoot()
            for i in 0..<t.count { t.data[i] = rng.uniform(-a, a) }
        case .heNormal:
            rng.fillNormal(t.buffer, mean: 0, std: (2.0 / Float(max(fanIn, 1))).squareRoot())
        }
    }
}

/// One layer of a network, in the manner of llm.c: `forward` writes into a buffer the layer
/// owns (sized once per input shape and reused), `backward` takes the gradient of the loss
/// w.r.t. that output, ADDS the parameter gradients into `Parameter.grad`, and returns the
/// gradient w.r.t. the input (again a buffer the layer owns). The input given to `forward`
/// must stay unchanged until the matching `backward`.
public protocol Layer: AnyObject {
    /// Unique within its network; prefixes parameter names ("conv0" -> "conv0.weight").
    var name: String { get }
    /// The type, for messages and benchmarks ("Conv2D").
    var kind: String { get }
    /// Training mode (batch statistics, noise on) or inference mode.
    var training: Bool { get set }
    /// Trainable parameters with their gradients.
    var parameters: [Parameter] { get }
    /// Non-trainable state saved in checkpoints (BatchNorm running statistics).
    var stateTensors: [(name: String, tensor: Tensor)] { get }
    /// The output for an input shape, or a shape-mismatch error naming the layer.
    func outputShape(for input: Shape) throws -> Shape
    /// Computes the output (the layer's own buffer).
    func forward(_ x: Tensor) throws -> Tensor
    /// Back-propagates `gradOut` (shaped like the last output). Returns the input gradient,
    /// or nil when `inputGradient` is false; adds parameter gradients when asked.
    func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor?
    /// Re-initialises parameters (and resets state) with `scheme`.
    func initialize(_ scheme: WeightInit, rng: inout RandomStream)
    /// FLOPs for an input shape (benchmarks).
    func flops(for input: Shape) -> LayerFLOPs
}

extension Layer {
    public var training: Bool { get { false } set {} }
    public var parameters: [Parameter] { [] }
    public var stateTensors: [(name: String, tensor: Tensor)] { [] }
    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {}
    public func flops(for input: Shape) -> LayerFLOPs { LayerFLOPs() }

    /// Back-propagates and returns the input gradient, accumulating parameter gradients.
    public func backward(_ gradOut: Tensor) throws -> Tensor {
        guard let g = try backward(gradOut, inputGradient: true, parameterGradients: true) else {
            throw CytoError(.internal, "layer '\(name)' (\(kind)) returned no input gradient")
        }
        return g
    }

    /// A shape-mismatch error naming this layer: "layer 'conv0' (Conv2D): <message>".
    func shapeError(_ message: String) -> CytoError {
        CytoError(.shapeMismatch, "layer '\(name)' (\(kind)): \(message)", field: name)
    }

    /// Checks that `gradOut` matches the last output and that a forward happened.
    func checkGradient(_ gradOut: Tensor, against output: Tensor?, forwarded: Bool) throws {
        guard forwarded, let output else {
            throw CytoError(.invalidInput, "layer '\(name)' (\(kind)): backward called before forward", field: name)
        }
        guard gradOut.shape == output.shape else {
            throw shapeError("gradient \(gradOut.shape) does not match the output \(output.shape)")
        }
    }
}
