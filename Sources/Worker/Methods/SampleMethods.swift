import CellImage
import CytoCore
import CytoGAN
import Foundation

/// Generated cells (PROTOCOL.md §8.5) and real cells mapped into noise space: samples from noise,
/// interpolations, noise algebra, and cells/encode, through CytoGAN's Sampler, NoiseSpace and
/// NoiseEncoder, with images written as PNG/TIFF files or returned inline.
extension Server {
    func registerSampleMethods() {
        register("samples/generate", params: ["count", "latents", "seed", "output", "returnLatents", "returnImages"],
                 summary: "Generate cells from noise: count draws from a seed, or given latents.",
                 handler: generateSamples)

        register("samples/interpolate", params: ["from", "to", "steps", "mode", "output", "returnLatents", "returnImages"],
                 summary: "Cells along a line (linear) or a great circle (slerp) between two latents, both ends included.",
                 handler: interpolateSamples)

        register("samples/algebra", params: ["a", "b", "c", "output", "returnImages"],
                 summary: "Noise vector algebra: the cell of a - b + c, with the cells of a, b and c.",
                 handler: sampleAlgebra)

        register("cells/encode",
                 params: ["crops", "channels", "steps", "learningRate", "restarts", "featureWeight", "priorWeight", "seed",
                          "returnImages", "output"],
                 summary: "Find, for each real crop, the noise vector whose generated cell is closest to it (Adam on z, the networks frozen).",
                 handler: encodeCells)
    }
}

/// The `samples/generate` handler (PROTOCOL.md §8.5).
private func generateSamples(_ req: Request) throws -> JSON {
    let p = req.params
    var count: Int? = nil, seed: UInt64 = 0, latents: [LatentSpec] = []
    if try p.exactlyOne(of: ["count", "latents"]) == "count" {
        count = try p.int("count", in: 1...10_000)
        seed = UInt64(try p.int("seed", default: 0, in: 0...Int.max))
    } else {
        latents = try p.objects("latents", count: 1...10_000).map(LatentSpec.init)
        if p.has("seed") { throw p.error("seed", "draws the latents of `count`; given latents carry their own seeds") }
    }
    let output = try ImageOutput(p, "output")
    let returnLatents = try p.bool("returnLatents", default: true)
    let returnImages = try p.bool("returnImages", default: false)
    let config = try req.server.models.config()
    let dim = config.architecture.latent
    let z = try count.map { NoiseSpace.draw(count: $0, latent: dim, seed: seed) } ?? latents.flatMap { try $0.resolve(dim: dim) }
    let n = z.count / dim
    let images = try generate(req, z, count: n)
    req.keep(images: GeneratedImages(images, count: n, config: config, montage: ImageOutput.rowsOfTen(n),
                                     captions: (0..<n).map { "cell \($0)" }))
    var result: [String: JSON] = ["count": JSON(n)]
    if returnLatents { result["latents"] = .array(vectorsJSON(z, width: dim)) }
    if returnImages { result["images"] = .array(imagesJSON(images, count: n, config: config)) }
    if let output {
        try output.write(images, names: output.numbered(n), montage: ImageOutput.rowsOfTen(n), config: config, into: &result)
    }
    return .object(result)
}

/// The `samples/interpolate` handler (PROTOCOL.md §8.5).
private func interpolateSamples(_ req: Request) throws -> JSON {
    let p = req.params
    let from = try LatentSpec(try p.object("from"))
    let to = try LatentSpec(try p.object("to"))
    let steps = try p.int("steps", default: 8, in: 2...1000)
    let mode = InterpolationMode(rawValue: try p.choice("mode", InterpolationMode.allCases.map(\.rawValue), default: "linear"))!
    let output = try ImageOutput(p, "output")
    let returnLatents = try p.bool("returnLatents", default: true)
    let returnImages = try p.bool("returnImages", default: false)
    let config = try req.server.models.config()
    let dim = config.architecture.latent
    let a = try from.resolve(dim: dim), b = try to.resolve(dim: dim)
    let z = try NoiseSpace.interpolate(a, b, steps: steps, mode: mode).flatMap { $0 }
    let images = try generate(req, z, count: steps)
    req.keep(images: GeneratedImages(images, count: steps, config: config, montage: [Array(0..<steps)],
                                     captions: (0..<steps).map { "point \($0 + 1) of \(steps)" }))
    var result: [String: JSON] = ["count": JSON(steps)]
    if returnLatents { result["latents"] = .array(vectorsJSON(z, width: dim)) }
    if returnImages { result["images"] = .array(imagesJSON(images, count: steps, config: config)) }
    if let output {
        try output.write(images, names: output.numbered(steps), montage: [Array(0..<steps)], config: config, into: &result)
    }
    return .object(result)
}

/// The `samples/algebra` handler (PROTOCOL.md §8.5).
private func sampleAlgebra(_ req: Request) throws -> JSON {
    let p = req.params
    let terms = try ["a", "b", "c"].map { try LatentSpec(try p.object($0)) }
    let output = try ImageOutput(p, "output")
    let returnImages = try p.bool("returnImages", default: false)
    let config = try req.server.models.config()
    let dim = config.architecture.latent
    let (a, b, c) = (try terms[0].resolve(dim: dim), try terms[1].resolve(dim: dim), try terms[2].resolve(dim: dim))
    let r = try NoiseSpace.algebra(a, minus: b, plus: c)
    let images = try generate(req, a + b + c + r, count: 4)
    req.keep(images: GeneratedImages(images, count: 4, config: config, montage: [[0, 1, 2, 3]], captions: ["a", "b", "c", "a - b + c"]))
    var result: [String: JSON] = ["latent": vectorsJSON(r, width: dim)[0],
                                  "terms": ["a": vectorsJSON(a, width: dim)[0], "b": vectorsJSON(b, width: dim)[0],
                                            "c": vectorsJSON(c, width: dim)[0]]]
    if returnImages {
        let all = imagesJSON(images, count: 4, config: config)
        result["images"] = ["a": all[0], "b": all[1], "c": all[2], "result": all[3]]
    }
    if let output {
        try output.write(images, names: ["a", "b", "c", "result"].map { output.prefix + $0 }, montage: [[0, 1, 2, 3]],
                         config: config, into: &result)
    }
    return .object(result)
}

/// The `cells/encode` handler (PROTOCOL.md §8.4).
private func encodeCells(_ req: Request) throws -> JSON {
    let p = req.params
    let crops = try decodeCrops(p, "crops", count: 1...10_000, channels: try decodeChannels(p))
    var options = NoiseEncoder.Options()
    options.iterations = try p.int("steps", default: 300, in: 0...100_000)
    options.learningRate = Float(try p.number("learningRate", default: 0.05, in: 1e-9...1e3))
    options.restarts = try p.int("restarts", default: 2, in: 1...64)
    options.featureWeight = Float(try p.number("featureWeight", default: 1, in: 0...1e6))
    options.priorWeight = Float(try p.number("priorWeight", default: 0.1, in: 0...1e6))
    options.seed = UInt64(try p.int("seed", default: 1, in: 0...Int.max))
    let returnImages = try p.bool("returnImages", default: false)
    let output = try ImageOutput(p, "output")
    let config = try req.server.models.config()

    // Every crop is read before any optimization: a bad one is named at once.
    let inputs = try readCrops(crops, config.preprocessing, req)
    let per = config.preprocessing.inputCount
    // In the encoder's batches, so progress and cancellation come between them.
    let dim = config.architecture.latent
    var z: [Float] = [], recon: [Float] = [], pixel: [Float] = [], feature: [Float] = []
    var start = 0
    while start < crops.count {
        try req.checkCancelled()
        let n = min(options.batchSize, crops.count - start)
        var o = options
        o.seed = options.seed &+ UInt64(start / options.batchSize)
        let r = try req.server.models.use { m in
            try NoiseEncoder(model: m, options: o).encode(Array(inputs[(start * per)..<((start + n) * per)]), count: n)
        }
        z += r.z; recon += r.reconstructions; pixel += r.pixelError; feature += r.featureError
        start += n
        req.progress(Double(start), total: Double(crops.count), message: "cell \(start)/\(crops.count)")
    }
    req.keep(images: GeneratedImages(recon, count: crops.count, config: config, montage: ImageOutput.rowsOfTen(crops.count),
                                     captions: (0..<crops.count).map { "reconstruction of crop \($0)" }))
    var result: [String: JSON] = ["latents": .array(vectorsJSON(z, width: dim)), "pixelError": .array(pixel.map { .float($0) }),
                                  "featureError": .array(feature.map { .float($0) })]
    if returnImages { result["images"] = .array(imagesJSON(recon, count: crops.count, config: config)) }
    if let output {
        try output.write(recon, names: output.numbered(crops.count), montage: ImageOutput.rowsOfTen(crops.count), config: config,
                         into: &result)
    }
    return .object(result)
}


/// Every crop of `crops` as model input, one after another (cancellation between two); a crop
/// that cannot be read is an error naming its index (and its id, when it has one).
private func readCrops(_ crops: RequestedCrops, _ preprocessing: Preprocessing, _ req: Request) throws -> [Float] {
    let loader = CropLoader(preprocessing: preprocessing)
    let per = preprocessing.inputCount
    var inputs = [Float](repeating: 0, count: crops.count * per)
    for (i, spec) in crops.specs.enumerated() {
        try req.checkCancelled()
        do {
            try inputs.withUnsafeMutableBufferPointer { try loader.load(spec, into: UnsafeMutableBufferPointer(rebasing: $0[(i * per)..<((i + 1) * per)])) }
        } catch let e as CytoError {
            var err = RPCError(e.at(index: i))
            if crops.ids[i] != .null { err.data["id"] = crops.ids[i] }
            throw err
        }
    }
    return inputs
}

/// Runs the generator on `count` noise vectors in batches of 64, with progress and cancellation
/// between batches; CHW images in [-1, 1].
private func generate(_ req: Request, _ z: [Float], count: Int) throws -> [Float] {
    let dim = z.count / max(count, 1)
    var images: [Float] = []
    var start = 0
    while start < count {
        try req.checkCancelled()
        let n = min(64, count - start)
        images += try req.server.models.use { m in try Sampler(model: m, batchSize: 64).generate(Array(z[(start * dim)..<((start + n) * dim)])) }
        start += n
        req.progress(Double(start), total: Double(count), message: "cell \(start)/\(count)")
    }
    try req.checkCancelled()
    return images
}

/// A Latent (PROTOCOL.md §7) as given: `{"seed"}`, `{"vector"}`, or the mean of `{"seeds"}` /
/// `{"vectors"}`. Decoding checks types; `resolve` checks lengths against the model.
struct LatentSpec {
    enum Kind { case seed(UInt64), vector([Float]), seeds([UInt64]), vectors([[Float]]) }
    var kind: Kind
    /// Where it sits in the params ("from", "latents[3]") and its list index, for errors.
    var field: String
    var index: Int?

    init(_ o: Params) throws {
        field = o.path
        index = o.index
        let key = try o.exactlyOne(of: ["seed", "vector", "seeds", "vectors"])
        try o.rejectUnknown(allowed: [key])
        func numbers(_ values: [JSON], _ name: String) throws -> [Float] {
            try values.enumerated().map { i, v in
                guard let d = v.doubleValue, Float(d).isFinite else {
                    throw RPCError.invalidParams(field: "\(name)[\(i)]", "\(name)[\(i)] must be a number within float range", index: o.index)
                }
                return Float(d)
            }
        }
        switch key {
        case "seed": kind = .seed(UInt64(try o.int("seed", in: 0...Int.max)))
        case "vector": kind = .vector(try numbers(try o.array("vector"), o.field("vector")))
        case "seeds":
            let seeds = try o.ints("seeds", count: 1...10_000)
            if let i = seeds.firstIndex(where: { $0 < 0 }) { throw o.error("seeds", "[\(i)] must be at least 0") }
            kind = .seeds(seeds.map { UInt64($0) })
        default:
            let list = try o.array("vectors")
            guard (1...10_000).contains(list.count) else { throw o.error("vectors", "must have between 1 and 10000 vectors, not \(list.count)") }
            kind = .vectors(try list.enumerated().map { i, v in
                guard let a = v.arrayValue else { throw o.error("vectors", "[\(i)] must be an array of numbers") }
                return try numbers(a, o.field("vectors") + "[\(i)]")
            })
        }
    }

    /// The vector, of the model's latent size `dim` (-32013 naming the vector otherwise). A draw
    /// from seed S is the first vector `samples/generate` draws with seed S.
    func resolve(dim: Int) throws -> [Float] {
        func checked(_ v: [Float], _ name: String) throws -> [Float] {
            guard v.count == dim else {
                throw CytoError(.shapeMismatch, "\(name) has \(v.count) values; the model's latent vectors have \(dim)", field: name, index: index)
            }
            return v
        }
        func mean(_ vs: [[Float]]) -> [Float] { (0..<dim).map { j in vs.reduce(0) { $0 + $1[j] } / Float(vs.count) } }
        let prefix = field.isEmpty ? "" : field + "."
        switch kind {
        case .seed(let s): return NoiseSpace.draw(count: 1, latent: dim, seed: s)
        case .vector(let v): return try checked(v, prefix + "vector")
        case .seeds(let ss): return mean(ss.map { NoiseSpace.draw(count: 1, latent: dim, seed: $0) })
        case .vectors(let vs): return mean(try vs.enumerated().map { try checked($1, prefix + "vectors[\($0)]") })
        }
    }
}

/// Vectors (count x width, row-major) as a JSON array of arrays of float32 numbers.
func vectorsJSON(_ v: [Float], width: Int) -> [JSON] {
    stride(from: 0, to: v.count, by: width).map { s in .array(v[s..<(s + width)].map { .float($0) }) }
}

/// Images inline (PROTOCOL.md §7 "Image"): `{"shape": [C, H, W], "data": [...]}` each.
func imagesJSON(_ images: [Float], count: Int, config: GANConfig) -> [JSON] {
    let c = config.architecture.channels, s = config.architecture.size, per = c * s * s
    return (0..<count).map { i in
        ["shape": [JSON(c), JSON(s), JSON(s)], "data": .array(images[(i * per)..<((i + 1) * per)].map { .float($0) })]
    }
}

/// Where generated images go (PROTOCOL.md §7 "ImageOutput"): a folder, PNG (8-bit RGB in the
/// paper's colours over the model's range [-1, 1]) and/or 16-bit TIFF, a file name prefix, and
/// optionally a montage. Every file is written atomically.
struct ImageOutput {
    var directory: String
    var png: Bool
    var tiff: Bool
    var prefix: String
    var montage: Bool
    /// TIFFs in the training crops' intensity units (the inverse of the model's normalization)
    /// rather than the model's -1...1 stretched over 0...65535.
    var cropUnits: Bool

    /// nil when the method was given no `output`.
    init?(_ p: Params, _ key: String) throws {
        guard let o = try p.optionalObject(key) else { return nil }
        try o.rejectUnknown(allowed: ["dir", "format", "prefix", "montage", "units"])
        directory = try nonEmpty(o, "dir")
        let format = try o.choice("format", ["png", "tiff", "both"], default: "png")
        png = format != "tiff"
        tiff = format != "png"
        prefix = try o.string("prefix", default: "sample-")
        if prefix.contains("/") { throw o.error("prefix", "is a file name prefix: no '/'") }
        montage = try o.bool("montage", default: false)
        cropUnits = try o.choice("units", ["model", "crops"], default: "model") == "crops"
        if cropUnits && !tiff { throw o.error("units", "applies to TIFF files: set format to tiff or both") }
    }

    /// `<prefix><i>` with i zero-padded to at least 4 digits (as `cytogan sample` names files).
    func numbered(_ n: Int) -> [String] {
        let digits = max(4, String(max(n - 1, 0)).count)
        return (0..<n).map { i in
            let s = String(i)
            return prefix + String(repeating: "0", count: digits - s.count) + s
        }
    }

    /// Montage rows of ten images each for `count` images.
    static func rowsOfTen(_ count: Int) -> [[Int]] {
        stride(from: 0, to: count, by: 10).map { Array($0..<min($0 + 10, count)) }
    }

    /// Writes image i as `<dir>/<names[i]>.png|.tif`, then the montage `<dir>/<prefix>montage.png`
    /// whose rows list image indexes, and records the paths in a method's result: "files" (per
    /// image: PNG, then TIFF) and "montage" when one was drawn.
    func write(_ images: [Float], names: [String], montage rows: [[Int]], config: GANConfig,
               into result: inout [String: JSON]) throws {
        let c = config.architecture.channels, s = config.architecture.size
        let units = cropUnits ? config.preprocessing : nil
        try units?.checkInvertible()
        try makeDirectories(directory)
        var files: [JSON] = []
        for (i, name) in names.enumerated() {
            let base = directory + "/" + name
            if png {
                try ImageWriter.writePNG(SampleImages.tile(images, index: i, channels: c, size: s), to: base + ".png")
                files.append(.string(base + ".png"))
            }
            if tiff {
                try SampleImages.writeTIFF(images, index: i, channels: c, size: s, to: base + ".tif", cropUnits: units)
                files.append(.string(base + ".tif"))
            }
        }
        result["files"] = .array(files)
        if montage {
            let path = directory + "/" + prefix + "montage.png"
            try SampleImages.writeMontage(images, rows: rows, channels: c, size: s, to: path)
            result["montage"] = .string(path)
        }
    }
}

extension GeneratedImages {
    /// `count` images of a model of configuration `config`.
    init(_ planes: [Float], count: Int, config: GANConfig, montage: [[Int]], captions: [String]) {
        self.init(planes: planes, count: count, channels: config.architecture.channels, size: config.architecture.size,
                  montageRows: montage, captions: captions)
    }
}
