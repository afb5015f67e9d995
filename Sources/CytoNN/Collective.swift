import CMPIShim
import CytoCore
import Foundation

/// The group of processes that train one model together (data parallelism): each holds a slice
/// of every batch, and sums over the group replace sums over the batch. The engine calls it for
/// synchronized BatchNorm statistics and gradient sums; nil (or `size` 1) means one process.
public protocol Collective: AnyObject {
    /// This process's index in the group, 0..<size.
    var rank: Int { get }
    /// Number of processes in the group.
    var size: Int { get }
    /// Replaces `buffer[0..<count]` on every rank by its sum over the ranks (same order on every rank).
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Double-precision sum over the ranks, for statistics.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Returns once every rank has called it.
    func barrier() throws
}

/// Where a process's items sit in the global batch: a local batch is `segments` stacked blocks of
/// `local` items (the discriminator's [fake; real] is 2 blocks), and local item j of block k is
/// global item k * global + offset + j. Random draws made per item are drawn for the whole
/// global batch and read at these indices, so they match a single process's.
public struct BatchSlice: Sendable, Equatable {
    /// Items per block on this process.
    public var local: Int
    /// This process's first item within each global block.
    public var offset: Int
    /// Items per block over all processes.
    public var global: Int

    public init(local: Int, offset: Int, global: Int) {
        self.local = local; self.offset = offset; self.global = global
    }

    /// The slice of rank `rank` of `ranks` when each holds an equal share of `global` items.
    public init(rank: Int, ranks: Int, global: Int) throws {
        guard ranks > 0, rank >= 0, rank < ranks else { throw CytoError(.invalidInput, "rank \(rank) is not in 0..<\(ranks)") }
        guard global % ranks == 0, global >= ranks else {
            throw CytoError(.invalidInput, "the batch size \(global) does not divide evenly among \(ranks) processes: give a batch size that is a multiple of \(ranks)")
        }
        local = global / ranks; offset = rank * local; self.global = global
    }

    /// The global index of local item `i` of a local batch.
    @inline(__always)
    public func globalIndex(_ i: Int) -> Int { (i / local) * global + offset + i % local }

    /// True when this process holds the whole batch.
    public var isWhole: Bool { local == global }
}

/// Sums the gradients of a fixed list of parameters over a `Collective` with one reduction: the
/// gradients are packed into one contiguous buffer (allocated once, with `extras` trailing slots
/// for scalars that travel with them: losses, a stop vote), summed, and unpacked. One call per
/// network per update, so the per-message latency is paid once rather than once per layer.
public final class GradientReducer {
    public let parameters: [Parameter]
    public let collective: any Collective
    /// Trailing scalar slots after the gradients, summed with them.
    public let extras: Int
    private let fused: UnsafeMutablePointer<Float>
    private let gradientCount: Int

    public init(parameters: [Parameter], collective: any Collective, extras: Int = 0) {
        self.parameters = parameters
        self.collective = collective
        self.extras = extras
        gradientCount = parameters.reduce(0) { $0 + $1.count }
        fused = UnsafeMutablePointer<Float>.allocate(capacity: gradientCount + extras)
        fused.initialize(repeating: 0, count: gradientCount + extras)
    }

    deinit { fused.deallocate() }

    /// Bytes sent into one reduction.
    public var bytes: Int { (gradientCount + extras) * MemoryLayout<Float>.size }

    /// Sets extra slot `i` before `reduce()`; after it, reads the sum over the ranks.
    public subscript(extra i: Int) -> Float {
        get { fused[gradientCount + i] }
        set { fused[gradientCount + i] = newValue }
    }

    /// Replaces every parameter's gradient (and the extra slots) by its sum over the ranks.
    public func reduce() throws {
        var o = 0
        for p in parameters { (fused + o).update(from: p.grad.data, count: p.count); o += p.count }
        try collective.allreduceSum(fused, count: gradientCount + extras)
        o = 0
        for p in parameters { p.grad.data.update(from: fused + o, count: p.count); o += p.count }
    }
}

/// The processes of an MPI job (MPI_COMM_WORLD), through an MPI library loaded at run time, so
/// the program needs no MPI to build or to run alone. Only the thread that called `start` may
/// use it. Any MPI failure ends the whole job (MPI's default error handler), never one rank.
/// A collective that waits longer than `timeout` seconds (CYTOGAN_MPI_TIMEOUT, default 600) for
/// the other processes ends this process with a message, so a job whose peer hangs without dying
/// does not wait forever (the launcher then ends the rest).
public final class MPICollective: Collective {
    public let rank: Int
    public let size: Int
    /// The library file that was loaded (libmpi.so.40: Open MPI; libmpi.so.12: MPICH).
    public let library: String
    /// Seconds one collective may take before this process gives up on the others.
    public let timeout: Double
    private let watchdog: Watchdog

    private init(rank: Int, size: Int, library: String, timeout: Double) {
        self.rank = rank; self.size = size; self.library = library; self.timeout = timeout
        watchdog = Watchdog(rank: rank, size: size, timeout: timeout)
    }

    /// True when a launcher (mpirun, mpiexec, srun with PMI/PMIx) started this process as one
    /// of several ranks.
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"] {
            if let v = env[key], let n = Int(v) { return n > 1 }
        }
        return env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    /// Loads libmpi and joins the job. Errors name what could not be loaded.
    public static func start() throws -> MPICollective {
        if cmpi_init() != 0 {
            throw CytoError(.unsupported, "MPI: \(String(cString: cmpi_error())); install Open MPI (libopenmpi3 / openmpi-bin) or set CYTOGAN_LIBMPI to your libmpi.so")
        }
        var timeout = 600.0
        if let t = ProcessInfo.processInfo.environment["CYTOGAN_MPI_TIMEOUT"] {
            guard let v = Double(t), v > 0 else { throw CytoError(.invalidInput, "CYTOGAN_MPI_TIMEOUT must be a number of seconds > 0, got '\(t)'") }
            timeout = v
        }
        return MPICollective(rank: Int(cmpi_rank()), size: Int(cmpi_size()), library: String(cString: cmpi_library()), timeout: timeout)
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        watchdog.arm(); defer { watchdog.disarm() }
        let rc = cmpi_allreduce_sum_float(buffer, Int32(count))
        if rc != 0 { throw CytoError(.io, "MPI_Allreduce of \(count) floats failed on rank \(rank) (error \(rc))") }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        watchdog.arm(); defer { watchdog.disarm() }
        let rc = cmpi_allreduce_sum_double(buffer, Int32(count))
        if rc != 0 { throw CytoError(.io, "MPI_Allreduce of \(count) doubles failed on rank \(rank) (error \(rc))") }
    }

    public func barrier() throws {
        watchdog.arm(); defer { watchdog.disarm() }
        let rc = cmpi_barrier()
        if rc != 0 { throw CytoError(.io, "MPI_Barrier failed on rank \(rank) (error \(rc))") }
    }

    /// Ends every rank of the job with `code`.
    public func abort(_ code: Int32) -> Never {
        cmpi_abort(code)
        exit(code)
    }

    /// Leaves the job (call once, after the last collective).
    public func finish() { _ = cmpi_finalize() }
}

/// Ends the process when a collective has been waiting longer than its timeout (a thread that
/// looks once a second; arming and disarming only store a time).
private final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var since: UInt64 = 0
    private let rank: Int, size: Int, timeout: Double

    init(rank: Int, size: Int, timeout: Double) {
        self.rank = rank; self.size = size; self.timeout = timeout
        let thread = Thread { [self] in watch() }
        thread.name = "cytogan-mpi-watchdog"
        thread.start()
    }

    func arm() { lock.lock(); since = MonotonicClock.nanoseconds(); lock.unlock() }
    func disarm() { lock.lock(); since = 0; lock.unlock() }

    private func watch() {
        while true {
            Thread.sleep(forTimeInterval: 1)
            lock.lock()
            let s = since
            lock.unlock()
            guard s != 0, Double(MonotonicClock.nanoseconds() - s) * 1e-9 > timeout else { continue }
            let m = "cytogan: error: process \(rank) of \(size) waited more than \(Int(timeout)) s for the others in an MPI collective (CYTOGAN_MPI_TIMEOUT): a process is stuck or gone; ending this process\n"
            FileHandle.standardError.write(Data(m.utf8))
            _exit(75)
        }
    }
}
