import CytoCore
import Foundation

/// Where a background job is in its life. `cancelled`, `failed`, `done` and `stopped` are final.
public enum JobState: String, Sendable, CaseIterable {
    case queued, running, paused, cancelled, failed, done
    /// Ended early because the worker shut down, its work saved so it can be resumed.
    case stopped

    public var isFinal: Bool {
        switch self {
        case .queued, .running, .paused: return false
        case .cancelled, .failed, .done, .stopped: return true
        }
    }
}

/// How a job's body ended without an error: finished its work, or saved it and stopped because
/// the worker is shutting down (`JobContext.isStopRequested`).
public enum JobOutcome: Sendable {
    case done(JSON)
    case stopped(JSON)
}

/// A job's body: runs on a thread of its own; calls `pausePoint()` between units of work.
public typealias JobBody = @Sendable (JobContext) throws -> JobOutcome

/// What a running job's body uses to report and to learn whether to pause, stop or give up.
public final class JobContext: @unchecked Sendable {
    public let id: String
    public let kind: String
    /// Cancelled by `jobs/cancel`; hand it to code that takes a cancellation token.
    public let cancellation: CancellationToken
    private let manager: JobManager
    fileprivate let job: Job

    fileprivate init(job: Job, manager: JobManager) {
        self.id = job.id
        self.kind = job.kind
        self.cancellation = job.cancellation
        self.manager = manager
        self.job = job
    }

    public var isCancelled: Bool { cancellation.isCancelled }

    /// True once the worker is shutting down (shutdown, end of input, SIGTERM): save what the
    /// job has (a checkpoint) and return `.stopped(...)`; a job that cannot save finishes instead.
    public var isStopRequested: Bool { manager.isStopRequested(job) }

    /// Call between units of work (a training step, a batch of crops). Blocks while the job is
    /// paused; throws `CytoError(.cancelled)` once it is cancelled; returns at once otherwise,
    /// and also when a stop is requested (check `isStopRequested` after it).
    public func pausePoint() throws { try manager.pausePoint(job) }

    /// Records the job's progress (for `jobs/status`) and sends `notifications/progress` with
    /// the progress token of the request that started it, if it gave one.
    public func progress(_ progress: Double, total: Double? = nil, message: String? = nil) {
        manager.report(job, progress: progress, total: total, message: message)
    }

    /// Job-specific figures shown in `jobs/status` as `metrics` (losses, step, throughput).
    public func setMetrics(_ metrics: JSON) { manager.setMetrics(job, metrics) }
}

/// One job's record; every mutable field is guarded by the manager's condition lock.
final class Job: @unchecked Sendable {
    let id: String
    let kind: String
    let pausable: Bool
    let conflictKey: String?
    let progressToken: ProgressToken?
    let cancellation = CancellationToken()
    let body: JobBody
    var state: JobState = .queued
    var threadStarted = false
    var progress = 0.0
    var total: Double?
    var message: String?
    var lastSentProgress = -Double.infinity
    var metrics: JSON?
    var result: JSON?
    var error: RPCError?
    var pauseRequested = false
    var stopRequested = false
    var startedAt: Date?
    var endedAt: Date?

    init(id: String, kind: String, pausable: Bool, conflictKey: String?, progressToken: ProgressToken?, body: @escaping JobBody) {
        self.id = id; self.kind = kind; self.pausable = pausable; self.conflictKey = conflictKey
        self.progressToken = progressToken; self.body = body
    }

    /// The status object of PROTOCOL.md ("JobStatus"). Caller holds the lock.
    var status: JSON {
        var o: [String: JSON] = [
            "jobId": .string(id), "kind": .string(kind), "state": .string(state.rawValue),
            "pausable": .bool(pausable),
            "progress": .double(progress), "total": total.map { .double($0) } ?? .null,
            "message": message.map { .string($0) } ?? .null,
        ]
        let end = endedAt ?? Date()
        let secs = startedAt.map { end.timeIntervalSince($0) } ?? 0
        o["elapsedSeconds"] = .double((secs * 1000).rounded() / 1000)
        if let metrics { o["metrics"] = metrics }
        if let result { o["result"] = result }
        if let error { o["error"] = error.json }
        return .object(o)
    }
}

/// Background work (training, long extractions): ids, states, a bounded number running at once
/// (the rest queued), pause, resume, cancel, and a stop at shutdown. Method handlers start jobs
/// through `Request.server.jobs.start(...)`.
public final class JobManager: @unchecked Sendable {
    private let cond = NSCondition()
    private var jobs: [Job] = []
    private var nextNumber = 1
    private var closed = false
    /// Set at end of input: a job reaching a pause point after it stops instead of parking.
    private var inputEnded = false
    /// How many jobs may run at once; the rest wait in `queued`.
    public let maxRunning: Int
    /// Ended jobs kept for `jobs/status` (the oldest are forgotten first).
    public let keepEnded: Int
    private let notify: @Sendable (String, JSON) -> Void

    init(maxRunning: Int, keepEnded: Int = 1000, notify: @escaping @Sendable (String, JSON) -> Void) {
        self.maxRunning = max(1, maxRunning)
        self.keepEnded = keepEnded
        self.notify = notify
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        cond.lock()
        defer { cond.unlock() }
        return try body()
    }

    // MARK: Starting

    /// Starts a job and returns its status (state `queued` or `running`). `conflictKey`: at most
    /// one unfinished job per key (e.g. "train"), else a job_conflict error naming the other job.
    /// `pausable`: whether `jobs/pause` may park it (its body calls `pausePoint()`).
    /// `progressToken`: where progress notifications go (usually the starting request's token).
    public func start(kind: String, conflictKey: String? = nil, pausable: Bool = true,
                      progressToken: ProgressToken? = nil, body: @escaping JobBody) throws -> JSON {
        let status: JSON = try locked {
            if closed {
                throw RPCError(code: ErrorCode.shuttingDown, message: "the worker is shutting down: no new jobs",
                               kind: "shutting_down")
            }
            if let key = conflictKey, let other = jobs.first(where: { $0.conflictKey == key && !$0.state.isFinal }) {
                throw RPCError(code: ErrorCode.jobConflict,
                               message: "job \(other.id) (\(other.kind)) is still \(other.state.rawValue); only one \(key) job at a time",
                               kind: "job_conflict", data: ["jobId": .string(other.id), "conflict": .string(key)])
            }
            let job = Job(id: "job-\(nextNumber)", kind: kind, pausable: pausable, conflictKey: conflictKey,
                          progressToken: progressToken, body: body)
            nextNumber += 1
            jobs.append(job)
            scheduleLocked()
            return job.status
        }
        return status
    }

    /// Starts queued jobs while slots are free. Caller holds the lock.
    private func scheduleLocked() {
        var running = jobs.filter { $0.threadStarted && !$0.state.isFinal }.count
        for job in jobs where running < maxRunning && job.state == .queued {
            job.state = .running
            job.threadStarted = true
            job.startedAt = Date()
            running += 1
            let ctx = JobContext(job: job, manager: self)
            let t = Thread { [self] in self.run(job, ctx) }
            t.name = "cytogan \(job.id)"
            t.stackSize = 16 << 20
            t.start()
        }
    }

    private func run(_ job: Job, _ ctx: JobContext) {
        let outcome = Result { try job.body(ctx) }
        locked {
            switch outcome {
            case .success(.done(let r)):
                job.state = .done; job.result = r
            case .success(.stopped(let r)):
                job.state = .stopped; job.result = r
            case .failure(let e):
                let err = RPCError(any: e)
                if job.cancellation.isCancelled || err.code == ErrorCode.cancelled {
                    job.state = .cancelled
                    job.error = cancelledError(job)
                } else {
                    job.state = .failed
                    job.error = err
                }
            }
            job.endedAt = Date()
            forgetOldLocked()
            scheduleLocked()
            endedLocked(job)
        }
    }

    /// Announces a job's end, still under the lock, so whoever waits for it (shutdown, cancel)
    /// answers after the announcement. Caller holds the lock.
    private func endedLocked(_ job: Job) {
        notify("notifications/jobs/ended", .object(["job": job.status]))
        cond.broadcast()
    }

    private func cancelledError(_ job: Job) -> RPCError {
        var e = RPCError.cancelled(nil, reason: job.cancellation.reason)
        e.data["jobId"] = .string(job.id)
        return e
    }

    private func forgetOldLocked() {
        let ended = jobs.filter { $0.state.isFinal }
        guard ended.count > keepEnded else { return }
        let drop = Set(ended.prefix(ended.count - keepEnded).map { $0.id })
        jobs.removeAll { drop.contains($0.id) }
    }

    // MARK: Queries

    private func find(_ id: String) throws -> Job {
        guard let j = jobs.first(where: { $0.id == id }) else { throw RPCError.unknownJob(id) }
        return j
    }

    /// A job's status (PROTOCOL.md "JobStatus").
    public func status(_ id: String) throws -> JSON { try locked { try find(id).status } }

    /// Every job known, oldest first, or only those in `state`.
    public func list(state: JobState? = nil) -> [JSON] {
        locked { jobs.filter { state == nil || $0.state == state }.map { $0.status } }
    }

    // MARK: Control

    private func conflict(_ job: Job, _ message: String) -> RPCError {
        RPCError(code: ErrorCode.jobConflict, message: "job \(job.id) \(message)", kind: "job_conflict",
                 data: ["jobId": .string(job.id), "state": .string(job.state.rawValue)])
    }

    /// Waits on the condition until `done()` holds, the token is cancelled or the deadline passes.
    /// Caller holds the lock. Returns false when it stopped waiting for the token or the deadline.
    private func waitLocked(until done: () -> Bool, cancellation: CancellationToken?, deadline: Date?) -> Bool {
        while !done() {
            if cancellation?.isCancelled == true { return false }
            if let deadline {
                if !cond.wait(until: deadline) && !done() { return false }
            } else {
                cond.wait()
            }
        }
        return true
    }

    private func wakeOnCancel(_ token: CancellationToken?) {
        token?.onCancel { [cond] in cond.lock(); cond.broadcast(); cond.unlock() }
    }

    /// Parks a job at its next pause point and returns its status once it is `paused` (or has
    /// ended meanwhile). A queued job is paused at once. `cancellation`: the waiting request's.
    public func pause(_ id: String, cancellation: CancellationToken? = nil) throws -> JSON {
        wakeOnCancel(cancellation)
        return try locked {
            let job = try find(id)
            if job.state.isFinal { throw conflict(job, "has already ended (\(job.state.rawValue))") }
            guard job.pausable else { throw conflict(job, "(\(job.kind)) cannot be paused") }
            if job.state == .queued { job.state = .paused; return job.status }
            if job.state == .paused { return job.status }
            job.pauseRequested = true
            cond.broadcast()
            if !waitLocked(until: { job.state != .running }, cancellation: cancellation, deadline: nil) {
                throw RPCError.cancelled(nil, reason: cancellation?.reason)
            }
            return job.status
        }
    }

    /// Lets a paused job go on (a job paused while queued goes back to the queue).
    public func resume(_ id: String) throws -> JSON {
        try locked {
            let job = try find(id)
            if job.state.isFinal { throw conflict(job, "has already ended (\(job.state.rawValue))") }
            job.pauseRequested = false
            if job.state == .paused {
                job.state = job.threadStarted ? .running : .queued
                if !job.threadStarted { scheduleLocked() }
            }
            cond.broadcast()
            return job.status
        }
    }

    /// Cancels a job and returns its status once it has ended: `cancelled`, or `done`/`failed`
    /// if it finished first. Cancelling an ended job changes nothing.
    public func cancel(_ id: String, reason: String?, cancellation: CancellationToken? = nil) throws -> JSON {
        let job: Job = try locked { try find(id) }
        if !locked({ job.state.isFinal }) { job.cancellation.cancel(reason: reason) }
        wakeOnCancel(cancellation)
        return try locked {
            if !job.threadStarted && !job.state.isFinal {
                job.state = .cancelled
                job.error = cancelledError(job)
                job.endedAt = Date()
                endedLocked(job)
            }
            cond.broadcast()
            if !waitLocked(until: { job.state.isFinal }, cancellation: cancellation, deadline: nil) {
                throw RPCError.cancelled(nil, reason: cancellation?.reason)
            }
            return job.status
        }
    }

    /// Waits until a job has ended, the deadline passes or the waiting request is cancelled;
    /// returns its status either way.
    public func wait(_ id: String, timeout: Double? = nil, cancellation: CancellationToken? = nil) throws -> JSON {
        wakeOnCancel(cancellation)
        return try locked {
            let job = try find(id)
            let deadline = timeout.map { Date().addingTimeInterval($0) }
            if !waitLocked(until: { job.state.isFinal }, cancellation: cancellation, deadline: deadline),
               cancellation?.isCancelled == true {
                throw RPCError.cancelled(nil, reason: cancellation?.reason)
            }
            return job.status
        }
    }

    /// Shutdown: no new jobs; queued jobs are cancelled, running and paused ones asked to stop
    /// (save and return) or finish. Returns, once all have ended, the final status of each job
    /// that had not ended when it was called.
    public func stopAll() -> [JSON] {
        locked {
            closed = true
            let active = jobs.filter { !$0.state.isFinal }
            stopLocked(active)
            _ = waitLocked(until: { active.allSatisfy { $0.state.isFinal } }, cancellation: nil, deadline: nil)
            return active.map { $0.status }
        }
    }

    /// End of input: nobody can resume a paused job any more, so paused jobs are asked to stop
    /// (save and end) now; running ones go on (a queued `jobs/wait` may be waiting for them).
    func stopPaused() {
        locked {
            inputEnded = true
            stopLocked(jobs.filter { $0.state == .paused })
        }
    }

    /// Asks started jobs to stop and cancels those that never started. Caller holds the lock.
    private func stopLocked(_ active: [Job]) {

            for job in active {
                if job.threadStarted {
                    job.stopRequested = true
                } else {
                    job.cancellation.cancel(reason: "the worker shut down before the job started")
                    job.state = .cancelled
                    job.error = cancelledError(job)
                    job.endedAt = Date()
                    endedLocked(job)
                }
            }
            cond.broadcast()
    }

    /// True once no new job can start (shutdown).
    public var isClosed: Bool { locked { closed } }

    // MARK: For JobContext

    fileprivate func isStopRequested(_ job: Job) -> Bool { locked { job.stopRequested } }

    fileprivate func pausePoint(_ job: Job) throws {
        try job.cancellation.check()
        locked {
            if inputEnded && job.pauseRequested { job.stopRequested = true }
            guard job.pauseRequested && !job.stopRequested else { return }
            job.state = .paused
            cond.broadcast()
            while job.pauseRequested && !job.stopRequested && !job.cancellation.isCancelled { cond.wait() }
            job.pauseRequested = false
            if !job.state.isFinal { job.state = .running }
            cond.broadcast()
        }
        try job.cancellation.check()
    }

    fileprivate func report(_ job: Job, progress: Double, total: Double?, message: String?) {
        guard progress.isFinite else { return }
        let send: ProgressToken? = locked {
            job.progress = progress
            job.total = total
            job.message = message
            guard let token = job.progressToken, progress > job.lastSentProgress else { return nil }
            job.lastSentProgress = progress
            return token
        }
        if let token = send {
            var p: [String: JSON] = ["progressToken": token.json, "progress": .double(progress)]
            if let total { p["total"] = .double(total) }
            if let message { p["message"] = .string(message) }
            notify("notifications/progress", .object(p))
        }
    }

    fileprivate func setMetrics(_ job: Job, _ metrics: JSON) { locked { job.metrics = metrics } }
}
