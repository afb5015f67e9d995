import CytoCore

/// A safetensors file read into memory: tensors converted to Float32, their names in the
/// order of their data, the dtype each had, and the `__metadata__` string map.
public struct SafeTensorsFile {
    public var tensors: [String: Tensor]
    public var names: [String]
    public var dtypes: [String: String]
    public var metadata: [String: String]

    /// The tensor called `name`, or an error naming it and the file.
    public func tensor(_ name: String, path: String? = nil) throws -> Tensor {
        guard let t = tensors[name] else { throw CytoError(.invalidInput, "no tensor '\(name)' in the file", path: path, field: name) }
        return t
    }
}

/// The safetensors format (Hugging Face): 8 bytes little-endian header length, a JSON header
/// mapping each name to {dtype, shape, data_offsets} plus an optional "__metadata__" string map,
/// then the raw little-endian data. Written as F32, atomically; read from F32, F16, BF16, F64,
/// I64 and I32 (converted to Float32).
public enum SafeTensors {
    static let elementSize: [String: Int] = ["F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4]

    /// Writes `tensors` (unique, non-empty names) with `metadata` to `path` atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: JSON] = [:]
        var offset = 0
        for (i, (name, t)) in tensors.enumerated() {
            guard !name.isEmpty, name != "__metadata__" else {
                throw CytoError(.invalidInput, "tensor name '\(name)' is not allowed", path: path, index: i)
            }
            guard header[name] == nil else { throw CytoError(.invalidInput, "tensor '\(name)' appears twice", path: path, field: name) }
            let bytes = t.count * 4
            header[name] = .object(["dtype": .string("F32"), "shape": .array(t.shape.dims.map { .int(Int64($0)) }),
                                    "data_offsets": .array([.int(Int64(offset)), .int(Int64(offset + bytes))])])
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var text = Array(JSON.object(header).serialized.utf8)
        while text.count % 8 != 0 { text.append(0x20) }
        var prefix = [UInt8](repeating: 0, count: 8)
        var n = UInt64(text.count)
        for i in 0..<8 { prefix[i] = UInt8(n & 0xff); n >>= 8 }
        let f = try AtomicFile(path: path)
        try f.write(bytes: prefix + text)
        for (_, t) in tensors {
            try f.write(raw: UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
        }
        try f.commit()
    }

    /// Reads every tensor of a safetensors file, checking the header against the file's size.
    public static func read(_ path: String) throws -> SafeTensorsFile {
        let bytes = try readFileBytes(path)
        return try decode(bytes, path: path)
    }

    /// Parses a safetensors image held in memory (`path` only names it in errors).
    public static func decode(_ bytes: [UInt8], path: String? = nil) throws -> SafeTensorsFile {
        func fail(_ m: String, field: String? = nil) -> CytoError { CytoError(.undecodable, "safetensors: \(m)", path: path, field: field) }
        guard bytes.count >= 8 else { throw fail("file of \(bytes.count) bytes is shorter than the 8-byte header length") }
        var n: UInt64 = 0
        for i in (0..<8).reversed() { n = n << 8 | UInt64(bytes[i]) }
        guard n <= UInt64(bytes.count - 8) else { throw fail("header length \(n) runs past the end of the file (\(bytes.count) bytes)") }
        let dataStart = 8 + Int(n)
        var headerBytes = Array(bytes[8..<dataStart])
        let header: JSON
        do { header = try JSON.parse(bytes: &headerBytes) } catch let e as CytoError { throw fail("header is not JSON: \(e.message)") }
        guard let entries = header.objectValue else { throw fail("header is a JSON \(header.typeName), not an object") }
        let dataCount = bytes.count - dataStart

        var metadata: [String: String] = [:]
        if let meta = entries["__metadata__"] {
            guard let o = meta.objectValue else { throw fail("__metadata__ is not an object", field: "__metadata__") }
            for (k, v) in o {
                guard let s = v.stringValue else { throw fail("__metadata__ value '\(k)' is a \(v.typeName), not a string", field: "__metadata__") }
                metadata[k] = s
            }
        }
        var tensors: [String: Tensor] = [:], dtypes: [String: String] = [:]
        var order: [(Int, String)] = []
        for (name, entry) in entries where name != "__metadata__" {
            guard let o = entry.objectValue, let dtype = o["dtype"]?.stringValue,
                  let dims = o["shape"]?.arrayValue, let offs = o["data_offsets"]?.arrayValue else {
                throw fail("entry lacks dtype, shape or data_offsets", field: name)
            }
            guard let size = elementSize[dtype] else {
                throw CytoError(.unsupported, "safetensors: dtype \(dtype) is not supported (F32, F16, BF16, F64, I64, I32)", path: path, field: name)
            }
            var shapeDims: [Int] = []
            for d in dims {
                guard let v = d.intValue, v >= 0 else { throw fail("shape \(entry["shape"]!.serialized) is not a list of sizes", field: name) }
                shapeDims.append(v)
            }
            let shape: Shape
            do { shape = try Shape(dims: shapeDims) } catch let e as CytoError {
                throw CytoError(e.kind, "safetensors: \(e.message)", path: path, field: name)
            }
            guard offs.count == 2, let begin = offs[0].intValue, let end = offs[1].intValue, begin >= 0, end >= begin, end <= dataCount else {
                throw fail("data_offsets \(entry["data_offsets"]!.serialized) lie outside the \(dataCount) data bytes", field: name)
            }
            guard end - begin == shape.count * size else {
                throw fail("data_offsets cover \(end - begin) bytes but shape \(shape) of \(dtype) needs \(shape.count * size)", field: name)
            }
            let t = Tensor(shape)
            bytes.withUnsafeBytes { raw in convert(raw.baseAddress! + dataStart + begin, dtype: dtype, count: shape.count, into: t.data) }
            tensors[name] = t
            dtypes[name] = dtype
            order.append((begin, name))
        }
        order.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        return SafeTensorsFile(tensors: tensors, names: order.map { $0.1 }, dtypes: dtypes, metadata: metadata)
    }

    /// Little-endian elements of `dtype` at `src` to Float.
    private static func convert(_ src: UnsafeRawPointer, dtype: String, count: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case "F32":
            for i in 0..<count { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case "F64":
            for i in 0..<count { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case "I64":
            for i in 0..<count { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
        case "I32":
            for i in 0..<count { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
        case "BF16":
            for i in 0..<count {
                let h = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                dst[i] = Float(bitPattern: UInt32(h) << 16)
            }
        case "F16":
            for i in 0..<count { dst[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        default:
            break
        }
    }

    /// IEEE 754 binary16 to Float, including subnormals, infinities and NaN.
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign: Float = h & 0x8000 != 0 ? -1 : 1
        let e = Int((h >> 10) & 0x1f), f = Int(h & 0x3ff)
        if e == 0 { return sign * Float(f) * 0x1p-24 }
        if e == 31 { return f == 0 ? sign * .infinity : .nan }
        return sign * (1 + Float(f) / 1024) * Float(sign: .plus, exponent: e - 15, significand: 1)
    }
}
