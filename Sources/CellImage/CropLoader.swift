import CytoCore

/// What turns a raw crop into a model input: the model's input size and channel count, the
/// window cut from a field, the normalization, the intensity transfer and the resizing. Stored
/// with a model as JSON.
public struct Preprocessing: Sendable, Equatable {
    /// Side of the model's square input (CytoGAN: 96).
    public var size: Int
    /// Channels the model takes (BBBC021: DNA, tubulin, actin).
    public var channels: Int
    /// Side of the window cut around an object's centre or box in a field; nil: `size` for a
    /// centre, the box's square envelope for a box.
    public var cropSize: Int?
    public var normalization: Normalization
    /// Applied after the normalization (linear: the normalization's values as they are).
    public var transfer: IntensityTransfer
    public var resize: ResizeMode

    public init(size: Int = 96, channels: Int = 3, cropSize: Int? = nil,
                normalization: Normalization = .perCropMax, transfer: IntensityTransfer = .linear, resize: ResizeMode = .resample) {
        self.size = size; self.channels = channels; self.cropSize = cropSize
        self.normalization = normalization; self.transfer = transfer; self.resize = resize
    }

    /// The CytoGAN reference: 96x96, 3 channels, per-crop maximum, area/bilinear resampling.
    public static let cytogan = Preprocessing()

    public var json: JSON {
        var o: [String: JSON] = ["size": JSON(size), "channels": JSON(channels),
                                 "normalization": normalization.json, "resize": .string(resize.rawValue)]
        if let cropSize { o["crop_size"] = JSON(cropSize) }
        if transfer != .linear { o["transfer"] = transfer.json }
        return .object(o)
    }

    /// Parses the `json` form; errors name the offending field.
    public init(json: JSON) throws {
        guard case .object(let o) = json else {
            throw CytoError(.invalidInput, "preprocessing must be an object, got \(json.typeName)", field: "preprocessing")
        }
        func int(_ k: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let v = o[k], !v.isNull else { return nil }
            guard let i = v.intValue, range.contains(i) else {
                throw CytoError(.invalidInput, "'\(k)' must be an integer in \(range.lowerBound)...\(range.upperBound)", field: k)
            }
            return i
        }
        size = try int("size", 1...4096) ?? 96
        channels = try int("channels", 1...64) ?? 3
        cropSize = try int("crop_size", 1...65536)
        normalization = try o["normalization"].map { try Normalization(json: $0) } ?? .perCropMax
        transfer = try o["transfer"].flatMap { $0.isNull ? nil : try IntensityTransfer(json: $0) } ?? .linear
        if let r = o["resize"], !r.isNull {
            guard let s = r.stringValue, let m = ResizeMode(rawValue: s) else {
                throw CytoError(.invalidInput, "'resize' must be one of \(ResizeMode.allCases.map(\.rawValue).joined(separator: ", "))", field: "resize")
            }
            resize = m
        } else { resize = .resample }
        try normalization.validate(channels: channels)
    }

    /// Floats in one model input (channels x size x size).
    public var inputCount: Int { channels * size * size }

    /// Throws unless model values can be mapped back to the crops' intensity units (the
    /// normalization's range is fixed), naming the normalization.
    public func checkInvertible() throws { try normalization.checkInvertible(channels: channels) }

    /// Maps model values (CHW, `channels` planes of `planeCount`) back to the crops' intensity
    /// units in place: the transfer's inverse, then the normalization's.
    public func toCropUnits(_ planes: UnsafeMutablePointer<Float>, planeCount: Int) throws {
        try checkInvertible()
        transfer.invert(planes, count: channels * planeCount)
        try normalization.invert(planes, channels: channels, planeCount: planeCount)
    }
}

/// Decodes crop specs into model inputs: read (a field through the cache), map channels, cut the
/// window, mask, normalize to [-1, 1], apply the intensity transfer, resize to the model's size; CHW Float32. Holds scratch
/// buffers and resamplers reused across crops, so use one loader per thread (the cache may be
/// shared).
public final class CropLoader {
    public let preprocessing: Preprocessing
    public let cache: FieldCache
    public let limits: DecodeLimits
    private var planes: [Float] = []
    private var scratch: [Float] = []
    private var resamplers: [Int: Resampler] = [:]

    public init(preprocessing: Preprocessing = .cytogan, cache: FieldCache = FieldCache(), limits: DecodeLimits = .standard) {
        self.preprocessing = preprocessing; self.cache = cache; self.limits = limits
    }

    /// The raw crop a spec selects, in the file's sample type: channels mapped, window cut (zero
    /// outside the field), mask applied. Checks the channel count against the preprocessing.
    public func raw(_ spec: CropSpec) throws -> PixelImage {
        let field: PixelImage
        if spec.region == .whole && spec.mask == nil {
            field = try ImageReader.read(spec.source, limits: limits)
        } else {
            field = try cache.image(spec.source, limits: limits)
        }
        let path = spec.source.paths.first
        guard field.channels == preprocessing.channels else {
            throw CytoError(.shapeMismatch, "wrong channel count: the image has \(field.channels) channel(s), the model takes \(preprocessing.channels)", path: path)
        }
        let size = spec.region == .whole ? nil : (preprocessing.cropSize ?? (spec.region.isCentre ? preprocessing.size : nil))
        let rect = try Cropping.window(for: spec.region, fieldWidth: field.width, fieldHeight: field.height, size: size, path: path)
        let (cells, o1) = rect.width.multipliedReportingOverflow(by: rect.height)
        let (bytes, o2) = cells.multipliedReportingOverflow(by: field.channels * field.sampleType.size)
        guard !o1, !o2, bytes <= limits.maxBytes else {
            throw CytoError(.invalidInput, "crop window \(rect.width)x\(rect.height) is over the limit of \(limits.maxBytes) bytes", path: path)
        }
        var crop = field.cut(rect)
        if let m = spec.mask {
            let mask = try cache.image(.file(m.path), limits: limits)
            guard mask.channels == 1 else {
                throw CytoError(.shapeMismatch, "wrong channel count: a label mask holds 1 channel, this one \(mask.channels)", path: m.path)
            }
            guard mask.width == field.width, mask.height == field.height else {
                throw CytoError(.shapeMismatch, "mask is \(mask.width)x\(mask.height) but the field is \(field.width)x\(field.height)", path: m.path)
            }
            let window = mask.cut(rect).floatPlanes
            let label: Float
            if let l = m.label {
                label = Float(l)
            } else {
                label = CropLoader.objectLabel(window, width: rect.width, height: rect.height, region: spec.region, rect: rect)
                guard label != 0 else {
                    throw CytoError(.invalidInput, "empty mask: no labelled object under the crop's centre; give the label explicitly", path: m.path)
                }
            }
            if crop.keepOnly(label: label, mask: window) == 0 {
                throw CytoError(.invalidInput, "empty mask: label \(label) has no pixels in the crop window", path: m.path)
            }
        }
        return crop
    }

    /// The label a mask window gives the object: under the centre for `.centre` and `.whole`, the
    /// most frequent nonzero label for `.box`.
    static func objectLabel(_ window: [Float], width: Int, height: Int, region: CropRegion, rect: PixelRect) -> Float {
        switch region {
        case .centre(let x, let y):
            let cx = Int(x.rounded()) - rect.x, cy = Int(y.rounded()) - rect.y
            return cx >= 0 && cy >= 0 && cx < width && cy < height ? window[cy * width + cx] : 0
        case .whole:
            return window[(height / 2) * width + width / 2]
        case .box:
            var counts: [Float: Int] = [:]
            for v in window where v != 0 { counts[v, default: 0] += 1 }
            return counts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) })?.key ?? 0
        }
    }

    /// A decoded raw crop normalized and resized into `out` (preprocessing.inputCount floats).
    public func prepare(_ crop: PixelImage, into out: UnsafeMutableBufferPointer<Float>, path: String? = nil) throws {
        let p = preprocessing
        guard crop.channels == p.channels else {
            throw CytoError(.shapeMismatch, "wrong channel count: the image has \(crop.channels) channel(s), the model takes \(p.channels)", path: path)
        }
        precondition(out.count >= p.inputCount, "output buffer holds \(out.count) floats, needs \(p.inputCount)")
        try p.normalization.validate(channels: p.channels)
        let n = crop.planeCount, count = n * crop.channels
        if planes.count < count { planes = [Float](repeating: 0, count: count) }
        if scratch.count < n { scratch = [Float](repeating: 0, count: n) }
        let resampler = resamplerFor(width: crop.width, height: crop.height)
        planes.withUnsafeMutableBufferPointer { pl in
            scratch.withUnsafeMutableBufferPointer { sc in
                crop.convert(start: 0, count: count, to: pl.baseAddress!)
                p.normalization.apply(pl.baseAddress!, channels: crop.channels, planeCount: n, type: crop.sampleType, scratch: sc.baseAddress!)
                p.transfer.apply(pl.baseAddress!, count: count)
                resampler.apply(pl.baseAddress!, channels: crop.channels, into: out.baseAddress!, fill: -1)
            }
        }
    }

    /// Decodes, crops, masks, normalizes and resizes one spec into `out` (CHW, [-1, 1]).
    public func load(_ spec: CropSpec, into out: UnsafeMutableBufferPointer<Float>) throws {
        try prepare(try raw(spec), into: out, path: spec.source.paths.first)
    }

    /// As `load(_:into:)`, returning a new array.
    public func load(_ spec: CropSpec) throws -> [Float] {
        var out = [Float](repeating: 0, count: preprocessing.inputCount)
        try out.withUnsafeMutableBufferPointer { try load(spec, into: $0) }
        return out
    }

    private func resamplerFor(width: Int, height: Int) -> Resampler {
        let key = width << 32 | height
        if let r = resamplers[key] { return r }
        let r = Resampler(inputWidth: width, inputHeight: height, outputWidth: preprocessing.size,
                          outputHeight: preprocessing.size, mode: preprocessing.resize)
        if resamplers.count > 64 { resamplers.removeAll() }
        resamplers[key] = r
        return r
    }
}

extension CropRegion {
    var isCentre: Bool { if case .centre = self { return true }; return false }
}
