/// Per channel, the summed square of the 5-point Laplacian (4 x - its four neighbours) over the
/// interior pixels of every plane of an NCHW batch: the energy of an image's finest texture.
/// `backward` adds the gradient of any function of those sums into a gradient tensor.
/// Buffers are sized on first use; nothing is allocated while shapes stay the same.
public final class LaplacianEnergy {
    private var planeSums: [Double] = []

    /// The 5-point Laplacian at `row[i]` of a plane `w` pixels wide.
    @inline(__always)
    private static func laplacian(_ row: UnsafeMutablePointer<Float>, _ i: Int, _ w: Int) -> Float {
        4 * row[i] - row[i - 1] - row[i + 1] - row[i - w] - row[i + w]
    }

    public init() {}

    /// Writes the energy of each channel, summed over the batch, to `sums[offset + channel]`.
    public func forward(_ x: Tensor, into sums: inout [Double], offset: Int = 0) {
        let s = x.shape
        precondition(s.rank == 4 && s[2] >= 3 && s[3] >= 3, "Laplacian energy of an NCHW batch of at least 3 x 3 planes")
        let (c, h, w) = (s[1], s[2], s[3])
        let planes = s.batch * c
        if planeSums.count != planes { planeSums = [Double](repeating: 0, count: planes) }
        let p = x.data
        planeSums.withUnsafeMutableBufferPointer { out in
            let box = UncheckedSendable(out)
            parallelFor(planes, work: planes * h * w * 6) { range in
                for plane in range {
                    let base = p + plane * h * w
                    var acc = 0.0
                    for y in 1..<(h - 1) {
                        let row = base + y * w
                        var r: Float = 0
                        for i in 1..<(w - 1) {
                            let l = LaplacianEnergy.laplacian(row, i, w)
                            r += l * l
                        }
                        acc += Double(r)
                    }
                    box.value[plane] = acc
                }
            }
        }
        precondition(sums.count >= offset + c, "Laplacian energy: room for \(c) channel sums needed")
        for ch in 0..<c { sums[offset + ch] = 0 }
        for plane in 0..<planes { sums[offset + plane % c] += planeSums[plane] }
    }

    /// Adds into `gradient` dLoss/dx for dLoss/d(sum of channel c) = `sumGradient[c]`, at `x`.
    public func backward(_ x: Tensor, sumGradient: [Double], into gradient: Tensor) {
        let s = x.shape
        precondition(gradient.shape == s && sumGradient.count == s[1], "Laplacian energy backward: shapes differ")
        let (c, h, w) = (s[1], s[2], s[3])
        let planes = s.batch * c
        let p = x.data, g = gradient.data
        // d(l^2)/dx = 2 l dl/dx: 4 x 2l at the centre, -2l at each neighbour. Each plane is one
        // thread's, and one plane's scatter runs in row order, so the sums are deterministic.
        parallelFor(planes, work: planes * h * w * 10) { range in
            for plane in range {
                let k = Float(2 * sumGradient[plane % c])
                let base = p + plane * h * w, gb = g + plane * h * w
                for y in 1..<(h - 1) {
                    let row = base + y * w, grow = gb + y * w
                    for i in 1..<(w - 1) {
                        let l = k * LaplacianEnergy.laplacian(row, i, w)
                        grow[i] += 4 * l
                        grow[i - 1] -= l; grow[i + 1] -= l; grow[i - w] -= l; grow[i + w] -= l
                    }
                }
            }
        }
    }
}
