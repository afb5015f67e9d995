import CytoCore

/// Fully connected layer: y = x W^T + b for x [N, in]. Weight [out, in] (PyTorch's layout), bias [out].
public final class Dense: Layer {
    public let name: String
    public var kind: String { "Dense" }
    public let inputs: Int, outputs: Int
    public let weight: Parameter
    public let bias: Parameter?

    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var input: Tensor?
    private var forwarded = false

    public init(name: String, inputs: Int, outputs: Int, bias: Bool = true) {
        precondition(inputs > 0 && outputs > 0)
        self.name = name
        self.inputs = inputs; self.outputs = outputs
        weight = Parameter(name: "\(name).weight", shape: Shape(outputs, inputs))
        self.bias = bias ? Parameter(name: "\(name).bias", shape: Shape(outputs)) : nil
    }

    public var parameters: [Parameter] { bias.map { [weight, $0] } ?? [weight] }

    public func initialize(_ scheme: WeightInit, rng: inout RandomStream) {
        scheme.fill(weight.value, fanIn: inputs, fanOut: outputs, rng: &rng)
        bias?.value.fill(0)
    }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 2, s[1] == inputs else { throw shapeError("expected input [N, \(inputs)], got \(s)") }
        return Shape(s[0], outputs)
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        let macs = Double(input.batch * inputs * outputs)
        return LayerFLOPs(forward: 2 * macs, backwardInput: 2 * macs, backwardParameters: 2 * macs)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        out.resize(os)
        input = x
        forwarded = true
        let n = os[0]
        guard n > 0 else { return out }
        let y = out.data
        if let b = bias?.value.data {
            for i in 0..<n { (y + i * outputs).update(from: b, count: outputs) }
        }
        parallelSgemm(transA: false, transB: true, m: n, n: outputs, k: inputs, alpha: 1, a: x.data, lda: inputs,
                      b: weight.value.data, ldb: inputs, beta: bias == nil ? 0 : 1, c: y, ldc: outputs)
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        let n = out.shape[0]
        if parameterGradients && n > 0 {
            parallelSgemm(transA: true, transB: false, m: outputs, n: inputs, k: n, alpha: 1, a: gradOut.data, lda: outputs,
                          b: x.data, ldb: inputs, beta: 1, c: weight.grad.data, ldc: inputs)
            if let bias {
                let db = bias.grad.data, g = gradOut.data
                for i in 0..<n { for j in 0..<outputs { db[j] += g[i * outputs + j] } }
            }
        }
        guard inputGradient else { return nil }
        dx.resize(x.shape)
        if n > 0 {
            parallelSgemm(transA: false, transB: false, m: n, n: inputs, k: outputs, alpha: 1, a: gradOut.data, lda: outputs,
                          b: weight.value.data, ldb: inputs, beta: 0, c: dx.data, ldc: inputs)
        }
        return dx
    }
}
