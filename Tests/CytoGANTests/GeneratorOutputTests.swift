import CellImage
import CytoCore
import CytoNN
import Foundation
import Testing
@testable import CytoGAN

/// With `generator_average`, the model keeps the ramped exponential average of the generator's
/// weights and BatchNorm statistics (checked against snapshots taken after every update and
/// averaged here in Double; 25 updates, so the horizon has grown past one update); samples come
/// from it unless asked for the current generator, and it is saved and loaded with the model.
@Test func samplesComeFromTheGeneratorsAverage() throws {
    var c = Fixture.tinyConfig(loss: .lsgan)
    c.generatorAverage = 0.6
    let (model, tensors, _, _) = try Fixture.trainCheckingAverage(c, decay: 0.6, rampup: Double(GANModel.generatorAverageRampup), steps: 25,
                                                                  network: \.generator, average: \.generatorAverage)
    let z = NoiseSpace.draw(count: 3, latent: c.architecture.latent, seed: 9)
    let averaged = try Sampler(model: model).generate(z)
    let current = try Sampler(model: model, averaged: false).generate(z)
    #expect(averaged != current)
    // The same images from a plain generator holding the average's weights.
    let plain = try GANModel(config: Fixture.tinyConfig(loss: .lsgan))
    try plain.generator.load(tensors)
    #expect(try Sampler(model: plain).generate(z) == averaged)
    // Saved and loaded with the model; training resumes exactly with it.
    let dir = try Fixture.tempDir("generator-average")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try model.save(to: dir + "/m.safetensors")
    #expect(try Sampler(model: try GANModel.load(from: dir + "/m.safetensors")).generate(z) == averaged)
    try checkResume(c)
}

@Test func generatorAverageDecayIsChecked() throws {
    var o = Fixture.tinyConfig().json.objectValue!
    #expect(o["generator_average"] == JSON.null)
    o["generator_average"] = 0.99
    #expect(try GANConfig(json: .object(o)).generatorAverage == 0.99)
    for bad: JSON in [1, 0, "fast"] {
        o["generator_average"] = bad
        do { _ = try GANConfig(json: .object(o)); Issue.record("accepted \(bad)") } catch let e as CytoError {
            #expect(e.field == "generator_average")
        }
    }
}

/// Samples written in the crops' units go back through the inverse of the model's intensity
/// transfer and normalization: read again and preprocessed as a crop, they equal the model-space
/// images to 16-bit rounding.
@Test func samplesInCropUnitsInvertTheNormalization() throws {
    let dir = try Fixture.tempDir("crop-units")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let size = 4, channels = 3, per = channels * size * size
    var rng = RandomStream(seed: 2, purpose: "test-images")
    var images = [Float](repeating: 0, count: 2 * per)
    for i in images.indices { images[i] = rng.uniform(-1.2, 1.2) }  // some beyond the range: clipped
    let scale: [Float] = [1000, 20000, 65535]
    let fixed = [Normalization.fixedScale(scale), .fixedRange(low: [100, 200, 300], high: [4000, 5000, 6000]), .bitDepth(bits: 12)]
    for norm in fixed {
        for transfer in [IntensityTransfer.linear, .squareRoot(offset: 0.04)] {
            let pre = Preprocessing(size: size, channels: channels, normalization: norm, transfer: transfer, resize: .padCrop)
            let paths = try SampleImages.writeTIFFs(images, count: 2, channels: channels, size: size, directory: dir, prefix: "s-", cropUnits: pre)
            // One intensity step in model units, times the transfer's steepest slope (at the dark end).
            let slope: Float = transfer == .linear ? 1 : 1 / (2 * 0.2 * (Float(1.04).squareRoot() - 0.2))
            for (k, path) in paths.enumerated() {
                let raw = try ImageReader.read(path: path)
                var planes = raw.floatPlanes
                let step = (0..<channels).map { c -> Float in let r = norm.unitRange(channel: c)!; return 2 / (r.high - r.low) * slope }
                planes.withUnsafeMutableBufferPointer { buf in
                    var scratch = [Float](repeating: 0, count: size * size)
                    norm.apply(buf.baseAddress!, channels: channels, planeCount: size * size, type: .uint16, scratch: &scratch)
                    transfer.apply(buf.baseAddress!, count: buf.count)
                }
                for c in 0..<channels {
                    for j in 0..<(size * size) {
                        let want = min(max(images[k * per + c * size * size + j], -1), 1)
                        // Rounding to an integer intensity moves a value by at most half an intensity step.
                        #expect(abs(planes[c * size * size + j] - want) <= 0.5 * step[c] + 1e-5, "\(norm) \(transfer) image \(k) channel \(c)")
                    }
                }
            }
        }
    }
    for norm in [Normalization.perCropMax, .percentile(low: 1, high: 99), .bitDepth(bits: nil)] {
        let pre = Preprocessing(size: size, channels: channels, normalization: norm)
        do {
            try SampleImages.writeTIFFs(images, count: 2, channels: channels, size: size, directory: dir + "/no", prefix: "s-", cropUnits: pre)
            Issue.record("wrote \(norm) in crop units")
        } catch let e as CytoError { #expect(e.field == "normalization") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/no"))
    }
}

/// With `dataset_floor_percentile` the estimate is a fixed range from that percentile of the
/// training crops' raw values to the scale percentile (checked against a plain sort with NumPy's
/// linear rule); without a scale percentile the floor is refused, naming the key.
@Test func datasetFloorMakesAFixedRange() throws {
    Engine.setThreads(1)
    let dir = try Fixture.tempDir("floor")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = try Fixture.writeCrops(in: dir, count: 7)
    let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths))
    var c = Fixture.tinyConfig()
    c.datasetScalePercentile = 99
    c.datasetFloorPercentile = 10
    #expect(try GANConfig(json: c.json) == c)
    let model = try GANModel(config: c)
    try model.resolveDatasetScale(from: manifest)
    guard case .fixedRange(let low, let high) = model.config.preprocessing.normalization else {
        Issue.record("no fixed range: \(model.config.preprocessing.normalization)"); return
    }
    let loader = CropLoader(preprocessing: c.preprocessing)
    for ch in 0..<3 {
        var v: [Double] = []
        for p in paths {
            let im = try loader.raw(.file(dir + "/" + p))
            let n = im.planeCount
            v += im.floatPlanes[(ch * n)..<((ch + 1) * n)].map(Double.init)
        }
        v.sort()
        func percentile(_ q: Double) -> Double {
            let rank = q / 100 * Double(v.count - 1), lo = Int(rank.rounded(.down))
            return v[lo] + (rank - Double(lo)) * (v[min(lo + 1, v.count - 1)] - v[lo])
        }
        #expect(abs(Double(low[ch]) - percentile(10)) <= 1e-3 * max(1, percentile(10)), "channel \(ch) low")
        #expect(abs(Double(high[ch]) - percentile(99)) <= 1e-3 * percentile(99), "channel \(ch) high")
    }
    #expect(!model.config.needsDatasetScale)
    var o = Fixture.tinyConfig().json.objectValue!
    o["dataset_floor_percentile"] = 5
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted a floor without a scale") } catch let e as CytoError {
        #expect(e.field == "dataset_floor_percentile")
    }
}

/// A generator with an output margin draws (size + 2 margin) pixels and hands back `size`.
@Test func generatorWithMarginOutputsTheModelSize() throws {
    let arch = DCGANArchitecture(size: 16, channels: 3, latent: 8, generatorWidths: [16, 8, 4], discriminatorWidths: [4, 8],
                                 discriminatorStrides: [1, 2], representation: 6, outputMargin: 2)
    #expect(arch.startSize == 5)
    let g = try arch.makeGenerator()
    var rng = RandomStream(seed: 1, purpose: "init")
    g.initialize(.normal(std: 0.02), rng: &rng)
    let z = Tensor(Shape(2, 8))
    rng.fillNormal(z.buffer)
    #expect(try g.forward(z).shape == Shape(2, 3, 16, 16))
    var bad = arch
    bad.outputMargin = 1
    #expect(throws: CytoError.self) { try bad.makeGenerator() }
}
