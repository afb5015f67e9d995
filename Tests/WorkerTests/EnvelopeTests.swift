import CytoCore
import Testing
@testable import Worker

/// JSON-RPC 2.0 envelopes, batches and the lifecycle, over an in-memory transport.
@Suite struct EnvelopeTests {
    /// Sends one raw line and returns the one message it produced.
    func answer(_ h: Harness, _ line: String) -> JSON {
        let before = h.sink.messages().count
        h.send(line)
        h.server.waitUntilIdle()
        let after = h.sink.messages()
        #expect(after.count == before + 1, "expected one response to \(line.prefix(60))")
        return after.last ?? .null
    }

    func silent(_ h: Harness, _ line: String) {
        let before = h.sink.messages().count
        h.send(line)
        h.server.waitUntilIdle()
        #expect(h.sink.messages().count == before, "expected no response to \(line.prefix(60))")
    }

    @Test func malformedLinesGetParseErrorsNamingTheLine() {
        let h = Harness()
        for bad in ["{", "nul", "{'a':1}", "[1,]", "{\"a\":1} x", "NaN", "\u{1}", "\"\\x\""] {
            let r = answer(h, bad)
            #expect(r.code == -32700, "\(bad)")
            #expect(r["id"] == .null)
            #expect(r.errorData?["kind"] == "parse_error")
            #expect(r.errorData?["line"]?.intValue != nil)
        }
        // Invalid UTF-8 inside a string.
        h.server.receive(line: Array(#"{"jsonrpc":"2.0","id":1,"method":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8), number: 99)
        h.server.waitUntilIdle()
        #expect(h.sink.messages().last?.code == -32700)
        #expect(h.sink.messages().last?.errorData?["line"] == 99)
        // An encoded surrogate (CESU-8) is not UTF-8 either, though json-c lets it through.
        h.server.receive(line: [0x22, 0xED, 0xA0, 0x80, 0x22], number: 100)
        h.server.waitUntilIdle()
        #expect(h.sink.messages().last?.code == -32700)
        // Nesting deeper than the limit.
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(answer(h, deep).code == -32700)
        let deepParams = #"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"a":"# + String(repeating: "{\"a\":", count: 70) + "1" + String(repeating: "}", count: 71) + "}"
        #expect(answer(h, deepParams).code == -32700)
        #expect(h.call("ping")["result"] == .object([:]))
    }

    @Test func invalidEnvelopesGetInvalidRequestWithTheIdWhenItIsReadable() {
        let h = Harness()
        let cases: [(String, JSON, String?)] = [
            ("1", .null, nil),
            ("\"x\"", .null, nil),
            (#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, .null, "id"),
            (#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, .null, "id"),
            (#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, .null, "id"),
            (#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, .null, "id"),
            (#"{"jsonrpc":"2.0","id":99999999999999999999,"method":"ping"}"#, .null, "id"),
            (#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"ping"}"#, .null, "id"),
            (#"{"jsonrpc":"2.0","id":9007199254740992,"method":"ping"}"#, .null, "id"),
            (#"{"id":3,"method":"ping"}"#, 3, "jsonrpc"),
            (#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#, 3, "jsonrpc"),
            (#"{"jsonrpc":2.0,"id":"s","method":"ping"}"#, "s", "jsonrpc"),
            (#"{"jsonrpc":"2.0","id":4}"#, 4, "method"),
            (#"{"jsonrpc":"2.0","id":4,"method":7}"#, 4, "method"),
            (#"{"jsonrpc":"2.0","id":4,"method":""}"#, 4, "method"),
            (#"{"jsonrpc":"2.0","id":5,"method":"ping","extra":1}"#, 5, "extra"),
            (#"{"jsonrpc":"2.0","id":6,"method":"ping","params":"x"}"#, 6, "params"),
            (#"{"jsonrpc":"2.0","id":6,"method":"ping","params":null}"#, 6, "params"),
            (#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#, .null, "method"),
            (#"{"jsonrpc":"2.0","id":8,"method":"notifications/initialized"}"#, 8, "id"),
        ]
        for (line, id, field) in cases {
            let r = answer(h, line)
            #expect(r.code == -32600, "\(line)")
            #expect(r["id"] == id, "\(line)")
            #expect(r.errorData?["field"]?.stringValue == field, "\(line)")
            #expect(r.errorData?["line"]?.intValue != nil)
        }
    }

    @Test func methodsAndParamsAreChecked() {
        let h = Harness()
        #expect(h.call("ping", id: 9007199254740991)["result"] != nil)
        #expect(h.call("ping", id: -9007199254740991)["result"] != nil)
        let unknown = h.call("no/such", id: "u1")
        #expect(unknown.code == -32601)
        #expect(unknown["id"] == "u1")
        let arr = answer(h, #"{"jsonrpc":"2.0","id":9,"method":"ping","params":[1]}"#)
        #expect(arr.code == -32602)
        #expect(arr.errorData?["field"] == "params")
        let extra = h.call("ping", ["x": 1])
        #expect(extra.code == -32602)
        #expect(extra.errorData?["field"] == "x")
        #expect(h.call("ping", [:], meta: ["progressToken": "t", "other": [1]])["result"] == .object([:]))
        #expect(h.call("ping", [:], meta: 3).errorData?["field"] == "_meta")
        #expect(h.call("ping", [:], meta: ["progressToken": 1.5]).errorData?["field"] == "_meta.progressToken")
        // The same id twice, the first still running.
        h.send(#"{"jsonrpc":"2.0","id":"dup","method":"test/slow","params":{"n":300}}"#)
        h.send(#"{"jsonrpc":"2.0","id":"dup","method":"ping"}"#)
        let msgs = h.sink.wait { m in m.filter { $0["id"] == "dup" }.count == 2 }.filter { $0["id"] == "dup" }
        #expect(msgs.first?.code == -32600)
        #expect(msgs.first?.errorData?["field"] == "id")
        #expect(msgs.last?["result"]?["n"] == 300)
    }

    @Test func notificationsAndClientResponsesGetNoAnswer() {
        let h = Harness()
        silent(h, #"{"jsonrpc":"2.0","method":"ping"}"#)
        silent(h, #"{"jsonrpc":"2.0","method":"no/such/notification"}"#)
        silent(h, #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        silent(h, #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[1]}}"#)
        silent(h, #"{"jsonrpc":"2.0","method":"ping","params":{"bad":1}}"#)
        silent(h, #"{"jsonrpc":"2.0","id":5,"result":{}}"#)
        silent(h, #"{"jsonrpc":"2.0","id":5,"error":{"code":1,"message":"x"}}"#)
        silent(h, "   \t\r")
        #expect(h.call("ping")["result"] != nil)
    }

    @Test func batchesAnswerInOrderWithoutNotifications() {
        let h = Harness()
        let r = answer(h, #"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"ping"},7,{"jsonrpc":"2.0","id":"b","method":"nope"},{"jsonrpc":"2.0","id":2,"method":"test/slow","params":{"n":20}}]"#)
        let items = r.arrayValue ?? []
        #expect(items.count == 4)
        #expect(items[0]["id"] == 1 && items[0]["result"] != nil)
        #expect(items[1].code == -32600 && items[1].errorData?["index"] == 2)
        #expect(items[2]["id"] == "b" && items[2].code == -32601)
        #expect(items[3]["result"]?["n"] == 20)
        silent(h, #"[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#)
        let empty = answer(h, "[]")
        #expect(empty.code == -32600 && empty["id"] == .null)
        let big = answer(h, "[" + Array(repeating: "1", count: 101).joined(separator: ",") + "]")
        #expect(big.code == -32600 && big.errorData?["kind"] == "batch_too_large")
        let nested = answer(h, #"[[{"jsonrpc":"2.0","id":1,"method":"ping"}]]"#)
        #expect(nested.arrayValue?.first?.code == -32600)
    }

    @Test func lifecycleOrderIsEnforced() {
        let h = Harness(initialize: false)
        #expect(h.call("ping")["result"] != nil)
        #expect(h.call("jobs/list").code == -32001)
        #expect(h.call("no/such").code == -32601)
        let badVersion = h.call("initialize", ["protocolVersion": "2.0", "clientInfo": ["name": "x", "version": "1"]])
        #expect(badVersion.code == -32602)
        #expect(badVersion.errorData?["field"] == "protocolVersion")
        #expect(badVersion.errorData?["supported"] == ["1.0", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"])
        #expect(h.call("initialize", ["protocolVersion": "1.0", "clientInfo": ["name": 1, "version": "1"]]).errorData?["field"] == "clientInfo.name")
        #expect(h.call("initialize", ["protocolVersion": "1.0", "clientInfo": ["name": "x", "version": "1", "os": "y"]]).errorData?["field"] == "clientInfo.os")
        #expect(h.call("initialize", ["protocolVersion": "1.0"]).errorData?["field"] == "clientInfo")
        let ok = h.call("initialize", ["protocolVersion": "1.3", "clientInfo": ["name": "x", "version": "1"], "capabilities": [:]])
        #expect(ok["result"]?["protocolVersion"] == "1.0")
        #expect(ok["result"]?["serverInfo"] == ["name": "cytogan", "version": "9.9.9"])
        let methods = ok["result"]?["capabilities"]?["methods"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(methods == h.server.methodNames)
        #expect(methods.contains("jobs/status") && methods.contains("test/count"))
        #expect(h.call("initialize", ["protocolVersion": "1.0", "clientInfo": ["name": "x", "version": "1"]]).code == -32002)
        #expect(h.call("jobs/list")["result"] == ["jobs": []])
        let list = h.call("methods/list")["result"]?["methods"]?.arrayValue ?? []
        #expect(list.compactMap { $0["name"]?.stringValue } == methods)
    }

    @Test func handlerErrorsKeepTheirKindAndLocation() {
        let h = Harness()
        let f = h.call("test/fileError")
        #expect(f.code == -32010)
        #expect(f.errorData == ["kind": "file_not_found", "path": "/data/x.tif", "index": 2])
        let bug = h.call("test/bug")
        #expect(bug.code == -32603)
        #expect(bug.errorData?["kind"] == "internal")
        #expect(h.call("ping")["result"] != nil)
    }

    @Test func progressGoesToTheTokenOnlyWhenItGrows() {
        let h = Harness()
        let r = h.call("test/progress", ["values": [1, 3, 2, 3, 5]], id: "p", meta: ["progressToken": "tok"])
        #expect(r["result"] != nil)
        let progress = h.notifications("notifications/progress")
        #expect(progress.map { $0["params"]?["progress"] ?? .null } == [1, 3, 5])
        #expect(progress.allSatisfy { $0["params"]?["progressToken"] == "tok" && $0["params"]?["total"] == 10 })
        #expect(h.notifications("notifications/partial").first?["params"] == ["requestId": "p", "offset": 0, "items": ["a", "b"]])
        // Without a token: no progress at all.
        h.call("test/progress", ["values": [1, 2]])
        #expect(h.notifications("notifications/progress").count == 3)
    }

    @Test func cancellingARequestAnswersItWithCancelled() {
        let h = Harness()
        // The second is still queued behind the first when both are cancelled.
        h.send(#"{"jsonrpc":"2.0","id":"long","method":"test/slow","params":{"n":20000,"_meta":{"progressToken":1}}}"#)
        h.send(#"{"jsonrpc":"2.0","id":"queued","method":"test/slow","params":{"n":20000}}"#)
        h.sink.wait { $0.contains { $0["method"] == "notifications/progress" } }
        #expect(h.call("ping")["result"] != nil, "ping is answered while work runs")
        h.send(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"queued","reason":"not needed"}}"#)
        h.send(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long","reason":"user pressed stop"}}"#)
        let long = h.response("long")
        #expect(long.code == -32800)
        #expect(long.errorData == ["kind": "cancelled", "requestId": "long", "reason": "user pressed stop"])
        let queued = h.response("queued")
        #expect(queued.errorData == ["kind": "cancelled", "requestId": "queued", "reason": "not needed"])
        // Unknown and finished ids are ignored.
        h.send(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long"}}"#)
        #expect(h.call("test/slow", ["n": 1])["result"] != nil)
    }
}

@Suite struct ParamsTests {
    let p = Params([
        "s": "x", "i": 3, "f": 2.5, "b": true, "o": ["w": "wide"], "n": .null,
        "crops": [["path": "a"], ["path": 5], 3], "v": [1, 2.5], "e": "slerp",
    ])

    func field(_ f: () throws -> Any) -> String? {
        do { _ = try f(); return nil } catch let e as RPCError {
            #expect(e.code == -32602)
            return e.data["field"]?.stringValue
        } catch { return "?" }
    }

    @Test func typedAccessorsNameTheFieldAtFault() throws {
        #expect(try p.string("s") == "x")
        #expect(try p.int("i", in: 0...5) == 3)
        #expect(try p.int("f2", default: 4) == 4)
        #expect(try p.number("f") == 2.5)
        #expect(try p.bool("b"))
        #expect(try p.object("o").string("w") == "wide")
        #expect(try p.floats("v") == [1, 2.5])
        #expect(try p.choice("e", ["linear", "slerp"]) == "slerp")
        #expect(field { try p.string("i") } == "i")
        #expect(field { try p.string("n") } == "n")
        #expect(field { try p.string("missing") } == "missing")
        #expect(field { try p.int("f") } == "f")
        #expect(field { try p.int("i", in: 4...5) } == "i")
        #expect(field { try p.object("o").int("w") } == "o.w")
        #expect(field { try p.choice("e", ["linear"]) } == "e")
        #expect(field { try p.strings("v") } == "v[0]")
        #expect(field { try p.numbers("v", count: 3...3) } == "v")
        #expect(field { try p.exactlyOne(of: ["s", "i"]) } == "i")
        #expect(field { try p.exactlyOne(of: ["q", "r"]) } == "q")
        #expect(field { try p.object("o").rejectUnknown(allowed: ["x"]) } == "o.w")
    }

    @Test func listElementsCarryTheirIndex() throws {
        do {
            for c in try Params(["crops": [["path": "a"], ["path": 5]]]).objects("crops") { _ = try c.string("path") }
            Issue.record("expected an error")
        } catch let e as RPCError {
            #expect(e.data["field"] == "crops[1].path")
            #expect(e.data["index"] == 1)
        }
        do {
            _ = try Params(["crops": [["path": "a"], 3]]).objects("crops")
            Issue.record("expected an error")
        } catch let e as RPCError {
            #expect(e.data["field"] == "crops[1]")
            #expect(e.data["index"] == 1)
        }
    }
}
