import CellImage
import CytoCore
import Foundation

/// The crops a request names (PROTOCOL.md §7 "CropSpec"): what CellImage loads, plus the
/// metadata kept with each crop's features and the client's id for it.
struct RequestedCrops {
    var specs: [CropSpec]
    /// Metadata column names, in order; `metadata[i]` holds crop i's values ("" where it has none).
    var metadataColumns: [String]
    var metadata: [[String]]
    /// The client's id of each crop (null when it gave none), echoed in errors.
    var ids: [JSON]

    var count: Int { specs.count }
}

/// Members a crop object may have: CellImage's CropSpec JSON form, plus `metadata` and `id`.
private let cropKeys: Set<String> = ["path", "channels", "paths", "centre", "box", "mask", "label", "metadata", "id"]

/// A metadata value as text, the way a CSV cell would hold it.
func metadataText(_ v: JSON) -> String? {
    switch v {
    case .string(let s): return s
    case .bool(let b): return b ? "true" : "false"
    case .int, .double, .float: return v.serialized
    default: return nil
    }
}

/// Decodes a `metadata` object of strings, numbers and booleans (keys in code point order).
func decodeMetadata(_ p: Params, _ key: String) throws -> [(String, String)] {
    guard let m = try p.optionalObject(key) else { return [] }
    return try m.values.keys.sorted(by: codePointOrder).map { k in
        guard let text = metadataText(m.values[k]!) else {
            throw m.error(k, "must be a string, a number or a boolean")
        }
        return (k, text)
    }
}

/// Decodes the crop list `p[key]`: every crop checked before any work, errors naming
/// `crops[i].field` with `index` i. `channels` (the method's) picks the channels of every
/// single-file crop that does not pick its own. `common` metadata goes on every crop (a crop's
/// own value wins).
func decodeCrops(_ p: Params, _ key: String, count range: ClosedRange<Int>, channels: [Int]?,
                 common: [(String, String)] = []) throws -> RequestedCrops {
    let items = try p.objects(key, count: range)
    var specs: [CropSpec] = []
    var ids: [JSON] = []
    var own: [[(String, String)]] = []
    specs.reserveCapacity(items.count)
    for (i, c) in items.enumerated() {
        try c.rejectUnknown(allowed: cropKeys)
        if c.has("channels") && !c.has("path") { throw c.error("channels", "picks channels of a 'path' crop; a 'paths' crop has one file per channel") }
        var o = c.values
        o["metadata"] = nil
        o["id"] = nil
        var spec: CropSpec
        do { spec = try CropSpec(json: .object(o)) } catch let e as CytoError {
            let field = c.field(e.field ?? "path")
            throw RPCError.invalidParams(field: field, "\(field): \(e.message)", index: i)
        }
        if let channels, case .file(let path, nil) = spec.source { spec.source = .file(path, channels: channels) }
        specs.append(spec)
        if let id = c.values["id"] {
            guard RequestID(json: id) != nil else { throw c.error("id", "must be a string or an integer") }
            ids.append(id)
        } else {
            ids.append(.null)
        }
        own.append(try decodeMetadata(c, "metadata"))
    }
    // Columns: the common ones, then the crops' own in order of first appearance.
    var columns = common.map(\.0)
    var index = Dictionary(uniqueKeysWithValues: columns.enumerated().map { ($1, $0) })
    for kv in own {
        for (k, _) in kv where index[k] == nil {
            index[k] = columns.count
            columns.append(k)
        }
    }
    let base = common.map(\.1) + [String](repeating: "", count: columns.count - common.count)
    let rows = own.map { kv in
        var row = base
        for (k, v) in kv { row[index[k]!] = v }
        return row
    }
    return RequestedCrops(specs: specs, metadataColumns: columns, metadata: rows, ids: ids)
}

/// A `manifest` parameter (`{"path", "pathColumn", "pathColumns", "root", "centreColumns",
/// "boxColumns", "maskColumn", "labelColumn", "keepColumns"}`), decoded; `read` reads the file.
struct ManifestRequest {
    var path: String
    var columns = CropManifest.Columns()
    var root: String?

    init(_ p: Params, _ key: String) throws {
        let m = try p.object(key)
        try m.rejectUnknown(allowed: ["path", "pathColumn", "pathColumns", "root", "centreColumns", "boxColumns", "maskColumn", "labelColumn",
                                      "keepColumns"])
        path = try nonEmpty(m, "path")
        if m.has("pathColumn") && m.has("pathColumns") { throw m.error("pathColumns", "give pathColumn or pathColumns, not both") }
        columns.path = try optionalNonEmpty(m, "pathColumn") ?? "path"
        // As in `train` and the CLI: one column is a multi-channel file's path, several one file per channel.
        if let names = try m.optionalStrings("pathColumns", count: 1...64) { columns.setPathColumns(names) }
        if let c = try m.optionalStrings("centreColumns", count: 2...2) { columns.centreX = c[0]; columns.centreY = c[1] }
        columns.box = try m.optionalStrings("boxColumns", count: 4...4)
        if columns.box != nil && columns.centreX != nil { throw m.error("boxColumns", "give centreColumns or boxColumns, not both") }
        columns.mask = try optionalNonEmpty(m, "maskColumn")
        columns.label = try optionalNonEmpty(m, "labelColumn")
        if columns.label != nil && columns.mask == nil { throw m.error("labelColumn", "needs maskColumn") }
        root = try optionalNonEmpty(m, "root")
        if let keep = try m.optionalStrings("keepColumns", count: 0...4096) {
            if let i = keep.firstIndex(where: { $0.isEmpty || $0 == "*" }) { throw m.error("keepColumns", "[\(i)] must name a column or a prefix*") }
            columns.carried = keep
        }
    }

    /// Reads the manifest: one crop per row, its `Metadata_*` and key columns (ImageNumber,
    /// ObjectNumber, Location_*, or `keepColumns`) as the crop's metadata, then
    /// `common` metadata for columns it lacks. Errors name the file, line and column.
    func read(common: [(String, String)] = []) throws -> RequestedCrops {
        let manifest = try CropManifest(path: path, columns: columns, root: root)
        var names = manifest.metadataNames
        var rows = manifest.metadata
        for (k, v) in common where !names.contains(k) {
            names.append(k)
            for r in rows.indices { rows[r].append(v) }
        }
        return RequestedCrops(specs: manifest.specs, metadataColumns: names, metadata: rows,
                              ids: [JSON](repeating: .null, count: manifest.specs.count))
    }
}
