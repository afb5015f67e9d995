import CellImage
import CytoCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A numbered list of crops that the trainer and the extractor read by index, in any order and
/// from any thread. Implementations keep memory independent of what the crops hold.
public protocol CropSource: AnyObject, Sendable {
    /// Number of crops.
    var count: Int { get }
    /// The crop at `index` (0 ..< count).
    func spec(at index: Int) throws -> CropSpec
    /// A short name for logs (the path as given).
    func name(at index: Int) -> String
}

/// Crops held in memory (the worker's lists, tests).
public final class CropList: CropSource, @unchecked Sendable {
    public let specs: [CropSpec]
    public init(_ specs: [CropSpec]) { self.specs = specs }
    public var count: Int { specs.count }
    public func spec(at index: Int) throws -> CropSpec { specs[index] }
    public func name(at index: Int) -> String { specs[index].source.paths.joined(separator: ",") }
}

/// A crop manifest (CSV: a `path` column, or one path column per channel, optional centre, box,
/// mask and label columns, plus `Metadata_*` columns) indexed for random access without holding its rows in memory: one pass copies the
/// fields it needs into an unlinked scratch file and keeps only each row's byte offset there
/// (8 bytes a crop). Rows are read back with `pread`, from any thread. Relative paths start at
/// `root` (default: the manifest's folder). Rows that cannot be used (wrong field count, empty
/// path, a coordinate that is not a number) are skipped, counted and listed in `skippedRows`; gzip-compressed manifests work too.
public final class StreamingManifest: CropSource, @unchecked Sendable {
    public let path: String
    public let root: String
    /// Which columns make a crop's spec (paths, centre or box, mask, label).
    public let columns: CropManifest.Columns
    /// How many stored fields of a row `columns` take (the metadata values follow).
    private let specFieldCount: Int
    /// The path column, or the per-channel path columns in model order.
    public let pathColumns: [String]
    /// Names of the carried columns (`Metadata_*` and the key columns), in file order.
    public let metadataNames: [String]
    /// Rows indexed.
    public var count: Int { offsets.count - 1 }
    /// Rows skipped while indexing: their line and why (the first 1,000; `skippedRowCount` counts all).
    public private(set) var skippedRows: [(line: Int, reason: String)] = []
    public private(set) var skippedRowCount = 0

    private var offsets: [UInt64] = [0]
    private let fd: Int32

    /// Indexes `manifest`. `columns` says where paths, centres or boxes and masks are;
    /// `channelColumns`, when given, names one path column per channel (default: `path`).
    /// `log` receives one line per skipped row.
    public init(path manifest: String, root: String? = nil, columns: CropManifest.Columns = CropManifest.Columns(),
                channelColumns: [String]? = nil, log: ((String) -> Void)? = nil) throws {
        path = manifest
        let base = root ?? (manifest as NSString).deletingLastPathComponent
        self.root = base
        var cols = columns
        if let channelColumns { cols.setPathColumns(channelColumns) }
        self.columns = cols
        specFieldCount = cols.specColumns.count
        let csv = try CSVReader(path: manifest)
        let specIdx = try cols.indices(in: csv.columns, manifest: manifest)
        pathColumns = cols.channelPaths ?? [cols.path]
        let metaIdx = try cols.carriedIndices(in: csv.columns, manifest: manifest)
        metadataNames = metaIdx.map { csv.columns[$0] }

        var template = Array("\(NSTemporaryDirectory())/cytogan-manifest-XXXXXX".utf8CString)
        let f = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard f >= 0 else { throw CytoError(.io, "cannot create a scratch file for the manifest index: \(String(cString: strerror(errno)))") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        fd = f

        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20)
        var written: UInt64 = 0
        func flush() throws {
            if let failure = writeAll(fd: fd, buffer) {
                throw CytoError(.io, "cannot write the manifest index: \(String(cString: strerror(failure)))")
            }
            buffer.removeAll(keepingCapacity: true)
        }
        func put(_ s: String) {
            let u = Array(s.utf8)
            var n = UInt32(u.count)
            for _ in 0..<4 { buffer.append(UInt8(n & 0xff)); n >>= 8 }
            buffer.append(contentsOf: u)
        }
        while true {
            let row: [String]
            do {
                guard let r = try csv.next() else { break }
                row = r
            } catch let e as CytoError where e.kind == .invalidInput && e.line != nil {
                skip(line: e.line!, reason: e.message, log: log)
                continue
            }
            let values = specIdx.map { row[$0] }
            do { _ = try cols.spec(values, root: base) } catch let e as CytoError {
                skip(line: csv.line, reason: e.field.map { "\($0): \(e.message)" } ?? e.message, log: log)
                continue
            }
            let before = buffer.count
            for v in values { put(v) }
            for i in metaIdx { put(row[i]) }
            written += UInt64(buffer.count - before)
            offsets.append(written)
            if buffer.count >= 1 << 20 { try flush() }
        }
        try flush()
    }

    deinit { close(fd) }

    private func skip(line: Int, reason: String, log: ((String) -> Void)?) {
        skippedRowCount += 1
        if skippedRows.count < 1000 { skippedRows.append((line, reason)) }
        log?("\(path):\(line): skipped manifest row: \(reason)")
    }

    /// The stored fields of row `index`: its path fields, then its metadata values.
    public func fields(at index: Int) throws -> [String] {
        precondition(index >= 0 && index < count, "manifest row \(index) out of 0..<\(count)")
        let start = offsets[index], end = offsets[index + 1]
        var bytes = [UInt8](repeating: 0, count: Int(end - start))
        var got = 0
        while got < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, $0.count - got, off_t(start) + off_t(got)) }
            if n < 0 { if errno == EINTR { continue }; throw CytoError(.io, "cannot read the manifest index", path: path) }
            if n == 0 { throw CytoError(.io, "manifest index is truncated", path: path) }
            got += n
        }
        var out: [String] = []
        out.reserveCapacity(pathColumns.count + metadataNames.count)
        var p = 0
        while p + 4 <= bytes.count {
            let n = Int(bytes[p]) | Int(bytes[p + 1]) << 8 | Int(bytes[p + 2]) << 16 | Int(bytes[p + 3]) << 24
            out.append(String(decoding: bytes[(p + 4)..<(p + 4 + n)], as: UTF8.self))
            p += 4 + n
        }
        return out
    }


    public func spec(at index: Int) throws -> CropSpec {
        let f = try fields(at: index)
        do { return try columns.spec(Array(f.prefix(specFieldCount)), root: root) } catch var e as CytoError {
            e.path = path; e.index = index
            throw e
        }
    }

    public func name(at index: Int) -> String {
        guard let f = try? fields(at: index) else { return "row \(index)" }
        return f.prefix(pathColumns.count).joined(separator: ",")
    }

    /// The carried values of row `index`, in `metadataNames` order.
    public func metadata(at index: Int) throws -> [String] {
        Array(try fields(at: index).dropFirst(specFieldCount))
    }
}
