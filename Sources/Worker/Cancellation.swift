import CytoCore

/// Set once, when a client cancels a request (`notifications/cancelled`) or a job (`jobs/cancel`).
/// Work checks it between units (`check()`), or registers a callback to wake a wait.
public final class CancellationToken: @unchecked Sendable {
    private struct State {
        var cancelled = false
        var reason: String?
        var callbacks: [@Sendable () -> Void] = []
    }
    private let state = Locked(State())

    public init() {}

    public var isCancelled: Bool { state.withLock { $0.cancelled } }
    public var reason: String? { state.withLock { $0.reason } }

    /// Cancels (the first call wins) and runs the registered callbacks once.
    public func cancel(reason: String?) {
        let run: [@Sendable () -> Void] = state.withLock { s in
            guard !s.cancelled else { return [] }
            s.cancelled = true
            s.reason = reason
            defer { s.callbacks = [] }
            return s.callbacks
        }
        for f in run { f() }
    }

    /// Runs `f` when cancelled; at once if already cancelled.
    public func onCancel(_ f: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.cancelled { return true }
            s.callbacks.append(f)
            return false
        }
        if now { f() }
    }

    /// Throws `CytoError(.cancelled)` once cancelled: call it between units of work.
    public func check() throws {
        let (c, r) = state.withLock { ($0.cancelled, $0.reason) }
        if c { throw CytoError(.cancelled, r.map { "cancelled: \($0)" } ?? "cancelled") }
    }
}
