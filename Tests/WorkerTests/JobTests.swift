import CytoCore
import Foundation
import Testing
@testable import Worker

/// The job manager, driven through the protocol with a job type defined only in these tests.
@Suite struct JobTests {
    func start(_ h: Harness, _ params: JSON, token: JSON? = nil) -> String {
        let r = h.call("test/count", params, meta: token.map { ["progressToken": $0] })
        return r["result"]?["jobId"]?.stringValue ?? "?"
    }

    func status(_ h: Harness, _ id: String) -> JSON { h.call("jobs/status", ["jobId": .string(id)])["result"] ?? .null }

    @Test func aJobRunsReportsAndEnds() {
        let h = Harness()
        let id = start(h, ["steps": 5], token: "t1")
        #expect(id == "job-1")
        let ended = h.sink.wait { $0.contains { $0["method"] == "notifications/jobs/ended" } }
        let note = ended.first { $0["method"] == "notifications/jobs/ended" }?["params"]?["job"]
        #expect(note?["state"] == "done")
        #expect(note?["result"] == ["steps": 5])
        let s = status(h, id)
        #expect(s["state"] == "done" && s["progress"] == 5 && s["total"] == 5 && s["message"] == "step 5")
        #expect(s["metrics"] == ["step": 5])
        let progress = h.notifications("notifications/progress").compactMap { $0["params"] }
        #expect(progress.map { $0["progress"] ?? .null } == [1, 2, 3, 4, 5])
        #expect(progress.allSatisfy { $0["progressToken"] == "t1" })
        #expect(h.call("jobs/list", ["state": "done"])["result"]?["jobs"]?.arrayValue?.count == 1)
        #expect(h.call("jobs/list", ["state": "running"])["result"]?["jobs"] == [])
        #expect(h.call("jobs/list", ["state": "sleeping"]).errorData?["field"] == "state")
        #expect(h.call("jobs/pause", ["jobId": .string(id)]).code == -32016)
        #expect(h.call("jobs/resume", ["jobId": .string(id)]).code == -32016)
        #expect(h.call("jobs/cancel", ["jobId": .string(id)])["result"]?["state"] == "done")
        #expect(h.call("jobs/status", ["jobId": "job-77"]).code == -32018)
    }

    @Test func pauseResumeAndCancel() {
        let h = Harness()
        let id = JSON.string(start(h, ["steps": 100_000, "stepMillis": 1]))
        h.sink.wait { $0.contains { $0["method"] == nil && $0["result"]?["state"] == "running" } }
        let paused = h.call("jobs/pause", ["jobId": id])["result"]
        #expect(paused?["state"] == "paused")
        let at = paused?["progress"]
        usleep(50_000)
        #expect(status(h, id.stringValue!)["progress"] == at, "a paused job makes no progress")
        #expect(h.call("jobs/pause", ["jobId": id])["result"]?["state"] == "paused")
        #expect(h.call("jobs/resume", ["jobId": id])["result"]?["state"] == "running")
        let cancelled = h.call("jobs/cancel", ["jobId": id, "reason": "enough"])["result"]
        #expect(cancelled?["state"] == "cancelled")
        #expect(cancelled?["error"]?["code"] == -32800)
        #expect(cancelled?["error"]?["data"] == ["kind": "cancelled", "jobId": id, "reason": "enough"])
        #expect(h.call("jobs/wait", ["jobId": id])["result"]?["state"] == "cancelled")
        #expect(h.call("jobs/resume", ["jobId": id]).errorData?["state"] == "cancelled")
    }

    @Test func queuedJobsWaitForASlotAndConflictsAreRefused() {
        let h = Harness(maxRunningJobs: 1)
        let a = JSON.string(start(h, ["steps": 100_000, "key": "train"]))
        let conflict = h.call("test/count", ["steps": 1, "key": "train"])
        #expect(conflict.code == -32016)
        #expect(conflict.errorData?["jobId"] == a)
        let b = JSON.string(start(h, ["steps": 3]))
        #expect(status(h, b.stringValue!)["state"] == "queued")
        #expect(h.call("jobs/pause", ["jobId": b])["result"]?["state"] == "paused")
        #expect(h.call("jobs/resume", ["jobId": b])["result"]?["state"] == "queued")
        let np = JSON.string(start(h, ["steps": 1, "pausable": false]))
        #expect(h.call("jobs/pause", ["jobId": np]).code == -32016)
        #expect(h.call("jobs/cancel", ["jobId": a])["result"]?["state"] == "cancelled")
        #expect(h.call("jobs/wait", ["jobId": b])["result"]?["state"] == "done")
        #expect(h.call("jobs/wait", ["jobId": np])["result"]?["state"] == "done")
        let timed = h.call("jobs/wait", ["jobId": "job-1", "timeoutSeconds": 0])
        #expect(timed["result"]?["state"] == "cancelled")
    }

    @Test func waitGivesUpAtItsTimeout() {
        let h = Harness()
        let id = JSON.string(start(h, ["steps": 100_000]))
        #expect(h.call("jobs/wait", ["jobId": id, "timeoutSeconds": 0.05])["result"]?["state"] == "running")
        #expect(h.call("jobs/wait", ["jobId": id, "timeoutSeconds": -1]).errorData?["field"] == "timeoutSeconds")
        h.call("jobs/cancel", ["jobId": id])
    }

    @Test func shutdownStopsJobsAndRefusesNewWork() {
        let h = Harness(maxRunningJobs: 1)
        let a = JSON.string(start(h, ["steps": 100_000]))
        let b = JSON.string(start(h, ["steps": 5]))
        h.sink.wait { $0.contains { $0["method"] == "notifications/jobs/ended" } == false }
        let r = h.call("shutdown")
        let jobs = r["result"]?["jobs"]?.arrayValue ?? []
        #expect(jobs.count == 2)
        #expect(jobs.first { $0["jobId"] == a }?["state"] == "stopped")
        #expect(jobs.first { $0["jobId"] == a }?["result"]?["step"]?.intValue != nil)
        #expect(jobs.first { $0["jobId"] == b }?["state"] == "cancelled")
        #expect(h.call("test/slow", ["n": 1]).code == -32003)
        #expect(h.call("test/count", ["steps": 1]).code == -32003)
        #expect(h.call("ping")["result"] != nil)
        #expect(h.call("jobs/status", ["jobId": a])["result"]?["state"] == "stopped")
    }

    @Test func serveAnswersEverythingReadThenStopsJobsAndExitsZero() {
        var o = ServerOptions()
        o.maxLineBytes = 4096
        let sink = MemorySink()
        let s = Server(options: o, sink: sink, log: Logger(level: .quiet))
        s.registerStandardMethods()
        Harness.registerTestMethods(s)
        let input = [
            #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1.0","clientInfo":{"name":"t","version":"0"}}}"#,
            #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            #"{"jsonrpc":"2.0","id":2,"method":"test/count","params":{"steps":1000000}}"#,
            #"{"jsonrpc":"2.0","id":3,"method":"test/slow","params":{"n":30}}"#,
            String(repeating: "z", count: 5000),
            #"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
        ].joined(separator: "\r\n")
        #expect(s.serve(input: MemorySource(input, chunk: 5)) == 0)
        let msgs = sink.messages()
        #expect(msgs.first { $0["id"] == 3 }?["result"] == ["n": 30])
        #expect(msgs.first { $0["id"] == 4 }?["result"] == .object([:]))
        let tooLong = msgs.first { $0.errorData?["kind"] == "line_too_long" }
        #expect(tooLong?.code == -32600)
        #expect(tooLong?.errorData?["line"] == 5 && tooLong?.errorData?["bytes"] == 5000)
        let ended = msgs.first { $0["method"] == "notifications/jobs/ended" }
        #expect(ended?["params"]?["job"]?["state"] == "stopped", "\(msgs.map(\.serialized))")
    }

    @Test func shutdownDoesNotWaitForeverOnAJobsWaitInProgress() {
        let h = Harness()
        let id = JSON.string(start(h, ["steps": 1_000_000]))
        h.send(.object(["jsonrpc": "2.0", "id": "w", "method": "jobs/wait", "params": ["jobId": id]]))
        let r = h.call("shutdown")
        #expect(r["result"]?["jobs"]?.arrayValue?.first?["state"] == "stopped")
        #expect(h.response("w")["result"]?["state"] == "stopped")
    }

    @Test func aJobPausedAtTheEndOfInputIsStopped() {
        let sink = MemorySink()
        let s = Server(options: ServerOptions(), sink: sink, log: Logger(level: .quiet))
        s.registerStandardMethods()
        Harness.registerTestMethods(s)
        let input = [
            #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1.0","clientInfo":{"name":"t","version":"0"}}}"#,
            #"{"jsonrpc":"2.0","id":2,"method":"test/count","params":{"steps":1000000}}"#,
            #"{"jsonrpc":"2.0","id":3,"method":"jobs/pause","params":{"jobId":"job-1"}}"#,
            #"{"jsonrpc":"2.0","id":4,"method":"jobs/wait","params":{"jobId":"job-1"}}"#,
        ].joined(separator: "\n")
        #expect(s.serve(input: MemorySource(input, chunk: 4096)) == 0)
        let msgs = sink.messages()
        // Parked before the input ended, or stopped at the pause point right after: either way
        // it cannot be left paused with nobody to resume it.
        let paused = msgs.first { $0["id"] == 3 }?["result"]?["state"]
        #expect(paused == "paused" || paused == "stopped")
        #expect(msgs.first { $0["id"] == 4 }?["result"]?["state"] == "stopped")
    }
}
