import Foundation
import CytoCore

extension CropSpec {
    /// The JSON form used by the worker and in manifests' JSON cells:
    /// {"path": "crop.tif"} or {"path": "field.tif", "channels": [0, 2, 1]} or
    /// {"paths": ["dna.tif", "tub.tif", "actin.tif"]}, plus optionally {"centre": [x, y]} or
    /// {"box": [x0, y0, x1, y1]}, and {"mask": "labels.tif", "label": 7}.
    public init(json: JSON) throws {
        func bad(_ field: String, _ m: String) -> CytoError { CytoError(.invalidInput, m, field: field) }
        guard case .object(let o) = json else { throw bad("crop", "a crop must be an object, got \(json.typeName)") }
        func numbers(_ key: String, _ n: Int) throws -> [Double]? {
            guard let v = o[key], !v.isNull else { return nil }
            guard let a = v.arrayValue, a.count == n, let d = Optional(a.compactMap(\.doubleValue)), d.count == n,
                  d.allSatisfy(\.isFinite) else {
                throw bad(key, "'\(key)' must be an array of \(n) numbers")
            }
            return d
        }
        if let p = o["path"], !p.isNull {
            guard let path = p.stringValue, !path.isEmpty else { throw bad("path", "'path' must be a non-empty string") }
            var channels: [Int]? = nil
            if let c = o["channels"], !c.isNull {
                guard let a = c.arrayValue, !a.isEmpty, let list = Optional(a.compactMap(\.intValue)), list.count == a.count,
                      list.allSatisfy({ $0 >= 0 }) else {
                    throw bad("channels", "'channels' must be a non-empty array of channel numbers from 0")
                }
                channels = list
            }
            source = .file(path, channels: channels)
        } else if let ps = o["paths"], !ps.isNull {
            guard let a = ps.arrayValue, !a.isEmpty, let list = Optional(a.compactMap(\.stringValue)), list.count == a.count,
                  list.allSatisfy({ !$0.isEmpty }) else {
                throw bad("paths", "'paths' must be a non-empty array of file paths, one per channel")
            }
            source = .channelFiles(list)
        } else {
            throw bad("path", "a crop needs 'path' (one file) or 'paths' (one file per channel)")
        }
        if o["centre"] != nil && o["box"] != nil { throw bad("box", "give 'centre' or 'box', not both") }
        if let c = try numbers("centre", 2) {
            region = .centre(x: c[0], y: c[1])
        } else if let b = try numbers("box", 4) {
            guard b.allSatisfy({ $0.rounded() == $0 && abs($0) < 1e9 }) else { throw bad("box", "'box' holds integer pixel coordinates") }
            region = .box(x0: Int(b[0]), y0: Int(b[1]), x1: Int(b[2]), y1: Int(b[3]))
        } else {
            region = .whole
        }
        if let m = o["mask"], !m.isNull {
            guard let path = m.stringValue, !path.isEmpty else { throw bad("mask", "'mask' must be a label image path") }
            var label: Int? = nil
            if let l = o["label"], !l.isNull {
                guard let v = l.intValue, v > 0 else { throw bad("label", "'label' must be a positive integer") }
                label = v
            }
            mask = MaskSpec(path: path, label: label)
        } else {
            if o["label"] != nil { throw bad("label", "'label' needs a 'mask'") }
            mask = nil
        }
    }

    /// The JSON form (see `init(json:)`).
    public var json: JSON {
        var o: [String: JSON] = [:]
        switch source {
        case .file(let p, let channels):
            o["path"] = .string(p)
            if let channels { o["channels"] = .array(channels.map { JSON($0) }) }
        case .channelFiles(let ps): o["paths"] = .array(ps.map { .string($0) })
        }
        switch region {
        case .whole: break
        case .centre(let x, let y): o["centre"] = [.double(x), .double(y)]
        case .box(let x0, let y0, let x1, let y1): o["box"] = .array([x0, y0, x1, y1].map { JSON($0) })
        }
        if let mask {
            o["mask"] = .string(mask.path)
            if let l = mask.label { o["label"] = JSON(l) }
        }
        return .object(o)
    }
}

/// A crop manifest (CSV, the pycytominer convention): one row per crop with a path column, or one
/// path column per channel, optional centre or bounding-box columns and a mask column, and
/// `Metadata_*` columns carried along for profiles. Relative paths start at `root` (default: the
/// manifest's folder).
public struct CropManifest {
    /// Which columns hold what. Unset optional columns are not read.
    public struct Columns: Sendable, Equatable {
        /// The column of one multi-channel file per crop.
        public var path = "path"
        /// One column per channel (model order), instead of `path`.
        public var channelPaths: [String]? = nil
        /// Object centre columns (e.g. Location_Center_X, Location_Center_Y).
        public var centreX: String? = nil, centreY: String? = nil
        /// Bounding box columns x0, y0, x1, y1 (end exclusive).
        public var box: [String]? = nil
        /// Label mask path column, and optionally the label column.
        public var mask: String? = nil, label: String? = nil
        /// Columns carried through to the feature table besides `Metadata_*` (always carried): exact
        /// names, or `Prefix*` patterns. Nil: the key columns of a CellProfiler object table
        /// (`TableColumns.defaultKeys`: ImageNumber, ObjectNumber, Location_*), so rows join back
        /// to the table the manifest came from.
        public var carried: [String]? = nil
        public init() {}
    }

    public var specs: [CropSpec] = []
    /// Names of the carried columns (`Metadata_*` and the key columns, see `Columns.carried`), in
    /// file order, and each row's values for them.
    public var metadataNames: [String] = []
    public var metadata: [[String]] = []

    /// Reads a manifest; errors name the file, line and column at fault.
    public init(path manifest: String, columns: Columns = Columns(), root: String? = nil, limit: Int? = nil) throws {
        let csv = try CSVReader(path: manifest)
        let specIdx = try columns.indices(in: csv.columns, manifest: manifest)
        let meta = try columns.carriedIndices(in: csv.columns, manifest: manifest).map { (offset: $0, element: csv.columns[$0]) }
        metadataNames = meta.map(\.element)
        let base = root ?? (manifest as NSString).deletingLastPathComponent
        while let row = try csv.next() {
            if let limit, specs.count >= limit { break }
            do {
                specs.append(try columns.spec(specIdx.map { row[$0] }, root: base))
            } catch var e as CytoError {
                e.path = manifest; e.line = csv.line
                throw e
            }
            metadata.append(meta.map { row[$0.offset] })
        }
    }
}

extension CropManifest.Columns {
    /// Sets where the paths are: one column names a multi-channel file's path (as `path`),
    /// several name one single-channel file per channel, in model order.
    public mutating func setPathColumns(_ names: [String]) {
        if names.count == 1 { path = names[0]; channelPaths = nil } else { channelPaths = names }
    }

    /// The columns a crop's spec is built from, in order: the path(s), the centre or box, the mask
    /// and its label.
    public var specColumns: [String] {
        var c = channelPaths ?? [path]
        if let centreX { c += [centreX, centreY ?? ""] }
        if let box { c += box }
        if let mask { c.append(mask) }
        if let label { c.append(label) }
        return c
    }

    /// Where the carried columns are among a header's `names`, in file order: `Metadata_*`, then
    /// whatever `carried` (default: the key columns) matches. An exact name in an explicit
    /// `carried` list that the header lacks is an error naming it.
    public func carriedIndices(in names: [String], manifest: String) throws -> [Int] {
        let patterns = carried ?? TableColumns.defaultKeys
        if carried != nil {
            for p in patterns where !p.hasSuffix("*") && !names.contains(p) {
                throw CytoError(.invalidInput, "manifest has no '\(p)' column to keep (columns: \(names.joined(separator: ", ")))",
                                path: manifest, field: p)
            }
        }
        return names.indices.filter { i in
            names[i].hasPrefix("Metadata_") || patterns.contains { TableColumns.matches(names[i], $0) }
        }
    }

    /// Where `specColumns` are among a header's `names`; an error names the missing column.
    public func indices(in names: [String], manifest: String) throws -> [Int] {
        if centreX != nil && box != nil { throw CytoError(.invalidInput, "give centre columns or box columns, not both", path: manifest) }
        if (centreX == nil) != (centreY == nil) { throw CytoError(.invalidInput, "a centre needs an x and a y column", path: manifest) }
        if let box, box.count != 4 { throw CytoError(.invalidInput, "a box needs 4 columns (x0, y0, x1, y1)", path: manifest) }
        if label != nil && mask == nil { throw CytoError(.invalidInput, "a label column needs a mask column", path: manifest) }
        return try specColumns.map { name in
            guard let i = names.firstIndex(of: name) else {
                throw CytoError(.invalidInput, "manifest has no '\(name)' column (columns: \(names.joined(separator: ", ")))", path: manifest, field: name)
            }
            return i
        }
    }

    /// The crop spec of one row from its `specColumns` values; relative paths start at `root`.
    /// An error names the column at fault (the caller adds the file and line).
    public func spec(_ values: [String], root: String) throws -> CropSpec {
        let names = specColumns
        var k = 0
        func next() -> (String, String) { defer { k += 1 }; return (values[k].trimmingCharacters(in: .whitespaces), names[k]) }
        func nextPath() throws -> String {
            let (p, field) = next()
            guard !p.isEmpty else { throw CytoError(.invalidInput, "empty path", field: field) }
            return p.hasPrefix("/") || root.isEmpty ? p : root + "/" + p
        }
        func nextNumber() throws -> Double {
            let (v, field) = next()
            guard let x = Double(v), x.isFinite, abs(x) < 1e9 else { throw CytoError(.invalidInput, "'\(v)' is not a coordinate", field: field) }
            return x
        }
        let paths = try (channelPaths ?? [path]).map { _ in try nextPath() }
        var spec = CropSpec(source: channelPaths == nil ? .file(paths[0]) : .channelFiles(paths))
        if centreX != nil { spec.region = CropRegion.centre(x: try nextNumber(), y: try nextNumber()) }
        if box != nil {
            let v = try (0..<4).map { _ in try nextNumber() }
            spec.region = .box(x0: Int(v[0].rounded(.down)), y0: Int(v[1].rounded(.down)), x1: Int(v[2].rounded(.up)), y1: Int(v[3].rounded(.up)))
        }
        if mask != nil {
            let m = try nextPath()
            var l: Int? = nil
            if label != nil {
                let (v, field) = next()
                guard let x = Int(v), x > 0 else { throw CytoError(.invalidInput, "label '\(v)' is not a positive integer", field: field) }
                l = x
            }
            spec.mask = MaskSpec(path: m, label: l)
        }
        return spec
    }
}

extension CropLoader {
    /// Loads several crops into consecutive slots of `out` (each `preprocessing.inputCount`
    /// floats). A crop that fails leaves its slot at -1 and its error (located at its index) in
    /// the result, so one bad file does not stop a batch.
    public func loadBatch(_ specs: [CropSpec], into out: UnsafeMutableBufferPointer<Float>) -> [CytoError?] {
        let n = preprocessing.inputCount
        precondition(out.count >= specs.count * n, "output holds \(out.count) floats, needs \(specs.count * n)")
        return specs.enumerated().map { i, spec in
            let slot = UnsafeMutableBufferPointer(rebasing: out[(i * n)..<((i + 1) * n)])
            do {
                try load(spec, into: slot)
                return nil
            } catch let e as CytoError {
                slot.update(repeating: -1)
                return e.at(index: i)
            } catch {
                slot.update(repeating: -1)
                return CytoError(.internal, "\(error)", index: i)
            }
        }
    }
}
