import CellImage
import CytoCore
import Foundation

/// Writing model-space images (CHW planes in [-1, 1]: generated cells, reconstructions, and real
/// crops after preprocessing) as 16-bit multi-channel TIFFs and as RGB montages with the paper's
/// channel colours (DNA red, tubulin green, actin blue). The montage stretch is the fixed model
/// range, so generated and real cells are shown on one scale.
public enum SampleImages {
    /// CytoGAN's colours over the model's fixed range [-1, 1].
    public static let display = DisplayMapping(colours: DisplayMapping.cytogan.colours, stretch: .fixed(low: -1, high: 1))

    /// One 8-bit RGB tile of image `index` of a list of images.
    public static func tile(_ images: [Float], index: Int, channels: Int, size: Int) -> PixelImage {
        let per = channels * size * size
        return images.withUnsafeBufferPointer {
            display.render(UnsafeBufferPointer(rebasing: $0[(index * per)..<((index + 1) * per)]), channels: channels, width: size, height: size)
        }
    }

    /// Writes images `0 ..< count` as `<directory>/<prefix><i>.tif` (`writeTIFF`) and returns the paths.
    @discardableResult
    public static func writeTIFFs(_ images: [Float], count: Int, channels: Int, size: Int, directory: String, prefix: String,
                                  cropUnits: Preprocessing? = nil) throws -> [String] {
        let per = channels * size * size
        guard images.count >= count * per else { throw CytoError(.shapeMismatch, "images hold \(images.count) values, \(count) images need \(count * per)") }
        try cropUnits?.checkInvertible()  // before writing anything
        try makeDirectories(directory)
        let digits = max(4, String(max(count - 1, 0)).count)
        return try (0..<count).map { i in
            let n = String(i)
            let path = "\(directory)/\(prefix)\(String(repeating: "0", count: digits - n.count))\(n).tif"
            try writeTIFF(images, index: i, channels: channels, size: size, to: path, cropUnits: cropUnits)
            return path
        }
    }

    /// Writes image `index` of a list as a 16-bit TIFF. In model units -1 -> 0 and 1 -> 65535; in
    /// the crops' units (`cropUnits`: the model's preprocessing) each value goes back through the
    /// inverse of its intensity transfer and normalization, so the file holds intensities comparable with the training
    /// crops (rounded, clipped to 0...65535).
    public static func writeTIFF(_ images: [Float], index i: Int, channels: Int, size: Int, to path: String,
                                 cropUnits: Preprocessing? = nil) throws {
        let per = channels * size * size
        guard let cropUnits else {
            try images.withUnsafeBufferPointer {
                try ImageWriter.writeGeneratedTIFF(UnsafeBufferPointer(rebasing: $0[(i * per)..<((i + 1) * per)]), channels: channels,
                                                   width: size, height: size, to: path)
            }
            return
        }
        var planes = Array(images[(i * per)..<((i + 1) * per)])
        try planes.withUnsafeMutableBufferPointer { buf in
            try cropUnits.toCropUnits(buf.baseAddress!, planeCount: size * size)
            try ImageWriter.writeTIFF(PixelImage(quantizing: UnsafeBufferPointer(buf), channels: channels, width: size, height: size,
                                                 from: (0, 65535), to: .uint16), to: path)
        }
    }

    /// A montage whose rows list image indexes (rows may differ in length), written as a PNG.
    public static func writeMontage(_ images: [Float], rows: [[Int]], channels: Int, size: Int, to path: String) throws {
        let tiles = rows.map { $0.map { tile(images, index: $0, channels: channels, size: size) } }
        try ImageWriter.writePNG(try Montage.rows(tiles, gap: 2, background: 40), to: path)
    }

    /// Writes vectors (count x width, row-major) as a float32 .npy of shape (count, width).
    public static func writeVectors(_ z: [Float], width: Int, to path: String) throws {
        guard width > 0, z.count % width == 0 else { throw CytoError(.shapeMismatch, "\(z.count) values are not rows of \(width)") }
        try NPY.write(z, shape: [z.count / width, width], type: .float32, to: path)
    }

    /// Reads noise vectors from a .npy of shape (n, latent) (or (latent,) for one vector).
    public static func readVectors(_ path: String, latent: Int) throws -> [Float] {
        let a = try NPY.read(path: path)
        let ok = (a.shape.count == 2 && a.shape[1] == latent) || (a.shape.count == 1 && a.shape[0] == latent)
        guard ok else {
            throw CytoError(.shapeMismatch, "noise vectors have shape \(a.shape), the model needs (n, \(latent))", path: path)
        }
        guard a.values.allSatisfy(\.isFinite) else { throw CytoError(.invalidInput, "noise vectors hold non-finite values", path: path) }
        return a.values
    }
}
