import CytoCore
import Foundation
@testable import Worker

/// Collects the worker's output lines in memory and lets a test wait for the one it expects.
final class MemorySink: LineSink, @unchecked Sendable {
    private let cond = NSCondition()
    private var lines: [[UInt8]] = []

    func write(line: [UInt8]) -> Bool {
        cond.lock()
        lines.append(line)
        cond.broadcast()
        cond.unlock()
        return true
    }

    /// Every message written so far, parsed (each line must be one JSON text ending in "\n").
    func messages() -> [JSON] {
        cond.lock()
        defer { cond.unlock() }
        return lines.map(Self.parse)
    }

    static func parse(_ line: [UInt8]) -> JSON {
        precondition(line.last == 0x0A && !line.dropLast().contains(0x0A), "an output line must end in one newline")
        var body = Array(line.dropLast())
        return try! JSON.parse(bytes: &body)
    }

    /// Waits (up to `timeout` seconds) until `done` holds for the messages; returns them.
    @discardableResult
    func wait(timeout: Double = 20, _ done: ([JSON]) -> Bool) -> [JSON] {
        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        defer { cond.unlock() }
        while true {
            let msgs = lines.map(Self.parse)
            if done(msgs) { return msgs }
            if !cond.wait(until: deadline) { return lines.map(Self.parse) }
        }
    }
}

/// Input from memory, handed out in chunks of a chosen size (to cut lines at odd places).
final class MemorySource: ByteSource, @unchecked Sendable {
    private let bytes: [UInt8]
    private let chunk: Int
    private let pos = NSLock()
    private var offset = 0

    init(_ text: String, chunk: Int = 7) {
        bytes = Array(text.utf8)
        self.chunk = chunk
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        pos.lock()
        defer { pos.unlock() }
        let n = min(chunk, buffer.count, bytes.count - offset)
        for i in 0..<n { buffer[i] = bytes[offset + i] }
        offset += n
        return n
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String { "a bug in a handler" }
}

/// A worker with the standard methods, plus method and job types that exist only in tests.
final class Harness: @unchecked Sendable {
    let server: Server
    let sink = MemorySink()
    private var line = 0
    private var nextId = 1000

    init(initialize: Bool = true, protocolVersion: String = "1.0", maxRunningJobs: Int = 1, maxLineBytes: Int = 1 << 20,
         maxBatch: Int = 100) {
        var o = ServerOptions()
        o.version = "9.9.9"
        o.maxRunningJobs = maxRunningJobs
        o.maxLineBytes = maxLineBytes
        o.maxBatch = maxBatch
        server = Server(options: o, sink: sink, log: Logger(level: .quiet))
        server.registerStandardMethods()
        Harness.registerTestMethods(server)
        if initialize {
            let r = call("initialize", ["protocolVersion": .string(protocolVersion), "clientInfo": ["name": "tests", "version": "1"]])
            precondition(r["result"] != nil, "initialize failed: \(r.serialized)")
        }
    }

    /// Sends one raw line.
    func send(_ text: String) {
        line += 1
        server.receive(line: Array(text.utf8), number: line)
    }

    func send(_ message: JSON) { send(message.serialized) }

    /// Sends a request and waits for its response.
    @discardableResult
    func call(_ method: String, _ params: JSON? = nil, id: JSON? = nil, meta: JSON? = nil) -> JSON {
        let rid: JSON = id ?? { nextId += 1; return .int(Int64(nextId)) }()
        var msg: [String: JSON] = ["jsonrpc": "2.0", "id": rid, "method": .string(method)]
        var p = params?.objectValue ?? [:]
        if let meta { p["_meta"] = meta }
        if params != nil || meta != nil { msg["params"] = .object(p) }
        send(.object(msg))
        return response(rid)
    }

    /// Waits for the response with this id.
    func response(_ id: JSON, timeout: Double = 20) -> JSON {
        let msgs = sink.wait(timeout: timeout) { $0.contains { $0["id"] == id && $0["method"] == nil } }
        return msgs.last { $0["id"] == id && $0["method"] == nil } ?? .null
    }

    func notifications(_ method: String) -> [JSON] {
        sink.messages().filter { $0["method"]?.stringValue == method }
    }

    static func registerTestMethods(_ s: Server) {
        // A job that counts `steps`, sleeping `stepMillis` per step; it stops (saving its count)
        // when the worker shuts down.
        s.register("test/count", params: ["steps", "stepMillis", "key", "pausable"], summary: "test job",
                   execution: .inline) { req in
            let steps = try req.params.int("steps", in: 1...1_000_000)
            let ms = try req.params.int("stepMillis", default: 1, in: 0...10_000)
            let key = try req.params.optionalString("key")
            let pausable = try req.params.bool("pausable", default: true)
            return try req.server.jobs.start(kind: "test/count", conflictKey: key, pausable: pausable,
                                             progressToken: req.progressToken) { ctx in
                var i = 0
                while i < steps {
                    if pausable { try ctx.pausePoint() } else { try ctx.cancellation.check() }
                    if ctx.isStopRequested { return .stopped(["step": .int(Int64(i))]) }
                    usleep(useconds_t(ms * 1000))
                    i += 1
                    ctx.setMetrics(["step": .int(Int64(i))])
                    ctx.progress(Double(i), total: Double(steps), message: "step \(i)")
                }
                return .done(["steps": .int(Int64(steps))])
            }
        }
        // A request that works `n` milliseconds in the serial queue, reporting progress.
        s.register("test/slow", params: ["n"], summary: "test request") { req in
            let n = try req.params.int("n", in: 0...100_000)
            for i in 0..<n {
                try req.checkCancelled()
                usleep(1000)
                req.progress(Double(i + 1), total: Double(n))
            }
            return ["n": .int(Int64(n))]
        }
        s.register("test/progress", params: ["values"], summary: "progress values as given", execution: .inline) { req in
            for v in try req.params.numbers("values") { req.progress(v, total: 10) }
            req.partial(offset: 0, items: ["a", "b"])
            return [:]
        }
        s.register("test/fileError", params: [], summary: "fails like a missing crop", execution: .inline) { _ in
            throw CytoError(.fileNotFound, "no such file", path: "/data/x.tif", index: 2)
        }
        s.register("test/bug", params: [], summary: "fails with a non-protocol error", execution: .inline) { _ in
            throw TestFailure()
        }
    }
}

extension JSON {
    var code: Int? { self["error"]?["code"]?.intValue }
    var errorData: JSON? { self["error"]?["data"] }
}
