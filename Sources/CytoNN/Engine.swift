import CBLAS
import Dispatch

/// Engine-wide settings. The engine runs its own threads: convolutions share chunks of images
/// among `threads` workers, each calling single-threaded GEMMs, and dense layers split their
/// GEMMs by rows; element-wise loops split too. OpenBLAS itself is therefore set to ONE thread
/// (one GEMM never waits on a thread barrier). Set the count once at start-up, before training;
/// the default is 1.
public enum Engine {
    nonisolated(unsafe) private static var threadCount = 1
    /// OpenBLAS to one thread, once, before the engine's first GEMM.
    private static let blasConfigured: Void = { openblas_set_num_threads(1) }()

    /// Number of threads the engine uses.
    public static var threads: Int {
        _ = blasConfigured
        return threadCount
    }

    /// Sets the engine's thread count (at least 1); OpenBLAS stays at one thread per call.
    public static func setThreads(_ n: Int) {
        _ = blasConfigured
        threadCount = max(1, n)
        openblas_set_num_threads(1)
    }

    /// Sets OpenBLAS's own thread count, for code that calls it directly outside the engine's
    /// pool (the profile commands' linear algebra); the next `setThreads` sets it back to one.
    public static func setBLASThreads(_ n: Int) {
        _ = blasConfigured
        openblas_set_num_threads(Int32(max(1, n)))
    }
}

/// Splits 0..<n into at most `Engine.threads` contiguous ranges and runs `body` on each, in
/// parallel when there is more than one. Loops whose total `work` (about the number of
/// elements touched) is small run inline, where a thread hand-off would cost more.
@inline(__always)
func parallelFor(_ n: Int, work: Int, _ body: (Range<Int>) -> Void) {
    let t = min(Engine.threads, n)
    if t <= 1 || work < 1 << 15 {
        body(0..<n)
        return
    }
    withoutActuallyEscaping(body) { body in
        let box = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: t) { i in
            box.value((n * i / t)..<(n * (i + 1) / t))
        }
    }
}

/// Carries a value into a concurrent loop whose iterations touch disjoint memory.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

/// Like `parallelFor`, also passing the chunk's index (below `Engine.threads`), so each
/// concurrent chunk can use its own scratch buffer.
@inline(__always)
func parallelChunks(_ n: Int, work: Int, _ body: (Int, Range<Int>) -> Void) {
    let t = min(Engine.threads, n)
    if t <= 1 || work < 1 << 15 {
        body(0, 0..<n)
        return
    }
    withoutActuallyEscaping(body) { body in
        let box = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: t) { i in
            box.value(i, (n * i / t)..<(n * (i + 1) / t))
        }
    }
}

/// Row-major C[m x n] = alpha op(A) op(B) + beta C, with op(A) m x k and op(B) k x n, split
/// among the engine's threads along the longer of M and N. Every element is still computed by
/// one single-threaded GEMM over all of K; the thread count changes only the shapes of those
/// GEMMs, which some BLAS kernels (OpenBLAS's for AMD Zen) tile differently, so results agree
/// across thread counts to float rounding, and bit for bit for the same thread count.
func parallelSgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                   b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0 && n > 0 else { return }
    let ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans
    let splitRows = m >= n
    let extent = splitRows ? m : n
    parallelChunks(extent, work: m * n * max(k, 1) / 16) { _, r in
        guard !r.isEmpty else { return }
        if splitRows {
            let aa = transA ? a + r.lowerBound : a + r.lowerBound * lda
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(r.count), Int32(n), Int32(k), alpha, aa, Int32(lda), b, Int32(ldb),
                        beta, c + r.lowerBound * ldc, Int32(ldc))
        } else {
            let bb = transB ? b + r.lowerBound * ldb : b + r.lowerBound
            cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(r.count), Int32(k), alpha, a, Int32(lda), bb, Int32(ldb),
                        beta, c + r.lowerBound, Int32(ldc))
        }
    }
}
