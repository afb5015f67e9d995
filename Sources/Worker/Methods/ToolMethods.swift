import CellImage
import CytoCore
import CytoGAN
import Foundation

/// MCP's tools (PROTOCOL.md §8.10): `tools/list` describes each tool with a JSON Schema of its
/// arguments, `tools/call` runs one. A tool is a thin layer over the worker's own methods (its
/// arguments are the method's params, with a few shorthands), so it computes exactly what the
/// method does; the layer shapes the answer as MCP content: the result as JSON text (and as
/// `structuredContent`), generated cells as PNG pictures, and a failure as an `isError` result
/// whose text names the argument at fault. Unknown tools and malformed `tools/call` params stay
/// protocol errors; a cancelled call is answered as any cancelled request of the session is.
extension Server {
    func registerToolMethods() {
        register("tools/list", params: ["cursor"],
                 summary: "MCP: the tools, each with a JSON Schema of its arguments.",
                 execution: .inline) { req in
            if req.params.has("cursor") {
                _ = try req.params.string("cursor")
                throw req.params.error("cursor", "continues no listing: every tool comes in the first page")
            }
            let session = req.server.session ?? NegotiatedProtocol(family: .cytogan, version: protocolVersion)
            return .object(["tools": .array(toolOrder.map { toolCatalogue[$0]!.listing(for: session) })])
        }

        register("tools/call", params: ["name", "arguments"],
                 summary: "MCP: run a tool; its result (JSON text, PNG pictures) or its failure (isError) as MCP content.",
                 placement: { p in
                     guard let name = p.values["name"]?.stringValue, let tool = toolCatalogue[name] else { return .inline }
                     return tool.placement(Params(p.values["arguments"]?.objectValue ?? [:]))
                 }) { req in
            let p = req.params
            let name = try p.string("name")
            // Errors name an argument as the tool's schema does: `count`, not `arguments.count`.
            let arguments = Params(try p.optionalObject("arguments")?.values ?? [:])
            guard let tool = toolCatalogue[name] else {
                var e = p.error("name", "\(quoted(name)) is not a tool of this worker (tools/list names them)")
                e.data["tools"] = .array(toolOrder.map { .string($0) })
                throw e
            }
            let session = req.server.session ?? NegotiatedProtocol(family: .cytogan, version: protocolVersion)
            do {
                try tool.checkArgumentNames(arguments)
                let output = try tool.run(ToolCall(request: req, arguments: arguments))
                return try output.content(for: session)
            } catch {
                let e = RPCError(any: error)
                // Cancellation is the request's fate, not the tool's: -32800, or no answer under MCP.
                if e.code == ErrorCode.cancelled || req.isCancelled { throw e }
                if e.code == ErrorCode.internalError { req.server.log.error("tool \(name): \(e.message)") }
                return ToolOutput.failure(namingTheArgument(e, arguments), for: session)
            }
        }
    }
}

/// One tool: its MCP description and how a call runs.
struct Tool: Sendable {
    let name: String
    let title: String
    let description: String
    /// The arguments' JSON Schema: an object schema whose `properties` are every argument.
    let inputSchema: JSON
    /// MCP's hints: readOnlyHint, destructiveHint, idempotentHint, openWorldHint.
    let annotations: JSON
    /// Where a call runs (as the worker's methods do: quick ones inline, computing ones on the
    /// work thread, waiting ones on a thread of their own), decided from its arguments.
    let placement: @Sendable (Params) -> Execution
    let run: @Sendable (ToolCall) throws -> ToolOutput

    /// The tools/list entry, in the shape the session's MCP revision knows.
    func listing(for session: NegotiatedProtocol) -> JSON {
        var o: [String: JSON] = ["name": .string(name), "description": .string(description), "inputSchema": inputSchema]
        if session.atLeast("2025-03-26") { o["annotations"] = annotations }
        if session.atLeast("2025-06-18") { o["title"] = .string(title) }
        return .object(o)
    }

    /// The argument names the schema declares.
    var argumentNames: [String] { (inputSchema["properties"]?.objectValue ?? [:]).keys.sorted(by: codePointOrder) }

    /// Refuses an argument the tool does not take, naming it.
    func checkArgumentNames(_ arguments: Params) throws {
        let known = Set(argumentNames)
        for key in arguments.values.keys.sorted(by: codePointOrder) where !known.contains(key) {
            let list = known.isEmpty ? "takes no arguments" : "takes " + argumentNames.joined(separator: ", ")
            throw RPCError.invalidParams(field: key, "unknown argument \(quoted(key)) (\(name) \(list))")
        }
    }
}

/// A call in progress: its arguments, and the means to run the worker's methods for it.
struct ToolCall {
    let request: Request
    let arguments: Params

    var server: Server { request.server }

    /// Runs a worker method for this call (its cancellation, and its progress token when
    /// `progress`); `keepImages`: the images the method made come back too.
    @discardableResult
    func method(_ name: String, _ params: [String: JSON], progress: Bool = true, keepImages: Bool = false) throws -> (result: JSON, images: GeneratedImages?) {
        try server.invoke(name, params, for: request, progress: progress, keepImages: keepImages)
    }

    /// The arguments as the method's params, after `convert` has rewritten the shorthands.
    func params(dropping drop: Set<String> = [], _ convert: (inout [String: JSON]) throws -> Void = { _ in }) rethrows -> [String: JSON] {
        var p = arguments.values.filter { !drop.contains($0.key) }
        try convert(&p)
        return p
    }
}

/// Images a method made (CHW planes in the model's range [-1, 1]), for a tool to show: the
/// caption of each and the montage's rows of image indexes.
struct GeneratedImages: Sendable {
    var planes: [Float]
    var count: Int
    var channels: Int
    var size: Int
    var montageRows: [[Int]]
    var captions: [String]

    /// Image `i` as a PNG: 8-bit RGB in the paper's colours, as `output` writes `<prefix><i>.png`.
    func png(_ i: Int) throws -> [UInt8] {
        try PNGCodec.encode(SampleImages.tile(planes, index: i, channels: channels, size: size))
    }

    /// The montage as a PNG, as `output` with `montage: true` writes `<prefix>montage.png`.
    func montagePNG() throws -> [UInt8] {
        let tiles = montageRows.map { $0.map { SampleImages.tile(planes, index: $0, channels: channels, size: size) } }
        return try PNGCodec.encode(try Montage.rows(tiles, gap: 2, background: 40))
    }
}

/// A tool's answer: a JSON object, and pictures shown after it.
struct ToolOutput {
    var result: [String: JSON]
    var pictures: [(png: [UInt8], caption: String)] = []

    init(_ result: JSON, pictures: [(png: [UInt8], caption: String)] = []) {
        self.result = result.objectValue ?? ["result": result]
        self.pictures = pictures
    }

    /// The tools/call result: the JSON as text (and as structuredContent from MCP 2025-06-18 on),
    /// then each picture as base64 PNG image content. `pictures` in the JSON lists their
    /// captions in the order the images follow.
    func content(for session: NegotiatedProtocol) throws -> JSON {
        var r = result
        if !pictures.isEmpty { r["pictures"] = .array(pictures.map { .string($0.caption) }) }
        var content: [JSON] = [["type": "text", "text": .string(JSON.object(r).serialized)]]
        for p in pictures {
            content.append(["type": "image", "mimeType": "image/png", "data": .string(Data(p.png).base64EncodedString())])
        }
        var o: [String: JSON] = ["content": .array(content), "isError": false]
        if session.atLeast("2025-06-18") { o["structuredContent"] = .object(r) }
        return .object(o)
    }

    /// A failed call: `isError` with the error's message as text (it names the argument at
    /// fault) and the protocol error object (`code`, `message`, `data.field` ...) as JSON.
    static func failure(_ e: RPCError, for session: NegotiatedProtocol) -> JSON {
        let error: JSON = ["error": e.json]
        var o: [String: JSON] = [
            "content": [["type": "text", "text": .string(e.message)], ["type": "text", "text": .string(error.serialized)]],
            "isError": true,
        ]
        if session.atLeast("2025-06-18") { o["structuredContent"] = error }
        return .object(o)
    }
}

/// A tool's failure names the argument at fault in `data.field`: a crop that cannot be read
/// (which the methods name by its `index`) becomes `crops[i]`, a manifest's row `manifest`; the
/// message then begins with the field unless it names it already, and names tools, not methods.
func namingTheArgument(_ error: RPCError, _ arguments: Params) -> RPCError {
    var e = error
    if e.data["field"] == nil {
        if let i = e.data["index"]?.intValue, let list = ["crops", "paths"].first(where: arguments.has) {
            e.data["field"] = .string("\(list)[\(i)]")
        } else if arguments.has("manifest"), e.data["path"] != nil {
            e.data["field"] = "manifest"
        }
    }
    if e.code == ErrorCode.noModel {
        e.message = "no model: create one with create_model or load one with load_model"
    }
    if let field = e.data["field"]?.stringValue, !e.message.contains(field) {
        e.message = "\(field): \(e.message)"
    }
    return e
}

// MARK: Shorthands shared by tools

/// Which pictures a sampling tool returns (its `pictures` argument): `montage` (default), `cells`
/// (one per image, at most 100), `both` or `none`. Decoded before any work, with the number of
/// images the call will make when it is known.
func pictureChoice(_ arguments: Params, count: Int?) throws -> String {
    let which = try arguments.choice("pictures", ["montage", "cells", "both", "none"], default: "montage")
    if let count, count > 100, which == "cells" || which == "both" {
        throw arguments.error("pictures", "\(quoted(which)) returns one picture per cell, at most 100, not \(count): ask for the montage or write files with output")
    }
    return which
}

/// The pictures asked for of a method's images: the montage and/or each image.
func pictures(_ which: String, of images: GeneratedImages?, montageCaption: String) throws -> [(png: [UInt8], caption: String)] {
    guard let images, which != "none" else { return [] }
    var out: [(png: [UInt8], caption: String)] = []
    if which == "montage" || which == "both" { out.append((try images.montagePNG(), montageCaption)) }
    if which == "cells" || which == "both" {
        for i in 0..<images.count { out.append((try images.png(i), images.captions[i])) }
    }
    return out
}

/// Crops given as paths: a string in a crop list means `{"path": string}`.
func expandCrops(_ v: JSON?) -> JSON? {
    guard case .array(let items)? = v else { return v }
    return .array(items.map { item in item.stringValue.map { ["path": .string($0)] } ?? item })
}

/// A manifest given as its path: a string means `{"path": string}`.
func expandManifest(_ v: JSON?) -> JSON? {
    guard let s = v?.stringValue else { return v }
    return ["path": .string(s)]
}

/// A Latent given as a seed (an integer) or a vector (an array of numbers).
func expandLatent(_ v: JSON?) -> JSON? {
    guard let v else { return nil }
    switch v {
    case .int: return ["seed": v]
    case .array: return ["vector": v]
    default: return v
    }
}

/// A TableRef given as a name: the worker's table of that name, else a file of that path.
func expandTable(_ v: JSON?, _ server: Server) -> JSON? {
    guard let s = v?.stringValue else { return v }
    return server.profiles.names.contains(s) ? ["table": .string(s)] : ["path": .string(s)]
}

/// Loads the checkpoint named by the `model` argument, if any, as the current model.
func loadModelArgument(_ call: ToolCall) throws -> JSON? {
    guard call.arguments.has("model") else { return nil }
    let path = try nonEmpty(call.arguments, "model")
    do {
        return try call.method("model/load", ["path": .string(path)], progress: false).result
    } catch var e as RPCError where e.data["field"] == "path" {
        e.data["field"] = "model"
        throw e
    } catch var e as CytoError {
        if e.field == nil || e.field == "path" { e.field = "model" }
        throw e
    }
}
