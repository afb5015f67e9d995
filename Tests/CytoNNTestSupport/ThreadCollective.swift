import CytoCore
import CytoNN
import Foundation

/// N ranks simulated in one process, each on its own thread: an in-memory `Collective` for
/// checking data-parallel code against one process without MPI. Sums are taken in rank order.
public final class ThreadGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var floats: [UnsafeMutablePointer<Float>?]
    private var doubles: [UnsafeMutablePointer<Double>?]

    public init(size: Int) {
        self.size = size
        floats = Array(repeating: nil, count: size)
        doubles = Array(repeating: nil, count: size)
    }

    /// The collective of rank `rank`.
    public func member(_ rank: Int) -> any Collective { Member(group: self, rank: rank) }

    /// Runs `body(rank)` on `size` threads at once and returns their results in rank order.
    /// Each rank's `body` may share read-only inputs with the others.
    public func run<T>(_ body: @escaping (Int) throws -> T) throws -> [T] {
        let results = Results<T>(size)
        let done = DispatchGroup()
        let work = Unchecked(body)
        for r in 0..<size {
            done.enter()
            let t = Thread {
                do { results.set(r, .success(try work.value(r))) } catch { results.set(r, .failure(error)) }
                done.leave()
            }
            t.stackSize = 16 << 20
            t.start()
        }
        done.wait()
        return try results.values.map { try $0!.get() }
    }

    func barrier() {
        condition.lock()
        let g = generation
        arrived += 1
        if arrived == size { arrived = 0; generation += 1; condition.broadcast() } else {
            while generation == g { condition.wait() }
        }
        condition.unlock()
    }

    func sum<T: FloatingPoint>(_ buffer: UnsafeMutablePointer<T>, count: Int, rank: Int,
                               slots: ReferenceWritableKeyPath<ThreadGroup, [UnsafeMutablePointer<T>?]>) {
        condition.lock(); self[keyPath: slots][rank] = buffer; condition.unlock()
        barrier()
        var total = [T](repeating: 0, count: count)
        condition.lock()
        let all = self[keyPath: slots]
        condition.unlock()
        for p in all { for i in 0..<count { total[i] += p![i] } }
        barrier()
        for i in 0..<count { buffer[i] = total[i] }
        barrier()
    }

    private final class Member: Collective {
        let group: ThreadGroup
        let rank: Int
        var size: Int { group.size }
        init(group: ThreadGroup, rank: Int) { self.group = group; self.rank = rank }
        func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
            group.sum(buffer, count: count, rank: rank, slots: \.floats)
        }
        func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
            group.sum(buffer, count: count, rank: rank, slots: \.doubles)
        }
        func barrier() throws { group.barrier() }
    }

    private struct Unchecked<V>: @unchecked Sendable {
        let value: V
        init(_ v: V) { value = v }
    }

    private final class Results<T>: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var values: [Result<T, Error>?]
        init(_ n: Int) { values = Array(repeating: nil, count: n) }
        func set(_ i: Int, _ v: Result<T, Error>) { lock.lock(); values[i] = v; lock.unlock() }
    }
}

/// max |a - b| / max |a| (0 when both are all zero): a per-tensor relative difference that stays
/// well-posed where single elements are near zero.
public func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var d = 0.0, m = 0.0
    for (x, y) in zip(a, b) { d = max(d, abs(Double(x) - Double(y))); m = max(m, abs(Double(x))) }
    return m > 0 ? d / m : d
}
