import ArgumentParser
import CellImage
import CytoCore
import CytoGAN
import CytoNN
import Foundation
import Profiling

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `cytogan extract`: per-crop feature vectors from a model's discriminator (or intensity and
/// shape measurements), as a feature table in input order.
struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Per-crop features: the discriminator's representation (or --features intensity), in input order.",
        discussion: """
        --manifest: a feature table with the manifest's Metadata_* columns and its key columns \
        (ImageNumber, ObjectNumber, Location_* where present, or --keep-columns), then the features \
        (CSV, or .npy with X.metadata.csv beside it), ready for `cytogan profile evaluate-crops` \
        and `cytogan profile moa` and to join back to a CellProfiler object table. Features are \
        named Cytogan_<layer>_<i> (pycytominer: infer_cp_features(df, compartments=["Cytogan"])). --paths -: crop paths one per line on stdin, one CSV row \
        (Metadata_Path, features) per crop on stdout as they come. Crops that cannot be read are \
        skipped and named on stderr. Input noise is off unless --noisy (CytoGAN's noisy encoding).
        """)

    @Option(help: "Model checkpoint (.safetensors).") var model: String?
    @Option(help: "Crop manifest (CSV with a path column and Metadata_* columns).") var manifest: String?
    @Option(help: "'-': read crop paths from stdin, one per line; write CSV rows to stdout.") var paths: String?
    @Option(help: "Folder that relative paths start from (default: the manifest's folder; the current folder for --paths).") var root: String?
    @OptionGroup var manifestColumns: ManifestColumnOptions
    @Option(name: .customLong("keep-columns"), help: "Manifest columns carried to the table besides Metadata_*: names or Prefix*, comma-separated ('' for none; default: ImageNumber,ObjectNumber,Location_* where present).")
    var keepColumns: String?
    @Option(help: "Output table: .csv or .npy (default: CSV on stdout).") var out: String?
    @Option(help: "Crops per batch.") var batch: Int = 256
    @Flag(help: "Keep the discriminator's input noise on (CytoGAN's noisy encoding).") var noisy = false
    @Option(name: .customLong("noise-seed"), help: "Seed of the --noisy input noise.") var noiseSeed: UInt64 = 0
    @Option(help: "gan (the model's discriminator) or intensity (per-channel mean, std, max, p90 and nucleus shape; no model).")
    var features: FeatureSource = .gan
    @Option(help: "Discriminator layer(s): representation, pooled, pooled-max, pooled-std, pool:LAYER, max:LAYER, std:LAYER, a layer name, or a comma list; suffix @dihedral averages over the crop's 8 mirrors and quarter turns (default: the model's).")
    var layer: String?
    @Flag(name: .customLong("current-discriminator"), help: "Read the discriminator as it was at the checkpoint's step, not the moving average of its weights the model keeps (for comparison).")
    var currentDiscriminator = false
    @Option(name: .customLong("channel-names"), help: "Channel names for intensity feature columns.") var channelNames: String = "DNA,Tubulin,Actin"
    @Option(help: "Threads for the engine (default: all cores).") var threads: Int?
    @Flag(help: "Fail (exit non-zero) when any crop is skipped; without it only a run that extracts no crop at all fails.")
    var strict = false

    func validate() throws {
        if (manifest == nil) == (paths == nil) { throw ValidationError("give --manifest FILE or --paths -") }
        if let paths, paths != "-" { throw ValidationError("--paths takes '-' (paths on stdin)") }
        if batch < 1 { throw ValidationError("--batch must be >= 1") }
        if features == .gan && model == nil { throw ValidationError("--features gan needs --model") }
        if paths != nil && out != nil { throw ValidationError("--paths - writes to stdout; drop --out") }
        if paths != nil && keepColumns != nil { throw ValidationError("--keep-columns applies to --manifest") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            Engine.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
            if let manifest {
                var columns = try manifestColumns.columns()
                if let keepColumns {
                    columns.carried = keepColumns.isEmpty ? [] : try parseList(keepColumns)
                }
                let source = try StreamingManifest(path: manifest, root: root, columns: columns,
                                                   log: { stderrLine($0) })
                try runManifest(try makeComputer(source: source), source: source)
            } else {
                try runLines(try makeComputer(source: nil))
            }
        }
    }

    /// The feature computer; an untrained model waiting for its dataset scale estimates it from `source`.
    func makeComputer(source: CropSource?) throws -> FeatureComputer {
        if features == .intensity {
            let names = try parseList(channelNames)
            return IntensityFeatures(channelNames: names)
        }
        let m = try GANModel.load(from: model!)
        if let source, m.config.needsDatasetScale {
            try m.resolveDatasetScale(from: source, log: { stderrLine("\($0) (from the crops to extract: the model never trained)") })
        }
        let fx = try FeatureExtractor(model: m, layer: try layer.map { try FeatureLayer(parsing: $0) }, noisy: noisy, noiseSeed: noiseSeed,
                                      averaged: !currentDiscriminator)
        let which = fx.network === m.discriminator ? "discriminator" : "discriminator's moving average"
        stderrLine("features: \(fx.count) from '\(fx.layer)' of the \(which) of \(model!) (step \(m.step))\(noisy ? ", noisy" : "")")
        return GANFeatures(extractor: fx)
    }

    func runManifest(_ computer: FeatureComputer, source: StreamingManifest) throws {
        let sink = try FeatureSink(path: out, metadataColumns: source.metadataNames, featureNames: computer.names)
        let w = computer.names.count
        var done = 0, skipped = 0
        var start = 0
        let t0 = Date()
        while start < source.count {
            let n = min(batch, source.count - start)
            var specs: [CropSpec] = []
            var meta: [[String]] = []
            for i in start..<(start + n) { specs.append(try source.spec(at: i)); meta.append(try source.metadata(at: i)) }
            let (values, errors) = try computer.compute(specs)
            for i in 0..<n {
                if let e = errors[i] { skipped += 1; stderrLine("skipped crop \(source.name(at: start + i)): \(e.message)"); continue }
                try values.withUnsafeBufferPointer { try sink.write(metadata: meta[i], features: UnsafeBufferPointer(rebasing: $0[(i * w)..<((i + 1) * w)])) }
                done += 1
            }
            start += n
        }
        try checkOutcome(done: done, skipped: skipped)
        try sink.finish()
        let secs = Date().timeIntervalSince(t0)
        stderrLine(String(format: "%d crop(s) -> %@ (%d features), %d skipped, %.1f crops/s", done, out ?? "stdout", computer.names.count,
                          skipped, Double(done) / max(secs, 1e-9)))
    }

    func runLines(_ computer: FeatureComputer) throws {
        let input = LineReader(fd: 0)
        let header = (["Metadata_Path"] + computer.names).map(CSVWriter.quoted).joined(separator: ",") + "\n"
        writeStdout(header)
        var pending: [String] = []
        var done = 0, skipped = 0
        func flush() throws {
            guard !pending.isEmpty else { return }
            let specs = pending.map { p in CropSpec.file(p.hasPrefix("/") || root == nil ? p : root! + "/" + p) }
            let (values, errors) = try computer.compute(specs)
            var text = ""
            let w = computer.names.count
            for i in 0..<pending.count {
                if let e = errors[i] { skipped += 1; stderrLine("skipped crop \(pending[i]): \(e.message)"); continue }
                text += CSVWriter.quoted(pending[i])
                for k in 0..<w { text += "," + shortest(values[i * w + k]) }
                text += "\n"
                done += 1
            }
            writeStdout(text)
            pending.removeAll(keepingCapacity: true)
        }
        // Batches fill while lines keep arriving; whatever is there is processed when the input pauses.
        while let line = try input.next(waitIfEmpty: pending.isEmpty) {
            if let line {
                let p = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if !p.isEmpty { pending.append(p) }
                if pending.count >= batch { try flush() }
            } else {
                try flush()
            }
        }
        try flush()
        stderrLine("\(done) crop(s), \(skipped) skipped")
        try checkOutcome(done: done, skipped: skipped)
    }

    /// A run that extracted nothing fails, and with --strict so does one that skipped any crop,
    /// so a batch job whose crops all failed does not look successful.
    func checkOutcome(done: Int, skipped: Int) throws {
        if done == 0 {
            throw CytoError(.invalidInput, skipped > 0 ? "no features: all \(skipped) crop(s) were skipped (see the lines above)"
                                                     : "no features: no crops were given")
        }
        if strict && skipped > 0 {
            throw CytoError(.invalidInput, "\(skipped) crop(s) skipped and --strict is set (see the lines above)")
        }
    }
}

/// Where extracted rows go: a CSV (a file written atomically, or stdout as rows come) with the
/// metadata columns then the features, or a float32 .npy with its metadata CSV beside it
/// (Profiling's FeatureRowWriter, the layout `cytogan profile` reads).
final class FeatureSink {
    private var csv: CSVWriter?
    private var npy: FeatureRowWriter?
    private var doubles: [Double]
    init(path: String?, metadataColumns: [String], featureNames: [String]) throws {
        doubles = [Double](repeating: 0, count: featureNames.count)
        if let path, path.lowercased().hasSuffix(".npy") {
            npy = try FeatureRowWriter(path: path, metadataColumns: metadataColumns, featureNames: featureNames)
        } else if let path {
            csv = try CSVWriter(path: path, header: metadataColumns + featureNames)
        } else {
            writeStdout((metadataColumns + featureNames).map(CSVWriter.quoted).joined(separator: ",") + "\n")
        }
    }
    func write(metadata: [String], features: UnsafeBufferPointer<Float>) throws {
        if let npy {
            for k in 0..<features.count { doubles[k] = Double(features[k]) }
            try doubles.withUnsafeBufferPointer { try npy.write(metadata: metadata, features: $0) }
            return
        }
        let record = metadata + features.map(shortest)
        if let csv { try csv.write(record) } else { writeStdout(record.map(CSVWriter.quoted).joined(separator: ",") + "\n") }
    }
    func finish() throws {
        try npy?.finish()
        try csv?.finish()
    }
}

/// Shortest text that reads back as the same Float.
func shortest(_ v: Float) -> String { v == v.rounded() && abs(v) < 1e7 ? String(Int(v)) : v.description }

func writeStdout(_ s: String) {
    writeAll(fd: 1, Array(s.utf8))
}

/// `--features`: where extract's features come from.
enum FeatureSource: String, CaseIterable, ExpressibleByArgument {
    /// The model's discriminator.
    case gan
    /// Intensity and nucleus shape measurements (no model).
    case intensity
}

/// Something that turns a list of crops into feature rows (count x names.count) and per-crop errors.
protocol FeatureComputer {
    var names: [String] { get }
    func compute(_ specs: [CropSpec]) throws -> ([Float], [CytoError?])
}

struct GANFeatures: FeatureComputer {
    let extractor: FeatureExtractor
    let loader: CropLoader
    init(extractor: FeatureExtractor) {
        self.extractor = extractor
        loader = CropLoader(preprocessing: extractor.model.config.preprocessing)
    }
    var names: [String] { extractor.names }
    func compute(_ specs: [CropSpec]) throws -> ([Float], [CytoError?]) {
        let r = try extractor.extract(specs: specs, loader: loader)
        return (r.features, r.errors)
    }
}

/// CellImage's intensity and nucleus-shape measurements of the raw crop (no model).
struct IntensityFeatures: FeatureComputer {
    let names: [String]
    let channels: Int
    let loader: CropLoader
    init(channelNames: [String]) {
        names = CellFeatures.names(channelNames: channelNames)
        channels = channelNames.count
        loader = CropLoader(preprocessing: Preprocessing(channels: channelNames.count))
    }
    func compute(_ specs: [CropSpec]) throws -> ([Float], [CytoError?]) {
        var out = [Float](repeating: 0, count: specs.count * names.count)
        var errors: [CytoError?] = []
        for (i, s) in specs.enumerated() {
            do {
                let f = CellFeatures.compute(try loader.raw(s))
                for k in 0..<names.count { out[i * names.count + k] = f[k] }
                errors.append(nil)
            } catch let e as CytoError { errors.append(e.at(index: i)) }
        }
        return (out, errors)
    }
}

/// Lines from a file descriptor. `next(waitIfEmpty:)` returns a line, or nil-inside (`.some(nil)`)
/// when no complete line is ready and `waitIfEmpty` is false (the input paused), or nil at the end.
final class LineReader {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false
    init(fd: Int32) { self.fd = fd }

    func next(waitIfEmpty: Bool) throws -> String?? {
        while true {
            if let nl = buffer[start...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[start..<nl], as: UTF8.self)
                start = nl + 1
                if start > 1 << 16 { buffer.removeFirst(start); start = 0 }
                return .some(line)
            }
            if eof {
                if start < buffer.count {
                    let line = String(decoding: buffer[start...], as: UTF8.self)
                    start = buffer.count
                    return .some(line)
                }
                return nil
            }
            if !waitIfEmpty {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 0) == 0 { return .some(nil) }
            }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw CytoError(.io, "cannot read stdin: \(String(cString: strerror(errno)))") }
            if n == 0 { eof = true } else { buffer.append(contentsOf: chunk[0..<n]) }
        }
    }
}
