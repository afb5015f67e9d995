import CBLAS
import Dispatch

/// Engine-wide settings: the thread count used by OpenBLAS for GEMM and by the engine's own
/// loops (im2col, scatter, BatchNorm). Set once at start-up, before any training runs.
public enum Engine {
    nonisolated(unsafe) private static var threadCount = 1

    /// Number of threads for GEMM and the engine's own parallel loops.
    public static var threads: Int { threadCount }

    /// Sets the thread count (at least 1) for OpenBLAS and for the engine's loops.
    public static func setThreads(_ n: Int) {
        threadCount = max(1, n)
        openblas_set_num_threads(Int32(threadCount))
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
