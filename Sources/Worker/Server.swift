import CytoCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Limits and names the worker runs with.
public struct ServerOptions: Sendable {
    /// Reported in `initialize` as serverInfo.
    public var name = "cytogan"
    public var version = "0.0.0"
    /// Longest accepted line in bytes (without its newline); longer ones get -32600.
    public var maxLineBytes = 64 << 20
    /// Deepest accepted JSON nesting; deeper texts get -32700.
    public var maxDepth = 64
    /// Most messages in one batch array; more gets -32600.
    public var maxBatch = 10_000
    /// Background jobs running at once; the rest wait in `queued`.
    public var maxRunningJobs = 1
    /// Whether `serve` turns SIGTERM and SIGINT into an orderly stop (off in tests).
    public var handleSignals = false
    /// Threads of the engine's pool (model methods, jobs); nil: every core. OpenBLAS itself runs
    /// one thread inside the pool.
    public var threads: Int? = nil
    /// The protocol document offered as an MCP resource; nil: looked for beside the executable
    /// (`share/cytogan/PROTOCOL.md` of an installed tree, `protocol/PROTOCOL.md` of a checkout).
    public var protocolDocument: String?

    public init() {}
}

/// The protocol version this build speaks (PROTOCOL.md "Versioning").
public let protocolVersion = "1.0"

/// The JSON-RPC 2.0 worker: reads lines, validates envelopes, dispatches to registered methods,
/// writes one response line per request (notifications get none), tracks requests in progress
/// for cancellation, and owns the job manager. Method groups register on it (see MethodGroups.swift).
public final class Server: @unchecked Sendable {
    public let options: ServerOptions
    public let log: Logger
    /// Background jobs (training, long extractions).
    public let jobs: JobManager

    private let sink: LineSink
    private let writeLock = NSLock()
    private let outputBroken = Locked(false)
    private let registry = Locked<(methods: [String: MethodEntry], notifications: [String: NotificationEntry])>(([:], [:]))
    private let services = Locked<[ObjectIdentifier: AnyObject]>([:])
    private let workThread = WorkThread(name: "cytogan work")

    private enum Lifecycle { case uninitialized, ready, shuttingDown }
    /// Accounting guarded by `cond`: lines read but not yet answered, requests in progress by id,
    /// and whether the end (EOF, shutdown, signal) was requested.
    private let cond = NSCondition()
    private var lifecycle = Lifecycle.uninitialized
    private var clientInfo: JSON = .null
    private var negotiated: NegotiatedProtocol?
    private var outstandingLines = 0
    private var inflightCount = 0
    private var inflight: [RequestID: Request] = [:]
    private var endRequested = false

    public init(options: ServerOptions = ServerOptions(), sink: LineSink = FileDescriptorSink.stdout,
                log: Logger = Logger()) {
        self.options = options
        self.sink = sink
        self.log = log
        let back = WeakServer()
        jobs = JobManager(maxRunning: options.maxRunningJobs) { method, params in back.server?.notify(method, params) }
        back.server = self
    }

    // MARK: Registration

    /// Registers a request method. `params`: the parameter names it takes (others get -32602);
    /// `summary`: one line for `methods/list`; `execution`: where the handler runs, or `placement`:
    /// where one request runs, decided from its (admitted) params (`tools/call` runs where its tool does).
    public func register(_ method: String, params: [String], summary: String, execution: Execution = .serial,
                         availability: Availability = [], placement: (@Sendable (Params) -> Execution)? = nil,
                         handler: @escaping MethodHandler) {
        let e = MethodEntry(name: method, params: Set(params), summary: summary, execution: execution,
                            availability: availability, placement: placement, handler: handler)
        registry.withLock {
            precondition($0.methods[method] == nil && $0.notifications[method] == nil, "\(method) registered twice")
            $0.methods[method] = e
        }
    }

    /// Registers a notification the client may send. Its handler runs on the reader thread and must
    /// be quick; it has no response, so its errors only reach the log.
    public func registerNotification(_ method: String, params: [String], summary: String,
                                     handler: @escaping NotificationHandler) {
        let e = NotificationEntry(name: method, params: Set(params), summary: summary, handler: handler)
        registry.withLock {
            precondition($0.methods[method] == nil && $0.notifications[method] == nil, "\(method) registered twice")
            $0.notifications[method] = e
        }
    }

    /// The request methods registered, sorted: what `initialize` lists as capabilities.methods.
    public var methodNames: [String] { registry.withLock { $0.methods.keys.sorted() } }
    /// The client notifications registered, sorted.
    public var notificationNames: [String] { registry.withLock { $0.notifications.keys.sorted() } }

    /// The method catalogue of `methods/list`.
    var catalogue: JSON {
        registry.withLock { r in
            .object([
                "methods": .array(r.methods.keys.sorted().map { k in
                    let e = r.methods[k]!
                    return .object(["name": .string(k), "summary": .string(e.summary),
                                    "params": .array(e.params.sorted().map { .string($0) })])
                }),
                "notifications": .array(r.notifications.keys.sorted().map { k in
                    let e = r.notifications[k]!
                    return .object(["name": .string(k), "summary": .string(e.summary),
                                    "params": .array(e.params.sorted().map { .string($0) })])
                }),
            ])
        }
    }

    /// Runs the registered method `method` with `params` on behalf of request `caller` (a tool
    /// call): the caller's id, cancellation and, when `progress`, its progress token; its params
    /// checked as a request's are. `keepImages`: the handler hands over the images it made.
    /// Returns the method's result and those images.
    func invoke(_ method: String, _ params: [String: JSON], for caller: Request, progress: Bool = true,
                keepImages: Bool = false) throws -> (result: JSON, images: GeneratedImages?) {
        guard let entry = registry.withLock({ $0.methods[method] }) else { throw RPCError.methodNotFound(method) }
        let p = Params(params)
        try p.rejectUnknown(allowed: entry.params)
        let req = Request(method: method, id: caller.id, params: p, progressToken: progress ? caller.progressToken : nil,
                          server: self, cancellation: caller.cancellation, keepsImages: keepImages)
        try req.checkCancelled()
        let result = try entry.handler(req)
        return (result, req.images)
    }

    /// One shared object per type for the life of the worker (the loaded model, the profile
    /// tables), created by `make` on first use. Method groups share state through it.
    public func service<S: AnyObject & Sendable>(_ type: S.Type, make: () -> S) -> S {
        services.withLock { s in
            if let existing = s[ObjectIdentifier(type)] as? S { return existing }
            let created = make()
            s[ObjectIdentifier(type)] = created
            return created
        }
    }

    // MARK: Output

    /// Writes one message as one line: serialized outside the lock, written whole under it.
    func emit(_ message: JSON) {
        var text = message.serialized
        text.append("\n")
        let bytes = Array(text.utf8)
        writeLock.lock()
        let ok = sink.write(line: bytes)
        writeLock.unlock()
        if !ok {
            let first = outputBroken.withLock { b -> Bool in defer { b = true }; return !b }
            if first { log.warning("cannot write to stdout (closed?): responses from now on are lost") }
        }
    }

    /// Sends a notification to the client.
    public func notify(_ method: String, _ params: JSON) {
        emit(Message.notification(method, params))
    }

    func sendProgress(token: ProgressToken, progress: Double, total: Double?, message: String?) {
        var p: [String: JSON] = ["progressToken": token.json, "progress": .double(progress)]
        if let total { p["total"] = .double(total) }
        if let message { p["message"] = .string(message) }
        notify("notifications/progress", .object(p))
    }

    // MARK: Lifecycle

    /// Marks the worker initialized with the protocol agreed on; a second `initialize` is an error.
    func markInitialized(client: JSON, protocol agreed: NegotiatedProtocol) throws {
        try locked {
            switch lifecycle {
            case .uninitialized:
                lifecycle = .ready
                clientInfo = client
                negotiated = agreed
            case .ready:
                throw RPCError(code: ErrorCode.alreadyInitialized, message: "already initialized: send initialize once",
                               kind: "already_initialized")
            case .shuttingDown:
                throw RPCError(code: ErrorCode.shuttingDown, message: "the worker is shutting down", kind: "shutting_down")
            }
        }
    }

    /// The client's `clientInfo` from `initialize` (null before).
    public var client: JSON { locked { clientInfo } }

    /// The protocol agreed on in `initialize` (nil before): cytogan's own, or an MCP revision.
    public var session: NegotiatedProtocol? { locked { negotiated } }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        cond.lock()
        defer { cond.unlock() }
        return try body()
    }

    /// Cancels the request in progress with this id (`notifications/cancelled`); an unknown or
    /// finished id is ignored, as MCP says.
    public func cancelRequest(_ id: RequestID, reason: String?) {
        let req = locked { inflight[id] }
        if let req {
            req.markCancelledByClient()
            req.cancellation.cancel(reason: reason)
        } else {
            log.debug("notifications/cancelled for \(id): no such request in progress")
        }
    }

    /// Blocks until no request other than the caller's is in progress (for `shutdown`).
    func waitForOtherRequests() {
        locked { while inflightCount > 1 { cond.wait() } }
    }

    /// Asks `serve` to finish: answer what was read, stop the jobs, return.
    public func requestEnd() {
        locked {
            lifecycle = .shuttingDown
            endRequested = true
            cond.broadcast()
        }
    }

    /// For SIGTERM and SIGINT: cancel every request in progress, stop the jobs, end.
    public func terminate(reason: String) {
        log.info("\(reason): stopping")
        let reqs = locked { () -> [Request] in
            lifecycle = .shuttingDown
            return Array(inflight.values)
        }
        for r in reqs { r.cancellation.cancel(reason: reason) }
        requestEnd()
    }

    /// Blocks until every line read so far has been answered (tests, and the end of `serve`).
    public func waitUntilIdle() {
        locked { while outstandingLines > 0 { cond.wait() } }
    }

    private func beginLine() { locked { outstandingLines += 1 } }
    private func endLine() { locked { outstandingLines -= 1; cond.broadcast() } }

    // MARK: Serving

    /// Runs the worker on `input` until end of input or `shutdown`: every request read gets its
    /// response, running jobs are stopped (checkpointed) or finished, then it returns the exit
    /// status (0).
    public func serve(input: ByteSource) -> Int32 {
        if options.handleSignals { watchSignals() }
        let reader = Thread { [self] in readLoop(input) }
        reader.name = "cytogan reader"
        reader.stackSize = 8 << 20
        reader.start()
        locked { while !endRequested { cond.wait() } }
        waitUntilIdle()
        let stopped = jobs.stopAll()
        if !stopped.isEmpty { log.info("stopped \(stopped.count) job(s)") }
        waitUntilIdle()
        log.info("exiting")
        return 0
    }

    /// SIGTERM and SIGINT: a handler (whichever thread the signal lands on) writes the signal's
    /// number to a pipe; a thread reading it calls `terminate`. Only write(2) runs in the handler.
    private func watchSignals() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { log.warning("no pipe for signals: SIGTERM ends the worker abruptly"); return }
        signalPipe = fds[1]
        signal(SIGTERM, onTerminationSignal)
        signal(SIGINT, onTerminationSignal)
        let readFd = fds[0]
        let t = Thread { [self] in
            var b: UInt8 = 0
            while true {
                let n = systemRead(readFd, &b, 1)
                if n == 1 { terminate(reason: b == UInt8(SIGTERM) ? "SIGTERM" : "SIGINT") }
                else if n < 0 && errno == EINTR { continue }
                else { return }
            }
        }
        t.name = "cytogan signals"
        t.start()
    }

    private func readLoop(_ input: ByteSource) {
        var framer = LineFramer(maxLineBytes: options.maxLineBytes)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { chunk.deallocate() }
        let handle: (LineFramer.Event) -> Void = { [self] event in
            switch event {
            case .line(let bytes, let number): receive(line: bytes, number: number)
            case .tooLong(let number, let bytes): receiveTooLong(number: number, bytes: bytes)
            }
        }
        while true {
            let n: Int
            do { n = try input.read(into: chunk) } catch {
                log.error("\(error)")
                break
            }
            if n == 0 { break }
            framer.feed(UnsafeRawBufferPointer(rebasing: chunk[0..<n]), handle)
            if locked({ endRequested }) { return }
        }
        framer.finish(handle)
        log.info("end of input")
        jobs.stopPaused()
        requestEnd()
    }

    /// An input line longer than `maxLineBytes`: its bytes were dropped unread.
    public func receiveTooLong(number: Int, bytes: Int) {
        emit(Message.error(nil, RPCError(
            code: ErrorCode.invalidRequest,
            message: "invalid request: line \(number) is \(bytes) bytes, over the limit of \(options.maxLineBytes)",
            kind: "line_too_long",
            data: ["line": .int(Int64(number)), "bytes": .int(Int64(bytes)), "limit": .int(Int64(options.maxLineBytes))])))
    }

    /// Handles one input line (without its newline): a message or a batch. Blank lines are skipped.
    public func receive(line: [UInt8], number: Int) {
        if isBlank(line) { return }
        beginLine()
        var bytes = line
        let json: JSON
        do {
            json = try JSON.parse(bytes: &bytes, maxDepth: options.maxDepth)
        } catch {
            let text = (error as? CytoError)?.message ?? "\(error)"
            log.debug("line \(number): \(text)")
            emit(Message.error(nil, .parseError(text, line: number)))
            endLine()
            return
        }
        guard case .array(let items) = json else {
            dispatch(json, line: number, batchIndex: nil) { [self] response in
                if let response { emit(response) }
                endLine()
            }
            return
        }
        guard !items.isEmpty, items.count <= options.maxBatch else {
            var e = RPCError.invalidRequest(items.isEmpty ? "an empty batch" : "a batch of \(items.count) messages, over the limit of \(options.maxBatch)",
                                            kind: items.isEmpty ? "invalid_request" : "batch_too_large")
            e.data["line"] = .int(Int64(number))
            if !items.isEmpty { e.data["limit"] = .int(Int64(options.maxBatch)) }
            emit(Message.error(nil, e))
            endLine()
            return
        }
        let batch = Batch(count: items.count) { [self] responses in
            if !responses.isEmpty { emit(.array(responses)) }
            endLine()
        }
        for (i, item) in items.enumerated() {
            dispatch(item, line: number, batchIndex: i) { batch.fill(i, $0) }
        }
    }

    /// One message: `decode` checks its envelope, a notification runs at once, a request is
    /// checked by `admit` (lifecycle, parameters, id) and handed to `schedule`. `respond` gets the
    /// response, or nil when there is none (notifications, client responses); it is called exactly
    /// once.
    private func dispatch(_ json: JSON, line: Int, batchIndex: Int?, respond: @escaping @Sendable (JSON?) -> Void) {
        func reject(_ id: RequestID?, _ e: RPCError) {
            var e = e
            if e.code == ErrorCode.invalidRequest {
                e.data["line"] = .int(Int64(line))
                if let batchIndex { e.data["index"] = .int(Int64(batchIndex)) }
            }
            log.debug("line \(line): \(e.message)")
            respond(Message.error(id, e))
        }
        let message: Envelope
        switch decode(json) {
        case .invalid(let id, let e): return reject(id, e)
        case .response:
            log.debug("line \(line): ignored a response (this worker sends no requests)")
            return respond(nil)
        case .message(let m): message = m
        }
        let (id, method) = (message.id, message.method)

        let (entry, note) = registry.withLock { ($0.methods[method], $0.notifications[method]) }
        if let note {
            if let id {
                return reject(id, .invalidRequest("\(method) is a notification: send it without an id", field: "id"))
            }
            runNotification(note, params: message.params, paramsError: message.paramsError, line: line)
            return respond(nil)
        }
        guard let entry else {
            if id == nil {
                log.debug("line \(line): ignored unknown notification \(quoted(method))")
                return respond(nil)
            }
            return reject(id, .methodNotFound(method))
        }

        switch admit(message, to: entry) {
        case .failure(let refusal):
            if id == nil { log.debug("line \(line): notification \(quoted(method)) rejected: \(refusal.message)"); return respond(nil) }
            return reject(id, refusal)
        case .success(let progressToken):
            let req = Request(method: method, id: id, params: Params(message.params), progressToken: progressToken, server: self)
            schedule(entry, req, respond: respond)
        }
    }

    /// A message whose envelope is valid, not yet matched to a method.
    private struct Envelope {
        var id: RequestID?
        var method: String
        var params: [String: JSON] = [:]
        /// Params sent as an array: refused once the method is known (only logged for a notification).
        var paramsError: RPCError?
    }

    /// What `decode` makes of one message.
    private enum Decoded {
        case message(Envelope)
        /// A response from the client, which this worker ignores (it sends no requests).
        case response
        /// A broken envelope: the error, and the id when one could be read.
        case invalid(RequestID?, RPCError)
    }

    /// Checks the JSON-RPC envelope: an object with a usable id, "jsonrpc": "2.0", a method name,
    /// no other members, and params that are an object.
    private func decode(_ json: JSON) -> Decoded {
        guard case .object(let o) = json else {
            return .invalid(nil, .invalidRequest("a message must be a JSON object, not \(json.typeName == "array" ? "an array inside a batch" : "a " + json.typeName)"))
        }
        var id: RequestID?
        if let v = o["id"] {
            guard let i = RequestID(json: v) else {
                let what = v.intValue != nil ? "an integer beyond ±(2^53 - 1)" : v.isNull ? "null" : "a " + v.typeName
                return .invalid(nil, .invalidRequest("id must be a string or an integer, not \(what)", field: "id"))
            }
            id = i
        }
        guard o["jsonrpc"] == .string("2.0") else {
            return .invalid(id, .invalidRequest(o["jsonrpc"] == nil ? "missing \"jsonrpc\": \"2.0\"" : "jsonrpc must be \"2.0\"", field: "jsonrpc"))
        }
        guard let methodValue = o["method"] else {
            if id != nil && (o["result"] != nil || o["error"] != nil) { return .response }
            return .invalid(id, .invalidRequest("missing method", field: "method"))
        }
        guard case .string(let method) = methodValue, !method.isEmpty else {
            return .invalid(id, .invalidRequest("method must be a non-empty string", field: "method"))
        }
        for key in o.keys.sorted() where !["jsonrpc", "id", "method", "params"].contains(key) {
            return .invalid(id, .invalidRequest("unknown member \(quoted(key)) (a message has jsonrpc, id, method, params)", field: key))
        }
        var message = Envelope(id: id, method: method)
        switch o["params"] {
        case nil: break
        case .object(let p)?: message.params = p
        case .array?: message.paramsError = .invalidParams(field: "params", "params must be an object of named parameters, not an array")
        case let other?:
            return .invalid(id, .invalidRequest("params must be an object, not \(other.isNull ? "null" : "a " + other.typeName)", field: "params"))
        }
        return .message(message)
    }

    /// Whether a request may run now: the lifecycle allows the method, its params are an object
    /// of known names with a well-formed `_meta`, and its id is not in use. Decided on the reader
    /// thread, in input order. Gives the progress token of `_meta`, if any.
    private func admit(_ message: Envelope, to entry: MethodEntry) -> Result<ProgressToken?, RPCError> {
        locked {
            switch lifecycle {
            case .uninitialized where !entry.availability.contains(.beforeInitialize):
                return .failure(RPCError(code: ErrorCode.notInitialized, message: "not initialized: send initialize first",
                                         kind: "not_initialized"))
            case .shuttingDown where !entry.availability.contains(.duringShutdown):
                return .failure(RPCError(code: ErrorCode.shuttingDown, message: "the worker is shutting down", kind: "shutting_down"))
            default: break
            }
            if let paramsError = message.paramsError { return .failure(paramsError) }
            var progressToken: ProgressToken?
            if let meta = message.params["_meta"] {
                guard let m = meta.objectValue else {
                    return .failure(.invalidParams(field: "_meta", "_meta must be an object, not \(meta.isNull ? "null" : "a " + meta.typeName)"))
                }
                if let t = m["progressToken"] {
                    guard let token = RequestID(json: t) else {
                        return .failure(.invalidParams(field: "_meta.progressToken", "_meta.progressToken must be a string or an integer"))
                    }
                    progressToken = token
                }
            }
            do { try Params(message.params).rejectUnknown(allowed: entry.params) } catch { return .failure(RPCError(any: error)) }
            if let id = message.id, inflight[id] != nil {
                return .failure(.invalidRequest("id \(id) is already used by a request in progress", field: "id"))
            }
            return .success(progressToken)
        }
    }

    /// Counts the request as in progress (by id, for cancellation) and runs it where its method
    /// runs: inline on the reader thread, on the serial work thread, or concurrently.
    private func schedule(_ entry: MethodEntry, _ req: Request, respond: @escaping @Sendable (JSON?) -> Void) {
        let isShutdown = req.method == "shutdown"
        let requestId = req.id
        locked {
            if isShutdown { lifecycle = .shuttingDown }
            if let requestId { inflight[requestId] = req }
            inflightCount += 1
        }
        let work: @Sendable () -> Void = { [self] in
            var response = run(entry, req)
            locked {
                if let requestId { inflight[requestId] = nil }
                inflightCount -= 1
                cond.broadcast()
            }
            // MCP: a request the client cancelled gets no response at all, whatever it came to.
            if response != nil, req.wasCancelledByClient, session?.isMCP == true {
                log.debug("\(req.method) (id \(requestId.map { "\($0)" } ?? "none")) was cancelled by the client: no response (MCP)")
                response = nil
            }
            respond(response)
            if isShutdown { requestEnd() }
        }
        switch entry.placement?(req.params) ?? entry.execution {
        case .inline: work()
        case .serial: workThread.submit(work)
        case .concurrent: DispatchQueue.global().async(execute: work)
        }
    }

    /// Runs a handler and builds its response (nil for a notification).
    private func run(_ entry: MethodEntry, _ req: Request) -> JSON? {
        let outcome: Result<JSON, RPCError>
        if req.isCancelled {
            outcome = .failure(.cancelled(req.id, reason: req.cancellation.reason))
        } else {
            do {
                outcome = .success(try entry.handler(req))
            } catch {
                var e = RPCError(any: error)
                if req.isCancelled || e.code == ErrorCode.cancelled {
                    let c = RPCError.cancelled(req.id, reason: req.cancellation.reason)
                    if e.code == ErrorCode.cancelled { e.data.merge(c.data) { old, _ in old } } else { e = c }
                    e.code = ErrorCode.cancelled
                }
                outcome = .failure(e)
            }
        }
        guard let id = req.id else {
            if case .failure(let e) = outcome { log.debug("notification \(entry.name) failed: \(e.message)") }
            return nil
        }
        switch outcome {
        case .success(let r): return Message.result(id, r)
        case .failure(let e):
            if e.code == ErrorCode.internalError { log.error("\(entry.name) (id \(id)): \(e.message)") }
            return Message.error(id, e)
        }
    }

    private func runNotification(_ note: NotificationEntry, params: [String: JSON], paramsError: RPCError?, line: Int) {
        do {
            if let paramsError { throw paramsError }
            let p = Params(params)
            try p.rejectUnknown(allowed: note.params)
            let req = Request(method: note.name, id: nil, params: p, progressToken: nil, server: self)
            try note.handler(req)
        } catch {
            log.debug("line \(line): notification \(note.name) ignored: \(RPCError(any: error).message)")
        }
    }
}

/// Collects the responses of one batch; when the last arrives, hands over those that exist, in
/// the batch's order.
private final class Batch: @unchecked Sendable {
    private let slots: Locked<(responses: [JSON?], remaining: Int)>
    private let done: @Sendable ([JSON]) -> Void

    init(count: Int, done: @escaping @Sendable ([JSON]) -> Void) {
        slots = Locked((Array(repeating: nil, count: count), count))
        self.done = done
    }

    func fill(_ i: Int, _ response: JSON?) {
        let finished: [JSON]? = slots.withLock { s in
            s.responses[i] = response
            s.remaining -= 1
            return s.remaining == 0 ? s.responses.compactMap { $0 } : nil
        }
        if let finished { done(finished) }
    }
}

/// Lets the job manager reach the server without keeping it alive.
private final class WeakServer: @unchecked Sendable {
    weak var server: Server?
}

/// The write end of the signal pipe; set once before the handler is installed.
nonisolated(unsafe) private var signalPipe: Int32 = -1

private func onTerminationSignal(_ sig: Int32) {
    var b = UInt8(truncatingIfNeeded: sig)
    _ = write(signalPipe, &b, 1)
}
