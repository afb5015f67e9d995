import CBLAS
import CConvKernels
import CytoCore

/// A 3 x 3, stride-1 convolution with one pixel of zero padding on every side, by Winograd's
/// F(2x2, 3x3) (Lavin & Gray, 2016): each 2 x 2 block of outputs costs 16 multiply-adds per
/// (input, output) channel pair instead of 36, as 16 GEMMs of [out x in] by [in x blocks].
/// Only the order of the sums changes, so results equal the definition to rounding.
///
/// Input and output are strided views (`PlaneView`), so a layer can read or write planes that
/// are interleaved with others (the four phases of an upsampling convolution) without a copy.
final class Winograd3x3 {
    /// Where pixel (y, x) of channel c of image i lies: i * image + channel[c] + y * row + x * column.
    struct PlaneView {
        var image: Int
        var channel: [Int]
        var row: Int
        var column: Int
    }

    let inChannels: Int, outChannels: Int
    /// The transformed weights: 16 matrices [out][in], entry (k, o, c) at (k * out + o) * in + c.
    private let transformed: Tensor
    private var scratch: [Tensor] = []
    /// The instruction set of the transforms (the direct convolution kernels' choice; tests
    /// force each one the CPU has, and 0 for plain C).
    var instructionSet: Int32 = Conv2D.cpuInstructionSet

    init(inChannels: Int, outChannels: Int) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        transformed = Tensor(Shape(16 * outChannels * inChannels))
    }

    /// Sets the 3 x 3 kernels: `weight(o, c)` points at kernel (o, c), its 9 taps row by row.
    /// Each becomes G g G^T with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
    func setWeights(_ weight: (Int, Int) -> UnsafePointer<Float>) {
        let O = outChannels, C = inChannels, u = transformed.data, plane = O * C
        for o in 0..<O {
            for c in 0..<C {
                let g = weight(o, c)
                // Gg, row by row (3 taps each); then each row r times G^T gives entries 4r ... 4r + 3.
                let dst = u + o * C + c
                func store(_ r: Int, _ r0: Float, _ r1: Float, _ r2: Float) {
                    dst[(4 * r) * plane] = r0
                    dst[(4 * r + 1) * plane] = 0.5 * (r0 + r1 + r2)
                    dst[(4 * r + 2) * plane] = 0.5 * (r0 - r1 + r2)
                    dst[(4 * r + 3) * plane] = r2
                }
                store(0, g[0], g[1], g[2])
                store(1, 0.5 * (g[0] + g[3] + g[6]), 0.5 * (g[1] + g[4] + g[7]), 0.5 * (g[2] + g[5] + g[8]))
                store(2, 0.5 * (g[0] - g[3] + g[6]), 0.5 * (g[1] - g[4] + g[7]), 0.5 * (g[2] - g[5] + g[8]))
                store(3, g[6], g[7], g[8])
            }
        }
    }

    /// Sets the kernels of a transposed convolution, the input gradient of a 3 x 3 convolution
    /// whose kernels [out'][in'][3][3] (out' = this one's inputs, in' = its outputs) are at
    /// `forward`: kernel (o, c) here is that one's (c, o) turned by 180 degrees. `scratch` keeps
    /// the turned kernels.
    func setTransposedWeights(of forward: UnsafePointer<Float>, scratch: Tensor) {
        let O = outChannels, C = inChannels
        scratch.resize(Shape(O, C, 3, 3))
        let f = scratch.data
        for c in 0..<C {
            for o in 0..<O {
                for t in 0..<9 { f[(o * C + c) * 9 + 8 - t] = forward[(c * O + o) * 9 + t] }
            }
        }
        let p = UnsafePointer(f)
        setWeights { o, c in p + (o * C + c) * 9 }
    }

    /// Per-thread sums of the transformed kernels' gradient, [16][out][in] each.
    private var gradientSums: [Tensor] = []

    /// dw[o][c][3][3] += the gradient of the kernels for y = conv(x) given the output gradient dy
    /// (both `images` x `height` x `width`, as strided views). The transformed kernel's gradient,
    /// summed over every block of every image, is sum (A dy A^T) * (B^T d B) entry by entry (16 GEMMs
    /// of [out x blocks] by [blocks x in]); the kernel's own is G^T (that) G.
    func weightGradient(images n: Int, height h: Int, width w: Int,
                        input x: UnsafePointer<Float>, _ xv: PlaneView,
                        gradient dy: UnsafePointer<Float>, _ dyv: PlaneView, into dw: UnsafeMutablePointer<Float>) {
        precondition(xv.channel.count == inChannels && dyv.channel.count == outChannels)
        guard n > 0 else { return }
        let C = inChannels, O = outChannels
        let (perImage, chunk, ld, threads) = reserve(images: n, height: h, width: w)
        while gradientSums.count < threads { gradientSums.append(Tensor(Shape(0))) }
        for s in gradientSums.prefix(threads) {
            s.resize(Shape(16 * O * C))
            s.fill(0)
        }
        let isa = instructionSet
        parallelChunks(n, work: n * perImage * 16 * C * O) { t, range in
            let v = self.scratch[t].data, g = v + 16 * C * ld, pad = g + 16 * O * ld
            let sums = self.gradientSums[t].data
            var i0 = range.lowerBound
            while i0 < range.upperBound {
                let m = min(chunk, range.upperBound - i0), cols = m * perImage
                self.transformInputs(x, xv, from: i0, count: m, height: h, width: w, into: v, ld: ld, pad: pad)
                for i in 0..<m {
                    let grad = dy + (i0 + i) * dyv.image
                    for o in 0..<O {
                        ck_winograd_gradient(isa, grad + dyv.channel[o], dyv.row, dyv.column, Int32(h), Int32(w),
                                             g + o * ld + i * perImage, O * ld, pad)
                    }
                }
                for k in 0..<16 {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(O), Int32(C), Int32(cols),
                                1, g + k * O * ld, Int32(ld), v + k * C * ld, Int32(ld), 1, sums + k * O * C, Int32(C))
                }
                i0 += m
            }
        }
        // Sum the threads' parts, then G^T M G per kernel (G as in `setWeights`).
        let total = gradientSums[0].data, plane = O * C
        for t in 1..<threads {
            let s = UnsafePointer(gradientSums[t].data)
            for j in 0..<16 * plane { total[j] += s[j] }
        }
        for o in 0..<O {
            for c in 0..<C {
                let mp = UnsafePointer(total + o * C + c), d = dw + (o * C + c) * 9
                // Rows of G^T M (3 x 4), then each times G (4 x 3).
                func row(_ r: Int) -> SIMD4<Float> {
                    SIMD4(mp[4 * r * plane], mp[(4 * r + 1) * plane], mp[(4 * r + 2) * plane], mp[(4 * r + 3) * plane])
                }
                let m0 = row(0), m1 = row(1), m2 = row(2), m3 = row(3)
                func add(_ i: Int, _ a: SIMD4<Float>) {
                    d[3 * i] += a[0] + 0.5 * (a[1] + a[2])
                    d[3 * i + 1] += 0.5 * (a[1] - a[2])
                    d[3 * i + 2] += 0.5 * (a[1] + a[2]) + a[3]
                }
                add(0, m0 + 0.5 * (m1 + m2))
                add(1, 0.5 * (m1 - m2))
                add(2, 0.5 * (m1 + m2) + m3)
            }
        }
    }

    /// Blocks per image, images per chunk, floats per transformed plane of a chunk and threads for
    /// `images` images of `height` x `width`; gives each thread its scratch (transformed input,
    /// 16 x in planes; products or transformed gradient, 16 x out; the transforms' own).
    private func reserve(images n: Int, height h: Int, width w: Int) -> (perImage: Int, chunk: Int, ld: Int, threads: Int) {
        let perImage = ((h + 1) / 2) * ((w + 1) / 2)
        let chunk = chunkImages(n, perImage), ld = chunk * perImage, threads = min(Engine.threads, n)
        let need = 16 * (inChannels + outChannels) * ld + ck_winograd_scratch_count(Int32(h), Int32(w))
        while scratch.count < threads { scratch.append(Tensor(Shape(0))) }
        for s in scratch.prefix(threads) where s.count < need { s.resize(Shape(need)) }
        return (perImage, chunk, ld, threads)
    }

    /// V[k][c][block] = (B^T d B)[k] for each 4 x 4 input window d of images i0 ..< i0 + m, into
    /// a chunk's transformed-input planes `v` (plane c of entry k at v + (k * in + c) * ld).
    private func transformInputs(_ x: UnsafePointer<Float>, _ xv: PlaneView, from i0: Int, count m: Int, height h: Int,
                                 width w: Int, into v: UnsafeMutablePointer<Float>, ld: Int, pad: UnsafeMutablePointer<Float>) {
        let C = inChannels, perImage = ((h + 1) / 2) * ((w + 1) / 2)
        for i in 0..<m {
            let img = x + (i0 + i) * xv.image
            for c in 0..<C {
                ck_winograd_input(instructionSet, img + xv.channel[c], xv.row, xv.column, Int32(h), Int32(w),
                                  v + c * ld + i * perImage, C * ld, pad)
            }
        }
    }

    /// Images per GEMM: as many blocks as a thread's transformed input and products fit in 2 MB
    /// (16 x (in + out) floats per block), but at least 144 blocks (a GEMM width OpenBLAS runs
    /// well) and one image. Measured on the generators' layers against 1 to 8 MB.
    private func chunkImages(_ n: Int, _ perImage: Int) -> Int {
        let blocks = max(144, (1 << 19) / (16 * (inChannels + outChannels)))
        return max(1, min(n, blocks / perImage))
    }

    /// y = conv(x) (+ bias[o]) for `images` images of `height` x `width`, on the engine's threads.
    /// The output has the input's size; every output pixel is written (nothing accumulates).
    /// An output view with `column` 2 interleaves pairs of planes: channels 2q and 2q + 1 must
    /// lie one float apart and have the same bias.
    func run(images n: Int, height h: Int, width w: Int,
             input x: UnsafePointer<Float>, _ xv: PlaneView,
             output y: UnsafeMutablePointer<Float>, _ yv: PlaneView, bias: UnsafePointer<Float>?) {
        precondition(xv.channel.count == inChannels && yv.channel.count == outChannels)
        let C = inChannels, O = outChannels, planes = yv.column
        precondition(planes == 1 || (planes == 2 && O % 2 == 0
            && stride(from: 0, to: O, by: 2).allSatisfy { yv.channel[$0 + 1] == yv.channel[$0] + 1 && bias?[$0] == bias?[$0 + 1] }),
            "Winograd3x3: output columns must be 1, or 2 with paired planes")
        guard n > 0 else { return }
        let (perImage, chunk, ld, _) = reserve(images: n, height: h, width: w)
        let u = UnsafePointer(transformed.data), isa = instructionSet
        parallelChunks(n, work: n * perImage * 16 * C * O) { t, range in
            let v = self.scratch[t].data, prod = v + 16 * C * ld, pad = prod + 16 * O * ld
            var i0 = range.lowerBound
            while i0 < range.upperBound {
                let m = min(chunk, range.upperBound - i0), cols = m * perImage
                self.transformInputs(x, xv, from: i0, count: m, height: h, width: w, into: v, ld: ld, pad: pad)
                // M[k] = U[k] V[k]: [out x in] by [in x blocks].
                for k in 0..<16 {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(O), Int32(cols), Int32(C),
                                1, u + k * O * C, Int32(C), v + k * C * ld, Int32(ld), 0, prod + k * O * ld, Int32(ld))
                }
                // y = A^T M A + bias for each block.
                for i in 0..<m {
                    let img = y + (i0 + i) * yv.image
                    for o in stride(from: 0, to: O, by: planes) {
                        let m0 = UnsafePointer(prod + o * ld + i * perImage)
                        ck_winograd_output(isa, m0, planes == 2 ? m0 + ld : nil, O * ld, Int32(h), Int32(w),
                                           bias?[o] ?? 0, img + yv.channel[o], yv.row)
                    }
                }
                i0 += m
            }
        }
    }
}
