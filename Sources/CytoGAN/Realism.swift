import CellImage
import CytoCore
import CytoNN
import Foundation
import Profiling

/// Settings of the realism measure: how many images per set, the seed of every random choice
/// (which real crops, which samples, the classifiers' initialization and batches), and the
/// classifier's folds and epochs.
public struct RealismOptions: Sendable, Equatable {
    /// Images per set (n): real sets A and B, generated set G.
    public var count: Int
    public var seed: UInt64
    public var folds: Int
    public var epochs: Int

    /// Seeds of the real-vs-real classifier runs whose accuracies give the null's mean and spread.
    public static let nullRuns = 3
    public static let batchSize = 32
    public static let learningRate: Float = 1e-3
    public static let defaultCount = 1000
    public static let defaultEpochs = 5

    public init(count: Int = RealismOptions.defaultCount, seed: UInt64 = 1, folds: Int = 4, epochs: Int = RealismOptions.defaultEpochs) {
        self.count = count; self.seed = seed; self.folds = folds; self.epochs = epochs
    }

    /// Checks the settings; errors name the setting at fault.
    public func validate() throws {
        guard folds >= 2 else { throw CytoError(.invalidInput, "the classifier needs at least 2 folds, got \(folds)", field: "folds") }
        guard count >= max(2, folds) else {
            throw CytoError(.invalidInput, "count must be at least 2 and at least the number of folds (\(folds)), got \(count)", field: "count")
        }
        guard epochs >= 1 else { throw CytoError(.invalidInput, "the classifier needs at least 1 epoch, got \(epochs)", field: "epochs") }
    }

    /// Progress units of an evaluation, for a progress total: an image read, or an image
    /// through one training step of a classifier. The reference reads 2n crops and runs the null
    /// classifiers; one comparison reads or generates n images and runs one classifier (each run:
    /// k folds of E epochs over 2n (k - 1) / k images).
    public var units: (reference: Int, comparison: Int) {
        let run = 2 * count * (folds - 1) * epochs
        return (2 * count + RealismOptions.nullRuns * run, count + run)
    }
}

/// What a long evaluation reports and where it can be stopped: `check` runs between units of
/// work (throw to cancel), `progress` gets the units done so far, `log` one line per event.
public final class RealismMonitor {
    public let check: () throws -> Void
    public let log: (String) -> Void
    private let report: (Int, String) -> Void
    public private(set) var done = 0

    public init(check: @escaping () throws -> Void = {}, log: @escaping (String) -> Void = { _ in },
                progress: @escaping (Int, String) -> Void = { _, _ in }) {
        self.check = check; self.log = log; report = progress
    }

    func advance(_ units: Int, _ message: String) {
        done += units
        report(done, message)
    }
}

/// A set of images in the model's space: count x channels x size x size floats in [-1, 1], with
/// where each came from (the manifest's path, or "" for a generated sample).
public struct RealismImages: Sendable {
    public var values: [Float]
    public let channels: Int
    public let size: Int
    public var names: [String]

    public init(values: [Float], channels: Int, size: Int, names: [String]) {
        precondition(values.count == names.count * channels * size * size)
        self.values = values; self.channels = channels; self.size = size; self.names = names
    }

    public var count: Int { names.count }
    /// Floats in one image.
    public var imageCount: Int { channels * size * size }

    /// Images `range` of the set.
    public func slice(_ range: Range<Int>) -> RealismImages {
        RealismImages(values: Array(values[(range.lowerBound * imageCount)..<(range.upperBound * imageCount)]),
                      channels: channels, size: size, names: Array(names[range]))
    }
}

/// Where the measure's images come from: real crops read through the model's preprocessing, and
/// the model's samples.
public enum RealismData {
    /// The preprocessing crops are read with: the model's own; a model still waiting for its
    /// dataset scale (never trained) gets one estimated from `source`, as extraction does (the
    /// model itself is left unchanged).
    public static func preprocessing(of config: GANConfig, source: CropSource, log: (String) -> Void = { _ in }) throws -> Preprocessing {
        var p = config.preprocessing
        guard config.needsDatasetScale, let percentile = config.datasetScalePercentile else { return p }
        p.normalization = try estimateDatasetScale(source, preprocessing: p, percentile: percentile)
        if case .fixedScale(let s) = p.normalization {
            log("dataset scale (percentile \(percentile) of up to \(datasetScaleSample) crops, the model never trained): "
                + s.map { String(format: "%.6g", $0) }.joined(separator: ", "))
        }
        return p
    }

    /// The first `limit` usable crops of `source` in an order shuffled by `seed` (the stream of
    /// `purpose`): crops that cannot be read are skipped and named in the log. `origin` (the
    /// manifest's path) names the source in errors. Fewer come back when fewer can be read.
    public static func read(_ source: CropSource, origin: String, preprocessing: Preprocessing, limit: Int, seed: UInt64,
                            purpose: String, monitor: RealismMonitor) throws -> RealismImages {
        var order = (0..<source.count).map { UInt32($0) }
        var rng = RandomStream(seed: seed, purpose: purpose)
        rng.shuffle(&order)
        let loader = CropLoader(preprocessing: preprocessing)
        let per = preprocessing.inputCount
        var values = [Float](repeating: 0, count: min(limit, source.count) * per)
        var names: [String] = []
        var skipped = 0
        for index in order where names.count < limit {
            try monitor.check()
            let i = Int(index), k = names.count
            do {
                let spec = try source.spec(at: i)
                try values.withUnsafeMutableBufferPointer { try loader.load(spec, into: UnsafeMutableBufferPointer(rebasing: $0[(k * per)..<((k + 1) * per)])) }
            } catch {
                skipped += 1
                monitor.log("skipped crop \(source.name(at: i)): \(error)")
                continue
            }
            names.append(source.name(at: i))
            monitor.advance(1, "crop \(names.count)/\(limit) of \(origin)")
        }
        guard !names.isEmpty else {
            throw CytoError(.invalidInput, source.count == 0 ? "the manifest has no usable rows" : "none of its \(source.count) crops could be read (see the messages above)",
                            path: origin)
        }
        if skipped > 0 { monitor.log("\(origin): \(skipped) crop(s) skipped") }
        values.removeLast(values.count - names.count * per)
        return RealismImages(values: values, channels: preprocessing.channels, size: preprocessing.size, names: names)
    }

    /// `count` cells of the model's generator: the first `count` that `cytogan sample --seed`
    /// draws (CytoGAN's Sampler, inference mode).
    public static func samples(of model: GANModel, count: Int, seed: UInt64, monitor: RealismMonitor) throws -> RealismImages {
        try monitor.check()
        let a = model.config.architecture
        let z = NoiseSpace.draw(count: count, latent: a.latent, seed: seed)
        let images = try Sampler(model: model).generate(z)
        monitor.advance(count, "\(count) generated cells")
        return RealismImages(values: images, channels: a.channels, size: a.size, names: [String](repeating: "", count: count))
    }
}

/// The classifier two-sample test: a small CNN of the engine (three stride-2 3x3 convolutions of
/// 16, 32 and 64 maps with LeakyReLU 0.2, global average pooling, one logit) learns to tell two
/// sets apart on k - 1 folds and is scored on the held-out fold. Held-out accuracy near 0.5 means
/// the sets cannot be told apart.
public enum TwoSampleClassifier {
    public static func makeNetwork(channels: Int) throws -> Network {
        try Network([
            Conv2D(name: "conv0", inChannels: channels, outChannels: 16, kernel: 3, stride: 2), LeakyReLU(name: "act0", alpha: 0.2),
            Conv2D(name: "conv1", inChannels: 16, outChannels: 32, kernel: 3, stride: 2), LeakyReLU(name: "act1", alpha: 0.2),
            Conv2D(name: "conv2", inChannels: 32, outChannels: 64, kernel: 3, stride: 2), LeakyReLU(name: "act2", alpha: 0.2),
            GlobalAveragePool(name: "pool"), Dense(name: "logit", inputs: 64, outputs: 1),
        ])
    }

    /// Item i of each set belongs to fold i mod `folds`, so every fold holds as many of both.
    static func fold(of item: Int, folds: Int) -> Int { item % folds }

    /// Held-out accuracy of telling `first` (label 1) from `second` (label 0): for each fold a
    /// fresh network (He-normal weights from `rng`) is trained `epochs` times over the other
    /// folds (Adam, binary cross-entropy, batches drawn from `rng`) and predicts the fold.
    public static func accuracy(_ first: RealismImages, _ second: RealismImages, folds: Int, epochs: Int,
                                rng: inout RandomStream, monitor: RealismMonitor, label: String) throws -> Double {
        precondition(first.count == second.count && first.imageCount == second.imageCount)
        let n = first.count, per = first.imageCount, c = first.channels, s = first.size
        let net = try makeNetwork(channels: c)
        let batch = Tensor(Shape(0)), targets = Tensor(Shape(0)), gradient = Tensor(Shape(0))
        // An item is 2 i (image i of `first`) or 2 i + 1 (image i of `second`).
        func fill(_ items: ArraySlice<Int>) {
            batch.resize(Shape(items.count, c, s, s))
            targets.resize(Shape(items.count, 1))
            for (k, item) in items.enumerated() {
                let set = item % 2 == 0 ? first : second
                set.values.withUnsafeBufferPointer { (batch.data + k * per).update(from: $0.baseAddress! + (item / 2) * per, count: per) }
                targets.data[k] = item % 2 == 0 ? 1 : 0
            }
        }
        var correct = 0, total = 0
        for f in 0..<folds {
            net.initialize(.heNormal, rng: &rng)
            net.training = true
            let adam = Adam(parameters: net.parameters, learningRate: LearningRate(RealismOptions.learningRate))
            var train = (0..<n).filter { fold(of: $0, folds: folds) != f }.flatMap { [2 * $0, 2 * $0 + 1] }
            for e in 0..<epochs {
                try monitor.check()
                rng.shuffle(&train)
                var start = 0
                while start < train.count {
                    let end = min(start + RealismOptions.batchSize, train.count)
                    fill(train[start..<end])
                    let logits = try net.forward(batch)
                    _ = try Loss.binaryCrossEntropy(logits: logits, targets: targets, gradient: gradient)
                    net.zeroGradients()
                    _ = try net.backward(gradient, inputGradient: false, parameterGradients: true)
                    adam.update()
                    start = end
                }
                monitor.advance(train.count, "\(label): fold \(f + 1)/\(folds), epoch \(e + 1)/\(epochs)")
            }
            net.training = false
            let test = (0..<n).filter { fold(of: $0, folds: folds) == f }.flatMap { [2 * $0, 2 * $0 + 1] }
            var start = 0
            while start < test.count {
                let end = min(start + 256, test.count)
                fill(test[start..<end])
                let logits = try net.forward(batch)
                for k in 0..<(end - start) where (logits.data[k] > 0) == (targets.data[k] == 1) { correct += 1 }
                total += end - start
                start = end
            }
        }
        return Double(correct) / Double(total)
    }

    /// The same test with a logistic regression (L2, C = 1, Newton: Profiling's) on measurement
    /// rows `first` and `second` (each n x d, row-major), over the same folds.
    public static func measurementAccuracy(_ first: [Double], _ second: [Double], rows n: Int, columns d: Int, folds: Int) throws -> Double {
        var correct = 0, total = 0
        for f in 0..<folds {
            var x: [Double] = [], y: [Bool] = [], tx: [Double] = [], ty: [Bool] = []
            for i in 0..<n {
                let held = fold(of: i, folds: folds) == f
                for (rows, label) in [(first, true), (second, false)] {
                    if held { tx += rows[(i * d)..<((i + 1) * d)]; ty.append(label) } else { x += rows[(i * d)..<((i + 1) * d)]; y.append(label) }
                }
            }
            let model = try LogisticRegression.fit(x, rows: y.count, columns: d, labels: y, sampleWeights: [Double](repeating: 1, count: y.count), C: 1)
            let decision = model.decision(tx, rows: ty.count)
            for k in 0..<ty.count where (decision[k] > 0) == ty[k] { correct += 1 }
            total += ty.count
        }
        return Double(correct) / Double(total)
    }
}

/// The real side of the measure, computed once and compared with any number of generated sets:
/// real sets A and B (n each), their measurements, the standardization (A's mean and population
/// standard deviation), the floor FD(A, B) and the real-vs-real classifier accuracies (the null).
public final class RealismReference {
    public let options: RealismOptions
    /// Images per set.
    public let count: Int
    public let a: RealismImages
    public let b: RealismImages
    public let names: [String]
    /// Measurements of A and of B, row-major count x names.count.
    public let measurementsA: [Double]
    public let measurementsB: [Double]
    /// A's mean and population standard deviation of each measurement.
    public let mean: [Double]
    public let std: [Double]
    /// The standardization's divisor: `std`, or 1 where it is below 1e-12.
    public let scale: [Double]
    public let floor: Double
    public let nullAccuracies: [Double]
    private let statsA: (mean: [Double], covariance: [Double])

    /// `real`: 2n crops (an odd last one is left out), A the first n, B the next n.
    public init(real: RealismImages, options: RealismOptions, monitor: RealismMonitor) throws {
        let n = real.count / 2
        guard n >= max(2, options.folds) else {
            throw CytoError(.invalidInput, "only \(real.count) real crop(s) could be read: the measure needs 2 sets of at least max(2, folds) = \(max(2, options.folds))",
                            field: "count")
        }
        try options.validate()
        self.options = options
        count = n
        a = real.slice(0..<n)
        b = real.slice(n..<(2 * n))
        names = ImageMeasurer.names(channels: real.channels)
        let d = names.count
        measurementsA = try ImageMeasurer.measure(a.values, count: n, channels: a.channels, size: a.size, threads: Engine.threads)
        measurementsB = try ImageMeasurer.measure(b.values, count: n, channels: b.channels, size: b.size, threads: Engine.threads)
        mean = LinearAlgebra.columnMeans(measurementsA, rows: n, columns: d)
        std = LinearAlgebra.columnStd(measurementsA, rows: n, columns: d, mean: mean, ddof: 0)
        scale = std.map { $0 < 1e-12 ? 1 : $0 }
        statsA = try FrechetDistance.statistics(RealismReference.standardize(measurementsA, mean: mean, scale: scale), rows: n, columns: d)
        let statsB = try FrechetDistance.statistics(RealismReference.standardize(measurementsB, mean: mean, scale: scale), rows: n, columns: d)
        floor = try FrechetDistance.distance(meanX: statsA.mean, covarianceX: statsA.covariance, meanY: statsB.mean,
                                             covarianceY: statsB.covariance, dimension: d)
        monitor.log(String(format: "real sets A and B: %d crops each, floor FD(A, B) = %.6g", n, floor))
        var nulls: [Double] = []
        for r in 0..<RealismOptions.nullRuns {
            var rng = RandomStream(seed: options.seed, purpose: "realism-null-\(r)")
            nulls.append(try TwoSampleClassifier.accuracy(a, b, folds: options.folds, epochs: options.epochs, rng: &rng, monitor: monitor,
                                                          label: "null run \(r + 1)/\(RealismOptions.nullRuns) (A vs B)"))
            monitor.log(String(format: "null run %d: accuracy %.4f", r + 1, nulls[r]))
        }
        nullAccuracies = nulls
    }

    /// (x - mean) / scale, column by column.
    static func standardize(_ x: [Double], mean: [Double], scale: [Double]) -> [Double] {
        let d = mean.count
        var z = x
        for i in 0..<z.count { z[i] = (z[i] - mean[i % d]) / scale[i % d] }
        return z
    }

    /// The measure for a generated set of `count` images (more are cut; fewer is an error).
    public func compare(_ generated: RealismImages, monitor: RealismMonitor) throws -> RealismReport {
        guard generated.channels == a.channels, generated.size == a.size else {
            throw CytoError(.shapeMismatch, "generated images are \(generated.channels)x\(generated.size)x\(generated.size), the real crops \(a.channels)x\(a.size)x\(a.size)")
        }
        guard generated.count >= count else {
            throw CytoError(.invalidInput, "\(generated.count) generated image(s) for \(count) real ones per set", field: "count")
        }
        let g = generated.count == count ? generated : generated.slice(0..<count)
        let n = count, d = names.count
        let mg = try ImageMeasurer.measure(g.values, count: n, channels: g.channels, size: g.size, threads: Engine.threads)
        let za = RealismReference.standardize(measurementsA, mean: mean, scale: scale)
        let zg = RealismReference.standardize(mg, mean: mean, scale: scale)
        let statsG = try FrechetDistance.statistics(zg, rows: n, columns: d)
        let distance = try FrechetDistance.distance(meanX: statsA.mean, covarianceX: statsA.covariance, meanY: statsG.mean,
                                                    covarianceY: statsG.covariance, dimension: d)
        monitor.log(String(format: "FD(A, G) = %.6g (floor %.6g)", distance, floor))
        func fd(_ columns: [Int]) throws -> Double {
            try FrechetDistance.distance(meanX: statsA.mean, covarianceX: statsA.covariance, meanY: statsG.mean,
                                         covarianceY: statsG.covariance, dimension: d, columns: columns)
        }
        let parts = try ImageMeasurer.kinds(channels: a.channels).map { kind, columns in
            FrechetPart(measurement: kind, alone: try fd(columns), without: try fd((0..<d).filter { !columns.contains($0) }))
        }
        let measured = try TwoSampleClassifier.measurementAccuracy(za, zg, rows: n, columns: d, folds: options.folds)
        var rng = RandomStream(seed: options.seed, purpose: "realism-test")
        let accuracy = try TwoSampleClassifier.accuracy(a, g, folds: options.folds, epochs: options.epochs, rng: &rng, monitor: monitor,
                                                        label: "A vs G")
        monitor.log(String(format: "classifier accuracy A vs G %.4f, measurements %.4f", accuracy, measured))
        let gMean = LinearAlgebra.columnMeans(mg, rows: n, columns: d)
        let per = ImageMeasurer.channelNames.count
        let gradIndex = ImageMeasurer.channelNames.firstIndex(of: "grad")!, q05Index = ImageMeasurer.channelNames.firstIndex(of: "q05")!
        return RealismReport(
            count: n, size: a.size, distance: distance, floor: floor, accuracy: accuracy, nullAccuracies: nullAccuracies,
            folds: options.folds, epochs: options.epochs, measurementAccuracy: measured, names: names, realMean: mean,
            generatedMean: gMean, realStd: std, parts: parts,
            sharpness: (0..<a.channels).map { c in gMean[c * per + gradIndex] / mean[c * per + gradIndex] },
            background: (0..<a.channels).map { c in (gMean[c * per + q05Index] - mean[c * per + q05Index]) / scale[c * per + q05Index] },
            generated: g, generatedMeasurements: mg)
    }
}

/// One kind of measurement's part in FD(A, G): the distance on its columns alone, and the
/// distance with them left out (so `distance - without` is what the kind adds).
public struct FrechetPart: Sendable, Equatable {
    public var measurement: String
    public var alone: Double
    public var without: Double
}

/// The measure's result for one generated set (its JSON is what `cytogan evaluate realism` prints
/// and `realism/evaluate` answers).
public struct RealismReport {
    public var count: Int
    public var size: Int
    public var distance: Double
    public var floor: Double
    public var accuracy: Double
    public var nullAccuracies: [Double]
    public var folds: Int
    public var epochs: Int
    public var measurementAccuracy: Double
    public var names: [String]
    public var realMean: [Double]
    public var generatedMean: [Double]
    public var realStd: [Double]
    /// FD(A, G) by kind of measurement, in the order of `ImageMeasurer.kinds(channels:)`.
    public var parts: [FrechetPart]
    /// Per channel: mean sharpness (grad_c) of G over that of A; below 1 is blurrier than real.
    public var sharpness: [Double]
    /// Per channel: (mean q05_c of G - that of A) / A's standard deviation of q05_c.
    public var background: [Double]
    /// The generated set compared, and its measurements (count x names.count).
    public var generated: RealismImages
    public var generatedMeasurements: [Double]

    /// The `k` kinds of measurement that add most to FD(A, G) (distance - without), largest first,
    /// each with a reader's name for it: what makes the generated cells stand out.
    public func largestParts(_ k: Int) -> [(label: String, adds: Double)] {
        var ranked: [(label: String, adds: Double)] = []
        for part in parts { ranked.append((ImageMeasurer.kindLabels[part.measurement] ?? part.measurement, distance - part.without)) }
        ranked.sort { $0.adds > $1.adds }
        return Array(ranked.prefix(k))
    }

    /// FD(A, G) / FD(A, B): 1 when G is as close to A as the other real half; nil when the floor is 0.
    public var ratio: Double? { floor > 0 ? distance / floor : nil }
    public var nullAccuracy: Double { nullAccuracies.reduce(0, +) / Double(max(nullAccuracies.count, 1)) }
    /// Sample standard deviation of the null runs' accuracies.
    public var nullStd: Double {
        let k = nullAccuracies.count
        guard k > 1 else { return 0 }
        let m = nullAccuracy
        return (nullAccuracies.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(k - 1)).squareRoot()
    }

    /// The result object; `step` (the model's) is added when given.
    public func json(step: Int? = nil) -> JSON {
        func numbers(_ v: [Double]) -> JSON { .array(v.map { .double($0) }) }
        var o: [String: JSON] = [
            "count": JSON(count), "size": JSON(size),
            "frechet": ["distance": .double(distance), "floor": .double(floor), "ratio": ratio.map { .double($0) } ?? .null,
                        "parts": .array(parts.map { ["measurement": .string($0.measurement), "alone": .double($0.alone),
                                                     "without": .double($0.without)] })],
            "classifier": ["accuracy": .double(accuracy), "null_accuracy": .double(nullAccuracy), "null_std": .double(nullStd),
                           "folds": JSON(folds), "epochs": JSON(epochs)],
            "measurement_classifier": ["accuracy": .double(measurementAccuracy)],
            "measurements": ["names": .array(names.map { .string($0) }), "real_mean": numbers(realMean),
                             "generated_mean": numbers(generatedMean), "real_std": numbers(realStd)],
            "sharpness": numbers(sharpness), "background": numbers(background),
        ]
        if let step { o["step"] = JSON(step) }
        return .object(o)
    }
}
