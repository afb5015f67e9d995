import Foundation

/// NumPy .npy files (format version 1.0, little-endian, C order): the exchange format for large
/// matrices. Reading converts any numeric dtype to Float; writing keeps the given element type.
public enum NPYType: String, Sendable {
    case float32 = "<f4", float64 = "<f8", uint8 = "|u1", uint16 = "<u2", uint32 = "<u4",
         int8 = "|i1", int16 = "<i2", int32 = "<i4", int64 = "<i8"
    public var size: Int {
        switch self {
        case .uint8, .int8: return 1
        case .uint16, .int16: return 2
        case .float32, .uint32, .int32: return 4
        case .float64, .int64: return 8
        }
    }
}

public enum NPY {
    /// The 1.0 header for `shape` and `type`, padded so the data starts at a multiple of 64.
    public static func header(shape: [Int], type: NPYType, shapeWidth: Int = 0) -> [UInt8] {
        var shapeText = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
        if shapeText.count < shapeWidth { shapeText += String(repeating: " ", count: shapeWidth - shapeText.count) }
        var dict = "{'descr': '\(type.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        let total = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = UInt16(dict.utf8.count)
        out += [UInt8(n & 0xff), UInt8(n >> 8)]
        out += Array(dict.utf8)
        return out
    }

    /// Writes a whole array atomically. `data` holds shape.reduce(1, *) elements of `T`.
    public static func write<T>(_ data: [T], shape: [Int], type: NPYType, to path: String) throws {
        precondition(MemoryLayout<T>.size == type.size)
        guard data.count == shape.reduce(1, *) else {
            throw CytoError(.shapeMismatch, "\(data.count) values do not fill shape \(shape)", path: path)
        }
        let f = try AtomicFile(path: path)
        try f.write(bytes: header(shape: shape, type: type))
        try data.withUnsafeBytes { try f.write(raw: $0) }
        try f.commit()
    }

    /// A parsed .npy file: its shape and its values as Float.
    public struct Array2: Sendable {
        public var shape: [Int]
        public var type: NPYType
        public var values: [Float]
    }

    /// Reads a .npy file of any supported numeric type into Float values.
    public static func read(path: String) throws -> Array2 {
        let bytes = try readFileBytes(path)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw CytoError(.undecodable, "not a .npy file (bad magic)", path: path)
        }
        let major = bytes[6]
        var hlen: Int, start: Int
        if major == 1 { hlen = Int(bytes[8]) | Int(bytes[9]) << 8; start = 10 }
        else if major == 2 || major == 3 {
            guard bytes.count >= 12 else { throw CytoError(.undecodable, "truncated .npy header", path: path) }
            hlen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24; start = 12
        } else { throw CytoError(.unsupported, ".npy format version \(major)", path: path) }
        guard start + hlen <= bytes.count else { throw CytoError(.undecodable, "truncated .npy header", path: path) }
        let header = String(decoding: bytes[start..<(start + hlen)], as: UTF8.self)
        guard let descr = field(header, "descr"), let type = NPYType(rawValue: descr.replacingOccurrences(of: "=", with: "<"))
                ?? NPYType(rawValue: descr.replacingOccurrences(of: "<", with: "|")) else {
            throw CytoError(.unsupported, "unsupported dtype in .npy header: \(header)", path: path)
        }
        if header.contains("'fortran_order': True") {
            throw CytoError(.unsupported, "Fortran-ordered .npy arrays", path: path)
        }
        guard let open = header.firstIndex(of: "("), let close = header[open...].firstIndex(of: ")") else {
            throw CytoError(.undecodable, "no shape in .npy header", path: path)
        }
        let shape = try header[header.index(after: open)..<close].split(separator: ",").compactMap { part -> Int? in
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { return nil }
            guard let v = Int(t), v >= 0 else { throw CytoError(.undecodable, "bad shape in .npy header", path: path) }
            return v
        }
        let (count, overflow) = shape.reduce((1, false)) { acc, d in
            let r = acc.0.multipliedReportingOverflow(by: d); return (r.partialValue, acc.1 || r.overflow)
        }
        let dataStart = start + hlen
        guard !overflow, count <= (bytes.count - dataStart) / type.size else {
            throw CytoError(.undecodable, "data shorter than shape \(shape)", path: path)
        }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress! + dataStart
            for i in 0..<count {
                let q = p + i * type.size
                switch type {
                case .float32: values[i] = q.loadUnaligned(as: Float.self)
                case .float64: values[i] = Float(q.loadUnaligned(as: Double.self))
                case .uint8: values[i] = Float(q.load(as: UInt8.self))
                case .int8: values[i] = Float(q.load(as: Int8.self))
                case .uint16: values[i] = Float(q.loadUnaligned(as: UInt16.self))
                case .int16: values[i] = Float(q.loadUnaligned(as: Int16.self))
                case .uint32: values[i] = Float(q.loadUnaligned(as: UInt32.self))
                case .int32: values[i] = Float(q.loadUnaligned(as: Int32.self))
                case .int64: values[i] = Float(q.loadUnaligned(as: Int64.self))
                }
            }
        }
        return Array2(shape: shape, type: type, values: values)
    }

    private static func field(_ header: String, _ key: String) -> String? {
        guard let r = header.range(of: "'\(key)':") else { return nil }
        let rest = header[r.upperBound...].drop(while: { $0 == " " })
        guard let q = rest.first, q == "'" || q == "\"" else { return nil }
        let body = rest.dropFirst()
        guard let end = body.firstIndex(of: q) else { return nil }
        return String(body[..<end])
    }
}

/// Streams rows of Float32 to a .npy file whose row count is known only at the end:
/// the header is written with room for the shape and patched by `finish()`.
public final class NPYRowWriter {
    private let file: AtomicFile
    public let columns: Int
    public private(set) var rows = 0
    private static let shapeWidth = 40

    public init(path: String, columns: Int) throws {
        self.columns = columns
        file = try AtomicFile(path: path)
        try file.write(bytes: NPY.header(shape: [0, columns], type: .float32, shapeWidth: NPYRowWriter.shapeWidth))
    }

    public func append(_ row: UnsafeBufferPointer<Float>) throws {
        precondition(row.count == columns)
        try file.write(raw: UnsafeRawBufferPointer(row))
        rows += 1
    }

    public func append(_ row: [Float]) throws { try row.withUnsafeBufferPointer { try append($0) } }

    public func finish() throws {
        try file.patch(at: 0, bytes: NPY.header(shape: [rows, columns], type: .float32, shapeWidth: NPYRowWriter.shapeWidth))
        try file.commit()
    }
}
