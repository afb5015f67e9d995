import CytoCore

/// Background jobs: status, list, wait, pause, resume, cancel (PROTOCOL.md "Jobs"). Jobs are
/// started by other methods (train/start, features/extract with `background`).
extension Server {
    func registerJobMethods() {
        register("jobs/list", params: ["state"], summary: "List the jobs, oldest first, optionally only those in one state.",
                 execution: .inline, availability: [.duringShutdown]) { req in
            let state = try req.params.optionalChoice("state", JobState.allCases.map(\.rawValue)).flatMap(JobState.init)
            return .object(["jobs": .array(req.server.jobs.list(state: state))])
        }

        register("jobs/status", params: ["jobId"], summary: "A job's state, progress, metrics, result or error.",
                 execution: .inline, availability: [.duringShutdown]) { req in
            try req.server.jobs.status(try req.params.string("jobId"))
        }

        register("jobs/wait", params: ["jobId", "timeoutSeconds"],
                 summary: "Answer when the job has ended (or the timeout passed), in turn with the other work.",
                 execution: .serial, availability: [.duringShutdown]) { req in
            let id = try req.params.string("jobId")
            let timeout = try req.params.optionalNumber("timeoutSeconds", in: 0...1e9)
            return try req.server.jobs.wait(id, timeout: timeout, cancellation: req.cancellation)
        }

        register("jobs/pause", params: ["jobId"], summary: "Park a job at its next pause point; answers once it is paused.",
                 execution: .concurrent) { req in
            try req.server.jobs.pause(try req.params.string("jobId"), cancellation: req.cancellation)
        }

        register("jobs/resume", params: ["jobId"], summary: "Let a paused job go on.",
                 execution: .inline) { req in
            try req.server.jobs.resume(try req.params.string("jobId"))
        }

        register("jobs/cancel", params: ["jobId", "reason"], summary: "Cancel a job; answers once it has ended.",
                 execution: .concurrent, availability: [.duringShutdown]) { req in
            let id = try req.params.string("jobId")
            let reason = try req.params.optionalString("reason")
            return try req.server.jobs.cancel(id, reason: reason, cancellation: req.cancellation)
        }
    }
}
