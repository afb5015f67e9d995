import CytoCore
import CytoNNTestSupport
import Testing
@testable import CytoNN

@Suite("Spectral normalization")
struct SpectralNormalizationTests {
    @Test("the weight becomes V / sigma(V), and dL/dV matches finite differences of L(V / sigma(V))")
    func gradient() throws {
        let rows = 4, cols = 6, batch = 3
        let layer = Dense(name: "d", inputs: cols, outputs: rows)
        randomize(layer, seed: 5, scale: 1)
        let v0 = layer.weight.value.values.map(Double.init)
        let bias = layer.bias!.value.values.map(Double.init)
        var rng = RandomStream(seed: 9, purpose: "test")
        let sn = SpectralNormalization(parameters: [layer.weight], rng: &rng, iterations: 200)
        let s0 = largestSingularValue(v0, rows: rows, cols: cols)
        #expect(abs(Double(sn.sigmas[0].sigma) / s0 - 1) < 1e-4)
        let w = layer.weight.value.values
        for k in 0..<w.count { #expect(abs(Double(w[k]) - v0[k] / s0) < 1e-5) }

        let x = randomTensor(Shape(batch, cols), seed: 11)
        let r = randomTensor(Shape(batch, rows), seed: 12)
        let xs = x.values.map(Double.init), rs = r.values.map(Double.init)
        // L(V) = sum r * (x (V / sigma(V))^T + b), independently in double precision.
        func loss(_ v: [Double]) -> Double {
            let s = largestSingularValue(v, rows: rows, cols: cols)
            var l = 0.0
            for n in 0..<batch {
                for i in 0..<rows {
                    var y = bias[i]
                    for j in 0..<cols { y += xs[n * cols + j] * v[i * cols + j] / s }
                    l += rs[n * rows + i] * y
                }
            }
            return l
        }
        _ = try layer.forward(x)
        layer.weight.grad.fill(0)
        _ = try layer.backward(r, inputGradient: false, parameterGradients: true)
        sn.prepareUpdate()
        let back = layer.weight.value.values
        for k in 0..<back.count { #expect(abs(Double(back[k]) - v0[k]) < 1e-5 * max(1, abs(v0[k]))) }
        let g = layer.weight.grad.values
        let h = 1e-4
        for k in 0..<v0.count {
            var p = v0, m = v0
            p[k] += h; m[k] -= h
            let fd = (loss(p) - loss(m)) / (2 * h)
            #expect(abs(Double(g[k]) - fd) < 1e-3 + 1e-3 * abs(fd), "entry \(k): \(g[k]) against \(fd)")
        }
        // The gradient is orthogonal to the direction that only rescales V.
        let radial = zip(g, v0).reduce(0.0) { $0 + Double($1.0) * $1.1 }
        #expect(abs(radial) < 1e-4)
        sn.finishUpdate()
        let s1 = largestSingularValue(layer.weight.value)
        #expect(abs(s1 - 1) < 1e-3)
    }
}
