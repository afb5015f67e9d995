#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CTIFF
import CytoCore

/// Compression of TIFFs written by `ImageWriter`.
public enum TIFFCompression: String, Sendable, CaseIterable {
    case none, deflate, lzw, packbits

    var code: Int32 {
        switch self {
        case .none: return COMPRESSION_NONE
        case .deflate: return COMPRESSION_ADOBE_DEFLATE
        case .lzw: return COMPRESSION_LZW
        case .packbits: return COMPRESSION_PACKBITS
        }
    }
}

/// A growable file in memory that libtiff writes through its client I/O procs.
private final class MemorySink {
    var data: [UInt8] = []
    var offset = 0
}

private func sink(_ h: thandle_t?) -> MemorySink { Unmanaged<MemorySink>.fromOpaque(h!).takeUnretainedValue() }
private let sinkRead: TIFFReadWriteProc = { h, buf, n in
    let s = sink(h)
    let k = max(0, min(Int(n), s.data.count - s.offset))
    if k > 0, let buf { s.data.withUnsafeBytes { _ = memcpy(buf, $0.baseAddress! + s.offset, k) } }
    s.offset += k
    return tmsize_t(k)
}
private let sinkWrite: TIFFReadWriteProc = { h, buf, n in
    let s = sink(h), k = Int(n)
    guard k >= 0, let buf else { return -1 }
    if s.offset + k > s.data.count { s.data.append(contentsOf: repeatElement(0, count: s.offset + k - s.data.count)) }
    s.data.withUnsafeMutableBytes { _ = memcpy($0.baseAddress! + s.offset, buf, k) }
    s.offset += k
    return n
}
private let sinkSeek: TIFFSeekProc = { h, off, whence in
    let s = sink(h)
    let base: Int
    switch whence {
    case SEEK_SET: base = 0
    case SEEK_CUR: base = s.offset
    case SEEK_END: base = s.data.count
    default: return toff_t.max
    }
    let target = base + Int(truncatingIfNeeded: off)
    guard target >= 0 else { return toff_t.max }
    s.offset = target
    return toff_t(target)
}
private let sinkClose: TIFFCloseProc = { _ in 0 }
private let sinkSize: TIFFSizeProc = { h in toff_t(sink(h).data.count) }
private let sinkMap: TIFFMapFileProc = { _, _, _ in 0 }
private let sinkUnmap: TIFFUnmapFileProc = { _, _, _ in }

private let writeErrorHandler: TIFFErrorHandlerExtR = { _, user, module, fmt, ap in
    guard let user else { return 0 }
    var buf = [CChar](repeating: 0, count: 512)
    if let fmt, let ap { _ = vsnprintf(&buf, buf.count, fmt, ap) }
    let m = module.map { String(cString: $0) + ": " } ?? ""
    Unmanaged<TIFFMessages>.fromOpaque(user).takeUnretainedValue().errors.append(m + cText(buf))
    return 1
}

/// Writes images: TIFF (any sample type, channels as contiguous samples, as BBBC021's crops) and
/// PNG, always atomically (a temporary file renamed into place).
public enum ImageWriter {
    /// The TIFF bytes of `image`: one page, `channels` samples per pixel (minimum-is-black, extra
    /// samples unspecified), horizontal predictor for integer samples under deflate and LZW.
    public static func encodeTIFF(_ image: PixelImage, compression: TIFFCompression = .deflate,
                                  path: String? = nil) throws -> [UInt8] {
        _ = installTIFFGlobalHandlers
        guard image.width > 0, image.height > 0, image.channels > 0 else {
            throw CytoError(.invalidInput, "cannot write an empty image (\(image.width)x\(image.height)x\(image.channels))", path: path)
        }
        let out = MemorySink(), messages = TIFFMessages()
        guard let opts = TIFFOpenOptionsAlloc() else { throw CytoError(.internal, "libtiff could not allocate options", path: path) }
        defer { TIFFOpenOptionsFree(opts) }
        TIFFOpenOptionsSetErrorHandlerExtR(opts, writeErrorHandler, Unmanaged.passUnretained(messages).toOpaque())
        return try withExtendedLifetime((out, messages)) {
            guard let tif = TIFFClientOpenExt(path ?? "memory", "w", Unmanaged.passUnretained(out).toOpaque(),
                                              sinkRead, sinkWrite, sinkSeek, sinkClose, sinkSize, sinkMap, sinkUnmap, opts) else {
                throw CytoError(.io, "libtiff cannot start a TIFF: \(messages.lastError)", path: path)
            }
            var closed = false
            defer { if !closed { TIFFClose(tif) } }
            func set(_ tag: Int32, _ args: [CVarArg]) throws {
                guard withVaList(args, { TIFFVSetField(tif, UInt32(tag), $0) }) == 1 else {
                    throw CytoError(.io, "libtiff refused tag \(tag): \(messages.lastError)", path: path)
                }
            }
            let t = image.sampleType
            let format: Int32
            switch t {
            case .uint8, .uint16, .uint32: format = SAMPLEFORMAT_UINT
            case .int8, .int16, .int32: format = SAMPLEFORMAT_INT
            case .float32, .float64: format = SAMPLEFORMAT_IEEEFP
            }
            let rowBytes = image.width * image.channels * t.size
            let rowsPerStrip = max(1, min(image.height, (64 << 10) / max(rowBytes, 1)))
            try set(TIFFTAG_IMAGEWIDTH, [UInt32(image.width)])
            try set(TIFFTAG_IMAGELENGTH, [UInt32(image.height)])
            try set(TIFFTAG_BITSPERSAMPLE, [Int32(t.size * 8)])
            try set(TIFFTAG_SAMPLESPERPIXEL, [Int32(image.channels)])
            try set(TIFFTAG_SAMPLEFORMAT, [format])
            try set(TIFFTAG_PLANARCONFIG, [PLANARCONFIG_CONTIG])
            try set(TIFFTAG_PHOTOMETRIC, [PHOTOMETRIC_MINISBLACK])
            try set(TIFFTAG_COMPRESSION, [compression.code])
            try set(TIFFTAG_ROWSPERSTRIP, [UInt32(rowsPerStrip)])
            if compression == .deflate || compression == .lzw {
                try set(TIFFTAG_PREDICTOR, [format == SAMPLEFORMAT_IEEEFP ? PREDICTOR_FLOATINGPOINT : PREDICTOR_HORIZONTAL])
            }
            if image.channels > 1 {
                var extra = [UInt16](repeating: UInt16(EXTRASAMPLE_UNSPECIFIED), count: image.channels - 1)
                try extra.withUnsafeMutableBufferPointer { try set(TIFFTAG_EXTRASAMPLES, [Int32(image.channels - 1), $0.baseAddress!]) }
            }
            // A C string: a Swift String passed as CVarArg is a Foundation object, not its bytes.
            try "cytogan".withCString { try set(TIFFTAG_SOFTWARE, [$0]) }
            var interleaved = image.interleavedBytes
            let strips = (image.height + rowsPerStrip - 1) / rowsPerStrip
            try interleaved.withUnsafeMutableBytes { raw in
                for s in 0..<strips {
                    let rows = min(rowsPerStrip, image.height - s * rowsPerStrip)
                    // libtiff may apply the predictor in place, hence a mutable buffer.
                    if TIFFWriteEncodedStrip(tif, UInt32(s), raw.baseAddress! + s * rowsPerStrip * rowBytes, tmsize_t(rows * rowBytes)) < 0 {
                        throw CytoError(.io, "libtiff cannot write strip \(s): \(messages.lastError)", path: path)
                    }
                }
            }
            guard TIFFWriteDirectory(tif) == 1 else {
                throw CytoError(.io, "libtiff cannot write the directory: \(messages.lastError)", path: path)
            }
            TIFFClose(tif)
            closed = true
            return out.data
        }
    }

    /// Writes `image` as a TIFF at `path`, atomically (`durable: false` skips the fsync, for many
    /// regenerable files).
    public static func writeTIFF(_ image: PixelImage, to path: String, compression: TIFFCompression = .deflate,
                                 durable: Bool = true) throws {
        try AtomicFile.write(try encodeTIFF(image, compression: compression, path: path), to: path, durable: durable)
    }

    /// Writes an 8 or 16-bit image of 1 to 4 channels as a PNG at `path`, atomically.
    public static func writePNG(_ image: PixelImage, to path: String) throws {
        try AtomicFile.write(try PNGCodec.encode(image, path: path), to: path)
    }

    /// Writes generated cells (CHW planes in [-1, 1], as the generator's tanh gives them) as a
    /// 16-bit multi-channel TIFF: -1 maps to 0 and 1 to 65535.
    public static func writeGeneratedTIFF(_ planes: UnsafeBufferPointer<Float>, channels: Int, width: Int, height: Int,
                                          to path: String) throws {
        try writeTIFF(PixelImage(quantizing: planes, channels: channels, width: width, height: height,
                                 from: (-1, 1), to: .uint16), to: path)
    }
}

extension PixelImage {
    /// An integer image from float planes (CHW): `range` maps linearly onto [0, full scale] of
    /// `type`, rounded to nearest, values outside clipped.
    public init(quantizing planes: UnsafeBufferPointer<Float>, channels: Int, width: Int, height: Int,
                from range: (Float, Float), to type: SampleType) {
        precondition(planes.count == channels * width * height)
        precondition(type == .uint8 || type == .uint16, "quantizing targets uint8 or uint16")
        self.init(width: width, height: height, channels: channels, sampleType: type)
        let full = Float(type.fullScale), a = full / (range.1 - range.0), b = -range.0 * a
        storage.withUnsafeMutableBytes { raw in
            for i in 0..<planes.count {
                var v = (planes[i] * a + b).rounded()
                if !(v > 0) { v = 0 }
                if v > full { v = full }
                if type == .uint8 { raw.storeBytes(of: UInt8(v), toByteOffset: i, as: UInt8.self) }
                else { raw.storeBytes(of: UInt16(v), toByteOffset: i * 2, as: UInt16.self) }
            }
        }
    }
}
