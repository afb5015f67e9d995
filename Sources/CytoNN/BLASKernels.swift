import CBLAS
import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which of OpenBLAS's GEMM kernels this process runs, and the better ones it can ask for.
///
/// OpenBLAS picks its kernels when it loads, from the CPU's model number. A model newer than the
/// library (a recent Xeon, often under a hypervisor that names it only "Intel Xeon Processor")
/// makes it fall back to its generic SSE3 kernel ("Prescott"), 2.5 to 5 times slower than the
/// AVX2 or AVX-512 kernels the CPU can run. The library reads `OPENBLAS_CORETYPE` only at load
/// time, so the command line sets it and starts itself again (`relaunchWithBestKernels`).
public enum BLASKernels {
    /// Kernel families that already use AVX2 and FMA or better: nothing to gain by asking.
    static let modern: Set<String> = ["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"]

    /// The kernel family OpenBLAS is using ("SkylakeX", "Haswell", "Zen", "Prescott", ...).
    public static var current: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The family to ask for when OpenBLAS fell back to an older kernel than the CPU's flags
    /// (/proc/cpuinfo's `flags`) allow, else nil. The flags are read only for an older kernel.
    public static func recommended(current: String, cpuFlags: @autoclosure () -> Set<String>) -> String? {
        guard !modern.contains(current.lowercased()) else { return nil }
        let flags = cpuFlags()
        let avx512 = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]
        if avx512.allSatisfy(flags.contains) { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        return nil
    }

    /// The flags of the first processor in /proc/cpuinfo (empty where there is none).
    public static func cpuFlags(cpuinfo path: String = "/proc/cpuinfo") -> Set<String> {
        guard let bytes = try? readFileBytes(path) else { return [] }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }

    /// GFLOP/s of one single-threaded sgemm, C[m x n] = A[m x k] B[k x n] (row-major, beta 0),
    /// at its best over `rounds` rounds of repeated calls lasting at least `seconds` each: what
    /// OpenBLAS reaches at that shape on one core, the reference for the engine's own passes.
    public static func sgemmGFLOPs(m: Int, n: Int, k: Int, seconds: Double = 0.1, rounds: Int = 3) -> Double {
        precondition(m > 0 && n > 0 && k > 0)
        let a = Tensor(Shape(m * k)), b = Tensor(Shape(k * n)), c = Tensor(Shape(m * n))
        for i in 0..<a.count { a.data[i] = Float(i % 97) * 0.01 - 0.48 }
        for i in 0..<b.count { b.data[i] = Float(i % 89) * 0.01 - 0.44 }
        Engine.setBLASThreads(1)
        var best = Double.infinity
        for _ in 0..<rounds {
            let t0 = MonotonicClock.seconds()
            var calls = 0
            repeat {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a.data, Int32(k),
                            b.data, Int32(n), 0, c.data, Int32(n))
                calls += 1
            } while MonotonicClock.seconds() - t0 < seconds
            best = min(best, (MonotonicClock.seconds() - t0) / Double(calls))
        }
        return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
    }

    /// Starts this program again with `OPENBLAS_CORETYPE` set when OpenBLAS fell back to a slower
    /// kernel than the CPU supports. Call first thing in `main`, before any other work: the new
    /// image keeps the process id, arguments and open files. A user's own `OPENBLAS_CORETYPE`
    /// is left alone; if the relaunch fails the program simply goes on with the kernel it has.
    public static func relaunchWithBestKernels() {
        #if os(Linux)
        guard getenv("OPENBLAS_CORETYPE") == nil,
              let better = recommended(current: current, cpuFlags: cpuFlags()) else { return }
        setenv("OPENBLAS_CORETYPE", better, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Still here: exec failed; keep the kernel this process has.
        unsetenv("OPENBLAS_CORETYPE")
        #endif
    }
}
