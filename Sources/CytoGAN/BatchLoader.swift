import CellImage
import CytoCore
import CytoNN
import Foundation

/// Drawing the trainer's augmentation.
extension SquareSymmetry {
    /// Draws a symmetry allowed by `augmentation` (identity when it allows none). Flips only:
    /// a left-right and an up-down mirror, each with probability 1/2 (an up-down mirror is a
    /// left-right mirror plus a half turn). Rotations only: 0 to 3 quarter turns. Both: one of 8.
    public static func draw(_ augmentation: Augmentation, rng: inout RandomStream) -> SquareSymmetry {
        switch (augmentation.flips, augmentation.rotations) {
        case (false, false): return SquareSymmetry()
        case (false, true): return SquareSymmetry(turns: rng.below(4))
        case (true, false):
            let lr = rng.below(2) == 1, ud = rng.below(2) == 1
            return ud ? SquareSymmetry(mirror: !lr, turns: 2) : SquareSymmetry(mirror: lr)
        case (true, true):
            let k = rng.below(8)
            return SquareSymmetry(index: k)
        }
    }
}

/// Feeds the trainer: a background thread walks the crops in a seeded shuffled order (a new order
/// each epoch), decodes and preprocesses each crop, augments it, and fills a ring of preallocated
/// batch tensors, so the engine never waits on I/O. Unreadable crops are skipped, counted and
/// named through `log`. Each batch carries the data cursor after it, so a checkpoint taken after
/// consuming it resumes at exactly the next crop with the same augmentation draws. Call `stop()`
/// when done: the thread runs (and keeps the loader alive) until then.
public final class BatchLoader: @unchecked Sendable {
    /// A filled batch. Give it back with `recycle` once the step is done with the tensor.
    public struct Batch {
        public let tensor: Tensor
        public let cursorAfter: DataCursor
        let slot: Int
    }

    public let source: any CropSource
    public let preprocessing: Preprocessing
    public let augmentation: Augmentation
    public let batchSize: Int
    /// Data-parallel: the items of each global batch this process loads (nil: all).
    public let slice: BatchSlice?
    /// Crops skipped so far because they could not be read.
    public var skippedCount: Int { lock.lock(); defer { lock.unlock() }; return skipped }
    /// Seconds the consumer spent waiting for a batch (0 when the loader keeps ahead).
    public var waitSeconds: Double { lock.lock(); defer { lock.unlock() }; return waited }

    private let slots: [Tensor]
    private var free: [Int]
    private var filled: [(Int, DataCursor)] = []
    private var failure: Error?
    private var stopping = false
    private var finished = false
    private var skipped = 0
    private var waited = 0.0
    private let lock = NSCondition()
    private let log: (String) -> Void
    private var cursor: DataCursor

    /// Starts the background thread at `cursor` (a fresh cursor starts epoch 0). When the cursor
    /// was saved for a different number of crops, the order restarts with a message in the log.
    public init(source: any CropSource, preprocessing: Preprocessing, augmentation: Augmentation, batchSize: Int,
                cursor: DataCursor, depth: Int = 3, slice: BatchSlice? = nil, log: @escaping (String) -> Void = { _ in }) throws {
        guard source.count > 0 else { throw CytoError(.invalidInput, "no crops to train on (the manifest has no usable rows)") }
        guard batchSize > 0 else { throw CytoError(.invalidInput, "batch size must be positive") }
        self.source = source
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.batchSize = batchSize
        if let slice, slice.global != batchSize {
            throw CytoError(.invalidInput, "batch loader: the slice is of a batch of \(slice.global), not \(batchSize)")
        }
        self.slice = slice?.isWhole == true ? nil : slice
        self.log = log
        var c = cursor
        if c.datasetCount != source.count {
            if c.datasetCount != 0 || c.position != 0 {
                log("the data cursor was saved for \(c.datasetCount) crops, the data now has \(source.count): starting a new order for epoch \(c.epoch)")
            }
            c.datasetCount = source.count
            c.position = 0
        }
        self.cursor = c
        slots = (0..<max(2, depth)).map { _ in
            Tensor(Shape(slice?.local ?? batchSize, preprocessing.channels, preprocessing.size, preprocessing.size))
        }
        free = Array(slots.indices)
        // The thread holds the loader until `stop()` ends it.
        let thread = Thread { self.produce() }
        thread.name = "cytogan-loader"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// The epoch's order: a permutation of 0..<n drawn from `rng` (advanced past the shuffle).
    static func order(count n: Int, rng: inout RandomStream) -> [UInt32] {
        var o = (0..<n).map { UInt32($0) }
        rng.shuffle(&o)
        return o
    }

    private func produce() {
        let loader = CropLoader(preprocessing: preprocessing)
        let per = preprocessing.inputCount, n = source.count, side = preprocessing.size
        var c = cursor
        var orderRNG = c.orderAtEpochStart
        var order = BatchLoader.order(count: n, rng: &orderRNG)
        var scratch = [Float](repeating: 0, count: side * side)
        var failuresInARow = 0
        while true {
            lock.lock()
            while free.isEmpty && !stopping { lock.wait() }
            if stopping { finished = true; lock.broadcast(); lock.unlock(); return }
            let slot = free.removeFirst()
            lock.unlock()
            let t = slots[slot]
            var item = 0
            var fatal: Error? = nil
            if let slice {
                fatal = fillSlice(slice, t, &c, &order, &orderRNG, loader, &scratch)
                item = fatal == nil && !stopRequested ? batchSize : 0
            }
            while slice == nil && item < batchSize {
                if c.position == n {
                    c.epoch += 1
                    c.position = 0
                    c.orderAtEpochStart = orderRNG
                    order = BatchLoader.order(count: n, rng: &orderRNG)
                }
                let index = Int(order[c.position])
                c.position += 1
                let out = UnsafeMutableBufferPointer(start: t.data + item * per, count: per)
                do {
                    try loader.load(try source.spec(at: index), into: out)
                } catch {
                    failuresInARow += 1
                    lock.lock(); skipped += 1; lock.unlock()
                    log("skipped crop \(source.name(at: index)): \(error)")
                    if failuresInARow >= n {
                        fatal = CytoError(.invalidInput, "none of the \(n) crops could be read (see the messages above)")
                        break
                    }
                    if stopRequested { break }
                    continue
                }
                failuresInARow = 0
                let sym = SquareSymmetry.draw(augmentation, rng: &c.augmentation)
                scratch.withUnsafeMutableBufferPointer { sym.apply(out.baseAddress!, channels: preprocessing.channels, size: side, scratch: $0.baseAddress!) }
                item += 1
            }
            lock.lock()
            if let fatal { failure = fatal; finished = true; lock.broadcast(); lock.unlock(); return }
            if item < batchSize { finished = true; lock.broadcast(); lock.unlock(); return }  // stopping
            filled.append((slot, c))
            lock.broadcast()
            lock.unlock()
        }
    }

    /// Data-parallel: walks the global batch's `slice.global` positions of the order (so the
    /// cursor and the augmentation stream advance as in one process), drawing every position's
    /// augmentation and loading only this process's positions into `t`. An unreadable crop is
    /// logged and replaced by the next readable crop of the order (not consumed), so every
    /// process keeps the same cursor without exchanging messages. Returns a fatal error, if any.
    private func fillSlice(_ slice: BatchSlice, _ t: Tensor, _ c: inout DataCursor, _ order: inout [UInt32],
                           _ orderRNG: inout RandomStream, _ loader: CropLoader, _ scratch: inout [Float]) -> Error? {
        let per = preprocessing.inputCount, n = source.count, side = preprocessing.size
        for r in 0..<slice.global {
            if c.position == n {
                c.epoch += 1
                c.position = 0
                c.orderAtEpochStart = orderRNG
                order = BatchLoader.order(count: n, rng: &orderRNG)
            }
            let at = c.position
            c.position += 1
            let sym = SquareSymmetry.draw(augmentation, rng: &c.augmentation)
            guard r >= slice.offset && r < slice.offset + slice.local else { continue }
            let out = UnsafeMutableBufferPointer(start: t.data + (r - slice.offset) * per, count: per)
            var loaded = false
            for k in 0..<n {
                let index = Int(order[(at + k) % n])
                do {
                    try loader.load(try source.spec(at: index), into: out)
                    loaded = true
                    break
                } catch {
                    lock.lock(); skipped += 1; lock.unlock()
                    log("skipped crop \(source.name(at: index)): \(error)")
                    if stopRequested { return nil }
                }
            }
            guard loaded else { return CytoError(.invalidInput, "none of the \(n) crops could be read (see the messages above)") }
            scratch.withUnsafeMutableBufferPointer { sym.apply(out.baseAddress!, channels: preprocessing.channels, size: side, scratch: $0.baseAddress!) }
        }
        return nil
    }

    private var stopRequested: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// The next batch, waiting for the background thread if needed; rethrows its fatal error.
    public func next() throws -> Batch {
        lock.lock()
        defer { lock.unlock() }
        let t0 = MonotonicClock.nanoseconds()
        while filled.isEmpty && failure == nil && !finished { lock.wait() }
        waited += Double(MonotonicClock.nanoseconds() - t0) * 1e-9
        if filled.isEmpty {
            if let failure { throw failure }
            throw CytoError(.cancelled, "the batch loader was stopped")
        }
        let (slot, c) = filled.removeFirst()
        return Batch(tensor: slots[slot], cursorAfter: c, slot: slot)
    }

    /// Returns a batch's buffer to the ring.
    public func recycle(_ batch: Batch) {
        lock.lock()
        free.append(batch.slot)
        lock.broadcast()
        lock.unlock()
    }

    /// Stops the background thread and waits for it.
    public func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        while !finished { lock.wait() }
        lock.unlock()
    }
}
