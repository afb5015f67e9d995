import CytoCore

/// The lifecycle of MCP's stdio transport: initialize, notifications/initialized, ping, shutdown,
/// notifications/cancelled, and the method catalogue (PROTOCOL.md "Lifecycle").
extension Server {
    func registerLifecycleMethods() {
        register("initialize", params: ["protocolVersion", "clientInfo", "capabilities"],
                 summary: "Start a session: agree on the protocol version, learn the server's capabilities.",
                 execution: .inline, availability: [.beforeInitialize]) { req in
            let p = req.params
            let version = try p.string("protocolVersion")
            let info = try p.object("clientInfo")
            try info.rejectUnknown(allowed: ["name", "version", "title"])
            let name = try info.string("name")
            let clientVersion = try info.string("version")
            _ = try info.optionalString("title")
            _ = try p.optionalObject("capabilities")
            guard Server.supports(version) else {
                var e = p.error("protocolVersion", "\(quoted(version)) is not supported: this worker speaks \(protocolVersion) (any 1.x is accepted)")
                e.data["supported"] = [.string(protocolVersion)]
                throw e
            }
            try req.server.markInitialized(client: .object(["name": .string(name), "version": .string(clientVersion)]))
            req.server.log.info("initialized by \(name) \(clientVersion) (protocol \(version))")
            return req.server.initializeResult
        }

        registerNotification("notifications/initialized", params: [],
                             summary: "The client has read the initialize result; nothing to answer.") { req in
            req.server.log.debug("client sent notifications/initialized")
        }

        register("ping", params: [], summary: "Answer at once with an empty result (liveness check).",
                 execution: .inline, availability: [.beforeInitialize, .duringShutdown]) { _ in
            .object([:])
        }

        register("methods/list", params: [], summary: "List the methods and notifications this worker serves.",
                 execution: .inline, availability: [.duringShutdown]) { req in
            req.server.catalogue
        }

        register("shutdown", params: [],
                 summary: "Finish requests in progress, stop jobs (checkpointing those that can), answer, exit 0.",
                 execution: .concurrent, availability: [.beforeInitialize, .duringShutdown]) { req in
            // Jobs first: a jobs/wait in progress then ends too, and nothing new can start.
            let stopped = req.server.jobs.stopAll()
            req.server.waitForOtherRequests()
            return .object(["jobs": .array(stopped)])
        }

        registerNotification("notifications/cancelled", params: ["requestId", "reason"],
                             summary: "Cancel a request in progress; it then answers with error -32800.") { req in
            let id = try req.params.requestID("requestId")
            let reason = try req.params.optionalString("reason")
            req.server.cancelRequest(id, reason: reason)
        }
    }

    /// Whether a client's protocolVersion can be served: the same major version.
    static func supports(_ version: String) -> Bool {
        let major = protocolVersion.split(separator: ".").first!
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 2 && parts[0] == major && !parts[1].isEmpty && parts[1].allSatisfy(\.isNumber)
    }

    /// The `initialize` result: server info, capabilities (exactly the registered methods), limits
    /// and library versions.
    var initializeResult: JSON {
        .object([
            "protocolVersion": .string(protocolVersion),
            "serverInfo": .object(["name": .string(options.name), "version": .string(options.version)]),
            "capabilities": .object([
                "methods": .array(methodNames.map { .string($0) }),
                "notifications": .object([
                    "accepts": .array(notificationNames.map { .string($0) }),
                    "sends": ["notifications/jobs/ended", "notifications/partial", "notifications/progress"],
                ]),
                "batch": true, "progress": true, "cancellation": true, "partialResults": true,
                "jobs": .object(["maxRunning": .int(Int64(jobs.maxRunning))]),
            ]),
            "limits": .object([
                "maxLineBytes": .int(Int64(options.maxLineBytes)), "maxDepth": .int(Int64(options.maxDepth)),
                "maxBatch": .int(Int64(options.maxBatch)),
            ]),
            "versions": .object([
                "cytogan": .string(options.version), "protocol": .string(protocolVersion),
                "json-c": .string(JSON.parserVersion),
            ]),
        ])
    }
}
