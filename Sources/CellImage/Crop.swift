import Foundation
import CytoCore

/// Where a crop is cut from its image. Coordinates are pixels, x the column and y the row,
/// 0-based (CellProfiler's Location_Center_X/Y and bounding boxes use the same convention).
public enum CropRegion: Sendable, Hashable {
    /// The whole image (a file that already is a single-cell crop).
    case whole
    /// A window centred on the object's centre: columns round(x) - w/2 ..< round(x) - w/2 + w
    /// (rows likewise), w the crop size.
    case centre(x: Double, y: Double)
    /// A bounding box [x0, x1) x [y0, y1): the crop is a window of the crop size centred on the
    /// box, or, with no crop size, the box's square envelope (its longer side).
    case box(x0: Int, y0: Int, x1: Int, y1: Int)
}

/// A label mask restricting a crop to one object: pixels whose label differs are zeroed
/// (CytoGAN's masking). `label` nil: the label under the object's centre (for a box, the most
/// frequent nonzero label inside it).
public struct MaskSpec: Sendable, Hashable {
    public var path: String
    public var label: Int?
    public init(path: String, label: Int? = nil) { self.path = path; self.label = label }
}

/// Everything needed to cut one crop: its source image(s), the region and an optional mask.
public struct CropSpec: Sendable, Hashable {
    public var source: ImageSource
    public var region: CropRegion
    public var mask: MaskSpec?

    public init(source: ImageSource, region: CropRegion = .whole, mask: MaskSpec? = nil) {
        self.source = source; self.region = region; self.mask = mask
    }

    /// A crop that is a whole file (all its channels).
    public static func file(_ path: String, channels: [Int]? = nil) -> CropSpec {
        CropSpec(source: .file(path, channels: channels))
    }
}

/// A rectangle of pixels, possibly reaching outside its image.
public struct PixelRect: Sendable, Equatable {
    public var x: Int, y: Int, width: Int, height: Int
    public init(x: Int, y: Int, width: Int, height: Int) { self.x = x; self.y = y; self.width = width; self.height = height }
}

/// Turning regions into pixel windows.
public enum Cropping {
    /// The window a region selects in a `fieldWidth` x `fieldHeight` image. `size` is the crop
    /// side (required for `.centre`; nil for `.box` takes the box's square envelope). A centre
    /// outside the field, an empty box or a box entirely outside the field is an error.
    public static func window(for region: CropRegion, fieldWidth: Int, fieldHeight: Int, size: Int?,
                              path: String? = nil) throws -> PixelRect {
        switch region {
        case .whole:
            return PixelRect(x: 0, y: 0, width: fieldWidth, height: fieldHeight)
        case .centre(let x, let y):
            guard x.isFinite, y.isFinite else {
                throw CytoError(.invalidInput, "object centre (\(x), \(y)) is not a finite point", path: path)
            }
            let cx = x.rounded(), cy = y.rounded()
            guard cx >= 0, cy >= 0, cx < Double(fieldWidth), cy < Double(fieldHeight) else {
                throw CytoError(.invalidInput, "object centre (\(x), \(y)) is outside the \(fieldWidth)x\(fieldHeight) field", path: path)
            }
            guard let size, size > 0 else { throw CytoError(.invalidInput, "a crop around a centre needs a crop size", path: path) }
            return PixelRect(x: Int(cx) - size / 2, y: Int(cy) - size / 2, width: size, height: size)
        case .box(let x0, let y0, let x1, let y1):
            guard x1 > x0, y1 > y0 else {
                throw CytoError(.invalidInput, "empty bounding box [\(x0), \(x1)) x [\(y0), \(y1))", path: path)
            }
            guard x1 > 0, y1 > 0, x0 < fieldWidth, y0 < fieldHeight else {
                throw CytoError(.invalidInput, "bounding box [\(x0), \(x1)) x [\(y0), \(y1)) is outside the \(fieldWidth)x\(fieldHeight) field", path: path)
            }
            let side = size ?? max(x1 - x0, y1 - y0)
            guard side > 0, side <= 1 << 16 else { throw CytoError(.invalidInput, "crop size \(side) is out of range", path: path) }
            return PixelRect(x: x0 + floorDiv(x1 - x0 - side, 2), y: y0 + floorDiv(y1 - y0 - side, 2), width: side, height: side)
        }
    }
}

extension PixelImage {
    /// The pixels of `rect`, zero where it reaches outside the image (zero padding at borders).
    public func cut(_ rect: PixelRect) -> PixelImage {
        if rect == PixelRect(x: 0, y: 0, width: width, height: height) { return self }
        var out = PixelImage(width: rect.width, height: rect.height, channels: channels, sampleType: sampleType)
        let x0 = max(rect.x, 0), x1 = min(rect.x + rect.width, width)
        let y0 = max(rect.y, 0), y1 = min(rect.y + rect.height, height)
        guard x1 > x0, y1 > y0 else { return out }
        let s = sampleType.size, rowBytes = (x1 - x0) * s
        storage.withUnsafeBytes { src in
            out.storage.withUnsafeMutableBytes { dst in
                for c in 0..<channels {
                    for y in y0..<y1 {
                        let from = ((c * height + y) * width + x0) * s
                        let to = ((c * rect.height + (y - rect.y)) * rect.width + (x0 - rect.x)) * s
                        (dst.baseAddress! + to).copyMemory(from: src.baseAddress! + from, byteCount: rowBytes)
                    }
                }
            }
        }
        return out
    }

    /// Zeroes every pixel (all channels) whose `mask` label differs from `label`; `mask` is one
    /// channel of this image's size. Returns how many pixels were kept.
    @discardableResult
    public mutating func keepOnly(label: Float, mask: [Float]) -> Int {
        precondition(mask.count == planeCount)
        var kept = 0
        for m in mask where m == label { kept += 1 }
        let s = sampleType.size, n = planeCount, ch = channels
        storage.withUnsafeMutableBytes { dst in
            for i in 0..<n where mask[i] != label {
                for c in 0..<ch { (dst.baseAddress! + (c * n + i) * s).initializeMemory(as: UInt8.self, repeating: 0, count: s) }
            }
        }
        return kept
    }
}

/// Decoded fields (and label masks) kept in memory, so a field serving many objects is decoded
/// once. Least recently used entries are dropped beyond `capacityBytes`. Safe to share between
/// threads.
public final class FieldCache: @unchecked Sendable {
    public let capacityBytes: Int
    private var entries: [ImageSource: (image: PixelImage, used: UInt64)] = [:]
    private var bytes = 0
    private var clock: UInt64 = 0
    private let lock = NSLock()
    /// Decodes served from memory, and decodes done.
    public private(set) var hits = 0, misses = 0

    public init(capacityBytes: Int = 512 << 20) { self.capacityBytes = capacityBytes }

    /// The decoded image of `source`, decoding it on first use.
    public func image(_ source: ImageSource, limits: DecodeLimits = .standard) throws -> PixelImage {
        lock.lock()
        clock += 1
        if let e = entries[source] {
            entries[source] = (e.image, clock)
            hits += 1
            lock.unlock()
            return e.image
        }
        misses += 1
        lock.unlock()
        let image = try ImageReader.read(source, limits: limits)
        lock.lock()
        defer { lock.unlock() }
        if entries[source] == nil {
            entries[source] = (image, clock)
            bytes += image.storage.count
            while bytes > capacityBytes && entries.count > 1,
                  let oldest = entries.min(by: { $0.value.used < $1.value.used })?.key, oldest != source {
                bytes -= entries[oldest]!.image.storage.count
                entries[oldest] = nil
            }
        }
        return image
    }

    /// Forgets every entry.
    public func removeAll() {
        lock.lock(); entries = [:]; bytes = 0; lock.unlock()
    }
}
