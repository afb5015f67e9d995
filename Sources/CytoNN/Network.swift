import CytoCore

/// A feed-forward chain of layers with stable names: forward (whole or up to a named layer),
/// backward (to the input, with or without parameter gradients), named parameters and state for
/// optimizers and checkpoints, and each layer's last output for features.
public final class Network {
    public let layers: [any Layer]
    private var outputs: [Tensor?]
    private var lastRun = -1
    /// Index of the first layer holding parameters (backward can stop there when the input
    /// gradient is not wanted).
    private let firstTrainable: Int
    private let indexByName: [String: Int]

    /// A network of `layers`, whose names must be unique.
    public init(_ layers: [any Layer]) throws {
        var index: [String: Int] = [:]
        for (i, l) in layers.enumerated() {
            if index[l.name] != nil { throw CytoError(.invalidInput, "two layers are named '\(l.name)'", field: l.name) }
            index[l.name] = i
        }
        self.layers = layers
        indexByName = index
        outputs = Array(repeating: nil, count: layers.count)
        firstTrainable = layers.firstIndex { !$0.parameters.isEmpty } ?? layers.count
        parameters = layers.flatMap { $0.parameters }
        stateTensors = layers.flatMap { $0.stateTensors }
    }

    /// Training mode (batch statistics, noise) or inference mode, for every layer.
    public var training: Bool = true {
        didSet { for l in layers { l.training = training } }
    }

    /// Trainable parameters, in layer order ("conv0.weight", "conv0.bias", ...).
    public let parameters: [Parameter]

    /// Number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Non-trainable state (BatchNorm running statistics), in layer order.
    public let stateTensors: [(name: String, tensor: Tensor)]

    /// Everything a checkpoint needs: parameter values then state, with their stable names.
    public var namedTensors: [(name: String, tensor: Tensor)] {
        parameters.map { ($0.name, $0.value) } + stateTensors
    }

    /// The layer called `name`.
    public func layer(named name: String) -> (any Layer)? { indexByName[name].map { layers[$0] } }

    /// Position of the layer called `name`.
    public func index(of name: String) -> Int? { indexByName[name] }

    /// The output shape for an input shape (or the error of the first layer that rejects it).
    public func outputShape(for input: Shape, through name: String? = nil) throws -> Shape {
        let end = try endIndex(name)
        var s = input
        for i in 0...end { s = try layers[i].outputShape(for: s) }
        return s
    }

    private func endIndex(_ name: String?) throws -> Int {
        guard let name else { return layers.count - 1 }
        guard let i = indexByName[name] else { throw CytoError(.invalidInput, "no layer named '\(name)'", field: name) }
        return i
    }

    /// Runs every layer; returns the last output (a buffer of the network, valid until the next call).
    public func forward(_ x: Tensor) throws -> Tensor { try forward(x, through: nil) }

    /// Runs the layers up to and including `name` (all when nil) and returns that layer's output.
    /// A following `backward` starts at that layer.
    public func forward(_ x: Tensor, through name: String?) throws -> Tensor {
        let end = try endIndex(name)
        lastRun = -1
        var h = x
        for i in 0...end {
            h = try layers[i].forward(h)
            outputs[i] = h
        }
        lastRun = end
        return h
    }

    /// The output of layer `name` from the last forward pass (nil if it did not run).
    public func output(of name: String) -> Tensor? {
        guard let i = indexByName[name], i <= lastRun else { return nil }
        return outputs[i]
    }

    /// Back-propagates `gradOut` (shaped like the last forward's output) through the layers that
    /// ran, accumulating parameter gradients; returns the gradient w.r.t. the network's input.
    public func backward(_ gradOut: Tensor) throws -> Tensor {
        guard let g = try backward(gradOut, inputGradient: true, parameterGradients: true) else {
            throw CytoError(.internal, "network returned no input gradient")
        }
        return g
    }

    /// Back-propagation with choices: skip the input gradient (training a network on its own) or
    /// the parameter gradients (training the network that feeds this one). Returns the input
    /// gradient when asked, else nil.
    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        guard lastRun >= 0 else { throw CytoError(.invalidInput, "backward called before forward") }
        let stop = inputGradient ? 0 : min(firstTrainable, lastRun)
        if !inputGradient && !parameterGradients { return nil }
        var g = gradOut
        for i in stride(from: lastRun, through: stop, by: -1) {
            let wantInput = inputGradient || i > stop
            guard let next = try layers[i].backward(g, inputGradient: wantInput, parameterGradients: parameterGradients) else {
                return nil
            }
            g = next
        }
        return inputGradient ? g : nil
    }

    /// Sets every parameter gradient to zero.
    public func zeroGradients() { for p in parameters { p.grad.fill(0) } }

    /// Initialises every layer's parameters with `scheme` (biases 0, BatchNorm 1 and 0).
    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {
        for l in layers { l.initialize(scheme, rng: &rng) }
    }

    /// Copies parameters and state from `tensors` (names as in `namedTensors`, each prefixed by
    /// `prefix`). Every tensor must be present with its exact shape; extra entries are ignored.
    public func load(_ tensors: [String: Tensor], prefix: String = "") throws {
        let mine = namedTensors
        for (name, t) in mine {
            guard let src = tensors[prefix + name] else {
                throw CytoError(.invalidInput, "missing tensor '\(prefix + name)'", field: prefix + name)
            }
            guard src.shape == t.shape else {
                throw CytoError(.shapeMismatch, "tensor '\(prefix + name)' has shape \(src.shape), expected \(t.shape)", field: prefix + name)
            }
        }
        for (name, t) in mine { t.copy(from: tensors[prefix + name]!) }
    }

    /// The GaussianNoise layers (to switch them off, or hold their sample).
    public var noiseLayers: [GaussianNoise] { layers.compactMap { $0 as? GaussianNoise } }

    /// True if some layer couples the items of a batch (BatchNorm in training mode).
    public var mixesBatch: Bool { layers.contains { ($0 as? BatchNorm)?.training == true } }
}
