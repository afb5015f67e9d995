import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import Foundation

/// `cytogan synth`: writes the built-in synthetic screen as TIFF crops with a manifest in the
/// BBBC021 layout (crops/PLATE/WELL/s1_NNNN.tif and crops.csv), the default data of the demo.
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate the built-in synthetic screen: BBBC021-like 3-channel crops with a manifest.",
        discussion: """
            Cells (DNA, tubulin, actin; 16-bit) whose morphology depends on their compound's mechanism \
            of action and dose, on plates grouped in batches with batch-level intensity effects. \
            Writes OUT/crops/PLATE/WELL/s1_NNNN.tif and OUT/crops.csv (path, Metadata_Plate, \
            Metadata_Well, Metadata_Site, Metadata_ObjectNumber, Metadata_Compound, \
            Metadata_Concentration, Metadata_MOA, Metadata_Batch). The same seed gives the same files.
            """)

    @Option(help: "Output folder.") var out: String
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Crop side in pixels.") var size: Int = 64
    @Option(help: "Mechanisms of action besides DMSO (1-\(SynthScreen.allMOAs.count)).") var moas: Int = 7
    @Option(help: "Compounds per mechanism.") var compoundsPerMoa: Int = 3
    @Option(help: "Concentrations in uM, comma-separated.") var concentrations: String = "0.3,1,3"
    @Option(help: "Batches (each compound lives in one).") var batches: Int = 2
    @Option(help: "Plates per batch.") var platesPerBatch: Int = 3
    @Option(help: "DMSO wells per plate.") var controlWells: Int = 4
    @Option(help: "Cells per well.") var cellsPerWell: Int = 16
    @Option(help: "Threads rendering and writing crops.") var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func config() throws -> SynthConfig {
        var c = SynthConfig()
        c.seed = seed; c.size = size; c.moaCount = moas; c.compoundsPerMOA = compoundsPerMoa
        c.batches = batches; c.platesPerBatch = platesPerBatch; c.controlWellsPerPlate = controlWells
        c.cellsPerWell = cellsPerWell
        let parts = concentrations.split(separator: ",")
        c.concentrations = parts.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard c.concentrations.count == parts.count, !parts.isEmpty else {
            throw ValidationError("--concentrations takes comma-separated numbers, e.g. 0.3,1,3 (got '\(concentrations)')")
        }
        return c
    }

    func run() throws {
        let cfg = try config()
        try reportingErrors {
            let t0 = Date()
            let n = try SynthWriter.write(config: cfg, to: out, threads: max(1, threads))
            let secs = Date().timeIntervalSince(t0)
            stderrLine(String(format: "synth: %d crops in %.1f s (%.0f crops/s) -> %@/crops.csv", n, secs, Double(n) / secs, out))
        }
    }
}

/// Renders and writes a synthetic screen's crops in parallel, then its manifest (atomically, last,
/// so a manifest never names a crop that is not there).
enum SynthWriter {
    static func write(config: SynthConfig, to out: String, threads: Int) throws -> Int {
        let screen = try SynthScreen(config: config)
        let cells = screen.cells
        for w in screen.wells { try makeDirectories("\(out)/crops/\(w.plate)/\(w.well)") }
        let size = config.size
        let chunks = min(threads * 8, cells.count)
        let failure = FirstError()
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            var image = PixelImage(width: size, height: size, channels: 3, sampleType: .uint16)
            var i = chunk
            while i < cells.count {
                if failure.error != nil { return }
                image.storage.withUnsafeMutableBytes { raw in
                    screen.render(cells[i], into: raw.bindMemory(to: UInt16.self))
                }
                do { try ImageWriter.writeTIFF(image, to: "\(out)/\(cells[i].path)", durable: false) } catch { failure.record(error) }
                i += chunks
            }
        }
        if let e = failure.error { throw e }
        let manifest = try CSVWriter(path: "\(out)/crops.csv", header: SynthScreen.manifestColumns)
        for c in cells { try manifest.write(screen.manifestRow(c)) }
        try manifest.finish()
        return cells.count
    }
}

/// The first error raised by any of several threads.
final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
    func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
}
