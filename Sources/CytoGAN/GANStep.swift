import CytoCore
import CytoNN

/// The three GAN objectives of CytoGAN.
public enum GANLoss: String, Sendable, CaseIterable {
    /// Binary cross-entropy on the discriminator's logit; non-saturating generator.
    case dcgan
    /// Least squares: mean squared error to the targets; generator towards 1.
    case lsgan
    /// Wasserstein critic with gradient penalty; generator maximises the critic's score.
    case wgangp
}

/// One CytoGAN training step, allocation-free once its buffers are sized:
/// 1. z ~ N(0, I); fake = G(z).
/// 2. D on the batch [fake; real] with targets [0; U(0.8, 1)] (one-sided label smoothing;
///    WGAN-GP: labels fake 0 / real 1, plus the gradient penalty at x = e real + (1 - e) fake with
///    e ~ U(0, 1) per item);
///    D's optimizer steps (with `spectralNormalization`: on the unnormalized weights, which are
///    then divided by their largest singular values), and the weight average
///    (`discriminatorAverage`) takes D's new weights.
/// 3. D on fake again; G's loss (towards 1, or -mean D for WGAN-GP) back-propagated through D
///    (input gradient only) into G, plus the texture-matching term's gradient when kept
///    (`textureMatching`, on the un-augmented fake and real batches, included in G's loss), and
///    the bright-tail term's (`tailMatching`, the same way);
///    G's optimizer steps.
/// With a differentiable augmentation (`diffAugment`), every batch D sees in steps 2 and 3 goes
/// through fresh random transforms first, and G's gradient comes back through them.
/// Each purpose draws from its own stream (latent, label smoothing, interpolation, augmentation),
/// all public so a checkpoint can save and restore them.
///
/// Data-parallel (`distribute(over:globalBatch:)`): each of N processes steps on its slice of the
/// global batch. Every random draw is made for the whole global batch from the same streams and
/// read at the slice's items, BatchNorm statistics are synchronized, the loss gradients are scaled
/// to the global batch's mean, and each network's gradients are summed over the processes (one
/// fused reduction per update) before the identical optimizer updates; so every process holds the
/// weights one process would with the whole batch, to float rounding.
public final class GANTrainingStep {
    public let generator: Network
    public let discriminator: Network
    public let generatorOptimizer: any Optimizer
    public let discriminatorOptimizer: any Optimizer
    public let loss: GANLoss
    public let latent: Int
    public var penalty: GradientPenalty
    public var latentRNG: RandomStream
    public var labelRNG: RandomStream
    public var mixRNG: RandomStream
    /// Differentiable augmentation of D's inputs (nil: none, the paper); its stream is checkpointed.
    public let diffAugment: DiffAugment?
    /// Moving average of the discriminator's weights, updated after each of its updates (nil: none).
    public let discriminatorAverage: WeightAverage?
    /// Moving average of the generator's weights, updated after each of its updates (nil: none).
    public let generatorAverage: WeightAverage?
    /// The generator's texture-matching term (nil: none).
    public let textureMatching: TextureMatching?
    /// The generator's bright-tail matching term (nil: none).
    public let tailMatching: TailMatching?
    /// Spectral normalization of the discriminator's weights (nil: none): its optimizer updates
    /// the unnormalized weights, and the step renormalizes them after each update.
    public let spectralNormalization: SpectralNormalization?

    /// The group this step trains with (nil: one process).
    public private(set) var collective: (any Collective)?
    /// This process's share of every batch (nil: all of it).
    public private(set) var slice: BatchSlice?
    /// Set to 1 before a step to ask every process to stop after it; summed with the generator's gradients.
    public var stopVote: Float = 0
    /// True after a data-parallel step in which some process voted to stop.
    public private(set) var stopAgreed = false
    private var discriminatorReducer: GradientReducer?
    private var generatorReducer: GradientReducer?
    /// The global batch's latent draw, of which this process takes its rows.
    private let globalZ = Tensor(Shape(0))
    private let z = Tensor(Shape(0))
    private let both = Tensor(Shape(0))
    private let targets = Tensor(Shape(0))
    private let gradient = Tensor(Shape(0))
    private let mixed = Tensor(Shape(0))

    /// What one step measured.
    public struct Result: Sendable {
        public var discriminatorLoss: Float
        public var generatorLoss: Float
        /// The gradient penalty (WGAN-GP's; 0 otherwise), included in `discriminatorLoss`.
        public var gradientPenalty: Float
    }

    public init(generator: Network, discriminator: Network, generatorOptimizer: any Optimizer, discriminatorOptimizer: any Optimizer,
                loss: GANLoss, latent: Int, seed: UInt64, penaltyWeight: Float = 10,
                diffAugment policy: DiffAugmentPolicy = .none, discriminatorAverage: WeightAverage? = nil,
                generatorAverage: WeightAverage? = nil, textureMatching: TextureMatching? = nil, tailMatching: TailMatching? = nil,
                spectralNormalization: SpectralNormalization? = nil) {
        self.generator = generator
        self.discriminator = discriminator
        self.generatorOptimizer = generatorOptimizer
        self.discriminatorOptimizer = discriminatorOptimizer
        self.loss = loss
        self.latent = latent
        penalty = GradientPenalty(weight: penaltyWeight)
        latentRNG = RandomStream(seed: seed, purpose: "latent")
        labelRNG = RandomStream(seed: seed, purpose: "label-smoothing")
        mixRNG = RandomStream(seed: seed, purpose: "interpolation")
        diffAugment = policy.isIdentity ? nil : DiffAugment(policy: policy, rng: RandomStream(seed: seed, purpose: "diff-augment"))
        self.discriminatorAverage = discriminatorAverage
        self.generatorAverage = generatorAverage
        self.textureMatching = textureMatching
        self.tailMatching = tailMatching
        self.spectralNormalization = spectralNormalization
    }

    /// Trains as one of `collective.size` processes that share each batch of `globalBatch` items
    /// (equal slices, in rank order): synchronized BatchNorm in both networks, noise and
    /// augmentation drawn per global item, gradients summed over the processes.
    public func distribute(over collective: any Collective, globalBatch: Int) throws {
        guard collective.size > 1 else { return }
        guard loss != .wgangp else {
            throw CytoError(.unsupported, "data-parallel training supports the dcgan and lsgan losses; WGAN-GP's gradient penalty runs in one process")
        }
        let slice = try BatchSlice(rank: collective.rank, ranks: collective.size, global: globalBatch)
        self.collective = collective
        self.slice = slice
        for net in [generator, discriminator] {
            for l in net.layers {
                (l as? BatchNorm)?.collective = collective
                (l as? GaussianNoise)?.slice = slice
            }
        }
        diffAugment?.slice = slice
        discriminatorReducer = GradientReducer(parameters: discriminator.parameters, collective: collective, extras: 1)
        generatorReducer = GradientReducer(parameters: generator.parameters, collective: collective, extras: 2)
    }

    /// Fills `z` with a [batch, latent] draw from N(0, I) (data-parallel: this process's rows of
    /// the global batch's draw).
    public func sampleLatent(_ z: Tensor, batch: Int) {
        z.resize(Shape(batch, latent))
        guard let slice, !slice.isWhole, batch == slice.local else {
            latentRNG.fillNormal(z.buffer)
            return
        }
        globalZ.resize(Shape(slice.global, latent))
        latentRNG.fillNormal(globalZ.buffer)
        z.data.update(from: globalZ.data + slice.offset * latent, count: batch * latent)
    }

    /// This process's fraction of the global batch (1 in one process).
    private var batchFraction: Float {
        guard let slice, !slice.isWhole else { return 1 }
        return Float(slice.local) / Float(slice.global)
    }

    /// Data-parallel: scales the loss gradient from this process's mean to its share of the
    /// global batch's mean, and returns the loss's share of the global mean.
    private func globalShare(_ loss: Float) -> Float {
        let k = batchFraction
        guard k != 1 else { return loss }
        let g = gradient.data
        for i in 0..<gradient.count { g[i] *= k }
        return loss * k
    }

    /// Runs one step on a batch of real images (NCHW, shaped like the generator's output).
    /// With `updateGenerator` false only the discriminator learns (the extra critic steps of
    /// WGAN-GP); the generator's loss is then reported as NaN.
    public func step(real: Tensor, updateGenerator: Bool = true) throws -> Result {
        let b = real.shape.batch
        guard b > 0 else { throw CytoError(.invalidInput, "training step: empty batch") }
        if let slice, b != slice.local {
            throw CytoError(.shapeMismatch, "training step: this process holds \(slice.local) of each batch's \(slice.global) items, got \(b)")
        }
        generator.training = true
        discriminator.training = true
        sampleLatent(z, batch: b)
        let fake = try generator.forward(z)
        guard fake.shape == real.shape else {
            throw CytoError(.shapeMismatch, "training step: real batch \(real.shape) does not match the generator's output \(fake.shape)")
        }

        // Discriminator on [fake; real].
        let per = real.shape.itemCount
        both.resize(real.shape.withBatch(2 * b))
        both.data.update(from: fake.data, count: b * per)
        (both.data + b * per).update(from: real.data, count: b * per)
        targets.resize(Shape(2 * b, 1))
        for i in 0..<b { targets.data[i] = 0 }
        if let slice, !slice.isWhole, loss != .wgangp {
            // Draw the global batch's labels; keep this slice's.
            for i in 0..<slice.global {
                let u = labelRNG.uniform(0.8, 1.0)
                if i >= slice.offset && i < slice.offset + b { targets.data[b + i - slice.offset] = u }
            }
        } else {
            for i in b..<(2 * b) { targets.data[i] = loss == .wgangp ? 1 : labelRNG.uniform(0.8, 1.0) }
        }
        discriminator.zeroGradients()
        let input = try diffAugment?.forward(both) ?? both
        let scores = try discriminator.forward(input)
        var lossD = globalShare(try objective(scores))
        _ = try discriminator.backward(gradient, inputGradient: false, parameterGradients: true)
        var gp: Float = 0
        if loss == .wgangp {
            mixed.resize(real.shape)
            let f = fake.data, r = real.data, m = mixed.data
            for i in 0..<b {
                let e = mixRNG.uniformFloat()
                for j in 0..<per { m[i * per + j] = e * r[i * per + j] + (1 - e) * f[i * per + j] }
            }
            gp = try penalty.accumulate(critic: discriminator, at: mixed).penalty
            lossD += gp
        }

        // Discriminator update (data-parallel: on the gradients summed over the processes), and its weight average.
        if let r = discriminatorReducer {
            r[extra: 0] = lossD
            try r.reduce()
            lossD = r[extra: 0]
        }
        spectralNormalization?.prepareUpdate()
        discriminatorOptimizer.update()
        spectralNormalization?.finishUpdate()
        discriminatorAverage?.update(afterUpdate: discriminatorOptimizer.step)
        guard updateGenerator else { return Result(discriminatorLoss: lossD, generatorLoss: .nan, gradientPenalty: gp) }

        // Generator through the discriminator.
        generator.zeroGradients()
        let fakeScores = try discriminator.forward(diffAugment?.forward(fake) ?? fake)
        targets.resize(Shape(b, 1))
        targets.fill(1)
        var lossG = globalShare(try objective(fakeScores))
        var gx = try discriminator.backward(gradient, inputGradient: true, parameterGradients: false)!
        if let a = diffAugment { gx = try a.backward(gx) }
        if let t = textureMatching {
            let term = try t.accumulate(fake: fake, real: real, into: gx, collective: collective)
            lossG += term * batchFraction
        }
        if let t = tailMatching {
            let term = try t.accumulate(fake: fake, real: real, into: gx, collective: collective, slice: slice)
            lossG += term * batchFraction
        }
        _ = try generator.backward(gx, inputGradient: false, parameterGradients: true)
        if let r = generatorReducer {
            r[extra: 0] = lossG
            r[extra: 1] = stopVote
            try r.reduce()
            lossG = r[extra: 0]
            stopAgreed = r[extra: 1] > 0
        }
        generatorOptimizer.update()
        generatorAverage?.update(afterUpdate: generatorOptimizer.step)
        return Result(discriminatorLoss: lossD, generatorLoss: lossG, gradientPenalty: gp)
    }

    /// The loss of `scores` against `targets`, its gradient left in `gradient`.
    private func objective(_ scores: Tensor) throws -> Float {
        switch loss {
        case .dcgan: return try Loss.binaryCrossEntropy(logits: scores, targets: targets, gradient: gradient)
        case .lsgan: return try Loss.meanSquaredError(scores, targets: targets, gradient: gradient)
        case .wgangp: return try Loss.wasserstein(scores: scores, labels: targets, gradient: gradient)
        }
    }
}
