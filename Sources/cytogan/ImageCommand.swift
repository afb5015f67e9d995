import ArgumentParser
import CellImage
import CytoCore
import Foundation

/// `cytogan image`: decode, inspect, render and benchmark cell images.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Decode, inspect and render cell images (TIFF, PNG).",
        subcommands: [ImageDump.self, ImagePrepare.self, ImageConvert.self, ImageMontage.self, ImageFeatures.self,
                      ImageBench.self, ImageFuzz.self])
}


/// Parses "0,2,1" into channel indices.
func parseChannelList(_ text: String?) throws -> [Int]? {
    guard let text else { return nil }
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard values.count == parts.count, !values.isEmpty, values.allSatisfy({ $0 >= 0 }) else {
        throw ValidationError("--channels takes comma-separated channel numbers from 0, e.g. 0,2,1 (got '\(text)')")
    }
    return values
}

struct ImageDump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Write decoded, un-normalized pixels to .npy (channels-last, the file's own sample type).",
        discussion: "One input gives shape (H, W, C); several inputs of one shape and type are stacked to (N, H, W, C).")

    @Argument(help: "TIFF or PNG files.") var inputs: [String]
    @Option(help: "Output .npy file.") var npy: String
    @Option(help: "Channels to keep, in order (e.g. 0,2,1); default all.") var channels: String?

    func run() throws {
        let pick = try parseChannelList(channels)
        try reportingErrors {
            var stack: [UInt8] = []
            var first: PixelImage?
            for (i, path) in inputs.enumerated() {
                var im = try ImageReader.read(.file(path, channels: pick))
                if let f = first {
                    guard im.width == f.width, im.height == f.height, im.channels == f.channels, im.sampleType == f.sampleType else {
                        throw CytoError(.shapeMismatch, "shape \(im.height)x\(im.width)x\(im.channels) \(im.sampleType.rawValue) differs from the first input's \(f.height)x\(f.width)x\(f.channels) \(f.sampleType.rawValue); dump stacks inputs of one shape", path: path, index: i)
                    }
                } else { first = im }
                stack.append(contentsOf: im.interleavedBytes)
                im.storage = []
            }
            guard let f = first else { return }
            var shape = [f.height, f.width, f.channels]
            if inputs.count > 1 { shape.insert(inputs.count, at: 0) }
            let out = try AtomicFile(path: npy)
            try out.write(bytes: NPY.header(shape: shape, type: f.sampleType.npyType))
            try stack.withUnsafeBytes { try out.write(raw: $0) }
            try out.commit()
        }
    }
}

/// Parses "a,b" or "a,b,c,d" numbers.
func parseNumbers(_ text: String, count: Int, option: String) throws -> [Double] {
    let v = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard v.count == count, v.allSatisfy(\.isFinite) else {
        throw ValidationError("\(option) takes \(count) comma-separated numbers (got '\(text)')")
    }
    return v
}

struct ImagePrepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Write model inputs to .npy: crops cut, masked, normalized to [-1, 1], the intensity transfer applied, and resized (N, C, S, S) float32.",
        discussion: "Each input is a crop file, or with --channel-files one file per channel (all inputs together form one image). --centre or --box cut a window from a field (zero outside it); --mask keeps one object's pixels.")

    @Argument(help: "Image files.") var inputs: [String]
    @Option(help: "Output .npy file.") var npy: String
    @Option(help: "Model input side.") var size = 96
    @Option(help: "Channels to keep, in order (e.g. 0,2,1).") var channels: String?
    @Flag(help: "The inputs are one single-channel file per channel of one image.") var channelFiles = false
    @Option(help: "Normalization as JSON (kind: per_crop_max, bit_depth, fixed_scale, percentile, fixed_range).")
    var normalization = "{\"kind\":\"per_crop_max\"}"
    @Option(help: "Intensity transfer after the normalization: linear, sqrt:C, or JSON.") var transfer = "linear"
    @Option(help: "How crops reach the model size.") var resize: ResizeMode = .resample
    @Option(help: "Object centre x,y in the field (pixels).") var centre: String?
    @Option(help: "Object bounding box x0,y0,x1,y1 (pixels, end exclusive).") var box: String?
    @Option(help: "Side of the window cut around the centre or box.") var cropSize: Int?
    @Option(help: "Label mask of the field (one object kept).") var mask: String?
    @Option(help: "Label of the object in the mask (default: under the centre).") var label: Int?

    func run() throws {
        let pick = try parseChannelList(channels)
        guard size > 0, size <= 4096 else { throw ValidationError("--size must be in 1...4096") }
        if centre != nil && box != nil { throw ValidationError("give --centre or --box, not both") }
        var region = CropRegion.whole
        if let centre { let v = try parseNumbers(centre, count: 2, option: "--centre"); region = .centre(x: v[0], y: v[1]) }
        if let box {
            let v = try parseNumbers(box, count: 4, option: "--box")
            guard v.allSatisfy({ $0.rounded() == $0 && abs($0) < 1e9 }) else { throw ValidationError("--box takes integers") }
            region = .box(x0: Int(v[0]), y0: Int(v[1]), x1: Int(v[2]), y1: Int(v[3]))
        }
        try reportingErrors {
            let norm = try Normalization(json: try JSON.parse(normalization))
            let transfer = try parseTransfer(self.transfer)
            let sources: [ImageSource] = channelFiles ? [.channelFiles(inputs)] : inputs.map { .file($0, channels: pick) }
            let specs = sources.map { CropSpec(source: $0, region: region, mask: mask.map { MaskSpec(path: $0, label: label) }) }
            // The channel count comes from the first image.
            let probe = try ImageReader.read(sources[0])
            let pre = Preprocessing(size: size, channels: probe.channels, cropSize: cropSize, normalization: norm,
                                    transfer: transfer, resize: resize)
            try norm.validate(channels: probe.channels)
            let loader = CropLoader(preprocessing: pre)
            var all = [Float](repeating: 0, count: specs.count * pre.inputCount)
            try all.withUnsafeMutableBufferPointer { buf in
                for (i, spec) in specs.enumerated() {
                    let slot = UnsafeMutableBufferPointer(rebasing: buf[(i * pre.inputCount)..<((i + 1) * pre.inputCount)])
                    do { try loader.load(spec, into: slot) } catch let e as CytoError { throw e.at(index: i) }
                }
            }
            try NPY.write(all, shape: [specs.count, pre.channels, size, size], type: .float32, to: npy)
        }
    }
}

struct ImageConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Write an image as TIFF or PNG (by the output's extension); .npy float input (H, W[, C]) is quantized.",
        discussion: "TIFF keeps any sample type (channels as contiguous samples); PNG takes 8 or 16-bit images of 1 to 4 channels. A .npy input (e.g. generated cells in [-1, 1]) maps --range onto 0..65535 (--bits 16) or 0..255 (--bits 8).")

    @Argument(help: "Input TIFF, PNG or .npy.") var input: String
    @Option(help: "Output .tif/.tiff or .png.") var out: String
    @Option(help: "Channels to keep, in order.") var channels: String?
    @Option(help: "For .npy input: the value range mapped onto the integer range, lo,hi.") var range = "-1,1"
    @Option(help: "For .npy input: 8 or 16-bit output.") var bits = 16
    @Option(help: "TIFF compression.") var compression: TIFFCompression = .deflate

    func run() throws {
        let pick = try parseChannelList(channels)
        let r = try parseNumbers(range, count: 2, option: "--range")
        guard r[1] > r[0] else { throw ValidationError("--range needs lo < hi") }
        guard bits == 8 || bits == 16 else { throw ValidationError("--bits is 8 or 16") }
        let lower = out.lowercased()
        guard lower.hasSuffix(".tif") || lower.hasSuffix(".tiff") || lower.hasSuffix(".png") else {
            throw ValidationError("--out must end in .tif, .tiff or .png")
        }
        try reportingErrors {
            var image: PixelImage
            if input.lowercased().hasSuffix(".npy") {
                let a = try NPY.read(path: input)
                guard a.shape.count == 2 || a.shape.count == 3, a.shape.allSatisfy({ $0 > 0 }) else {
                    throw CytoError(.shapeMismatch, "expected an (H, W) or (H, W, C) array, got shape \(a.shape)", path: input)
                }
                let h = a.shape[0], w = a.shape[1], c = a.shape.count == 3 ? a.shape[2] : 1
                var planes = [Float](repeating: 0, count: a.values.count)
                for i in 0..<(h * w) { for k in 0..<c { planes[k * h * w + i] = a.values[i * c + k] } }
                image = planes.withUnsafeBufferPointer {
                    PixelImage(quantizing: $0, channels: c, width: w, height: h, from: (Float(r[0]), Float(r[1])), to: bits == 16 ? .uint16 : .uint8)
                }
                if let pick { image = try image.selecting(channels: pick, path: input) }
            } else {
                image = try ImageReader.read(.file(input, channels: pick))
            }
            if lower.hasSuffix(".png") { try ImageWriter.writePNG(image, to: out) }
            else { try ImageWriter.writeTIFF(image, to: out, compression: compression) }
        }
    }
}

/// Paths given on the command line plus those in a manifest CSV's path column (relative paths in a
/// manifest are taken from `root`, by default the manifest's folder).
struct PathInputs: ParsableArguments {
    @Argument(help: "Image files.") var paths: [String] = []
    @Option(help: "Manifest CSV with a path column (pycytominer style).") var manifest: String?
    @Option(help: "Manifest column holding the paths.") var column = "path"
    @Option(help: "Folder that relative manifest paths start from (default: the manifest's folder).") var root: String?
    @Option(help: "Use at most this many paths.") var limit: Int?

    /// The paths, and for manifest rows the row's Metadata_ columns.
    func resolve() throws -> (paths: [String], metadataNames: [String], metadata: [[String]]) {
        var out = paths
        var names: [String] = [], meta: [[String]] = Array(repeating: [], count: paths.count)
        if let manifest {
            var cols = CropManifest.Columns()
            cols.path = column
            let m = try CropManifest(path: manifest, columns: cols, root: root, limit: limit.map { max(0, $0 - out.count) })
            if paths.isEmpty { names = m.metadataNames }
            out += m.specs.map { $0.source.paths[0] }
            meta += names.isEmpty ? m.specs.map { _ in [] } : m.metadata
        }
        if let limit, out.count > limit { out = Array(out.prefix(limit)); meta = Array(meta.prefix(limit)) }
        if !names.isEmpty && meta.contains(where: { $0.count != names.count }) { names = []; meta = meta.map { _ in [] } }
        guard !out.isEmpty else { throw ValidationError("give image paths, or --manifest with a '\(column)' column") }
        return (out, names, meta)
    }
}

struct ImageMontage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "montage",
        abstract: "Render crops as an RGB PNG grid (DNA red, tubulin green, actin blue by default).")

    @OptionGroup var inputs: PathInputs
    @Option(help: "Output PNG.") var out: String
    @Option(help: "Tiles per row (default: a square grid).") var columns: Int?
    @Option(help: "Tile side in pixels (crops are resampled to it).") var tile = 96
    @Option(help: "Pixels between tiles.") var gap = 2
    @Option(help: "Channels to show, in colour order (e.g. 0,2,1); default all.") var channels: String?
    @Option(help: "Colour of each shown channel: names or #rrggbb.") var colours = "red,green,blue"
    @Option(help: "Contrast stretch per tile and channel: percentile (0.5-99.8) or minmax.") var stretch: StretchOption = .percentile

    func run() throws {
        let pick = try parseChannelList(channels)
        guard tile > 0, tile <= 4096 else { throw ValidationError("--tile must be in 1...4096") }
        guard gap >= 0, gap <= 256 else { throw ValidationError("--gap must be in 0...256") }
        if let columns, columns < 1 { throw ValidationError("--columns must be at least 1") }
        try reportingErrors {
            let (paths, _, _) = try inputs.resolve()
            let mapping = DisplayMapping(colours: try DisplayMapping.parseColours(colours), stretch: stretch.contrastStretch)
            var tiles: [PixelImage] = []
            var resamplers: [String: Resampler] = [:]
            for (i, p) in paths.enumerated() {
                let im: PixelImage
                do { im = try ImageReader.read(.file(p, channels: pick)) } catch let e as CytoError { throw e.at(index: i) }
                let key = "\(im.width)x\(im.height)"
                let r = resamplers[key] ?? Resampler(inputWidth: im.width, inputHeight: im.height, outputWidth: tile, outputHeight: tile, mode: .resample)
                resamplers[key] = r
                var resized = [Float](repeating: 0, count: im.channels * tile * tile)
                im.floatPlanes.withUnsafeBufferPointer { src in
                    resized.withUnsafeMutableBufferPointer { r.apply(src.baseAddress!, channels: im.channels, into: $0.baseAddress!, fill: 0) }
                }
                tiles.append(resized.withUnsafeBufferPointer { mapping.render($0, channels: im.channels, width: tile, height: tile) })
            }
            let cols = columns ?? Int(Double(tiles.count).squareRoot().rounded(.up))
            try ImageWriter.writePNG(try Montage.grid(tiles, columns: cols, gap: gap), to: out)
            stderrLine("cytogan: wrote \(tiles.count) tiles, \(cols) per row, to \(out)")
        }
    }
}

/// `image montage --stretch`.
enum StretchOption: String, CaseIterable, ExpressibleByArgument {
    case percentile, minmax

    var contrastStretch: ContrastStretch {
        switch self {
        case .percentile: return .percentile(low: 0.5, high: 99.8)
        case .minmax: return .minMax
        }
    }
}

struct ImageFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Per-crop intensity and nucleus shape measurements (raw intensities) as a CSV.",
        discussion: "Columns: path, the manifest's Metadata_ columns, then Intensity_{Mean,Std,Max,P90}_<channel> per channel and Shape_{Area,Eccentricity,MajorAxisLength,MinorAxisLength,CentroidOffset,ForegroundFraction} of the DNA channel.")

    @OptionGroup var inputs: PathInputs
    @Option(help: "Output CSV.") var csv: String
    @Option(help: "Channel names, in channel order.") var channelNames = "DNA,Tubulin,Actin"
    @Option(help: "Index of the DNA channel (for the shape features).") var dna = 0

    func run() throws {
        let names = channelNames.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        try reportingErrors {
            let (paths, metaNames, meta) = try inputs.resolve()
            let writer = try CSVWriter(path: csv, header: ["path"] + metaNames + CellFeatures.names(channelNames: names))
            for (i, p) in paths.enumerated() {
                let im: PixelImage
                do { im = try ImageReader.read(path: p) } catch let e as CytoError { throw e.at(index: i) }
                guard im.channels == names.count else {
                    throw CytoError(.shapeMismatch, "wrong channel count: \(im.channels) channel(s), --channel-names lists \(names.count)", path: p, index: i)
                }
                guard dna >= 0 && dna < im.channels else { throw ValidationError("--dna must be a channel index below \(im.channels)") }
                let f = CellFeatures.compute(im, dnaChannel: dna)
                try writer.write([p] + meta[i] + f.map { JSON.float($0).serialized })
            }
            try writer.finish()
        }
    }
}

struct ImageBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "(development) Crops per second on one core: read + decode + normalize + resize to the model's input.",
        discussion: "Default input: ../shared/data/bbbc021/crops.csv (BBBC021, 68x68x3 uint16 deflate TIFF) to 96x96 Float32.",
        shouldDisplay: false)

    @OptionGroup var inputs: PathInputs
    @Option(help: "Crops to time (cycling over the inputs).") var count = 20_000
    @Option(help: "Model input side.") var size = 96
    @Option(help: "Normalization as JSON, e.g. '{\"kind\":\"percentile\",\"low\":1,\"high\":99}'.") var normalization = "{\"kind\":\"per_crop_max\"}"
    @Option(help: "How crops reach the model size.") var resize: ResizeMode = .resample

    func run() throws {
        var inputs = self.inputs
        if inputs.paths.isEmpty && inputs.manifest == nil {
            let guess = "../shared/data/bbbc021/crops.csv"
            guard fileExists(guess) else { throw ValidationError("give crops or --manifest (no \(guess) here)") }
            inputs.manifest = guess
        }
        guard count > 0 else { throw ValidationError("--count must be positive") }
        try reportingErrors {
            let (paths, _, _) = try inputs.resolve()
            let first = try ImageReader.read(path: paths[0])
            let pre = Preprocessing(size: size, channels: first.channels,
                                    normalization: try Normalization(json: try JSON.parse(normalization)), resize: resize)
            let loader = CropLoader(preprocessing: pre)
            var out = [Float](repeating: 0, count: pre.inputCount)
            var checksum = 0.0
            let now = MonotonicClock.seconds, cpu = MonotonicClock.threadCPUSeconds
            // Warm-up: page cache and allocator.
            for p in paths.prefix(500) { try out.withUnsafeMutableBufferPointer { try loader.load(.file(p), into: $0) } }
            var tRead = 0.0, tDecode = 0.0, tPrepare = 0.0
            let start = now(), cpuStart = cpu()
            for i in 0..<count {
                let p = paths[i % paths.count]
                let t0 = now()
                let bytes = try readFileBytes(p)
                let t1 = now()
                let im = try bytes.withUnsafeBytes { try ImageReader.decode($0, path: p) }
                let t2 = now()
                try out.withUnsafeMutableBufferPointer { try loader.prepare(im, into: $0, path: p) }
                let t3 = now()
                tRead += t1 - t0; tDecode += t2 - t1; tPrepare += t3 - t2
                checksum += Double(out[i % out.count])
            }
            let total = now() - start, cpuTotal = cpu() - cpuStart
            let us = { (t: Double) in String(format: "%.1f", t / Double(count) * 1e6) }
            print("image bench: \(count) crops (\(paths.count) files, \(first.width)x\(first.height)x\(first.channels) \(first.sampleType.rawValue)) -> \(size)x\(size) Float32, normalization \(pre.normalization.json.serialized), resize \(resize.rawValue), one thread")
            print(String(format: "  %.0f crops/s wall  (%.1f us/crop: read %@ us, decode %@ us, normalize+resize %@ us)",
                         Double(count) / total, total / Double(count) * 1e6, us(tRead), us(tDecode), us(tPrepare)))
            print(String(format: "  %.0f crops per CPU-second of this thread (%.1f us CPU/crop; wall and CPU differ when the machine is shared)",
                         Double(count) / cpuTotal, cpuTotal / Double(count) * 1e6))
            stderrLine("checksum \(checksum)")
        }
    }
}

/// The input under test in the fuzz loop, where a fatal signal handler can reach it.
nonisolated(unsafe) private var fuzzCurrent: UnsafeMutablePointer<UInt8>? = nil
nonisolated(unsafe) private var fuzzCurrentCount = 0
nonisolated(unsafe) private var fuzzCrashPath: UnsafeMutablePointer<CChar>? = nil

/// On a fatal signal: save the input being decoded, then die with the same signal.
private func fuzzFatalSignal(_ sig: Int32) {
    if let path = fuzzCrashPath, let data = fuzzCurrent {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd >= 0 { _ = write(fd, data, fuzzCurrentCount); close(fd) }
    }
    signal(sig, SIG_DFL)
    raise(sig)
}

struct ImageFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "(development) Feed mutated copies of seed files to the decoders; report outcomes.",
        discussion: "Mutations: bit flips, random and boundary bytes and words, truncation, insertion, deletion and duplication of byte runs, biased toward the TIFF header and IFD and the PNG header chunks. Every successful decode also goes through normalization and resizing. A crash leaves its input at --crash-dir/crash-PID.bin.",
        shouldDisplay: false)

    @Argument(help: "Seed files (TIFF, PNG) or folders of them.") var seeds: [String]
    @Option(help: "How long to run.") var seconds = 60.0
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Where a crashing input is saved.") var crashDir = "."
    @Option(help: "Decode limit in MiB (keeps absurd headers from exhausting memory).") var maxMib = 256

    func run() throws {
        var corpus: [[UInt8]] = []
        for s in seeds {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: s, isDirectory: &isDir), isDir.boolValue {
                let items = (try? FileManager.default.subpathsOfDirectory(atPath: s)) ?? []
                for f in items.sorted() where f.hasSuffix(".tif") || f.hasSuffix(".tiff") || f.hasSuffix(".png") {
                    corpus.append(try readFileBytes(s + "/" + f))
                }
            } else { corpus.append(try readFileBytes(s)) }
        }
        guard !corpus.isEmpty else { throw ValidationError("no seed files found") }
        ImageWarnings.setEnabled(false)
        let crashPath = "\(crashDir)/crash-\(getpid()).bin"
        fuzzCrashPath = strdup(crashPath)
        for sig in [SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTRAP] { signal(sig, fuzzFatalSignal) }

        var rng = RandomStream(seed: seed, purpose: "fuzz")
        let limits = DecodeLimits(maxBytes: maxMib << 20, maxChannels: 4096)
        let loader = CropLoader(preprocessing: Preprocessing(size: 32, channels: 1))
        var outcomes: [String: Int] = [:]
        var messages: [String: Int] = [:]
        var iterations = 0, decoded = 0
        var out = [Float](repeating: 0, count: 64 * 32 * 32)
        var buffer = [UInt8](repeating: 0, count: 0)
        let start = Date()
        var lastReport = start
        while Date().timeIntervalSince(start) < seconds {
            for _ in 0..<50 {
                buffer = corpus[rng.below(corpus.count)]
                mutate(&buffer, &rng)
                // Half the time, repair PNG chunk CRCs so mutations reach libpng's decoding.
                if rng.below(2) == 0 { fixPNGChecksums(&buffer) }
                iterations += 1
                buffer.withUnsafeMutableBufferPointer { b in fuzzCurrent = b.baseAddress; fuzzCurrentCount = b.count }
                do {
                    let im = try buffer.withUnsafeBytes { try ImageReader.decode($0, path: "fuzz", limits: limits) }
                    decoded += 1
                    outcomes["decoded", default: 0] += 1
                    // Exercise the rest of the path on what decoded: normalization and resizing.
                    if im.planeCount > 1 << 18 { continue }
                    let one = try im.selecting(channels: [0])
                    try out.withUnsafeMutableBufferPointer { try loader.prepare(one, into: $0) }
                    _ = CellFeatures.compute(one)
                } catch let e as CytoError {
                    outcomes[e.kind.rawValue, default: 0] += 1
                    let key = String(e.message.prefix(60))
                    if messages.count < 5000 || messages[key] != nil { messages[key, default: 0] += 1 }
                }
                fuzzCurrent = nil
            }
            if Date().timeIntervalSince(lastReport) > 10 {
                lastReport = Date()
                stderrLine("fuzz: \(iterations) inputs, \(decoded) decoded, \(Int(Double(iterations) / lastReport.timeIntervalSince(start)))/s")
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        print("fuzz: \(iterations) inputs in \(String(format: "%.0f", elapsed)) s (\(Int(Double(iterations) / elapsed))/s) from \(corpus.count) seeds; no crash")
        for (k, v) in outcomes.sorted(by: { $0.value > $1.value }) { print("  \(k): \(v)") }
        print("  distinct error messages: \(messages.count); most frequent:")
        for (k, v) in messages.sorted(by: { $0.value > $1.value }).prefix(15) { print("    \(v)  \(k)") }
    }

    /// Applies 1 to 8 random mutations, half of them at the file's structural bytes.
    private func mutate(_ b: inout [UInt8], _ rng: inout RandomStream) {
        let hot = hotRange(b)
        for _ in 0..<(1 + rng.below(8)) {
            if b.isEmpty { b = [UInt8(rng.below(256))]; continue }
            let pos = (rng.below(2) == 0 && !hot.isEmpty) ? min(b.count - 1, hot.lowerBound + rng.below(hot.count)) : rng.below(b.count)
            switch rng.below(10) {
            case 0: b[pos] ^= UInt8(1 << rng.below(8))
            case 1: b[pos] = UInt8(rng.below(256))
            case 2: b[pos] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)]
            case 3, 4:
                let words: [UInt32] = [0, 1, 2, 3, 8, 16, 0xff, 0x100, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
                                       UInt32(b.count), UInt32(b.count &+ 1), UInt32(max(0, b.count - 1))]
                let w = words[rng.below(words.count)], width = rng.below(2) == 0 ? 2 : 4
                for k in 0..<width where pos + k < b.count {
                    b[pos + k] = UInt8(truncatingIfNeeded: rng.below(2) == 0 ? w >> (8 * k) : w >> (8 * (width - 1 - k)))
                }
            case 5: b.removeSubrange(pos..<b.count)  // truncate
            case 6:
                let n = 1 + rng.below(64)
                b.insert(contentsOf: (0..<n).map { _ in UInt8(rng.below(256)) }, at: pos)
            case 7: b.removeSubrange(pos..<min(b.count, pos + 1 + rng.below(64)))
            case 8:
                let n = min(b.count - pos, 1 + rng.below(256))
                let run = Array(b[pos..<(pos + n)])
                b.insert(contentsOf: run, at: rng.below(b.count))
            default:
                let a = rng.below(b.count), c = rng.below(b.count)
                b.swapAt(a, c)
            }
        }
    }

    /// Recomputes the CRC of every complete PNG chunk.
    private func fixPNGChecksums(_ b: inout [UInt8]) {
        guard b.count > 8, b[0] == 0x89, b[1] == 0x50 else { return }
        var pos = 8
        while pos + 12 <= b.count {
            let len = Int(b[pos]) << 24 | Int(b[pos + 1]) << 16 | Int(b[pos + 2]) << 8 | Int(b[pos + 3])
            guard len <= b.count - pos - 12 else { return }
            let crc = b.withUnsafeBytes { crc32(UnsafeRawBufferPointer(rebasing: $0[(pos + 4)..<(pos + 8 + len)])) }
            for k in 0..<4 { b[pos + 8 + len + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * k)) }
            pos += 12 + len
        }
    }

    /// The header bytes: TIFF's 8-byte header and first IFD, PNG's first 64 bytes.
    private func hotRange(_ b: [UInt8]) -> Range<Int> {
        guard b.count >= 8 else { return 0..<b.count }
        if b[0] == 0x49 || b[0] == 0x4D {
            let le = b[0] == 0x49
            let off = le ? Int(b[4]) | Int(b[5]) << 8 | Int(b[6]) << 16 | Int(b[7]) << 24
                         : Int(b[7]) | Int(b[6]) << 8 | Int(b[5]) << 16 | Int(b[4]) << 24
            if off + 2 <= b.count {
                let n = le ? Int(b[off]) | Int(b[off + 1]) << 8 : Int(b[off + 1]) | Int(b[off]) << 8
                return off..<min(b.count, off + 2 + 12 * n + 4)
            }
            return 0..<8
        }
        return 0..<min(64, b.count)
    }
}
