import CellImage
import CytoCore
import CytoGAN
import Foundation

/// The demo's pictures: real crops beside generated cells, interpolations (linear and spherical),
/// real cells encoded into noise space with their reconstructions, and noise algebra on real cells.
struct DemoPictures {
    let model: GANModel
    let loader: CropLoader
    let screen: SynthScreen
    let manifest: StreamingManifest
    let specs: [CropSpec]
    let out: String
    let seed: UInt64

    /// File names (relative to the report) and what they show.
    struct Drawn {
        var files: [(file: String, caption: String)] = []
        var encodingPixelError: Double = 0
        var algebraMOA = ""
    }

    var size: Int { model.config.architecture.size }
    var channels: Int { model.config.architecture.channels }
    var latent: Int { model.config.architecture.latent }

    /// Display tiles for `count` model-space images (CHW in [-1, 1]).
    func tiles(_ images: [Float], count: Int) -> [PixelImage] {
        let per = channels * size * size
        return (0..<count).map { i in
            images.withUnsafeBufferPointer { DisplayMapping.cytogan.render(UnsafeBufferPointer(rebasing: $0[(i * per)..<((i + 1) * per)]),
                                                                           channels: channels, width: size, height: size) }
        }
    }

    /// Model inputs for the crops at `indices`.
    func inputs(_ indices: [Int]) throws -> [Float] {
        var x: [Float] = []
        for i in indices { x += try loader.load(specs[i]) }
        return x
    }

    func write(_ image: PixelImage, _ name: String, _ caption: String, into d: inout Drawn) throws {
        try ImageWriter.writePNG(image, to: "\(out)/\(name)")
        d.files.append((name, caption))
    }

    func draw() throws -> Drawn {
        var d = Drawn()
        let sampler = Sampler(model: model)
        let columns = 8

        // Real crops (a seeded random pick) and generated cells.
        var rng = RandomStream(seed: seed, purpose: "demo/pick")
        var order = Array(0..<specs.count)
        rng.shuffle(&order)
        let real = try inputs(Array(order.prefix(32)))
        try write(try Montage.grid(tiles(real, count: 32), columns: columns), "real.png",
                  "32 input crops of the synthetic screen, as the model sees them (DNA red, tubulin green, actin blue).", into: &d)
        let z = NoiseSpace.draw(count: 32, latent: latent, seed: seed)
        let samples = try sampler.generate(z)
        try write(try Montage.grid(tiles(samples, count: 32), columns: columns), "samples.png",
                  "32 cells generated from random noise vectors.", into: &d)

        // Interpolations: the same four pairs of noise vectors, linearly and spherically.
        var rows: [[PixelImage]] = []
        let ends = NoiseSpace.draw(count: 8, latent: latent, seed: seed &+ 1)
        for mode in [InterpolationMode.linear, .slerp] {
            for p in 0..<4 {
                let a = Array(ends[(2 * p * latent)..<((2 * p + 1) * latent)])
                let b = Array(ends[((2 * p + 1) * latent)..<((2 * p + 2) * latent)])
                let path = try NoiseSpace.interpolate(a, b, steps: columns, mode: mode)
                rows.append(tiles(try sampler.generate(path.flatMap { $0 }), count: columns))
            }
        }
        try write(try Montage.rows(rows), "interpolation.png",
                  "Interpolations between four pairs of noise vectors in \(columns) steps: linear (top four rows), spherical (bottom four).", into: &d)

        // Real cells into noise space: DMSO cells and cells of the most striking mechanism at its top dose.
        let moa = "Aurora kinase inhibitors"
        let top = screen.config.concentrations.max() ?? 0
        let moaColumn = manifest.metadataNames.firstIndex(of: "Metadata_MOA")
        let concColumn = manifest.metadataNames.firstIndex(of: "Metadata_Concentration")
        var treated: [Int] = [], control: [Int] = []
        for i in order {
            guard let mc = moaColumn, let cc = concColumn else { break }
            let m = try manifest.metadata(at: i)
            if m[mc] == moa && Double(m[cc]) == top && treated.count < 4 { treated.append(i) }
            if m[mc].isEmpty && control.count < 5 { control.append(i) }
            if treated.count == 4 && control.count == 5 { break }
        }
        guard treated.count == 4, control.count == 5 else { return d }
        let cells = treated + control
        let encoder = try NoiseEncoder(model: model, options: NoiseEncoder.Options(iterations: 120, restarts: 1, seed: seed))
        let originals = try inputs(cells)
        let encoded = try encoder.encode(originals, count: cells.count)
        d.encodingPixelError = Double(encoded.pixelError.reduce(0, +)) / Double(cells.count)
        try write(try Montage.rows([tiles(originals, count: cells.count), tiles(encoded.reconstructions, count: cells.count)]),
                  "encoding.png",
                  String(format: "Real cells (top: four %@ cells at %g uM, then five DMSO cells) and G(z) for the noise vector z found for each (bottom); mean squared pixel error %.3f on [-1, 1].",
                         moa, top, d.encodingPixelError), into: &d)

        // Algebra on real cells: mean(treated) - mean(DMSO) + another DMSO cell.
        func row(_ i: Int) -> [Float] { Array(encoded.z[(i * latent)..<((i + 1) * latent)]) }
        func mean(_ rows: [Int]) -> [Float] {
            var m = [Float](repeating: 0, count: latent)
            for r in rows { for k in 0..<latent { m[k] += encoded.z[r * latent + k] / Float(rows.count) } }
            return m
        }
        let a = mean([0, 1, 2, 3]), b = mean([4, 5, 6, 7]), c = row(8)
        let result = try NoiseSpace.algebra(a, minus: b, plus: c)
        let algebra = try sampler.generate(a + b + c + result)
        try write(try Montage.grid(tiles(algebra, count: 4), columns: 4), "algebra.png",
                  "Noise algebra on real cells: G(mean z of the \(moa) cells), G(mean z of four DMSO cells), G(z of a fifth DMSO cell), and G(first - second + third): the treatment's effect carried onto another cell.", into: &d)
        d.algebraMOA = moa

        // A smooth path between two real cells: a DMSO cell to a treated cell, spherically.
        let path = try NoiseSpace.interpolate(row(8), row(0), steps: columns, mode: .slerp)
        try write(try Montage.rows([tiles(try sampler.generate(path.flatMap { $0 }), count: columns)]), "real-interpolation.png",
                  "From a real DMSO cell to a real \(moa) cell: spherical interpolation between their encodings.", into: &d)
        return d
    }
}
