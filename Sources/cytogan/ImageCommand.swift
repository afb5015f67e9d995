import ArgumentParser
import CellImage
import CytoCore
import Foundation

/// `cytogan image`: decode, inspect, render and benchmark cell images.
struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Decode, inspect and render cell images (TIFF, PNG).",
        subcommands: [ImageDump.self, ImageMontage.self, ImageFeatures.self, ImageBench.self, ImageFuzz.self])
}

/// Runs `body`, turning a CytoError into a one-line message on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as CytoError {
        FileHandle.standardError.write(Data("cytogan: error: \(e.description)\n".utf8))
        throw ExitCode(1)
    }
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

struct ImageMontage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "montage", abstract: "(coming)")
    func run() throws { throw ValidationError("not yet") }
}
struct ImageFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "features", abstract: "(coming)")
    func run() throws { throw ValidationError("not yet") }
}
struct ImageBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "(coming)")
    func run() throws { throw ValidationError("not yet") }
}
struct ImageFuzz: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fuzz", abstract: "(coming)", shouldDisplay: false)
    func run() throws { throw ValidationError("not yet") }
}
