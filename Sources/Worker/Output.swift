import CytoCore

/// Where the worker's protocol lines go: stdout in production, memory in tests.
public protocol LineSink: Sendable {
    /// Writes one complete line (ending in "\n"); false when the output is gone.
    func write(line: [UInt8]) -> Bool
}

/// Writes lines to a file descriptor with write(2): each line goes out at once, unbuffered.
public struct FileDescriptorSink: LineSink {
    public let fd: Int32
    public init(fd: Int32) { self.fd = fd }
    public static let stdout = FileDescriptorSink(fd: 1)
    public func write(line: [UInt8]) -> Bool { writeAll(fd: fd, line) == nil }
}
