import CBLAS
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
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outputs), Int32(inputs),
                    1, x.data, Int32(inputs), weight.value.data, Int32(inputs), bias == nil ? 0 : 1, y, Int32(outputs))
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: out, forwarded: forwarded)
        guard let x = input else { return nil }
        let n = out.shape[0]
        if parameterGradients && n > 0 {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outputs), Int32(inputs), Int32(n),
                        1, gradOut.data, Int32(outputs), x.data, Int32(inputs), 1, weight.grad.data, Int32(inputs))
            if let bias {
                let db = bias.grad.data, g = gradOut.data
                for i in 0..<n { for j in 0..<outputs { db[j] += g[i * outputs + j] } }
            }
        }
        guard inputGradient else { return nil }
        dx.resize(x.shape)
        if n > 0 {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inputs), Int32(outputs),
                        1, gradOut.data, Int32(outputs), weight.value.data, Int32(inputs), 0, dx.data, Int32(inputs))
        }
        return dx
    }
}
