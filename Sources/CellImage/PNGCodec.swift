#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPNGShim
import CytoCore

/// Decoding state handed through the C shim's callbacks.
private final class PNGDecodeContext {
    let limits: DecodeLimits
    let fileBytes: Int
    var buffer: UnsafeMutableRawPointer?
    var bytes = 0
    var refusal: String?
    var refusalKind = CytoError.Kind.invalidInput
    init(limits: DecodeLimits, fileBytes: Int) { self.limits = limits; self.fileBytes = fileBytes }
}

/// Reads and writes PNG with libpng (through CPNGShim, which keeps libpng's errors from aborting).
/// Reading gives the file's own samples: 8 or 16-bit gray, gray+alpha, RGB or RGBA; palette
/// images expand to RGB(A) and 1/2/4-bit gray to 8 bits. Gamma and colour chunks are ignored,
/// so no conversion touches the values.
public enum PNGCodec {
    /// Decodes a PNG held in memory into a planar image; `path` names the source in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String,
                              limits: DecodeLimits = .standard) throws -> PixelImage {
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            throw CytoError(.undecodable, "file is empty", path: path)
        }
        let ctx = PNGDecodeContext(limits: limits, fileBytes: bytes.count)
        var info = cyto_png_info()
        var message = [CChar](repeating: 0, count: 256)
        let allocate: cyto_png_allocate_fn = { context, info, bytes in
            let ctx = Unmanaged<PNGDecodeContext>.fromOpaque(context!).takeUnretainedValue()
            let i = info!.pointee
            if Int(i.channels) > ctx.limits.maxChannels || bytes > ctx.limits.maxBytes {
                ctx.refusal = "image too large: \(i.width)x\(i.height)x\(i.channels) \(i.bit_depth)-bit is over the limit of \(ctx.limits.maxBytes) bytes"
                return nil
            }
            // Deflate expands at most ~1032:1, so a larger claim cannot be backed by this file.
            if bytes > 1 << 20 && bytes / 1100 > ctx.fileBytes {
                ctx.refusalKind = .undecodable
                ctx.refusal = "header claims \(i.width)x\(i.height)x\(i.channels) \(i.bit_depth)-bit samples but the file holds only \(ctx.fileBytes) bytes"
                return nil
            }
            ctx.buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
            ctx.bytes = bytes
            return ctx.buffer
        }
        let warn: cyto_png_warning_fn = { _, text in
            ImageWarnings.log("libpng", text.map { String(cString: $0) } ?? "")
        }
        let rc = withExtendedLifetime(ctx) {
            cyto_png_decode(base.assumingMemoryBound(to: UInt8.self), bytes.count, &info, allocate, warn,
                            Unmanaged.passUnretained(ctx).toOpaque(), &message, message.count)
        }
        defer { ctx.buffer?.deallocate() }
        if rc != 0 {
            if let r = ctx.refusal { throw CytoError(ctx.refusalKind, r, path: path) }
            let text = cText(message)
            throw CytoError(.undecodable, "not a readable PNG: \(text.isEmpty ? "libpng reported no reason" : text)", path: path)
        }
        guard let buffer = ctx.buffer else { throw CytoError(.internal, "PNG decoder returned no pixels", path: path) }
        let w = Int(info.width), h = Int(info.height), c = Int(info.channels)
        let type: SampleType = info.bit_depth == 16 ? .uint16 : .uint8
        let planeBytes = w * h * type.size
        let storage = [UInt8](unsafeUninitializedCapacity: planeBytes * c) { out, count in
            TIFFDecoder.copyBlock(from: buffer, srcRowSamples: w * c, rows: h, cols: w, spp: c, size: type.size,
                                  to: UnsafeMutableRawPointer(out.baseAddress!), dstRowSamples: w, planeBytes: planeBytes)
            count = planeBytes * c
        }
        return PixelImage(width: w, height: h, channels: c, sampleType: type, storage: storage)
    }

    /// Encodes an 8 or 16-bit image of 1 to 4 channels (gray, gray+alpha, RGB, RGBA) as PNG bytes.
    public static func encode(_ image: PixelImage, compressionLevel: Int = 6, path: String? = nil) throws -> [UInt8] {
        guard image.sampleType == .uint8 || image.sampleType == .uint16 else {
            throw CytoError(.unsupported, "PNG holds 8 or 16-bit unsigned samples, not \(image.sampleType.rawValue)", path: path)
        }
        guard (1...4).contains(image.channels) else {
            throw CytoError(.unsupported, "PNG holds 1 to 4 channels, not \(image.channels)", path: path)
        }
        let interleaved = image.interleavedBytes
        var out: UnsafeMutablePointer<UInt8>? = nil
        var outSize = 0
        var message = [CChar](repeating: 0, count: 256)
        let rc = interleaved.withUnsafeBytes { px in
            cyto_png_encode(px.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels),
                            Int32(image.sampleType.size * 8), Int32(compressionLevel), &out, &outSize, &message, message.count)
        }
        defer { free(out) }
        guard rc == 0, let out else {
            throw CytoError(.io, "cannot encode PNG: \(cText(message))", path: path)
        }
        return Array(UnsafeBufferPointer(start: out, count: outSize))
    }
}
