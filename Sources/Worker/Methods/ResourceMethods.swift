import CytoCore
import Foundation

/// MCP's resources and prompts (PROTOCOL.md §8.10): the protocol document and the worker's state
/// (current model, jobs, tables) to read, and prompts that lay out a whole analysis with the tools.
extension Server {
    func registerResourceMethods() {
        register("resources/list", params: ["cursor"],
                 summary: "MCP: the resources to read: the protocol document, the current model, the jobs, the tables.",
                 execution: .inline) { req in
            try refuseCursor(req.params)
            return .object(["resources": .array(req.server.resources.map { r in
                ["uri": .string(r.uri), "name": .string(r.name), "title": .string(r.title), "description": .string(r.description),
                 "mimeType": .string(r.mimeType)]
            })])
        }

        register("resources/read", params: ["uri"], summary: "MCP: read a resource by its URI.",
                 execution: .inline) { req in
            let uri = try req.params.string("uri")
            guard let r = req.server.resources.first(where: { $0.uri == uri }) else {
                var e = req.params.error("uri", "\(quoted(uri)) is not a resource of this worker (resources/list lists them)")
                e.data["uri"] = .string(uri)
                throw e
            }
            return .object(["contents": [["uri": .string(r.uri), "mimeType": .string(r.mimeType), "text": .string(try r.read(req))]]])
        }

        register("prompts/list", params: ["cursor"], summary: "MCP: prompts that lay out an analysis with the tools.",
                 execution: .inline) { req in
            try refuseCursor(req.params)
            return .object(["prompts": .array(prompts.map { p in
                ["name": .string(p.name), "title": .string(p.title), "description": .string(p.description),
                 "arguments": .array(p.arguments.map { a in
                     ["name": .string(a.name), "description": .string(a.description), "required": .bool(a.required)]
                 })]
            })])
        }

        register("prompts/get", params: ["name", "arguments"], summary: "MCP: a prompt, filled in with its arguments.",
                 execution: .inline) { req in
            let p = req.params
            let name = try p.string("name")
            let args = try p.optionalObject("arguments") ?? Params([:], path: "arguments")
            guard let prompt = prompts.first(where: { $0.name == name }) else {
                throw p.error("name", "\(quoted(name)) is not a prompt of this worker (prompts/list lists them)")
            }
            try args.rejectUnknown(allowed: Set(prompt.arguments.map(\.name)))
            var values: [String: String] = [:]
            for a in prompt.arguments {
                if a.required || args.has(a.name) { values[a.name] = try nonEmpty(args, a.name) }
            }
            return .object(["description": .string(prompt.description),
                            "messages": [["role": "user", "content": ["type": "text", "text": .string(prompt.text(values))]]]])
        }
    }

    /// The resources this worker offers; the protocol document only where it was found.
    fileprivate var resources: [Resource] {
        var list: [Resource] = []
        if let doc = options.protocolDocument ?? Server.locatedProtocolDocument {
            list.append(Resource(uri: "cytogan://protocol", name: "PROTOCOL.md", title: "The cytogan worker protocol",
                                 description: "Every method, parameter, result and error of this worker, and how the tools map onto them.",
                                 mimeType: "text/markdown") { _ in
                do { return try String(contentsOfFile: doc, encoding: .utf8) } catch {
                    throw CytoError(.io, "cannot read the protocol document", path: doc)
                }
            })
        }
        list.append(Resource(uri: "cytogan://model", name: "model", title: "The current model",
                             description: "The current model's description (as model_info), or null when there is none.",
                             mimeType: "application/json") { req in
            let info = req.server.models.hasModel ? try req.server.models.info() : .null
            return JSON.object(["model": info]).serialized
        })
        list.append(Resource(uri: "cytogan://jobs", name: "jobs", title: "Background jobs",
                             description: "Every background job, oldest first (as list_jobs).", mimeType: "application/json") { req in
            JSON.object(["jobs": .array(req.server.jobs.list())]).serialized
        })
        list.append(Resource(uri: "cytogan://tables", name: "tables", title: "Profile tables",
                             description: "The profile tables the worker holds (as list_tables).", mimeType: "application/json") { req in
            JSON.object(["tables": .array(req.server.profiles.all.map { .object(tableInfo($0.name, $0.table)) })]).serialized
        })
        return list
    }

    /// PROTOCOL.md beside the running executable: `share/cytogan/PROTOCOL.md` of an installed tree
    /// (bin/..), or `protocol/PROTOCOL.md` of a source checkout (.build/<triple>/release/../../..).
    static let locatedProtocolDocument: String? = {
        guard let exe = Bundle.main.executablePath else { return nil }
        let fm = FileManager.default
        for start in [exe, URL(fileURLWithPath: exe).resolvingSymlinksInPath().path] {
            var dir = URL(fileURLWithPath: start).deletingLastPathComponent()
            for _ in 0..<5 {
                for candidate in ["share/cytogan/PROTOCOL.md", "protocol/PROTOCOL.md"] {
                    let path = dir.appendingPathComponent(candidate).path
                    if fm.isReadableFile(atPath: path) { return path }
                }
                dir = dir.deletingLastPathComponent()
            }
        }
        return nil
    }()
}

private func refuseCursor(_ p: Params) throws {
    guard p.has("cursor") else { return }
    _ = try p.string("cursor")
    throw p.error("cursor", "continues no listing: everything comes in the first page")
}

private struct Resource {
    var uri: String
    var name: String
    var title: String
    var description: String
    var mimeType: String
    var read: (Request) throws -> String
}

private struct Prompt: Sendable {
    struct Argument: Sendable {
        var name: String
        var description: String
        var required: Bool
    }
    var name: String
    var title: String
    var description: String
    var arguments: [Argument]
    var text: @Sendable ([String: String]) -> String
}

private let prompts: [Prompt] = [
    Prompt(name: "profile_screen", title: "Profile a screen",
           description: "From a crop manifest to mechanism-of-action scores: model, training, features, profiles, scores.",
           arguments: [
               .init(name: "manifest", description: "Crop manifest CSV: a path column and Metadata_Plate, Metadata_Well, Metadata_Compound, Metadata_Concentration, Metadata_MOA.", required: true),
               .init(name: "model", description: "A trained checkpoint to use instead of training one.", required: false),
               .init(name: "steps", description: "Training steps when no model is given (default 2000).", required: false),
           ]) { a in
        let manifest = a["manifest"]!
        let modelStep = a["model"].map { "1. Load the model: load_model with path \($0)." }
            ?? """
            1. Create a model with create_model (preset cpu-64), then train it with train_model on \
            data.manifest \(manifest) for \(a["steps"] ?? "2000") steps with a checkpoint directory; \
            follow the job with job_status (waitSeconds 60) until it is done, and report its losses.
            """
        return """
            Profile the cell screen whose crops are listed in \(manifest) with cytogan's tools.
            \(modelStep)
            2. Extract features of every crop: extract_features with manifest \(manifest), keep true, \
            table cells, returnFeatures false.
            3. Aggregate the cells into well profiles: aggregate_profiles of source cells by \
            Metadata_Plate, Metadata_Well, Metadata_Compound, Metadata_Concentration, joining \
            Metadata_Batch if the table has it, into wells.
            4. Normalize the wells to the DMSO controls of each plate: normalize_profiles of source \
            wells, controls Metadata_Compound = DMSO, by Metadata_Plate, into normalized.
            5. Score: score_profiles of source normalized, excluding Metadata_Compound DMSO, with \
            batch Metadata_Batch when present.
            Report NSC, NSCB and mAP, and for a few treatments their nearest neighbours: which \
            mechanisms are confused with which?
            """
    },
    Prompt(name: "explore_generator", title: "Explore a generator",
           description: "Look at a model's generated cells: samples, an interpolation, and how real they look.",
           arguments: [
               .init(name: "model", description: "The checkpoint (.safetensors).", required: true),
               .init(name: "manifest", description: "Real crops to compare with (a manifest CSV).", required: false),
           ]) { a in
        let model = a["model"]!
        let realism = a["manifest"].map {
            "\n3. Measure realism: evaluate_realism with manifest \($0) and count 200; explain the Frechet ratio and the classifier accuracy."
        } ?? ""
        return """
            Explore the cells the GAN in \(model) generates, with cytogan's tools.
            1. generate_cells with model \(model), count 20, seed 1: describe the morphologies you see \
            (nuclei in red, tubulin in green, actin in blue).
            2. interpolate_cells from seed 1 to seed 2 with 8 steps, mode slerp: describe how one cell \
            turns into the other.\(realism)
            """
    },
]
