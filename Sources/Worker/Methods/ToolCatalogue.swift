import CytoCore
import CytoGAN
import Foundation
import Profiling

/// The tools `tools/list` offers, in this order (a workflow's order: model, training and jobs,
/// features, pictures, profiles, realism). Each runs one or two of the worker's methods; its
/// arguments are that method's params (PROTOCOL.md §8), plus shorthands an agent reaches for:
/// a crop as its path, a manifest or a table as its path or name, a latent as a seed or a vector,
/// and `model` (a checkpoint to load first).
let toolOrder = [
    "create_model", "load_model", "save_model", "model_info",
    "train_model", "job_status", "list_jobs", "cancel_job",
    "extract_features",
    "generate_cells", "interpolate_cells", "cell_algebra", "encode_cells",
    "aggregate_profiles", "normalize_profiles", "score_profiles", "list_tables", "export_table",
    "evaluate_realism",
]

let toolCatalogue: [String: Tool] = {
    let tools = [
        createModelTool, loadModelTool, saveModelTool, modelInfoTool,
        trainModelTool, jobStatusTool, listJobsTool, cancelJobTool,
        extractFeaturesTool,
        generateCellsTool, interpolateCellsTool, cellAlgebraTool, encodeCellsTool,
        aggregateProfilesTool, normalizeProfilesTool, scoreProfilesTool, listTablesTool, exportTableTool,
        evaluateRealismTool,
    ]
    let byName = Dictionary(uniqueKeysWithValues: tools.map { ($0.name, $0) })
    precondition(Set(byName.keys) == Set(toolOrder), "toolOrder and the tools disagree")
    return byName
}()

// MARK: Schema pieces

private func object(_ properties: [String: JSON], required: [String] = [], description: String? = nil) -> JSON {
    var o: [String: JSON] = ["type": "object", "properties": .object(properties), "additionalProperties": false]
    if !required.isEmpty { o["required"] = .array(required.map { .string($0) }) }
    if let description { o["description"] = .string(description) }
    return .object(o)
}

private func string(_ description: String) -> JSON { ["type": "string", "minLength": 1, "description": .string(description)] }

private func choice(_ values: [String], _ description: String, default d: String? = nil) -> JSON {
    var o: [String: JSON] = ["type": "string", "enum": .array(values.map { .string($0) }), "description": .string(description)]
    if let d { o["default"] = .string(d) }
    return .object(o)
}

private func integer(_ description: String, minimum: Int? = nil, maximum: Int? = nil, default d: Int? = nil) -> JSON {
    var o: [String: JSON] = ["type": "integer", "description": .string(description)]
    if let minimum { o["minimum"] = JSON(minimum) }
    if let maximum { o["maximum"] = JSON(maximum) }
    if let d { o["default"] = JSON(d) }
    return .object(o)
}

private func number(_ description: String, minimum: Double? = nil, default d: Double? = nil) -> JSON {
    var o: [String: JSON] = ["type": "number", "description": .string(description)]
    if let minimum { o["minimum"] = .double(minimum) }
    if let d { o["default"] = .double(d) }
    return .object(o)
}

private func boolean(_ description: String, default d: Bool) -> JSON {
    ["type": "boolean", "description": .string(description), "default": .bool(d)]
}

private func strings(_ description: String) -> JSON {
    ["type": "array", "items": ["type": "string"], "minItems": 1, "description": .string(description)]
}

private let cropSpec: JSON = object([
    "path": string("An image holding every channel (TIFF or PNG)."),
    "paths": strings("One single-channel image per channel, in the model's channel order."),
    "channels": ["type": "array", "items": ["type": "integer", "minimum": 0], "description": "Channels of `path` to use, in order."],
    "centre": ["type": "array", "items": ["type": "number"], "minItems": 2, "maxItems": 2, "description": "[x, y]: a window of the model's crop size around this point."],
    "box": ["type": "array", "items": ["type": "number"], "minItems": 4, "maxItems": 4, "description": "[x0, y0, x1, y1]: the object's bounding box, end exclusive."],
    "mask": string("A label image of the field: pixels of other objects are set to 0."),
    "label": ["type": "integer", "description": "The object's label in `mask`."],
    "metadata": ["type": "object", "description": "Metadata kept with the crop's features (strings, numbers, booleans)."],
    "id": ["type": ["string", "integer"], "description": "Echoed in this crop's errors."],
], description: "A cell crop: `path` or `paths`, then optionally a region (`centre` or `box`) and a `mask`.")

private let crops: JSON = [
    "type": "array", "minItems": 1,
    "items": ["anyOf": [["type": "string", "description": "The path of an image holding one crop."], cropSpec]],
    "description": "Cell crops: paths of crop images, or crop objects (a region of a field of view, a mask, metadata).",
]

private let manifest: JSON = [
    "anyOf": [
        ["type": "string", "description": "The path of a CSV with a `path` column and Metadata_* columns."],
        object([
            "path": string("The manifest CSV."),
            "pathColumn": string("The column of the crops' paths (default `path`)."),
            "pathColumns": strings("One column per channel, each a single-channel image."),
            "root": string("The folder relative paths start from (default: the CSV's folder)."),
            "centreColumns": ["type": "array", "items": ["type": "string"], "minItems": 2, "maxItems": 2, "description": "The X and Y columns of each object's centre."],
            "boxColumns": ["type": "array", "items": ["type": "string"], "minItems": 4, "maxItems": 4, "description": "The X0, Y0, X1, Y1 columns of each object's box."],
            "maskColumn": string("The column of a label image per row."),
            "labelColumn": string("The column of the object's label in the mask."),
        ], required: ["path"]),
    ],
    "description": "A crop manifest: one row per crop; its Metadata_* columns are kept with the features.",
]

private let latent: JSON = [
    "anyOf": [
        ["type": "integer", "minimum": 0, "description": "A seed: the first vector generate_cells draws with it."],
        ["type": "array", "items": ["type": "number"], "description": "A noise vector of the model's latent size."],
        object(["seed": ["type": "integer", "minimum": 0], "vector": ["type": "array", "items": ["type": "number"]],
                "seeds": ["type": "array", "items": ["type": "integer", "minimum": 0]],
                "vectors": ["type": "array", "items": ["type": "array", "items": ["type": "number"]]]],
               description: "One of seed, vector, or the mean of seeds or vectors."),
    ],
    "description": "A point of noise space.",
]

private let tableRef: JSON = [
    "anyOf": [
        ["type": "string", "description": "A table the worker holds (list_tables), else the path of a feature table file."],
        object(["table": string("A table the worker holds.")], required: ["table"]),
        object(["path": string("A feature table: CSV with Metadata_* columns, or .npy with its metadata CSV."),
                "metadataColumns": ["type": "array", "items": ["type": "string"]],
                "metadataPath": string("The metadata CSV of a .npy (default <stem>.metadata.csv).")], required: ["path"]),
    ],
    "description": "A profile table: a name of one the worker holds, or a file.",
]

private let imageOutput: JSON = object([
    "dir": string("Folder to write the images to (created if missing)."),
    "format": choice(["png", "tiff", "both"], "File format.", default: "png"),
    "prefix": ["type": "string", "description": "File name prefix (default `sample-`)."],
    "montage": boolean("Also write <prefix>montage.png.", default: false),
    "units": choice(["model", "crops"], "TIFF values: the model's range, or the training crops' intensities.", default: "model"),
], required: ["dir"], description: "Also write the images as files.")

private let picturesArgument = choice(["montage", "cells", "both", "none"],
                                      "Pictures to return: one montage, one PNG per cell (at most 100), both, or none.",
                                      default: "montage")
private let modelArgument = string("A checkpoint (.safetensors) to load as the current model first (as load_model).")

private let readOnly: JSON = ["readOnlyHint": true, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false]
private let computes: JSON = ["readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false]
private let changes: JSON = ["readOnlyHint": false, "destructiveHint": true, "idempotentHint": false, "openWorldHint": false]

private func always(_ e: Execution) -> @Sendable (Params) -> Execution { { _ in e } }

/// A tool that runs one method with its arguments as they are.
private func passThrough(_ name: String, _ method: String, title: String, description: String, schema: JSON,
                         annotations: JSON, execution: Execution) -> Tool {
    Tool(name: name, title: title, description: description, inputSchema: schema, annotations: annotations,
         placement: always(execution)) { call in
        ToolOutput(try call.method(method, call.params()).result)
    }
}

// MARK: Model

private let createModelTool = passThrough(
    "create_model", "model/create", title: "Create a model",
    description: "Create a fresh GAN from a preset; it becomes the current model. paper-96 is CytoGAN's 96x96 network, small-64 a 64x64 one for CPUs, cpu-64 the recipe whose features carry the most biology on a CPU budget. Returns the model's description (config, parameter counts, feature size).",
    schema: object([
        "preset": choice(GANConfig.presetNames, "The architecture and training recipe.", default: "paper-96"),
        "loss": choice(GANLoss.allCases.map(\.rawValue), "The GAN loss (sets the preset's learning rates for it).", default: "lsgan"),
        "seed": integer("Seed of the weights, the noise and the data order.", minimum: 0, default: 1),
        "config": ["type": "object", "description": "Overrides of the preset's configuration (PROTOCOL.md ModelConfig), e.g. {\"architecture\": {\"size\": 32}}."],
    ]),
    annotations: changes, execution: .serial)

private let loadModelTool = passThrough(
    "load_model", "model/load", title: "Load a model",
    description: "Load a checkpoint (.safetensors written by save_model, training or `cytogan train`); it becomes the current model.",
    schema: object(["path": string("The checkpoint file.")], required: ["path"]),
    annotations: changes, execution: .serial)

private let saveModelTool = passThrough(
    "save_model", "model/save", title: "Save the model",
    description: "Save the current model (weights, optimizer state, random streams: training resumes exactly from it) as a .safetensors checkpoint.",
    schema: object(["path": string("The checkpoint file to write (folders are created).")], required: ["path"]),
    annotations: ["readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false],
    execution: .serial)

private let modelInfoTool = passThrough(
    "model_info", "model/info", title: "Describe the model",
    description: "The current model: preset, configuration, parameter counts, feature size and layer, training step, checkpoint, and the training job holding it.",
    schema: object([:]), annotations: readOnly, execution: .inline)

// MARK: Training and jobs

private let trainModelTool = Tool(
    name: "train_model", title: "Train the model",
    description: "Train the current model as a background job and return the job at once; follow it with job_status (waitSeconds waits, with progress) and stop it with cancel_job. `steps` is the step to reach, counting steps already done. Checkpoints go to checkpoint.directory; resume: true continues from the newest one there.",
    inputSchema: object([
        "data": object([
            "manifest": manifest,
            "crops": crops,
            "directory": string("Every .tif/.tiff/.png below this folder is a crop."),
        ], description: "The training crops: exactly one of manifest, crops or directory."),
        "channels": ["type": "array", "items": ["type": "integer", "minimum": 0], "description": "Channels of each crop file to use, in order (crops and directory)."],
        "steps": integer("The model step to reach.", minimum: 1, maximum: 100_000_000),
        "minutes": number("A wall-clock budget in minutes.", minimum: 0),
        "checkpoint": object([
            "directory": string("Folder of numbered checkpoints."),
            "every": integer("Write one every this many steps (and at the end).", minimum: 1),
            "keep": integer("Newest checkpoints kept.", minimum: 1, default: 3),
        ], required: ["directory"], description: "Where and how often to write checkpoints."),
        "resume": boolean("Continue from the newest checkpoint of checkpoint.directory.", default: false),
    ], required: ["data", "steps"]),
    annotations: changes, placement: always(.serial)) { call in
    let params = call.params { p in
        if case .object(var data)? = p["data"] {
            if let m = data["manifest"] { data["manifest"] = expandManifest(m) }
            if let c = data["crops"] { data["crops"] = expandCrops(c) }
            p["data"] = .object(data)
        }
    }
    // The job outlives the call: its progress goes to jobs, not to this call's token.
    return ToolOutput(try call.method("train/start", params, progress: false).result)
}

private let jobStatusTool = Tool(
    name: "job_status", title: "Job status",
    description: "A background job's state, progress, metrics (training: step, losses), result or error. With waitSeconds, waits until the job ends or that time passes, reporting the job's progress meanwhile.",
    inputSchema: object([
        "jobId": string("The job's id (job-1, job-2, ...)."),
        "waitSeconds": number("Wait up to this long for the job to end.", minimum: 0, default: 0),
    ], required: ["jobId"]),
    annotations: readOnly,
    placement: { args in (args.values["waitSeconds"]?.doubleValue ?? 0) > 0 ? .concurrent : .inline }) { call in
    let id = try call.arguments.string("jobId")
    let wait = try call.arguments.number("waitSeconds", default: 0, in: 0...86_400)
    if wait <= 0 { return ToolOutput(try call.method("jobs/status", ["jobId": .string(id)]).result) }
    // Waits a second at a time, passing the job's progress on to this call's progress token.
    let deadline = Date().addingTimeInterval(wait)
    while true {
        let slice = min(1, max(0, deadline.timeIntervalSinceNow))
        let status = try call.method("jobs/wait", ["jobId": .string(id), "timeoutSeconds": .double(slice)]).result
        let state = status["state"]?.stringValue.flatMap(JobState.init) ?? .failed
        if let p = status["progress"]?.doubleValue {
            call.request.progress(p, total: status["total"]?.doubleValue, message: status["message"]?.stringValue)
        }
        if state.isFinal || Date() >= deadline { return ToolOutput(status) }
    }
}

private let listJobsTool = passThrough(
    "list_jobs", "jobs/list", title: "List jobs",
    description: "Every background job of this worker, oldest first, optionally only those in one state.",
    schema: object(["state": choice(JobState.allCases.map(\.rawValue), "Only jobs in this state.")]),
    annotations: readOnly, execution: .inline)

private let cancelJobTool = passThrough(
    "cancel_job", "jobs/cancel", title: "Cancel a job",
    description: "Stop a background job at its next check and return its final status (a cancelled training keeps the checkpoints it wrote).",
    schema: object(["jobId": string("The job's id."), "reason": string("Why (recorded in the job's error).")], required: ["jobId"]),
    annotations: changes, execution: .concurrent)

// MARK: Features

private let extractFeaturesTool = Tool(
    name: "extract_features", title: "Extract features",
    description: "Feature vectors of cell crops from the current model's discriminator (the numbers `cytogan extract` writes), in the crops' order. Give crop image paths in `paths`, crop objects (or paths) in `crops`, or a manifest CSV. keep: true also collects the rows, with their Metadata_* values, in a table for aggregate_profiles.",
    inputSchema: object([
        "paths": ["type": "array", "items": ["type": "string", "minLength": 1], "minItems": 1,
                  "description": "Paths of crop images (each holding every channel): the same as `crops` given as strings."],
        "crops": crops,
        "manifest": manifest,
        "model": modelArgument,
        "channels": ["type": "array", "items": ["type": "integer", "minimum": 0], "description": "Channels of each crop file to use, in order."],
        "metadata": ["type": "object", "description": "Metadata for every crop (a crop's own value wins)."],
        "keep": boolean("Append the rows to the worker's table `table`.", default: false),
        "table": string("The table kept rows go to (default `cells`)."),
        "returnFeatures": boolean("Return the feature vectors.", default: true),
        "onError": choice(["fail", "skip"], "A crop that cannot be read: fail the call, or skip it (listed in errors).", default: "fail"),
        "batchSize": integer("Crops per batch (256, as `cytogan extract`, gives its numbers bit for bit).", minimum: 1, maximum: 1024, default: 256),
        "background": boolean("Run as a job (needs keep); follow it with job_status.", default: false),
    ]),
    annotations: computes,
    placement: always(.serial)) { call in
    let background = try call.arguments.bool("background", default: false)
    let paths = try call.arguments.optionalStrings("paths", count: 1...1_000_000)
    if paths != nil, call.arguments.has("crops") || call.arguments.has("manifest") {
        throw call.arguments.error("paths", "is one way to give the crops: give paths, crops or manifest, not two")
    }
    let params = call.params(dropping: ["model", "paths"]) { p in
        if let paths { p["crops"] = .array(paths.map { ["path": .string($0)] }) }
        if let c = p["crops"] { p["crops"] = expandCrops(c) }
        if let m = p["manifest"] { p["manifest"] = expandManifest(m) }
        // The command line's batch: same batches, same sums, the same numbers to the last bit.
        if p["batchSize"] == nil { p["batchSize"] = 256 }
    }
    _ = try loadModelArgument(call)
    do {
        return ToolOutput(try call.method("features/extract", params, progress: !background).result)
    } catch var e as RPCError where paths != nil {
        // The method names crops[i]; this call gave them as paths[i].
        if let f = e.data["field"]?.stringValue, f.hasPrefix("crops") { e.data["field"] = .string("paths" + f.dropFirst(5)) }
        throw e
    }
}

// MARK: Pictures

private let generateCellsTool = Tool(
    name: "generate_cells", title: "Generate cells",
    description: "Draw cells from the current model's generator: `count` noise vectors from `seed`, or given latents. Returns the pictures (PNG: DNA red, tubulin green, actin blue) and the noise vectors.",
    inputSchema: object([
        "count": integer("Cells to draw.", minimum: 1, maximum: 10_000),
        "seed": integer("Seed of the drawn vectors.", minimum: 0, default: 0),
        "latents": ["type": "array", "items": latent, "minItems": 1, "description": "Noise vectors to draw instead (seeds, vectors, or means)."],
        "model": modelArgument,
        "pictures": picturesArgument,
        "returnLatents": boolean("Return the noise vectors.", default: true),
        "output": imageOutput,
    ]),
    annotations: computes, placement: always(.serial)) { call in
    let which = try pictureChoice(call.arguments, count: call.arguments.values["count"]?.intValue ?? call.arguments.values["latents"]?.arrayValue?.count)
    let params = call.params(dropping: ["model", "pictures"]) { p in
        if case .array(let list)? = p["latents"] { p["latents"] = .array(list.map { expandLatent($0)! }) }
    }
    _ = try loadModelArgument(call)
    let (result, images) = try call.method("samples/generate", params, keepImages: true)
    let n = images?.count ?? 0
    return ToolOutput(result, pictures: try pictures(which, of: images, montageCaption: "montage of \(n) generated cell\(n == 1 ? "" : "s"), rows of 10"))
}

private let interpolateCellsTool = Tool(
    name: "interpolate_cells", title: "Interpolate cells",
    description: "Cells along a straight line (linear) or a great circle (slerp) between two points of noise space, both ends included: how one morphology turns into another. Returns the pictures (one montage row) and the noise vectors.",
    inputSchema: object([
        "from": latent, "to": latent,
        "steps": integer("Points, both ends included.", minimum: 2, maximum: 1000, default: 8),
        "mode": choice(["linear", "slerp"], "The path.", default: "linear"),
        "model": modelArgument,
        "pictures": picturesArgument,
        "returnLatents": boolean("Return the noise vectors.", default: true),
        "output": imageOutput,
    ], required: ["from", "to"]),
    annotations: computes, placement: always(.serial)) { call in
    try latentPictures(call, method: "samples/interpolate", latentKeys: ["from", "to"],
                       count: call.arguments.values["steps"]?.intValue ?? 8) { "interpolation of \($0) cells, left to right" }
}

private let cellAlgebraTool = Tool(
    name: "cell_algebra", title: "Cell algebra",
    description: "Noise vector algebra: the cell of a - b + c (e.g. a treated cell minus a control plus another control), with the cells of a, b and c. Returns the four pictures in one montage row and the vectors.",
    inputSchema: object([
        "a": latent, "b": latent, "c": latent,
        "model": modelArgument,
        "pictures": picturesArgument,
        "output": imageOutput,
    ], required: ["a", "b", "c"]),
    annotations: computes, placement: always(.serial)) { call in
    try latentPictures(call, method: "samples/algebra", latentKeys: ["a", "b", "c"], count: 4) { _ in "a, b, c and a - b + c, left to right" }
}

/// The picture tools over given noise vectors: expands the latent arguments (`latentKeys`),
/// loads the model argument, runs `method` and returns its result with the chosen pictures.
private func latentPictures(_ call: ToolCall, method: String, latentKeys: [String], count: Int,
                            caption: (Int) -> String) throws -> ToolOutput {
    let which = try pictureChoice(call.arguments, count: count)
    let params = call.params(dropping: ["model", "pictures"]) { p in
        for k in latentKeys where p[k] != nil { p[k] = expandLatent(p[k]) }
    }
    _ = try loadModelArgument(call)
    let (result, images) = try call.method(method, params, keepImages: true)
    return ToolOutput(result, pictures: try pictures(which, of: images, montageCaption: caption(images?.count ?? 0)))
}

private let encodeCellsTool = Tool(
    name: "encode_cells", title: "Encode real cells",
    description: "Find, for each real crop, the noise vector whose generated cell is closest to it (the networks frozen). Returns the vectors (usable as latents of the other picture tools), the errors, and the reconstructions as pictures.",
    inputSchema: object([
        "crops": crops,
        "model": modelArgument,
        "channels": ["type": "array", "items": ["type": "integer", "minimum": 0], "description": "Channels of each crop file to use, in order."],
        "steps": integer("Optimizer iterations.", minimum: 0, maximum: 100_000, default: 300),
        "learningRate": number("Adam's learning rate on z.", minimum: 0, default: 0.05),
        "restarts": integer("Random starts; the best is kept.", minimum: 1, maximum: 64, default: 2),
        "featureWeight": number("Weight of the discriminator-feature error.", minimum: 0, default: 1),
        "priorWeight": number("Weight of the prior on |z|.", minimum: 0, default: 0.1),
        "seed": integer("Seed of the starting points.", minimum: 0, default: 1),
        "pictures": picturesArgument,
        "output": imageOutput,
    ], required: ["crops"]),
    annotations: computes, placement: always(.serial)) { call in
    let which = try pictureChoice(call.arguments, count: call.arguments.values["crops"]?.arrayValue?.count)
    let params = call.params(dropping: ["model", "pictures"]) { p in
        if let c = p["crops"] { p["crops"] = expandCrops(c) }
    }
    _ = try loadModelArgument(call)
    let (result, images) = try call.method("cells/encode", params, keepImages: true)
    return ToolOutput(result, pictures: try pictures(which, of: images, montageCaption: "reconstructions, rows of 10 in the crops' order"))
}

// MARK: Profiles

/// A tool over a profile method whose `source` may be a table name or a file path.
private func profileTool(_ name: String, _ method: String, title: String, description: String, schema: JSON,
                         annotations: JSON, execution: Execution = .serial) -> Tool {
    Tool(name: name, title: title, description: description, inputSchema: schema, annotations: annotations,
         placement: always(execution)) { call in
        let params = call.params { p in
            if let s = p["source"] { p["source"] = expandTable(s, call.server) }
        }
        return ToolOutput(try call.method(method, params).result)
    }
}

private let aggregateProfilesTool = profileTool(
    "aggregate_profiles", "profiles/aggregate", title: "Aggregate profiles",
    description: "One profile per group of rows (e.g. per well or per treatment), the mean or median of its cells, into a table the worker holds.",
    schema: object([
        "source": tableRef,
        "by": strings("Metadata columns that define a group (default Metadata_Compound, Metadata_Concentration)."),
        "method": choice(["mean", "median"], "How a group's rows are combined.", default: "mean"),
        "join": strings("Metadata columns whose distinct values in a group are kept, joined with ';' (e.g. the batch column)."),
        "into": string("The table to write (default `profiles`)."),
    ], required: ["source"]),
    annotations: computes)

private let normalizeProfilesTool = profileTool(
    "normalize_profiles", "profiles/normalize", title: "Normalize profiles",
    description: "Normalize features to control rows (e.g. DMSO), globally or within each plate: standardize, robustize, tvn, spherize or coral. Into a table the worker holds.",
    schema: object([
        "source": tableRef,
        "controls": object(["column": string("The column naming controls, e.g. Metadata_Compound."),
                            "values": ["type": "array", "items": ["type": ["string", "number"]], "minItems": 1, "description": "Its values for controls, e.g. [\"DMSO\"]."]],
                           required: ["column", "values"], description: "Which rows are controls."),
        "method": choice(["standardize", "robustize", "tvn", "spherize", "coral"], "The normalization.", default: "standardize"),
        "by": strings("Normalize within each group of these columns (e.g. Metadata_Plate), each to its own controls."),
        "into": string("The table to write (default `normalized`)."),
        "epsilon": number("Regularizer of tvn and spherize.", minimum: 0),
        "lambda": number("Regularizer of coral.", minimum: 0),
        "spherizeMethod": choice(["ZCA", "PCA", "ZCA-cor", "PCA-cor"], "spherize's whitening.", default: "ZCA"),
    ], required: ["source", "controls"]),
    annotations: computes)

private let scoreProfilesTool = Tool(
    name: "score_profiles", title: "Score profiles",
    description: "Mechanism-of-action scores of treatment profiles by leave-one-compound-out nearest neighbours: NSC, NSCB (neighbours also from another batch), per-compound accuracy and mAP, and each treatment's nearest neighbours among other compounds (the figures of `cytogan profile score`).",
    inputSchema: object([
        "source": tableRef,
        "moa": string("The MOA column (default Metadata_MOA); rows with an empty MOA are left out."),
        "compound": string("The compound column (default Metadata_Compound)."),
        "concentration": string("The concentration column (default Metadata_Concentration)."),
        "batch": string("The batch column for NSCB (default Metadata_Plate when the table has it)."),
        "exclude": object(["column": string("A metadata column."),
                           "values": ["type": "array", "items": ["type": ["string", "number"]], "minItems": 1]],
                          required: ["column", "values"], description: "Rows to leave out, e.g. DMSO."),
        "metrics": ["type": "array", "items": ["enum": ["nsc", "nscb", "perCompound", "map"]], "minItems": 1, "description": "Which scores (default all)."],
        "confusion": boolean("Also the NSC confusion matrix.", default: false),
        "distance": choice(["cosine", "correlation", "euclidean"], "Distance between profiles.", default: "cosine"),
        "neighbors": integer("Nearest other-compound treatments listed per treatment.", minimum: 0, maximum: 1000, default: 3),
    ], required: ["source"]),
    annotations: readOnly, placement: always(.serial)) { call in
    let params = call.params { p in
        if let s = p["source"] { p["source"] = expandTable(s, call.server) }
        if p["neighbors"] == nil { p["neighbors"] = 3 }
    }
    return ToolOutput(try call.method("profiles/score", params).result)
}

private let listTablesTool = passThrough(
    "list_tables", "profiles/list", title: "List tables",
    description: "The profile tables the worker holds: name, rows, features, metadata columns.",
    schema: object([:]), annotations: readOnly, execution: .inline)

private let exportTableTool = profileTool(
    "export_table", "profiles/export", title: "Export a table",
    description: "Write a profile table to a CSV (metadata then features, as pycytominer reads it) or a float32 .npy with its metadata CSV.",
    schema: object([
        "source": tableRef,
        "path": string("The file to write (.csv or .npy)."),
        "format": choice(["csv", "npy"], "Default: from the path's extension."),
    ], required: ["source", "path"]),
    annotations: ["readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false])

// MARK: Realism

private let evaluateRealismTool = Tool(
    name: "evaluate_realism", title: "Evaluate realism",
    description: "How real a model's generated cells look, against real crops of a manifest: a Frechet distance over 41 image measurements (ratio 1: as close as two halves of the real crops), a small CNN's accuracy telling real from generated (0.5: indistinguishable), and per-channel sharpness and background. The numbers of `cytogan evaluate realism`. With the defaults it takes about two minutes of CPU.",
    inputSchema: object([
        "manifest": manifest,
        "model": string("A checkpoint to evaluate instead of the current model (which it does not replace)."),
        "generated": manifest,
        "count": integer("Cells per set.", minimum: 2, maximum: 100_000, default: 1000),
        "seed": integer("Seed of the shuffles, the generated cells and the classifiers.", minimum: 0, default: 1),
        "folds": integer("Cross-validation folds.", minimum: 2, maximum: 1000, default: 4),
        "epochs": integer("Classifier training epochs.", minimum: 1, maximum: 10_000, default: 5),
        "background": boolean("Run as a job; follow it with job_status.", default: false),
    ], required: ["manifest"]),
    annotations: readOnly, placement: always(.serial)) { call in
    let background = try call.arguments.bool("background", default: false)
    let params = call.params { p in
        for k in ["manifest", "generated"] where p[k] != nil { p[k] = expandManifest(p[k]) }
    }
    return ToolOutput(try call.method("realism/evaluate", params, progress: !background).result)
}
