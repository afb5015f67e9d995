import Foundation
import CytoCore

/// An RGB colour with components in [0, 1].
public struct RGBColour: Sendable, Equatable {
    public var r: Float, g: Float, b: Float
    public init(_ r: Float, _ g: Float, _ b: Float) { self.r = r; self.g = g; self.b = b }

    /// A named colour (red, green, blue, cyan, magenta, yellow, white, gray, none) or "#rrggbb".
    public init(named name: String) throws {
        let n = name.lowercased().trimmingCharacters(in: .whitespaces)
        switch n {
        case "red": self.init(1, 0, 0)
        case "green": self.init(0, 1, 0)
        case "blue": self.init(0, 0, 1)
        case "cyan": self.init(0, 1, 1)
        case "magenta": self.init(1, 0, 1)
        case "yellow": self.init(1, 1, 0)
        case "white", "gray", "grey": self.init(1, 1, 1)
        case "none", "off": self.init(0, 0, 0)
        default:
            let hex = n.hasPrefix("#") ? String(n.dropFirst()) : ""
            guard hex.count == 6, let v = UInt32(hex, radix: 16) else {
                throw CytoError(.invalidInput, "unknown colour '\(name)' (red, green, blue, cyan, magenta, yellow, white, none or #rrggbb)")
            }
            self.init(Float(v >> 16 & 0xff) / 255, Float(v >> 8 & 0xff) / 255, Float(v & 0xff) / 255)
        }
    }
}

/// How each channel's values are stretched to [0, 1] for display.
public enum ContrastStretch: Sendable, Equatable {
    /// A fixed range (e.g. (-1, 1) for generated cells).
    case fixed(low: Float, high: Float)
    /// The channel's own minimum and maximum in the image.
    case minMax
    /// The channel's own percentiles (0...100): robust to a few bright pixels.
    case percentile(low: Double, high: Double)
}

/// Renders multi-channel cell images as RGB pictures: each channel is contrast-stretched, then
/// adds its colour (CytoGAN's figures: DNA red, tubulin green, actin blue).
public struct DisplayMapping: Sendable, Equatable {
    /// Colour of each channel, in channel order.
    public var colours: [RGBColour]
    public var stretch: ContrastStretch

    public init(colours: [RGBColour], stretch: ContrastStretch = .percentile(low: 0.5, high: 99.8)) {
        self.colours = colours; self.stretch = stretch
    }

    /// DNA red, tubulin green, actin blue, per-channel percentile stretch.
    public static let cytogan = DisplayMapping(colours: [RGBColour(1, 0, 0), RGBColour(0, 1, 0), RGBColour(0, 0, 1)])

    /// Colours from a comma-separated list of names ("red,green,blue").
    public static func parseColours(_ text: String) throws -> [RGBColour] {
        try text.split(separator: ",").map { try RGBColour(named: String($0)) }
    }

    /// An 8-bit RGB image of CHW float planes. Channels beyond the colour list are not shown.
    public func render(_ planes: UnsafeBufferPointer<Float>, channels: Int, width: Int, height: Int) -> PixelImage {
        let n = width * height
        precondition(planes.count >= channels * n)
        var acc = [Float](repeating: 0, count: 3 * n)
        var scratch = [Float](repeating: 0, count: n)
        for c in 0..<min(channels, colours.count) {
            let plane = UnsafeBufferPointer(rebasing: planes[(c * n)..<((c + 1) * n)])
            var lo: Float = 0, hi: Float = 1
            switch stretch {
            case .fixed(let l, let h): lo = l; hi = h
            case .minMax:
                lo = plane.min() ?? 0; hi = plane.max() ?? 1
            case .percentile(let pl, let ph):
                scratch.withUnsafeMutableBufferPointer { s in
                    _ = s.initialize(from: plane)
                    lo = Float(Percentile.value(s, pl)); hi = Float(Percentile.value(s, ph))
                }
            }
            let scale: Float = hi > lo ? 1 / (hi - lo) : 0
            let col = colours[c]
            for i in 0..<n {
                var v = (plane[i] - lo) * scale
                if !(v > 0) { v = 0 }
                if v > 1 { v = 1 }
                acc[i] += col.r * v; acc[n + i] += col.g * v; acc[2 * n + i] += col.b * v
            }
        }
        return acc.withUnsafeBufferPointer {
            PixelImage(quantizing: $0, channels: 3, width: width, height: height, from: (0, 1), to: .uint8)
        }
    }

    /// Renders a decoded image (raw intensities).
    public func render(_ image: PixelImage) -> PixelImage {
        image.floatPlanes.withUnsafeBufferPointer { render($0, channels: image.channels, width: image.width, height: image.height) }
    }
}

/// Grids of equally sized RGB tiles: samples in rows of N columns, or one row per list (a row per
/// interpolation), tiles separated by `gap` pixels of `background` grey.
public enum Montage {
    /// Tiles in reading order, `columns` per row.
    public static func grid(_ tiles: [PixelImage], columns: Int, gap: Int = 2, background: UInt8 = 0) throws -> PixelImage {
        guard columns > 0 else { throw CytoError(.invalidInput, "a montage needs at least 1 column") }
        let rows = stride(from: 0, to: tiles.count, by: columns).map { Array(tiles[$0..<min($0 + columns, tiles.count)]) }
        return try self.rows(rows, gap: gap, background: background)
    }

    /// One row per list; rows may hold different numbers of tiles.
    public static func rows(_ rows: [[PixelImage]], gap: Int = 2, background: UInt8 = 0) throws -> PixelImage {
        guard let first = rows.first(where: { !$0.isEmpty })?.first else {
            throw CytoError(.invalidInput, "a montage needs at least one tile")
        }
        guard gap >= 0 else { throw CytoError(.invalidInput, "montage gap must be >= 0") }
        let tw = first.width, th = first.height
        for (r, row) in rows.enumerated() {
            for (i, t) in row.enumerated() where t.width != tw || t.height != th || t.channels != 3 || t.sampleType != .uint8 {
                throw CytoError(.shapeMismatch, "montage tiles must be \(tw)x\(th) 8-bit RGB; tile \(i) of row \(r) is \(t.width)x\(t.height)x\(t.channels) \(t.sampleType.rawValue)", index: i)
            }
        }
        let cols = rows.map(\.count).max()!
        let w = cols * tw + (cols + 1) * gap, h = rows.count * th + (rows.count + 1) * gap
        var out = PixelImage(width: w, height: h, channels: 3, sampleType: .uint8)
        out.storage.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: background) }
        for (r, row) in rows.enumerated() {
            for (i, t) in row.enumerated() {
                let x0 = gap + i * (tw + gap), y0 = gap + r * (th + gap)
                t.storage.withUnsafeBytes { src in
                    out.storage.withUnsafeMutableBytes { dst in
                        for c in 0..<3 {
                            for y in 0..<th {
                                (dst.baseAddress! + (c * h + y0 + y) * w + x0)
                                    .copyMemory(from: src.baseAddress! + (c * th + y) * tw, byteCount: tw)
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
