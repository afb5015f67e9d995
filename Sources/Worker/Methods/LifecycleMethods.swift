import CytoCore

/// The lifecycle of MCP's stdio transport: initialize, notifications/initialized, ping, shutdown,
/// notifications/cancelled, and the method catalogue (PROTOCOL.md "Lifecycle").
extension Server {
    func registerLifecycleMethods() {
        register("initialize", params: ["protocolVersion", "clientInfo", "capabilities"],
                 summary: "Start a session: agree on the protocol version (cytogan's 1.x or an MCP revision), learn the server's capabilities.",
                 execution: .inline, availability: [.beforeInitialize]) { req in
            let p = req.params
            let version = try p.string("protocolVersion")
            if version.isEmpty { throw p.error("protocolVersion", "must not be empty") }
            let info = try p.object("clientInfo")
            try info.rejectUnknown(allowed: ["name", "version", "title", "description", "websiteUrl", "icons"])
            let name = try info.string("name")
            let clientVersion = try info.string("version")
            for key in ["title", "description", "websiteUrl"] { _ = try info.optionalString(key) }
            _ = try info.optionalArray("icons")
            _ = try p.optionalObject("capabilities")
            guard let agreed = NegotiatedProtocol.negotiate(version) else {
                var e = p.error("protocolVersion", "\(quoted(version)) is not supported: this worker speaks cytogan \(protocolVersion) (any 1.x is accepted) and MCP \(NegotiatedProtocol.mcpVersions.joined(separator: ", "))")
                e.data["supported"] = .array(NegotiatedProtocol.supported.map { .string($0) })
                throw e
            }
            try req.server.markInitialized(client: .object(["name": .string(name), "version": .string(clientVersion)]), protocol: agreed)
            let asked = agreed.version == version ? "" : ", asked for \(version)"
            req.server.log.info("initialized by \(name) \(clientVersion) (\(agreed.isMCP ? "MCP" : "protocol") \(agreed.version)\(asked))")
            return req.server.initializeResult(agreed)
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

    /// The `initialize` result: server info, capabilities (exactly the registered methods), limits
    /// and library versions; for an MCP client also MCP's capabilities (tools, resources,
    /// prompts), instructions, and cytogan's own protocol version beside the MCP one.
    func initializeResult(_ agreed: NegotiatedProtocol) -> JSON {
        guard case .object(var o) = cytoganInitializeResult else { return cytoganInitializeResult }
        guard agreed.isMCP else { return .object(o) }
        o["protocolVersion"] = .string(agreed.version)
        o["cytoganProtocolVersion"] = .string(protocolVersion)
        if case .object(var caps)? = o["capabilities"] {
            caps["tools"] = ["listChanged": false]
            caps["resources"] = ["listChanged": false, "subscribe": false]
            caps["prompts"] = ["listChanged": false]
            o["capabilities"] = .object(caps)
        }
        o["instructions"] = .string(mcpInstructions)
        return .object(o)
    }

    private var cytoganInitializeResult: JSON {
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

/// What `initialize` agreed on: cytogan's own protocol, or a revision of the Model Context
/// Protocol (PROTOCOL.md "Versioning"). The worker serves both on the same stdin/stdout; the
/// family decides what MCP asks of a session (no response to a cancelled request) and the shape
/// of tool results older MCP revisions know.
public struct NegotiatedProtocol: Sendable, Equatable {
    public enum Family: Sendable { case cytogan, mcp }
    public let family: Family
    /// The version `initialize` answers with.
    public let version: String

    public var isMCP: Bool { family == .mcp }

    /// The MCP revisions this worker speaks, newest first.
    public static let mcpVersions = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]
    /// Every version a client may ask for, as `data.supported` lists them.
    public static var supported: [String] { [protocolVersion] + mcpVersions }

    /// The answer to a client's protocolVersion, nil when refused (also when empty). A cytogan
    /// version (digits and dots) is served as cytogan's when its major is ours (any 1.x), refused
    /// otherwise. Anything
    /// else is an MCP revision: one this worker speaks is answered with itself, any other with
    /// the newest MCP revision it speaks, and the client decides whether to go on (as MCP says).
    public static func negotiate(_ requested: String) -> NegotiatedProtocol? {
        if requested.isEmpty { return nil }
        if requested.allSatisfy({ $0 == "." || $0.isASCII && $0.isNumber }) {
            let major = protocolVersion.split(separator: ".").first!
            let parts = requested.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == major, !parts[1].isEmpty else { return nil }
            return NegotiatedProtocol(family: .cytogan, version: protocolVersion)
        }
        return NegotiatedProtocol(family: .mcp, version: mcpVersions.contains(requested) ? requested : mcpVersions[0])
    }

    /// Whether the session speaks MCP revision `revision` or later; a cytogan session gets the
    /// newest MCP shapes. (MCP revisions are dates, so their text order is their age order.)
    public func atLeast(_ revision: String) -> Bool { !isMCP || version >= revision }
}

/// `initialize`'s `instructions` for MCP clients: how the tools fit together.
private let mcpInstructions = """
    cytogan profiles cell images with a GAN: its discriminator's features of single-cell crops, \
    aggregated per treatment, score mechanisms of action (NSC, NSCB, mAP); its generator draws cells. \
    Start with create_model (a fresh model from a preset) or load_model (a .safetensors checkpoint). \
    train_model runs in the background: follow it with job_status (waitSeconds to wait) and stop it \
    with cancel_job. extract_features takes crop paths or a manifest CSV; keep: true collects the rows \
    in a table for aggregate_profiles, normalize_profiles and score_profiles. generate_cells, \
    interpolate_cells and cell_algebra return PNG pictures; evaluate_realism measures how real \
    generated cells look. Paths are files on the machine running cytogan, relative to its working \
    folder. The resource cytogan://protocol is the full protocol with every parameter.
    """
