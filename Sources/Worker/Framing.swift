import CytoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the worker's input bytes come from: stdin in production, memory in tests.
public protocol ByteSource: Sendable {
    /// Reads up to `buffer.count` bytes; returns how many, 0 at end of input.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// Reads a file descriptor with read(2), retrying EINTR.
public struct FileDescriptorSource: ByteSource {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    public static let stdin = FileDescriptorSource(fd: 0)

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = systemRead(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw CytoError(.io, "reading input failed: errno \(errno)")
        }
    }
}

/// Splits a byte stream into protocol lines: "\n" ends a line, a "\r" just before it is dropped,
/// a final line without "\n" still counts. A line longer than `maxLineBytes` is not buffered: its
/// bytes are counted and dropped, and it is reported as `.tooLong` when its end arrives.
public struct LineFramer: Sendable {
    /// What the framer found in the stream. Line numbers start at 1 and count every line.
    public enum Event: Equatable, Sendable {
        case line([UInt8], number: Int)
        case tooLong(number: Int, bytes: Int)
    }

    public let maxLineBytes: Int
    private var buffer: [UInt8] = []
    private var lineNumber = 0
    private var discarding = false
    private var discardedBytes = 0
    private var lastDiscardedByte: UInt8 = 0

    public init(maxLineBytes: Int) {
        precondition(maxLineBytes > 0)
        self.maxLineBytes = maxLineBytes
    }

    /// Consumes one chunk of input, emitting every line it completes.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ emit: (Event) -> Void) {
        var start = 0
        let n = chunk.count
        while start < n {
            let end: Int
            if let p = memchr(chunk.baseAddress! + start, 0x0A, n - start) {
                end = UnsafeRawPointer(p) - chunk.baseAddress!
            } else {
                end = n
            }
            let piece = UnsafeRawBufferPointer(rebasing: chunk[start..<end])
            take(piece)
            if end < n {
                endLine(emit)
                start = end + 1
            } else {
                start = n
            }
        }
    }

    /// End of input: a last line without its newline is still a line.
    public mutating func finish(_ emit: (Event) -> Void) {
        if !buffer.isEmpty || discarding { endLine(emit) }
    }

    private mutating func take(_ piece: UnsafeRawBufferPointer) {
        if discarding {
            discardedBytes += piece.count
            if let b = piece.last { lastDiscardedByte = b }
            return
        }
        // One byte of slack for a "\r" that the newline will strip.
        if buffer.count + piece.count > maxLineBytes + 1 {
            discarding = true
            discardedBytes = buffer.count + piece.count
            lastDiscardedByte = piece.last ?? 0
            buffer = []
            return
        }
        buffer.append(contentsOf: piece)
    }

    private mutating func endLine(_ emit: (Event) -> Void) {
        lineNumber += 1
        if discarding {
            emit(.tooLong(number: lineNumber, bytes: discardedBytes - (lastDiscardedByte == 0x0D ? 1 : 0)))
            discarding = false
            discardedBytes = 0
            return
        }
        if buffer.last == 0x0D { buffer.removeLast() }
        if buffer.count > maxLineBytes {
            emit(.tooLong(number: lineNumber, bytes: buffer.count))
        } else {
            emit(.line(buffer, number: lineNumber))
        }
        // Keep a small buffer's capacity for the next line; give a huge one back.
        if buffer.capacity > 1 << 20 { buffer = [] } else { buffer.removeAll(keepingCapacity: true) }
    }
}

/// True when a line holds only spaces, tabs or carriage returns: such lines are skipped.
func isBlank(_ line: [UInt8]) -> Bool {
    line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
}
