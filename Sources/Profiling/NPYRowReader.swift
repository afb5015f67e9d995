#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import CytoCore

/// Streams the rows of a 2-D .npy matrix (any numeric dtype CytoCore's `NPYType` knows, C order)
/// as Double, a block at a time, so a matrix of millions of cells never has to be in memory
/// (Fortran-ordered files excepted: those are read whole).
/// CytoCore's `NPY.read` loads a whole file; this is its streaming counterpart.
public final class NPYRowReader {
    public let path: String
    public let rows: Int
    public let columns: Int
    public let type: NPYType
    /// Rows returned so far.
    public private(set) var rowIndex = 0
    private let file: UnsafeMutablePointer<FILE>
    private var raw: [UInt8]
    private var transposed: [UInt8]? = nil

    public init(path: String) throws {
        self.path = path
        guard let f = fopen(path, "rb") else {
            throw CytoError(.fileNotFound, "cannot open .npy file", path: path)
        }
        file = f
        var pre = [UInt8](repeating: 0, count: 12)
        let got = fread(&pre, 1, 12, f)
        guard got >= 10, pre[0] == 0x93, Array(pre[1...5]) == Array("NUMPY".utf8) else {
            fclose(f); throw CytoError(.undecodable, "not a .npy file (bad magic)", path: path)
        }
        let headerLength: Int, start: Int
        switch pre[6] {
        case 1: headerLength = Int(pre[8]) | Int(pre[9]) << 8; start = 10
        case 2, 3:
            guard got == 12 else { fclose(f); throw CytoError(.undecodable, "truncated .npy header", path: path) }
            headerLength = Int(pre[8]) | Int(pre[9]) << 8 | Int(pre[10]) << 16 | Int(pre[11]) << 24; start = 12
        default: fclose(f); throw CytoError(.unsupported, ".npy format version \(pre[6])", path: path)
        }
        var header = [UInt8](repeating: 0, count: headerLength)
        fseek(f, start, SEEK_SET)
        guard headerLength < 1 << 20, fread(&header, 1, headerLength, f) == headerLength else {
            fclose(f); throw CytoError(.undecodable, "truncated .npy header", path: path)
        }
        let text = String(decoding: header, as: UTF8.self)
        do {
            let (type, shape, fortran) = try NPYRowReader.parseHeader(text, path: path)
            guard shape.count == 2 else {
                throw CytoError(.shapeMismatch, "a feature matrix must be 2-D (rows x features); this one has shape \(shape)", path: path)
            }
            self.type = type; rows = shape[0]; columns = shape[1]
            // The data must be all there: compare with the file size now, not at the last row.
            fseek(f, 0, SEEK_END)
            let size = ftell(f)
            let (cells, o1) = rows.multipliedReportingOverflow(by: columns)
            let (bytes, o2) = cells.multipliedReportingOverflow(by: type.size)
            let need = start + headerLength + bytes
            guard !o1, !o2, size >= need else {
                throw CytoError(.undecodable, "data shorter than shape \(shape) (\(size) bytes, need \(need))", path: path)
            }
            fseek(f, start + headerLength, SEEK_SET)
            // Column-major (Fortran-ordered) data cannot be read a row at a time from the start:
            // it is read whole and transposed (NumPy writes this order for, e.g., pandas' to_numpy()).
            if fortran {
                var all = [UInt8](repeating: 0, count: bytes)
                guard bytes == 0 || fread(&all, 1, bytes, f) == bytes else {
                    throw CytoError(.io, "read error", path: path)
                }
                var t = [UInt8](repeating: 0, count: bytes)
                let sz = type.size
                for i in 0..<rows { for j in 0..<columns {
                    let src = (j * rows + i) * sz, dst = (i * columns + j) * sz
                    for b in 0..<sz { t[dst + b] = all[src + b] }
                } }
                transposed = t
            }
        } catch { fclose(f); throw error }
        raw = [UInt8](repeating: 0, count: max(1, columns * type.size))
    }

    deinit { fclose(file) }

    /// Reads the next row into `out` (which holds `columns` values); false at the end.
    public func next(into out: UnsafeMutableBufferPointer<Double>) throws -> Bool {
        precondition(out.count == columns)
        guard rowIndex < rows else { return false }
        let n = columns * type.size
        if let t = transposed {
            for b in 0..<n { raw[b] = t[rowIndex * n + b] }
        } else if n > 0 {
            guard fread(&raw, 1, n, file) == n else {
                throw CytoError(.io, "read error at row \(rowIndex)", path: path, index: rowIndex)
            }
        }
        let t = type
        raw.withUnsafeBytes { p in
            let base = p.baseAddress!
            for j in 0..<columns {
                let q = base + j * t.size
                switch t {
                case .float32: out[j] = Double(q.loadUnaligned(as: Float.self))
                case .float64: out[j] = q.loadUnaligned(as: Double.self)
                case .uint8: out[j] = Double(q.load(as: UInt8.self))
                case .int8: out[j] = Double(q.load(as: Int8.self))
                case .uint16: out[j] = Double(q.loadUnaligned(as: UInt16.self))
                case .int16: out[j] = Double(q.loadUnaligned(as: Int16.self))
                case .uint32: out[j] = Double(q.loadUnaligned(as: UInt32.self))
                case .int32: out[j] = Double(q.loadUnaligned(as: Int32.self))
                case .int64: out[j] = Double(q.loadUnaligned(as: Int64.self))
                }
            }
        }
        rowIndex += 1
        return true
    }

    /// dtype and shape from the header dictionary text.
    static func parseHeader(_ header: String, path: String) throws -> (NPYType, [Int], fortran: Bool) {
        func value(_ key: String) -> Substring? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return header[r.upperBound...].drop(while: { $0 == " " })
        }
        guard let d = value("descr"), let q = d.first, q == "'" || q == "\"",
              let end = d.dropFirst().firstIndex(of: q) else {
            throw CytoError(.undecodable, "no dtype in .npy header: \(header)", path: path)
        }
        let descr = String(d[d.index(after: d.startIndex)..<end])
        guard let type = NPYType(rawValue: descr.replacingOccurrences(of: "=", with: "<"))
                ?? NPYType(rawValue: descr.replacingOccurrences(of: "<", with: "|")) else {
            throw CytoError(.unsupported, "unsupported dtype '\(descr)' in .npy file (big-endian or non-numeric?)", path: path)
        }
        guard let s = value("shape"), s.first == "(", let close = s.firstIndex(of: ")") else {
            throw CytoError(.undecodable, "no shape in .npy header", path: path)
        }
        let shape = try s[s.index(after: s.startIndex)..<close].split(separator: ",").compactMap { part -> Int? in
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { return nil }
            guard let v = Int(t), v >= 0 else { throw CytoError(.undecodable, "bad shape in .npy header", path: path) }
            return v
        }
        let fortran = value("fortran_order")?.hasPrefix("True") ?? false
        return (type, shape, fortran)
    }
}
