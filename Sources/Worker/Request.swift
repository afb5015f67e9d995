import CytoCore

/// A progress token (`params._meta.progressToken`): a string or an integer chosen by the client.
public typealias ProgressToken = RequestID

/// One request (or notification) as a handler sees it: its parameters, its id, and the means to
/// report progress, stream partial results and notice cancellation.
public final class Request: @unchecked Sendable {
    public let method: String
    /// nil for a notification.
    public let id: RequestID?
    public let params: Params
    /// The client's `params._meta.progressToken`, if it asked for progress.
    public let progressToken: ProgressToken?
    public let cancellation: CancellationToken
    /// The worker serving this request: its job manager, services and notifications.
    public let server: Server
    private let lastProgress = Locked<Double>(-.infinity)
    private let clientCancelled = Locked(false)
    /// Images a handler made, kept for the tool that called it (only when `keepsImages`).
    private let keptImages = Locked<GeneratedImages?>(nil)
    /// Whether the handler should hand its images over (`keep(images:)`): set for tool calls.
    let keepsImages: Bool

    init(method: String, id: RequestID?, params: Params, progressToken: ProgressToken?, server: Server,
         cancellation: CancellationToken = CancellationToken(), keepsImages: Bool = false) {
        self.method = method
        self.id = id
        self.params = params
        self.progressToken = progressToken
        self.cancellation = cancellation
        self.server = server
        self.keepsImages = keepsImages
    }

    /// `notifications/cancelled` named this request (not a signal or a shutdown).
    func markCancelledByClient() { clientCancelled.withLock { $0 = true } }
    var wasCancelledByClient: Bool { clientCancelled.withLock { $0 } }

    /// Hands images over to the tool that called the method (a no-op for ordinary requests).
    func keep(images: GeneratedImages) {
        guard keepsImages else { return }
        keptImages.withLock { $0 = images }
    }

    var images: GeneratedImages? { keptImages.withLock { $0 } }

    public var isCancelled: Bool { cancellation.isCancelled }

    /// Throws `CytoError(.cancelled)` once the client has cancelled this request.
    public func checkCancelled() throws { try cancellation.check() }

    /// Sends `notifications/progress` when the client gave a progress token; otherwise does
    /// nothing. `progress` must grow from call to call (a value not above the last is dropped);
    /// `total` is the value `progress` reaches at the end, when known.
    public func progress(_ progress: Double, total: Double? = nil, message: String? = nil) {
        guard let token = progressToken, progress.isFinite else { return }
        let fresh = lastProgress.withLock { last -> Bool in
            guard progress > last else { return false }
            last = progress
            return true
        }
        guard fresh else { return }
        server.sendProgress(token: token, progress: progress, total: total, message: message)
    }

    /// Streams part of the result before the response (`notifications/partial`): `items` are the
    /// result's list elements starting at position `offset`. Only for requests (not notifications).
    public func partial(offset: Int, items: [JSON]) {
        guard let id else { return }
        server.notify("notifications/partial", .object([
            "requestId": id.json, "offset": .int(Int64(offset)), "items": .array(items),
        ]))
    }
}

/// Where a method's handler runs.
public enum Execution: Sendable {
    /// On the thread reading stdin, before the next line is read: for quick control methods
    /// (ping, status). Must not block.
    case inline
    /// On the worker's one work thread, in arrival order: the default for anything that computes
    /// (extraction, sampling, model changes), so requests never compete for the cores.
    case serial
    /// On a thread of its own, at once: for methods that wait (jobs/pause, jobs/cancel, shutdown).
    case concurrent
}

/// When in the worker's life a method may be called.
public struct Availability: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Also before `initialize` has succeeded (`initialize`, `ping`).
    public static let beforeInitialize = Availability(rawValue: 1)
    /// Also after `shutdown` was received (status and cancellation keep working).
    public static let duringShutdown = Availability(rawValue: 2)
}

/// Handles a request: returns the result, or throws (RPCError, CytoError, or anything else,
/// which becomes -32603).
public typealias MethodHandler = @Sendable (Request) throws -> JSON
/// Handles a client notification; it has no response, so errors only reach the log.
public typealias NotificationHandler = @Sendable (Request) throws -> Void

/// A registered method: what `methods/list` reports and how the server runs it.
struct MethodEntry: Sendable {
    let name: String
    /// The parameter names it takes (plus `_meta`); anything else is rejected with -32602.
    let params: Set<String>
    let summary: String
    let execution: Execution
    let availability: Availability
    /// Where one request runs, from its params; nil: always `execution`.
    let placement: (@Sendable (Params) -> Execution)?
    let handler: MethodHandler
}

struct NotificationEntry: Sendable {
    let name: String
    let params: Set<String>
    let summary: String
    let handler: NotificationHandler
}
