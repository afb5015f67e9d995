import CytoCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shape of a tensor: up to four dimensions held inline (no heap), so layers can compare
/// and change shapes inside a training step without allocating. Images are NCHW.
public struct Shape: Hashable, Sendable, CustomStringConvertible {
    /// Number of dimensions, 0 (a scalar) to 4.
    public let rank: Int
    // Unused trailing dimensions are 1, so `count` is always the product of the four.
    @usableFromInline let d0: Int, d1: Int, d2: Int, d3: Int

    /// The largest rank a tensor can have.
    public static let maxRank = 4

    /// A scalar (rank 0, one element).
    public init() { rank = 0; d0 = 1; d1 = 1; d2 = 1; d3 = 1 }
    public init(_ a: Int) { precondition(a >= 0); rank = 1; d0 = a; d1 = 1; d2 = 1; d3 = 1 }
    public init(_ a: Int, _ b: Int) { precondition(a >= 0 && b >= 0); rank = 2; d0 = a; d1 = b; d2 = 1; d3 = 1 }
    public init(_ a: Int, _ b: Int, _ c: Int) {
        precondition(a >= 0 && b >= 0 && c >= 0); rank = 3; d0 = a; d1 = b; d2 = c; d3 = 1
    }
    public init(_ n: Int, _ c: Int, _ h: Int, _ w: Int) {
        precondition(n >= 0 && c >= 0 && h >= 0 && w >= 0); rank = 4; d0 = n; d1 = c; d2 = h; d3 = w
    }

    /// A shape from a list of dimensions (as read from a file): rank at most 4, no negative sizes.
    public init(dims: [Int]) throws {
        guard dims.count <= Shape.maxRank else {
            throw CytoError(.unsupported, "tensors of rank \(dims.count) are not supported (at most \(Shape.maxRank))")
        }
        guard dims.allSatisfy({ $0 >= 0 }) else { throw CytoError(.shapeMismatch, "negative dimension in \(dims)") }
        switch dims.count {
        case 0: self.init()
        case 1: self.init(dims[0])
        case 2: self.init(dims[0], dims[1])
        case 3: self.init(dims[0], dims[1], dims[2])
        default: self.init(dims[0], dims[1], dims[2], dims[3])
        }
    }

    /// Dimension `i` (0 ..< rank).
    @inlinable public subscript(i: Int) -> Int {
        precondition(i >= 0 && i < rank, "dimension \(i) of a rank-\(rank) shape")
        switch i { case 0: return d0; case 1: return d1; case 2: return d2; default: return d3 }
    }

    /// The dimensions as an array (allocates; for messages and files).
    public var dims: [Int] { Array([d0, d1, d2, d3].prefix(rank)) }
    /// Number of elements.
    @inlinable public var count: Int { d0 * d1 * d2 * d3 }
    /// The first dimension (the batch), or 1 for a scalar.
    @inlinable public var batch: Int { d0 }
    /// Elements per item of the batch (count / batch); 0 when the batch is empty.
    @inlinable public var itemCount: Int { d1 * d2 * d3 }
    /// This shape with its first dimension replaced (rank >= 1).
    public func withBatch(_ n: Int) -> Shape {
        switch rank {
        case 1: return Shape(n)
        case 2: return Shape(n, d1)
        case 3: return Shape(n, d1, d2)
        default: return Shape(n, d1, d2, d3)
        }
    }

    public var description: String {
        var s = "["
        for i in 0..<rank { if i > 0 { s += ", " }; s += String(self[i]) }
        return s + "]"
    }
}

/// Owned, 64-byte aligned float memory that grows but never shrinks, so buffers sized for the
/// largest batch are reused for smaller ones. Views share one storage.
@usableFromInline
final class TensorStorage {
    @usableFromInline var base: UnsafeMutablePointer<Float>
    @usableFromInline var capacity: Int

    init(capacity n: Int) {
        AllocationProbe.record()
        capacity = max(n, 1)
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
        base.initialize(repeating: 0, count: capacity)
    }

    /// Makes room for `n` elements, keeping the current contents (new elements are zero).
    func reserve(_ n: Int) {
        guard n > capacity else { return }
        AllocationProbe.record()
        let p = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64).bindMemory(to: Float.self, capacity: n)
        p.update(from: base, count: capacity)
        (p + capacity).initialize(repeating: 0, count: n - capacity)
        base.deallocate()
        base = p
        capacity = n
    }

    deinit { base.deallocate() }
}

/// Counts tensor allocations (new storage or growth) made by one thread, for the test that a
/// training step allocates no tensor memory once its buffers are sized.
enum AllocationProbe {
    nonisolated(unsafe) static var thread: pthread_t? = nil
    static let count = Atomic<Int>(0)

    static func record() {
        if let t = thread, pthread_equal(t, pthread_self()) != 0 { count.add(1, ordering: .relaxed) }
    }

    /// Allocations made by the calling thread while `body` runs.
    static func counting(_ body: () throws -> Void) rethrows -> Int {
        count.store(0, ordering: .relaxed)
        thread = pthread_self()
        defer { thread = nil }
        try body()
        return count.load(ordering: .relaxed)
    }
}

/// A Float32 tensor: a shape and a buffer. A reference type so layers can hand out their
/// output buffers without copying; hot loops take `data` (an unsafe pointer) once.
/// Buffers returned by layers stay valid until that layer's next forward or backward.
public final class Tensor {
    public private(set) var shape: Shape
    @usableFromInline var storage: TensorStorage

    /// A zero-filled tensor.
    public init(_ shape: Shape) {
        self.shape = shape
        storage = TensorStorage(capacity: shape.count)
    }

    /// A tensor holding `values` (row-major); their number must equal the shape's count.
    public convenience init(_ shape: Shape, _ values: [Float]) throws {
        guard values.count == shape.count else {
            throw CytoError(.shapeMismatch, "\(values.count) values do not fill shape \(shape) (\(shape.count) elements)")
        }
        self.init(shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A tensor filled with one value.
    public convenience init(_ shape: Shape, repeating v: Float) {
        self.init(shape)
        fill(v)
    }

    /// A view: the same memory as `other`, read with another shape of at most as many elements.
    public init(aliasing other: Tensor, as shape: Shape) {
        precondition(shape.count <= other.storage.capacity)
        self.shape = shape
        storage = other.storage
    }

    /// The first element; valid for `count` elements.
    @inlinable public var data: UnsafeMutablePointer<Float> { storage.base }
    @inlinable public var count: Int { shape.count }
    /// The elements as a buffer pointer.
    @inlinable public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: storage.base, count: shape.count) }

    /// Changes the shape, growing the storage if needed (never shrinking it, so no allocation
    /// once the largest shape has been seen). Contents are kept only up to the old count.
    public func resize(_ shape: Shape) {
        if shape == self.shape { return }
        storage.reserve(shape.count)
        self.shape = shape
    }

    /// Makes this tensor a view of `other`'s memory with `shape` (same count or fewer).
    public func alias(_ other: Tensor, as shape: Shape) {
        other.storage.reserve(shape.count)
        storage = other.storage
        self.shape = shape
    }

    /// True if both tensors read the same memory.
    public func sharesStorage(with other: Tensor) -> Bool { storage === other.storage }

    /// A copy of the elements.
    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// A new tensor with its own copy of the shape and elements.
    public func clone() -> Tensor {
        let t = Tensor(shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Sets every element to `v`.
    public func fill(_ v: Float) { data.update(repeating: v, count: count) }

    /// Resizes to `other`'s shape and copies its elements.
    public func copy(from other: Tensor) {
        resize(other.shape)
        if other.data != data { data.update(from: other.data, count: count) }
    }

    /// Replaces the elements (their number must equal `count`).
    public func setValues(_ v: [Float]) throws {
        guard v.count == count else {
            throw CytoError(.shapeMismatch, "\(v.count) values do not fill shape \(shape) (\(count) elements)")
        }
        v.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: v.count) }
    }

    @inlinable public subscript(i: Int) -> Float {
        get { precondition(i >= 0 && i < count); return data[i] }
        set { precondition(i >= 0 && i < count); data[i] = newValue }
    }

    /// Element (n, c, h, w) of a rank-4 tensor.
    @inlinable public subscript(n: Int, c: Int, h: Int, w: Int) -> Float {
        get { data[((n * shape[1] + c) * shape[2] + h) * shape[3] + w] }
        set { data[((n * shape[1] + c) * shape[2] + h) * shape[3] + w] = newValue }
    }

    /// Sum of squares in double precision.
    public var sumOfSquares: Double {
        var s = 0.0
        for i in 0..<count { s += Double(data[i]) * Double(data[i]) }
        return s
    }
}
