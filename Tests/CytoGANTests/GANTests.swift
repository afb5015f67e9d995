import CellImage
import CytoCore
import CytoNN
import Foundation
import Testing
@testable import CytoGAN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: Configuration

@Test func presetsFollowThePaper() throws {
    for loss in GANLoss.allCases {
        let c = try GANConfig.preset("paper-96", loss: loss)
        let (d, g) = loss == .dcgan ? (Float(5e-5), Float(1e-5)) : (Float(7e-5), Float(2e-4))
        #expect(c.discriminatorRate == LearningRate(d, decayRate: 0.9999, decaySteps: 100, staircase: true))
        #expect(c.generatorRate == LearningRate(g, decayRate: 0.9999, decaySteps: 100, staircase: true))
        #expect(c.beta1 == 0.5 && c.batchSize == 64 && c.architecture == .paper96)
        #expect(c.preprocessing == .cytogan && c.preprocessing.normalization == .perCropMax)
        #expect(c.gradientPenalty == 10 && c.featureLayer == .representation && c.augmentation == .none)
    }
    let s = try GANConfig.preset("small-64")
    #expect(s.architecture.size == 64 && s.preprocessing.size == 64)
    #expect(throws: CytoError.self) { try GANConfig.preset("big-512") }
}

@Test func configJSONRoundTrips() throws {
    var c = Fixture.tinyConfig(loss: .wgangp, criticSteps: 3)
    c.featureLayer = try FeatureLayer(parsing: "representation,pooled,pool:lrelu1,max:lrelu0,pooled-std@dihedral")
    c.seed = UInt64.max - 7
    c.initialization = .heNormal
    c.preprocessing.normalization = .fixedScale([1000, 2000, 3000])
    c.diffAugment = DiffAugmentPolicy(translation: 0.25, cutout: 0.375, fill: 0, brightness: 0.25, contrast: 0.5)
    c.datasetScalePercentile = 99.5
    c.discriminatorAverage = 0.995
    let text = c.json.serialized
    let back = try GANConfig(json: try JSON.parse(text))
    #expect(back == c)
    #expect(back.json.serialized == text)
    for p in GANConfig.presetNames {
        let preset = try GANConfig.preset(p, loss: .dcgan, seed: 9)
        #expect(try GANConfig(json: preset.json) == preset)
    }
}

@Test func badConfigNamesTheField() throws {
    var o = Fixture.tinyConfig().json.objectValue!
    o["batch_size"] = 1
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted batch 1") } catch let e as CytoError { #expect(e.field == "batch_size") }
    o = Fixture.tinyConfig().json.objectValue!
    o["loss"] = "vae"
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted loss vae") } catch let e as CytoError { #expect(e.field == "loss") }
    o = Fixture.tinyConfig().json.objectValue!
    o["critic_steps"] = 5  // LSGAN
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted critic steps for LSGAN") } catch let e as CytoError { #expect(e.field == "critic_steps") }
    o = Fixture.tinyConfig().json.objectValue!
    o["diff_augment"] = ["translation": 0.75]
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted a shift of 3/4") } catch let e as CytoError { #expect(e.field == "translation") }
    var jittered = Fixture.tinyConfig()
    jittered.diffAugment.contrast = 1  // a factor that can reach 0: refused when built in code too
    do { try jittered.validate(); Issue.record("accepted contrast 1") } catch let e as CytoError { #expect(e.field == "contrast") }
    o = Fixture.tinyConfig().json.objectValue!
    o["dataset_scale_percentile"] = 120
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted percentile 120") } catch let e as CytoError { #expect(e.field == "dataset_scale_percentile") }
    o = Fixture.tinyConfig().json.objectValue!
    o["discriminator_average"] = 1
    do { _ = try GANConfig(json: .object(o)); Issue.record("accepted decay 1") } catch let e as CytoError { #expect(e.field == "discriminator_average") }
}

/// Feature matching, the contrastive term and the R1 penalty were retired after measurement: a
/// config that sets any of them is refused with the key named, while null (what checkpoints of
/// that time store) or absence still parses to the same config.
@Test func retiredConfigKeysAreRefusedUnlessNull() throws {
    let c = Fixture.tinyConfig()
    for (key, value): (String, JSON) in [("feature_matching", 1), ("contrastive", 0.1), ("contrastive", ["weight": 1, "temperature": 0.2]),
                                         ("r1_penalty", 10), ("r1_penalty", ["gamma": 10, "interval": 16])] {
        var o = c.json.objectValue!
        o[key] = value
        do { _ = try GANConfig(json: .object(o)); Issue.record("accepted \(key) \(value)") } catch let e as CytoError {
            #expect(e.field == key)
            #expect(e.message.contains("retired"), "\(e.message)")
        }
    }
    var o = c.json.objectValue!
    #expect(!o.keys.contains("contrastive") && !o.keys.contains("feature_matching") && !o.keys.contains("r1_penalty"))
    o["contrastive"] = .null
    o["feature_matching"] = .null
    o["r1_penalty"] = .null
    #expect(try GANConfig(json: .object(o)) == c)
}

/// The generator's camera-noise layer was retired after measurement: an architecture that asks
/// for it is refused with the key named; null or false parse to the same config.
@Test func retiredSensorNoiseIsRefused() throws {
    let c = Fixture.tinyConfig()
    func config(sensorNoise value: JSON) -> JSON {
        var o = c.json.objectValue!
        var a = o["architecture"]!.objectValue!
        a["sensor_noise"] = value
        o["architecture"] = .object(a)
        return .object(o)
    }
    for value: JSON in [true, 1, "yes"] {
        do { _ = try GANConfig(json: config(sensorNoise: value)); Issue.record("accepted sensor_noise \(value)") } catch let e as CytoError {
            #expect(e.field == "sensor_noise")
            #expect(e.message.contains("retired"), "\(e.message)")
        }
    }
    for value: JSON in [false, .null] { #expect(try GANConfig(json: config(sensorNoise: value)) == c) }
}

/// A checkpoint written before the retirements (its config holds `"contrastive": null,
/// "feature_matching": null, "r1_penalty": null`) loads and extracts the same features; one that
/// set any of them is refused, naming the key and the file.
@Test func checkpointsFromBeforeTheRetirementStillLoad() throws {
    Engine.setThreads(1)
    let model = try GANModel(config: Fixture.tinyConfig(loss: .lsgan))
    var rng = RandomStream(seed: 4, purpose: "test-batch")
    let a = model.config.architecture
    let real = Tensor(Shape(4, a.channels, a.size, a.size))
    for _ in 1...2 {
        rng.fillNormal(real.buffer, std: 0.5)
        _ = try model.trainingStep.step(real: real)
    }
    let dir = try Fixture.tempDir("retired")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try model.save(to: dir + "/now.safetensors")
    let file = try SafeTensors.read(dir + "/now.safetensors")
    func rewrite(_ extra: [String: JSON], to path: String) throws {
        var config = try JSON.parse(file.metadata[GANModel.CheckpointKeys.config]!).objectValue!
        for (k, v) in extra { config[k] = v }
        var meta = file.metadata
        meta[GANModel.CheckpointKeys.config] = JSON.object(config).serialized
        try SafeTensors.write(file.names.map { ($0, file.tensors[$0]!) }, metadata: meta, to: path)
    }
    try rewrite(["contrastive": .null, "feature_matching": .null, "r1_penalty": .null], to: dir + "/old.safetensors")
    let old = try GANModel.load(from: dir + "/old.safetensors")
    #expect(old.config == model.config)
    rng.fillNormal(real.buffer, std: 0.5)
    #expect(try FeatureExtractor(model: old).extract(real) == FeatureExtractor(model: model).extract(real))
    try rewrite(["feature_matching": 30], to: dir + "/fm.safetensors")
    do { _ = try GANModel.load(from: dir + "/fm.safetensors"); Issue.record("loaded a checkpoint with feature matching") } catch let e as CytoError {
        #expect(e.field == "feature_matching" && e.path == dir + "/fm.safetensors")
    }
    try rewrite(["r1_penalty": ["gamma": 10, "interval": 16]], to: dir + "/r1.safetensors")
    do { _ = try GANModel.load(from: dir + "/r1.safetensors"); Issue.record("loaded a checkpoint with R1") } catch let e as CytoError {
        #expect(e.field == "r1_penalty" && e.path == dir + "/r1.safetensors")
    }
}

/// The cpu-64 preset is small-64 plus the CPU feature recipe; its dataset scale is the percentile of
/// the training crops' raw values, checked against a plain sort with NumPy's linear rule.
@Test func datasetScaleIsTheCropsPercentile() throws {
    let cpu = try GANConfig.preset("cpu-64"), small = try GANConfig.preset("small-64")
    #expect(cpu.architecture == small.architecture && cpu.batchSize == small.batchSize)
    #expect(cpu.needsDatasetScale && cpu.datasetScalePercentile == 95)
    #expect(cpu.diffAugment == DiffAugmentPolicy(translation: 0.125, cutout: 0.5, brightness: 0.25, contrast: 0.25))
    #expect(cpu.featureLayer.description == "pooled,pooled-std@dihedral")
    #expect(cpu.discriminatorAverage == 0.999 && small.discriminatorAverage == nil)

    Engine.setThreads(1)
    let dir = try Fixture.tempDir("scale")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = try Fixture.writeCrops(in: dir, count: 7)
    let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths))
    var c = Fixture.tinyConfig()
    c.datasetScalePercentile = 99
    let model = try GANModel(config: c)
    #expect(throws: CytoError.self) { try FeatureExtractor(model: model) }  // not estimated yet
    try model.resolveDatasetScale(from: manifest)
    guard case .fixedScale(let scale) = model.config.preprocessing.normalization else {
        Issue.record("no fixed scale: \(model.config.preprocessing.normalization)"); return
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
        let rank = 0.99 * Double(v.count - 1), lo = Int(rank.rounded(.down))
        let expected = v[lo] + (rank - Double(lo)) * (v[min(lo + 1, v.count - 1)] - v[lo])
        #expect(abs(Double(scale[ch]) - expected) <= 1e-3 * expected, "channel \(ch): \(scale[ch]) vs \(expected)")
    }
    // Once trained the scale stays: the checkpoint holds it as a fixed scale.
    #expect(!model.config.needsDatasetScale)
}

// MARK: Losses against NumPy

/// Values from NumPy (float64), made by this script:
///   rng = np.random.default_rng(7); b = 4
///   scores = np.round(rng.normal(0, 2, 2 * b), 4); smooth = np.round(rng.uniform(0.8, 1.0, b), 4)
///   t = np.concatenate([np.zeros(b), smooth]); sig = 1 / (1 + np.exp(-scores))
///   bce_d = np.mean(-(t * np.log(sig) + (1 - t) * np.log(1 - sig))); bce_d_grad = (sig - t) / (2 * b)
///   mse_d = np.mean((scores - t) ** 2); mse_d_grad = 2 * (scores - t) / (2 * b)
///   w_d = scores[:b].mean() - scores[b:].mean(); fake = scores[:b]
///   bce_g = np.mean(-np.log(1 / (1 + np.exp(-fake)))); mse_g = np.mean((fake - 1) ** 2); w_g = -fake.mean()
/// The discriminator sees [fake; real] with targets [0; U(0.8, 1)]; the generator targets 1.
@Test func ganLossesMatchNumPy() throws {
    let scores: [Float] = [0.0025, 0.5975, -0.5483, -1.7812, -0.9093, -1.9833, 0.1203, 2.6804]
    let smooth: [Float] = [0.9594, 0.8936, 0.8606, 0.8557]
    let s = try Tensor(Shape(8, 1), scores)
    let t = try Tensor(Shape(8, 1), [0, 0, 0, 0] + smooth)
    let g = Tensor(Shape(0))
    func near(_ a: [Float], _ b: [Double], _ tol: Double = 2e-6) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= tol * max(1, abs($1)) }
    }
    #expect(near([try Loss.binaryCrossEntropy(logits: s, targets: t, gradient: g)], [0.8198458070169821]))
    #expect(near(g.values, [0.06257812495930992, 0.08063551719659087, 0.04578236398079458, 0.018019377705069343,
                            -0.08403211246826672, -0.09657906308007716, -0.04132015228263401, 0.010020017269661036]))
    #expect(near([try Loss.meanSquaredError(s, targets: t, gradient: g)], [2.4345607887500003]))
    #expect(near(g.values, [0.000625, 0.149375, -0.137075, -0.4453, -0.467175, -0.719225, -0.185075, 0.456175]))
    let labels = try Tensor(Shape(8, 1), [0, 0, 0, 0, 1, 1, 1, 1])
    #expect(near([try Loss.wasserstein(scores: s, labels: labels, gradient: g)], [-0.4094]))
    let fake = try Tensor(Shape(4, 1), Array(scores.prefix(4)))
    let ones = Tensor(Shape(4, 1), repeating: 1)
    #expect(near([try Loss.binaryCrossEntropy(logits: fake, targets: ones, gradient: g)], [1.0178883230508]))
    #expect(near([try Loss.meanSquaredError(fake, targets: ones, gradient: g)], [2.8223297075000002]))
    #expect(near([try Loss.wasserstein(scores: fake, labels: ones, gradient: g)], [0.43237499999999995]))
}

// MARK: Noise space

@Test func lerpAndSlerp() throws {
    let a: [Float] = [1, 0, 0], b: [Float] = [0, 1, 0]
    for mode in InterpolationMode.allCases {
        let path = try NoiseSpace.interpolate(a, b, steps: 5, mode: mode)
        #expect(path.count == 5 && path.first == a && path.last == b)
    }
    // Closed form on the unit circle: slerp(t) = (cos(t pi/2), sin(t pi/2)), always unit norm.
    for i in 0...10 {
        let t = Float(i) / 10
        let s = NoiseSpace.slerp(a, b, t: t)
        #expect(abs(s[0] - cos(t * .pi / 2)) < 1e-6 && abs(s[1] - sin(t * .pi / 2)) < 1e-6 && s[2] == 0)
        let l = NoiseSpace.lerp(a, b, t: t)
        #expect(l == [1 - t, t, 0])
    }
    // Unit inputs in 100 dimensions stay unit norm; lerp's midpoint shrinks.
    var rng = RandomStream(seed: 4, purpose: "test")
    var u = [Float](repeating: 0, count: 100), v = u
    rng.fillNormal(&u); rng.fillNormal(&v)
    func unit(_ x: [Float]) -> [Float] { let n = x.reduce(0) { $0 + $1 * $1 }.squareRoot(); return x.map { $0 / n } }
    func norm(_ x: [Float]) -> Float { x.reduce(0) { $0 + $1 * $1 }.squareRoot() }
    u = unit(u); v = unit(v)
    for p in try NoiseSpace.interpolate(u, v, steps: 9, mode: .slerp) { #expect(abs(norm(p) - 1) < 1e-5) }
    #expect(norm(NoiseSpace.lerp(u, v, t: 0.5)) < 0.9)
    // Parallel vectors fall back to lerp; algebra is a - b + c.
    #expect(NoiseSpace.slerp([2, 0], [4, 0], t: 0.5) == [3, 0])
    #expect(try NoiseSpace.algebra([5, 1], minus: [2, 2], plus: [1, 1]) == [4, 0])
    #expect(throws: CytoError.self) { try NoiseSpace.interpolate(a, b, steps: 1, mode: .linear) }
    #expect(throws: CytoError.self) { try NoiseSpace.algebra([1], minus: [1, 2], plus: [1]) }
}

// MARK: Augmentation

@Test func squareSymmetriesMoveThePixelsTheyShould() {
    // 3 x 3 plane 0...8 row-major. One counter-clockwise quarter turn gives [2 5 8; 1 4 7; 0 3 6].
    func apply(_ s: SquareSymmetry) -> [Float] {
        var p: [Float] = (0..<9).map(Float.init)
        var scratch = [Float](repeating: 0, count: 9)
        p.withUnsafeMutableBufferPointer { pp in scratch.withUnsafeMutableBufferPointer { s.apply(pp.baseAddress!, channels: 1, size: 3, scratch: $0.baseAddress!) } }
        return p
    }
    #expect(apply(SquareSymmetry(turns: 1)) == [2, 5, 8, 1, 4, 7, 0, 3, 6])
    #expect(apply(SquareSymmetry(turns: 2)) == [8, 7, 6, 5, 4, 3, 2, 1, 0])
    #expect(apply(SquareSymmetry(mirror: true)) == [2, 1, 0, 5, 4, 3, 8, 7, 6])
    // The 8 symmetries are distinct, and flips-only draws reach exactly the 4 mirror/half-turn ones.
    var all = Set<[Float]>()
    for m in [false, true] { for t in 0..<4 { all.insert(apply(SquareSymmetry(mirror: m, turns: t))) } }
    #expect(all.count == 8)
    var rng = RandomStream(seed: 1, purpose: "t")
    var flips = Set<[Float]>(), rotations = Set<[Float]>()
    for _ in 0..<200 {
        flips.insert(apply(SquareSymmetry.draw(Augmentation(flips: true), rng: &rng)))
        rotations.insert(apply(SquareSymmetry.draw(Augmentation(rotations: true), rng: &rng)))
    }
    #expect(flips == [apply(SquareSymmetry()), apply(SquareSymmetry(mirror: true)), apply(SquareSymmetry(turns: 2)),
                      apply(SquareSymmetry(mirror: true, turns: 2))])
    #expect(rotations.count == 4)
}

// MARK: Manifests

@Test func badManifestRowsAreSkippedAndCounted() throws {
    let dir = try Fixture.tempDir("manifest")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let text = """
    path,Metadata_Plate,Metadata_Well
    a.tif,P1,A01
    b.tif,P1
    ,P1,A03
    "c,1.tif",P2,"B""01"

    /abs/d.tif,P2,B02
    e.tif,P3,C01,extra

    """
    try AtomicFile.write(Array(text.utf8), to: dir + "/m.csv")
    var logged: [String] = []
    let m = try StreamingManifest(path: dir + "/m.csv", log: { logged.append($0) })
    #expect(m.count == 3)
    #expect(m.skippedRowCount == 3 && logged.count == 3)
    #expect(m.skippedRows.map(\.line) == [3, 4, 8])
    #expect(m.metadataNames == ["Metadata_Plate", "Metadata_Well"])
    #expect(try m.spec(at: 0) == .file(dir + "/a.tif"))
    #expect(try m.spec(at: 1) == .file(dir + "/c,1.tif"))
    #expect(try m.metadata(at: 1) == ["P2", "B\"01"])
    #expect(try m.spec(at: 2) == .file("/abs/d.tif"))
    #expect(m.name(at: 2) == "/abs/d.tif")
    let rooted = try StreamingManifest(path: dir + "/m.csv", root: "/data")
    #expect(try rooted.spec(at: 0) == .file("/data/a.tif"))
    do { _ = try StreamingManifest(path: dir + "/m.csv", channelColumns: ["DNA"]); Issue.record("no error") } catch let e as CytoError {
        #expect(e.field == "DNA" && e.path == dir + "/m.csv")
    }
}

/// Objects in whole fields: centre, box, mask and label columns become the crop's region and
/// mask; a row whose coordinate or label is not usable is skipped and named, not fatal.
@Test func streamingManifestReadsCentresBoxesAndMasks() throws {
    let dir = try Fixture.tempDir("objects")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let text = "path,cx,cy,labels,obj,Metadata_Well\n"
        + "f.tif,10.5,20,l.tif,3,A01\n"
        + "f.tif,x,20,l.tif,3,A02\n"       // not a coordinate
        + "f.tif,1,2,l.tif,0,A03\n"         // label 0 is background
        + "g.tif,7,8,l.tif,12,A04\n"
    try AtomicFile.write(Array(text.utf8), to: dir + "/m.csv")
    var cols = CropManifest.Columns()
    cols.centreX = "cx"; cols.centreY = "cy"; cols.mask = "labels"; cols.label = "obj"
    var logged: [String] = []
    let m = try StreamingManifest(path: dir + "/m.csv", columns: cols, log: { logged.append($0) })
    #expect(m.count == 2 && m.skippedRowCount == 2)
    #expect(logged.count == 2 && logged[0].contains(":3:") && logged[0].contains("cx") && logged[1].contains("obj"))
    #expect(try m.spec(at: 0) == CropSpec(source: .file(dir + "/f.tif"), region: .centre(x: 10.5, y: 20),
                                          mask: MaskSpec(path: dir + "/l.tif", label: 3)))
    #expect(try m.metadata(at: 1) == ["A04"])
    var boxes = CropManifest.Columns()
    boxes.box = ["cx", "cy", "cx", "cy"]
    let b = try StreamingManifest(path: dir + "/m.csv", columns: boxes)
    #expect(try b.spec(at: 0) == CropSpec(source: .file(dir + "/f.tif"), region: .box(x0: 10, y0: 20, x1: 11, y1: 20)))
    // The in-memory reader builds the same specs and stops at the bad row, naming it.
    do { _ = try CropManifest(path: dir + "/m.csv", columns: cols); Issue.record("accepted 'x'") } catch let e as CytoError {
        #expect(e.line == 3 && e.field == "cx" && e.path == dir + "/m.csv")
    }
}

// MARK: Checkpoints and exact resume

@Test func checkpointRoundTripRestoresEverything() throws {
    Engine.setThreads(1)
    let dir = try Fixture.tempDir("ckpt")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = try Fixture.writeCrops(in: dir, count: 9)
    let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths))
    let model = try GANModel(config: Fixture.tinyConfig(loss: .wgangp, criticSteps: 2))
    let trainer = Trainer(model: model, source: manifest,
                          options: .init(steps: 4, checkpointDirectory: dir + "/ck", checkpointEverySteps: 1, keep: 2))
    let summary = try trainer.run()
    #expect(summary.stepsRun == 4 && summary.finalStep == 4 && model.discriminatorOptimizer.step == 8)
    // Last K kept, no temporary files left behind.
    let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/ck").sorted()
    #expect(files == ["checkpoint-000000003.safetensors", "checkpoint-000000004.safetensors"])
    let loaded = try GANModel.load(from: CheckpointDirectory(path: dir + "/ck").latest!)
    #expect(loaded.config == model.config)
    #expect(Fixture.bits(loaded) == Fixture.bits(model))
    #expect(loaded.step == 4 && loaded.cursor == model.cursor && loaded.cursor.position == (8 * 4) % 9)
    #expect(loaded.cursor.epoch == 3)
    #expect(loaded.randomStreams == model.randomStreams)
    #expect(loaded.generatorOptimizer.step == 4 && loaded.discriminatorOptimizer.step == 8)
    // BatchNorm statistics are in the file and have moved from their initial values.
    #expect(loaded.generator.stateTensors.contains { $0.name == "bn0.running_mean" && $0.tensor.values.contains { $0 != 0 } })
    // A file that is not a checkpoint is refused with its path.
    try SafeTensors.write([("x", Tensor(Shape(2)))], to: dir + "/other.safetensors")
    do { _ = try GANModel.load(from: dir + "/other.safetensors"); Issue.record("loaded a foreign file") } catch let e as CytoError {
        #expect(e.path == dir + "/other.safetensors")
    }
}

@Test(arguments: [(GANLoss.lsgan, 1), (GANLoss.dcgan, 1), (GANLoss.wgangp, 2)])
func resumeIsBitIdentical(loss: GANLoss, critic: Int) throws {
    try checkResume(Fixture.tinyConfig(loss: loss, criticSteps: critic))
}

/// The CPU recipe's parts resume exactly too: the differentiable augmentation's stream
/// is in the checkpoint, and so are the dataset scale estimated before the first step, the
/// discriminator's moving average.
@Test func resumeIsBitIdenticalWithTheCPURecipe() throws {
    var c = Fixture.tinyConfig(loss: .lsgan)
    c.diffAugment = .translationCutout
    c.datasetScalePercentile = 99
    c.discriminatorAverage = 0.7
    try checkResume(c)
}

/// With `discriminator_average`, the model keeps the running mean / exponential average of the
/// discriminator's weights (checked against snapshots taken after every update and averaged here
/// in Double), and features are read from it unless asked for the current discriminator.
@Test func featuresComeFromTheDiscriminatorsAverage() throws {
    var c = Fixture.tinyConfig(loss: .lsgan)
    c.discriminatorAverage = 0.6
    let (model, tensors, real, stream) = try Fixture.trainCheckingAverage(c, decay: 0.6, network: \.discriminator,
                                                                          average: \.discriminatorAverage)
    var rng = stream
    rng.fillNormal(real.buffer, std: 0.5)
    let averaged = try FeatureExtractor(model: model).extract(real)
    let current = try FeatureExtractor(model: model, averaged: false).extract(real)
    #expect(averaged != current)
    // The same numbers from a plain discriminator holding the average's weights.
    let plain = try GANModel(config: Fixture.tinyConfig(loss: .lsgan))
    try plain.discriminator.load(tensors)
    #expect(try FeatureExtractor(model: plain).extract(real) == averaged)
    // Saved and loaded with the model.
    let dir = try Fixture.tempDir("average")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try model.save(to: dir + "/m.safetensors")
    #expect(try FeatureExtractor(model: try GANModel.load(from: dir + "/m.safetensors")).extract(real) == averaged)
}

func checkResume(_ config: GANConfig) throws {
    Engine.setThreads(1)
    let dir = try Fixture.tempDir("resume")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // 11 crops and a missing one: epochs end inside batches, and a skipped crop is part of the order.
    let paths = try Fixture.writeCrops(in: dir, count: 11)
    let manifest = try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths + ["crops/missing.tif"]))
    let n = 5

    let whole = try GANModel(config: config)
    var skipped: [String] = []
    let s1 = try Trainer(model: whole, source: manifest, options: .init(steps: 2 * n), log: { skipped.append($0) }).run()
    #expect(s1.skippedCrops > 0 && skipped.allSatisfy { $0.contains("missing.tif") || $0.hasPrefix("dataset scale") })

    let first = try GANModel(config: config)
    let s2 = try Trainer(model: first, source: manifest, options: .init(steps: n, checkpointDirectory: dir + "/ck", prefetch: 2)).run()
    let resumed = try GANModel.load(from: s2.checkpoints.last!)
    _ = try Trainer(model: resumed, source: manifest, options: .init(steps: n, prefetch: 5)).run()

    #expect(resumed.step == whole.step)
    #expect(resumed.cursor == whole.cursor)
    #expect(resumed.randomStreams == whole.randomStreams)
    let a = Fixture.bits(whole), b = Fixture.bits(resumed)
    #expect(a.keys == b.keys)
    for (name, v) in a { #expect(b[name] == v, "tensor \(name) differs after resume") }
    // And the run did change the weights.
    #expect(Fixture.bits(try GANModel(config: config)) != a)
}

// MARK: Features

@Test func extractionKeepsOrderAndIsDeterministic() throws {
    Engine.setThreads(1)
    let model = try GANModel(config: Fixture.tinyConfig())
    var rng = RandomStream(seed: 11, purpose: "x")
    let batch = Tensor(Shape(5, 3, 16, 16))
    rng.fillNormal(batch.buffer, mean: 0, std: 0.5)
    let fx = try FeatureExtractor(model: model)
    let namesBefore = try FeatureExtractor.featureNames(of: model)
    #expect(fx.count == 6 && fx.names.first == "Cytogan_representation_0" && fx.names == namesBefore)
    let all = try fx.extract(batch)
    #expect(try fx.extract(batch) == all)
    for i in 0..<5 {
        let one = try Tensor(Shape(1, 3, 16, 16), Array(batch.values[(i * 768)..<((i + 1) * 768)]))
        let f = try fx.extract(one)
        for k in 0..<6 { #expect(abs(f[k] - all[i * 6 + k]) <= 1e-5 * max(1, abs(f[k]))) }
    }
    // Noisy encoding: differs from the deterministic one, reproducible from its seed.
    let n1 = try FeatureExtractor(model: model, noisy: true, noiseSeed: 3).extract(batch)
    let n2 = try FeatureExtractor(model: model, noisy: true, noiseSeed: 3).extract(batch)
    #expect(n1 == n2 && n1 != all)
    #expect(try fx.extract(batch) == all)  // the noisy runs left the model as it was

    // Pooled: the mean over H, W of each block's LeakyReLU output, concatenated.
    let pooled = try FeatureExtractor(model: model, layer: try FeatureLayer(parsing: "pooled,representation"))
    #expect(pooled.count == 4 + 8 + 8 + 6)
    let p = try pooled.extract(batch)
    model.discriminator.training = false
    _ = try model.discriminator.forward(batch)
    model.discriminator.training = true
    var offset = 0
    for name in ["lrelu0", "lrelu1", "lrelu2"] {
        let t = model.discriminator.output(of: name)!
        let c = t.shape[1], hw = t.shape[2] * t.shape[3]
        for i in 0..<5 {
            for k in 0..<c {
                var s = 0.0
                for j in 0..<hw { s += Double(t.data[(i * c + k) * hw + j]) }
                #expect(abs(Double(p[i * pooled.count + offset + k]) - s / Double(hw)) < 1e-5)
            }
        }
        offset += c
    }
    for i in 0..<5 { for k in 0..<6 { #expect(p[i * pooled.count + 20 + k] == all[i * 6 + k]) } }
    // Max and standard-deviation pooling of one block, against a plain walk over its output.
    let spread = try FeatureExtractor(model: model, layer: try FeatureLayer(parsing: "max:lrelu1,std:lrelu1"))
    #expect(spread.count == 16 && spread.names.first == "Cytogan_max_lrelu1_0" && spread.names[8] == "Cytogan_std_lrelu1_0")
    let ms = try spread.extract(batch)
    let t1 = model.discriminator.output(of: "lrelu1")!
    let hw1 = t1.shape[2] * t1.shape[3]
    for i in 0..<5 {
        for k in 0..<8 {
            let v = (0..<hw1).map { Double(t1.data[(i * 8 + k) * hw1 + $0]) }
            let mean = v.reduce(0, +) / Double(hw1)
            let sd = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(hw1)).squareRoot()
            #expect(Double(ms[i * 16 + k]) == v.max()!)
            #expect(abs(Double(ms[i * 16 + 8 + k]) - sd) < 1e-5)
        }
    }
    #expect(try FeatureExtractor(model: model, layer: try FeatureLayer(parsing: "pooled-max,pooled-std")).count == 2 * 20)
    #expect(try FeatureLayer(parsing: "pooled-std,max:lrelu0,representation").description == "pooled-std,max:lrelu0,representation")
    #expect(throws: CytoError.self) { try FeatureLayer(parsing: "median:lrelu0") }
    #expect(throws: CytoError.self) { try FeatureExtractor(model: model, layer: try FeatureLayer(parsing: "conv9")) }
    #expect(throws: CytoError.self) { try FeatureExtractor(model: model, layer: try FeatureLayer(parsing: "pool:representation")) }
}

/// `@dihedral` features are the mean of the plain features of the crop's 8 mirrored and turned
/// copies (made here by index arithmetic), and so the same for a crop and its turned copy.
@Test func dihedralViewsAverageTheEightSymmetries() throws {
    Engine.setThreads(1)
    let model = try GANModel(config: Fixture.tinyConfig())
    var rng = RandomStream(seed: 12, purpose: "x")
    let n = 16, per = 3 * n * n
    let batch = Tensor(Shape(3, 3, n, n))
    rng.fillNormal(batch.buffer, mean: 0, std: 0.5)
    /// Item-wise copy with out(c, y, x) = in(c, from(y, x)).
    func remap(_ t: Tensor, _ from: (Int, Int) -> (Int, Int)) -> Tensor {
        let r = Tensor(t.shape)
        for i in 0..<t.shape.batch { for c in 0..<3 { for y in 0..<n { for x in 0..<n {
            let (sy, sx) = from(y, x)
            r.data[i * per + (c * n + sy) * n + sx] = t.data[i * per + (c * n + y) * n + x]
        } } } }
        return r
    }
    // The 8 views: identity, 3 quarter turns (a transpose then a flip), and the mirror of each.
    var views: [Tensor] = [batch]
    for _ in 0..<3 { views.append(remap(views.last!) { y, x in (n - 1 - x, y) }) }
    for v in views.prefix(4) { views.append(remap(v) { y, x in (y, n - 1 - x) }) }
    let layer = try FeatureLayer(parsing: "pooled,representation@dihedral")
    #expect(layer.views == .dihedral && layer.description == "pooled,representation@dihedral")
    let fx = try FeatureExtractor(model: model, layer: layer)
    let plain = try FeatureExtractor(model: model, layer: try FeatureLayer(parsing: "pooled,representation"))
    let got = try fx.extract(batch)
    var want = [Double](repeating: 0, count: got.count)
    for v in views { for (k, f) in try plain.extract(v).enumerated() { want[k] += Double(f) / 8 } }
    #expect(zip(got, want).allSatisfy { abs(Double($0) - $1) <= 1e-5 * max(1, abs($1)) })
    #expect(got != (try plain.extract(batch)))
    let turned = try fx.extract(views[5])
    #expect(zip(got, turned).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($0)) })
    do { _ = try FeatureLayer(parsing: "pooled@sideways"); Issue.record("accepted @sideways") } catch let e as CytoError {
        #expect(e.field == "feature_layer" && e.message.contains("sideways"))
    }
    #expect(throws: CytoError.self) { try FeatureLayer(parsing: "pooled@single") }
}

@Test func extractionFromCropsReportsBadOnes() throws {
    Engine.setThreads(1)
    let dir = try Fixture.tempDir("extract")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = try Fixture.writeCrops(in: dir, count: 3)
    let model = try GANModel(config: Fixture.tinyConfig())
    let fx = try FeatureExtractor(model: model)
    let specs = [CropSpec.file(dir + "/" + paths[0]), .file(dir + "/nothing.tif"), .file(dir + "/" + paths[2])]
    let rows = try fx.extract(specs: specs, loader: CropLoader(preprocessing: model.config.preprocessing))
    #expect(rows.errors[0] == nil && rows.errors[1]?.kind == .fileNotFound && rows.errors[1]?.index == 1 && rows.errors[2] == nil)
    let single = try fx.extract(specs: [specs[2]], loader: CropLoader(preprocessing: model.config.preprocessing))
    for k in 0..<fx.count { #expect(abs(single.features[k] - rows.features[2 * fx.count + k]) < 1e-5) }
}

// MARK: Sampling and encoding

@Test func samplesDoNotDependOnTheirBatch() throws {
    Engine.setThreads(1)
    let model = try GANModel(config: Fixture.tinyConfig())
    let z = NoiseSpace.draw(count: 5, latent: 8, seed: 2)
    #expect(z == NoiseSpace.draw(count: 5, latent: 8, seed: 2))
    let all = try Sampler(model: model, batchSize: 5).generate(z)
    let pieces = try Sampler(model: model, batchSize: 2).generate(z)
    #expect(all.count == 5 * 768 && all.allSatisfy { $0 >= -1 && $0 <= 1 })
    #expect(zip(all, pieces).allSatisfy { abs($0 - $1) < 1e-5 })
    #expect(throws: CytoError.self) { try Sampler(model: model).generate([1, 2, 3]) }
}

@Test func encoderRecoversGeneratedCells() throws {
    Engine.setThreads(1)
    let dir = try Fixture.tempDir("encode")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // A briefly trained generator (so G is not near-constant), then cells it made from known z.
    let paths = try Fixture.writeCrops(in: dir, count: 8)
    let model = try GANModel(config: Fixture.tinyConfig())
    _ = try Trainer(model: model, source: try StreamingManifest(path: try Fixture.writeManifest(in: dir, paths: paths)),
                    options: .init(steps: 20)).run()
    let zTrue = NoiseSpace.draw(count: 3, latent: 8, seed: 99)
    let cells = try Sampler(model: model).generate(zTrue)
    let encoder = try NoiseEncoder(model: model, options: .init(iterations: 150, learningRate: 0.05, restarts: 2, seed: 4))
    let r = try encoder.encode(cells, count: 3)
    #expect(r.z.count == 24 && r.reconstructions.count == cells.count)
    #expect(r.lossCurve.count == 151 && r.lossCurve.last! < 0.5 * r.lossCurve.first!)
    // The reported error is the error of the reported reconstruction, which is G(z).
    let again = try Sampler(model: model).generate(r.z)
    #expect(zip(again, r.reconstructions).allSatisfy { abs($0 - $1) < 1e-5 })
    for i in 0..<3 {
        var s = 0.0
        for j in 0..<768 { let e = Double(r.reconstructions[i * 768 + j] - cells[i * 768 + j]); s += e * e }
        #expect(abs(s / 768 - Double(r.pixelError[i])) < 1e-6)
    }
    // Better than a fresh random draw at reproducing the cells.
    let random = try Sampler(model: model).generate(NoiseSpace.draw(count: 3, latent: 8, seed: 5))
    var base = 0.0
    for j in 0..<cells.count { let e = Double(random[j] - cells[j]); base += e * e }
    #expect(Double(r.pixelError.reduce(0, +)) * 768 < 0.5 * base)
}

/// cells-64 cuts each crop's centre instead of resampling it: a 68-pixel crop reaches the model
/// as its pixels 2..<66 in both axes, each scaled by the dataset range and put through the
/// square root (offset 0.04, evaluated here in Double), untouched by any filter.
@Test func cells64CutsTheCentreOfLargerCrops() throws {
    let cells = try GANConfig.preset("cells-64")
    #expect(cells.preprocessing.resize == .padCrop && cells.preprocessing.size == 64)
    #expect(cells.preprocessing.transfer == .squareRoot(offset: 0.04) && cells.outputGradientFloor == 0.1)
    let dir = try Fixture.tempDir("centre")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let paths = try Fixture.writeCrops(in: dir, count: 1, side: 68)
    var p = cells.preprocessing
    let low: [Float] = [100, 150, 200], high: [Float] = [3000, 3100, 3200]
    p.normalization = .fixedRange(low: low, high: high)
    let loader = CropLoader(preprocessing: p)
    let raw = try loader.raw(.file(dir + "/" + paths[0])), values = raw.floatPlanes
    let got = try loader.load(.file(dir + "/" + paths[0]))
    #expect(got.count == 3 * 64 * 64)
    var worst: Float = 0
    for c in 0..<3 {
        for y in 0..<64 {
            for x in 0..<64 {
                let v = Double(values[(c * 68 + y + 2) * 68 + x + 2])
                let u = max(0, min(1, (v - Double(low[c])) / Double(high[c] - low[c])))
                let expected = ((u + 0.04).squareRoot() - 0.2) / ((1.04).squareRoot() - 0.2) * 2 - 1
                worst = max(worst, Float(abs(Double(got[(c * 64 + y) * 64 + x]) - expected)))
            }
        }
    }
    #expect(worst < 1e-5, "largest difference from the centre pixels: \(worst)")
}
