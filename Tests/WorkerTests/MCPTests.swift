import CytoCore
import Foundation
import Testing
@testable import Worker

/// The worker as an MCP server: version negotiation, the session's effect on cancellation, and
/// tools/call's content, over the in-memory transport.
@Suite struct MCPTests {
    @Test func negotiationAnswersMCPRevisionsAndKeepsCytogansRules() {
        for v in ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] {
            #expect(NegotiatedProtocol.negotiate(v) == NegotiatedProtocol(family: .mcp, version: v))
        }
        // An MCP revision this build does not know is answered with the newest it speaks.
        #expect(NegotiatedProtocol.negotiate("2099-01-01") == NegotiatedProtocol(family: .mcp, version: "2025-11-25"))
        #expect(NegotiatedProtocol.negotiate("1.0") == NegotiatedProtocol(family: .cytogan, version: "1.0"))
        #expect(NegotiatedProtocol.negotiate("1.12") == NegotiatedProtocol(family: .cytogan, version: "1.0"))
        for refused in ["2.0", "0.1", "1.", "1.2.3", ""] {
            #expect(NegotiatedProtocol.negotiate(refused) == nil, "\(refused)")
        }
        let mcp = NegotiatedProtocol(family: .mcp, version: "2025-03-26")
        #expect(mcp.atLeast("2025-03-26") && !mcp.atLeast("2025-06-18") && mcp.atLeast("2024-11-05"))
        #expect(NegotiatedProtocol(family: .cytogan, version: "1.0").atLeast("2025-11-25"))
    }

    @Test func initializeShowsBothVersionsToAnMCPClientAndNothingNewToACytoganOne() {
        let mcp = Harness(initialize: false)
        let r = mcp.call("initialize", ["protocolVersion": "2025-06-18", "clientInfo": ["name": "agent", "version": "1", "websiteUrl": "https://example.org"]])["result"]
        #expect(r?["protocolVersion"] == "2025-06-18")
        #expect(r?["cytoganProtocolVersion"] == .string(protocolVersion))
        #expect(r?["capabilities"]?["tools"] == ["listChanged": false])
        #expect(mcp.server.session == NegotiatedProtocol(family: .mcp, version: "2025-06-18"))

        let cytogan = Harness(initialize: false)
        let c = cytogan.call("initialize", ["protocolVersion": "1.3", "clientInfo": ["name": "pipeline", "version": "1"]])["result"]
        #expect(c?["protocolVersion"] == "1.0")
        #expect(c?["cytoganProtocolVersion"] == nil && c?["instructions"] == nil && c?["capabilities"]?["tools"] == nil)

        let refused = Harness(initialize: false)
        let e = refused.call("initialize", ["protocolVersion": "3.1", "clientInfo": ["name": "future", "version": "1"]])
        #expect(e.code == -32602 && e.errorData?["field"] == "protocolVersion")
        #expect(e.errorData?["supported"]?.arrayValue?.count == 5)
        #expect(refused.call("jobs/list").code == -32001)
    }

    @Test func aRequestCancelledByAnMCPClientGetsNoResponse() {
        let h = Harness(protocolVersion: "2025-11-25")
        h.send(#"{"jsonrpc":"2.0","id":"long","method":"test/slow","params":{"n":20000,"_meta":{"progressToken":1}}}"#)
        h.sink.wait { $0.contains { $0["method"] == "notifications/progress" } }
        h.send(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long","reason":"user pressed stop"}}"#)
        // The next computing request runs after the cancelled one has stopped.
        #expect(h.call("test/slow", ["n": 1])["result"] == ["n": 1])
        h.server.waitUntilIdle()
        #expect(!h.sink.messages().contains { $0["id"] == "long" }, "MCP: no response to a cancelled request")
        // A request cancelled by a signal is still answered.
        h.send(#"{"jsonrpc":"2.0","id":"sig","method":"test/slow","params":{"n":20000,"_meta":{"progressToken":2}}}"#)
        h.sink.wait { $0.contains { $0["method"] == "notifications/progress" && $0["params"]?["progressToken"] == 2 } }
        h.server.terminate(reason: "SIGTERM")
        #expect(h.response("sig").code == -32800)
    }

    @Test func toolsAnswerWithContentAndFailuresAsIsErrorNamingTheArgument() throws {
        let old = Harness(protocolVersion: "2025-03-26")
        let listing = try #require(old.call("tools/list")["result"]?["tools"]?.arrayValue)
        #expect(listing.count == toolOrder.count)
        #expect(listing.allSatisfy { $0["title"] == nil && $0["annotations"] != nil })
        let noModel = try #require(old.call("tools/call", ["name": "model_info"])["result"])
        #expect(noModel["isError"] == true && noModel["structuredContent"] == nil)

        let h = Harness(protocolVersion: "2025-06-18")
        let bad = try #require(h.call("tools/call", ["name": "generate_cells", "arguments": ["count": 0]])["result"])
        #expect(bad["isError"] == true)
        #expect(bad["structuredContent"]?["error"]?["data"]?["field"] == "count")
        #expect(bad["content"]?.arrayValue?.first?["text"]?.stringValue?.contains("count") == true)
        let unknown = h.call("tools/call", ["name": "draw"])
        #expect(unknown.code == -32602 && unknown.errorData?["field"] == "name")

        let tiny: JSON = ["architecture": ["size": 16, "generator_widths": [8, 4], "discriminator_widths": [4, 8],
                                           "discriminator_strides": [2, 2], "representation": 8, "latent": 6], "batch_size": 4]
        let created = try #require(h.call("tools/call", ["name": "create_model", "arguments": ["preset": "small-64", "config": tiny]])["result"])
        #expect(created["structuredContent"]?["featureDim"] == 8)
        let cells = try #require(h.call("tools/call", ["name": "generate_cells", "arguments": ["count": 3, "seed": 2, "pictures": "both"]])["result"])
        let content = try #require(cells["content"]?.arrayValue)
        #expect(content.count == 5 && content.dropFirst().allSatisfy { $0["type"] == "image" && $0["mimeType"] == "image/png" })
        // The pictures are the PNGs the method writes for the same cells.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cytogan-mcp-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try #require(h.call("samples/generate", ["count": 3, "seed": 2, "output": ["dir": .string(dir), "montage": true]])["result"])
        let montage = try Data(contentsOf: URL(fileURLWithPath: try #require(files["montage"]?.stringValue)))
        #expect(content[1]["data"]?.stringValue == montage.base64EncodedString())
        for i in 0..<3 {
            let png = try Data(contentsOf: URL(fileURLWithPath: try #require(files["files"]?.arrayValue?[i].stringValue)))
            #expect(content[i + 2]["data"]?.stringValue == png.base64EncodedString())
        }
        #expect(cells["structuredContent"]?["pictures"]?.arrayValue?.count == 4)
    }
}
