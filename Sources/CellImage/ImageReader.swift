import CytoCore

/// Where an image's channels come from: one multi-channel file (samples and pages are channels,
/// optionally selected and reordered), or one single-channel file per channel, in model order.
public enum ImageSource: Sendable, Hashable {
    /// One file; `channels` picks and orders its channels (nil: all, in file order).
    case file(String, channels: [Int]? = nil)
    /// One file per channel (e.g. BBBC021's DNA, tubulin and actin images), in model order.
    case channelFiles([String])

    /// The paths this source reads, for messages.
    public var paths: [String] {
        switch self {
        case .file(let p, _): return [p]
        case .channelFiles(let ps): return ps
        }
    }
}

/// The formats recognised by their first bytes.
public enum ImageFormat: String, Sendable {
    case tiff, png

    /// The format of a file from its first bytes; the error names what the file looks like.
    public static func detect(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ImageFormat {
        guard !bytes.isEmpty else { throw CytoError(.undecodable, "file is empty", path: path) }
        let b = Array(bytes.prefix(8))
        func starts(_ m: [UInt8]) -> Bool { b.count >= m.count && Array(b.prefix(m.count)) == m }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A])
            || starts([0x49, 0x49, 0x2B, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2B]) { return .tiff }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if starts([0xFF, 0xD8, 0xFF]) { throw CytoError(.unsupported, "JPEG files are not supported (TIFF and PNG are)", path: path) }
        if b.count < 4 { throw CytoError(.undecodable, "truncated file (\(b.count) bytes)", path: path) }
        let hex = b.prefix(4).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
        throw CytoError(.undecodable, "not a TIFF or PNG file (starts with \(hex))", path: path)
    }
}

/// Reads TIFF and PNG files (recognised by content, not by name) into planar images.
public enum ImageReader {
    /// Decodes an image held in memory.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String,
                              limits: DecodeLimits = .standard) throws -> PixelImage {
        switch try ImageFormat.detect(bytes, path: path) {
        case .tiff: return try TIFFDecoder.decode(bytes, path: path, limits: limits)
        case .png: return try PNGCodec.decode(bytes, path: path, limits: limits)
        }
    }

    /// Reads and decodes one file.
    public static func read(path: String, limits: DecodeLimits = .standard) throws -> PixelImage {
        let bytes = try readFileBytes(path, limit: limits.maxBytes &* 2 &+ (64 << 20))
        return try bytes.withUnsafeBytes { try decode($0, path: path, limits: limits) }
    }

    /// Reads a source's channels: a file's selected channels, or the channel files stacked in
    /// order (each must hold exactly one channel, all of one size and sample type).
    public static func read(_ source: ImageSource, limits: DecodeLimits = .standard) throws -> PixelImage {
        switch source {
        case .file(let path, let channels):
            let image = try read(path: path, limits: limits)
            guard let channels else { return image }
            return try image.selecting(channels: channels, path: path)
        case .channelFiles(let paths):
            guard !paths.isEmpty else { throw CytoError(.invalidInput, "no channel files given") }
            var images: [PixelImage] = []
            for (i, p) in paths.enumerated() {
                let im = try read(path: p, limits: limits)
                guard im.channels == 1 else {
                    throw CytoError(.shapeMismatch, "wrong channel count: a channel file must hold 1 channel, this one holds \(im.channels)", path: p, index: i)
                }
                images.append(im)
            }
            return try PixelImage.stacking(images, paths: paths)
        }
    }
}
