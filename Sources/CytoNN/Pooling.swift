import CytoCore

/// Global average pooling: [N, C, H, W] -> [N, C], each channel's mean over its plane. A small
/// classifier's head reads it, so the Dense layer after it does not depend on the input size.
public final class GlobalAveragePool: Layer {
    public let name: String
    public var kind: String { "GlobalAveragePool" }
    private let out = Tensor(Shape(0))
    private let dx = Tensor(Shape(0))
    private var inputShape: Shape?

    public init(name: String) { self.name = name }

    public func outputShape(for s: Shape) throws -> Shape {
        guard s.rank == 4, s[2] > 0, s[3] > 0 else { throw shapeError("expected input [N, C, H, W], got \(s)") }
        return Shape(s[0], s[1])
    }

    public func flops(for input: Shape) -> LayerFLOPs {
        let n = Double(input.count)
        return LayerFLOPs(forward: n, backwardInput: n)
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        let os = try outputShape(for: x.shape)
        inputShape = x.shape
        out.resize(os)
        let planes = os.count, hw = x.shape[2] * x.shape[3]
        let xp = x.data, yp = out.data
        parallelFor(planes, work: x.count) { r in
            for p in r {
                // Accumulated in double precision, as the feature extractor's pooled means.
                var s = 0.0
                let plane = xp + p * hw
                for i in 0..<hw { s += Double(plane[i]) }
                yp[p] = Float(s / Double(hw))
            }
        }
        return out
    }

    public func backward(_ gradOut: Tensor, inputGradient: Bool, parameterGradients: Bool) throws -> Tensor? {
        try checkGradient(gradOut, against: inputShape == nil ? nil : out, forwarded: inputShape != nil)
        guard inputGradient, let s = inputShape else { return nil }
        dx.resize(s)
        let planes = gradOut.count, hw = s[2] * s[3]
        let g = gradOut.data, d = dx.data
        let inv = 1 / Float(hw)
        parallelFor(planes, work: s.count) { r in
            for p in r { (d + p * hw).update(repeating: g[p] * inv, count: hw) }
        }
        return dx
    }
}
