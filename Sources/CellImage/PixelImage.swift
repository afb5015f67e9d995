import CytoCore

/// The numeric type of a decoded sample, as stored in the file (1-bit TIFFs decode to uint8 0/1).
public enum SampleType: String, Sendable, CaseIterable {
    case uint8, uint16, uint32, int8, int16, int32, float32, float64

    /// Bytes per sample.
    public var size: Int {
        switch self {
        case .uint8, .int8: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .float64: return 8
        }
    }

    /// The matching NumPy dtype, for `image dump`.
    public var npyType: NPYType {
        switch self {
        case .uint8: return .uint8
        case .uint16: return .uint16
        case .uint32: return .uint32
        case .int8: return .int8
        case .int16: return .int16
        case .int32: return .int32
        case .float32: return .float32
        case .float64: return .float64
        }
    }

    /// The largest value of an integer type (the "full scale" of its bit depth); 1 for floats,
    /// whose microscopy convention is [0, 1].
    public var fullScale: Double {
        switch self {
        case .uint8: return 255
        case .uint16: return 65535
        case .uint32: return 4_294_967_295
        case .int8: return 127
        case .int16: return 32767
        case .int32: return 2_147_483_647
        case .float32, .float64: return 1
        }
    }
}

/// A decoded image in the file's own sample type, planar: `channels` planes of `height` rows of
/// `width` samples (CHW), native byte order. Keeping the file's type lets `image dump` compare
/// bit for bit with other readers; `floatPlanes` converts for the model.
public struct PixelImage: Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var sampleType: SampleType
    /// channels * height * width samples of `sampleType`, CHW.
    public var storage: [UInt8]

    /// An image of zeros.
    public init(width: Int, height: Int, channels: Int, sampleType: SampleType) {
        self.width = width; self.height = height; self.channels = channels; self.sampleType = sampleType
        storage = [UInt8](repeating: 0, count: width * height * channels * sampleType.size)
    }

    /// An image over existing planar bytes (count must be width*height*channels*size).
    public init(width: Int, height: Int, channels: Int, sampleType: SampleType, storage: [UInt8]) {
        precondition(storage.count == width * height * channels * sampleType.size)
        self.width = width; self.height = height; self.channels = channels
        self.sampleType = sampleType; self.storage = storage
    }

    /// Samples in one plane.
    public var planeCount: Int { width * height }
    /// Bytes in one plane.
    public var planeBytes: Int { width * height * sampleType.size }

    /// The sample at (channel, y, x) as a Double (for tests and small tools, not hot loops).
    public func value(channel c: Int, y: Int, x: Int) -> Double {
        let i = (c * height + y) * width + x
        return storage.withUnsafeBytes { raw in PixelImage.load(raw.baseAddress!, index: i, type: sampleType) }
    }

    @inline(__always)
    static func load(_ p: UnsafeRawPointer, index i: Int, type: SampleType) -> Double {
        switch type {
        case .uint8: return Double(p.load(fromByteOffset: i, as: UInt8.self))
        case .uint16: return Double(p.load(fromByteOffset: i * 2, as: UInt16.self))
        case .uint32: return Double(p.load(fromByteOffset: i * 4, as: UInt32.self))
        case .int8: return Double(p.load(fromByteOffset: i, as: Int8.self))
        case .int16: return Double(p.load(fromByteOffset: i * 2, as: Int16.self))
        case .int32: return Double(p.load(fromByteOffset: i * 4, as: Int32.self))
        case .float32: return Double(p.load(fromByteOffset: i * 4, as: Float.self))
        case .float64: return p.load(fromByteOffset: i * 8, as: Double.self)
        }
    }

    /// Converts `count` samples starting at sample `start` to Float, writing them to `out`.
    /// One switch per call, a tight loop per type. NaN samples become 0.
    public func convert(start: Int, count: Int, to out: UnsafeMutablePointer<Float>) {
        storage.withUnsafeBytes { raw in
            PixelImage.convert(raw.baseAddress!, type: sampleType, start: start, count: count, to: out)
        }
    }

    @inline(__always)
    static func convert(_ base: UnsafeRawPointer, type: SampleType, start: Int, count: Int,
                        to out: UnsafeMutablePointer<Float>) {
        func run<T>(_: T.Type, _ f: (T) -> Float) {
            let p = (base + start * MemoryLayout<T>.stride).assumingMemoryBound(to: T.self)
            for i in 0..<count { out[i] = f(p[i]) }
        }
        switch type {
        case .uint8: run(UInt8.self) { Float($0) }
        case .uint16: run(UInt16.self) { Float($0) }
        case .uint32: run(UInt32.self) { Float($0) }
        case .int8: run(Int8.self) { Float($0) }
        case .int16: run(Int16.self) { Float($0) }
        case .int32: run(Int32.self) { Float($0) }
        case .float32: run(Float.self) { $0.isNaN ? 0 : $0 }
        case .float64: run(Double.self) { $0.isNaN ? 0 : Float($0) }
        }
    }

    /// All samples as Float, CHW (raw intensities, un-normalized).
    public var floatPlanes: [Float] {
        let n = channels * planeCount
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            if n > 0 { convert(start: 0, count: n, to: buf.baseAddress!) }
            count = n
        }
    }

    /// The samples interleaved channels-last (HWC) in the file's own type: the layout of
    /// `image dump` and of most Python readers.
    public var interleavedBytes: [UInt8] {
        let s = sampleType.size, n = planeCount
        if channels == 1 { return storage }
        var out = [UInt8](repeating: 0, count: storage.count)
        storage.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                for c in 0..<channels {
                    for i in 0..<n {
                        let from = (c * n + i) * s, to = (i * channels + c) * s
                        for b in 0..<s { dst[to + b] = src[from + b] }
                    }
                }
            }
        }
        return out
    }

    /// A new image holding the listed channels of this one, in that order (a channel map:
    /// `selecting([0, 2, 1])` swaps the last two). Errors name the missing channel.
    public func selecting(channels list: [Int], path: String? = nil) throws -> PixelImage {
        var out = [UInt8]()
        out.reserveCapacity(list.count * planeBytes)
        for c in list {
            guard c >= 0 && c < channels else {
                throw CytoError(.shapeMismatch, "channel \(c) requested but the image has \(channels) channel(s)", path: path)
            }
            out.append(contentsOf: storage[(c * planeBytes)..<((c + 1) * planeBytes)])
        }
        return PixelImage(width: width, height: height, channels: list.count, sampleType: sampleType, storage: out)
    }

    /// Stacks the channels of several images of the same size and sample type (one file per
    /// channel). Errors name the file whose size or type differs.
    public static func stacking(_ images: [PixelImage], paths: [String]) throws -> PixelImage {
        guard let first = images.first else { throw CytoError(.invalidInput, "no channel images given") }
        var out = [UInt8]()
        out.reserveCapacity(images.reduce(0) { $0 + $1.storage.count })
        for (i, im) in images.enumerated() {
            let p = i < paths.count ? paths[i] : nil
            guard im.width == first.width && im.height == first.height else {
                throw CytoError(.shapeMismatch, "channels of different sizes: \(im.width)x\(im.height), but the first channel is \(first.width)x\(first.height)", path: p, index: i)
            }
            guard im.sampleType == first.sampleType else {
                throw CytoError(.shapeMismatch, "channels of different sample types: \(im.sampleType.rawValue), but the first channel is \(first.sampleType.rawValue)", path: p, index: i)
            }
            out.append(contentsOf: im.storage)
        }
        return PixelImage(width: first.width, height: first.height,
                          channels: images.reduce(0) { $0 + $1.channels }, sampleType: first.sampleType, storage: out)
    }
}
