import CytoCore
import CytoNN
import Testing

// Helpers shared by the engine's tests and the GAN's: seeded tensors, reference computations and
// finite-difference gradient checks.

/// A tensor of uniform values in [-scale, scale), or with |v| in [gap, scale) when `gap` > 0
/// (keeps LeakyReLU/ReLU inputs away from their kink for finite differences).
public func randomTensor(_ shape: Shape, seed: UInt64, scale: Float = 1, gap: Float = 0) -> Tensor {
    var rng = RandomStream(seed: seed, purpose: "test")
    let t = Tensor(shape)
    for i in 0..<t.count {
        var v = rng.uniform(-scale, scale)
        if gap > 0 { v = (v < 0 ? -1 : 1) * (gap + abs(v) * (scale - gap) / scale) }
        t.data[i] = v
    }
    return t
}

public func randomize(_ layer: any Layer, seed: UInt64, scale: Float = 0.5) {
    for (k, p) in layer.parameters.enumerated() {
        let r = randomTensor(p.value.shape, seed: seed &+ UInt64(k), scale: scale)
        p.value.copy(from: r)
    }
}

/// Reference 2-D cross-correlation by the definition, in double precision: explicit padding
/// (top, left; the rest beyond the input is zero), stride, NCHW / OIHW.
public func referenceConv(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int), pad: (Int, Int), out: (Int, Int)) -> [Float] {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    let o = weight.shape[0], kh = weight.shape[2], kw = weight.shape[3]
    var y = [Float](repeating: 0, count: n * o * out.0 * out.1)
    for b in 0..<n {
        for oc in 0..<o {
            for oy in 0..<out.0 {
                for ox in 0..<out.1 {
                    var s = Double(bias?.data[oc] ?? 0)
                    for ic in 0..<c {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let iy = oy * stride.0 + ky - pad.0, ix = ox * stride.1 + kx - pad.1
                                if iy < 0 || iy >= h || ix < 0 || ix >= w { continue }
                                s += Double(x[b, ic, iy, ix]) * Double(weight[oc, ic, ky, kx])
                            }
                        }
                    }
                    y[((b * o + oc) * out.0 + oy) * out.1 + ox] = Float(s)
                }
            }
        }
    }
    return y
}

public func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a[i] - b[i])) }
    return m
}

/// L = sum(out * R) in double precision, for a fixed random R.
public func weightedSum(_ out: Tensor, _ r: Tensor) -> Double {
    var s = 0.0
    for i in 0..<out.count { s += Double(out.data[i]) * Double(r.data[i]) }
    return s
}

/// Indices to probe: all of them when few, else `count` spread with a seeded stream.
public func probeIndices(_ n: Int, count: Int, seed: UInt64) -> [Int] {
    if n <= count { return Array(0..<n) }
    var rng = RandomStream(seed: seed, purpose: "probe")
    return (0..<count).map { _ in rng.below(n) }
}

/// Central-difference check of a function's gradient: for each probed index of `value`,
/// (f(v + h) - f(v - h)) / 2h against `analytic[index]`, with |a - n| <= atol + rtol * max(|a|, |n|).
/// With `pattern` (a fingerprint of which side of its kink every (Leaky)ReLU input lies, read
/// after each evaluation), probes whose two evaluations lie on different pieces of a piecewise
/// function are skipped: there a difference quotient does not measure the derivative. At most a
/// half of the probes (or two) may be skipped. Returns the worst relative error for reporting.
@discardableResult
public func checkGradient(_ what: String, value: Tensor, analytic: [Float], h: Float, rtol: Double, atol: Double,
                   probes: Int = 40, seed: UInt64 = 1, pattern: (() -> Int)? = nil, _ f: () throws -> Double) rethrows -> Double {
    var worst = 0.0
    let indices = probeIndices(value.count, count: probes, seed: seed)
    var skipped = 0
    for i in indices {
        let saved = value.data[i]
        value.data[i] = saved + h
        let fp = try f()
        let pp = pattern?()
        value.data[i] = saved - h
        let fm = try f()
        let pm = pattern?()
        value.data[i] = saved
        if pp != pm { skipped += 1; continue }
        let numeric = (fp - fm) / (2 * Double(h))
        let a = Double(analytic[i])
        let err = abs(a - numeric)
        let scale = max(abs(a), abs(numeric))
        worst = max(worst, err / max(scale, 1e-12))
        #expect(err <= atol + rtol * scale, "\(what)[\(i)]: analytic \(a) vs numeric \(numeric)")
    }
    #expect(skipped <= max(2, indices.count / 2), "\(what): \(skipped) of \(indices.count) probes crossed a kink")
    return worst
}

/// A fingerprint of the signs of every input to the network's LeakyReLU and ReLU layers in its
/// last forward pass (see `checkGradient`).
public func activationPattern(_ net: Network, input: Tensor) -> Int {
    var hasher = Hasher()
    for (i, l) in net.layers.enumerated() where (l as? LeakyReLU).map({ $0.alpha != 1 }) ?? (l is ReLU) {
        let x = i == 0 ? input : net.output(of: net.layers[i - 1].name)!
        var word: UInt64 = 0
        for j in 0..<x.count {
            word = word << 1 | (x.data[j] > 0 ? 1 : 0)
            if j % 64 == 63 { hasher.combine(word); word = 0 }
        }
        hasher.combine(word)
    }
    return hasher.finalize()
}

/// Checks a layer's input and parameter gradients against central differences of
/// L = sum(forward(x) * R).
public func checkLayer(_ layer: any Layer, input x: Tensor, h: Float = 1e-2, rtol: Double = 1e-2, atol: Double = 1e-3,
                probes: Int = 40, parameterProbes: Int = 40) throws {
    let out = try layer.forward(x)
    let r = randomTensor(out.shape, seed: 99)
    for p in layer.parameters { p.grad.fill(0) }
    let dx = try layer.backward(r).values
    let grads = layer.parameters.map { $0.grad.values }
    let loss = { () throws -> Double in weightedSum(try layer.forward(x), r) }
    try checkGradient("\(layer.name) input", value: x, analytic: dx, h: h, rtol: rtol, atol: atol, probes: probes, loss)
    for (p, g) in zip(layer.parameters, grads) {
        try checkGradient(p.name, value: p.value, analytic: g, h: h, rtol: rtol, atol: atol, probes: parameterProbes, seed: 7, loss)
    }
}

/// Largest singular value of a rows x cols matrix (row-major), by 3,000 power iterations on
/// M^T M in double precision: the reference for spectral normalization.
public func largestSingularValue(_ m: [Double], rows: Int, cols: Int) -> Double {
    var v = (0..<cols).map { Double($0 % 3) + 1 }
    var s = 0.0
    for _ in 0..<3000 {
        var mv = [Double](repeating: 0, count: rows)
        for i in 0..<rows { for j in 0..<cols { mv[i] += m[i * cols + j] * v[j] } }
        var w = [Double](repeating: 0, count: cols)
        for i in 0..<rows { for j in 0..<cols { w[j] += m[i * cols + j] * mv[i] } }
        let n = w.reduce(0) { $0 + $1 * $1 }.squareRoot()
        v = w.map { $0 / n }
        s = n.squareRoot()
    }
    return s
}

/// The same for a weight tensor seen as a matrix of its first dimension's rows.
public func largestSingularValue(_ t: Tensor) -> Double {
    largestSingularValue(t.values.map(Double.init), rows: t.shape[0], cols: t.count / t.shape[0])
}
