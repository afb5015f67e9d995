import CytoCore
@testable import CytoNN
import CytoNNTestSupport
import Testing
@testable import CytoGAN

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tiny GAN on 16 x 16 grey images of one bright Gaussian blob at a random position.
struct BlobGAN {
    static let arch = DCGANArchitecture(size: 16, channels: 1, latent: 16, generatorWidths: [32, 16, 8], discriminatorWidths: [8, 16, 32],
                                        discriminatorStrides: [1, 2, 2], representation: 32)
    let step: GANTrainingStep
    var dataRNG: RandomStream

    init(seed: UInt64, loss: GANLoss = .lsgan, lrG: Float = 1e-3, lrD: Float = 5e-4, diffAugment: DiffAugmentPolicy = .none) throws {
        let g = try BlobGAN.arch.makeGenerator()
        let d = try BlobGAN.arch.makeDiscriminator(noise: RandomStream(seed: seed, purpose: "noise"))
        var rng = RandomStream(seed: seed, purpose: "init")
        g.initialize(.normal(std: 0.02), rng: &rng)
        d.initialize(.normal(std: 0.02), rng: &rng)
        step = GANTrainingStep(generator: g, discriminator: d,
                               generatorOptimizer: Adam(parameters: g.parameters, learningRate: .paper(lrG), beta1: 0.5),
                               discriminatorOptimizer: Adam(parameters: d.parameters, learningRate: .paper(lrD), beta1: 0.5),
                               loss: loss, latent: BlobGAN.arch.latent, seed: seed, diffAugment: diffAugment)
        dataRNG = RandomStream(seed: seed, purpose: "data")
    }

    /// A batch of blob images in [-1, 1]: background -1, a Gaussian bump (sigma 1.5) to +1.
    mutating func realBatch(_ n: Int, into t: Tensor) {
        t.resize(Shape(n, 1, 16, 16))
        for i in 0..<n {
            let cy = 3 + 10 * Double(dataRNG.uniformFloat()), cx = 3 + 10 * Double(dataRNG.uniformFloat())
            for y in 0..<16 {
                for x in 0..<16 {
                    let r2 = (Double(y) - cy) * (Double(y) - cy) + (Double(x) - cx) * (Double(x) - cx)
                    t.data[i * 256 + y * 16 + x] = Float(-1 + 2 * exp(-r2 / (2 * 1.5 * 1.5)))
                }
            }
        }
    }

    /// Mean pixel, mean per-image maximum, fraction of pixels above 0.
    static func statistics(_ t: Tensor) -> [Double] {
        let n = t.shape.batch, per = t.shape.itemCount
        var mean = 0.0, maxSum = 0.0, bright = 0.0
        for i in 0..<n {
            var m = -Float.infinity
            for j in 0..<per {
                let v = t.data[i * per + j]
                mean += Double(v); m = max(m, v)
                if v > 0 { bright += 1 }
            }
            maxSum += Double(m)
        }
        return [mean / Double(n * per), maxSum / Double(n), bright / Double(n * per)]
    }

    /// Statistics of n samples from latent draws of a separate stream (training-mode BatchNorm).
    func samples(_ n: Int) throws -> [Double] {
        var rng = RandomStream(seed: 1, purpose: "evaluation")
        let z = Tensor(Shape(n, BlobGAN.arch.latent))
        rng.fillNormal(z.buffer)
        step.generator.training = true
        return BlobGAN.statistics(try step.generator.forward(z))
    }
}

@Suite("Tiny GAN")
struct TinyGANTests {
    static func distance(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + abs($1.0 - $1.1) } }

    @Test("LSGAN moves its samples' statistics towards the data's in 400 steps")
    func learnsBlobs() throws {
        var gan = try BlobGAN(seed: 7)
        let real = Tensor(Shape(0))
        gan.realBatch(512, into: real)
        let data = BlobGAN.statistics(real)
        let before = TinyGANTests.distance(try gan.samples(256), data)
        for _ in 0..<400 {
            gan.realBatch(32, into: real)
            let r = try gan.step.step(real: real)
            #expect(r.discriminatorLoss.isFinite && r.generatorLoss.isFinite)
        }
        let afterStats = try gan.samples(256)
        let after = TinyGANTests.distance(afterStats, data)
        // data: mean ~ -0.9, max ~ 1, bright fraction ~ 0.04; an untrained generator gives ~ 0, ~ 0, ~ 0.5.
        #expect(after < 0.5 * before, "distance to data statistics \(before) -> \(after); samples \(afterStats), data \(data)")
    }

    @Test("once sized, training steps (all three losses) and feature passes allocate no tensor memory")
    func noAllocation() throws {
        for loss in GANLoss.allCases {
            var gan = try BlobGAN(seed: 5, loss: loss)
            let real = Tensor(Shape(0))
            gan.realBatch(16, into: real)
            _ = try gan.step.step(real: real)  // sizes every buffer
            let count = try AllocationProbe.counting {
                for _ in 0..<3 { _ = try gan.step.step(real: real) }
            }
            #expect(count == 0, "\(loss): \(count) tensor allocations in 3 steps")
        }
        // With the differentiable augmentation (the colour jitter too: its per-image draws reuse their arrays).
        let jitter = DiffAugmentPolicy(translation: 0.125, cutout: 0.5, brightness: 0.25, contrast: 0.25)
        var augmented = try BlobGAN(seed: 5, diffAugment: jitter)
        let real = Tensor(Shape(0))
        augmented.realBatch(16, into: real)
        _ = try augmented.step.step(real: real)
        let augmentedCount = try AllocationProbe.counting {
            for _ in 0..<3 { _ = try augmented.step.step(real: real) }
        }
        #expect(augmentedCount == 0, "differentiable augmentation: \(augmentedCount) tensor allocations in 3 steps")
        let d = try BlobGAN.arch.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
        d.training = false
        let x = randomTensor(Shape(32, 1, 16, 16), seed: 1)
        _ = try d.forward(x, through: DCGANArchitecture.representationLayer)
        let count = try AllocationProbe.counting {
            // A smaller batch reuses the larger buffers.
            _ = try d.forward(x, through: DCGANArchitecture.representationLayer)
            _ = try d.forward(randomTensor(Shape(8, 1, 16, 16), seed: 2), through: DCGANArchitecture.representationLayer)
        }
        #expect(count == 1, "only the test's own input tensor should be allocated, found \(count)")
    }

    @Test("DCGAN and WGAN-GP steps run and reduce their own losses' pull on a fixed batch")
    func otherLosses() throws {
        for loss in [GANLoss.dcgan, .wgangp] {
            var gan = try BlobGAN(seed: 3, loss: loss)
            let real = Tensor(Shape(0))
            var first: GANTrainingStep.Result? = nil, last: GANTrainingStep.Result? = nil
            for i in 0..<30 {
                gan.realBatch(16, into: real)
                let r = try gan.step.step(real: real)
                if i == 0 { first = r }
                last = r
                #expect(r.discriminatorLoss.isFinite && r.generatorLoss.isFinite)
            }
            if loss == .wgangp {
                #expect(last!.gradientPenalty >= 0 && first!.gradientPenalty > 0)
                // The critic learns to separate: its loss (fake - real + penalty) goes down.
                #expect(last!.discriminatorLoss < first!.discriminatorLoss, "\(first!) -> \(last!)")
            } else {
                #expect(last!.discriminatorLoss < first!.discriminatorLoss, "\(first!) -> \(last!)")
            }
        }
    }
}

/// Tests that change the engine's thread count run one after another (the count is global).
@Suite("Threads", .serialized)
struct ThreadTests {
    @Test("same seed on one thread: bit-identical parameters after 20 steps")
    func determinism() throws {
        Engine.setThreads(1)
        defer { Engine.setThreads(1) }
        func run() throws -> [[Float]] {
            var gan = try BlobGAN(seed: 42)
            let real = Tensor(Shape(0))
            for _ in 0..<20 {
                gan.realBatch(16, into: real)
                _ = try gan.step.step(real: real)
            }
            return (gan.step.generator.namedTensors + gan.step.discriminator.namedTensors).map { $0.tensor.values }
        }
        let a = try run(), b = try run()
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) { #expect(x == y) }
        // A different seed gives different parameters.
        var other = try BlobGAN(seed: 43)
        let real = Tensor(Shape(0))
        other.realBatch(16, into: real)
        _ = try other.step.step(real: real)
        #expect(other.step.generator.parameters[0].value.values != a[0])
    }

    /// The threads split the batch, and each split is a GEMM of another shape. Some BLAS kernels
    /// (OpenBLAS's for AMD Zen) tile a product differently by its shape, so the sums' order, and
    /// with it the last bits, may change with the thread count: everything must agree to float
    /// rounding. A bias that feeds a BatchNorm has a gradient of exactly zero but for rounding;
    /// it must be that small in both runs.
    @Test("two threads give the outputs, input gradients and parameter gradients of one, to rounding")
    func twoThreads() throws {
        defer { Engine.setThreads(1) }
        func run(_ threads: Int) throws -> (out: [[Float]], grads: [[Float]], roundingOnly: Set<Int>) {
            Engine.setThreads(threads)
            let arch = DCGANArchitecture(size: 32, channels: 3, latent: 10, generatorWidths: [32, 16, 8], discriminatorWidths: [8, 16, 32],
                                         discriminatorStrides: [1, 2, 2], representation: 12)
            let g = try arch.makeGenerator(), d = try arch.makeDiscriminator(noise: RandomStream(seed: 1, purpose: "noise"))
            var rng = RandomStream(seed: 5, purpose: "init")
            g.initialize(.heNormal, rng: &rng)
            d.initialize(.heNormal, rng: &rng)
            var roundingOnly: Set<Int> = [], index = 0
            for net in [g, d] {
                for (i, l) in net.layers.enumerated() {
                    (l as? Conv2D)?.lowering.targetColumns = 100       // several chunks per batch
                    (l as? UpsampleConv2D)?.lowering.targetColumns = 100
                    if l.parameters.count == 2, i + 1 < net.layers.count, net.layers[i + 1] is BatchNorm { roundingOnly.insert(index + 1) }
                    index += l.parameters.count
                }
            }
            let fake = try g.forward(randomTensor(Shape(9, 10), seed: 2))
            let score = try d.forward(fake)
            let dx = try d.backward(Tensor(Shape(9, 1), repeating: 1))
            _ = try g.backward(dx)
            return ([fake.values, score.values, dx.values], (g.parameters + d.parameters).map { $0.grad.values }, roundingOnly)
        }
        func scale(_ v: [Float]) -> Float { v.map { abs($0) }.max() ?? 0 }
        let one = try run(1), two = try run(2)
        for (a, b) in zip(one.out, two.out) {
            #expect(scale(a) > 0.01)
            #expect(maxAbsDiff(a, b) <= 1e-5 * scale(a))
        }
        #expect(one.roundingOnly.count == 2)              // the generator's two convolutions before BatchNorm
        let largest = one.grads.map(scale).max() ?? 0
        for (i, (a, b)) in zip(one.grads, two.grads).enumerated() {
            if one.roundingOnly.contains(i) {
                #expect(max(scale(a), scale(b)) <= 1e-5 * largest)
            } else {
                #expect(scale(a) > 0.01)
                #expect(maxAbsDiff(a, b) <= 1e-5 * scale(a))
            }
        }
    }
}
