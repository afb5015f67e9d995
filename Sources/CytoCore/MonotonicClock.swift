#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The clock every timing reads: the monotonic clock (steady, unaffected by changes of the wall
/// clock), and the calling thread's CPU time (steadier than the wall on a busy machine).
public enum MonotonicClock {
    /// Nanoseconds since a fixed, arbitrary point (boot, on Linux): only differences mean anything.
    public static func nanoseconds() -> UInt64 {
        let t = read(CLOCK_MONOTONIC)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    /// Seconds since the same point as `nanoseconds()`.
    public static func seconds() -> Double { seconds(read(CLOCK_MONOTONIC)) }

    /// Seconds of CPU time the calling thread has used.
    public static func threadCPUSeconds() -> Double { seconds(read(CLOCK_THREAD_CPUTIME_ID)) }

    private static func read(_ clock: clockid_t) -> timespec {
        var t = timespec()
        clock_gettime(clock, &t)
        return t
    }

    private static func seconds(_ t: timespec) -> Double { Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
}
