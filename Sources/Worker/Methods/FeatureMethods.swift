import CellImage
import CytoCore
import CytoGAN

/// Features of cell crops (PROTOCOL.md §8.4): the discriminator's representation for each crop,
/// batched, streamed, kept in a profile table with the crops' metadata, or run as a job.
extension Server {
    func registerFeatureMethods() {
        register("features/extract",
                 params: ["crops", "manifest", "channels", "metadata", "keep", "table", "returnFeatures", "stream", "onError",
                          "batchSize", "background"],
                 summary: "Feature vectors of cell crops from the current model's discriminator; optionally kept in a profile table, streamed, or run as a job.") { req in
            let p = req.params
            let source = try p.exactlyOne(of: ["crops", "manifest"])
            let channels = try decodeChannels(p)
            let common = try decodeMetadata(p, "metadata")
            let keep = try p.bool("keep", default: false)
            let table = try optionalNonEmpty(p, "table") ?? "cells"
            let returnFeatures = try p.bool("returnFeatures", default: true)
            let stream = try p.bool("stream", default: false)
            let skip = try p.choice("onError", ["fail", "skip"], default: "fail") == "skip"
            let batchSize = try p.int("batchSize", default: 64, in: 1...1024)
            let background = try p.bool("background", default: false)
            if background && !keep { throw p.error("background", "needs keep: true (a job's features go into a table)") }
            if background && stream { throw p.error("stream", "cannot stream from a background job: its rows go into the table") }
            if !keep && !returnFeatures && !stream { throw p.error("returnFeatures", "is false and nothing is kept: ask for keep, stream or returnFeatures") }
            if channels != nil && source == "manifest" { throw p.error("channels", "applies to crops given in 'crops'") }
            let list = source == "crops" ? try decodeCrops(p, "crops", count: 1...1_000_000, channels: channels, common: common) : nil
            let manifest = source == "manifest" ? try ManifestRequest(p, "manifest") : nil
            _ = try req.server.models.config()   // -32015 before reading a long manifest
            let crops = try list ?? manifest!.read(common: common)
            var x = Extraction(crops: crops, keep: keep, table: table, returnFeatures: returnFeatures && !stream && !background,
                               skipErrors: skip, batchSize: batchSize)
            if background {
                let server = req.server, job = x
                return try req.server.jobs.start(kind: "extract", pausable: true, progressToken: req.progressToken) { ctx in
                    .done(try job.run(server: server, check: { try ctx.pausePoint() },
                                    progress: { ctx.progress(Double($0), total: Double($1), message: "crop \($0)/\($1)") }))
                }
            }
            if stream { x.partial = { req.partial(offset: $0, items: $1) } }
            return try x.run(server: req.server, check: { try req.checkCancelled() },
                             progress: { req.progress(Double($0), total: Double($1), message: "crop \($0)/\($1)") })
        }
    }
}

/// The method's `channels`: source channel indices picked (and ordered) from single-file crops.
func decodeChannels(_ p: Params) throws -> [Int]? {
    guard p.has("channels") else { return nil }
    let list = try p.ints("channels", count: 1...64)
    if let i = list.firstIndex(where: { $0 < 0 }) { throw p.error("channels", "[\(i)] must be at least 0, not \(list[i])") }
    return list
}

/// One extraction, decoded: crops in batches through the model, results in order.
struct Extraction {
    var crops: RequestedCrops
    var keep: Bool
    var table: String
    var returnFeatures: Bool
    var skipErrors: Bool
    var batchSize: Int
    /// Streams each batch's items (feature vectors, null for a skipped crop) from an offset.
    var partial: (@Sendable (Int, [JSON]) -> Void)? = nil

    /// Runs the batches. `check` runs before each batch and before keeping (throws to stop:
    /// cancellation); nothing is kept unless every batch ran. `progress(done, total)` after each.
    func run(server: Server, check: () throws -> Void, progress: (Int, Int) -> Void) throws -> JSON {
        let slot = server.models
        let (model, extractor, loader) = try slot.use { m in
            (m, try FeatureExtractor(model: m), CropLoader(preprocessing: m.config.preprocessing))
        }
        let d = extractor.count, n = crops.count
        var features: [JSON] = []
        var errors: [JSON] = []
        var keptMetadata: [[String]] = []
        var keptFeatures: [Double] = []
        var start = 0
        while start < n {
            try check()
            let end = min(start + batchSize, n)
            let specs = Array(crops.specs[start..<end])
            let rows = try slot.use(expected: model) { _ in try extractor.extract(specs: specs, loader: loader) }
            var items: [JSON] = []
            items.reserveCapacity(end - start)
            for i in 0..<(end - start) {
                let k = start + i
                if let e = rows.errors[i] {
                    var err = RPCError(e.at(index: k))
                    if crops.ids[k] != .null { err.data["id"] = crops.ids[k] }
                    if !skipErrors { throw err }
                    errors.append(["index": JSON(k), "code": JSON(err.code), "message": .string(err.message), "data": .object(err.data)])
                    items.append(.null)
                    continue
                }
                let row = rows.features[(i * d)..<((i + 1) * d)]
                if returnFeatures || partial != nil { items.append(.array(row.map { .float($0) })) }
                if keep {
                    keptMetadata.append(crops.metadata[k])
                    keptFeatures.append(contentsOf: row.lazy.map(Double.init))
                }
            }
            if let partial { partial(start, items) } else if returnFeatures { features.append(contentsOf: items) }
            progress(end, n)
            start = end
        }
        try check()
        var result: [String: JSON] = ["count": JSON(n), "dim": JSON(d), "names": .array(extractor.names.map { .string($0) })]
        if returnFeatures { result["features"] = .array(features) }
        if skipErrors { result["errors"] = .array(errors) }
        if keep {
            let total = try server.profiles.append(table, metadataColumns: crops.metadataColumns, metadata: keptMetadata,
                                                   featureNames: extractor.names, features: keptFeatures)
            result["kept"] = ["table": .string(table), "rows": JSON(keptMetadata.count), "tableRows": JSON(total)]
        }
        return .object(result)
    }
}
