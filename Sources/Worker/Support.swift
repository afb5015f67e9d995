import CytoCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// read(2), under a name no method shadows (`ByteSource.read`).
func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(fd, buffer, count)
    #else
    Darwin.read(fd, buffer, count)
    #endif
}

/// A value guarded by a lock: the way the worker shares mutable state between its threads.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// Log lines for people, on stderr only: stdout belongs to the protocol.
public final class Logger: @unchecked Sendable {
    /// How much to say, from `quiet` (nothing) to `debug` (every rejected line too).
    public enum Level: Int, Sendable, CaseIterable {
        case quiet = 0, error, warning, info, debug
        public init?(name: String) {
            guard let l = Level.allCases.first(where: { "\($0)" == name }) else { return nil }
            self = l
        }
    }

    private let level: Locked<Level>
    private let fd: Int32

    public init(level: Level = .info, fd: Int32 = 2) {
        self.level = Locked(level)
        self.fd = fd
    }

    public var currentLevel: Level {
        get { level.withLock { $0 } }
        set { level.withLock { $0 = newValue } }
    }

    public func error(_ message: @autoclosure () -> String) { log(.error, message) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message) }

    private func log(_ l: Level, _ message: () -> String) {
        guard l.rawValue <= currentLevel.rawValue, l != .quiet else { return }
        var bytes = Array("cytogan serve: \(l): \(message())\n".utf8)
        // Messages may quote user input: keep one log entry on one line.
        for i in 0..<(bytes.count - 1) where bytes[i] == 0x0A || bytes[i] == 0x0D { bytes[i] = 0x20 }
        writeAll(fd: fd, bytes)
    }
}

/// User-supplied text quoted in an error message, cut short so a hostile 50 MB method name
/// does not come back 50 MB long.
func quoted(_ s: String, limit: Int = 80) -> String {
    var out = ""
    var n = 0
    for ch in s {
        if n == limit { return "'" + out + "…'" }
        out.append(ch)
        n += 1
    }
    return "'" + out + "'"
}

/// One thread that runs submitted work in order: the worker's computing requests. A thread of its
/// own (not a dispatch queue) so its stack is large and known.
final class WorkThread: @unchecked Sendable {
    private let cond = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var head = 0

    init(name: String, stackSize: Int = 16 << 20) {
        let t = Thread { [self] in loop() }
        t.name = name
        t.stackSize = stackSize
        t.start()
    }

    func submit(_ work: @escaping @Sendable () -> Void) {
        cond.lock()
        queue.append(work)
        cond.signal()
        cond.unlock()
    }

    private func loop() {
        while true {
            cond.lock()
            while head == queue.count { cond.wait() }
            let work = queue[head]
            queue[head] = {}   // a finished request's params go now, not at the next compaction
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            cond.unlock()
            work()
        }
    }
}
