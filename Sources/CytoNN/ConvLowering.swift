import CBLAS
import Dispatch
import Synchronization

/// Padding of a convolution. `same` is TensorFlow's: output = ceil(in / stride), total padding
/// max((out - 1) * stride + k - in, 0), half of it (rounded down) before, the rest after.
/// `valid` pads nothing: output = (in - k) / stride + 1.
public enum Padding: String, Sendable {
    case same, valid

    /// Output size and padding before (top or left) along one axis, or nil if the input is
    /// too small (valid) or empty.
    public func output(input: Int, kernel: Int, stride: Int) -> (size: Int, padBefore: Int, padAfter: Int)? {
        guard input > 0, kernel > 0, stride > 0 else { return nil }
        switch self {
        case .same:
            let out = (input + stride - 1) / stride
            let total = max((out - 1) * stride + kernel - input, 0)
            return (out, total / 2, total - total / 2)
        case .valid:
            guard input >= kernel else { return nil }
            return ((input - kernel) / stride + 1, 0, 0)
        }
    }
}

/// Geometry of one 2-D convolution on an NCHW batch.
struct ConvGeometry: Equatable {
    var n = 0, c = 0, h = 0, w = 0
    var kh = 1, kw = 1, sh = 1, sw = 1
    var padTop = 0, padLeft = 0
    var ho = 0, wo = 0
}

/// Lowers a convolution to GEMMs over an unfolded copy of the input, chunk by chunk of images,
/// with all buffers kept between calls (allocated once for the largest shape seen).
///
/// Two unfoldings:
/// - per tap row (`perTap`, used when C * kw is large enough for an efficient GEMM): the buffer U
///   holds, for each (channel c, kernel column kx), the input rows sampled at columns
///   stride * x + kx, split by row phase (row mod stride). The contribution of kernel row ky is
///   then ONE GEMM with a shifted view of U (offset ky / stride rows, phase ky mod stride), so U is
///   only kw times the input instead of kh * kw times (classic im2col), and the kh GEMMs
///   accumulate. Between images of a chunk lie (kh-1)/stride spare rows; the GEMM computes them
///   as garbage columns that the scatter drops (and that the backward sets to zero).
/// - full (`!perTap`): classic im2col, rows (c, ky, kx), one GEMM.
///
/// The GEMM's M dimension is `rows` (output channels, or 4 x output channels for the phase
/// convolution), N the output positions of a chunk of images, K = C * kw (or C * kh * kw).
/// Weights are passed packed as [tap][rows][K] (see `weightIndex`).
///
/// The images of a chunk lie side by side along a row: U holds [K][phase][row r][image][x] and the
/// GEMM output [rows][y][image][x], so a chunk's output positions form one contiguous range of
/// columns with nothing computed in vain; `scatter` and `gather` convert to and from NCHW.
///
/// Threads: the chunks are shared out among `Engine.threads` workers, each with its own buffers
/// and its own single-threaded GEMMs, so unfolding, GEMM and scatter of different chunks overlap
/// and no GEMM waits on a thread barrier. Worker w always takes the same run of chunks, and the
/// weight gradients are summed worker by worker, so results are the same from run to run.
final class ConvLowering {
    private(set) var geo = ConvGeometry()
    private(set) var rows = 0
    private(set) var perTap = true
    /// Images per chunk, and number of chunks.
    private(set) var g = 1
    private(set) var chunkCount = 0
    /// Rows of U (and of the GEMM output) per image: ho + (kh - 1) / sh when perTap, else ho.
    private(set) var rowsPerImage = 0
    /// True when each image's GEMM output can go straight into an NCHW output (g == 1, full rows).
    private(set) var direct = false
    /// One set of buffers per thread.
    private(set) var workers: [ConvWorker] = []
    private let counter = ChunkCounter()
    private var planned = false

    /// Forces a new plan at the next call (after changing the chunking targets).
    func replan() { planned = false }

    /// Target number of GEMM columns per chunk and the most floats U may hold (settable so
    /// tests can force many small chunks).
    var targetColumns = 2048
    var maxUnfold = 8 << 20

    var kDim: Int { perTap ? geo.c * geo.kw : geo.c * geo.kh * geo.kw }
    var taps: Int { perTap ? geo.kh : 1 }
    var packedCount: Int { taps * rows * kDim }
    /// For a chunk of m images: floats per U row segment row (m images side by side), per row
    /// phase, and per U row (the GEMM's ldb); GEMM columns (also the ldc of a chunk's output).
    @inline(__always) func rowWidth(_ m: Int) -> Int { m * geo.wo }
    @inline(__always) func phaseStride(_ m: Int) -> Int { rowsPerImage * m * geo.wo }
    @inline(__always) func uRowStride(_ m: Int) -> Int { perTap ? geo.sh * phaseStride(m) : phaseStride(m) }
    @inline(__always) func columns(_ m: Int) -> Int { geo.ho * m * geo.wo }
    /// Column of output row y of image i in a chunk of m images.
    @inline(__always) func column(y: Int, image i: Int, m: Int) -> Int { (y * m + i) * geo.wo }

    /// Chooses the lowering for a geometry and sizes the buffers. `allowDirect`: the caller can
    /// take the GEMM output of a single image as its NCHW output.
    func plan(_ geo: ConvGeometry, rows: Int, allowDirect: Bool) {
        let threads = Engine.threads
        if geo == self.geo && rows == self.rows && planned && workers.count == threads { return }
        planned = true
        self.geo = geo
        self.rows = rows
        perTap = geo.kh > 1 && geo.c * geo.kw >= 96
        rowsPerImage = perTap ? geo.ho + (geo.kh - 1) / geo.sh : geo.ho
        let hw = geo.ho * geo.wo
        if allowDirect && hw >= 1536 && targetColumns >= 1536 {
            g = 1
        } else {
            var g0 = max(1, min(geo.n, (targetColumns + hw - 1) / hw))
            while g0 > 1 && kDim * uRowStride(g0) > maxUnfold { g0 -= 1 }
            // As many chunks as a multiple of the thread count, of (nearly) equal size.
            let perThread = (geo.n + g0 * threads - 1) / (g0 * threads)
            let chunks = max(1, min(geo.n, perThread * threads))
            g = (geo.n + chunks - 1) / chunks
        }
        chunkCount = geo.n == 0 ? 0 : (geo.n + g - 1) / g
        direct = allowDirect && g == 1
        while workers.count < threads { workers.append(ConvWorker()) }
        if workers.count > threads { workers.removeLast(workers.count - threads) }
        for w in workers {
            w.u.resize(Shape(kDim * uRowStride(g)))
            w.cbuf.resize(Shape(direct ? 0 : rows * columns(g)))
            w.dW.resize(Shape(packedCount))
            w.uHolds = nil
        }
    }

    /// Runs `body(worker, n0, m)` for every chunk of images n0 ..< n0 + m.
    ///
    /// `balanced` (for passes that accumulate weight gradients): worker w takes chunks
    /// w * C / T ..< (w + 1) * C / T, in reverse order when `reverse` (the backward pass starts with
    /// the chunk whose unfolding is still in U), so each worker's partial sums are the same from
    /// run to run. Otherwise workers claim the next chunk as they become free, which keeps both
    /// cores busy on a machine shared with other work.
    func forEachChunk(reverse: Bool = false, balanced: Bool = false, _ body: (ConvWorker, Int, Int) -> Void) {
        let t = min(workers.count, chunkCount), n = geo.n, g = self.g, chunks = chunkCount
        guard t >= 1 else { return }
        let ws = workers, counter = self.counter
        counter.reset()
        withoutActuallyEscaping(body) { body in
            let run = { (w: Int) in
                if balanced || t == 1 {
                    let lo = chunks * w / t, hi = chunks * (w + 1) / t
                    for k in 0..<(hi - lo) {
                        let c = reverse ? hi - 1 - k : lo + k
                        body(ws[w], c * g, min(g, n - c * g))
                    }
                } else {
                    while true {
                        let k = counter.next()
                        guard k < chunks else { break }
                        let c = reverse ? chunks - 1 - k : k
                        body(ws[w], c * g, min(g, n - c * g))
                    }
                }
            }
            if t == 1 { run(0); return }
            let box = UncheckedSendable(run)
            DispatchQueue.concurrentPerform(iterations: t) { box.value($0) }
        }
    }

    /// Marks every worker's U as holding no unfolding (the forward pass did not unfold).
    func forgetUnfolding() { for w in workers { w.uHolds = nil } }

    /// Zeroes every worker's weight-gradient buffer.
    func clearWeightGradients() { for w in workers { w.dW.fill(0) } }

    /// The weight gradient summed over workers in a fixed order, in the first worker's buffer.
    func summedWeightGradient() -> UnsafePointer<Float> {
        let total = workers[0].dW.data, n = packedCount
        for w in workers.dropFirst() {
            let p = w.dW.data
            for i in 0..<n { total[i] += p[i] }
        }
        return UnsafePointer(total)
    }

    /// Index of weight (tap ky, GEMM row, channel c, kernel column kx) in the packed layout.
    @inline(__always)
    func weightIndex(ky: Int, row: Int, c: Int, kx: Int) -> Int {
        if perTap { return (ky * rows + row) * kDim + c * geo.kw + kx }
        return row * kDim + (c * geo.kh + ky) * geo.kw + kx
    }

    /// Range of output columns x whose input column stride * x + kx - padLeft lies inside the image.
    @inline(__always)
    func validColumns(kx: Int) -> (Int, Int) {
        let off = kx - geo.padLeft
        var lo = 0
        if off < 0 { lo = (-off + geo.sw - 1) / geo.sw }
        var hi = geo.wo
        let lastIn = geo.w - 1 - off
        if lastIn < 0 { hi = 0 } else { hi = min(geo.wo, lastIn / geo.sw + 1) }
        return (lo, max(lo, hi))
    }

    /// Offset in U of tap t's GEMM operand, for a chunk of m images.
    @inline(__always)
    func tapOffset(_ t: Int, _ m: Int) -> Int {
        perTap ? (t % geo.sh) * phaseStride(m) + (t / geo.sh) * rowWidth(m) : 0
    }

    /// out[n0 + i][c][y][x] = cb[c][column(y, i)] + bias[c]: a chunk's GEMM rows (one per channel)
    /// to NCHW images of ho x wo.
    func scatter(_ cb: UnsafePointer<Float>, m: Int, n0: Int, channels: Int, bias: UnsafePointer<Float>?,
                 into out: UnsafeMutablePointer<Float>) {
        let ldc = columns(m), ho = geo.ho, wo = geo.wo
        for i in 0..<m {
            for c in 0..<channels {
                let b = bias?[c] ?? 0
                let dst = out + ((n0 + i) * channels + c) * ho * wo, src = cb + c * ldc + i * wo
                for y in 0..<ho {
                    let d = dst + y * wo, s = src + y * m * wo
                    for x in 0..<wo { d[x] = s[x] + b }
                }
            }
        }
    }

    /// The inverse of `scatter` (without bias): NCHW images n0 ..< n0 + m of ho x wo into a
    /// chunk's GEMM layout.
    func gather(_ src: UnsafePointer<Float>, m: Int, n0: Int, channels: Int, into cb: UnsafeMutablePointer<Float>) {
        let ldc = columns(m), ho = geo.ho, wo = geo.wo
        for i in 0..<m {
            for c in 0..<channels {
                let s = src + ((n0 + i) * channels + c) * ho * wo, dst = cb + c * ldc + i * wo
                for y in 0..<ho { (dst + y * m * wo).update(from: s + y * wo, count: wo) }
            }
        }
    }
}

/// One thread's buffers for `ConvLowering`, and the single-threaded work on one chunk.
final class ConvWorker {
    /// The unfolded input; reused for the unfolded input gradient in backward.
    let u = Tensor(Shape(0))
    /// GEMM output (forward) or gathered output gradient (backward) of one chunk, [rows][columns].
    let cbuf = Tensor(Shape(0))
    /// This worker's share of the weight gradient, packed like the weights.
    let dW = Tensor(Shape(0))
    /// The chunk whose unfolding U holds (start image, count), to skip redoing it in backward.
    var uHolds: (n0: Int, m: Int)? = nil

    /// Calls `body(uRow, inputRow, image, channel, kx)` for each segment of U: the wo values at
    /// `uRow` come from input row `inputRow` (may lie in the padding) of `image`.
    @inline(__always)
    private func forEachSegment(_ L: ConvLowering, m: Int,
                                _ body: (_ seg: UnsafeMutablePointer<Float>, _ y: Int, _ i: Int, _ c: Int, _ kx: Int) -> Void) {
        let U = u.data, geo = L.geo
        let wo = geo.wo, width = L.rowWidth(m), stride = L.uRowStride(m)
        for c in 0..<geo.c {
            if L.perTap {
                let phase = L.phaseStride(m), rows = L.rowsPerImage
                for kx in 0..<geo.kw {
                    let rowBase = U + (c * geo.kw + kx) * stride
                    for q in 0..<geo.sh {
                        for r in 0..<rows {
                            let base = rowBase + q * phase + r * width
                            let y = geo.sh * r + q - geo.padTop
                            for i in 0..<m { body(base + i * wo, y, i, c, kx) }
                        }
                    }
                }
            } else {
                for ky in 0..<geo.kh {
                    for kx in 0..<geo.kw {
                        let rowBase = U + ((c * geo.kh + ky) * geo.kw + kx) * stride
                        for yo in 0..<geo.ho {
                            let base = rowBase + yo * width
                            let y = geo.sh * yo + ky - geo.padTop
                            for i in 0..<m { body(base + i * wo, y, i, c, kx) }
                        }
                    }
                }
            }
        }
    }

    /// Fills U from images n0 ..< n0 + m of the NCHW input `x`. With `reuse` (backward), skips
    /// the work if U still holds that chunk from the forward pass.
    func unfold(_ L: ConvLowering, _ x: UnsafePointer<Float>, n0: Int, m: Int, reuse: Bool) {
        if reuse, let h = uHolds, h.n0 == n0, h.m == m { return }
        let geo = L.geo
        let wo = geo.wo, sw = geo.sw
        forEachSegment(L, m: m) { seg, y, i, c, kx in
            guard y >= 0 && y < geo.h else { seg.update(repeating: 0, count: wo); return }
            let src = x + ((n0 + i) * geo.c + c) * geo.h * geo.w + y * geo.w + (kx - geo.padLeft)
            let (lo, hi) = L.validColumns(kx: kx)
            if lo > 0 { seg.update(repeating: 0, count: lo) }
            if hi < wo { (seg + hi).update(repeating: 0, count: wo - hi) }
            if sw == 1 {
                if hi > lo { (seg + lo).update(from: src + lo, count: hi - lo) }
            } else if sw == 2 {
                // Even elements, four at a time, while a whole 8-float load stays inside the row.
                var xx = lo
                let rowEnd = geo.w - (kx - geo.padLeft)  // src[i] is valid for i < rowEnd
                while xx + 4 <= hi && 2 * xx + 8 <= rowEnd {
                    let v = UnsafeRawPointer(src + 2 * xx).loadUnaligned(as: SIMD8<Float>.self)
                    UnsafeMutableRawPointer(seg + xx).storeBytes(of: v.evenHalf, as: SIMD4<Float>.self)
                    xx += 4
                }
                while xx < hi { seg[xx] = src[2 * xx]; xx += 1 }
            } else {
                var xx = lo
                while xx < hi { seg[xx] = src[sw * xx]; xx += 1 }
            }
        }
        uHolds = (n0, m)
    }

    /// Adds U (holding an unfolded gradient) back into images n0 ..< n0 + m of `dx` (col2im).
    func fold(_ L: ConvLowering, into dx: UnsafeMutablePointer<Float>, n0: Int, m: Int) {
        let geo = L.geo
        let sw = geo.sw
        forEachSegment(L, m: m) { seg, y, i, c, kx in
            guard y >= 0 && y < geo.h else { return }
            let dst = dx + ((n0 + i) * geo.c + c) * geo.h * geo.w + y * geo.w + (kx - geo.padLeft)
            let (lo, hi) = L.validColumns(kx: kx)
            var xx = lo
            if sw == 1 {
                while xx < hi { dst[xx] += seg[xx]; xx += 1 }
            } else if sw == 2 {
                // Four gradients into the even elements of an 8-float window (the odd ones are
                // written back unchanged), while the window stays inside the row; the same sums
                // as one at a time.
                let rowEnd = geo.w - (kx - geo.padLeft)
                while xx + 4 <= hi && 2 * xx + 8 <= rowEnd {
                    let p = UnsafeMutableRawPointer(dst + 2 * xx)
                    let g = UnsafeRawPointer(seg + xx).loadUnaligned(as: SIMD4<Float>.self)
                    var v = p.loadUnaligned(as: SIMD8<Float>.self)
                    v.evenHalf += g
                    p.storeBytes(of: v, as: SIMD8<Float>.self)
                    xx += 4
                }
                while xx < hi { dst[2 * xx] += seg[xx]; xx += 1 }
            } else {
                while xx < hi { dst[sw * xx] += seg[xx]; xx += 1 }
            }
        }
    }

    /// out[rows][columns] = sum over taps of W_t x U_t (+ beta0 * out).
    func gemmForward(_ L: ConvLowering, weights: UnsafePointer<Float>, m: Int, out: UnsafeMutablePointer<Float>, beta0: Float) {
        let cols = L.columns(m), k = L.kDim, rows = L.rows
        for t in 0..<L.taps {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(cols), Int32(k),
                        1, weights + t * rows * k, Int32(k), u.data + L.tapOffset(t, m), Int32(L.uRowStride(m)),
                        t == 0 ? beta0 : 1, out, Int32(cols))
        }
    }

    /// dW_t += dC x U_t^T for each tap, into this worker's share.
    func gemmWeightGradient(_ L: ConvLowering, dC: UnsafePointer<Float>, m: Int) {
        let cols = L.columns(m), k = L.kDim, rows = L.rows
        for t in 0..<L.taps {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(k), Int32(cols),
                        1, dC, Int32(cols), u.data + L.tapOffset(t, m), Int32(L.uRowStride(m)),
                        1, dW.data + t * rows * k, Int32(k))
        }
    }

    /// U = sum over taps of W_t^T x dC placed at each tap's offset: the unfolded input gradient.
    func gemmInputGradient(_ L: ConvLowering, weights: UnsafePointer<Float>, dC: UnsafePointer<Float>, m: Int) {
        let cols = L.columns(m), k = L.kDim, rows = L.rows
        uHolds = nil
        u.data.update(repeating: 0, count: k * L.uRowStride(m))
        for t in 0..<L.taps {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(cols), Int32(rows),
                        1, weights + t * rows * k, Int32(k), dC, Int32(cols),
                        1, u.data + L.tapOffset(t, m), Int32(L.uRowStride(m)))
        }
    }
}

/// A shared "next chunk" counter for workers claiming chunks.
final class ChunkCounter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).oldValue }
    func reset() { value.store(0, ordering: .relaxed) }
}
