#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CTIFF
import CytoCore

/// Limits checked against a file's header before any large allocation, so a header that claims
/// absurd dimensions is refused instead of exhausting memory.
public struct DecodeLimits: Sendable, Equatable {
    /// Most bytes of decoded pixels one image may hold (all pages together).
    public var maxBytes: Int
    /// Most channels (samples per pixel times pages) one image may hold.
    public var maxChannels: Int

    public init(maxBytes: Int = 1 << 30, maxChannels: Int = 4096) {
        self.maxBytes = maxBytes; self.maxChannels = maxChannels
    }
    public static let standard = DecodeLimits()
}

/// Collects libtiff's messages for one open file (its handlers get this object as user data).
final class TIFFMessages {
    var errors: [String] = []
    /// Size of the file being read, for messages about data beyond its end.
    var fileSize = 0
    var lastError: String { errors.last ?? "libtiff reported no reason" }
}

/// Formats a printf-style message from libtiff.
private func formatMessage(_ module: UnsafePointer<CChar>?, _ fmt: UnsafePointer<CChar>?, _ ap: CVaListPointer?) -> String {
    var buf = [CChar](repeating: 0, count: 512)
    if let fmt, let ap { _ = vsnprintf(&buf, buf.count, fmt, ap) }
    let text = cText(buf)
    if let module, module.pointee != 0 { return "\(String(cString: module)): \(text)" }
    return text
}

/// Per-file error handler: keeps the message for the CytoError; returning 1 stops libtiff from
/// calling its global handler (which would print).
private let tiffErrorHandler: TIFFErrorHandlerExtR = { _, user, module, fmt, ap in
    guard let user else { return 0 }
    Unmanaged<TIFFMessages>.fromOpaque(user).takeUnretainedValue().errors.append(formatMessage(module, fmt, ap))
    return 1
}

/// Per-file warning handler: to stderr, once per distinct message.
private let tiffWarningHandler: TIFFErrorHandlerExtR = { _, _, module, fmt, ap in
    ImageWarnings.log("libtiff", formatMessage(module, fmt, ap))
    return 1
}

/// Global handlers for the few messages libtiff emits without a file: to stderr via the log,
/// never libtiff's default printing. Installed once.
let installTIFFGlobalHandlers: Void = {
    TIFFSetErrorHandler(nil)
    TIFFSetWarningHandler(nil)
    _ = TIFFSetErrorHandlerExt { _, module, fmt, ap in ImageWarnings.log("libtiff", formatMessage(module, fmt, ap)) }
    _ = TIFFSetWarningHandlerExt { _, module, fmt, ap in ImageWarnings.log("libtiff", formatMessage(module, fmt, ap)) }
}()

/// A read-only file in memory, served to libtiff through its client I/O procs (including the
/// "map" proc, so uncompressed strips are read in place).
private struct MemorySource {
    var base: UnsafeRawPointer
    var size: Int
    var offset: Int
}

private let memRead: TIFFReadWriteProc = { h, buf, n in
    let m = h!.assumingMemoryBound(to: MemorySource.self)
    let k = max(0, min(Int(n), m.pointee.size - m.pointee.offset))
    if k > 0, let buf { memcpy(buf, m.pointee.base + m.pointee.offset, k) }
    m.pointee.offset += k
    return tmsize_t(k)
}
private let memWriteRefused: TIFFReadWriteProc = { _, _, _ in -1 }
private let memSeek: TIFFSeekProc = { h, off, whence in
    let m = h!.assumingMemoryBound(to: MemorySource.self)
    let base: Int
    switch whence {
    case SEEK_SET: base = 0
    case SEEK_CUR: base = m.pointee.offset
    case SEEK_END: base = m.pointee.size
    default: return toff_t.max
    }
    let (target, overflow) = base.addingReportingOverflow(Int(truncatingIfNeeded: off))
    if overflow || target < 0 || off > toff_t(Int.max) { return toff_t.max }
    m.pointee.offset = target
    return toff_t(target)
}
private let memClose: TIFFCloseProc = { _ in 0 }
private let memSize: TIFFSizeProc = { h in toff_t(h!.assumingMemoryBound(to: MemorySource.self).pointee.size) }
private let memMap: TIFFMapFileProc = { h, base, size in
    let m = h!.assumingMemoryBound(to: MemorySource.self)
    base?.pointee = UnsafeMutableRawPointer(mutating: m.pointee.base)
    size?.pointee = toff_t(m.pointee.size)
    return 1
}
private let memUnmap: TIFFUnmapFileProc = { _, _, _ in }

/// Reads one TIFF tag through libtiff's va_list entry point (Swift cannot call the variadic one).
@inline(__always)
func tiffField<T>(_ tif: OpaquePointer, _ tag: Int32, _ initial: T, defaulted: Bool = true) -> T? {
    var v = initial
    let ok = withUnsafeMutablePointer(to: &v) { p in
        withVaList([p]) { defaulted ? TIFFVGetFieldDefaulted(tif, UInt32(tag), $0) : TIFFVGetField(tif, UInt32(tag), $0) }
    }
    return ok == 1 ? v : nil
}

/// Human names of TIFF compression schemes, for messages.
func tiffCompressionName(_ c: UInt16) -> String {
    switch Int32(c) {
    case COMPRESSION_NONE: return "none"
    case COMPRESSION_CCITTRLE: return "CCITT RLE"
    case COMPRESSION_CCITTFAX3: return "CCITT G3"
    case COMPRESSION_CCITTFAX4: return "CCITT G4"
    case COMPRESSION_LZW: return "LZW"
    case COMPRESSION_OJPEG: return "old JPEG"
    case COMPRESSION_JPEG: return "JPEG"
    case COMPRESSION_ADOBE_DEFLATE, COMPRESSION_DEFLATE: return "deflate"
    case COMPRESSION_PACKBITS: return "PackBits"
    case COMPRESSION_LZMA: return "LZMA"
    case COMPRESSION_ZSTD: return "Zstandard"
    case COMPRESSION_WEBP: return "WebP"
    case COMPRESSION_JBIG: return "JBIG"
    case COMPRESSION_LERC: return "LERC"
    default: return "scheme \(c)"
    }
}

/// The largest expansion a codec can achieve (decoded bytes per stored byte), where one is known;
/// used to refuse headers that claim far more pixels than the stored data could hold.
private func maxExpansion(_ c: UInt16) -> Int? {
    switch Int32(c) {
    case COMPRESSION_NONE: return 1
    case COMPRESSION_PACKBITS: return 64
    case COMPRESSION_ADOBE_DEFLATE, COMPRESSION_DEFLATE: return 1100
    case COMPRESSION_LZW: return 4096
    default: return nil
    }
}

/// The layout of one TIFF page (IFD), read from its tags.
struct TIFFPage {
    var width = 0, height = 0, samples = 1, bits = 8
    var type = SampleType.uint8
    var planar = false
    var tiled = false
    var compression: UInt16 = 1
    var rowsPerStrip = 0, tileWidth = 0, tileHeight = 0

    var bytesPerSample: Int { type.size }
    /// Decoded bytes of the page (Int.max when the header's numbers overflow).
    var pageBytes: Int {
        var n = width
        for f in [height, samples, type.size] {
            let (m, o) = n.multipliedReportingOverflow(by: f)
            if o { return Int.max }
            n = m
        }
        return n
    }
}

/// Decodes TIFF files with libtiff: 1-bit (to 0/1), 8, 16 or 32-bit unsigned or signed integers,
/// 32 or 64-bit floats; one or several samples per pixel, contiguous or planar; strips or tiles;
/// either byte order; classic or BigTIFF; every compression this libtiff is built with. Every
/// full-resolution page becomes more channels (pages of a different size or type are an error).
public enum TIFFDecoder {
    /// Decodes a TIFF held in memory. `path` names the source in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String,
                              limits: DecodeLimits = .standard) throws -> PixelImage {
        _ = installTIFFGlobalHandlers
        guard let base = bytes.baseAddress, bytes.count >= 8 else {
            throw CytoError(.undecodable, bytes.isEmpty ? "file is empty" : "truncated TIFF: \(bytes.count) bytes", path: path)
        }
        let messages = TIFFMessages()
        messages.fileSize = bytes.count
        let user = Unmanaged.passUnretained(messages).toOpaque()
        var source = MemorySource(base: base, size: bytes.count, offset: 0)
        guard let opts = TIFFOpenOptionsAlloc() else { throw CytoError(.internal, "libtiff could not allocate options", path: path) }
        defer { TIFFOpenOptionsFree(opts) }
        TIFFOpenOptionsSetErrorHandlerExtR(opts, tiffErrorHandler, user)
        TIFFOpenOptionsSetWarningHandlerExtR(opts, tiffWarningHandler, nil)
        TIFFOpenOptionsSetMaxSingleMemAlloc(opts, tmsize_t(min(limits.maxBytes, Int(Int32.max)) + (1 << 20)))

        return try withExtendedLifetime(messages) {
            try withUnsafeMutablePointer(to: &source) { src -> PixelImage in
                guard let tif = TIFFClientOpenExt(path, "r", UnsafeMutableRawPointer(src), memRead, memWriteRefused,
                                                  memSeek, memClose, memSize, memMap, memUnmap, opts) else {
                    throw CytoError(.undecodable, "not a readable TIFF: \(messages.lastError)", path: path)
                }
                defer { TIFFClose(tif) }
                return try decodePages(tif, messages: messages, path: path, limits: limits)
            }
        }
    }

    private static func decodePages(_ tif: OpaquePointer, messages: TIFFMessages, path: String,
                                    limits: DecodeLimits) throws -> PixelImage {
        var pages: [[UInt8]] = []
        var first: TIFFPage?
        var channels = 0, total = 0, index = 0
        while true {
            let page = try describe(tif, index: index, messages: messages, path: path)
            if let page {
                if let f = first {
                    guard page.width == f.width && page.height == f.height else {
                        throw CytoError(.shapeMismatch, "channels of different sizes: page \(index) is \(page.width)x\(page.height), page 0 is \(f.width)x\(f.height)", path: path)
                    }
                    guard page.type == f.type else {
                        throw CytoError(.shapeMismatch, "channels of different sample types: page \(index) holds \(page.type.rawValue), page 0 \(f.type.rawValue)", path: path)
                    }
                } else { first = page }
                channels += page.samples
                guard channels <= limits.maxChannels else {
                    throw CytoError(.invalidInput, "more than \(limits.maxChannels) channels (pages x samples)", path: path)
                }
                let (sum, overflow) = total.addingReportingOverflow(page.pageBytes)
                guard !overflow, sum <= limits.maxBytes else {
                    throw CytoError(.invalidInput, "image too large: \(page.width)x\(page.height)x\(channels) \(page.type.rawValue) is over the limit of \(limits.maxBytes) bytes", path: path)
                }
                total = sum
                try checkPlausible(tif, page, path: path)
                pages.append(try [UInt8](unsafeUninitializedCapacity: page.pageBytes) { buf, count in
                    try decodePage(tif, page, index: index, into: UnsafeMutableRawPointer(buf.baseAddress!), messages: messages, path: path)
                    count = page.pageBytes
                })
            }
            messages.errors.removeAll()
            if TIFFReadDirectory(tif) != 1 {
                if !messages.errors.isEmpty {
                    throw CytoError(.undecodable, "cannot read page \(index + 1): \(messages.lastError)", path: path)
                }
                break
            }
            index += 1
        }
        guard let f = first else {
            throw CytoError(.undecodable, "no full-resolution image in the file", path: path)
        }
        let storage = pages.count == 1 ? pages[0] : pages.flatMap { $0 }
        return PixelImage(width: f.width, height: f.height, channels: channels, sampleType: f.type, storage: storage)
    }

    /// The current page's layout, or nil for a reduced-resolution page (a thumbnail or pyramid
    /// level), which is skipped as other readers do.
    static func describe(_ tif: OpaquePointer, index: Int, messages: TIFFMessages, path: String) throws -> TIFFPage? {
        func fault(_ kind: CytoError.Kind, _ m: String) -> CytoError {
            CytoError(kind, "page \(index): \(m)", path: path)
        }
        let subfile = tiffField(tif, TIFFTAG_SUBFILETYPE, UInt32(0)) ?? 0
        if index > 0 && subfile & UInt32(FILETYPE_REDUCEDIMAGE) != 0 { return nil }
        var p = TIFFPage()
        guard let w = tiffField(tif, TIFFTAG_IMAGEWIDTH, UInt32(0), defaulted: false),
              let h = tiffField(tif, TIFFTAG_IMAGELENGTH, UInt32(0), defaulted: false) else {
            throw fault(.undecodable, "no image width or length tag")
        }
        guard w > 0 && h > 0 else { throw fault(.undecodable, "empty image (\(w)x\(h))") }
        p.width = Int(w); p.height = Int(h)
        let depth = tiffField(tif, TIFFTAG_IMAGEDEPTH, UInt32(1)) ?? 1
        if depth > 1 { throw fault(.unsupported, "volumetric TIFF (ImageDepth \(depth))") }
        p.samples = Int(tiffField(tif, TIFFTAG_SAMPLESPERPIXEL, UInt16(1)) ?? 1)
        guard p.samples >= 1 else { throw fault(.undecodable, "zero samples per pixel") }
        p.bits = Int(tiffField(tif, TIFFTAG_BITSPERSAMPLE, UInt16(1)) ?? 1)
        let format = tiffField(tif, TIFFTAG_SAMPLEFORMAT, UInt16(SAMPLEFORMAT_UINT)) ?? UInt16(SAMPLEFORMAT_UINT)
        p.compression = tiffField(tif, TIFFTAG_COMPRESSION, UInt16(COMPRESSION_NONE)) ?? UInt16(COMPRESSION_NONE)
        let photometric = tiffField(tif, TIFFTAG_PHOTOMETRIC, UInt16(PHOTOMETRIC_MINISBLACK), defaulted: false)
            ?? UInt16(PHOTOMETRIC_MINISBLACK)
        let planar = tiffField(tif, TIFFTAG_PLANARCONFIG, UInt16(PLANARCONFIG_CONTIG)) ?? UInt16(PLANARCONFIG_CONTIG)
        p.planar = planar == UInt16(PLANARCONFIG_SEPARATE) && p.samples > 1
        p.tiled = TIFFIsTiled(tif) != 0

        switch (Int32(format), p.bits) {
        case (SAMPLEFORMAT_UINT, 1), (SAMPLEFORMAT_VOID, 1): p.type = .uint8
        case (SAMPLEFORMAT_UINT, 8), (SAMPLEFORMAT_VOID, 8): p.type = .uint8
        case (SAMPLEFORMAT_UINT, 16), (SAMPLEFORMAT_VOID, 16): p.type = .uint16
        case (SAMPLEFORMAT_UINT, 32), (SAMPLEFORMAT_VOID, 32): p.type = .uint32
        case (SAMPLEFORMAT_INT, 8): p.type = .int8
        case (SAMPLEFORMAT_INT, 16): p.type = .int16
        case (SAMPLEFORMAT_INT, 32): p.type = .int32
        case (SAMPLEFORMAT_IEEEFP, 32): p.type = .float32
        case (SAMPLEFORMAT_IEEEFP, 64): p.type = .float64
        default:
            let names: [Int32: String] = [SAMPLEFORMAT_UINT: "unsigned integer", SAMPLEFORMAT_INT: "signed integer",
                                          SAMPLEFORMAT_IEEEFP: "floating point", SAMPLEFORMAT_VOID: "untyped",
                                          SAMPLEFORMAT_COMPLEXINT: "complex integer", SAMPLEFORMAT_COMPLEXIEEEFP: "complex floating point"]
            throw fault(.unsupported, "unsupported sample format: \(p.bits)-bit \(names[Int32(format)] ?? "format \(format)") samples")
        }
        if p.bits == 1 && (p.samples > 1 || p.tiled) {
            throw fault(.unsupported, "unsupported sample format: 1-bit samples with \(p.samples) samples per pixel\(p.tiled ? " in tiles" : "")")
        }
        guard TIFFIsCODECConfigured(p.compression) != 0 else {
            throw fault(.unsupported, "compression \(tiffCompressionName(p.compression)) (\(p.compression)) is not built into this libtiff")
        }
        switch Int32(photometric) {
        case PHOTOMETRIC_LOGL, PHOTOMETRIC_LOGLUV:
            throw fault(.unsupported, "SGI LogL/LogLuv high-dynamic-range TIFF")
        case PHOTOMETRIC_YCBCR:
            if Int32(p.compression) == COMPRESSION_JPEG {
                // Let libjpeg convert YCbCr to RGB, as every viewer does.
                _ = withVaList([Int32(JPEGCOLORMODE_RGB)]) { TIFFVSetField(tif, UInt32(TIFFTAG_JPEGCOLORMODE), $0) }
            } else {
                var h: UInt16 = 1, v: UInt16 = 1
                let ok = withUnsafeMutablePointer(to: &h) { hp in withUnsafeMutablePointer(to: &v) { vp in
                    withVaList([hp, vp]) { TIFFVGetFieldDefaulted(tif, UInt32(TIFFTAG_YCBCRSUBSAMPLING), $0) } } }
                if ok == 1 && (h != 1 || v != 1) { throw fault(.unsupported, "subsampled YCbCr (\(h)x\(v))") }
            }
        default: break
        }
        if p.tiled {
            p.tileWidth = Int(tiffField(tif, TIFFTAG_TILEWIDTH, UInt32(0)) ?? 0)
            p.tileHeight = Int(tiffField(tif, TIFFTAG_TILELENGTH, UInt32(0)) ?? 0)
            guard p.tileWidth > 0 && p.tileHeight > 0 else { throw fault(.undecodable, "tile of size \(p.tileWidth)x\(p.tileHeight)") }
        } else {
            let rps = tiffField(tif, TIFFTAG_ROWSPERSTRIP, UInt32.max) ?? UInt32.max
            p.rowsPerStrip = rps == 0 ? p.height : min(Int(rps), p.height)
        }
        return p
    }

    /// Refuses a header that claims more pixels than the stored data could expand to.
    private static func checkPlausible(_ tif: OpaquePointer, _ p: TIFFPage, path: String) throws {
        guard p.pageBytes > 1 << 20, let ratio = maxExpansion(p.compression) else { return }
        let n = p.tiled ? TIFFNumberOfTiles(tif) : TIFFNumberOfStrips(tif)
        var stored: UInt64 = 0
        for i in 0..<n { stored &+= TIFFGetStrileByteCount(tif, i) }
        let packed = p.bits == 1 ? p.pageBytes / 8 : p.pageBytes
        if UInt64(packed) > (stored &+ 4096).multipliedReportingOverflow(by: UInt64(ratio)).partialValue {
            throw CytoError(.undecodable, "header claims \(p.width)x\(p.height)x\(p.samples) \(p.type.rawValue) samples but the file stores only \(stored) bytes of \(tiffCompressionName(p.compression)) data", path: path)
        }
    }

    /// Decodes the current page into `dst` (planar, pageBytes long). Every byte of `dst` is written
    /// or an error is thrown.
    static func decodePage(_ tif: OpaquePointer, _ p: TIFFPage, index: Int, into dst: UnsafeMutableRawPointer,
                           messages: TIFFMessages, path: String) throws {
        func fault(_ what: String, strile: UInt32) -> CytoError {
            var reason = messages.lastError
            if messages.errors.isEmpty {
                // libtiff is silent when mapped data ends early: say where the data should be.
                let off = TIFFGetStrileOffset(tif, strile), n = TIFFGetStrileByteCount(tif, strile)
                let size = UInt64(messages.fileSize)
                reason = off &+ n > size || off == 0
                    ? "its \(n) bytes at offset \(off) lie beyond the end of the \(size)-byte file (truncated?)"
                    : "corrupt data (\(n) bytes at offset \(off))"
            }
            return CytoError(.undecodable, "page \(index): \(what): \(reason)", path: path)
        }
        let size = p.bytesPerSample
        let planeBytes = p.width * p.height * size
        let planes = p.planar ? p.samples : 1
        let spp = p.planar ? 1 : p.samples  // samples interleaved in each stored unit
        if p.tiled {
            let tileBytes = Int(TIFFTileSize64(tif))
            let expected = p.tileWidth * p.tileHeight * spp * size
            guard tileBytes == expected, tileBytes <= max(4 * p.pageBytes, 1 << 24) else {
                throw CytoError(.undecodable, "page \(index): tile \(p.tileWidth)x\(p.tileHeight) (\(tileBytes) bytes) is implausible for a \(p.width)x\(p.height) image", path: path)
            }
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: tileBytes, alignment: 16)
            defer { scratch.deallocate() }
            for plane in 0..<planes {
                var y = 0
                while y < p.height {
                    var x = 0
                    let rows = min(p.tileHeight, p.height - y)
                    while x < p.width {
                        let cols = min(p.tileWidth, p.width - x)
                        let tile = TIFFComputeTile(tif, UInt32(x), UInt32(y), 0, UInt16(plane))
                        let n = TIFFReadEncodedTile(tif, tile, scratch, tmsize_t(tileBytes))
                        guard n == tileBytes else { throw fault("cannot decode tile \(tile)", strile: tile) }
                        let d = dst + plane * planeBytes + (y * p.width + x) * size
                        copyBlock(from: scratch, srcRowSamples: p.tileWidth * spp, rows: rows, cols: cols, spp: spp,
                                  size: size, to: d, dstRowSamples: p.width, planeBytes: planeBytes)
                        x += p.tileWidth
                    }
                    y += p.tileHeight
                }
            }
            return
        }
        let rps = p.rowsPerStrip
        let stripsPerPlane = (p.height + rps - 1) / rps
        let nstrips = Int(TIFFNumberOfStrips(tif))
        guard nstrips == stripsPerPlane * planes else {
            throw CytoError(.undecodable, "page \(index): \(nstrips) strips where \(stripsPerPlane * planes) are needed for \(p.height) rows at \(rps) rows per strip", path: path)
        }
        let packedRow = p.bits == 1 ? (p.width + 7) / 8 : p.width * spp * size
        let direct = p.bits != 1 && spp == 1  // strip rows are already plane rows
        var scratch: UnsafeMutableRawPointer? = nil
        if !direct { scratch = UnsafeMutableRawPointer.allocate(byteCount: rps * packedRow, alignment: 16) }
        defer { scratch?.deallocate() }
        for plane in 0..<planes {
            for s in 0..<stripsPerPlane {
                let y = s * rps
                let rows = min(rps, p.height - y)
                let want = rows * packedRow
                let strip = UInt32(plane * stripsPerPlane + s)
                let target = direct ? dst + plane * planeBytes + y * packedRow : scratch!
                let n = TIFFReadEncodedStrip(tif, strip, target, tmsize_t(want))
                guard n == want else {
                    throw fault(n < 0 ? "cannot decode strip \(strip)" : "strip \(strip) holds \(n) of \(want) bytes (truncated)", strile: strip)
                }
                if direct { continue }
                if p.bits == 1 {
                    let src = scratch!.assumingMemoryBound(to: UInt8.self)
                    let out = (dst + y * p.width).assumingMemoryBound(to: UInt8.self)
                    for r in 0..<rows {
                        for x in 0..<p.width {
                            out[r * p.width + x] = (src[r * packedRow + (x >> 3)] >> UInt8(7 - (x & 7))) & 1
                        }
                    }
                } else {
                    copyBlock(from: scratch!, srcRowSamples: p.width * spp, rows: rows, cols: p.width, spp: spp,
                              size: size, to: dst + y * p.width * size, dstRowSamples: p.width, planeBytes: planeBytes)
                }
            }
        }
    }

    /// Copies `rows` x `cols` pixels of `spp` interleaved samples into `spp` planes.
    @inline(__always)
    static func copyBlock(from src: UnsafeRawPointer, srcRowSamples: Int, rows: Int, cols: Int, spp: Int, size: Int,
                          to dst: UnsafeMutableRawPointer, dstRowSamples: Int, planeBytes: Int) {
        func run<T>(_: T.Type) {
            let s = src.assumingMemoryBound(to: T.self)
            let d = dst.assumingMemoryBound(to: T.self)
            let plane = planeBytes / MemoryLayout<T>.stride
            for r in 0..<rows {
                let sr = s + r * srcRowSamples, dr = d + r * dstRowSamples
                switch spp {
                case 1: dr.update(from: sr, count: cols)
                case 3:  // the common RGB-like layout: one sequential pass over the source
                    let d1 = dr + plane, d2 = dr + 2 * plane
                    for x in 0..<cols { dr[x] = sr[3 * x]; d1[x] = sr[3 * x + 1]; d2[x] = sr[3 * x + 2] }
                default:
                    for c in 0..<spp {
                        let dc = dr + c * plane
                        for x in 0..<cols { dc[x] = sr[x * spp + c] }
                    }
                }
            }
        }
        switch size {
        case 1: run(UInt8.self)
        case 2: run(UInt16.self)
        case 4: run(UInt32.self)
        default: run(UInt64.self)
        }
    }
}
